"""Compatibility layer that lets the real hosts run as libraries on this toolchain (no Vivado, Keras 3).

Two host quirks are handled here, once, for the whole project (see README "The toolchain"):

1. **finn-plus outside its CLI.**  finn-plus expects to be started by ``run_finn.py``: its global settings
   object must exist before ``finn.builder``/``finn.custom_op`` are used, and ``finn.xsi`` resolves
   ``SimEngine`` lazily through a module ``__getattr__`` that demands ``XILINX_VIVADO`` and a built
   ``xsi.so`` (``finn.builder.build_dataflow_steps`` does ``from finn.xsi import SimEngine`` at import time).
   :func:`prepare_finn` initialises FINN's dummy settings with an absolute build directory and, when no
   Vivado is installed, binds stand-ins for the XSI names that raise a clear error only when RTL simulation
   is actually requested; ``build_dataflow``'s end-of-build metadata records the tool version "none"
   instead of failing on the missing ``XILINX_VIVADO``.  Nothing of finn-plus is copied or modified on disk.

2. **QKeras next to Keras 3.**  QKeras 0.9 is a tf-keras (Keras 2) library; hls4ml 1.3 dispatches on
   ``keras.__version__`` and would send a tf-keras model to its Keras 3 parser.  :func:`qkeras_to_hls`
   builds the hls4ml configuration and calls hls4ml's own keras-v2 converter (``keras_v2_to_hls``) directly.
   TensorFlow must see ``TF_USE_LEGACY_KERAS=1`` before it is first imported for ``tf.keras`` to be tf-keras;
   :func:`use_legacy_keras` sets it and complains if TensorFlow was already imported the other way.

Also: :func:`finn_hlslib_dir` (where finn-hlslib is, for g++ C-simulation of FINN's own HLS nodes), :func:`ap_types_include` (the open-source ``ap_int``/``ap_fixed``/``hls_stream`` headers shipped in the
hls4ml wheel, used by every g++ C-simulation in this project) and :func:`vivado_tools` (which Xilinx tools
are on PATH).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

_FINN_READY = False


class XSIUnavailableError(RuntimeError):
    """Raised by the XSI stand-ins when RTL simulation is requested on a machine without Vivado."""


class _MissingXSI:
    """Stand-in for ``finn.xsi.SimEngine`` and friends when Vivado's XSI library is absent."""

    def __init__(self, name: str):
        self.__name__ = name

    def __call__(self, *args, **kwargs):
        raise XSIUnavailableError(
            f"finn.xsi.{self.__name__}: RTL simulation needs Vivado (XILINX_VIVADO) and FINN's xsi.so; "
            "this machine has neither. Use python execution or the plugin ops' own cppsim instead."
        )

    def __repr__(self) -> str:
        return f"<hwreshape stand-in for finn.xsi.{self.__name__} (no Vivado)>"


def vivado_tools() -> dict[str, str | None]:
    """Paths of the Xilinx tools on PATH (``vivado``, ``vitis_hls``, ``vitis-run``) or None when absent."""
    return {tool: shutil.which(tool) for tool in ("vivado", "vitis_hls", "vitis-run")}


def finn_build_dir() -> Path:
    """The FINN build directory: ``$FINN_BUILD_DIR`` if set, else ``<tmp>/hwreshape_finn_build``."""
    path = Path(os.environ.get("FINN_BUILD_DIR") or Path(tempfile.gettempdir()) / "hwreshape_finn_build")
    path = path.expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def prepare_finn() -> None:
    """Make finn-plus usable as a library (idempotent, cheap after the first call).

    * sets ``FINN_BUILD_DIR`` (absolute; FINN resolves a relative one against a flow-config path that a
      library user does not have) and initialises FINN's global settings
      (``finn.util.settings.initialize_dummy_settings``) unless they already exist;
    * without ``XILINX_VIVADO``: binds stand-ins for the lazily imported ``finn.xsi`` names so that importing
      ``finn.builder.build_dataflow`` works; calling them raises :class:`XSIUnavailableError`.
    """
    global _FINN_READY
    if _FINN_READY:
        return
    os.environ["FINN_BUILD_DIR"] = str(finn_build_dir())
    import finn.util.settings as finn_settings

    try:
        finn_settings.get_settings()
    except Exception:  # FINNUserError: not started through run_finn.py
        finn_settings.initialize_dummy_settings()
    if not os.environ.get("XILINX_VIVADO"):
        import finn.xsi as xsi

        for name in sorted(xsi._LAZY_NAMES):
            if name not in vars(xsi):
                setattr(xsi, name, _MissingXSI(name))
        # build_dataflow's exit_buildflow records Path(get_vivado_root()).name as "tool_version" even for
        # estimate-only builds and raises without Vivado; record "none" there instead.  When we are called
        # from inside the import of finn.builder.build_dataflow_steps (an import hook of a plugin), importing
        # build_dataflow now would be circular: leave this part to the next call.
        steps = sys.modules.get("finn.builder.build_dataflow_steps")
        if steps is not None and getattr(getattr(steps, "__spec__", None), "_initializing", False):
            return
        import finn.builder.build_dataflow as build_dataflow

        build_dataflow.get_vivado_root = _no_vivado_root
    _FINN_READY = True


