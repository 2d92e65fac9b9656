"""The FINN (finn-plus) side of S2N2: custom ops (``LIF``, ``LIF_MVAU``, ``LIF_MVAU_hls``), graph
transformations, build steps, the HLS C++ kernel and the input-buffer memory model (Khodamoradi 2021, ch. 2).

Importing this package does not import finn-plus; the submodules that need it import it themselves (and name
the ``hwreshape[finn]`` extra when it is missing).  ``import finn_s2n2`` registers the ``LIF`` QONNX op through
this package, so qonnx (``hwreshape[qonnx]``) is checked here.
"""

from hwreshape.extras import require

require("qonnx", "finn_s2n2")
