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


# ----------------------------------------------------------------------------- authors' input floor, op features


@settings(max_examples=25, deadline=None)
@given(**shapes, floor=st.sampled_from([0.1, 0.5]))
def test_kernel_input_floor_matches_reference_float64(
    n, c, f, kh, kw, h, w, sh, sw, ph, pw, zero_frac, use_bias, neg_inf_rows, seed, floor
):
    rng = np.random.default_rng(seed)
    x, vp, vn, b = _case(rng, n, c, f, kh, kw, h, w, zero_frac, torch.float64, neg_inf_rows)
    a1 = [t.clone().requires_grad_() for t in (x, vp, vn, b)]
    a2 = [t.clone().requires_grad_() for t in (x, vp, vn, b)]
    y1 = bm_conv2d_fast(*a1[:3], a1[3] if use_bias else None, (sh, sw), (ph, pw), input_floor=floor)
    y2 = bm_conv2d(*a2[:3], a2[3] if use_bias else None, (sh, sw), (ph, pw), input_floor=floor)
    torch.testing.assert_close(y1, y2, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    for p, q in zip(a1[:3], a2[:3]):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-12, atol=1e-12)
    # numpy spec: ln max(x^a, s), padding taps ln s
    want = bm_conv2d(x.numpy(), vp.numpy(), vn.numpy(), b.numpy() if use_bias else None, (sh, sw), (ph, pw),
                     input_floor=floor)  # fmt: skip
    np.testing.assert_allclose(y1.detach().numpy(), want, rtol=1e-12, atol=1e-12)


def test_ties_resolve_to_first_tap_like_reference():
    # equal inputs and equal weights everywhere: every max is a tie over all taps
    x = torch.ones(1, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    vp = torch.zeros(2, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    vn = torch.full((2, 3, 3, 3), -1.0, dtype=torch.float64, requires_grad=True)
    x2, vp2, vn2 = (t.detach().clone().requires_grad_() for t in (x, vp, vn))
    bm_conv2d_fast(x, vp, vn, None, 1, 1).sum().backward()
    bm_conv2d(x2, vp2, vn2, None, 1, 1).sum().backward()
    for p, q in ((x, x2), (vp, vp2), (vn, vn2)):  # same taps (sums may round differently)
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-14, atol=1e-14)


def test_saved_tensors_at_most_twice_conv2d():
    x = torch.randn(4, 8, 10, 10, requires_grad=True)
    w = torch.randn(8, 8, 3, 3, requires_grad=True)
    vp, vn = (t.requires_grad_() for t in to_log_weights(w.detach()))

    def saved(fn):
        sizes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel() * t.element_size()) or t,
                                                      lambda t: t):  # fmt: skip
            fn()
        return sum(sizes)

    ours = saved(lambda: bm_conv2d_fast(x, vp, vn, None, 1, 1))
    conv = saved(lambda: torch.nn.functional.conv2d(x, w, padding=1))
    assert ours == x.numel() * 4 + 2 * w.numel() * 4  # x, v_pos, v_neg only: no arg-max indices
    assert ours <= 2 * conv


def test_double_backward_has_clear_error():
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    vp, vn = (t.requires_grad_() for t in to_log_weights(torch.randn(3, 2, 3, 3, dtype=torch.float64)))
    (gx,) = torch.autograd.grad(bm_conv2d_fast(x, vp, vn, None, 1, 1).square().sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward"):
        gx.sum().backward()


def test_no_grad_skips_autograd_state():
    x = torch.randn(2, 3, 6, 6)
    vp, vn = (t.requires_grad_() for t in to_log_weights(torch.randn(4, 3, 3, 3)))
    with torch.no_grad():
        y = bm_conv2d_fast(x, vp, vn, None, 1, 1)
    assert y.grad_fn is None and not y.requires_grad
    with torch.inference_mode():
        y2 = bm_conv2d_fast(x, vp, vn, None, 1, 1)
    assert torch.equal(y, y2)


@pytest.mark.slow
def test_isa_levels_agree():
    # the portable build: every x86-64 level's library computes the same values as the one loaded here
    import ctypes

    from bm_ops import _kernel

    levels = [lv for lv in _kernel._levels() if lv <= _kernel.cpu_level()]
    rng = np.random.default_rng(5)
    x, vp, vn, b = _case(rng, 2, 5, 21, 3, 3, 7, 7, 0.3, torch.float32, True)
    ref = bm_conv2d_fast(x, vp, vn, b, 1, 1).detach()
    vcat = _kernel._vcat(vp, vn)
    for lv in levels:
        lib = _kernel._load(build(level=lv))
        out = torch.empty_like(ref)
        rc = lib.bm_fwd_f32(
            _kernel._ptr(x), 2, 5, 7, 7, _kernel._ptr(vcat), 21, 3, 3, 1, 1, 1, 1, 7, 7, _kernel._ptr(b),
            ctypes.c_double(0.0), _kernel._ptr(out), 1,
        )  # fmt: skip
        assert rc == 0
        torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6, msg=f"level {lv}")


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        from bm_ops.torch import BMConv2d, BMLinear

        self.conv = BMConv2d(2, 4, 3, padding=1)
        self.conv2 = BMConv2d(4, 3, 3, stride=2, input_floor=0.1)
        self.lin = BMLinear(3 * 3 * 3, 5)

    def forward(self, x):
        return self.lin(torch.relu(self.conv2(torch.relu(self.conv(x)))).flatten(1))


def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    net = _Net()
    x = torch.randn(3, 2, 7, 7)
    want = net(x)
    want.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    got = compiled(x)
    torch.testing.assert_close(got, want)
    got.sum().backward()
    for p, g in zip(net.parameters(), grads):
        torch.testing.assert_close(p.grad, g)


