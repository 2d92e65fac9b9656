#!/usr/bin/env bash
# `make docker-test`: build the image (docker/build.sh), then inside it run `hwreshape env` and a smoke subset of
# the tests (mounted read-only from this checkout; ../shared too when present). Prints the wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
CLI=${CONTAINER_CLI:-podman}
source docker/podman-args.sh
IMAGE=${IMAGE:-hwreshape:latest}
start=$(date +%s)
bash docker/build.sh
built=$(date +%s)
mounts=(-v "$REPO/tests:/work/tests:ro" -v "$REPO/pyproject.toml:/work/pyproject.toml:ro")
[ -d "$REPO/../shared" ] && mounts+=(-v "$(cd "$REPO/../shared" && pwd):/shared:ro")
echo "== hwreshape env (in $IMAGE)"
"$CLI" "${GLOBAL_ARGS[@]}" run "${RUN_ARGS[@]}" --rm --network none "${mounts[@]}" "$IMAGE" hwreshape env
echo "== smoke tests (in $IMAGE)"
"$CLI" "${GLOBAL_ARGS[@]}" run "${RUN_ARGS[@]}" --rm --network none "${mounts[@]}" -e OMP_NUM_THREADS=1 -e FINN_HLSLIB_DIR=/shared/deps/finn-hlslib \
  "$IMAGE" python -m pytest -p no:cacheprovider -q -o addopts="-ra --timeout=1800" -m "not slow" \
  tests/test_packaging.py::test_missing_extra_is_named_at_import \
  tests/test_packaging.py::test_installed_environment_has_one_tensorflow \
  tests/test_shortskip_plugin.py::test_entry_point_registers_on_plain_import_hls4ml \
  tests/test_bm_hls4ml.py::test_csim_bit_exact_io_parallel_vivado \
  tests/test_s2n2_finn_lif_mvau.py::test_finn_cppsim_single_node \
  tests/test_foundation.py::test_finn_estimate_build_writes_reports \
  tests/test_bm_kernel.py::test_build_is_cached \
  tests/test_aslr_torch.py::test_observe_runs_algorithm_2_and_redraws_in_new_interval
end=$(date +%s)
echo "make docker-test: build $((built - start)) s, checks $((end - built)) s, total $((end - start)) s"
