"""C++ (nnet_bm_conv.h, runtime-configured harness compiled once) == bm_ops.fixedpoint, bit for bit."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from bm_ops.fixedpoint import BMFixedConfig, FixedType, bm_conv2d_fixed, quantize_bm_layer
from bm_ops.functional import to_log_weights
from bm_ops.hls4ml.harness import run_accum


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
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    wt = rng.normal(size=(f, c, kh, kw)) * np.exp(rng.normal(size=(f, c, kh, kw)))
    wt[rng.random(wt.shape) < 0.3] = 0.0
    wt[:, 0, 0, 0] = rng.normal(size=f) + 0.01
    vp, vn = to_log_weights(wt)
    x = rng.integers(it.min_raw, it.max_raw + 1, size=(3, c, h, w))
    x[rng.random(x.shape) < 0.2] = 0
    return it, cfg, vp, vn, rng.normal(size=f) * 4, x, stride, pads


@settings(max_examples=150)
@given(layer_case())
def test_cpp_core_bit_exact(case):
    it, cfg, vp, vn, bias, x, stride, pads = case
    layer = quantize_bm_layer(vp, vn, bias, it, FixedType(24, 12), cfg)
    ref = bm_conv2d_fixed(x, layer, stride, pads, return_accum=True)
    got = run_accum(x, layer, stride, pads)
    np.testing.assert_array_equal(got, ref)


def test_extreme_inputs_bit_exact():
    """Most negative input, all-zero windows, single-tap filters, -inf-only v_neg."""
    it = FixedType(8, 8)  # integers -128..127
    vp = np.log(np.array([[[[0.5, 2.0], [1.0, 3.0]]]]))
    vn = np.full_like(vp, -np.inf)
    layer = quantize_bm_layer(vp, vn, [0.25], it, FixedType(24, 12), BMFixedConfig())
    x = np.array([[[[-128, 0, 0], [0, 0, 127], [1, -1, 0]]]])
    ref = bm_conv2d_fixed(x, layer, 1, 1, return_accum=True)
    np.testing.assert_array_equal(run_accum(x, layer, (1, 1), (1, 1, 1, 1)), ref)
    # an all-zero window gives exactly the bias
    assert (ref == layer.bias[0]).any()
