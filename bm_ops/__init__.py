"""Bipolar Morphological (BM) operations: log-domain weights, add/max neurons and convolutions.

Seed ``000_5bd4b4fcc7d8a338`` (Limonova et al., BM ResNet). Light on import: only NumPy is imported here;
``bm_ops.torch`` (PyTorch layers, fast kernel), ``bm_ops.keras`` (Keras 3 layer), ``bm_ops.cost`` (gate/latency
model) and ``bm_ops.recipes`` (layer-wise conversion + fine-tuning) are imported on demand.
"""

from bm_ops.functional import bm_conv2d, bm_linear, to_log_weights

__all__ = ["bm_conv2d", "bm_linear", "to_log_weights"]
