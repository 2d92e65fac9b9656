"""The S2N2 network builders of Khodamoradi 2021: S2N2_rf1 (Table 2.2 / Fig 2.11), S2N2_rf2 (Fig 2.13 / Table 2.5) and
S2N2_cv (Table 2.7 / Fig 2.15), as :class:`finn_s2n2.snn.nn.SpikingNet` over ``(N, T, C, H, W)`` binary spikes.

Every synapse is a Brevitas ``QuantConv2d`` / ``QuantLinear`` without bias (the ``LIF_MVAU`` has no bias)
with a per-tensor weight scale, followed by a :class:`~finn_s2n2.snn.nn.LIF` (d = 0.875, k = 3, as in the dissertation's
synthesis runs).  The last LIF counts spikes per label (Fig 2.8 counters): the network output is ``(N, classes)``
spike counts.  Shapes are read off the dissertation's buffer tables (the figures themselves are not in the text):

* **S2N2_rf1** — 16×16 binary plane → 16c5 (padding 2, 16×16) → 8c5 (valid, 12×12) → 128 → 11
  (Table 2.3: Conv.2 input 16×16×16, Dense 1 input 8×12×12).
* **S2N2_rf2** — 16×16 → 64c5 (same) → 64c5 (valid, 12×12) → 128c3 (valid, 10×10) → 128c3 (same) → 1024 → 24
  (Table 2.5 input sizes and buffer sizes 25, 1600, 576, 1152 bits = k²·C_in).  Table 2.4 says 6 layers.
* **S2N2_cv** — 28×28 → 16c7 (padding 2, 26×26) → max-pool 2 (13×13) → 24c7 (padding 2, 11×11) → 32c7 (padding 2,
  9×9) → max-pool 2 (4×4) → 10 (Table 2.7 "28x28-16c7-24c7-32c7-10"; Table 2.8 input sizes 16×13×13,
  24×11×11, 32×4×4 fix the paddings and the DECOLLE-style pools).  Max-pooling binary spikes is FINN's binary
  pooling unit, used "as is" by the dissertation (§2.2.3).

``width`` multiplies every hidden channel/neuron count (``width < 1`` gives the reduced nets used in CI).
"""

from __future__ import annotations

import math

from torch import nn

from finn_s2n2.snn.nn import LIF, SpikingNet, TimeDistributed

__all__ = ["layer_input_shapes", "s2n2_cv", "s2n2_rf1", "s2n2_rf2", "spiking_convnet", "spiking_mlp"]


