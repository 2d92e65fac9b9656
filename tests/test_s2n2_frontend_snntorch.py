"""snnTorch interop: the S2N2 reset modes are snnTorch Leaky's, spike for spike; snnTorch nets (Linear, Conv2d,
Leaky with scalar/vector beta and threshold, subtract/zero reset, Max/Avg pooling) import directly and through NIR
and FINN's python execution reproduces snnTorch's spikes; options with no S2N2 meaning are refused by name."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from finn_s2n2 import numerics
from finn_s2n2.snn.export import spikes_to_frames, to_qonnx
from finn_s2n2.snn.snntorch import from_snntorch, run_snntorch

snn = pytest.importorskip("snntorch")
torch.set_num_threads(1)


def _finn_python_exec(model, spikes):
    from finn_s2n2.finn.build import execute_s2n2
    from finn_s2n2.finn.transformation import convert_to_lif

    conv = convert_to_lif(model)
    assert not [n.op_type for n in conv.graph.node if n.op_type in ("Conv", "MatMul", "LIF", "MaxPool")]
    return execute_s2n2(conv, {conv.graph.input[0].name: spikes_to_frames(spikes)})[conv.graph.output[0].name]


def _leaky_reference(cur, beta, thr, reset):
    """snntorch.Leaky itself, run tick by tick on float64 currents (N, T, F)."""
    lk = snn.Leaky(beta=beta, threshold=thr, reset_mechanism=reset)
    mem = lk.reset_mem()
    outs = []
    x = torch.tensor(cur, dtype=torch.float64)
    for t in range(x.shape[1]):
        spk, mem = lk(x[:, t], mem)
        outs.append(spk)
    return torch.stack(outs, 1).numpy().astype(np.int64)


@settings(max_examples=20, deadline=None)
@given(
    k=st.integers(1, 3),
    ticks=st.integers(1, 8),
    thr=st.integers(1, 12),
    reset=st.sampled_from(numerics.RESET_MODES),
    vector_beta=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_numerics_reset_modes_are_snntorch_leaky(k, ticks, thr, reset, vector_beta, seed):
    """Integer currents and threshold with F = k (T - 1) fractional membrane bits: every membrane value is
    exact, so ``lif_sequence`` must equal ``snntorch.Leaky`` spike for spike (both reset mechanisms)."""
    frac = k * max(ticks - 1, 0)
    cur = np.random.default_rng(seed).integers(-6, 10, size=(8, ticks, 5))
    beta = 1 - 2.0**-k
    ref = _leaky_reference(cur, torch.full((5,), beta) if vector_beta else beta, float(thr), reset)
    got = numerics.lif_sequence(
        cur << frac, decay_shift=k, threshold=thr << frac, acc_bits=32, reset_mode=reset
    )
    np.testing.assert_array_equal(got, ref)


def test_subtract_reset_acts_after_the_decay_in_the_next_tick():
    # m: 0 -> 12 (fires, thr 9) -> decay(12) + 0 - 9 = 12 - 3 - 9 = 0 (k = 2): the threshold comes off AFTER the
    # decay; the old subtract-then-decay variant would have stored 3 and decayed it to 3 - 0 = 3
    out, m = numerics.lif_step(0, 12, decay_shift=2, threshold=9, acc_bits=8, reset_mode="subtract")
    assert (int(out), int(m)) == (1, 12)
    out, m = numerics.lif_step(
        m, 0, decay_shift=2, threshold=9, acc_bits=8, reset_mode="subtract", prev_out=out
    )
    assert (int(out), int(m)) == (0, 0)
    assert int(numerics.reset_subtrahend(np.int64(1), 9, "zero")) == 0
    with pytest.raises(ValueError, match="reset mode must be one of"):
        numerics.reset_subtrahend(1, 9, "hold")


def _int_weights(net, seed, lo=-3, hi=4):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net:
            if isinstance(m, nn.Linear | nn.Conv2d):
                m.weight.copy_(torch.randint(lo, hi, m.weight.shape, generator=g).float())
    return net


def _mlp(reset, vector_beta, vector_thr, seed):
    beta1 = torch.full((8,), 0.75) if vector_beta else 0.75
    thr2 = torch.tensor([1.0, 2.0, 4.0, 1.0]) if vector_thr else 2.0
    net = nn.Sequential(
        nn.Linear(12, 8, bias=False),
        snn.Leaky(beta=beta1, threshold=2.0, reset_mechanism=reset, init_hidden=True),
        nn.Linear(8, 4, bias=False),
        snn.Leaky(beta=0.5, threshold=thr2, reset_mechanism=reset, init_hidden=True, output=True),
    )
    return _int_weights(net, seed)


@settings(max_examples=6, deadline=None)
@given(
    reset=st.sampled_from(numerics.RESET_MODES),
    vector_beta=st.booleans(),
    vector_thr=st.booleans(),
    seed=st.integers(0, 10_000),
)
def test_snntorch_mlp_direct_import_equals_snntorch_and_finn(reset, vector_beta, vector_thr, seed):
    net = _mlp(reset, vector_beta, vector_thr, seed)
    x = (torch.rand(6, 6, 12, generator=torch.Generator().manual_seed(seed)) < 0.4).float()
    ref = run_snntorch(net, x).numpy()
    imp = from_snntorch(net, output_mode="spikes")
    assert imp.exact and min(imp.exact_ticks.values()) >= x.shape[1], (imp.errors, imp.exact_ticks)
    assert [m.reset for m in imp.net if hasattr(m, "reset")] == [reset, reset]
    with torch.no_grad():
        np.testing.assert_array_equal(imp.net(x).numpy(), ref)
    out = _finn_python_exec(to_qonnx(imp.net, x), x)
    np.testing.assert_array_equal(out.reshape(ref.shape), ref)


def _pooled_convnet(reset, seed):
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False),
        snn.Leaky(beta=0.5, threshold=2.0, reset_mechanism=reset, init_hidden=True),
        nn.MaxPool2d(2),
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        snn.Leaky(beta=0.75, threshold=1.0, reset_mechanism=reset, init_hidden=True),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 2 * 2, 5, bias=False),
        snn.Leaky(beta=0.5, threshold=1.0, reset_mechanism=reset, init_hidden=True),
    )
    return _int_weights(net, seed, -2, 4)


@pytest.mark.parametrize("reset", numerics.RESET_MODES)
def test_pooled_snntorch_convnet_direct_equals_snntorch_and_finn(reset):
    """Conv2d + Leaky (scalar beta) + MaxPool (FINN's pooling unit) + AvgPool (folded into the Linear)."""
    net = _pooled_convnet(reset, 0)
    x = (torch.rand(3, 6, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    ref = run_snntorch(net, x).numpy()
    assert ref.sum() > 0
    imp = from_snntorch(net, output_mode="spikes", weight_bit_width=16, acc_bits=32)
    assert imp.exact and min(imp.exact_ticks.values()) >= x.shape[1], (imp.errors, imp.exact_ticks)
    with torch.no_grad():
        np.testing.assert_array_equal(imp.net(x).numpy(), ref)
    model = to_qonnx(imp.net, x)
    assert "MaxPool" in [n.op_type for n in model.graph.node]
    out = _finn_python_exec(model, x)
    np.testing.assert_array_equal(out.reshape(ref.shape), ref)


@pytest.mark.parametrize("reset", numerics.RESET_MODES)
def test_snntorch_via_nir_keeps_the_reset_and_equals_snntorch(reset):
    """snnTorch -> NIR -> S2N2: scalar-beta conv Leaky, AvgPool; the reset comes from the snnTorch modules (NIR
    has no field for it: snnTorch's own NIR import would make every layer reset-to-zero)."""
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1, bias=False),
        snn.Leaky(beta=0.5, threshold=2.0, reset_mechanism=reset, init_hidden=True),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 5, bias=False),
        snn.Leaky(beta=0.5, threshold=1.0, reset_mechanism=reset, init_hidden=True),
    )
    _int_weights(net, 2, -2, 4)
    x = (torch.rand(3, 6, 1, 8, 8, generator=torch.Generator().manual_seed(3)) < 0.4).float()
    ref = run_snntorch(net, x).numpy()
    imp = from_snntorch(net, via="nir", sample=x[:, 0], output_mode="spikes", weight_bit_width=8, acc_bits=24)
    assert [m.reset for m in imp.net if hasattr(m, "reset")] == [reset, reset]
    assert max(imp.decay_errors.values()) < 1e-6  # float32 round-off of snnTorch's tau only
    with torch.no_grad():
        np.testing.assert_array_equal(imp.net(x).numpy(), ref)
    out = _finn_python_exec(to_qonnx(imp.net, x), x)
    np.testing.assert_array_equal(out.reshape(ref.shape), ref)


