"""NIR (Neuromorphic Intermediate Representation, ``nir`` package) import/export for S2N2 networks.

Khodamoradi 2021, §2.1.1: S2N2 neurons are the one-variable LIF of Eq 2.3–2.4 with a shift decay d = 1 − 2^−k and
reset to zero.  NIR describes continuous-time neurons; we map them with the forward-Euler step of width ``dt``
(snnTorch's NIR convention, ``dt = 1e-4``)::

    NIR LIF     τ·dv/dt = (v_leak − v) + r·I         →  v ← (1 − dt/τ)·v + (r·dt/τ)·I
    S2N2 LIF    m ← d·m + I,  d = 1 − 2^−k           (Eq 2.3)

* :func:`from_nir` — ``Conv2d`` / ``Linear`` / ``Affine`` (zero bias), ``LIF``, ``IF``, ``CubaLIF`` (only when
  its synaptic state is instantaneous, τ_syn = dt), ``SumPool2d`` / ``AvgPool2d`` (of spikes: the FINN export
  folds them into the next Linear), ``Delay`` (whole ticks; before a LIF → ``synaptic_delay``, after it →
  ``axonal_delay``, §2.2.2), ``Flatten``, ``Input`` / ``Output``, in a single chain.  The decay 1 − dt/τ is
  **rounded to the nearest shift decay** 1 − 2^−k; the per-layer decay errors are reported in
  :attr:`NIRImport.decay_errors` (``approximate=False`` refuses any error above 1e-6 — float32 round-off — instead).  The input
  gain r·dt/τ (and for CubaLIF ``w_in``) and per-neuron thresholds are folded into the preceding weights
  (exact for v_leak = 0, for both reset modes), so every S2N2 LIF keeps one scalar threshold (by default the
  smallest ``v_threshold`` of the layer).  ``IF`` (no leak) becomes k = ``if_shift`` (default 15: no leak for
  membranes below 2^15 LSB), error reported.  Anything else raises ``ValueError`` naming the NIR node.
* **Reset.**  NIR's LIF resets to ``v_reset``; it has no reset-by-subtraction field, and snnTorch writes its
  default ``Leaky(reset_mechanism="subtract")`` as the same NIR ``LIF`` (and reads every NIR LIF back as
  reset-to-zero).  :func:`from_nir` therefore takes ``reset="zero"`` (NIR's meaning) or a ``{node name:
  mode}`` dict; :func:`finn_s2n2.snn.snntorch.from_snntorch` ``via="nir"`` fills it from the snnTorch modules.
* :func:`to_nir` — a :class:`~finn_s2n2.snn.nn.SpikingNet` to a ``nir.NIRGraph`` (the quantized weight values,
  τ = dt/(1 − d), r = τ/dt, v_leak = 0, v_reset = 0, per-neuron arrays; a LIF's ``synaptic_delay`` /
  ``axonal_delay`` as ``nir.Delay`` nodes before / after it, τ = ticks · dt), importable by snnTorch/Norse/…
  and by :func:`from_nir`: ``from_nir(to_nir(m), reset=...)`` reproduces ``m``'s outputs.  A LIF with
  ``reset="subtract"`` is exported (NIR has no field for it); its node names are returned in
  ``graph.metadata["s2n2_subtract_reset"]`` and :func:`from_nir` reads that list when present.

Deviations: NIR has no spike counters, so the last LIF of an imported graph counts spikes
(``output_mode="counts"``, Fig 2.8); ``to_nir`` exports the LIF neurons only (the counts are a read-out).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from finn_s2n2.snn.nn import LIF, SpikingNet, TimeDistributed

__all__ = ["NIRImport", "SumPool2d", "from_nir", "nearest_shift", "to_nir"]

#: snnTorch's NIR export step (``snntorch.export_nir``: dt = 1e-4)
DEFAULT_DT = 1e-4


class SumPool2d(nn.Module):
    """Sum pooling (NIR ``SumPool2d``): ``avg_pool2d · k_h·k_w``."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = (
            tuple(kernel_size) if not isinstance(kernel_size, int) else (kernel_size, kernel_size)
        )
        self.stride = (
            self.kernel_size
            if stride is None
            else (tuple(stride) if not isinstance(stride, int) else (stride, stride))
        )
        self.padding = tuple(padding) if not isinstance(padding, int) else (padding, padding)

    def forward(self, x):
        k = self.kernel_size[0] * self.kernel_size[1]
        return (
            nn.functional.avg_pool2d(x, self.kernel_size, self.stride, self.padding, count_include_pad=True)
            * k
        )