def _no_vivado_root() -> str:
    return os.environ.get("XILINX_VIVADO") or "none"


def ap_types_include() -> str:
    """Folder with ``ap_int.h``, ``ap_fixed.h`` and ``hls_stream.h`` from the hls4ml wheel (for g++ C-sim).

    Located from the installed distribution's files without importing hls4ml (which would load its
    frontends).  Raises FileNotFoundError with the path it looked at when hls4ml is not installed.
    """
    from importlib.util import find_spec

    spec = find_spec("hls4ml")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("hls4ml is not installed: the ap_types headers come from its wheel")
    folder = Path(next(iter(spec.submodule_search_locations))) / "templates" / "vivado" / "ap_types"
    if not (folder / "ap_fixed.h").is_file():
        raise FileNotFoundError(f"ap_types headers not found at {folder} (broken hls4ml install?)")
    return str(folder)


#: environment variable naming a finn-hlslib checkout (highest priority in :func:`finn_hlslib_dir`)
FINN_HLSLIB_ENV = "FINN_HLSLIB_DIR"


def finn_hlslib_dir(explicit: str | os.PathLike | None = None) -> Path:
    """A finn-hlslib checkout (the folder with ``bnn-library.h``), searched in this order:

    1. ``explicit`` (an argument), then the environment variable ``FINN_HLSLIB_DIR``;
    2. ``../shared/deps/finn-hlslib`` next to this repository (the project's BSD-3 snapshot);
    3. finn-plus's own dependency folder (``<finn_deps>/finn-hlslib``, filled by finn-plus' dependency fetch).

    An explicit setting (argument or environment variable) that has no ``bnn-library.h`` is an error at
    once (no silent fall-back).  Otherwise raises FileNotFoundError listing every place it looked (and what
    is missing) when none has ``bnn-library.h``.  finn-hlslib is not pip-installable; nothing is downloaded.
    """
    for what, value in (("argument", explicit), (f"${FINN_HLSLIB_ENV}", os.environ.get(FINN_HLSLIB_ENV))):
        if value:
            path = Path(value).expanduser()
            if not (path / "bnn-library.h").is_file():
                raise FileNotFoundError(
                    f"finn-hlslib: {what} points to {path}, which has no bnn-library.h "
                    f"({'exists' if path.exists() else 'does not exist'})"
                )
            return path.resolve()
    tried = []
    cands = []
    repo = Path(__file__).resolve().parent.parent
    cands.append(("../shared/deps", repo.parent / "shared" / "deps" / "finn-hlslib"))
    try:
        prepare_finn()
        from finn.util.settings import get_settings

        cands.append(("finn-plus finn_deps", Path(get_settings().finn_deps) / "finn-hlslib"))
    except Exception as e:  # finn-plus missing or its settings unusable: say so in the error
        tried.append(f"finn-plus finn_deps: unavailable ({type(e).__name__}: {e})")
    for what, path in cands:
        path = path.expanduser()
        if (path / "bnn-library.h").is_file():
            return path.resolve()
        tried.append(f"{what}: {path} ({'no bnn-library.h' if path.exists() else 'does not exist'})")
    raise FileNotFoundError(
        "finn-hlslib not found (needed for C++ simulation of FINN's own HLS nodes). Looked at: "
        + "; ".join(tried)
        + f". Set {FINN_HLSLIB_ENV} to a checkout of https://github.com/Xilinx/finn-hlslib"
    )


def use_legacy_keras() -> None:
    """Select tf-keras as ``tf.keras`` (QKeras' framework).  Must run before TensorFlow is imported."""
    if os.environ.get("TF_USE_LEGACY_KERAS") == "1":
        return
    if "tensorflow" in sys.modules:
        raise RuntimeError(
            "QKeras needs TF_USE_LEGACY_KERAS=1 before TensorFlow is imported, but TensorFlow is already "
            "loaded with Keras 3: set TF_USE_LEGACY_KERAS=1 in the environment, or use a fresh process"
        )
    os.environ["TF_USE_LEGACY_KERAS"] = "1"


