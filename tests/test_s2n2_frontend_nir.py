"""S2N2 front-end NIR interoperability: round trip, snnTorch-exported graphs, hand-built nir graphs, errors."""

import nir
import numpy as np
import pytest
import torch

from finn_s2n2.snn.export import execute_qonnx, to_qonnx
from finn_s2n2.snn.models import spiking_convnet
from finn_s2n2.snn.nir import SumPool2d, from_nir, nearest_shift, to_nir
from finn_s2n2.snn.nn import LIF, TimeDistributed

torch.set_num_threads(1)
DT = 1e-4


@pytest.mark.parametrize("quantized", [False, True])
def test_round_trip_preserves_outputs(quantized, tmp_path):
    torch.manual_seed(0)
    net = spiking_convnet((1, 8, 8), [(3, 3, 1, 1), (2, 3, 0, 1)], [5, 3], quantized=quantized)
    x = (torch.rand(3, 10, 1, 8, 8) < 0.3).float()
    net.calibrate(x, target=0.2)
    g = to_nir(net, (1, 8, 8))
    nir.write(tmp_path / "net.nir", g)
    imp = from_nir(nir.read(tmp_path / "net.nir"), quantized=quantized)
    assert all(e == 0.0 for e in imp.decay_errors.values()) and set(imp.shifts.values()) == {3}
    with torch.no_grad():
        np.testing.assert_array_equal(imp.net(x).numpy(), net(x).numpy())
    assert net(x).sum() > 0


def _snntorch_mlp(beta=0.875, sizes=(12, 8, 3), reset="zero"):
    import snntorch as snn

    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        layers += [
            torch.nn.Linear(a, b, bias=False),
            snn.Leaky(
                beta=torch.full((b,), beta),
                threshold=torch.ones(b),
                init_hidden=True,
                output=last,
                reset_mechanism=reset,
            ),
        ]
    return torch.nn.Sequential(*layers)


def test_snntorch_exported_graph_imports_and_matches_snntorch():
    from snntorch import utils as sutils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(3)
    sn = _snntorch_mlp()
    with torch.no_grad():
        for m in sn:
            if isinstance(m, torch.nn.Linear):
                m.weight.mul_(3)
    g = export_to_nir(sn, torch.randn(1, 12), ignore_dims=[0])
    imp = from_nir(g, weight_bit_width=16)
    assert imp.net.input_rank == 3 and set(imp.shifts.values()) == {3}
    x = (torch.rand(4, 25, 12) < 0.4).float()
    sutils.reset(sn)
    counts = 0
    with torch.no_grad():
        for t in range(x.shape[1]):
            s, _ = sn(x[:, t])
            counts = counts + s
        ours = imp.net(x)
    assert counts.sum() > 0
    np.testing.assert_array_equal(ours.numpy(), counts.numpy())


def test_handbuilt_graph_with_continuous_tau_reports_the_discretisation_error():
    rng = np.random.default_rng(0)
    tau = 0.9e-3  # d = 1 - dt/tau = 0.8889 -> nearest shift k = 3 (0.875), error 0.0139
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([6])),
            "fc": nir.Affine(weight=rng.standard_normal((4, 6)), bias=np.zeros(4)),
            "lif": nir.LIF(
                tau=np.full(4, tau),
                r=np.full(4, tau / DT),
                v_leak=np.zeros(4),
                v_threshold=np.full(4, 2.0),
                v_reset=np.zeros(4),
            ),
            "out": nir.Output(output_type=np.array([4])),
        },
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")],
    )
    imp = from_nir(g, weight_bit_width=16, threshold=1.0)
    k, err = nearest_shift(1 - DT / tau)
    assert imp.shifts["lif"] == k == 3 and imp.decay_errors["lif"] == pytest.approx(err) == pytest.approx(
        1 / 8 - 1 / 9
    )
    # folded gains: r*dt/tau = 1 and threshold 2 -> weights / 2 with our threshold 1
    w = imp.net[0].module.weight.detach().numpy()
    np.testing.assert_allclose(w, g.nodes["fc"].weight / 2, rtol=1e-6)


