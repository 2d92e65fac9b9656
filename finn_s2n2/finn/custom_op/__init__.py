"""S2N2 custom ops: ``LIF`` (QONNX, domain ``finn_s2n2``), ``LIF_MVAU`` and ``LIF_MVAU_hls`` (FINN).

Import the submodules directly (``finn_s2n2.finn.custom_op.lif_mvau`` imports finn-plus); registration is in
:mod:`finn_s2n2.finn.custom_op.registration`.
"""
