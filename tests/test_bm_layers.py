"""bm_ops reference math and torch layers: seed formula, conversion, zeros/-inf, bad input."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from bm_ops.functional import bm_conv2d, bm_linear, to_log_weights
from bm_ops.torch import BMConv2d, BMLinear, convert_layers, from_conv, from_linear


def y_bm_neuron(x, v_pos, v_neg, vb):
    """Seed eq. y_BM (no sigma), written literally for one neuron with Python floats."""
    total = 0.0
    for p_a, xa in ((1, [max(t, 0.0) for t in x]), (-1, [max(-t, 0.0) for t in x])):
        for p_b, v in ((1, v_pos), (-1, v_neg)):
            terms = [(math.log(a) if a > 0 else -math.inf) + b for a, b in zip(xa, v)]
            m = max(terms)
            total += p_a * p_b * (math.exp(m) if m > -math.inf else 0.0)
    return total + vb


def conv_oracle(x, vp, vn, b, s, p):
    n, c, h, w = x.shape
    f, _, kh, kw = vp.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh, ow = (h + 2 * p - kh) // s + 1, (w + 2 * p - kw) // s + 1
    out = np.zeros((n, f, oh, ow))
    for a in range(n):
        for fi in range(f):
            for i in range(oh):
                for j in range(ow):
                    patch = xp[a, :, i * s : i * s + kh, j * s : j * s + kw].ravel()
                    out[a, fi, i, j] = y_bm_neuron(
                        list(patch), list(vp[fi].ravel()), list(vn[fi].ravel()), b[fi]
                    )
    return out


@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    f=st.integers(1, 3),
    k=st.integers(1, 3),
    s=st.integers(1, 2),
    p=st.integers(0, 2),
    hw=st.integers(3, 6),
    zero_frac=st.floats(0, 0.6),
    seed=st.integers(0, 2**31 - 1),
)
def test_reference_matches_seed_formula(n, c, f, k, s, p, hw, zero_frac, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, hw, hw))
    x[rng.random(x.shape) < zero_frac] = 0.0
    w = rng.normal(size=(f, c, k, k))
    w[rng.random(w.shape) < zero_frac] = 0.0
    b = rng.normal(size=f)
    vp, vn = to_log_weights(w)
    want = conv_oracle(x, vp, vn, b, s, p)
    got_np = bm_conv2d(x, vp, vn, b, stride=s, padding=p)
    np.testing.assert_allclose(got_np, want, rtol=1e-12, atol=1e-12)
    got_t = bm_conv2d(*(torch.tensor(a) for a in (x, vp, vn, b)), stride=s, padding=p)
    assert isinstance(got_t, torch.Tensor)
    np.testing.assert_allclose(got_t.numpy(), want, rtol=1e-12, atol=1e-12)


def test_to_log_weights_is_seed_conversion():
    w = np.array([2.0, -0.5, 0.0, 1.0])
    vp, vn = to_log_weights(w)
    np.testing.assert_array_equal(vp, [math.log(2.0), -math.inf, -math.inf, 0.0])
    np.testing.assert_array_equal(vn, [-math.inf, math.log(0.5), -math.inf, -math.inf])
    tp, tn = to_log_weights(torch.tensor(w))
    np.testing.assert_array_equal(tp.numpy(), vp)
    np.testing.assert_array_equal(tn.numpy(), vn)
    # exp(v+) - exp(v-) gives the weight back
    np.testing.assert_allclose(np.exp(vp) - np.exp(vn), w)


def test_bm_linear_single_tap_is_exact_product():
    # one input: max over one product = the product, so BM == standard neuron
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 1))
    w = rng.normal(size=(3, 1))
    b = rng.normal(size=3)
    vp, vn = to_log_weights(w)
    np.testing.assert_allclose(bm_linear(x, vp, vn, b), x @ w.T + b, rtol=1e-12)


def test_zeros_and_all_neg_inf_are_finite_with_finite_grads():
    x = torch.zeros(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    vp = torch.full((4, 3, 3, 3), -math.inf, dtype=torch.float64, requires_grad=True)
    vn = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, dtype=torch.float64, requires_grad=True)
    y = bm_conv2d(x, vp, vn, b, padding=1)
    torch.testing.assert_close(y, b[None, :, None, None].expand_as(y).detach())
    y.sum().backward()
    for t in (x, vp, vn, b):
        assert torch.isfinite(t.grad).all()
    assert (vp.grad == 0).all()


@pytest.mark.parametrize("backend", ["kernel", "reference"])
def test_from_conv_1x1_single_channel_is_exact(backend):
    conv = nn.Conv2d(1, 5, 1, bias=True).double()
    bm = from_conv(conv, backend=backend)
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(bm(x), conv(x), rtol=1e-12, atol=1e-12)


def test_layers_attributes_and_from_conv_values():
    conv = nn.Conv2d(3, 6, (3, 2), stride=2, padding=1, bias=False)
    bm = from_conv(conv)
    assert (bm.in_channels, bm.out_channels, bm.kernel_size, bm.stride, bm.padding) == (
        3,
        6,
        (3, 2),
        (2, 2),
        (1, 1),
    )
    assert bm.bias is None and isinstance(bm.v_pos, nn.Parameter) and isinstance(bm.v_neg, nn.Parameter)
    torch.testing.assert_close(bm.weight_equivalent(), conv.weight.detach())
    x = torch.randn(2, 3, 7, 7)
    want = bm_conv2d(x, bm.v_pos.detach(), bm.v_neg.detach(), None, stride=2, padding=1)
    torch.testing.assert_close(bm(x), want, rtol=1e-5, atol=1e-6)
    lin = nn.Linear(5, 4)
    bl = from_linear(lin)
    x2 = torch.randn(3, 2, 5)
    y2 = bl(x2)
    assert y2.shape == (3, 2, 4)
    want2 = bm_linear(x2.reshape(6, 5), bl.v_pos.detach(), bl.v_neg.detach(), bl.bias.detach()).reshape(
        3, 2, 4
    )
    torch.testing.assert_close(y2, want2, rtol=1e-5, atol=1e-6)


def test_fresh_layers_train_and_convert_layers_in_place():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding="same"),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(4, 4, 3)),
        nn.Flatten(),
        nn.Linear(16, 3),
    )
    x = torch.randn(5, 1, 4, 4)
    convert_layers(model, names=["0", "2.0"])
    assert isinstance(model[0], BMConv2d) and model[0].padding == (1, 1)
    assert isinstance(model[2][0], BMConv2d) and isinstance(model[4], nn.Linear)
    convert_layers(model)
    assert isinstance(model[4], BMLinear)
    y = model(x)
    y.square().mean().backward()
    for name, prm in model.named_parameters():
        assert prm.grad is not None and torch.isfinite(prm.grad).all(), name
    fresh = BMConv2d(2, 3, 3, padding=1)
    assert torch.isfinite(fresh(torch.randn(1, 2, 5, 5))).all()
    # each weight lands in exactly one of v+ / v- after initialisation
    assert ((fresh.v_pos > -math.inf) ^ (fresh.v_neg > -math.inf)).all()


def test_bad_input_errors():
    conv = nn.Conv2d(2, 3, 3)
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="conv.weight"):
        from_conv(conv)
    with pytest.raises(ValueError, match="dilation"):
        from_conv(nn.Conv2d(2, 3, 3, dilation=2))
    with pytest.raises(ValueError, match="groups"):
        from_conv(nn.Conv2d(2, 4, 3, groups=2))
    with pytest.raises(ValueError, match="padding_mode"):
        from_conv(nn.Conv2d(2, 4, 3, padding=1, padding_mode="reflect"))
    with pytest.raises(ValueError, match="dilation"):
        BMConv2d(2, 3, 3, dilation=2)
    with pytest.raises(TypeError, match="nn.Conv2d"):
        from_conv(nn.Linear(2, 3))
    bm = BMConv2d(2, 3, 3)
    with pytest.raises(ValueError, match="channels"):
        bm(torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="larger than padded input"):
        bm(torch.randn(1, 2, 2, 2))
    with torch.no_grad():
        bm.v_neg[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="v_neg contains NaN"):
        bm(torch.randn(1, 2, 5, 5))
    vp, vn = to_log_weights(np.ones((3, 2, 3, 3)))
    with pytest.raises(ValueError, match="v_pos shape"):
        bm_conv2d(np.ones((1, 2, 5, 5)), vp, vn[:, :1])
    with pytest.raises(ValueError, match="x contains NaN"):
        bm_conv2d(np.full((1, 2, 5, 5), np.nan), vp, vn)
    with pytest.raises(ValueError, match=r"\+inf"):
        bm_conv2d(np.ones((1, 2, 5, 5)), np.full_like(vp, np.inf), vn)
    with pytest.raises(ValueError, match="bias must have shape"):
        bm_conv2d(np.ones((1, 2, 5, 5)), vp, vn, bias=np.ones(4))
    with pytest.raises(TypeError, match="stride"):
        bm_conv2d(np.ones((1, 2, 5, 5)), vp, vn, stride=1.5)
    with pytest.raises(ValueError, match="features"):
        bm_linear(np.ones((2, 3)), *to_log_weights(np.ones((4, 5))))
    with pytest.raises(TypeError, match="all be torch"):
        bm_conv2d(torch.ones(1, 2, 5, 5), vp, vn)
    with pytest.raises(ValueError, match="no submodule"):
        convert_layers(nn.Sequential(nn.Conv2d(1, 1, 1)), names=["nope"])
    with pytest.raises(ValueError, match="expected nn.Conv2d"):
        convert_layers(nn.Sequential(nn.ReLU()), names=["0"])
    with pytest.raises(ValueError, match="backend"):
        BMLinear(3, 2, backend="gpu")


def test_import_bm_ops_is_light():
    code = (
        "import sys, bm_ops, bm_ops.functional, bm_ops.cost; "
        "bad = [m for m in ('torch', 'tensorflow', 'keras', 'finn', 'hls4ml') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_authors_floors_in_reference_math():
    w = np.array([2.0, -0.5, 0.0, 1e-8])
    vp, vn = to_log_weights(w, floor=1e-6)
    np.testing.assert_allclose(vp, np.log([2.0, 1e-6, 1e-6, 1e-6]))
    np.testing.assert_allclose(vn, np.log([1e-6, 0.5, 1e-6, 1e-6]))
    tp, tn = to_log_weights(torch.tensor(w), floor=1e-6)
    np.testing.assert_allclose(tp.numpy(), vp)
    np.testing.assert_allclose(tn.numpy(), vn)
    with pytest.raises(ValueError, match="floor"):
        to_log_weights(w, floor=0.0)
    # input floor s: ln max(x^a, s) literally, one neuron, every tap in both sign terms
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 6))
    wv = rng.normal(size=(2, 6))
    vp, vn = to_log_weights(wv, floor=1e-6)
    s = 0.1
    want = []
    for f in range(2):
        total = 0.0
        for p_a, xa in ((1, np.maximum(x[0], 0)), (-1, np.maximum(-x[0], 0))):
            for p_b, v in ((1, vp[f]), (-1, vn[f])):
                total += p_a * p_b * math.exp(max(math.log(max(a, s)) + b for a, b in zip(xa, v)))
        want.append(total)
    np.testing.assert_allclose(bm_linear(x, vp, vn, input_floor=s)[0], want, rtol=1e-12)
    np.testing.assert_allclose(
        bm_linear(torch.tensor(x), torch.tensor(vp), torch.tensor(vn), input_floor=s)[0].numpy(),
        want,
        rtol=1e-12,
    )
    layer = BMLinear(6, 2, input_floor=s, dtype=torch.float64)
    with torch.no_grad():
        layer.v_pos.copy_(torch.tensor(vp))
        layer.v_neg.copy_(torch.tensor(vn))
        layer.bias.zero_()
    np.testing.assert_allclose(layer(torch.tensor(x)).detach().numpy()[0], want, rtol=1e-12)
    with pytest.raises(ValueError, match="input_floor"):
        BMConv2d(2, 3, 3, input_floor=-1.0)
