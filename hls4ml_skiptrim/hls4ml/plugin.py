"""hls4ml Extension-API registration of the fused short-skip layer (entry point ``hls4ml.backends``).

**Opt-in.**  Registration only makes the layer *available*; a conversion is changed only when its convert config
asks for it (``hls_config['Model']['ShortSkipFusion'] = True``, see :mod:`hls4ml_skiptrim.hls4ml.config`).  With
the package installed and nothing enabled, every hls4ml project is byte-identical to vanilla hls4ml: the fusion
pass and the config check return at once, and the C++ header is copied into a project only when the project
contains a fused layer (a write-flow pass, instead of hls4ml's ``register_source``, which would copy it into
*every* project of the backend).

hls4ml 1.3 calls every ``hls4ml.backends`` entry point while ``import hls4ml`` is still running
(``hls4ml/backends/plugin_loader.py``) as ``obj(register_backend=..., register_writer=...)``.  We add no backend
or writer -- we extend the existing Vivado and Vitis backends -- so both arguments are accepted and ignored.
Only explicit submodule imports are used (attribute access on the half-imported ``hls4ml`` package fails at that
point).  Registration is idempotent.  When one of our own modules is being imported at that moment (a user
imported ``hls4ml_skiptrim.hls4ml.layers`` before hls4ml), registration is deferred to the end of that import.

Registered:

* the IR layer ``ShortSkipConv2D``;
* ``shortskip_config`` in hls4ml's backend-independent ``optimize`` flow (every backend): validates the keys,
  creates ``hls_model.shortskip_report`` when enabled and, on a backend other than Vivado/Vitis, switches fusion
  off with a logged reason (``ShortSkipFusion=True`` on a layer then raises: the block cannot be fused there);
* ``fuse_short_skip`` in ``vivado:optimize`` (the Vitis flow reuses it);
* config/function templates and ``shortskip_header`` (header copy) in each write flow of Vivado and Vitis.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
from pathlib import Path

BACKENDS = ("Vivado", "Vitis")
HEADER_PATH = Path(__file__).resolve().parent / "nnet_utils" / "nnet_shortskip.h"
CONFIG_PASS = "shortskip_config"
HEADER_PASS = "shortskip_header"

log = logging.getLogger("hls4ml_skiptrim")

_lock = threading.RLock()
_registered = False
_deferred = False
#: our modules and a name each defines (absent while the module is half-imported)
_OWN_MODULES = {
    "hls4ml_skiptrim.hls4ml.layers": "ShortSkipConv2D",
    "hls4ml_skiptrim.hls4ml.passes": "FuseShortSkip",
    "hls4ml_skiptrim.hls4ml.templates": "ShortSkipConv2DFunctionTemplate",
}


def is_registered() -> bool:
    """True once the layer, passes and templates are registered with hls4ml."""
    return _registered


def _half_imported() -> bool:
    return any(
        name in sys.modules and not hasattr(sys.modules[name], attr) for name, attr in _OWN_MODULES.items()
    )


def resume() -> None:
    """Finish a registration deferred while one of our modules was half-imported (called at their end)."""
    if _deferred:
        register()


def _check_config(model) -> bool:
    """Body of the ``shortskip_config`` pass (runs once per conversion, every backend)."""
    from hls4ml.model.layers import Merge

    from hls4ml_skiptrim.hls4ml.config import settings_of
    from hls4ml_skiptrim.hls4ml.passes import _report

    settings = settings_of(model)  # raises on invalid keys/values
    if not settings.enabled:
        return False
    report = _report(model)
    backend = model.config.backend.name
    if backend in BACKENDS:
        return False
    reason = f"backend {backend!r} is not supported by the fused short-skip layer ({', '.join(BACKENDS)} are)"
    if settings.layer_requests:
        raise ValueError(f"ShortSkipFusion=True on a layer but {reason}")
    for node in model.graph.values():
        if isinstance(node, Merge) and str(node.get_attr("op", "")).lower() == "add":
            report[node.name] = f"fusion off: {reason}"
    log.warning("short skip: fusion off: %s", reason)
    return False


def _write_header(model) -> bool:
    """Body of the ``shortskip_header`` pass: copy the C++ header into projects that use the fused layer."""
    from hls4ml_skiptrim.hls4ml.layers import LAYER_NAME

    if any(node.class_name == LAYER_NAME for node in model.graph.values()):
        dst = Path(model.config.get_output_dir()) / "firmware" / "nnet_utils"
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HEADER_PATH, dst / HEADER_PATH.name)
    return False


def writer_flows(backend_name: str) -> list[str]:
    """Flows of a backend that write the project (contain ``<backend>:write_hls``)."""
    from hls4ml.model.flow import get_backend_flows, get_flow

    target = backend_name.lower() + ":write_hls"
    return [f for f in get_backend_flows(backend_name.lower()) if target in get_flow(f).optimizers]


def register(register_backend=None, register_writer=None, **_ignored) -> bool:
    """Register the fused layer with hls4ml (inert until a convert config enables it); True if it did anything."""
    global _registered, _deferred
    with _lock:
        if _registered:
            return False
        if _half_imported():
            _deferred = True
            return False
        if not HEADER_PATH.is_file():
            raise FileNotFoundError(
                f"hls4ml_skiptrim: C++ header {HEADER_PATH} is missing from the installation "
                "(package data 'nnet_utils/*.h' not shipped)"
            )
        from hls4ml.backends.backend import get_backend
        from hls4ml.model.flow import get_flow, update_flow
        from hls4ml.model.layers import layer_map, register_layer
        from hls4ml.model.optimizer.optimizer import ModelOptimizerPass, optimizer_map, register_pass

        from hls4ml_skiptrim.hls4ml.layers import LAYER_NAME, ShortSkipConv2D
        from hls4ml_skiptrim.hls4ml.passes import PASS_NAME, FuseShortSkip
        from hls4ml_skiptrim.hls4ml.templates import (
            ShortSkipConv2DConfigTemplate,
            ShortSkipConv2DFunctionTemplate,
        )

        if layer_map.get(LAYER_NAME) is None:
            register_layer(LAYER_NAME, ShortSkipConv2D)
        if CONFIG_PASS not in optimizer_map:
            register_pass(CONFIG_PASS, ModelOptimizerPass(CONFIG_PASS, _check_config))
            update_flow("optimize", add_optimizers=[CONFIG_PASS])
        for bname in BACKENDS:
            backend = get_backend(bname)
            prefix = bname.lower() + ":"
            if bname == "Vivado" and prefix + PASS_NAME not in optimizer_map:
                # Vitis reuses the 'vivado:optimize' flow, so one pass serves both backends.
                backend.register_pass(PASS_NAME, FuseShortSkip, flow="vivado:optimize")
            for tcls in (ShortSkipConv2DConfigTemplate, ShortSkipConv2DFunctionTemplate):
                if prefix + tcls().get_name() not in optimizer_map:
                    backend.register_template(tcls)
            if prefix + HEADER_PASS not in optimizer_map:
                backend.register_pass(
                    HEADER_PASS, ModelOptimizerPass(HEADER_PASS, _write_header), flow=writer_flows(bname)
                )
        if PASS_NAME not in [o.split(":")[-1] for o in get_flow("vivado:optimize").optimizers]:
            raise RuntimeError("hls4ml_skiptrim: fuse_short_skip is missing from the vivado:optimize flow")
        _registered = True
        _deferred = False
        return True
