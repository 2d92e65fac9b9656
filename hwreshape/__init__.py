"""hwreshape: reshape neural networks for cheaper FPGA/ASIC hardware inside FINN and hls4ml.

The distribution holds four plugin packages (``finn_s2n2``, ``hls4ml_skiptrim``, ``bm_ops``, ``aslr``)
and this thin front door (``hwreshape`` console script: ``env``, ``demo``, ``report``).
"""

__version__ = "0.1.0"
