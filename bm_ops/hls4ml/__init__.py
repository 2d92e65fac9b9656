"""hls4ml plugin of the BM conv layer (Extension API): IR layer, frontends, templates, C++ header.

Entry point (``[project.entry-points."hls4ml.backends"]``): ``bm_ops = "bm_ops.hls4ml:register"``.
hls4ml calls it at ``import hls4ml``; calling it again is a no-op. Nothing heavy is imported at module import.

Opt-in by construction: everything registered reacts only to BM layers (``bm_ops.keras.BMConv2D``,
``bm_ops.torch.BMConv2d``), so a model without one converts to exactly the project vanilla hls4ml writes.  The
C++ header is copied by a write-flow pass into projects that contain a BM layer (hls4ml's ``register_source``
would copy it into every project of the backend).  When ``bm_ops.hls4ml.layer``/``templates`` is half-imported
at the time hls4ml calls the entry point (a user imported it before hls4ml), registration is finished at the end
of that import.
"""

from __future__ import annotations

from hwreshape.extras import needs_hls4ml  # noqa: F401  # isort: skip
import shutil
import sys
import threading
from pathlib import Path

__all__ = ["register", "HEADER", "BACKENDS"]

HEADER = Path(__file__).resolve().parent / "nnet_utils" / "nnet_bm_conv.h"
BACKENDS = ("Vivado", "Vitis")
HEADER_PASS = "bm_header"
QUANTIZE_PASS = "bm_quantize"
REUSE_PASS = "bm_reuse_factor"
_done: set[str] = set()
_lock = threading.RLock()
_deferred = False
_OWN_MODULES = {"bm_ops.hls4ml.layer": "BMConv2D", "bm_ops.hls4ml.templates": "BMConv2DFunctionTemplate"}


def _half_imported() -> bool:
    return any(
        name in sys.modules and not hasattr(sys.modules[name], attr) for name, attr in _OWN_MODULES.items()
    )


def resume() -> None:
    """Finish a registration deferred while one of our modules was half-imported (called at their end)."""
    if _deferred:
        register()


def _write_header(model) -> bool:
    """Write-flow pass body: copy ``nnet_bm_conv.h`` into projects that contain a BM layer."""
    if any(node.class_name == "BMConv2D" for node in model.graph.values()):
        dst = Path(model.config.get_output_dir()) / "firmware" / "nnet_utils"
        dst.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HEADER, dst / HEADER.name)
    return False


def _header_pass():
    """The write-flow pass instance (built here: hls4ml is not imported at module import)."""
    from hls4ml.model.optimizer.optimizer import ModelOptimizerPass

    return ModelOptimizerPass(HEADER_PASS, _write_header)


def register(register_backend=None, register_writer=None, **_ignored) -> None:
    """Register the ``BMConv2D`` layer, its Keras 3 / PyTorch handlers, templates and header pass (idempotent).

    Signature matches hls4ml's plugin loader (``register_backend``/``register_writer`` are not needed: the BM
    layer extends the existing Vivado and Vitis backends instead of adding a backend).
    """
    global _deferred
    with _lock:
        if _half_imported():
            _deferred = True
            return
        _deferred = False
        # explicit submodule imports: this runs while ``hls4ml`` itself is still being imported
        from hls4ml.backends.backend import get_backend
        from hls4ml.model.flow import get_backend_flows, get_flow
        from hls4ml.model.layers import layer_map, register_layer
        from hls4ml.model.optimizer.optimizer import optimizer_map, register_pass

        from bm_ops.hls4ml.layer import BMConv2D, BMQuantize, BMReuseFactor
        from bm_ops.hls4ml.templates import BMConv2DConfigTemplate, BMConv2DFunctionTemplate

        if layer_map.get("BMConv2D") is not BMConv2D:
            register_layer("BMConv2D", BMConv2D)
        if QUANTIZE_PASS not in optimizer_map:
            register_pass(QUANTIZE_PASS, BMQuantize)
            convert = get_flow("convert").optimizers  # right before hls4ml's precision inference
            convert.insert(convert.index("infer_precision_types"), QUANTIZE_PASS)
        if f"vivado:{REUSE_PASS}" not in optimizer_map:  # init_layers of Vivado, shared by Vitis
            get_backend("Vivado").register_pass(REUSE_PASS, BMReuseFactor, flow="vivado:init_layers")
        for name in BACKENDS:
            if name in _done:
                continue
            backend = get_backend(name)
            backend.register_template(BMConv2DConfigTemplate)
            backend.register_template(BMConv2DFunctionTemplate)
            if f"{name.lower()}:{HEADER_PASS}" not in optimizer_map:
                write_hls = f"{name.lower()}:write_hls"
                flows = [f for f in get_backend_flows(name.lower()) if write_hls in get_flow(f).optimizers]
                backend.register_pass(HEADER_PASS, _header_pass(), flow=flows)
            _done.add(name)
        try:
            from bm_ops.hls4ml.frontends import register_frontends

            register_frontends()
        except ImportError as exc:  # pragma: no cover - converters half-imported; retried on next call
            if "partially initialized" not in str(exc) and "circular import" not in str(exc):
                raise
