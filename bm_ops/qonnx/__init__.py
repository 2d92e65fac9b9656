"""QONNX side of the BM operations: the ``BMConv``/``BMMatMul`` custom ops (domain ``bm_ops``) and the
exporter from PyTorch models."""

from hwreshape.extras import require

require("qonnx", __name__)