def nearest_shift(decay: float, max_shift: int = 31) -> tuple[int, float]:
    """(k, |d − (1 − 2^−k)|): the shift decay nearest to ``decay`` in (0, 1)."""
    if not 0 < decay < 1:
        raise ValueError(f"decay {decay} is outside (0, 1)")
    best = min(range(1, max_shift + 1), key=lambda k: abs(decay - (1 - 2.0**-k)))
    return best, abs(decay - (1 - 2.0**-best))


@dataclass
class NIRImport:
    """Result of :func:`from_nir`: the network and the discretisation report."""

    net: SpikingNet
    decay_errors: dict[str, float] = field(default_factory=dict)
    shifts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _delay_ticks(node, name: str, dt: float) -> int:
    d = _arr(node.delay).reshape(-1)
    if d.size == 0 or not np.all(d == d[0]):
        raise ValueError(
            f"from_nir: Delay node '{name}': per-neuron delays differ; S2N2 delays are per layer"
        )
    ticks = d[0] / dt
    if d[0] < 0 or abs(ticks - round(ticks)) > 1e-6 * max(1.0, abs(ticks)):
        raise ValueError(
            f"from_nir: Delay node '{name}': delay {d[0]:g} is not a whole number of ticks of dt={dt:g}"
        )
    return int(round(ticks))


def _arr(x) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)


def _chain(graph) -> list[str]:
    import nir

    if not isinstance(graph, nir.NIRGraph):
        raise TypeError(f"from_nir: expected a nir.NIRGraph, got {type(graph).__name__}")
    succ: dict[str, list[str]] = {}
    pred: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
        pred.setdefault(b, []).append(a)
    for name in graph.nodes:
        if len(succ.get(name, [])) > 1 or len(pred.get(name, [])) > 1:
            raise ValueError(
                f"from_nir: node '{name}' branches or merges; S2N2 supports feed-forward chains only"
            )
    starts = [n for n, v in graph.nodes.items() if isinstance(v, nir.Input)]
    if len(starts) != 1:
        raise ValueError(f"from_nir: the graph needs exactly one nir.Input node, found {len(starts)}")
    order, cur = [], starts[0]
    while True:
        order.append(cur)
        nxt = succ.get(cur, [])
        if not nxt:
            break
        cur = nxt[0]
        if cur in order:
            raise ValueError(f"from_nir: node '{cur}' closes a cycle (recurrent graphs are not supported)")
    missing = set(graph.nodes) - set(order)
    if missing:
        raise ValueError(f"from_nir: nodes {sorted(missing)} are not on the Input→Output chain")
    return order