def test_if_cubalif_and_pools_import():
    rng = np.random.default_rng(1)
    conv_w = rng.standard_normal((2, 1, 3, 3))
    g = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([1, 6, 6])),
            "conv": nir.Conv2d(
                input_shape=(6, 6), weight=conv_w, stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(2)
            ),
            "if": nir.IF(r=np.ones((2, 6, 6)), v_threshold=np.ones((2, 6, 6)), v_reset=np.zeros((2, 6, 6))),
            "pool": nir.SumPool2d(
                kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])
            ),
            "flat": nir.Flatten(input_type={"input": np.array([2, 3, 3])}, start_dim=0, end_dim=-1),
            "fc": nir.Linear(weight=rng.standard_normal((3, 18))),
            "cuba": nir.CubaLIF(
                tau_syn=np.full(3, DT),
                tau_mem=np.full(3, 8 * DT),
                r=np.full(3, 8.0),
                v_leak=np.zeros(3),
                v_threshold=np.ones(3),
                v_reset=np.zeros(3),
                w_in=np.full(3, 0.5),
            ),
            "out": nir.Output(output_type=np.array([3])),
        },
        edges=[
            ("in", "conv"),
            ("conv", "if"),
            ("if", "pool"),
            ("pool", "flat"),
            ("flat", "fc"),
            ("fc", "cuba"),
            ("cuba", "out"),
        ],
    )
    imp = from_nir(g, weight_bit_width=16, threshold=1.0, acc_bits=32)
    assert imp.shifts == {"if": 15, "cuba": 3} and imp.decay_errors["cuba"] == 0.0
    assert any("IF" in n for n in imp.notes)
    assert isinstance(imp.net[2].module, SumPool2d)
    np.testing.assert_allclose(
        imp.net[4].module.weight.detach().numpy(), g.nodes["fc"].weight * 0.5, rtol=1e-6
    )
    x = (torch.rand(2, 5, 1, 6, 6) < 0.5).float()
    y = imp.net(x)
    assert y.shape == (2, 3)
    assert isinstance(to_nir(imp.net, (1, 6, 6)).nodes["2_sumpool2d"], nir.SumPool2d)
    # the sum pool of spikes folds into the next Linear's weights in the QONNX export (exact)
    model = to_qonnx(imp.net, x)
    assert [n.op_type for n in model.graph.node if n.op_type in ("MaxPool", "AveragePool")] == []
    imp.net.set_quantized(True)
    np.testing.assert_array_equal(execute_qonnx(model, x), imp.net(x).detach().numpy())


def _graph(nodes, edges):
    return nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([4])),
            **nodes,
            "out": nir.Output(output_type=np.array([2])),
        },
        edges=edges,
    )


def _lif(**kw):
    p = dict(
        tau=np.full(2, 8 * DT),
        r=np.full(2, 8.0),
        v_leak=np.zeros(2),
        v_threshold=np.ones(2),
        v_reset=np.zeros(2),
    )
    p.update(kw)
    return nir.LIF(**p)


@pytest.mark.parametrize(
    "nodes,match",
    [
        (
            {"fc": nir.Affine(weight=np.ones((2, 4)), bias=np.ones(2)), "lif": _lif()},
            "Affine node 'fc' has a non-zero bias",
        ),
        (
            {"fc": nir.Linear(weight=np.ones((2, 4))), "lif": _lif(v_leak=np.ones(2))},
            "LIF node 'lif': v_leak",
        ),
        (
            {"fc": nir.Linear(weight=np.ones((2, 4))), "lif": _lif(v_reset=np.ones(2))},
            "LIF node 'lif': v_reset",
        ),
        (
            {"fc": nir.Linear(weight=np.ones((2, 4))), "lif": _lif(tau=np.array([8 * DT, 2 * DT]))},
            "different shifts",
        ),
        (
            {
                "fc": nir.Linear(weight=np.ones((2, 4))),
                "lif": nir.CubaLIF(
                    tau_syn=np.full(2, 5 * DT),
                    tau_mem=np.full(2, 8 * DT),
                    r=np.ones(2),
                    v_leak=np.zeros(2),
                    v_threshold=np.ones(2),
                    v_reset=np.zeros(2),
                    w_in=np.ones(2),
                ),
            },
            "CubaLIF node 'lif': tau_syn",
        ),
        (
            {
                "fc": nir.Linear(weight=np.ones((2, 4))),
                "lif": nir.LI(tau=np.full(2, 8 * DT), r=np.ones(2), v_leak=np.zeros(2)),
            },
            "node 'lif' of type LI has no S2N2 mapping",
        ),
    ],
)
def test_unmappable_nodes_are_named(nodes, match):
    with pytest.raises(ValueError, match=match):
        from_nir(_graph(nodes, [("in", "fc"), ("fc", "lif"), ("lif", "out")]))


def test_structural_errors():
    branching = nir.NIRGraph(
        nodes={
            "in": nir.Input(input_type=np.array([4])),
            "a": nir.Linear(weight=np.ones((2, 4))),
            "b": nir.Linear(weight=np.ones((2, 4))),
            "out": nir.Output(output_type=np.array([2])),
        },
        edges=[("in", "a"), ("in", "b"), ("a", "out"), ("b", "out")],
    )
    with pytest.raises(ValueError, match="node 'in' branches"):
        from_nir(branching)
    with pytest.raises(ValueError, match="no spiking neuron"):
        from_nir(_graph({"fc": nir.Linear(weight=np.ones((2, 4)))}, [("in", "fc"), ("fc", "out")]))
    with pytest.raises(TypeError, match="NIRGraph"):
        from_nir({"not": "a graph"})
    with pytest.raises(ValueError, match="reset of node 'lif' must be one of"):
        chain = [("in", "fc"), ("fc", "lif"), ("lif", "out")]
        from_nir(
            _graph({"fc": nir.Linear(weight=np.ones((2, 4))), "lif": _lif()}, chain), reset={"lif": "hold"}
        )
    with pytest.raises(ValueError, match="MaxPool2d"):
        to_nir(spiking_convnet((1, 6, 6), [(2, 3, 0, 2)], [2]), (1, 6, 6))
    assert isinstance(LIF(), torch.nn.Module) and isinstance(
        TimeDistributed(torch.nn.Flatten()), torch.nn.Module
    )
