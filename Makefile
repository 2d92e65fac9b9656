# hwreshape: `make setup` then `make test` (see README).
PY ?= python3.11
VENV := .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: setup test test-fast test-wheel demo bench lint lock clean docker docker-test

# Idempotent: creates .venv if missing, installs the pinned development stack (constraints.txt: every door
# of hwreshape, TensorFlow 2.21, brevitas 0.13.4, the dev tools and the peers), then finn-plus without its
# exact pins (they exclude TensorFlow 2.21's protobuf), then checks the result with `hwreshape env`.
# A venv made before the one-TensorFlow change had `tensorflow-cpu` next to `tensorflow` (same files):
# that one is removed and `tensorflow` reinstalled over the shared files.
setup:
	@command -v $(PY) >/dev/null 2>&1 || { echo "setup: $(PY) not found (hwreshape needs Python 3.11)"; exit 1; }
	@test -x $(VPY) || $(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade "pip>=24" "setuptools>=77" wheel
	@if $(PIP) show -q tensorflow-cpu >/dev/null 2>&1; then \
	  echo "setup: removing tensorflow-cpu (tensorflow, required by tf-keras, is the one TensorFlow)"; \
	  $(PIP) uninstall -y -q tensorflow-cpu && \
	  $(PIP) install -q -c constraints.txt --no-deps --force-reinstall tensorflow; fi
	$(PIP) install -c constraints.txt -e ".[stack,dev,peers]"
	$(PIP) install -c constraints.txt --no-deps "finn-plus==1.6.1"
	$(VENV)/bin/hwreshape env
	@$(VPY) -c "import sys; sys.tracebacklimit = 0; from hwreshape.compat import finn_hlslib_dir; print('finn-hlslib:', finn_hlslib_dir())" \
	  || echo "setup: finn-hlslib not found (whole-partition C++ simulation of FINN's own nodes is skipped; set FINN_HLSLIB_DIR)"
	$(VPY) -m bm_ops._kernel

test:
	$(VPY) -m pytest -p no:cacheprovider

test-fast:
	$(VPY) -m pytest -p no:cacheprovider -m "not slow"

# Wheel-level check: wheel + sdist from a clean copy, installed non-editable with finn-plus 1.6.1 into a fresh
# venv (pip's cache reused), `pip check`, smoke tests there (see .ci/run; WHEEL_CI_DIR sets the work folder).
test-wheel:
	bash .ci/run wheel

demo:
	$(VENV)/bin/hwreshape demo

# Every benchmark in its short form; `make bench BENCH_ARGS=` runs the full versions (hours on 2 cores).
BENCH_ARGS ?= --quick
bench:
	@set -e; for f in benchmarks/*.py; do echo "== $$f $(BENCH_ARGS)"; $(VPY) $$f $(BENCH_ARGS); done

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint docker/Dockerfile

# Container image with podman (no Docker daemon): `make docker` builds hwreshape:latest on a debootstrap Debian 12
# base, or on a FINN-style image with Python >= 3.11: `make docker BASE_IMAGE=<image>` (docker/build.sh, docs/install.md).
# `make docker-test` builds it and runs `hwreshape env` and a smoke subset of the tests inside.
docker:
	bash docker/build.sh

docker-test:
	bash docker/test.sh

# Re-pin every installed distribution (run after changing dependencies, then commit constraints.txt).
lock:
	$(PIP) freeze --exclude-editable | grep -v -e '^hwreshape' -e '^finn-plus' | sed -E 's/\+cpu$$//' > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache demo_out