@pytest.mark.slow
def test_compile_inductor_fullgraph_matches_eager():
    torch.manual_seed(1)
    net = _Net()
    x = torch.randn(2, 2, 7, 7)
    with torch.no_grad():
        want = net(x)
        got = torch.compile(net, fullgraph=True)(x)
    torch.testing.assert_close(got, want)


def test_export_matches_eager():
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.randn(2, 2, 7, 7)
    ep = torch.export.export(net, (x,))
    assert any("bm_ops.conv2d" in str(n.target) for n in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(x), net(x))
    x2 = torch.randn(4, 2, 7, 7)
    batch = torch.export.Dim("batch")
    ep2 = torch.export.export(net, (x,), dynamic_shapes={"x": {0: batch}})
    torch.testing.assert_close(ep2.module()(x2), net(x2))


def test_meta_device_construction_and_materialisation():
    from bm_ops.torch import BMConv2d, BMLinear

    with torch.device("meta"):
        net = _Net()
        conv = BMConv2d(3, 8, 3, padding=1, weight_floor=1e-6)
    assert conv.v_pos.is_meta and net.lin.v_neg.is_meta
    y = net(torch.empty(5, 2, 7, 7, device="meta"))
    assert y.is_meta and y.shape == (5, 5)
    assert conv(torch.empty(2, 3, 4, 4, device="meta")).shape == (2, 8, 4, 4)
    net.to_empty(device="cpu")
    for m in net.modules():
        if isinstance(m, (BMConv2d, BMLinear)):
            m.reset_parameters()
    assert torch.isfinite(net(torch.randn(1, 2, 7, 7))).all()


_CHILD = """
import warnings, torch, numpy as np
warnings.simplefilter("always")
from bm_ops import _kernel
from bm_ops.functional import bm_conv2d, to_log_weights
x = torch.randn(2, 3, 6, 6, dtype=torch.float64, requires_grad=True)
vp, vn = (t.requires_grad_() for t in to_log_weights(torch.randn(4, 3, 3, 3, dtype=torch.float64)))
with warnings.catch_warnings(record=True) as w:
    y = _kernel.bm_conv2d_fast(x, vp, vn, None, 1, 1)
    y.sum().backward()
    y2 = _kernel.bm_conv2d_fast(x, vp, vn, None, 1, 1)
msgs = [str(m.message) for m in w if "bm_ops" in str(m.message)]
x2, vp2, vn2 = (t.detach().clone().requires_grad_() for t in (x, vp, vn))
ref = bm_conv2d(x2, vp2, vn2, None, 1, 1)
ref.sum().backward()
torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)
print("KERNEL", _kernel.kernel_available(), "WARNINGS", len(msgs), msgs[:1])
"""


def _run_child(tmp_path, cache):
    import os
    import subprocess
    import sys

    env = dict(os.environ, BM_OPS_CACHE=str(cache), CXX="hwreshape-no-such-compiler", PATH=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_prebuilt_kernel_is_used_without_a_compiler(tmp_path):
    import shutil

    from bm_ops import _kernel

    cache = tmp_path / "cache"
    cache.mkdir()
    lib = build()
    shutil.copy(lib, cache / lib.name)  # as `python -m bm_ops._kernel` leaves it
    out = _run_child(tmp_path, cache)
    assert "KERNEL True WARNINGS 0" in out, out
    assert _kernel.cpu_level() >= 0


def test_no_compiler_no_prebuilt_warns_once_and_falls_back(tmp_path):
    out = _run_child(tmp_path, tmp_path / "empty")
    assert "KERNEL False WARNINGS 1" in out, out
    assert "compiler" in out


def test_kernel_names_the_bad_argument():
    x = torch.randn(1, 2, 5, 5)
    vp, vn = to_log_weights(torch.randn(3, 2, 3, 3))
    b = torch.zeros(3)
    for args, what in (
        ((x, vp.clone().fill_(math.inf), vn, b), "v_pos contains NaN or \\+inf"),
        ((x, vp, torch.full_like(vn, math.nan), b), "v_neg contains NaN"),
        ((x, vp, vn, torch.full_like(b, math.inf)), "bias contains NaN"),
        ((torch.full_like(x, -math.inf), vp, vn, b), "x contains NaN or inf"),
    ):
        with pytest.raises(ValueError, match=what):
            bm_conv2d_fast(*args, 1, 1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_many_filter_chunks_and_channel_blocks(dtype):
    # 70 filters: 140 lanes > one register chunk (128 float / 64 double lanes); 70 channels: > one channel block
    rng = np.random.default_rng(11)
    x, vp, vn, b = _case(rng, 2, 70, 70, 3, 3, 5, 6, 0.3, torch.float64, True)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    _compare([t.to(dtype) for t in (x, vp, vn, b)], (1, 2), (1, 0), True, rtol=tol, atol=tol)


def test_backward_two_threads_matches_one_thread():
    rng = np.random.default_rng(12)
    t = _case(rng, 3, 4, 9, 3, 3, 9, 8, 0.3, torch.float64, False)
    grads = {}
    old = torch.get_num_threads()
    try:
        for nt in (1, 2):
            torch.set_num_threads(nt)
            a = [u.clone().requires_grad_() for u in t]
            bm_conv2d_fast(a[0], a[1], a[2], a[3], 1, 1).square().sum().backward()
            grads[nt] = [u.grad for u in a]
    finally:
        torch.set_num_threads(old)
    for g1, g2 in zip(grads[1], grads[2]):  # per-thread partial sums: only the summation order differs
        torch.testing.assert_close(g1, g2, rtol=1e-13, atol=1e-13)
