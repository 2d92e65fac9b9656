"""Node attributes shared by the ``LIF`` QONNX node and the ``LIF_MVAU`` hardware op, and their validation.

Khodamoradi 2021, ch. 2, Eq 2.3/2.4 (decay d, threshold T, reset), §2.2.2 (fixed per-layer axonal/synaptic delays)
and §2.2.3 (last-tick control, output counters).  The arithmetic itself lives in :mod:`finn_s2n2.numerics`.

Every check raises ``ValueError``/``TypeError`` that names the node and the attribute, so that a bad graph
fails at transformation time instead of producing a silently wrong result.
"""

from __future__ import annotations

from dataclasses import dataclass

from finn_s2n2 import numerics

#: attribute name -> (ONNX attribute type, required, default) in qonnx' ``get_nodeattr_types`` format.
LIF_NODEATTRS = {
    # d = 1 - 2**-decay_shift (Eq 2.3, shift-subtract decay); 0 = "unset" and is rejected by validation
    "decay_shift": ("i", False, 0),
    # optional float leak d of Eq 2.3 (0.0 = unset); must be 1 - 2**-k, it then defines/checks decay_shift
    "decay": ("f", False, 0.0),
    # threshold T of Eq 2.4 in membrane units (integer inside the accDataType range)
    "threshold": ("i", False, 0),
    # ticks per sample; the membrane is reset at the last tick; 0 = "unset" and is rejected
    "numTicks": ("i", False, 0),
    # membrane type: a signed FINN integer type INT2..INT32
    "accDataType": ("s", False, "INT16"),
    # "zero" (Eq 2.3) or "subtract" (membrane minus threshold after a spike)
    "reset": ("s", False, "zero"),
    # "saturate" or "wrap" (two's complement), applied once per tick to decay(m) + I
    "overflow": ("s", False, "saturate"),
    # "spikes": binary spikes per tick; "counts": per-neuron spike counters emitted at the last tick
    "outputMode": ("s", False, "spikes"),
    # fixed per-layer delays in ticks (§2.2.2); executed as a shift of this node's output
    "axonalDelay": ("i", False, 0),
    "synapticDelay": ("i", False, 0),
    # accumulated delay of upstream layers pushed to this (output) node by PushDelaysToOutput
    "outputDelay": ("i", False, 0),
    # how this node's delays act (§2.2.2): "window" shifts its output spikes inside each sample's numTicks
    # window (zeros in, tail dropped); "latency" only delays the stream (the counter window moves with it),
    # so per-sample outputs equal the delay-free ones and the delay is reported as latency
    "delayMode": ("s", False, "window"),
    # 0: axis 0 holds N*numTicks frames (sample-major, FINN streaming order); 1: axis 1 is the tick axis
    "tickAxis": ("i", False, 0),
}


@dataclass(frozen=True)
class LIFParams:
    """Validated LIF parameters of one node."""

    decay_shift: int
    threshold: int
    num_ticks: int
    acc_bits: int
    reset: str
    overflow: str
    output_mode: str
    delay: int  # executed shift inside the window: axonalDelay + synapticDelay + outputDelay ("window" mode)
    tick_axis: int
    latency: int = 0  # the same sum in "latency" mode (executed as a plain stream delay: outputs unchanged)

    @property
    def count_bits(self) -> int:
        return numerics.count_bits(self.num_ticks)


def _name(node) -> str:
    return f"{node.op_type} node '{node.name or '<unnamed>'}'"


