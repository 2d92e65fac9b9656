"""hls4ml plugin of the BM conv layer (Extension API): IR layer, frontends, templates, C++ header.

Entry point (``[project.entry-points."hls4ml.backends"]``): ``bm_ops = "bm_ops.hls4ml:register"``.
hls4ml calls it at ``import hls4ml``; calling it again is a no-op. Nothing heavy is imported at module import.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["register", "HEADER", "BACKENDS"]

HEADER = Path(__file__).resolve().parent / "nnet_utils" / "nnet_bm_conv.h"
BACKENDS = ("Vivado", "Vitis")
_done: set[str] = set()


def register(register_backend=None, register_writer=None, **_ignored) -> None:
    """Register the ``BMConv2D`` layer, its Keras 3 / PyTorch handlers, templates and C++ source (idempotent).

    Signature matches hls4ml's plugin loader (``register_backend``/``register_writer`` are not needed: the BM
    layer extends the existing Vivado and Vitis backends instead of adding a backend).
    """
    # explicit submodule imports: this runs while ``hls4ml`` itself is still being imported
    from hls4ml.backends.backend import get_backend
    from hls4ml.model.layers import layer_map, register_layer

    from bm_ops.hls4ml.layer import BMConv2D
    from bm_ops.hls4ml.templates import BMConv2DConfigTemplate, BMConv2DFunctionTemplate

    if layer_map.get("BMConv2D") is not BMConv2D:
        register_layer("BMConv2D", BMConv2D)
    for name in BACKENDS:
        if name in _done:
            continue
        backend = get_backend(name)
        backend.register_template(BMConv2DConfigTemplate)
        backend.register_template(BMConv2DFunctionTemplate)
        backend.register_source(str(HEADER))
        _done.add(name)
    try:
        from bm_ops.hls4ml.frontends import register_frontends

        register_frontends()
    except ImportError as exc:  # pragma: no cover - converters half-imported; retried on next call
        if "partially initialized" not in str(exc) and "circular import" not in str(exc):
            raise
