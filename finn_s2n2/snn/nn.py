"""Trainable spiking layers for S2N2 in PyTorch / Brevitas (Khodamoradi 2021, §2.1.1 Eq 2.2–2.4, §2.2.3).

Tensors carry time on axis 1: spikes and currents are ``(N, T, ...)`` (N samples, T ticks).

* :class:`LIF` — the one-variable LIF neuron of Eq 2.3–2.4 with a surrogate gradient::

      m_t   = (1 − out_{t−1}) · d · m_{t−1} + I_t,     d = 1 − 2^−decay_shift   (Eq 2.3, reset="zero")
      m_t   = d · m_{t−1} + I_t − out_{t−1} · threshold                         (reset="subtract")
      out_t = 1 if m_t > threshold else 0                                         (Eq 2.4)

  Both resets are exactly snnTorch's ``Leaky`` (``reset_mechanism="zero"`` / ``"subtract"``, default
  ``reset_delay=True``): the reset of a spike at tick t acts in tick t + 1, after the decay.
  Fixed per-layer delays (§2.2.2): ``axonal_delay`` + ``synaptic_delay`` ticks.  ``delay_mode="window"``
  (default) shifts the layer's output spikes later inside the sample's T ticks (zeros in, tail dropped) —
  what the FINN ``LIF``/``LIF_MVAU`` node executes with per-node delays; ``delay_mode="latency"`` is the
  chapter's reading (delays pushed to the output only add latency, the count window moves with them): the
  forward pass ignores the delays, which are still exported (QONNX attributes, ``nir.Delay``).

  Float mode computes this in float32.  **Quantized mode** (``quantized=True``) runs the membrane in the
  integer fixed-point arithmetic of the FINN ``LIF_MVAU`` op by calling :mod:`finn_s2n2.numerics` (decay by
  ``m − (m >> k)``, saturate/wrap to ``acc_bits``, strict ``>`` against ``floor(threshold / scale)``): the
  currents are integers in units of the preceding layer's weight LSB ``scale`` (binary inputs × integer
  weights, Eq 2.2).  Its forward values are exactly the hardware's; the backward pass uses the float path
  (straight-through) and the surrogate, so the network trains quantization-aware.
* :class:`TimeDistributed` — applies a stateless per-tick layer (``QuantConv2d``, ``QuantLinear``, pooling,
  ``Flatten``) to every tick by folding T into the batch.
* :class:`SpikingNet` — an ``nn.Sequential`` of those that checks its input (binary, right rank), hands each
  quantized :class:`LIF` the weight scale of the Brevitas layer before it, and records per-layer input spike
  ratios (Fig 2.12 / 2.16) when asked.

Deviation from the dissertation: it does not say which surrogate gradient it used (it trained with the
DECOLLE / [37] scripts); we default to the fast-sigmoid (SuperSpike) surrogate with slope 10.  The reset term
is detached from the graph (as snnTorch does by default).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from finn_s2n2 import numerics

__all__ = [
    "DELAY_MODES",
    "LIF",
    "SpikingNet",
    "TimeDistributed",
    "avg_pool_divisor",
    "shift_ticks",
    "surrogate_fn",
    "weight_layer_scale",
]

#: How a torch LIF's fixed delays act in its forward pass (see the module docstring).
DELAY_MODES = ("window", "latency")


def shift_ticks(spikes: torch.Tensor, delay: int) -> torch.Tensor:
    """Shift ``(N, T, ...)`` spikes ``delay`` ticks later inside each sample (zeros in, tail dropped) — the
    per-node delay that FINN's ``LIF``/``LIF_MVAU`` python execution applies (``apply_delay``)."""
    if delay <= 0:
        return spikes
    t = spikes.shape[1]
    pad = torch.zeros_like(spikes[:, : min(delay, t)])
    return torch.cat([pad, spikes[:, : max(t - delay, 0)]], dim=1)


# --------------------------------------------------------------------------------------------- surrogates
def _fast_sigmoid(x: torch.Tensor, slope: float) -> torch.Tensor:
    # derivative 0.5·slope / (1 + slope·|x|)^2 (SuperSpike); value in (0, 1)
    return 0.5 * slope * x / (1 + slope * x.abs()) + 0.5


def _atan(x: torch.Tensor, slope: float) -> torch.Tensor:
    return torch.atan(math.pi / 2 * slope * x) / math.pi + 0.5


def _sigmoid(x: torch.Tensor, slope: float) -> torch.Tensor:
    return torch.sigmoid(slope * x)