def validate_lif_attrs(op) -> LIFParams:
    """Read and check the LIF attributes of a qonnx ``CustomOp`` instance ``op``; return :class:`LIFParams`."""
    from qonnx.core.datatype import DataType

    node = op.onnx_node
    who = _name(node)
    ticks = op.get_nodeattr("numTicks")
    if ticks is None or int(ticks) < 1:
        raise ValueError(
            f"{who}: attribute numTicks is missing or < 1 (got {ticks}); set the ticks per sample"
        )
    acc_name = op.get_nodeattr("accDataType")
    try:
        acc = DataType[acc_name]
    except (KeyError, AttributeError) as e:
        raise ValueError(f"{who}: attribute accDataType={acc_name!r} is not a FINN DataType") from e
    if not acc.is_integer() or not acc.signed() or acc.bitwidth() < 2:
        raise ValueError(
            f"{who}: attribute accDataType must be a signed integer type INT2..INT32, got {acc_name}"
        )
    acc_bits = numerics.check_acc_bits(acc.bitwidth(), f"{who}: accDataType bits")
    k = op.get_nodeattr("decay_shift")
    d = float(op.get_nodeattr("decay"))
    if d != 0.0:
        k_d = numerics.decay_shift_from_factor(d, f"{who}: attribute decay")
        if k not in (0, k_d):
            raise ValueError(f"{who}: attribute decay={d} (shift {k_d}) contradicts decay_shift={k}")
        k = k_d
    if k == 0:
        raise ValueError(
            f"{who}: attribute decay_shift is missing (the decay must be a shift: d = 1 - 2**-decay_shift, "
            f"decay_shift >= 1; use numerics.decay_shift_from_factor(d) to convert a float decay)"
        )
    k = numerics.check_decay_shift(k, f"{who}: attribute decay_shift")
    thr = numerics.check_threshold(op.get_nodeattr("threshold"), acc_bits, f"{who}: attribute threshold")
    reset = op.get_nodeattr("reset")
    if reset not in numerics.RESET_MODES:
        raise ValueError(f"{who}: attribute reset must be one of {numerics.RESET_MODES}, got {reset!r}")
    ovf = op.get_nodeattr("overflow")
    if ovf not in numerics.OVERFLOW_MODES:
        raise ValueError(f"{who}: attribute overflow must be one of {numerics.OVERFLOW_MODES}, got {ovf!r}")
    mode = op.get_nodeattr("outputMode")
    if mode not in ("spikes", "counts"):
        raise ValueError(f"{who}: attribute outputMode must be 'spikes' or 'counts', got {mode!r}")
    delays = {a: int(op.get_nodeattr(a)) for a in ("axonalDelay", "synapticDelay", "outputDelay")}
    for a, v in delays.items():
        if v < 0:
            raise ValueError(f"{who}: attribute {a} must be >= 0 ticks, got {v}")
    delay = sum(delays.values())
    delay_mode = op.get_nodeattr("delayMode")
    if delay_mode not in ("window", "latency"):
        raise ValueError(f"{who}: attribute delayMode must be 'window' or 'latency', got {delay_mode!r}")
    if delay > 0 and thr < 0:
        raise ValueError(
            f"{who}: delays ({delays}) need threshold >= 0: a neuron with threshold {thr} < 0 fires without "
            f"input, so its delay cannot be pushed to the output (§2.2.2)"
        )
    tick_axis = int(op.get_nodeattr("tickAxis"))
    if tick_axis not in (0, 1):
        raise ValueError(f"{who}: attribute tickAxis must be 0 (frames N*T on axis 0) or 1, got {tick_axis}")
    if delay_mode == "latency":
        return LIFParams(k, thr, int(ticks), acc_bits, reset, ovf, mode, 0, tick_axis, latency=delay)
    return LIFParams(k, thr, int(ticks), acc_bits, reset, ovf, mode, delay, tick_axis)


def split_frames(shape, params: LIFParams, who: str):
    """Split a tensor shape ``(lead..., C)`` into ``(samples, ticks, positions)`` per the tick layout.

    ``tickAxis=0``: ``shape[0] = samples * numTicks``, positions = prod(shape[1:-1]);
    ``tickAxis=1``: ``shape[:2] = (samples, numTicks)``, positions = prod(shape[2:-1]).
    """
    import math

    t = params.num_ticks
    if params.tick_axis == 0:
        if len(shape) < 2 or shape[0] % t != 0:
            raise ValueError(
                f"{who}: input shape {tuple(shape)}: axis 0 must hold samples*numTicks frames (numTicks={t})"
            )
        return shape[0] // t, t, math.prod(shape[1:-1]), tuple(shape[1:-1])
    if len(shape) < 3 or shape[1] != t:
        raise ValueError(
            f"{who}: input shape {tuple(shape)}: axis 1 must be the tick axis of length numTicks={t}"
        )
    return shape[0], t, math.prod(shape[2:-1]), tuple(shape[2:-1])


def apply_delay(spikes, delay: int, tick_axis: int = 1):
    """Shift spikes ``(N, T, ...)`` later by ``delay`` ticks inside each sample (zeros shifted in, tail dropped)."""
    import numpy as np

    if delay == 0:
        return spikes
    out = np.zeros_like(spikes)
    t = spikes.shape[tick_axis]
    if delay < t:
        src = [slice(None)] * spikes.ndim
        dst = [slice(None)] * spikes.ndim
        src[tick_axis] = slice(0, t - delay)
        dst[tick_axis] = slice(delay, t)
        out[tuple(dst)] = spikes[tuple(src)]
    return out
