"""S2N2 front-end torch layers: LIF (float Eq 2.3–2.4 and LIF_MVAU fixed point), SpikingNet, model builders."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from finn_s2n2 import numerics
from finn_s2n2.snn.models import layer_input_shapes, s2n2_cv, s2n2_rf1, s2n2_rf2, spiking_convnet, spiking_mlp
from finn_s2n2.snn.nn import LIF, SpikingNet, TimeDistributed

torch.set_num_threads(1)


def _numpy_lif_float(cur, d, thr, reset="zero"):
    """Independent loop over Eq 2.3–2.4: m_t = (1 - out_{t-1}) d m_{t-1} + I_t; out_t = [m_t > T]
    (reset "subtract", snnTorch Leaky: m_t = d m_{t-1} + I_t - out_{t-1} T)."""
    n, t = cur.shape[:2]
    m = np.zeros(cur.shape[:1] + cur.shape[2:])
    prev = np.zeros_like(m)
    out = np.zeros_like(cur)
    for k in range(t):
        if reset == "zero":
            m = (1 - prev) * d * m + cur[:, k]
        else:
            m = d * m + cur[:, k] - prev * thr
        prev = (m > thr).astype(np.float64)
        out[:, k] = prev
    return out


@settings(max_examples=25)
@given(
    n=st.integers(1, 3),
    t=st.integers(1, 12),
    f=st.integers(1, 5),
    k=st.integers(1, 4),
    thr=st.floats(0.1, 3.0),
    reset=st.sampled_from(["zero", "subtract"]),
    seed=st.integers(0, 10_000),
)
def test_float_lif_equals_numpy_eq_2_3_2_4(n, t, f, k, thr, reset, seed):
    cur = np.random.default_rng(seed).uniform(-1, 2, (n, t, f))
    # use dyadic currents/thresholds so the float32 torch run and the float64 loop agree exactly
    cur = np.round(cur * 64) / 64
    thr = round(thr * 64) / 64
    lif = LIF(decay_shift=k, threshold=thr, reset=reset)
    out = lif(torch.tensor(cur, dtype=torch.float64)).numpy()
    np.testing.assert_array_equal(out, _numpy_lif_float(cur, 1 - 2.0**-k, thr, reset))
    counts = LIF(decay_shift=k, threshold=thr, reset=reset, output_mode="counts")(torch.tensor(cur))
    np.testing.assert_array_equal(counts.numpy(), out.sum(axis=1))


@settings(max_examples=25)
@given(
    n=st.integers(1, 3),
    t=st.integers(1, 16),
    f=st.integers(1, 6),
    k=st.integers(1, 5),
    acc_bits=st.integers(4, 16),
    thr_units=st.integers(1, 40),
    scale_exp=st.integers(-8, 2),
    overflow=st.sampled_from(["saturate", "wrap"]),
    reset=st.sampled_from(["zero", "subtract"]),
    seed=st.integers(0, 10_000),
)
def test_quantized_lif_equals_lif_mvau_numerics(
    n, t, f, k, acc_bits, thr_units, scale_exp, overflow, reset, seed
):
    lo, hi = numerics.acc_range(acc_bits)
    thr_units = min(thr_units, hi)
    scale = 2.0**scale_exp
    cur_int = np.random.default_rng(seed).integers(-hi // 2 - 1, hi // 2 + 2, (n, t, f))
    threshold = thr_units * scale + scale / 3  # floor(T / scale) == thr_units
    lif = LIF(
        decay_shift=k, threshold=threshold, reset=reset, quantized=True, acc_bits=acc_bits, overflow=overflow
    )
    out = lif(torch.tensor(cur_int * scale, dtype=torch.float32), scale=scale)
    ref = numerics.lif_sequence(
        cur_int,
        decay_shift=k,
        threshold=thr_units,
        acc_bits=acc_bits,
        overflow_mode=overflow,
        reset_mode=reset,
    )
    np.testing.assert_array_equal(out.detach().numpy(), ref)


def test_surrogate_gradients_flow_in_both_modes():
    torch.manual_seed(0)
    for quantized in (False, True):
        net = spiking_mlp([12, 8, 3], quantized=quantized)
        x = (torch.rand(4, 10, 12) < 0.5).float()
        net.calibrate(x, target=0.2)
        loss = torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 2, 0]))
        loss.backward()
        for p in net.parameters():
            assert p.grad is not None and float(p.grad.abs().sum()) > 0


@pytest.mark.parametrize("surrogate", ["fast_sigmoid", "atan", "sigmoid"])
def test_surrogates_are_a_step_forward(surrogate):
    lif = LIF(threshold=0.5, surrogate=surrogate)
    x = torch.tensor([[[0.4], [0.3]]], requires_grad=True)  # m: 0.4, 0.65 -> spikes 0, 1
    y = lif(x)
    assert y.flatten().tolist() == [0.0, 1.0]
    y.sum().backward()
    assert float(x.grad.abs().sum()) > 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), quantized=st.booleans())
def test_spikes_are_exact_for_any_surrogate_range(seed, quantized):
    """The forward spikes are exactly the step of Eq 2.4 even for a callable surrogate whose values leave
    [0, 1] (a plain straight-through sum ``smooth + (exact − smooth).detach()`` rounds about 0.2 % of them off
    1 in float32); the gradient is the callable's."""
    g = torch.Generator().manual_seed(seed)
    gain = float(10 ** (torch.rand((), generator=g) * 6 - 2))  # 0.01 … 1e4, full-mantissa values
    offset = float((torch.rand((), generator=g) * 2 - 1) * 1e3)
    scale = 0.125
    cur = torch.randint(-6, 12, (16, 12, 8), generator=g).float() * scale
    cur.requires_grad_(True)
    lif = LIF(threshold=0.75, surrogate=lambda v: gain * v + offset, quantized=quantized)
    out = lif(cur, scale) if quantized else lif(cur)
    ref = LIF(threshold=0.75, quantized=quantized)
    ref_out = ref(cur, scale) if quantized else ref(cur)
    assert set(out.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out.detach(), ref_out.detach())
    out.sum().backward()
    # a linear surrogate has derivative `gain` everywhere: the last tick's current reaches only its own spike
    assert torch.all(cur.grad[:, -1] == torch.tensor(gain, dtype=torch.float32))


