"""Input-buffer memory: tick-batching (Eq 2.5) versus S2N2 streaming, the Eq 2.6 condition, model reports.

Khodamoradi 2021, ch. 2, §2.2.1 (Eq 2.5 ``buffer bits = p S T log2(S T)``, Eq 2.6 ``p log2(S T) < 1``), §2.2.3
(streaming MVTU input buffer = kernel size x input channels for 1-bit spikes) and Tables 2.3, 2.5, 2.8.

Conventions that reproduce every printed row of Tables 2.3/2.5/2.8 exactly (see tests/test_s2n2_buffers.py):

* the event address uses a whole number of bits: ``ceil(log2(S T))``, and the buffer size is rounded up to
  whole bits: ``tick_batching_bits = ceil(p * S * T * ceil(log2(S * T)))``;
* convolution rows: ``streaming_bits = kernel_size * in_channels`` (``K_W x K_H x I_Ch``, §2.2.3);
* **dense rows**: the dissertation prints the layer's *neuron count* (Table 2.3: 128 and 11 bits, Table 2.5: 1,024
  and 24, Table 2.8: 10) — not the FINN MVAU input buffer of a fully connected layer, which holds the whole
  input vector (``MW`` bits).  :func:`dense_streaming_bits` returns the dissertation's value; the model report lists
  both (``streaming_bits`` = dissertation convention, ``mvau_input_buffer_bits`` = MW).
* the improvement column of the dissertation truncates the ratio in 11 rows and rounds it up in 3 (rf1 Conv.1
  76.7 -> x77, rf1 Conv.2 1,743.3 -> x1,744, rf2 Conv.1 736.1 -> x737); :func:`improvement` returns the
  exact ratio and the test states per row which of the two the dissertation used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


def _check_pos_int(v, what):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{what} must be a positive int, got {v!r}")
    return v


def _check_ratio(p, what="spike_ratio"):
    if not isinstance(p, (int, float)) or not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{what} must be a number in [0, 1] (fraction of inputs that spike), got {p!r}")
    return float(p)


def address_bits(num_inputs: int, num_ticks: int) -> int:
    """Bits of one encoded event: position and tick, ``ceil(log2(S T))`` (§2.2.1)."""
    _check_pos_int(num_inputs, "num_inputs")
    _check_pos_int(num_ticks, "num_ticks")
    return max(1, math.ceil(math.log2(num_inputs * num_ticks)))


def tick_batching_bits(num_inputs: int, num_ticks: int, spike_ratio: float) -> int:
    """Eq 2.5: bits to buffer ``p S T`` encoded events of ``ceil(log2(S T))`` bits, rounded up to whole bits."""
    p = _check_ratio(spike_ratio)
    st = num_inputs * num_ticks
    # round(., 6) removes float noise such as 37748736.00000001 before rounding up to whole bits
    return math.ceil(round(p * st * address_bits(num_inputs, num_ticks), 6))


def binary_tensor_bits(num_inputs: int, num_ticks: int) -> int:
    """Bits of the whole binary spike tensor ``S T`` (one bit per input and tick)."""
    return _check_pos_int(num_inputs, "num_inputs") * _check_pos_int(num_ticks, "num_ticks")


def encoding_is_smaller(num_inputs: int, num_ticks: int, spike_ratio: float) -> bool:
    """Eq 2.6: encoded events need less memory than the binary tensor iff ``p log2(S T) < 1``."""
    return _check_ratio(spike_ratio) * address_bits(num_inputs, num_ticks) < 1.0


def max_ratio_for_encoding(num_inputs: int, num_ticks: int) -> float:
    """The spike ratio below which Eq 2.6 holds: ``1 / ceil(log2(S T))`` (Khodamoradi 2021: 64x16x16 x 16 ticks -> 1/18)."""
    return 1.0 / address_bits(num_inputs, num_ticks)


def streaming_bits(kernel_size: int | tuple[int, int], in_channels: int) -> int:
    """S2N2 streaming input buffer of a convolution with 1-bit spikes: ``K_W x K_H x I_Ch`` bits (§2.2.3)."""
    if isinstance(kernel_size, (tuple, list)):
        kh, kw = (_check_pos_int(int(k), "kernel_size") for k in kernel_size)
    else:
        kh = kw = _check_pos_int(kernel_size, "kernel_size")
    return kh * kw * _check_pos_int(in_channels, "in_channels")


def dense_streaming_bits(num_neurons: int) -> int:
    """The dissertation's buffer entry for a dense layer: its neuron count (see module docstring)."""
    return _check_pos_int(num_neurons, "num_neurons")


def improvement(tick_bits: int, stream_bits: int) -> float:
    """Memory improvement factor of streaming over tick-batching (exact ratio)."""
    return tick_bits / _check_pos_int(stream_bits, "stream_bits")


@dataclass
class LayerBuffer:
    """One row of a buffer report (Tables 2.3/2.5/2.8)."""

    name: str
    num_ticks: int
    input_size: int
    spike_ratio: float
    tick_batching_bits: int
    streaming_bits: int
    improvement: float
    eq26_encoding_smaller: bool
    mvau_input_buffer_bits: int
    #: bits of the sliding-window unit's own line buffer in front of the unit (conv layers; 0 for dense):
    #: ``((K_h - 1) * W + K_w) * C`` for 1-bit spikes, W the (padded) input width.  The §2.2.1 comparison
    #: of streaming against tick-batching has to count it too, not only Eq 2.5's MVTU input vector.
    sliding_window_bits: int = 0


