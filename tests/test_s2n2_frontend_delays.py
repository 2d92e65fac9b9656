"""Fixed per-layer delays (Khodamoradi 2021, §2.2.2) from the torch front end to FINN: the torch LIF's delay
arguments, their QONNX attributes and ``nir.Delay`` nodes, the per-node ("window") execution and the chapter's
latency-only reading (delays pushed to the output shift the counter window: per-sample counts unchanged)."""

import nir
import numpy as np
import pytest
import torch

from finn_s2n2.snn.export import spikes_to_frames, to_qonnx
from finn_s2n2.snn.models import spiking_mlp
from finn_s2n2.snn.nir import from_nir, to_nir
from finn_s2n2.snn.nn import LIF, shift_ticks

torch.set_num_threads(1)


def _delayed_mlp(delays, mode="window", reset="zero", seed=0):
    torch.manual_seed(seed)
    net = spiking_mlp([10, 8, 6, 4], quantized=True, acc_bits=16)
    x = (torch.rand(4, 12, 10, generator=torch.Generator().manual_seed(seed)) < 0.5).float()
    net.calibrate(x, target=0.3)
    for lif, (ax, syn) in zip([m for m in net if isinstance(m, LIF)], delays, strict=True):
        lif.axonal_delay, lif.synaptic_delay, lif.delay_mode, lif.reset = ax, syn, mode, reset
    return net, x


def _finn_exec(model, x, push_delays):
    from finn_s2n2.finn.build import execute_s2n2
    from finn_s2n2.finn.transformation import convert_to_lif

    conv = convert_to_lif(model, push_delays=push_delays)
    out = execute_s2n2(conv, {conv.graph.input[0].name: spikes_to_frames(x)})[conv.graph.output[0].name]
    return conv, out


def test_lif_delay_shifts_spikes_inside_the_window():
    cur = torch.rand(3, 9, 5) * 3
    plain = LIF(threshold=1.0)(cur)
    delayed = LIF(threshold=1.0, axonal_delay=2, synaptic_delay=1)(cur)
    np.testing.assert_array_equal(delayed[:, 3:].numpy(), plain[:, :-3].numpy())
    assert float(delayed[:, :3].abs().sum()) == 0.0
    np.testing.assert_array_equal(shift_ticks(plain, 20).numpy(), np.zeros_like(plain.numpy()))
    latency = LIF(threshold=1.0, axonal_delay=2, delay_mode="latency", output_mode="counts")(cur)
    np.testing.assert_array_equal(latency.numpy(), plain.sum(1).numpy())
    for bad in (dict(axonal_delay=-1), dict(synaptic_delay=1.5), dict(delay_mode="push")):
        with pytest.raises(ValueError, match=r"LIF\.(axonal_delay|synaptic_delay|delay_mode)"):
            LIF(**bad)


@pytest.mark.parametrize("reset", ["zero", "subtract"])
def test_window_mode_equals_finn_per_node_delays(reset):
    """Per-node delays (no pushing): torch window mode == FINN python execution, spike counts included."""
    net, x = _delayed_mlp([(1, 0), (0, 2), (1, 1)], reset=reset)
    with torch.no_grad():
        ref = net(x).numpy()
    model = to_qonnx(net, x)
    lifs = [n for n in model.graph.node if n.op_type == "LIF"]
    attrs = [{a.name: a.i for a in n.attribute if a.name.endswith("Delay")} for n in lifs]
    assert attrs == [
        {"axonalDelay": 1, "synapticDelay": 0},
        {"axonalDelay": 0, "synapticDelay": 2},
        {"axonalDelay": 1, "synapticDelay": 1},
    ]
    _, out = _finn_exec(model, x, push_delays=False)
    np.testing.assert_array_equal(out.reshape(ref.shape), ref)


DELAYS = [(1, 0), (0, 2), (1, 1)]