def from_nir(
    graph,
    *,
    dt: float = DEFAULT_DT,
    weight_bit_width: int = 8,
    quantized: bool = False,
    acc_bits: int = 16,
    threshold: float | None = None,
    if_shift: int = 15,
    output_mode: str = "counts",
    reset: str | dict[str, str] = "zero",
    approximate: bool = True,
    exact_weights: bool = False,
) -> NIRImport:
    """Build a :class:`SpikingNet` (Brevitas weights, S2N2 LIFs) from a NIR graph; see module docstring.

    ``reset``: the reset mode of every LIF, or ``{node name: mode}`` (others: ``"zero"``).  ``threshold``:
    the S2N2 threshold (None: the smallest ``v_threshold`` of each layer).  ``exact_weights``: put the
    weights on a power-of-two grid (:func:`finn_s2n2.snn.snntorch.exact_quant_layer`) instead of Brevitas'
    max/(2^(b-1)-1) scale, so integer/dyadic weights stay exact."""
    import brevitas.nn as qnn
    import nir

    from finn_s2n2 import numerics

    if not dt > 0:
        raise ValueError(f"from_nir: dt must be > 0, got {dt}")
    order = _chain(graph)
    meta = getattr(graph, "metadata", None) or {}
    if isinstance(reset, str):
        names = np.atleast_1d(meta.get("s2n2_subtract_reset", [])) if reset == "zero" else []
        sub = {v.decode() if isinstance(v, bytes) else str(v) for v in names}
        reset = {n: ("subtract" if n in sub else reset) for n in order}
    for n, r in reset.items():
        if r not in numerics.RESET_MODES:
            raise ValueError(
                f"from_nir: reset of node '{n}' must be one of {numerics.RESET_MODES}, got {r!r}"
            )
    pending_delay = 0  # a Delay between a weight layer and its LIF: synaptic delay of that LIF
    res = NIRImport(net=SpikingNet())
    layers: list[nn.Module] = []
    pending_w: nn.Module | None = None  # last weight layer (gains get folded into it)
    input_rank = 5
    for name in order:
        node = graph.nodes[name]
        if isinstance(node, nir.Input):
            shape = np.asarray(
                node.input_type.get("input", node.output_type.get("output", []))
                if isinstance(node.input_type, dict)
                else []
            )
            input_rank = 5 if shape.size == 3 else 3
            continue
        if isinstance(node, nir.Output):
            continue
        if isinstance(node, nir.Conv2d):
            w = _arr(node.weight)
            if node.bias is not None and np.any(_arr(node.bias) != 0):
                raise ValueError(
                    f"from_nir: Conv2d node '{name}' has a non-zero bias; LIF_MVAU (Eq 2.2) has none"
                )
            if int(np.prod(np.atleast_1d(node.groups))) != 1 or any(
                int(d) != 1 for d in np.atleast_1d(node.dilation)
            ):
                raise ValueError(f"from_nir: Conv2d node '{name}': only groups=1, dilation=1 are supported")
            if any(int(s) != 1 for s in np.atleast_1d(node.stride)):
                raise ValueError(
                    f"from_nir: Conv2d node '{name}': only stride 1 maps to the S2N2 sliding window"
                )
            pad = node.padding
            if isinstance(pad, str):
                raise ValueError(f"from_nir: Conv2d node '{name}': padding '{pad}' — give integer paddings")
            pad = tuple(int(p) for p in np.broadcast_to(np.atleast_1d(pad), (2,)))
            m = qnn.QuantConv2d(
                w.shape[1],
                w.shape[0],
                tuple(w.shape[2:]),
                padding=pad,
                bias=False,
                weight_bit_width=weight_bit_width,
            )
            m.weight.data = torch.tensor(w, dtype=torch.float32)
            pending_td = TimeDistributed(m)
            layers.append(pending_td)
            pending_w = m
        elif isinstance(node, nir.Linear | nir.Affine):
            w = _arr(node.weight)
            if isinstance(node, nir.Affine) and np.any(_arr(node.bias) != 0):
                raise ValueError(
                    f"from_nir: Affine node '{name}' has a non-zero bias; LIF_MVAU (Eq 2.2) has none"
                )
            m = qnn.QuantLinear(w.shape[1], w.shape[0], bias=False, weight_bit_width=weight_bit_width)
            m.weight.data = torch.tensor(w, dtype=torch.float32)
            pending_td = TimeDistributed(m)
            layers.append(pending_td)
            pending_w = m
        elif isinstance(node, nir.LIF | nir.IF | nir.CubaLIF):
            if pending_w is None:
                raise ValueError(
                    f"from_nir: {type(node).__name__} node '{name}' is not preceded by a Conv2d/Linear/Affine"
                )
            v_reset = _arr(
                getattr(node, "v_reset", None) if getattr(node, "v_reset", None) is not None else 0.0
            )
            if np.any(v_reset != 0):
                raise ValueError(
                    f"from_nir: {type(node).__name__} node '{name}': v_reset must be 0 (Eq 2.3 resets to zero)"
                )
            vthr = _arr(node.v_threshold)
            if np.any(vthr <= 0):
                raise ValueError(f"from_nir: {type(node).__name__} node '{name}': v_threshold must be > 0")
            if isinstance(node, nir.IF):
                k, err = int(if_shift), 2.0**-if_shift
                gain = _arr(node.r)
                res.notes.append(f"{name}: IF (no leak) mapped to decay shift {k} (d = 1 - 2^-{k})")
            else:
                if isinstance(node, nir.LIF):
                    tau = _arr(node.tau)
                    v_leak = _arr(node.v_leak)
                    gain_extra = 1.0
                else:
                    tau = _arr(node.tau_mem)
                    v_leak = _arr(node.v_leak)
                    tau_syn = _arr(node.tau_syn)
                    if not np.allclose(tau_syn, dt, rtol=1e-6):
                        raise ValueError(
                            f"from_nir: CubaLIF node '{name}': tau_syn={tau_syn.ravel()[:3]} != dt={dt}; a synaptic current "
                            f"state is not representable in the one-variable LIF of Eq 2.3 (only tau_syn = dt is)"
                        )
                    gain_extra = _arr(node.w_in)
                if np.any(v_leak != 0):
                    raise ValueError(
                        f"from_nir: {type(node).__name__} node '{name}': v_leak must be 0 (S2N2 leaks towards 0)"
                    )
                if np.any(tau <= dt):
                    raise ValueError(
                        f"from_nir: {type(node).__name__} node '{name}': tau={tau.min()} <= dt={dt} gives no decay in (0, 1)"
                    )
                decays = 1 - dt / tau
                ks = [nearest_shift(float(d)) for d in np.unique(decays)]
                kset = {k for k, _ in ks}
                if len(kset) != 1:
                    raise ValueError(
                        f"from_nir: {type(node).__name__} node '{name}': per-neuron time constants round to different "
                        f"shifts {sorted(kset)}; S2N2 has one decay_shift per layer"
                    )
                k = kset.pop()
                err = max(e for _, e in ks)
                gain = _arr(node.r) * dt / tau * gain_extra
            # fold per-neuron input gain / threshold into the weights: threshold becomes the scalar `threshold`
            thr_ref = float(vthr.min()) if threshold is None else float(threshold)
            scale = np.broadcast_to(
                gain * thr_ref / vthr, np.broadcast_shapes(np.shape(gain), np.shape(vthr))
            )
            w = pending_w.weight.data
            out_ch = w.shape[0]
            s = np.asarray(scale, dtype=np.float64).reshape(-1)
            if s.size == 1:
                w.mul_(float(s[0]))
            elif s.size == out_ch:
                w.mul_(torch.tensor(s, dtype=w.dtype).reshape((out_ch,) + (1,) * (w.dim() - 1)))
            elif w.dim() == 4 and s.size % out_ch == 0:
                per_c = s.reshape(out_ch, -1)
                if not np.allclose(per_c, per_c[:, :1]):
                    raise ValueError(
                        f"from_nir: node '{name}': per-position gains/thresholds within a channel are not representable"
                    )
                w.mul_(torch.tensor(per_c[:, 0], dtype=w.dtype).reshape(out_ch, 1, 1, 1))
            else:
                raise ValueError(
                    f"from_nir: node '{name}': parameter size {s.size} does not match {out_ch} neurons/channels"
                )
            if not approximate and err > 1e-6:  # float32 round-off of snnTorch's tau is ~1e-8
                raise ValueError(
                    f"from_nir: {type(node).__name__} node '{name}': decay {1 - 2.0**-k:g}+-{err:.3g} is not a "
                    f"shift decay 1 - 2^-k (pass approximate=True to map it with the error reported)"
                )
            if exact_weights:
                from finn_s2n2.snn.snntorch import exact_quant_layer

                q, _ = exact_quant_layer(pending_w, pending_w.weight.data, weight_bit_width)
                layers[layers.index(pending_td)] = TimeDistributed(q)
            res.shifts[name] = k
            res.decay_errors[name] = float(err)
            layers.append(
                LIF(
                    decay_shift=k,
                    threshold=thr_ref,
                    reset=reset.get(name, "zero"),
                    quantized=quantized,
                    acc_bits=acc_bits,
                    synaptic_delay=pending_delay,
                )
            )
            pending_w, pending_delay = None, 0
        elif isinstance(node, nir.Delay):
            ticks = _delay_ticks(node, name, dt)
            if pending_w is not None:
                pending_delay += ticks
            elif layers and isinstance(layers[-1], LIF):
                layers[-1].axonal_delay += ticks
            else:
                raise ValueError(
                    f"from_nir: Delay node '{name}' must follow a LIF (axonal) or sit between a weight layer "
                    f"and its LIF (synaptic)"
                )
        elif isinstance(node, nir.SumPool2d | nir.AvgPool2d):
            ks = tuple(int(v) for v in np.broadcast_to(np.atleast_1d(node.kernel_size), (2,)))
            st = tuple(int(v) for v in np.broadcast_to(np.atleast_1d(node.stride), (2,)))
            pd = tuple(int(v) for v in np.broadcast_to(np.atleast_1d(node.padding), (2,)))
            if pending_w is not None:
                raise ValueError(
                    f"from_nir: {type(node).__name__} node '{name}' pools the currents of a weight layer before "
                    f"its LIF; S2N2 pools spikes (place the pooling after the LIF)"
                )
            pool = SumPool2d(ks, st, pd) if isinstance(node, nir.SumPool2d) else nn.AvgPool2d(ks, st, pd)
            layers.append(TimeDistributed(pool))
        elif isinstance(node, nir.Flatten):
            layers.append(TimeDistributed(nn.Flatten()))
        else:
            raise ValueError(f"from_nir: node '{name}' of type {type(node).__name__} has no S2N2 mapping")
    lifs = [m for m in layers if isinstance(m, LIF)]
    if not lifs:
        raise ValueError("from_nir: the graph has no spiking neuron (LIF/IF/CubaLIF)")
    lifs[-1].output_mode = output_mode
    res.net = SpikingNet(*layers, input_rank=input_rank)
    return res


