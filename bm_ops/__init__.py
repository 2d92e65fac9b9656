"""Bipolar Morphological (BM) operations: log-domain weights, add/max neurons and convolutions.

Limonova et al. (BM ResNet). Light on import: only NumPy is imported here;
``bm_ops.torch`` (PyTorch layers, fast kernel), ``bm_ops.keras`` (Keras 3 layer), ``bm_ops.cost`` (gate/latency
model) and ``bm_ops.training.recipes`` (layer-wise conversion + fine-tuning) are imported on demand.

The QONNX ops ``BMConv``/``BMMatMul`` are listed here too and load (with qonnx) on first access: qonnx 1.0
resolves a node's ``bm_ops`` domain by importing this package and reading ``__all__``, so a saved BM graph
executes with ``qonnx.core.onnx_exec.execute_onnx`` in a fresh process without importing ``bm_ops.qonnx.custom_op``.
"""

from bm_ops.functional import bm_conv2d, bm_linear, to_log_weights

__all__ = ["bm_conv2d", "bm_linear", "to_log_weights", "BMConv", "BMMatMul"]

_QONNX_OPS = ("BMConv", "BMMatMul")


def __getattr__(name: str):
    if name in _QONNX_OPS:
        from bm_ops.qonnx import custom_op

        return getattr(custom_op, name)
    raise AttributeError(f"module 'bm_ops' has no attribute {name!r}")
