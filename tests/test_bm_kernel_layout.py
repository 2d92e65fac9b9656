"""Kernel data layout edge cases: channel counts and row widths around the 16-lane tiles of the list builder,
tap groups of several offsets, strides larger than the kernel (ring rows never reused), one thread and two
threads (row chunks; the backward's fixed split), float32 and float64 against the float64 reference."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bm_ops._kernel import bm_conv2d_fast
from bm_ops.functional import bm_conv2d, to_log_weights


def _tensors(seed, n, c, f, k, h, w, dtype, zero_frac=0.2):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, h, w))
    x[rng.random(x.shape) < zero_frac] = 0.0
    vp, vn = to_log_weights(rng.normal(size=(f, c, k[0], k[1])))
    both = rng.random(vp.shape) < 0.3  # v+ and v- both finite at some taps
    vp[both] = rng.normal(size=int(both.sum()))
    return [torch.tensor(a, dtype=dtype) for a in (x, vp, vn, rng.normal(size=f))]


@pytest.mark.parametrize(
    "c, w, k, stride, padding, floor",
    [
        (16, 16, (3, 3), 1, 1, 0.0),  # exactly one 16 x 16 tile per row
        (17, 33, (3, 3), 1, 1, 0.0),  # one channel and one pixel past whole tiles
        (31, 20, (3, 2), (1, 2), (1, 0), 0.1),  # floor: padding and small |x| listed at ln s
        (40, 7, (2, 3), 3, 2, 0.0),  # stride > kernel: no ring row is reused
        (9, 18, (1, 1), 1, 0, 0.0),  # 1x1: a single tap offset per field
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_layout_cases_match_reference(c, w, k, stride, padding, floor, dtype):
    x, vp, vn, b = _tensors(c * 100 + w, 2, c, 11, k, 5, w, dtype)
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    grads = {}
    old = torch.get_num_threads()
    try:
        for nt in (1, 2):
            torch.set_num_threads(nt)
            a = [t.clone().requires_grad_() for t in (x, vp, vn, b)]
            y = bm_conv2d_fast(*a, stride, padding, input_floor=floor)
            g = torch.linspace(-1, 1, y.numel(), dtype=dtype).reshape(y.shape)
            y.backward(g)
            grads[nt] = (y.detach(), [t.grad for t in a])
    finally:
        torch.set_num_threads(old)
    r = [t.double().clone().requires_grad_() for t in (x, vp, vn, b)]
    y_ref = bm_conv2d(*r, stride, padding, input_floor=floor)
    y_ref.backward(torch.linspace(-1, 1, y_ref.numel(), dtype=torch.float64).reshape(y_ref.shape))
    for nt, (y, gs) in grads.items():
        torch.testing.assert_close(
            y.double(), y_ref.detach(), rtol=tol, atol=tol, msg=lambda m, nt=nt: f"y, {nt} threads: {m}"
        )
        for name, gk, gr in zip(("x", "v_pos", "v_neg", "bias"), gs, r):
            torch.testing.assert_close(
                gk.double(),
                gr.grad,
                rtol=tol,
                atol=tol,
                msg=lambda m, name=name, nt=nt: f"d{name}, {nt} threads: {m}",
            )
    assert torch.equal(grads[1][0], grads[2][0])  # the forward does not depend on the thread count


def test_backward_is_deterministic_run_to_run():
    x, vp, vn, b = _tensors(7, 3, 12, 9, (3, 3), 9, 10, torch.float32)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        runs = []
        for _ in range(3):
            a = [t.clone().requires_grad_() for t in (x, vp, vn)]
            bm_conv2d_fast(*a, None, 1, 1).square().sum().backward()
            runs.append([t.grad for t in a])
    finally:
        torch.set_num_threads(old)
    for other in runs[1:]:
        for g0, g1 in zip(runs[0], other):
            assert torch.equal(g0, g1)


@pytest.mark.slow
def test_isa_levels_agree_backward():
    # every x86-64 level's library (native SIMD width per level) computes the same sub-gradients
    import ctypes

    from bm_ops import _kernel

    x, vp, vn, _ = _tensors(3, 2, 19, 13, (3, 3), 6, 21, torch.float32)
    gout = torch.linspace(-1, 1, 2 * 13 * 6 * 21).reshape(2, 13, 6, 21)
    results = {}
    for lv in [lv for lv in _kernel._levels() if lv <= _kernel.cpu_level()]:
        lib = _kernel._load(_kernel.build(level=lv))
        gx, gp, gn = torch.empty_like(x), torch.empty_like(vp), torch.empty_like(vn)
        lib.bm_bwd_pn_f32(
            _kernel._ptr(x), 2, 19, 6, 21, _kernel._ptr(vp), _kernel._ptr(vn), 13, 3, 3, 1, 1, 1, 1, 6, 21,
            ctypes.c_double(0.0), _kernel._ptr(gout), _kernel._ptr(gx), _kernel._ptr(gp), _kernel._ptr(gn), 1,
        )  # fmt: skip
        results[lv] = (gx, gp, gn)
    ref = results[max(results)]
    for lv, grads in results.items():
        for name, g, r in zip(("dx", "dv_pos", "dv_neg"), grads, ref):
            torch.testing.assert_close(
                g, r, rtol=1e-5, atol=1e-5, msg=lambda m, lv=lv, name=name: f"level {lv} {name}: {m}"
            )


def test_two_threads_on_fewer_rows_than_blocks():
    # 3 output rows < 2 blocks per thread x 2 rows: the backward runs on one thread (no overlapping blocks)
    x, vp, vn, b = _tensors(5, 1, 6, 4, (3, 3), 3, 8, torch.float64)
    r = [t.clone().requires_grad_() for t in (x, vp, vn, b)]
    bm_conv2d(*r, 1, 1).sum().backward()
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = [t.clone().requires_grad_() for t in (x, vp, vn, b)]
        bm_conv2d_fast(*a, 1, 1).sum().backward()
    finally:
        torch.set_num_threads(old)
    for p, q in zip(a, r):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    c=st.integers(12, 48),
    f=st.integers(8, 40),
    kh=st.integers(1, 5),
    kw=st.integers(2, 5),
    sh=st.integers(1, 3),
    sw=st.integers(1, 3),
    pad=st.integers(0, 2),
    w=st.integers(5, 12),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    ties=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_row_strip_tap_groups_match_reference(c, f, kh, kw, sh, sw, pad, w, dtype, ties, seed):
    # channel x filter counts around the 32 KiB tap-group budget: one group of the whole kernel (row strip),
    # several groups of whole kernel rows (row strip per group), groups of single offsets (pixel lists / gather);
    # strides up to 3 (strip slices of non-adjacent columns); ties: x in {-1, 0, 1} (ln 1 = 0 exactly in every
    # libm) and integer log-weights, so many taps share the maximum and the backward must still pick the first tap
    # in (c, kh, kw) order through the strip's tap indices
    x, vp, vn, b = _tensors(seed, 2, c, f, (kh, kw), kh + 2, w + kw, torch.float64, zero_frac=0.3)
    if ties:
        x = torch.sign(x)
        vp, vn = torch.round(vp), torch.round(vn)
    p = min(pad, kh - 1, kw - 1)
    r = [t.clone().requires_grad_() for t in (x, vp, vn, b)]
    y_ref = bm_conv2d(*r, (sh, sw), p)
    g = torch.linspace(-1, 1, y_ref.numel(), dtype=torch.float64).reshape(y_ref.shape)
    y_ref.backward(g)
    a = [t.to(dtype).clone().requires_grad_() for t in (x, vp, vn, b)]
    y = bm_conv2d_fast(*a, (sh, sw), p)
    y.backward(g.to(dtype))
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    torch.testing.assert_close(y.double(), y_ref.detach(), rtol=tol, atol=tol)
    for name, gk, gr in zip(("x", "v_pos", "v_neg", "bias"), a, r):
        torch.testing.assert_close(
            gk.grad.double(), gr.grad, rtol=tol, atol=tol, msg=lambda m, n=name: f"d{n}: {m}"
        )


@settings(max_examples=40, deadline=None)
@given(
    where=st.sampled_from(["x", "v_pos", "v_neg", "bias"]),
    value=st.sampled_from([float("nan"), float("inf"), float("-inf"), -float("nan"), 1e30, -0.0, 5e-324]),
    pos=st.integers(0, 10_000),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_kernel_value_checks_name_the_argument(where, value, pos, dtype):
    """The kernel's checks on raw bit patterns: NaN/inf in x or bias, NaN/+inf in the log weights -> an error naming
    the argument; -inf weights, huge, negative-zero and subnormal values pass and match the reference."""
    x, vp, vn, b = _tensors(pos, 2, 5, 3, (3, 3), 6, 7, dtype)
    t = {"x": x, "v_pos": vp, "v_neg": vn, "bias": b}[where]
    flat = t.view(-1)
    flat[pos % flat.numel()] = value
    is_nan = value != value
    bad = is_nan or (value == float("inf")) or (where in ("x", "bias") and value == float("-inf"))
    if value == 1e30 and dtype == torch.float32 and where != "x":
        bad = False  # 1e30 is finite in float32 too
    if bad:
        with pytest.raises(ValueError, match=f"{where} contains NaN"):
            bm_conv2d_fast(x, vp, vn, b, 1, 1)
    else:
        got = bm_conv2d_fast(x, vp, vn, b, 1, 1)
        want = bm_conv2d(x.double(), vp.double(), vn.double(), b.double(), stride=1, padding=1)
        # The output is a signed sum of four exponential terms, so a huge input (1e30) can cancel: the kernel's
        # float32 rounding is relative to the largest term, not to the (smaller) result. Bound the error by the
        # term scale M = exp(max(ln|x| + max(v+, v-))) over each window (the reference with x^- = 0 and v^- = -inf);
        # where one term dominates, M ≈ |result - bias|, so the bound is about the former rtol = atol = tol.
        vmax = torch.maximum(vp, vn).double()
        scale = bm_conv2d(
            x.double().abs(), vmax, torch.full_like(vmax, float("-inf")), None, stride=1, padding=1
        )
        tol = 1e-4 if dtype == torch.float32 else 1e-10
        bound = tol * (1.0 + scale + b.double().abs()[None, :, None, None])
        same = got.double() == want  # also equal infinities (a 1e30 log weight overflows in both)
        err = torch.where(same, torch.zeros_like(want), (got.double() - want).abs())
        worst = int(torch.argmax(err - bound))
        assert bool((err <= bound).all()), (
            f"element {worst}: got {got.view(-1)[worst].item()!r}, want {want.view(-1)[worst].item()!r}, "
            f"term scale {scale.view(-1)[worst].item()!r}"
        )


@pytest.mark.parametrize("stride", [(1, 1), (2, 1), (1, 2), (3, 3)])
@pytest.mark.parametrize(
    "c, f, k, dtype",
    [
        (32, 32, (3, 3), torch.float32),  # 8 KiB of weight rows per tap offset: tap groups of one kernel row
        (32, 16, (3, 3), torch.float64),  # the same in float64
        (24, 40, (2, 3), torch.float32),  # two kernel rows, one per group
    ],
)
def test_one_row_tap_groups_reuse_ring_row_strips(c, f, k, dtype, stride):
    """Tap groups of one kernel row: the forward keeps one strip per ring row and rebuilds it only when the ring
    refills that row (rows reused by consecutive output rows, image changes in a thread's run of rows, strides
    larger than the kernel); 1 and 2 threads against the float64 reference."""
    x, vp, vn, b = _tensors(11, 3, c, f, k, 13, 10, torch.float64, zero_frac=0.3)
    y_ref = bm_conv2d(x, vp, vn, b, stride, 1)
    old = torch.get_num_threads()
    try:
        for nt in (1, 2):
            torch.set_num_threads(nt)
            with torch.no_grad():
                y = bm_conv2d_fast(*(t.to(dtype) for t in (x, vp, vn, b)), stride, 1)
            tol = 1e-12 if dtype == torch.float64 else 2e-5
            torch.testing.assert_close(
                y.double(), y_ref, rtol=tol, atol=tol, msg=lambda m, nt=nt: f"{nt} threads: {m}"
            )
    finally:
        torch.set_num_threads(old)