_SURROGATES = {"fast_sigmoid": _fast_sigmoid, "atan": _atan, "sigmoid": _sigmoid}


def surrogate_fn(
    name: str | Callable = "fast_sigmoid", slope: float = 10.0
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A smooth step ``f(v − threshold)`` whose derivative is the surrogate gradient of Eq 2.4's step."""
    if callable(name):
        return name
    if name not in _SURROGATES:
        raise ValueError(f"surrogate must be one of {sorted(_SURROGATES)} or a callable, got {name!r}")
    if not slope > 0:
        raise ValueError(f"surrogate slope must be > 0, got {slope}")
    f = _SURROGATES[name]
    return lambda x: f(x, slope)


def _straight_through(value: torch.Tensor, graph: torch.Tensor) -> torch.Tensor:
    """Forward: ``value`` bit for bit; backward: the gradient of ``graph`` (spikes: the exact 0/1 step with the
    smooth surrogate's gradient; quantized membrane: the integer value with the float graph's gradient).

    Written as ``value + (graph − graph.detach())``: the bracket is exactly 0 for every finite ``graph``, so the
    forward is exact for any surrogate, including a user callable whose range leaves [0, 1]
    (``graph + (value − graph).detach()`` rounds off such values)."""
    return value + (graph - graph.detach())


# --------------------------------------------------------------------------------------------- LIF
class LIF(nn.Module):
    """Leaky integrate-and-fire over ``(N, T, ...)`` input currents (Eq 2.3–2.4), see module docstring.

    Parameters
    ----------
    decay_shift: k of d = 1 − 2^−k (the dissertation trains with k = 3, d = 0.875).
    threshold: T of Eq 2.4 in the units of the input current (float).
    reset: ``"zero"`` (Eq 2.3) or ``"subtract"`` (snnTorch's reset by subtraction, see module docstring).
    surrogate: name (``fast_sigmoid``, ``atan``, ``sigmoid``) or a callable smooth step.
    quantized: run the membrane in ``LIF_MVAU`` fixed point (needs the current scale, see ``forward``).
    acc_bits: membrane width (signed) in quantized mode; ``overflow``: ``"saturate"`` or ``"wrap"``.
    output_mode: ``"spikes"`` → ``(N, T, ...)``; ``"counts"`` → per-neuron spike counts ``(N, ...)``
        (the last layer's per-label counters, Fig 2.8).
    axonal_delay, synaptic_delay: fixed delays in ticks (§2.2.2), exported as QONNX ``axonalDelay`` /
        ``synapticDelay`` and as a ``nir.Delay`` node; ``delay_mode``: ``"window"`` or ``"latency"``.
    """

    def __init__(
        self,
        decay_shift: int = 3,
        threshold: float = 1.0,
        reset: str = "zero",
        surrogate: str | Callable = "fast_sigmoid",
        *,
        slope: float = 10.0,
        quantized: bool = False,
        acc_bits: int = 16,
        overflow: str = "saturate",
        output_mode: str = "spikes",
        axonal_delay: int = 0,
        synaptic_delay: int = 0,
        delay_mode: str = "window",
    ):
        super().__init__()
        self.decay_shift = numerics.check_decay_shift(decay_shift, "LIF.decay_shift")
        if (
            not isinstance(threshold, int | float)
            or isinstance(threshold, bool)
            or not math.isfinite(threshold)
        ):
            raise TypeError(f"LIF.threshold must be a finite float, got {threshold!r}")
        if threshold <= 0:
            raise ValueError(f"LIF.threshold must be > 0 (Eq 2.4), got {threshold}")
        if reset not in numerics.RESET_MODES:
            raise ValueError(f"LIF.reset must be one of {numerics.RESET_MODES}, got {reset!r}")
        if overflow not in numerics.OVERFLOW_MODES:
            raise ValueError(f"LIF.overflow must be one of {numerics.OVERFLOW_MODES}, got {overflow!r}")
        if output_mode not in ("spikes", "counts"):
            raise ValueError(f"LIF.output_mode must be 'spikes' or 'counts', got {output_mode!r}")
        for nm, v in (("axonal_delay", axonal_delay), ("synaptic_delay", synaptic_delay)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"LIF.{nm} must be an int >= 0 (ticks, §2.2.2), got {v!r}")
        if delay_mode not in DELAY_MODES:
            raise ValueError(f"LIF.delay_mode must be one of {DELAY_MODES}, got {delay_mode!r}")
        self.axonal_delay = int(axonal_delay)
        self.synaptic_delay = int(synaptic_delay)
        self.delay_mode = delay_mode
        self.threshold = float(threshold)
        self.reset = reset
        self.surrogate_name = (
            surrogate if isinstance(surrogate, str) else getattr(surrogate, "__name__", "custom")
        )
        self.slope = float(slope)
        self.spike_fn = surrogate_fn(surrogate, slope)
        self.quantized = bool(quantized)
        self.acc_bits = numerics.check_acc_bits(acc_bits, "LIF.acc_bits")
        self.overflow = overflow
        self.output_mode = output_mode

    @property
    def delay(self) -> int:
        """Total fixed delay of this layer in ticks (axonal + synaptic, §2.2.2)."""
        return self.axonal_delay + self.synaptic_delay

    @property
    def decay(self) -> float:
        """d of Eq 2.3."""
        return numerics.decay_factor(self.decay_shift)

    def threshold_int(self, scale: float) -> int:
        """Integer threshold in units of ``scale``: ``m·scale > T  ⇔  m > floor(T / scale)`` for integer m."""
        thr = math.floor(self.threshold / float(scale))
        return numerics.check_threshold(thr, self.acc_bits, "LIF.threshold/scale")

    def extra_repr(self) -> str:
        q = f", quantized, acc_bits={self.acc_bits}, overflow={self.overflow}" if self.quantized else ""
        dl = f", delays=({self.axonal_delay}, {self.synaptic_delay}) {self.delay_mode}" if self.delay else ""
        return (
            f"decay_shift={self.decay_shift} (d={self.decay}), threshold={self.threshold}, reset={self.reset}, "
            f"surrogate={self.surrogate_name}, output_mode={self.output_mode}{q}{dl}"
        )

    def forward(self, current: torch.Tensor, scale: float | torch.Tensor | None = None) -> torch.Tensor:
        """``current``: (N, T, ...) float.  ``scale``: in quantized mode, the value of one integer current unit
        (the preceding layer's weight scale for binary inputs); ``current / scale`` must be integer."""
        if not isinstance(current, torch.Tensor):
            raise TypeError(f"LIF: input must be a torch.Tensor (N, T, ...), got {type(current).__name__}")
        if current.dim() < 3:
            raise ValueError(f"LIF: input must have shape (N, T, features...), got rank {current.dim()}")
        if self.quantized:
            if scale is None:
                raise ValueError(
                    "LIF(quantized=True): the current scale is unknown — use the LIF inside a SpikingNet after a "
                    "Brevitas QuantConv2d/QuantLinear, or call lif(current, scale=weight_scale)"
                )
            return self._forward_quant(current, float(scale))
        return self._forward_float(current)

    def _finish(self, outs: list[torch.Tensor]) -> torch.Tensor:
        spikes = torch.stack(outs, dim=1)
        if self.delay and self.delay_mode == "window":
            spikes = shift_ticks(spikes, self.delay)
        return spikes.sum(dim=1) if self.output_mode == "counts" else spikes

    def _forward_float(self, current: torch.Tensor) -> torch.Tensor:
        d = self.decay
        m = torch.zeros_like(current[:, 0])
        prev = torch.zeros_like(m)  # out_{t-1}, detached (the reset is not differentiated, as in snnTorch)
        outs = []
        for cur_t in current.unbind(1):  # unbind: one backward node (indexing per tick would be O(T^2))
            if self.reset == "zero":
                m = d * m * (1 - prev) + cur_t
            else:
                m = d * m + cur_t - prev * self.threshold
            exact = (m > self.threshold).to(current.dtype)
            outs.append(_straight_through(exact, self.spike_fn(m - self.threshold)))
            prev = exact.detach()
        return self._finish(outs)

    def _forward_quant(self, current: torch.Tensor, scale: float) -> torch.Tensor:
        if not scale > 0 or not math.isfinite(scale):
            raise ValueError(f"LIF(quantized=True): scale must be a positive finite float, got {scale}")
        thr_int = self.threshold_int(scale)
        cur_int_f = current.detach().double() / scale
        cur_int = torch.round(cur_int_f)
        err = (cur_int_f - cur_int).abs().max().item() if cur_int.numel() else 0.0
        if err > 0.25:
            raise ValueError(
                f"LIF(quantized=True): input current is not an integer multiple of scale={scale:g} "
                f"(max deviation {err:.3g} LSB) — are the inputs binary spikes and the weights quantized per tensor?"
            )
        cur_int = cur_int.to(torch.int64)
        d = self.decay
        m_int = torch.zeros_like(cur_int[:, 0])
        prev_int = torch.zeros_like(m_int)
        m = torch.zeros_like(current[:, 0])
        prev = torch.zeros_like(m)
        outs = []
        for t, cur_t in enumerate(current.unbind(1)):
            # integer forward: exactly the LIF_MVAU tick (numerics.lif_step, unrolled to keep the unreset
            # membrane m_t for the surrogate); float graph: the same step in float (straight-through)
            sub = numerics.reset_subtrahend(prev_int, thr_int, self.reset)
            m_t_int = numerics.membrane_update(
                m_int, cur_int[:, t], self.decay_shift, self.acc_bits, self.overflow, sub
            )
            out_int = numerics.fire(m_t_int, thr_int)
            m_int = numerics.reset(m_t_int, out_int, thr_int, self.acc_bits, self.reset, self.overflow)
            if self.reset == "zero":
                m_graph = d * m * (1 - prev) + cur_t
            else:
                m_graph = d * m + cur_t - prev * (thr_int * scale)
            m_val = m_t_int.to(current.dtype) * scale
            m = _straight_through(m_val, m_graph)
            exact = out_int.to(current.dtype)
            outs.append(_straight_through(exact, self.spike_fn(m - self.threshold)))
            prev, prev_int = exact, out_int
        return self._finish(outs)


# --------------------------------------------------------------------------------------------- containers
class TimeDistributed(nn.Module):
    """Apply a stateless per-tick module to ``(N, T, ...)`` by folding T into the batch axis."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 3:
            raise ValueError(
                f"TimeDistributed({type(self.module).__name__}): input must be (N, T, ...), got rank {x.dim()}"
            )
        n, t = x.shape[:2]
        y = self.module(x.reshape((n * t,) + tuple(x.shape[2:])))
        if hasattr(y, "value") and not isinstance(y, torch.Tensor):  # Brevitas QuantTensor
            y = y.value
        return y.reshape((n, t) + tuple(y.shape[1:]))

    def extra_repr(self) -> str:
        return ""


def _is_weight_layer(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d | nn.Linear | nn.Conv1d)


def weight_layer_scale(m: nn.Module) -> float | None:
    """Per-tensor weight scale of a Brevitas ``QuantConv2d``/``QuantLinear`` (None for float layers).

    Raises ValueError for per-channel scales (the ``LIF_MVAU`` membrane has one unit per layer)."""
    if not hasattr(m, "quant_weight"):
        return None
    qw = m.quant_weight()
    s = qw.scale.detach()
    if s.numel() != 1:
        if torch.allclose(s, s.flatten()[0].expand_as(s)):
            return float(s.flatten()[0])
        raise ValueError(
            f"{type(m).__name__}: quantized LIF needs a per-tensor weight scale (one membrane unit per layer), "
            f"got {s.numel()} scales — use e.g. brevitas.quant.Int8WeightPerTensorFloat"
        )
    return float(s)


def avg_pool_divisor(m: nn.Module) -> int:
    """``k_h * k_w`` for an ``nn.AvgPool2d`` (its output is a spike count / k_h k_w), else 1.

    Average pooling of spikes followed by a weight layer is that layer on the *sum* pool with the weight scale
    divided by ``k_h k_w``: the quantized LIF after it works in units of ``scale / (k_h k_w)`` (exact)."""
    if isinstance(m, nn.AvgPool2d):
        k = m.kernel_size
        kh, kw = (k, k) if isinstance(k, int) else tuple(k)
        return int(kh) * int(kw)
    return 1


def _current_scale(layer: nn.Module, div: int) -> float | None:
    s = weight_layer_scale(layer)
    return None if s is None else s / div


class SpikingNet(nn.Sequential):
    """``nn.Sequential`` of :class:`TimeDistributed` layers and :class:`LIF` neurons over ``(N, T, ...)`` spikes.

    * checks the input: a float tensor of rank ``input_rank`` (5 = (N, T, C, H, W), 3 = (N, T, F)) holding
      only 0 and 1 (Eq 2.2 spike addressing); anything else raises a ValueError/TypeError;
    * passes each quantized LIF the weight scale of the last Brevitas weight layer before it;
    * ``forward(x, record=True)`` also returns the input spike ratio of every weight layer (Fig 2.12/2.16).
    """

    def __init__(self, *layers: nn.Module, input_rank: int = 5, check_binary: bool = True):
        super().__init__(*layers)
        self.input_rank = int(input_rank)
        self.check_binary = check_binary

    def check_input(self, x) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"{type(self).__name__}: input must be a torch.Tensor of spikes, got {type(x).__name__}"
            )
        if x.dim() != self.input_rank:
            exp = "(N, T, C, H, W)" if self.input_rank == 5 else "(N, T, features)"
            raise ValueError(
                f"{type(self).__name__}: spike input must have rank {self.input_rank} {exp}, got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(
                f"{type(self).__name__}: spike input must be a float tensor of 0/1, got dtype {x.dtype}"
            )
        if self.check_binary and not bool(((x == 0) | (x == 1)).all()):
            bad = x[(x != 0) & (x != 1)].flatten()[:3].tolist()
            raise ValueError(
                f"{type(self).__name__}: spike input must be binary (0/1, Eq 2.2), found values like {bad}"
            )

    def lif_layers(self) -> list[tuple[nn.Module, LIF]]:
        """(weight layer, LIF) pairs in order."""
        pairs, last = [], None
        for m in self:
            inner = m.module if isinstance(m, TimeDistributed) else m
            if _is_weight_layer(inner):
                last = inner
            elif isinstance(m, LIF):
                pairs.append((last, m))
        return pairs

    def set_quantized(self, flag: bool = True) -> SpikingNet:
        for m in self:
            if isinstance(m, LIF):
                m.quantized = bool(flag)
        return self

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor, target: float = 0.05, iters: int = 10) -> list[float]:
        """Data-driven init: rescale each weight layer in turn (by bisection on a log gain) so that its LIF
        fires at a mean rate ≈ ``target`` on the calibration spikes ``x``.  Returns the gains applied.

        With a fixed threshold (Eq 2.4, T = 1) the default PyTorch init leaves deep layers silent on sparse
        inputs such as the one-spike-per-tick I/Q planes; a silent network has no useful gradient.  This is a
        layer-sequential unit-rate initialisation (our choice; the dissertation does not describe its init)."""
        if not 0 < target < 1:
            raise ValueError(f"calibrate: target rate must be in (0, 1), got {target}")
        self.check_input(x)
        gains = []
        pairs = self.lif_layers()
        for w_layer, lif in pairs:
            if w_layer is None:
                continue
            w0 = w_layer.weight.data.clone()
            lo, hi = -4.0, 8.0  # log2 gain bounds

            def rate(g, w_layer=w_layer, w0=w0, lif=lif):
                w_layer.weight.data.copy_(w0 * (2.0**g))
                return self._lif_rate(x, lif)

            for _ in range(iters):
                mid = 0.5 * (lo + hi)
                if rate(mid) < target:
                    lo = mid
                else:
                    hi = mid
            g = 0.5 * (lo + hi)
            w_layer.weight.data.copy_(w0 * (2.0**g))
            gains.append(2.0**g)
        return gains

    def _lif_rate(self, x: torch.Tensor, which: LIF) -> float:
        scale, div = None, 1
        for m in self:
            inner = m.module if isinstance(m, TimeDistributed) else m
            div *= avg_pool_divisor(inner)
            if _is_weight_layer(inner):
                scale, div = _current_scale(inner, div), 1
            if isinstance(m, LIF):
                if m is which:
                    out = m._forward_float(x) if not m.quantized else m(x, scale=scale)
                    return float(out.mean() / (x.shape[1] if m.output_mode == "counts" else 1))
                x = m(x, scale=scale)
            else:
                x = m(x)
        raise ValueError("calibrate: LIF not found in the network")

    def forward(self, x: torch.Tensor, record: bool = False):
        self.check_input(x)
        ratios: list[float] = []
        scale, div = None, 1
        for m in self:
            inner = m.module if isinstance(m, TimeDistributed) else m
            div *= avg_pool_divisor(inner)
            if _is_weight_layer(inner):
                if record:
                    ratios.append(float(x.detach().float().mean()))
                scale, div = _current_scale(inner, div), 1
            if isinstance(m, LIF):
                if m.quantized and scale is None:
                    raise ValueError(
                        f"{type(self).__name__}: quantized LIF {m} follows a layer without Brevitas weight quantization"
                    )
                x = m(x, scale=scale)
            else:
                x = m(x)
        return (x, ratios) if record else x