def is_tf_keras_model(model) -> bool:
    """True for tf-keras (Keras 2, e.g. QKeras) models, False for Keras 3 models."""
    return type(model).__module__.split(".")[0] in ("tf_keras", "qkeras") or any(
        c.__module__.startswith(("tf_keras", "qkeras")) for c in type(model).__mro__
    )


@contextlib.contextmanager
def _keras_v2_dispatch():
    """Within the block, hls4ml's ``keras.__version__`` test selects its keras-v2 parser."""
    import keras
    import tf_keras

    saved = keras.__version__
    keras.__version__ = tf_keras.__version__
    try:
        yield
    finally:
        keras.__version__ = saved


def qkeras_config(model, granularity: str = "name", default_precision: str = "fixed<16,6>", **kwargs) -> dict:
    """hls4ml's ``config_from_keras_model`` for a tf-keras/QKeras model while Keras 3 is installed."""
    if not is_tf_keras_model(model):
        raise TypeError(f"qkeras_config expects a tf-keras/QKeras model, got {type(model).__module__}")
    from hls4ml.utils.config import config_from_keras_model

    with _keras_v2_dispatch():
        return config_from_keras_model(
            model, granularity=granularity, default_precision=default_precision, **kwargs
        )


def qkeras_to_hls(
    model,
    hls_config: dict | None = None,
    output_dir: str | os.PathLike = "hls4ml_prj",
    backend: str = "Vivado",
    io_type: str = "io_parallel",
    project_name: str = "myproject",
    **kwargs,
):
    """Convert a tf-keras/QKeras model with hls4ml's keras-v2 converter (hls4ml picks v3 when Keras 3 exists).

    Same arguments as ``hls4ml.converters.convert_from_keras_model``; ``hls_config`` defaults to
    :func:`qkeras_config` at name granularity (so QKeras quantizers set the layer precisions).
    Returns the hls4ml ``ModelGraph`` (call ``.compile()`` / ``.predict()`` for C-simulation).
    """
    if not is_tf_keras_model(model):
        raise TypeError(
            f"qkeras_to_hls expects a tf-keras/QKeras model, got {type(model).__module__}."
            " Convert Keras 3 models with hls4ml.converters.convert_from_keras_model"
        )
    from hls4ml.converters import _check_hls_config, _check_model_config
    from hls4ml.converters.keras_v2_to_hls import keras_v2_to_hls
    from hls4ml.utils.config import create_config

    if hls_config is None:
        hls_config = qkeras_config(model)
    config = create_config(
        output_dir=str(output_dir), project_name=project_name, backend=backend, io_type=io_type, **kwargs
    )
    config["KerasModel"] = model
    config["InputData"] = None
    config["OutputPredictions"] = None
    config["HLSConfig"] = {"Model": _check_model_config(dict(hls_config.get("Model", {})))}
    config["HLSConfig"]["Model"].setdefault("BitExact", None)
    _check_hls_config(config, hls_config)
    with _keras_v2_dispatch():
        return keras_v2_to_hls(config)


@contextlib.contextmanager
def host_io_preserved():
    """Leave ``sys.stdout``/``sys.stderr``, the root logger and warning capture as they were before the block.

    finn-plus' ``build_dataflow_cfg`` replaces ``sys.stdout``/``sys.stderr`` with its ``PrintLogger``, calls
    ``logging.basicConfig(force=True)`` with a file handler in the build folder and adds a console handler;
    it restores none of that on success.  Wrap FINN builds in this block so that the calling program's output
    and logging are unchanged afterwards::

        with host_io_preserved():
            build_dataflow_cfg(model_file, cfg)
    """
    import logging
    import warnings

    root = logging.getLogger()
    saved = (sys.stdout, sys.stderr, list(root.handlers), root.level, list(warnings.filters))
    capture = getattr(logging, "_warnings_showwarning", None) is not None
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        for h in list(root.handlers):
            if h not in saved[2]:
                root.removeHandler(h)
                try:
                    h.close()
                except Exception:  # pragma: no cover - a handler that cannot close is still detached
                    pass
        for h in saved[2]:
            if h not in root.handlers:
                root.addHandler(h)
        root.setLevel(saved[3])
        logging.captureWarnings(capture)
        warnings.filters[:] = saved[4]