def layer_buffer(
    name, *, kind, num_ticks, input_shape, spike_ratio, kernel_size=None, out_features=None, swu_width=None
):
    """Report row for one layer: ``kind`` "conv" (needs ``kernel_size``; ``input_shape`` (C, H, W)) or
    "dense" (needs ``out_features``; ``input_shape`` any)."""
    s = math.prod(int(v) for v in input_shape)
    tb = tick_batching_bits(s, num_ticks, spike_ratio)
    if kind == "conv":
        if kernel_size is None or len(input_shape) != 3:
            raise ValueError(f"layer {name!r}: a conv row needs kernel_size and input_shape (C, H, W)")
        sb = streaming_bits(kernel_size, int(input_shape[0]))
        mvau = sb
        kh, kw = kernel_size if isinstance(kernel_size, (tuple, list)) else (kernel_size, kernel_size)
        width = int(swu_width) if swu_width is not None else int(input_shape[2])
        swb = ((int(kh) - 1) * width + int(kw)) * int(input_shape[0])
    elif kind == "dense":
        if out_features is None:
            raise ValueError(f"layer {name!r}: a dense row needs out_features")
        sb = dense_streaming_bits(int(out_features))
        mvau = s
        swb = 0
    else:
        raise ValueError(f"layer {name!r}: kind must be 'conv' or 'dense', got {kind!r}")
    return LayerBuffer(
        name,
        num_ticks,
        s,
        float(spike_ratio),
        tb,
        sb,
        improvement(tb, sb),
        encoding_is_smaller(s, num_ticks, spike_ratio),
        mvau,
        swb,
    )


def buffer_report(layers: list[dict], spike_ratios: list[float] | dict, num_ticks: int) -> list[LayerBuffer]:
    """Rows for a list of layer descriptions (``name, kind, input_shape, kernel_size|out_features``)."""
    if isinstance(spike_ratios, dict):
        ratios = [spike_ratios[layer["name"]] for layer in layers]
    else:
        ratios = list(spike_ratios)
    if len(ratios) != len(layers):
        raise ValueError(f"need one spike ratio per layer: {len(layers)} layers, {len(ratios)} ratios")
    return [layer_buffer(num_ticks=num_ticks, spike_ratio=r, **layer) for layer, r in zip(layers, ratios)]


def model_buffer_report(model, spike_ratios: list[float] | dict) -> list[LayerBuffer]:
    """Buffer report for a FINN model with ``LIF_MVAU`` nodes (in graph order), given per-layer spike ratios.

    A LIF_MVAU fed by a ``ConvolutionInputGenerator*`` is a convolution (input = the sliding window's input
    feature map, before an ``FMPadding*`` if present); otherwise a dense layer with ``MW`` inputs.
    """
    from qonnx.custom_op.registry import getCustomOp

    layers = []
    for node in model.graph.node:
        if not node.op_type.startswith("LIF_MVAU"):
            continue
        inst = getCustomOp(node)
        prod = model.find_producer(node.input[0])
        if prod is not None and prod.op_type.startswith("ConvolutionInputGenerator"):
            swu = getCustomOp(prod)
            ch = swu.get_nodeattr("IFMChannels")
            h, w = swu.get_nodeattr("IFMDim")
            swu_w = w
            pad = model.find_producer(prod.input[0])
            if pad is not None and pad.op_type.startswith("FMPadding"):
                pinst = getCustomOp(pad)
                h, w = pinst.get_nodeattr("ImgDim")
            layers.append(
                dict(
                    name=node.name,
                    kind="conv",
                    input_shape=(ch, h, w),
                    kernel_size=tuple(swu.get_nodeattr("ConvKernelDim")),
                    swu_width=swu_w,
                )
            )
        else:
            layers.append(
                dict(
                    name=node.name,
                    kind="dense",
                    input_shape=(inst.get_nodeattr("MW"),),
                    out_features=inst.get_nodeattr("MH"),
                )
            )
    if not layers:
        raise ValueError("model has no LIF_MVAU nodes")
    ticks = {
        getCustomOp(n).get_nodeattr("numTicks") for n in model.graph.node if n.op_type.startswith("LIF_MVAU")
    }
    if len(ticks) != 1:
        raise ValueError(f"LIF_MVAU nodes disagree on numTicks: {sorted(ticks)}")
    return buffer_report(layers, spike_ratios, ticks.pop())


def format_report(rows: list[LayerBuffer]) -> str:
    """A text table in the layout of Tables 2.3/2.5/2.8."""
    head = f"{'layer':<14}{'#ticks':>7}{'input':>9}{'ratio':>8}{'tick-batching':>15}{'S2N2':>8}{'improvement':>13}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.name:<14}{r.num_ticks:>7}{r.input_size:>9}{r.spike_ratio:>8.2%}"
            f"{r.tick_batching_bits:>15,}{r.streaming_bits:>8,}{r.improvement:>13,.1f}"
        )
    return "\n".join(lines)


def as_dicts(rows: list[LayerBuffer]) -> list[dict]:
    return [asdict(r) for r in rows]
