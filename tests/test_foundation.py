"""Foundation: packaging, light imports, `hwreshape env`, the two host smoke flows, Dockerfile lint."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HWRESHAPE = Path(sys.executable).parent / "hwreshape"


def _modules_after_import(stmt: str) -> set[str]:
    code = f"import sys, json; {stmt}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("package", ["aslr", "bm_ops"])
def test_light_packages_do_not_import_heavy_hosts(package):
    mods = _modules_after_import(f"import {package}")
    heavy = {"tensorflow", "keras", "tf_keras", "qkeras", "finn", "hls4ml"} & {m.split(".")[0] for m in mods}
    assert not heavy, f"import {package} pulled in {sorted(heavy)}"


def test_console_script_and_packages_installed():
    assert HWRESHAPE.is_file(), "the hwreshape console script is not installed in the venv"
    from importlib import metadata

    dist = metadata.distribution("hwreshape")
    assert ">=3.11" in dist.metadata["Requires-Python"]
    for pkg in ("finn_s2n2", "hls4ml_skiptrim", "bm_ops", "aslr", "hwreshape"):
        __import__(pkg)
    eps = {ep.name for ep in metadata.entry_points(group="hls4ml.backends")}
    assert "hls4ml_skiptrim" in eps


def test_env_reports_every_host_and_exits_zero():
    proc = subprocess.run([str(HWRESHAPE), "env"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for host in (
        "finn-plus",
        "qonnx",
        "hls4ml",
        "brevitas",
        "torch",
        "tensorflow",
        "keras",
        "tf-keras",
        "qkeras",
        "nir",
        "g++",
        "ap_types",
        "vivado",
        "vitis_hls",
    ):
        assert host in proc.stdout, f"{host} missing from `hwreshape env`"


def test_env_names_a_broken_host(tmp_path):
    # A real breakage, not a mock: a shadowing `nir` package that fails at import time.
    shadow = tmp_path / "nir"
    shadow.mkdir()
    (shadow / "__init__.py").write_text("raise ImportError('deliberately broken for the test')\n")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = subprocess.run([str(HWRESHAPE), "env"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("hwreshape env:") and "nir" in last and "broken" in last


def test_env_names_a_missing_host():
    from hwreshape.env import collect

    statuses = collect(
        [
            ("not-a-host", "hwreshape-no-such-distribution", "import json", "main"),
            ("nir", "nir", "import nir", "main"),
        ]
    )
    by_name = {s.name: s for s in statuses}
    assert not by_name["not-a-host"].ok and "not installed" in by_name["not-a-host"].detail
    assert by_name["nir"].ok


def test_finn_estimate_build_writes_reports(tmp_path):
    from hwreshape.smoke import finn_estimate_build

    res = finn_estimate_build(tmp_path)
    report = Path(res["report_dir"])
    for name in (
        "estimate_layer_resources.json",
        "estimate_layer_cycles.json",
        "estimate_network_performance.json",
    ):
        assert (report / name).is_file(), name
    assert res["hw_layers"] >= 3
    assert "MVAU_hls" in res["op_types"]
    assert res["LUT"] > 0 and res["max_cycles"] > 0


def test_finn_xsi_stand_in_raises_clearly():
    from hwreshape.compat import XSIUnavailableError, prepare_finn

    if os.environ.get("XILINX_VIVADO"):
        pytest.skip("Vivado present: the real XSI is used")
    prepare_finn()
    from finn.xsi import SimEngine

    with pytest.raises(XSIUnavailableError, match="Vivado"):
        SimEngine()


@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_qkeras_block_hls4ml_csim_matches_keras(tmp_path, io_type):
    from hwreshape.smoke import qkeras_hls4ml_csim

    res = qkeras_hls4ml_csim(tmp_path, io_type=io_type)
    # hls4ml's own layers: the fused short-skip layer is opt-in and this flow does not ask for it. io_stream
    # adds an explicit ZeroPadding2D in front of a "same" convolution and a Clone for the skip's fan-out.
    layers = [name for name in res["layers"] if name not in ("Input", "ZeroPadding2D", "Clone")]
    assert layers == ["Conv2D", "BatchNormalization", "Activation", "Merge"], layers
    # QActivation quantized_relu(6, 2) has a 2^-4 grid: the fixed<16,6> datapath may round a pre-activation
    # that lies on a grid boundary to the neighbouring step, never further.
    assert res["max_abs_err"] <= 2**-4 + 1e-12, res
    assert res["max_abs_out"] > 0.5


def test_qkeras_to_hls_rejects_keras3_model():
    import keras

    from hwreshape.compat import qkeras_to_hls

    m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(TypeError, match="tf-keras/QKeras"):
        qkeras_to_hls(m)


def test_dockerfile_lints():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = subprocess.run([hadolint, str(REPO / "docker" / "Dockerfile")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (REPO / "docker" / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=localhost/hwreshape-debian:bookworm" in text and "hwreshape" in text
    # the base image's entrypoint (FINN's, or ours that sources the Vivado/Vitis settings) stays in charge
    assert not [ln for ln in text.splitlines() if ln.startswith("ENTRYPOINT")]
    assert "sys.version_info >= (3, 11)" in text
    for script in ("build.sh", "test.sh", "entrypoint.sh", "podman-args.sh"):
        proc = subprocess.run(["bash", "-n", str(REPO / "docker" / script)], capture_output=True, text=True)
        assert proc.returncode == 0, f"docker/{script}: {proc.stderr}"


def test_demo_lists_stages():
    proc = subprocess.run([str(HWRESHAPE), "demo", "--list"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert "environment" in proc.stdout and "hwreshape.smoke" in proc.stdout