def test_inexact_beta_is_refused_or_reported_never_silent():
    net = nn.Sequential(nn.Linear(4, 3, bias=False), snn.Leaky(beta=0.9, init_hidden=True))
    with pytest.raises(ValueError, match=r"layer '1' \(Leaky\): beta=0.9\d* is not 1 - 2\^-k"):
        from_snntorch(net)
    imp = from_snntorch(net, approximate=True)
    assert imp.net[1].decay_shift == 3 and imp.errors["1"]["decay"] == pytest.approx(0.025, abs=1e-6)
    assert not imp.exact and any("beta=0.9" in n for n in imp.notes)
    # float weights off the power-of-two grid: quantized and reported
    net = nn.Sequential(nn.Linear(4, 3, bias=False), snn.Leaky(beta=0.5, init_hidden=True))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[0.3, -0.7, 0.1, 0.9]] * 3))
    imp = from_snntorch(net, weight_bit_width=4)
    e = imp.errors["1"]
    assert e["frac_bits"] == 2  # max|w| = 0.9 on INT4: 0.9 * 2^2 <= 7
    assert 0 < e["weight"] <= 2.0 ** -e["frac_bits"] / 2 + 1e-7 and not imp.exact


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        (
            lambda: [nn.Linear(4, 3, bias=False), snn.Synaptic(alpha=0.5, beta=0.5)],
            r"'1' \(Synaptic\) has no",
        ),
        (
            lambda: [nn.Linear(4, 3, bias=False), snn.Leaky(beta=0.5, reset_mechanism="none")],
            "reset_mechanism='none'",
        ),
        (lambda: [nn.Linear(4, 3, bias=False), snn.Leaky(beta=0.5, reset_delay=False)], "reset_delay=False"),
        (
            lambda: [nn.Linear(4, 3, bias=False), snn.Leaky(beta=0.5, graded_spikes_factor=2.0)],
            "graded_spikes",
        ),
        (lambda: [nn.Linear(4, 3, bias=False), snn.Leaky(beta=0.5, inhibition=True)], "inhibition"),
        (lambda: [nn.Linear(4, 3, bias=True), snn.Leaky(beta=0.5)], r"'0' \(Linear\): non-zero bias"),
        (
            lambda: [nn.Linear(4, 3, bias=False), snn.Leaky(beta=torch.tensor([0.5, 0.75, 0.5]))],
            "beta values",
        ),
        (lambda: [nn.Linear(4, 3, bias=False), snn.Leaky(beta=1.0)], r"beta=1 must lie in \(0, 1\)"),
        (lambda: [nn.Conv2d(1, 2, 3, stride=2, bias=False), snn.Leaky(beta=0.5)], "stride 1"),
        (
            lambda: [nn.Conv2d(1, 2, 3, bias=False), nn.MaxPool2d(2), snn.Leaky(beta=0.5)],
            "pools the currents",
        ),
        (lambda: [nn.Linear(4, 3, bias=False), nn.ReLU(), snn.Leaky(beta=0.5)], r"'1' \(ReLU\) has no S2N2"),
        (lambda: [nn.Linear(4, 3, bias=False)], "not followed by a Leaky"),
    ],
)
def test_unsupported_snntorch_options_are_named(layers, match):
    with pytest.raises(ValueError, match=match):
        from_snntorch(nn.Sequential(*layers()))


