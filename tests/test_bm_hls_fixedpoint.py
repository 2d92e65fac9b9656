"""bm_ops.fixedpoint: ap_fixed semantics, tables, error bound vs the float BM layer, C++ harness bit-exactness."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bm_ops.fixedpoint import (
    BMFixedConfig,
    FixedType,
    bm_conv2d_fixed,
    exp2_fixed,
    exp_table,
    float_error_bound,
    log2_fixed,
    log_table,
    quantize_bm_layer,
)
from bm_ops.functional import bm_conv2d, to_log_weights

# ------------------------------------------------------------------------------------------ ap_fixed model


def test_cast_trn_wrap_matches_twos_complement():
    t = FixedType(6, 3)  # frac 3, raw range [-32, 31]
    # from frac 5: 1.75 + 1/32 -> floor to 1.75; 4.0 (raw 32) wraps to -4.0
    raw = t.cast_raw(np.array([56 + 1, 128, -1]), 5)
    assert raw.tolist() == [14, -32, -1]


def test_cast_rnd_sat():
    t = FixedType(6, 3, True, "RND", "SAT")
    raw = t.cast_raw(np.array([2, 6, -2, -6, 10_000, -10_000]), 2)  # x/4 -> step 1/8: exact doubling
    assert raw.tolist() == [4, 12, -4, -12, 31, -32]
    raw = t.cast_raw(np.array([1, 3, -1, -3]), 4)  # 1/16 -> half of a step: AP_RND rounds half up
    assert raw.tolist() == [1, 2, 0, -1]


def test_fixedtype_rejects_unsupported_modes():
    with pytest.raises(ValueError, match="AP_RND_CONV"):
        FixedType(8, 4, rounding="RND_CONV")
    with pytest.raises(ValueError, match="width"):
        FixedType(0, 0)


def test_tables_are_midpoint_roundings():
    lt = log_table(4, 10)
    assert lt[0] == round(1024 * math.log2(1 + 0.5 / 16))
    et = exp_table(4, 12)
    assert et[-1] == round(4096 * 2 ** (15.5 / 16))
    assert et.min() >= 4096 and et.max() <= 8192


def test_log2_fixed_exact_on_table_midpoints():
    cfg = BMFixedConfig(log_table_bits=6, log_frac_bits=12)
    # magnitude 3 with 2 fraction bits = 0.75 -> e=1, mantissa .1 -> idx 32 -> (1-2)*4096 + LOG_T[32]
    got = int(log2_fixed(np.array([3]), 2, cfg)[0])
    assert got == -4096 + int(log_table(6, 12)[32])
    assert log2_fixed(np.array([0]), 2, cfg)[0] == 0  # zero: handled as -inf by the caller


def test_exp2_fixed_rounding_and_underflow():
    cfg = BMFixedConfig(exp_table_bits=4, log_frac_bits=8, exp_frac_bits=10, accum_frac_bits=4)
    et = exp_table(4, 10)
    z = np.array([0, 3 * 256, -20 * 256])
    got = exp2_fixed(z, cfg)
    assert got[0] == (et[0] + (1 << 5)) >> 6  # 2^0 with FA=4: E >> 6, rounded half up
    assert got[1] == (et[0] + (1 << 2)) >> 3  # 2^3: shift 3 + 4 - 10 = -3
    assert got[2] == 0


# ------------------------------------------------------------------------------------------ float agreement


@st.composite
def bm_case(draw, max_hw=7):
    signed = draw(st.booleans())
    width = draw(st.integers(4, 14))
    integer = draw(st.integers(1, min(width, 6)))
    it = FixedType(width, integer, signed)
    c = draw(st.integers(1, 3))
    f = draw(st.integers(1, 3))
    kh = draw(st.integers(1, 3))
    kw = draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, kh - 1)), draw(st.integers(0, kw - 1)))
    h = draw(st.integers(kh, max_hw))
    w = draw(st.integers(kw, max_hw))
    seed = draw(st.integers(0, 2**31 - 1))
    cfg = BMFixedConfig(
        log_table_bits=draw(st.integers(3, 9)),
        log_frac_bits=draw(st.integers(9, 14)),
        exp_table_bits=draw(st.integers(3, 9)),
        exp_frac_bits=draw(st.integers(8, 18)),
        accum_frac_bits=draw(st.integers(8, 18)),
    )
    rng = np.random.default_rng(seed)
    wt = rng.normal(size=(f, c, kh, kw)) * math.exp(rng.normal() * 0.5)
    wt[rng.random(wt.shape) < 0.3] = 0.0
    wt[:, 0, 0, 0] = rng.normal(size=f) + 0.05  # every filter keeps a finite weight
    v_pos, v_neg = to_log_weights(wt)
    bias = rng.normal(size=f)
    x_raw = rng.integers(it.min_raw, it.max_raw + 1, size=(2, c, h, w))
    x_raw[rng.random(x_raw.shape) < 0.2] = 0
    return it, cfg, v_pos, v_neg, bias, x_raw, stride, pad


@settings(max_examples=40)
@given(bm_case())
def test_fixed_agrees_with_float_within_documented_bound(case):
    it, cfg, v_pos, v_neg, bias, x_raw, stride, pad = case
    rt = FixedType(40, 20, True, "RND", "SAT")  # wide: no overflow, bound includes the cast step
    layer = quantize_bm_layer(v_pos, v_neg, bias, it, rt, cfg)
    x = it.to_float(x_raw)
    y_fix = rt.to_float(bm_conv2d_fixed(x_raw, layer, stride, pad))
    b_used = layer.bias / 2.0**cfg.accum_frac_bits  # the float model with the exactly representable bias
    y_float = bm_conv2d(x, v_pos, v_neg, b_used, stride, pad)
    bound = float_error_bound(x, v_pos, v_neg, layer, stride, pad)
    assert np.all(np.abs(y_fix - y_float) <= bound + 1e-12)


def test_error_bound_defaults_documented():
    layer = quantize_bm_layer(
        np.zeros((1, 1, 1, 1)), np.full((1, 1, 1, 1), -np.inf), None, FixedType(16, 6), FixedType(16, 6)
    )
    eb = layer.error_bound()
    assert eb["rel_err"] < 0.00088  # module docstring: < 0.088 % per exp term with the defaults (T = Te = 10)
    assert abs(eb["log_table_err"] - 0.00073) < 1e-5 and abs(eb["exp_err"] - 0.00050) < 1e-5
    small = quantize_bm_layer(
        np.zeros((1, 1, 1, 1)),
        np.full((1, 1, 1, 1), -np.inf),
        None,
        FixedType(16, 6),
        FixedType(16, 6),
        BMFixedConfig(log_table_bits=8, exp_table_bits=8, log_frac_bits=12),
    )
    assert small.error_bound()["rel_err"] < 0.0035  # 256-entry tables: < 0.35 %


# ------------------------------------------------------------------------------------------ bad input


def _w(f=2, c=1, k=3):
    return to_log_weights(np.random.default_rng(0).normal(size=(f, c, k, k)))


def test_dead_filter_rejected():
    vp, vn = _w()
    vp[1] = -np.inf
    vn[1] = -np.inf
    with pytest.raises(ValueError, match=r"filter\(s\) \[1\].*only -inf"):
        quantize_bm_layer(vp, vn, None, FixedType(8, 3), FixedType(16, 6), where="conv7")


def test_weight_bits_too_narrow_rejected():
    vp, vn = _w()
    with pytest.raises(ValueError, match="conv7: weight_bits=4 too narrow"):
        quantize_bm_layer(
            vp, vn, None, FixedType(8, 3), FixedType(16, 6), BMFixedConfig(weight_bits=4), "conv7"
        )


def test_precision_too_narrow_for_log_table_rejected():
    vp, vn = _w()
    with pytest.raises(ValueError, match="log_frac_bits=4 is narrower than exp_table_bits=10"):
        quantize_bm_layer(
            vp, vn, None, FixedType(8, 3), FixedType(16, 6), BMFixedConfig(log_frac_bits=4), "c"
        )
    with pytest.raises(ValueError, match="too narrow for a log table"):
        quantize_bm_layer(
            vp,
            vn,
            None,
            FixedType(8, 3),
            FixedType(16, 6),
            BMFixedConfig(log_table_bits=12, log_frac_bits=8, exp_table_bits=4),
            "c",
        )


def test_nan_weights_and_bad_inputs_rejected():
    vp, vn = _w()
    vp[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="v_pos contains NaN"):
        quantize_bm_layer(vp, vn, None, FixedType(8, 3), FixedType(16, 6))
    vp, vn = _w()
    layer = quantize_bm_layer(vp, vn, None, FixedType(8, 3), FixedType(16, 6))
    with pytest.raises(TypeError, match="raw integers"):
        bm_conv2d_fixed(np.zeros((1, 1, 5, 5)), layer)
    with pytest.raises(ValueError, match="outside the raw range"):
        bm_conv2d_fixed(np.full((1, 1, 5, 5), 1000), layer)
    with pytest.raises(ValueError, match="channels"):
        bm_conv2d_fixed(np.zeros((1, 2, 5, 5), dtype=np.int64), layer)


def test_accumulator_too_wide_rejected():
    vp = np.full((1, 1, 1, 1), 30.0)  # w = e^30
    vn = np.full((1, 1, 1, 1), -np.inf)
    with pytest.raises(ValueError, match="accumulator would need"):
        quantize_bm_layer(vp, vn, None, FixedType(32, 30), FixedType(16, 6), where="big")