def _round_trip(tmp_path):
    """torch (delays, latency mode) -> NIR file -> from_nir -> QONNX; returns (reference counts, model, x)."""
    net, x = _delayed_mlp(DELAYS, mode="latency")
    with torch.no_grad():
        ref = net(x).numpy()
        for m in net:
            if isinstance(m, LIF):
                m.delay_mode = "window"
        assert not np.array_equal(net(x).numpy(), ref)  # the delays matter in window mode
    g = to_nir(net, (10,))
    assert sum(isinstance(n, nir.Delay) for n in g.nodes.values()) == 4
    nir.write(tmp_path / "delayed.nir", g)
    imp = from_nir(nir.read(tmp_path / "delayed.nir"), quantized=True, acc_bits=16)
    lifs = [m for m in imp.net if isinstance(m, LIF)]
    assert [(m.axonal_delay, m.synaptic_delay) for m in lifs] == DELAYS
    for m in lifs:
        m.delay_mode = "latency"
    with torch.no_grad():
        np.testing.assert_array_equal(imp.net(x).numpy(), ref)
    return ref, to_qonnx(imp.net, x), x


def test_delays_round_trip_torch_qonnx_nir_and_push_to_the_output(tmp_path):
    """The delays survive torch -> NIR -> torch -> QONNX, and PushDelaysToOutput moves their sum (5 ticks) to
    the output layer."""
    from qonnx.custom_op.registry import getCustomOp

    from finn_s2n2.finn.transformation import convert_to_lif

    _, model, _ = _round_trip(tmp_path)
    conv = convert_to_lif(model, push_delays=True)
    assert getCustomOp(conv.graph.node[-1]).get_nodeattr("delayMode") == "latency"
    lifs = [getCustomOp(n) for n in conv.graph.node if n.op_type.startswith("LIF")]
    assert [i.get_nodeattr("outputDelay") for i in lifs] == [0, 0, 5]
    assert sum(i.get_nodeattr("axonalDelay") + i.get_nodeattr("synapticDelay") for i in lifs) == 0


def test_delays_latency_only_finn_counts_equal_the_delay_free_counts(tmp_path):
    """The chapter's reading: delays pushed to the output (or kept per node in delayMode="latency") only add
    latency — FINN's per-sample counts equal the torch net's in latency mode, i.e. the delay-free counts."""
    ref, model, x = _round_trip(tmp_path)
    lifs = [n for n in model.graph.node if n.op_type == "LIF"]
    assert all({a.name: a.s for a in n.attribute}.get("delayMode") == b"latency" for n in lifs[:2])
    for push in (True, False):
        _, out = _finn_exec(model, x, push_delays=push)
        np.testing.assert_array_equal(out.reshape(ref.shape), ref)


def test_nir_delay_errors_are_named():
    dt = 1e-4
    lif = dict(
        tau=np.full(2, 8 * dt),
        r=np.full(2, 8.0),
        v_leak=np.zeros(2),
        v_threshold=np.ones(2),
        v_reset=np.zeros(2),
    )

    def graph(delay):
        return nir.NIRGraph(
            nodes={
                "in": nir.Input(input_type=np.array([4])),
                "fc": nir.Linear(weight=np.ones((2, 4))),
                "lif": nir.LIF(**lif),
                "d": nir.Delay(delay=delay),
                "out": nir.Output(output_type=np.array([2])),
            },
            edges=[("in", "fc"), ("fc", "lif"), ("lif", "d"), ("d", "out")],
        )

    assert from_nir(graph(np.full(2, 3 * dt))).net[1].axonal_delay == 3
    with pytest.raises(ValueError, match="Delay node 'd': per-neuron delays differ"):
        from_nir(graph(np.array([dt, 2 * dt])))
    with pytest.raises(ValueError, match="Delay node 'd': delay 5e-05 is not a whole number of ticks"):
        from_nir(graph(np.full(2, 0.5 * dt)))