def _ch(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def _qconv(cin, cout, k, padding, weight_bit_width):
    import brevitas.nn as qnn

    return qnn.QuantConv2d(cin, cout, k, padding=padding, bias=False, weight_bit_width=weight_bit_width)


def _qlinear(fin, fout, weight_bit_width):
    import brevitas.nn as qnn

    return qnn.QuantLinear(fin, fout, bias=False, weight_bit_width=weight_bit_width)


def _check(width, weight_bit_width, name):
    if not (isinstance(width, int | float) and width > 0):
        raise ValueError(f"{name}: width must be a positive number, got {width!r}")
    if not (isinstance(weight_bit_width, int) and 2 <= weight_bit_width <= 16):
        raise ValueError(f"{name}: weight_bit_width must be an int in [2, 16], got {weight_bit_width!r}")


def spiking_convnet(
    in_shape: tuple[int, int, int],
    convs: list[tuple[int, int, int, int]],
    dense: list[int],
    *,
    weight_bit_width: int = 8,
    decay_shift: int = 3,
    threshold: float = 1.0,
    reset: str = "zero",
    quantized: bool = False,
    acc_bits: int = 16,
    surrogate: str = "fast_sigmoid",
    slope: float = 10.0,
    gain: float = 1.0,
) -> SpikingNet:
    """Generic builder: ``convs`` = [(out_ch, kernel, padding, pool)], ``dense`` = [features…] (last = classes).

    Each conv is ``QuantConv2d → LIF`` (then a binary ``MaxPool2d(pool)`` when pool > 1); each dense is
    ``QuantLinear → LIF``; the final LIF counts spikes.  ``slope``: the surrogate's steepness (``nn.LIF``);
    ``gain`` multiplies the default weight init.
    """
    c, h, w = in_shape
    lif = dict(
        decay_shift=decay_shift,
        threshold=threshold,
        reset=reset,
        quantized=quantized,
        acc_bits=acc_bits,
        surrogate=surrogate,
        slope=slope,
    )
    layers: list[nn.Module] = []
    for cout, k, pad, pool in convs:
        layers += [TimeDistributed(_qconv(c, cout, k, pad, weight_bit_width)), LIF(**lif)]
        c, h, w = cout, h + 2 * pad - k + 1, w + 2 * pad - k + 1
        if pool > 1:
            layers.append(TimeDistributed(nn.MaxPool2d(pool)))
            h, w = h // pool, w // pool
        if h < 1 or w < 1:
            raise ValueError(
                f"spiking_convnet: conv {cout}c{k} (padding {pad}) leaves no output for input {in_shape}"
            )
    fin = c * h * w
    layers.append(TimeDistributed(nn.Flatten()))
    for i, fout in enumerate(dense):
        last = i == len(dense) - 1
        layers += [
            TimeDistributed(_qlinear(fin, fout, weight_bit_width)),
            LIF(**lif, output_mode="counts" if last else "spikes"),
        ]
        fin = fout
    net = SpikingNet(*layers, input_rank=5)
    if gain != 1.0:
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                m.weight.data.mul_(gain)
    return net


def spiking_mlp(sizes: list[int], **kw) -> SpikingNet:
    """Fully connected SNN over ``(N, T, sizes[0])`` spikes: QuantLinear → LIF per layer, counts at the end."""
    if len(sizes) < 2:
        raise ValueError(f"spiking_mlp: need at least [in, out] sizes, got {sizes}")
    wb = kw.pop("weight_bit_width", 8)
    lif_kw = {
        k: kw.pop(k)
        for k in list(kw)
        if k in ("decay_shift", "threshold", "quantized", "acc_bits", "surrogate")
    }
    if kw:
        raise TypeError(f"spiking_mlp: unexpected arguments {sorted(kw)}")
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers += [
            TimeDistributed(_qlinear(a, b, wb)),
            LIF(**lif_kw, output_mode="counts" if last else "spikes"),
        ]
    return SpikingNet(*layers, input_rank=3)


def s2n2_rf1(
    num_classes: int = 11, *, bits: int = 4, width: float = 1.0, weight_bit_width: int = 8, **kw
) -> SpikingNet:
    """S2N2_rf1 (Table 2.2): 16×16 binary I/Q plane → 16c5 → 8c5 → 128 → 11 spike counts."""
    _check(width, weight_bit_width, "s2n2_rf1")
    side = 1 << bits
    return spiking_convnet(
        (1, side, side),
        [(_ch(16, width), 5, 2, 1), (_ch(8, width), 5, 0, 1)],
        [_ch(128, width), num_classes],
        weight_bit_width=weight_bit_width,
        **kw,
    )


def s2n2_rf2(
    num_classes: int = 24, *, bits: int = 4, width: float = 1.0, weight_bit_width: int = 8, **kw
) -> SpikingNet:
    """S2N2_rf2 (Fig 2.13 / Table 2.5): 16×16 → 64c5 → 64c5 → 128c3 → 128c3 → 1024 → 24 spike counts."""
    _check(width, weight_bit_width, "s2n2_rf2")
    side = 1 << bits
    return spiking_convnet(
        (1, side, side),
        [
            (_ch(64, width), 5, 2, 1),
            (_ch(64, width), 5, 0, 1),
            (_ch(128, width), 3, 0, 1),
            (_ch(128, width), 3, 1, 1),
        ],
        [_ch(1024, width), num_classes],
        weight_bit_width=weight_bit_width,
        **kw,
    )


def s2n2_cv(
    num_classes: int = 10, *, side: int = 28, width: float = 1.0, weight_bit_width: int = 8, **kw
) -> SpikingNet:
    """S2N2_cv (Table 2.7): 28×28 → 16c7 (+pool 2) → 24c7 → 32c7 (+pool 2) → 10 spike counts."""
    _check(width, weight_bit_width, "s2n2_cv")
    if side < 20:
        raise ValueError(f"s2n2_cv: the 7×7 stack needs images of at least 20×20 pixels, got {side}")
    return spiking_convnet(
        (1, side, side),
        [(_ch(16, width), 7, 2, 2), (_ch(24, width), 7, 2, 1), (_ch(32, width), 7, 2, 2)],
        [num_classes],
        weight_bit_width=weight_bit_width,
        **kw,
    )


def layer_input_shapes(net: SpikingNet, in_shape: tuple[int, ...]) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer name, per-tick input shape (C, H, W) or (F,), kernel k² · C_in (streaming buffer bits)) per weight
    layer — the columns "Input Size" and "Buffer Size S2N2" of Tables 2.3/2.5/2.8."""
    rows, shape, nconv, ndense = [], tuple(in_shape), 0, 0
    for m in net:
        inner = m.module if isinstance(m, TimeDistributed) else m
        if isinstance(inner, nn.Conv2d):
            nconv += 1
            k = inner.kernel_size[0] * inner.kernel_size[1]
            rows.append((f"Conv.{nconv}", shape, k * shape[0]))
            p = inner.padding[0]
            shape = (
                inner.out_channels,
                shape[1] + 2 * p - inner.kernel_size[0] + 1,
                shape[2] + 2 * p - inner.kernel_size[1] + 1,
            )
        elif isinstance(inner, nn.MaxPool2d):
            s = inner.kernel_size if isinstance(inner.kernel_size, int) else inner.kernel_size[0]
            shape = (shape[0], shape[1] // s, shape[2] // s)
        elif isinstance(inner, nn.Flatten):
            shape = (math.prod(shape),)
        elif isinstance(inner, nn.Linear):
            ndense += 1
            rows.append((f"Dense {ndense}", shape, shape[0]))
            shape = (inner.out_features,)
    return rows