def test_calibration_wakes_up_a_silent_net():
    torch.manual_seed(0)
    net = s2n2_rf1(width=0.25)
    x = torch.zeros(4, 32, 1, 16, 16)
    idx = torch.randint(0, 16, (4, 32, 2))
    x[torch.arange(4)[:, None], torch.arange(32)[None, :], 0, idx[..., 0], idx[..., 1]] = 1
    _, before = net(x, record=True)
    assert before[0] == pytest.approx(1 / 256)
    net.calibrate(x, target=0.05)
    _, after = net(x, record=True)
    assert all(r > 0.005 for r in after[1:])


def test_models_match_seed_tables():
    # buffer bits k*k*C_in per conv layer (Tables 2.3, 2.5, 2.8) and the per-layer input shapes
    rf1 = layer_input_shapes(s2n2_rf1(), (1, 16, 16))
    assert [r[1] for r in rf1] == [(1, 16, 16), (16, 16, 16), (1152,), (128,)]
    assert [r[2] for r in rf1[:2]] == [25, 400]
    rf2 = layer_input_shapes(s2n2_rf2(), (1, 16, 16))
    assert [r[1] for r in rf2][:4] == [(1, 16, 16), (64, 16, 16), (64, 12, 12), (128, 10, 10)]
    assert [r[2] for r in rf2[:4]] == [25, 1600, 576, 1152] and rf2[4][1] == (12800,) and rf2[5][1] == (1024,)
    cv = layer_input_shapes(s2n2_cv(), (1, 28, 28))
    assert [r[1] for r in cv] == [(1, 28, 28), (16, 13, 13), (24, 11, 11), (512,)]
    assert [r[2] for r in cv[:3]] == [49, 784, 1176]
    x = torch.zeros(1, 3, 1, 28, 28)
    assert s2n2_cv()(x).shape == (1, 10)
    assert s2n2_rf1()(torch.zeros(2, 3, 1, 16, 16)).shape == (2, 11)


def test_bad_inputs_are_named():
    net = s2n2_rf1(width=0.25)
    with pytest.raises(ValueError, match="binary"):
        net(torch.full((1, 2, 1, 16, 16), 0.5))
    with pytest.raises(ValueError, match="rank 5"):
        net(torch.zeros(2, 1, 16, 16))
    with pytest.raises(TypeError, match="float"):
        net(torch.zeros(1, 2, 1, 16, 16, dtype=torch.int64))
    with pytest.raises(TypeError, match="torch.Tensor"):
        net(np.zeros((1, 2, 1, 16, 16)))
    with pytest.raises(ValueError, match="scale"):
        LIF(quantized=True)(torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="not an integer multiple"):
        LIF(quantized=True)(torch.full((1, 2, 3), 0.375), scale=0.25)
    with pytest.raises(ValueError, match="decay_shift"):
        LIF(decay_shift=0)
    with pytest.raises(ValueError, match="threshold"):
        LIF(threshold=-1.0)
    with pytest.raises(ValueError, match="reset"):
        LIF(reset="none")
    with pytest.raises(ValueError, match="LIF.threshold/scale"):
        LIF(threshold=1.0, quantized=True, acc_bits=4)(torch.zeros(1, 2, 3), scale=0.01)
    with pytest.raises(ValueError, match="without Brevitas"):
        SpikingNet(TimeDistributed(torch.nn.Linear(3, 2, bias=False)), LIF(quantized=True), input_rank=3)(
            torch.zeros(1, 2, 3)
        )
    with pytest.raises(ValueError, match="width"):
        s2n2_rf1(width=0)
    with pytest.raises(ValueError, match="leaves no output"):
        spiking_convnet((1, 4, 4), [(2, 7, 0, 1)], [2])