def to_nir(net: SpikingNet, in_shape: tuple[int, ...], *, dt: float = DEFAULT_DT):
    """Export ``net`` to a ``nir.NIRGraph`` (quantized weight values; see module docstring).

    ``in_shape``: per-tick input shape, (C, H, W) or (F,)."""
    import nir

    if not isinstance(net, SpikingNet):
        raise TypeError(f"to_nir: expected a finn_s2n2.snn.nn.SpikingNet, got {type(net).__name__}")
    nodes: dict[str, nir.NIRNode] = {"input": nir.Input(input_type=np.array(in_shape))}
    x = torch.zeros((1, 1) + tuple(in_shape))
    prev = "input"
    edges = []
    subtract: list[str] = []
    with torch.no_grad():
        for i, m in enumerate(net):
            inner = m.module if isinstance(m, TimeDistributed) else m
            name = f"{i}_{type(inner).__name__.lower()}"
            if isinstance(inner, nn.Conv2d):
                w = (
                    (inner.quant_weight().value if hasattr(inner, "quant_weight") else inner.weight)
                    .detach()
                    .numpy()
                )
                node = nir.Conv2d(
                    input_shape=tuple(x.shape[3:]),
                    weight=w,
                    stride=tuple(inner.stride),
                    padding=tuple(inner.padding),
                    dilation=tuple(inner.dilation),
                    groups=inner.groups,
                    bias=np.zeros(w.shape[0], dtype=np.float32),
                )
                x = m(x)
            elif isinstance(inner, nn.Linear):
                w = (
                    (inner.quant_weight().value if hasattr(inner, "quant_weight") else inner.weight)
                    .detach()
                    .numpy()
                )
                node = nir.Linear(weight=w)
                x = m(x)
            elif isinstance(m, LIF):
                shp = tuple(x.shape[2:])
                tau = dt / (1 - m.decay)
                node = nir.LIF(
                    tau=np.full(shp, tau, dtype=np.float64),
                    r=np.full(shp, tau / dt, dtype=np.float64),
                    v_leak=np.zeros(shp),
                    v_threshold=np.full(shp, m.threshold, dtype=np.float64),
                    v_reset=np.zeros(shp),
                )
                if m.reset == "subtract":
                    subtract.append(name)
                if m.synaptic_delay:
                    dname = f"{i}_synaptic_delay"
                    nodes[dname] = nir.Delay(delay=np.full(shp, m.synaptic_delay * dt))
                    edges.append((prev, dname))
                    prev = dname
            elif isinstance(inner, nn.MaxPool2d):
                raise ValueError(
                    f"to_nir: module {i} (MaxPool2d on spikes) has no NIR primitive (NIR pools are sum/average)"
                )
            elif isinstance(inner, SumPool2d):
                node = nir.SumPool2d(
                    kernel_size=np.array(inner.kernel_size),
                    stride=np.array(inner.stride),
                    padding=np.array(inner.padding),
                )
                x = m(x)
            elif isinstance(inner, nn.AvgPool2d):
                ks = inner.kernel_size if not isinstance(inner.kernel_size, int) else (inner.kernel_size,) * 2
                st = inner.stride if not isinstance(inner.stride, int) else (inner.stride,) * 2
                pd = inner.padding if not isinstance(inner.padding, int) else (inner.padding,) * 2
                node = nir.AvgPool2d(kernel_size=np.array(ks), stride=np.array(st), padding=np.array(pd))
                x = m(x)
            elif isinstance(inner, nn.Flatten):
                node = nir.Flatten(input_type={"input": np.array(x.shape[2:])}, start_dim=0, end_dim=-1)
                x = m(x)
            else:
                raise ValueError(f"to_nir: module {i} ({type(inner).__name__}) has no NIR mapping")
            nodes[name] = node
            edges.append((prev, name))
            prev = name
            if isinstance(m, LIF) and m.axonal_delay:
                dname = f"{i}_axonal_delay"
                nodes[dname] = nir.Delay(delay=np.full(tuple(x.shape[2:]), m.axonal_delay * dt))
                edges.append((prev, dname))
                prev = dname
    nodes["output"] = nir.Output(output_type=np.array(x.shape[2:]))
    edges.append((prev, "output"))
    meta = {"s2n2_subtract_reset": subtract} if subtract else {}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)
