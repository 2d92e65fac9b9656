"""Fast BMConv2d kernel (bm_ops._kernel) == reference math (bm_ops.functional), forward and sub-gradients."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bm_ops._kernel import bm_conv2d_fast, build
from bm_ops.functional import bm_conv2d, to_log_weights


def _case(rng, n, c, f, kh, kw, h, w, zero_frac, dtype, neg_inf_rows):
    x = rng.normal(size=(n, c, h, w))
    x[rng.random(x.shape) < zero_frac] = 0.0
    wt = rng.normal(size=(f, c, kh, kw))
    wt[rng.random(wt.shape) < zero_frac] = 0.0
    vp, vn = to_log_weights(wt)
    if neg_inf_rows:
        vp[0] = -np.inf  # filter 0 has no positive tap at all
        vn[-1] = -np.inf
    # independent v+/v- (after fine-tuning both can be finite at one tap)
    both = rng.random(vp.shape) < 0.2
    vp[both] = rng.normal(size=int(both.sum()))
    b = rng.normal(size=f)
    return [torch.tensor(a, dtype=dtype) for a in (x, vp, vn, b)]


def _compare(tensors, stride, padding, use_bias, rtol, atol):
    a1 = [t.clone().requires_grad_() for t in tensors]
    a2 = [t.clone().requires_grad_() for t in tensors]
    b1 = a1[3] if use_bias else None
    b2 = a2[3] if use_bias else None
    y1 = bm_conv2d_fast(a1[0], a1[1], a1[2], b1, stride, padding)
    y2 = bm_conv2d(a2[0], a2[1], a2[2], b2, stride, padding)
    torch.testing.assert_close(y1, y2, rtol=rtol, atol=atol)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    for k, (p, q) in enumerate(zip(a1[:3], a2[:3])):
        assert torch.isfinite(p.grad).all()
        torch.testing.assert_close(p.grad, q.grad, rtol=rtol, atol=atol, msg=lambda m, k=k: f"grad {k}: {m}")
    if use_bias:
        torch.testing.assert_close(a1[3].grad, a2[3].grad, rtol=rtol, atol=atol)


shapes = dict(
    n=st.integers(1, 3),
    c=st.integers(1, 5),
    f=st.integers(1, 19),
    kh=st.integers(1, 3),
    kw=st.integers(1, 3),
    h=st.integers(3, 9),
    w=st.integers(3, 9),
    sh=st.integers(1, 3),
    sw=st.integers(1, 2),
    ph=st.integers(0, 2),
    pw=st.integers(0, 2),
    zero_frac=st.sampled_from([0.0, 0.3, 0.8]),
    use_bias=st.booleans(),
    neg_inf_rows=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)


@settings(max_examples=60)
@given(**shapes)
def test_kernel_matches_reference_float64(
    n, c, f, kh, kw, h, w, sh, sw, ph, pw, zero_frac, use_bias, neg_inf_rows, seed
):
    rng = np.random.default_rng(seed)
    t = _case(rng, n, c, f, kh, kw, h, w, zero_frac, torch.float64, neg_inf_rows)
    _compare(t, (sh, sw), (ph, pw), use_bias, rtol=1e-12, atol=1e-12)


@settings(max_examples=40)
@given(**shapes)
def test_kernel_matches_reference_float32(
    n, c, f, kh, kw, h, w, sh, sw, ph, pw, zero_frac, use_bias, neg_inf_rows, seed
):
    rng = np.random.default_rng(seed)
    t = _case(rng, n, c, f, kh, kw, h, w, zero_frac, torch.float32, neg_inf_rows)
    _compare(t, (sh, sw), (ph, pw), use_bias, rtol=1e-5, atol=1e-5)


def test_kernel_gradcheck_against_finite_differences():
    # away from arg-max ties the BM function is smooth: the sub-gradient is the gradient
    rng = np.random.default_rng(3)
    x, vp, vn, b = _case(rng, 2, 2, 3, 2, 2, 4, 4, 0.0, torch.float64, False)
    args = [t.clone().requires_grad_() for t in (x, vp, vn, b)]
    # finite differences must not cross a zero of x (x+/x- switch) nor step a -inf weight
    assert torch.autograd.gradcheck(
        lambda xx, bb: bm_conv2d_fast(xx, args[1].detach(), args[2].detach(), bb, 1, 1),
        (args[0], args[3]),
        eps=1e-7,
        atol=1e-6,
    )
    finite_p = torch.isfinite(vp)
    vp0 = vp.clone()

    def f_vp(vals):
        v = vp0.clone()
        v[finite_p] = vals
        return bm_conv2d_fast(x, v, vn, b, 1, 1)

    assert torch.autograd.gradcheck(f_vp, (vp[finite_p].clone().requires_grad_(),), eps=1e-7, atol=1e-6)


def test_all_zero_input_and_all_neg_inf_weights():
    x = torch.zeros(2, 3, 4, 4, requires_grad=True)
    vp = torch.full((5, 3, 3, 3), -math.inf, requires_grad=True)
    vn = torch.full((5, 3, 3, 3), -math.inf, requires_grad=True)
    b = torch.randn(5, requires_grad=True)
    y = bm_conv2d_fast(x, vp, vn, b, 1, 1)
    torch.testing.assert_close(y, b.detach()[None, :, None, None].expand_as(y))
    y.sum().backward()
    assert (x.grad == 0).all() and (vp.grad == 0).all() and (vn.grad == 0).all()
    torch.testing.assert_close(b.grad, torch.full((5,), 2.0 * 16))


def test_no_grad_path_and_threads_agree():
    rng = np.random.default_rng(1)
    x, vp, vn, b = _case(rng, 5, 4, 9, 3, 3, 8, 8, 0.3, torch.float32, False)
    old = torch.get_num_threads()
    try:
        # other test modules may have pinned torch to one thread: force the OpenMP path with two
        torch.set_num_threads(2)
        with torch.no_grad():
            y_inf = bm_conv2d_fast(x, vp, vn, b, 1, 1)
        y_tr = bm_conv2d_fast(x, vp.requires_grad_(), vn, b, 1, 1)
        torch.set_num_threads(1)
        with torch.no_grad():
            y1 = bm_conv2d_fast(x, vp, vn, b, 1, 1)
    finally:
        torch.set_num_threads(old)
    assert torch.equal(y_inf, y_tr.detach())
    assert torch.equal(y1, y_inf)


def test_kernel_bad_input():
    x = torch.randn(1, 2, 5, 5)
    vp, vn = to_log_weights(torch.randn(3, 2, 3, 3))
    with pytest.raises(TypeError, match="dtype"):
        bm_conv2d_fast(x.double(), vp, vn)
    with pytest.raises(TypeError, match="float32/float64"):
        bm_conv2d_fast(x.half(), vp.half(), vn.half())
    with pytest.raises(ValueError, match="x contains NaN"):
        bm_conv2d_fast(torch.full_like(x, float("nan")), vp, vn)
    with pytest.raises(ValueError, match="channels"):
        bm_conv2d_fast(torch.randn(1, 3, 5, 5), vp, vn)
    with pytest.raises(TypeError, match="torch tensors"):
        bm_conv2d_fast(x.numpy(), vp, vn)


def test_build_is_cached():
    assert build() == build()
