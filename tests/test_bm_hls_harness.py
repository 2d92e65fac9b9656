"""The hardware kernels of nnet_bm_conv.h == bm_ops.fixedpoint, bit for bit.

The harness (``bm_ops.hls4ml.harness``) instantiates the compile-time kernels hls4ml calls -- io_parallel arrays and
io_stream ``nnet::array`` words -- once per random layer (config struct written by the same code as hls4ml's
template), one g++ build per batch, and returns the exact accumulators.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bm_ops.fixedpoint import BMFixedConfig, FixedType, bm_conv2d_fixed, quantize_bm_layer
from bm_ops.functional import to_log_weights
from bm_ops.hls4ml.config import valid_reuse_factors
from bm_ops.hls4ml.harness import HarnessCase, run_accum, run_cases


@st.composite
def layer_case(draw):
    signed = draw(st.booleans())
    width = draw(st.integers(2, 24))
    integer = draw(st.integers(-2, width + 2))
    it = FixedType(width, integer, signed)
    c, f = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(max(1, kh - pads[0] - pads[1]), 9))
    w = draw(st.integers(max(1, kw - pads[2] - pads[3]), 9))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    lt = draw(st.integers(1, 12))
    et = draw(st.integers(1, 12))
    cfg = BMFixedConfig(
        log_table_bits=lt,
        log_frac_bits=draw(st.integers(max(et, lt - 2, 1), 16)),
        exp_table_bits=et,
        exp_frac_bits=draw(st.integers(2, 24)),
        accum_frac_bits=draw(st.integers(0, 24)),
    )
    rf = draw(st.sampled_from(valid_reuse_factors(c * kh * kw, f)))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    wt = rng.normal(size=(f, c, kh, kw)) * np.exp(rng.normal(size=(f, c, kh, kw)))
    wt[rng.random(wt.shape) < 0.3] = 0.0
    wt[:, 0, 0, 0] = rng.normal(size=f) + 0.01
    vp, vn = to_log_weights(wt)
    x = rng.integers(it.min_raw, it.max_raw + 1, size=(3, c, h, w))
    x[rng.random(x.shape) < 0.2] = 0
    layer = quantize_bm_layer(vp, vn, rng.normal(size=f) * 4, it, FixedType(24, 12), cfg)
    return HarnessCase(layer, x, stride, pads, rf)


def _check(cases):
    results = run_cases(cases)
    for i, (case, got) in enumerate(zip(cases, results)):
        ref = bm_conv2d_fixed(case.x_raw, case.layer, case.stride, case.pads, return_accum=True)
        for io, acc in got.items():
            np.testing.assert_array_equal(acc, ref, err_msg=f"case {i} {io} rf={case.reuse_factor}")
    return results


@pytest.mark.slow
@settings(max_examples=3, deadline=None)
@given(st.lists(layer_case(), min_size=5, max_size=5))
def test_kernels_bit_exact_random_layers(cases):
    """15 random layers (3 builds of 5 instances), io_parallel and io_stream, every ReuseFactor split."""
    _check(cases)


def test_kernels_bit_exact_edge_cases():
    """One build: most negative input, all-zero windows, -inf-only v_neg, 1-bit weights (all weights ln 1),
    unsigned input with negative fraction bits, all-padding rows, every kind of ReuseFactor split."""
    rng = np.random.default_rng(3)
    it8 = FixedType(8, 8)  # integers -128..127
    vp = np.log(np.array([[[[0.5, 2.0], [1.0, 3.0]]]]))
    layer = quantize_bm_layer(vp, np.full_like(vp, -np.inf), [0.25], it8, FixedType(24, 12), BMFixedConfig())
    x = np.array([[[[-128, 0, 0], [0, 0, 127], [1, -1, 0]]]])
    cases = [HarnessCase(layer, x, (1, 1), (1, 1, 1, 1), 1)]
    ones = quantize_bm_layer(
        np.zeros((2, 1, 2, 2)), np.zeros((2, 1, 2, 2)), None, it8, FixedType(24, 12), BMFixedConfig()
    )
    assert ones.weight_bits == 1
    cases.append(HarnessCase(ones, rng.integers(-128, 128, size=(2, 1, 4, 3)), (1, 2), (0, 1, 1, 0), 2))
    w = rng.normal(size=(4, 3, 3, 3))
    w[rng.random(w.shape) < 0.3] = 0.0
    w[:, 0, 0, 0] = 1.0
    vp3, vn3 = to_log_weights(w)
    ut = FixedType(6, 9, signed=False)  # in_frac = -3
    cfg = BMFixedConfig(
        log_table_bits=6, log_frac_bits=8, exp_table_bits=5, exp_frac_bits=9, accum_frac_bits=3
    )
    q = quantize_bm_layer(vp3, vn3, rng.normal(size=4), ut, FixedType(24, 12), cfg)
    x3 = rng.integers(0, 64, size=(2, 3, 5, 4))
    x3[rng.random(x3.shape) < 0.2] = 0
    for rf in (3, 27, 54, 108):  # taps split, all taps, taps x 2 filter groups, one tap op per clock
        cases.append(HarnessCase(q, x3, (2, 1), (2, 2, 0, 2), rf))
    # images shorter than the kernel: several output rows read the same input rows (io_stream line buffer
    # sized from the emission schedule, bm_ops.hls4ml.config.line_buffer_size)
    cases.append(HarnessCase(q, rng.integers(0, 64, size=(2, 3, 2, 6)), (1, 1), (1, 1, 1, 1), 9))
    w4 = rng.normal(size=(3, 1, 2, 3))
    w4[:, 0, 0, 0] = 1.0
    vp4, vn4 = to_log_weights(w4)
    q4 = quantize_bm_layer(vp4, vn4, None, FixedType(14, 15), FixedType(24, 12), BMFixedConfig())
    cases.append(HarnessCase(q4, rng.integers(-8192, 8192, size=(2, 1, 1, 7)), (2, 3), (2, 2, 0, 1), 6))
    results = _check(cases)
    assert (results[0]["io_parallel"] == layer.bias[0]).any()  # an all-zero window gives exactly the bias


def test_invalid_reuse_factor_rejected_by_harness():
    it = FixedType(8, 4)
    q = quantize_bm_layer(
        np.zeros((2, 1, 3, 3)), np.zeros((2, 1, 3, 3)), None, it, FixedType(16, 8), BMFixedConfig()
    )
    with pytest.raises(ValueError, match=r"harness case 0: ReuseFactor=4 .*valid ReuseFactor\(s\): 1,3,9,18"):
        run_accum(np.zeros((1, 1, 4, 4), dtype=np.int64), q, reuse_factor=4)
