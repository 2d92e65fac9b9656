"""finn_s2n2 — S2N2 streaming spiking neural networks as a FINN (finn-plus) plugin.

Khodamoradi 2021, chapter 2.  Importing this package registers the ops
(:func:`register`, idempotent): the ``LIF`` QONNX node in the domain ``finn_s2n2`` at once, and the hardware
ops ``LIF_MVAU`` / ``LIF_MVAU_hls`` in FINN's ``finn.custom_op.fpgadataflow[.hls]`` domains as soon as
finn-plus is imported (a post-import hook keeps ``import finn_s2n2`` cheap: no finn-plus, no TensorFlow).

Modules: :mod:`~finn_s2n2.numerics` (membrane fixed point), :mod:`~finn_s2n2.finn.custom_op` (LIF, LIF_MVAU,
LIF_MVAU_hls), :mod:`~finn_s2n2.finn.transformation` (InferLIFLayers, PushDelaysToOutput),
:mod:`~finn_s2n2.finn.build` (build steps, ``S2N2_ESTIMATE_STEPS`` / ``S2N2_CODEGEN_STEPS``, ``S2N2SetFolding``, the
performance report), :mod:`~finn_s2n2.finn.buffers` (Eq 2.5/2.6).  FINN-native shapes: one frame = one tick
(see docs/s2n2_finn.md).
"""

from finn_s2n2.finn.custom_op.registration import register

__all__ = ["LIF", "make_lif_mvau_model", "register"]

register()


def __getattr__(name):
    # lazy: qonnx discovers the LIF op of the domain "finn_s2n2" through this package's __all__
    if name == "LIF":
        from finn_s2n2.finn.custom_op.lif import LIF

        return LIF
    if name == "make_lif_mvau_model":
        from finn_s2n2.finn.custom_op.model_builder import make_lif_mvau_model

        return make_lif_mvau_model
    raise AttributeError(f"module 'finn_s2n2' has no attribute {name!r}")
