"""Import snnTorch networks into S2N2, exactly where the arithmetic allows it (Khodamoradi 2021, §2.1.1).

snnTorch's ``Leaky`` neuron (default ``reset_delay=True``)::

    reset_t = (mem_{t-1} > threshold)                                 # the previous tick's spike
    mem_t   = beta * mem_{t-1} + I_t - reset_t * threshold           reset_mechanism="subtract" (default)
    mem_t   = beta * (1 - reset_t) * mem_{t-1} + I_t                  reset_mechanism="zero"
    spk_t   = (mem_t > threshold)

is the S2N2 LIF of :mod:`finn_s2n2.numerics` (reset modes ``"subtract"`` / ``"zero"``, Eq 2.3–2.4) when
``beta = 1 - 2^-k``.  :func:`from_snntorch` maps an ``nn.Sequential`` of ``nn.Linear``, ``nn.Conv2d``,
``snn.Leaky``, ``nn.Flatten`` and pooling of spikes (``nn.MaxPool2d``, ``nn.AvgPool2d``, ``SumPool2d``) to a
:class:`~finn_s2n2.snn.nn.SpikingNet` whose quantized forward pass is what FINN executes:

* each weight layer becomes a Brevitas layer with a **power-of-two per-tensor scale** ``s = 2^-F`` (``F`` as
  large as ``weight_bit_width`` allows for the layer's largest weight), so integer and dyadic weights are
  kept exactly; the threshold becomes ``floor(T / s)`` membrane units.  The membrane then has ``F``
  fractional bits: ``m - (m >> k)`` equals ``beta * m`` exactly while the membrane's fraction fits in ``F``
  bits (always, for integer weights and thresholds, when ``F >= k * (ticks - 1)``), so the spikes equal
  snnTorch's spike for spike (tested against ``snntorch.Leaky``).  Otherwise the per-layer errors are
  reported in :attr:`SnnTorchImport.errors` — never silently changed;
* a per-neuron (vector) ``threshold`` is folded into the weights of the layer before it (row ``i`` scaled
  by ``T_min / T_i``; exact in real arithmetic for both reset modes, the quantization error is reported);
  a vector ``beta`` must hold one value per layer (S2N2 has one decay shift per layer);
* ``beta`` not of the form ``1 - 2^-k`` is refused (``approximate=False``) or mapped to the nearest shift
  with the error reported (``approximate=True``);
* options with no S2N2 meaning raise ``ValueError`` naming the layer and the option: ``reset_mechanism=
  "none"``, ``reset_delay=False``, ``graded_spikes_factor != 1``, ``state_quant``, ``inhibition``, a non-zero
  bias, any other neuron type (``Synaptic``, ``Alpha``, ``RLeaky``, …), pooling of currents (between a weight
  layer and its ``Leaky``).

:func:`from_snntorch` ``via="nir"`` goes through ``snntorch.export_to_nir`` and :func:`finn_s2n2.snn.nir.from_nir`
instead; NIR's LIF has no reset mechanism field (snnTorch writes every ``Leaky`` as a NIR ``LIF`` with
``v_reset = 0`` and imports it back as reset-to-zero), so the reset mode of each layer is taken from the
snnTorch modules and passed to ``from_nir`` by node name.  :func:`run_snntorch` runs the snnTorch model
tick by tick for comparisons.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from finn_s2n2 import numerics
from finn_s2n2.snn.nn import LIF, SpikingNet, TimeDistributed

__all__ = ["SnnTorchImport", "exact_quant_layer", "from_snntorch", "run_snntorch"]


@dataclass
class SnnTorchImport:
    """Result of :func:`from_snntorch`: the S2N2 network and the per-layer mapping report.

    ``errors[layer]``: ``decay`` (|beta - (1 - 2^-k)|), ``weight`` (largest |w - w_q| after the threshold
    fold), ``threshold`` (``T - floor(T / s) * s``) and ``frac_bits`` F of the membrane; ``exact`` is True when
    every error is 0.  ``exact_ticks[layer]`` = ``F // k + 1``: for integer (or ``2^-F``-grid) weights and
    thresholds, the shift decay equals ``beta * m`` exactly for at least that many ticks of a sample (each
    decay adds k fractional bits); beyond it the membrane is rounded up by ``m - (m >> k)``."""

    net: SpikingNet
    errors: dict[str, dict[str, float]] = field(default_factory=dict)
    exact_ticks: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return all(v == 0 for e in self.errors.values() for k, v in e.items() if k != "frac_bits")


def exact_quant_layer(layer: nn.Module, weight: torch.Tensor, weight_bit_width: int) -> tuple[nn.Module, int]:
    """A Brevitas copy of ``nn.Linear`` / ``nn.Conv2d`` ``layer`` holding ``weight`` on a power-of-two grid:
    scale ``2^-F`` with the largest ``F`` such that ``max|w| * 2^F <= 2^(b-1) - 1``.  Returns (layer, F)."""
    import brevitas.nn as qnn
    from brevitas.quant import Int8WeightPerTensorFixedPoint

    b = int(weight_bit_width)
    if not 2 <= b <= 24:
        raise ValueError(f"weight_bit_width must be in [2, 24], got {weight_bit_width}")
    qmax = (1 << (b - 1)) - 1
    wmax = float(weight.abs().max())
    frac = math.floor(math.log2(qmax / wmax)) if wmax > 0 else 0
    kw = dict(
        bias=False,
        weight_quant=Int8WeightPerTensorFixedPoint,
        weight_bit_width=b,
        weight_scaling_impl_type="const",
        weight_scaling_const=2.0**-frac * qmax,
    )
    if isinstance(layer, nn.Linear):
        q = qnn.QuantLinear(layer.in_features, layer.out_features, **kw)
    else:
        q = qnn.QuantConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            stride=layer.stride,
            padding=layer.padding,
            dilation=layer.dilation,
            groups=layer.groups,
            padding_mode=layer.padding_mode,
            **kw,
        )
    q.weight.data = weight.detach().clone().float()
    return q, frac


def _per_neuron(value: torch.Tensor, n_out: int, who: str, what: str) -> np.ndarray:
    """A Leaky parameter as one value per output neuron/channel (uniform within a conv channel)."""
    v = np.asarray(value.detach().cpu().double().numpy()).reshape(-1)
    if v.size == 1:
        return np.full(n_out, v[0])
    if v.size % n_out:
        raise ValueError(f"from_snntorch: {who}: {what} has {v.size} values for {n_out} neurons/channels")
    per = v.reshape(n_out, -1)
    if not np.all(per == per[:, :1]):
        raise ValueError(
            f"from_snntorch: {who}: {what} varies within a channel; S2N2 convolutions share it per channel"
        )
    return per[:, 0]


def _check_leaky(m: nn.Module, who: str) -> str:
    import snntorch as snn

    if not isinstance(m, snn.Leaky) or type(m).__name__ != "Leaky":
        raise ValueError(
            f"from_snntorch: {who} has no S2N2 mapping: only snn.Leaky is the one-variable "
            f"LIF of Eq 2.3 (Synaptic/Alpha/Lapicque/recurrent neurons carry further state)"
        )
    reset = m.reset_mechanism
    if reset not in numerics.RESET_MODES:
        raise ValueError(
            f"from_snntorch: {who}: reset_mechanism={reset!r} has no S2N2 meaning (use 'subtract' or 'zero')"
        )
    if not getattr(m, "reset_delay", True):
        raise ValueError(
            f"from_snntorch: {who}: reset_delay=False (reset in the spiking tick) has no S2N2 meaning; the "
            f"LIF_MVAU resets in the next tick (snnTorch's default reset_delay=True)"
        )
    if (
        float(torch.as_tensor(m.graded_spikes_factor).flatten()[0]) != 1.0
        or torch.as_tensor(m.graded_spikes_factor).numel() != 1
    ):
        raise ValueError(f"from_snntorch: {who}: graded_spikes_factor != 1 (S2N2 spikes are binary)")
    if getattr(m, "state_quant", False):
        raise ValueError(
            f"from_snntorch: {who}: state_quant is set; S2N2 fixes the membrane format itself (acc_bits)"
        )
    if getattr(m, "inhibition", False):
        raise ValueError(f"from_snntorch: {who}: inhibition (winner-take-all) has no S2N2 meaning")
    return reset


def _sequence(model) -> list[tuple[str, nn.Module]]:
    if isinstance(model, nn.Sequential):
        return list(model.named_children())
    if isinstance(model, list | tuple) and all(isinstance(m, nn.Module) for m in model):
        return [(str(i), m) for i, m in enumerate(model)]
    raise TypeError(
        f"from_snntorch: expected an nn.Sequential of snnTorch/torch layers, got {type(model).__name__} "
        f"(custom forward loops cannot be read; write the net as nn.Sequential with init_hidden=True)"
    )


def _pool_kind(m: nn.Module) -> str | None:
    from finn_s2n2.snn.nir import SumPool2d

    if isinstance(m, nn.MaxPool2d):
        return "max"
    if isinstance(m, nn.AvgPool2d | SumPool2d):
        return "avg"
    return None


def from_snntorch(
    model,
    *,
    via: str = "direct",
    sample=None,
    weight_bit_width: int = 16,
    acc_bits: int = 32,
    overflow: str = "saturate",
    approximate: bool = False,
    output_mode: str = "counts",
    quantized: bool = True,
) -> SnnTorchImport:
    """Map an snnTorch ``nn.Sequential`` to an S2N2 :class:`SpikingNet` (see module docstring).

    ``via="nir"`` exports with ``snntorch.export_to_nir(model, sample)`` (``sample``: one tick of input,
    ``(N, ...)``) and imports with :func:`~finn_s2n2.snn.nir.from_nir`."""
    if via not in ("direct", "nir"):
        raise ValueError(f"from_snntorch: via must be 'direct' or 'nir', got {via!r}")
    seq = _sequence(model)
    if via == "nir":
        return _via_nir(model, seq, sample, weight_bit_width, acc_bits, approximate, output_mode, quantized)
    import snntorch as snn

    res = SnnTorchImport(net=SpikingNet())
    layers: list[nn.Module] = []
    pending: tuple[str, nn.Module] | None = None  # weight layer waiting for its Leaky
    input_rank = None
    for name, m in seq:
        who = f"layer '{name}' ({type(m).__name__})"
        if isinstance(m, nn.Linear | nn.Conv2d):
            if pending is not None:
                raise ValueError(f"from_snntorch: {who} follows weight layer '{pending[0]}' without a Leaky")
            if m.bias is not None and bool(torch.any(m.bias != 0)):
                raise ValueError(
                    f"from_snntorch: {who}: non-zero bias; LIF_MVAU implements Eq 2.2 without bias"
                )
            if isinstance(m, nn.Conv2d) and (
                tuple(m.stride) != (1, 1) or tuple(m.dilation) != (1, 1) or m.groups != 1
            ):
                raise ValueError(
                    f"from_snntorch: {who}: only stride 1, dilation 1, groups 1 convolutions map"
                )
            if input_rank is None:
                input_rank = 5 if isinstance(m, nn.Conv2d) else 3
            pending = (name, m)
        elif isinstance(m, snn.SpikingNeuron):
            reset = _check_leaky(m, who)
            if pending is None:
                raise ValueError(f"from_snntorch: {who} is not preceded by an nn.Linear/nn.Conv2d")
            wname, wl = pending
            n_out = wl.weight.shape[0]
            beta = np.unique(_per_neuron(m.beta, n_out, who, "beta"))
            if beta.size != 1:
                raise ValueError(
                    f"from_snntorch: {who}: per-neuron beta values {beta[:4].tolist()} differ; S2N2 has one "
                    f"decay shift per layer"
                )
            b = float(beta[0])
            if not 0 < b < 1:
                raise ValueError(f"from_snntorch: {who}: beta={b:.6g} must lie in (0, 1) (d = 1 - 2^-k)")
            try:
                k, derr = numerics.decay_shift_from_factor(b, f"{who}: beta"), 0.0
            except ValueError:
                if not approximate:
                    raise ValueError(
                        f"from_snntorch: {who}: beta={b:.6g} is not 1 - 2^-k (0.5, 0.75, 0.875, …); pass "
                        f"approximate=True to map it to the nearest shift with the error reported"
                    ) from None
                from finn_s2n2.snn.nir import nearest_shift

                k, derr = nearest_shift(b)
                res.notes.append(f"{name}: beta={b:.6g} mapped to 1 - 2^-{k} (error {derr:.3g})")
            thr = _per_neuron(m.threshold, n_out, who, "threshold")
            if np.any(thr <= 0):
                raise ValueError(f"from_snntorch: {who}: threshold must be > 0, got {thr.min()}")
            t_ref = float(thr.min())
            w = wl.weight.detach().double()
            gain = torch.tensor(t_ref / thr, dtype=torch.float64).reshape((n_out,) + (1,) * (w.dim() - 1))
            w = w * gain
            q, frac = exact_quant_layer(wl, w, weight_bit_width)
            w_q = q.quant_weight().value.detach().double()
            scale = 2.0**-frac
            thr_int = math.floor(t_ref / scale)
            res.errors[name] = {
                "decay": float(derr),
                "weight": float((w_q - w).abs().max()),
                "threshold": float(t_ref - thr_int * scale),
                "frac_bits": float(frac),
            }
            res.exact_ticks[name] = frac // k + 1
            layers.append(TimeDistributed(q))
            layers.append(
                LIF(
                    decay_shift=k,
                    threshold=t_ref,
                    reset=reset,
                    quantized=quantized,
                    acc_bits=acc_bits,
                    overflow=overflow,
                )
            )
            pending = None
        elif _pool_kind(m) is not None:
            if pending is not None:
                raise ValueError(
                    f"from_snntorch: {who} pools the currents of '{pending[0]}' before its Leaky; S2N2 pools "
                    f"spikes — place the pooling after the Leaky"
                )
            layers.append(TimeDistributed(copy.deepcopy(m)))
        elif isinstance(m, nn.Flatten):
            if m.start_dim != 1 or m.end_dim != -1:
                raise ValueError(f"from_snntorch: {who}: only Flatten(start_dim=1, end_dim=-1) maps")
            layers.append(TimeDistributed(nn.Flatten()))
        elif isinstance(m, nn.Identity | nn.Dropout):
            continue
        else:
            raise ValueError(f"from_snntorch: {who} has no S2N2 mapping")
    if pending is not None:
        raise ValueError(f"from_snntorch: weight layer '{pending[0]}' is not followed by a Leaky")
    lifs = [m for m in layers if isinstance(m, LIF)]
    if not lifs:
        raise ValueError("from_snntorch: the network has no snn.Leaky")
    lifs[-1].output_mode = output_mode
    res.net = SpikingNet(*layers, input_rank=input_rank or 3)
    return res


def _via_nir(model, seq, sample, weight_bit_width, acc_bits, approximate, output_mode, quantized):
    import snntorch as snn
    from snntorch.export_nir import export_to_nir

    from finn_s2n2.snn.nir import from_nir

    if sample is None:
        raise ValueError("from_snntorch(via='nir'): give sample=<one tick of input, (N, ...)> for the export")
    resets = {}
    for name, m in seq:
        if isinstance(m, snn.SpikingNeuron):
            resets[name] = _check_leaky(m, f"layer '{name}' ({type(m).__name__})")
    # snnTorch writes a scalar beta/threshold as a 0-d NIR parameter that NIR's type inference cannot size
    # for conv layers, and int pooling sizes that it cannot index: on a copy, give every Leaky per-neuron
    # parameters (same values) and every AvgPool2d tuple sizes before exporting.
    model = _with_vector_params(model, sample)
    graph = export_to_nir(model, sample, ignore_dims=[0])
    return from_nir(
        graph,
        reset=resets,
        weight_bit_width=weight_bit_width,
        acc_bits=acc_bits,
        approximate=approximate,
        output_mode=output_mode,
        quantized=quantized,
        exact_weights=True,
    )


@torch.no_grad()
def _with_vector_params(model, sample):
    import snntorch as snn

    model = copy.deepcopy(model)
    x = sample
    _reset_states(model)
    for _, m in model.named_children():
        if isinstance(m, snn.Leaky):
            shape = tuple(x.shape[1:])
            for pname in ("beta", "threshold"):
                p = getattr(m, pname)
                full = torch.as_tensor(p).expand(shape).clone() if torch.as_tensor(p).numel() == 1 else p
                if isinstance(p, nn.Parameter):
                    setattr(m, pname, nn.Parameter(full))
                elif pname in m._buffers:
                    m._buffers[pname] = full
                else:
                    setattr(m, pname, full)
        if isinstance(m, nn.AvgPool2d):  # snnTorch copies int sizes, NIR's type inference indexes them
            m.kernel_size = _pair2(m.kernel_size)
            m.stride = _pair2(m.stride or m.kernel_size)
            m.padding = _pair2(m.padding)
        y = m(x)
        x = y[0] if isinstance(y, tuple) else y
    _reset_states(model)
    return model


def _pair2(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)


def _reset_states(model) -> None:
    import snntorch as snn

    for m in model.modules():
        if isinstance(m, snn.SpikingNeuron) and hasattr(m, "reset_mem"):
            m.reset_mem()


@torch.no_grad()
def run_snntorch(model, spikes: torch.Tensor) -> torch.Tensor:
    """Run an snnTorch ``nn.Sequential`` (``init_hidden=True`` neurons) over ``(N, T, ...)`` input from a zero
    state; returns the output spikes ``(N, T, ...)`` (the first element when a layer returns a tuple)."""
    _reset_states(model)
    outs = []
    for t in range(spikes.shape[1]):
        y = model(spikes[:, t])
        outs.append(y[0] if isinstance(y, tuple) else y)
    _reset_states(model)
    return torch.stack(outs, dim=1)
