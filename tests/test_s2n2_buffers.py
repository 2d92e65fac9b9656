"""Eq 2.5/2.6 and the streaming buffer: every row of seed Tables 2.3, 2.5 and 2.8 from its printed shape/ratio."""

from __future__ import annotations

import math

import pytest

from finn_s2n2.finn import buffers

# (table, layer, #ticks, kind, input_shape (C,H,W) or (N,), kernel or out_features, spike ratio,
#  tick-batching bits, S2N2 bits, improvement as printed, how the seed rounded the improvement)
ROWS = [
    ("2.3", "Conv.1", 128, "conv", (1, 16, 16), 5, 0.0039, 1917, 25, 77, "ceil"),
    ("2.3", "Conv.2", 128, "conv", (16, 16, 16), 5, 0.07, 697304, 400, 1744, "ceil"),
    ("2.3", "Dense 1", 128, "dense", (8, 12, 12), 128, 0.08, 212337, 128, 1658, "floor"),
    ("2.3", "Dense 2", 128, "dense", (128,), 11, 0.12, 27526, 11, 2502, "floor"),
    ("2.5", "Conv.1", 1024, "conv", (1, 16, 16), 5, 0.0039, 18403, 25, 737, "ceil"),
    ("2.5", "Conv.2", 1024, "conv", (64, 16, 16), 5, 0.005, 2013266, 1600, 1258, "floor"),
    ("2.5", "Conv.3", 1024, "conv", (64, 12, 12), 3, 0.06, 13589545, 576, 23592, "floor"),
    ("2.5", "Conv.4", 1024, "conv", (128, 10, 10), 3, 0.12, 37748736, 1152, 32768, "floor"),
    ("2.5", "Dense 1", 1024, "dense", (128, 10, 10), 1024, 0.14, 44040192, 1024, 43008, "floor"),
    ("2.5", "Dense 2", 1024, "dense", (1024,), 24, 0.05, 1048576, 24, 43690, "floor"),
    # Table 2.8 prints "5,2136 bits" (= 52,136) and labels the third row "Conv.2" (it is Conv.3)
    ("2.8", "Conv.1", 500, "conv", (1, 28, 28), 7, 0.007, 52136, 49, 1064, "floor"),
    ("2.8", "Conv.2", 500, "conv", (16, 13, 13), 7, 0.16, 4542720, 784, 5794, "floor"),
    ("2.8", "Conv.3", 500, "conv", (24, 11, 11), 7, 0.33, 10062360, 1176, 8556, "floor"),
    ("2.8", "Dense", 500, "dense", (32, 4, 4), 10, 0.41, 1889280, 10, 188928, "floor"),
]


@pytest.mark.parametrize("row", ROWS, ids=[f"T{r[0]}-{r[1]}" for r in ROWS])
def test_seed_table_rows(row):
    table, name, ticks, kind, shape, k_or_out, ratio, tb, sb, impr, rounding = row
    s = math.prod(shape)
    assert buffers.tick_batching_bits(s, ticks, ratio) == tb
    kw = dict(kernel_size=k_or_out) if kind == "conv" else dict(out_features=k_or_out)
    r = buffers.layer_buffer(name, kind=kind, num_ticks=ticks, input_shape=shape, spike_ratio=ratio, **kw)
    assert (r.tick_batching_bits, r.streaming_bits) == (tb, sb)
    assert getattr(math, rounding)(r.improvement) == impr
    if kind == "conv":
        assert buffers.streaming_bits(k_or_out, shape[0]) == sb


def test_eq26_seed_example():
    """§2.2.1: 64x16x16 input, 16 ticks: encoding wins only for p < 1/18 (binary tensor 2^18 bits)."""
    s = 64 * 16 * 16
    assert buffers.binary_tensor_bits(s, 16) == 2**18
    assert buffers.max_ratio_for_encoding(s, 16) == pytest.approx(1 / 18)
    assert buffers.encoding_is_smaller(s, 16, 0.05)
    assert not buffers.encoding_is_smaller(s, 16, 0.06)
    # consistency of Eq 2.5 and 2.6: encoding smaller <=> Eq 2.5 bits < S*T
    for p in (0.01, 0.05, 0.055, 0.056, 0.2):
        assert buffers.encoding_is_smaller(s, 16, p) == (buffers.tick_batching_bits(s, 16, p) < s * 16)


def test_report_and_bad_input():
    layers = [
        dict(name="c1", kind="conv", input_shape=(1, 16, 16), kernel_size=5),
        dict(name="d1", kind="dense", input_shape=(128,), out_features=11),
    ]
    rows = buffers.buffer_report(layers, {"c1": 0.0039, "d1": 0.12}, num_ticks=128)
    assert [r.streaming_bits for r in rows] == [25, 11]
    assert rows[1].mvau_input_buffer_bits == 128
    assert "c1" in buffers.format_report(rows)
    with pytest.raises(ValueError, match="spike_ratio must be a number in"):
        buffers.tick_batching_bits(10, 10, 1.5)
    with pytest.raises(ValueError, match="num_ticks must be a positive int"):
        buffers.tick_batching_bits(10, 0, 0.1)
    with pytest.raises(ValueError, match="one spike ratio per layer"):
        buffers.buffer_report(layers, [0.1], num_ticks=4)
    with pytest.raises(ValueError, match="kind must be"):
        buffers.layer_buffer("x", kind="pool", num_ticks=2, input_shape=(2,), spike_ratio=0.1)