def test_structural_errors():
    with pytest.raises(TypeError, match="nn.Sequential"):
        from_snntorch(nn.Linear(2, 2))
    net = nn.Sequential(nn.Linear(4, 3, bias=False), snn.Leaky(beta=0.5, init_hidden=True))
    with pytest.raises(ValueError, match="sample="):
        from_snntorch(net, via="nir")
    with pytest.raises(ValueError, match="via must be"):
        from_snntorch(net, via="onnx")


def test_pooled_snntorch_convnet_reaches_build_dataflow(tmp_path):
    """A pooled snnTorch conv net (MaxPool -> FINN pooling, AvgPool folded) through FINN's build_dataflow
    (S2N2 estimate steps): per-layer resource estimates for the LIF_MVAU and pooling nodes."""
    import json

    from finn_s2n2.finn.build import build_estimates

    net = _pooled_convnet("subtract", 0)
    x = (torch.rand(1, 4, 1, 8, 8, generator=torch.Generator().manual_seed(1)) < 0.4).float()
    imp = from_snntorch(net, weight_bit_width=4, acc_bits=12)
    assert imp.exact, imp.errors
    report = build_estimates(to_qonnx(imp.net, x), tmp_path / "build")
    est = json.loads((report / "estimate_layer_resources.json").read_text())
    kinds = sorted({k.rsplit("_", 1)[0] for k in est if k != "total"})
    assert any(k.startswith("LIF_MVAU") for k in kinds) and any(
        k.startswith(("Pool", "SpikeMaxPool")) for k in kinds
    ), kinds


def test_avg_pool_before_a_conv_is_refused_at_export_by_name():
    net = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1, bias=False),
        snn.Leaky(beta=0.5, init_hidden=True),
        nn.AvgPool2d(2),
        nn.Conv2d(2, 2, 3, padding=1, bias=False),
        snn.Leaky(beta=0.5, init_hidden=True),
    )
    imp = from_snntorch(net, output_mode="spikes")
    x = torch.zeros(1, 2, 1, 8, 8)
    with pytest.raises(
        ValueError, match=r"2_AvgPool2d: average/sum pooling of spikes folds into a following Linear"
    ):
        to_qonnx(imp.net, x)
