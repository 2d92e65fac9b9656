"""The PyTorch/Brevitas SNN front end of S2N2: trainable LIF layers, the network builders, spike encoders
and the QONNX / NIR import and export (Khodamoradi 2021, §2.1–§2.4)."""

from hwreshape.extras import require

require("snn", __name__)
