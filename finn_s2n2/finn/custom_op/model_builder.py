"""Model builders for users and tests, in the style of FINN's own test helpers (``make_single_fclayer_modelwrapper``).

Khodamoradi 2021, ch. 2 §2.2.3 (one LIF matrix-vector unit).
"""

from __future__ import annotations

import numpy as np


def make_lif_mvau_model(
    weights,
    *,
    decay_shift: int,
    threshold: int,
    num_ticks: int,
    pe: int = 1,
    simd: int = 1,
    weight_dtype: str | None = None,
    acc_dtype: str = "INT16",
    output_mode: str = "spikes",
    reset: str = "zero",
    overflow: str = "saturate",
    batch: int = 1,
    num_positions: int = 1,
    axonal_delay: int = 0,
    synaptic_delay: int = 0,
    specialize: bool = False,
    name: str = "LIF_MVAU_0",
):
    """One ``LIF_MVAU`` node: input ``(batch * num_ticks, MW)`` BINARY (one frame = one tick, sample-major),
    integer ``weights`` ``(MW, MH)``.  Output ``(batch * num_ticks, MH)`` spikes or ``(batch, MH)`` counters.

    ``num_positions`` > 1 adds a position axis, ``(batch * num_ticks, num_positions, MW)`` (a convolution's
    output pixels: one membrane per position and neuron; ``numInputVectors = [1, num_positions]``).

    ``weight_dtype`` defaults to the smallest signed FINN integer type that holds the weights.
    ``specialize=True`` returns the ``LIF_MVAU_hls`` node directly (domain ``finn.custom_op.fpgadataflow.hls``).
    Executable with ``qonnx.core.onnx_exec.execute_onnx``; attributes are validated immediately.
    """
    from finn_s2n2.finn.custom_op.registration import register_finn

    register_finn()
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.util.basic import qonnx_make_model

    w = np.asarray(weights)
    if w.ndim != 2:
        raise ValueError(
            f"make_lif_mvau_model: weights must be a 2-D (MW, MH) integer array, got shape {w.shape}"
        )
    if not np.all(w == np.round(w)):
        raise ValueError("make_lif_mvau_model: weights must be integers (scale them before building)")
    mw, mh = w.shape
    if weight_dtype is None:
        bits = 2
        while not (-(1 << (bits - 1)) <= w.min(initial=0) and w.max(initial=0) <= (1 << (bits - 1)) - 1):
            bits += 1
        weight_dtype = f"INT{bits}"
    pos = [num_positions] if num_positions > 1 else []
    vecs = [1] + pos
    frames = batch * num_ticks
    inp = helper.make_tensor_value_info("inp", TensorProto.FLOAT, [frames] + pos + [mw])
    outp = helper.make_tensor_value_info("outp", TensorProto.FLOAT, None)
    domain = "finn.custom_op.fpgadataflow.hls" if specialize else "finn.custom_op.fpgadataflow"
    node = helper.make_node(
        "LIF_MVAU_hls" if specialize else "LIF_MVAU",
        ["inp", "weights"],
        ["outp"],
        domain=domain,
        backend="fpgadataflow",
        name=name,
        MW=mw,
        MH=mh,
        SIMD=simd,
        PE=pe,
        numInputVectors=vecs,
        inputDataType="BINARY",
        weightDataType=weight_dtype,
        accDataType=acc_dtype,
        decay_shift=int(decay_shift),
        threshold=int(threshold),
        numTicks=int(num_ticks),
        outputMode=output_mode,
        reset=reset,
        overflow=overflow,
        axonalDelay=int(axonal_delay),
        synapticDelay=int(synaptic_delay),
        tickAxis=0,
    )
    graph = helper.make_graph([node], "lif_mvau_graph", [inp], [outp])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="finn_s2n2"))
    model.set_tensor_datatype("inp", DataType["BINARY"])
    model.set_tensor_datatype("weights", DataType[weight_dtype])
    model.set_initializer("weights", w.astype(np.float32))
    inst = getCustomOp(model.graph.node[0])
    inst.params()
    inst.check_weights(w)
    oshape = [batch if output_mode == "counts" else frames] + pos + [mh]
    model.set_tensor_shape("outp", oshape)
    model.set_tensor_datatype("outp", inst.get_output_datatype())
    return model
