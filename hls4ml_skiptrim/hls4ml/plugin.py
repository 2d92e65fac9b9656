"""hls4ml Extension-API registration of the fused short-skip layer (entry point ``hls4ml.backends``).

hls4ml 1.3 calls every ``hls4ml.backends`` entry point while ``import hls4ml`` is still running
(``hls4ml/backends/plugin_loader.py``): the object is called as ``obj(register_backend=..., register_writer=...)``.
We add no backend or writer -- we extend the existing Vivado and Vitis backends -- so both arguments are
accepted and ignored.  Only explicit submodule imports are used (attribute access on the half-imported
``hls4ml`` package fails at that point).  Registration is idempotent: a second call is a no-op.

Registered per backend (Vivado, Vitis): the IR layer ``ShortSkipConv2D``, the optimizer pass
``fuse_short_skip`` (in ``vivado:optimize``, which the Vitis flow reuses), the config and function-call
templates and the C++ header ``nnet_utils/nnet_shortskip.h``.
"""

from __future__ import annotations

import threading
from pathlib import Path

BACKENDS = ("Vivado", "Vitis")
HEADER_PATH = Path(__file__).resolve().parent / "nnet_utils" / "nnet_shortskip.h"

_lock = threading.Lock()
_registered = False


def is_registered() -> bool:
    """True once the layer, pass, templates and header are registered with hls4ml."""
    return _registered


def register(register_backend=None, register_writer=None, **_ignored) -> bool:
    """Register the fused layer with hls4ml's Vivado and Vitis backends; returns True if it did anything."""
    global _registered
    with _lock:
        if _registered:
            return False
        if not HEADER_PATH.is_file():
            raise FileNotFoundError(
                f"hls4ml_skiptrim: C++ header {HEADER_PATH} is missing from the installation "
                "(package data 'nnet_utils/*.h' not shipped)"
            )
        from hls4ml.backends.backend import get_backend
        from hls4ml.model.flow import get_flow
        from hls4ml.model.layers import layer_map, register_layer
        from hls4ml.model.optimizer.optimizer import optimizer_map

        from hls4ml_skiptrim.hls4ml.layers import LAYER_NAME, ShortSkipConv2D
        from hls4ml_skiptrim.hls4ml.passes import PASS_NAME, FuseShortSkip
        from hls4ml_skiptrim.hls4ml.templates import (
            ShortSkipConv2DConfigTemplate,
            ShortSkipConv2DFunctionTemplate,
        )

        if layer_map.get(LAYER_NAME) is None:
            register_layer(LAYER_NAME, ShortSkipConv2D)
        for bname in BACKENDS:
            backend = get_backend(bname)
            prefix = bname.lower() + ":"
            if bname == "Vivado" and prefix + PASS_NAME not in optimizer_map:
                # Vitis reuses the 'vivado:optimize' flow, so one pass serves both backends.
                backend.register_pass(PASS_NAME, FuseShortSkip, flow="vivado:optimize")
            for tcls in (ShortSkipConv2DConfigTemplate, ShortSkipConv2DFunctionTemplate):
                if prefix + tcls().get_name() not in optimizer_map:
                    backend.register_template(tcls)
            backend.register_source(HEADER_PATH)
        if PASS_NAME not in [o.split(":")[-1] for o in get_flow("vivado:optimize").optimizers]:
            raise RuntimeError("hls4ml_skiptrim: fuse_short_skip is missing from the vivado:optimize flow")
        _registered = True
        return True
