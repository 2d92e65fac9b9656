"""InferLIFLayers / delays / FINN builds: converted graphs execute like the front-end's QONNX pattern.

Seed: chapter 2 §2.2.2 (delays pushed to the output), §2.2.3 (SWU + LIF MVTU, binary pooling unit),
Tables 2.2/2.3/2.7/2.8 (network shapes).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qonnx.core.onnx_exec import execute_onnx

import finn_s2n2
from finn_s2n2 import numerics
from finn_s2n2.finn import buffers
from finn_s2n2.finn.build import execute_s2n2, make_s2n2_network
from finn_s2n2.finn.custom_op.lif_attrs import apply_delay
from finn_s2n2.finn.transformation import convert_to_lif


def _ops(model):
    return [n.op_type for n in model.graph.node]


def test_lif_node_matches_numerics_both_layouts():
    from onnx import TensorProto, helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    rng = np.random.default_rng(0)
    cur = rng.integers(-20, 30, size=(2, 5, 3, 4)).astype(np.float32)
    ref = numerics.lif_sequence(cur.astype(np.int64), decay_shift=2, threshold=9, acc_bits=8)
    for tick_axis, x in ((1, cur), (0, cur.reshape(10, 3, 4))):
        for mode in ("spikes", "counts"):
            node = helper.make_node(
                "LIF",
                ["i"],
                ["o"],
                domain="finn_s2n2",
                name="lif",
                decay_shift=2,
                threshold=9,
                numTicks=5,
                accDataType="INT8",
                outputMode=mode,
                tickAxis=tick_axis,
            )
            g = helper.make_graph(
                [node],
                "g",
                [helper.make_tensor_value_info("i", TensorProto.FLOAT, x.shape)],
                [helper.make_tensor_value_info("o", TensorProto.FLOAT, None)],
            )
            m = ModelWrapper(qonnx_make_model(g))
            y = execute_onnx(m, {"i": x})["o"]
            exp = ref if mode == "spikes" else ref.sum(axis=1)
            np.testing.assert_array_equal(y.reshape(exp.shape), exp)


@st.composite
def small_networks(draw):
    layers = []
    h = draw(st.integers(5, 8))
    size = h
    if draw(st.booleans()):
        k = draw(st.sampled_from([1, 3]))
        pad = draw(st.integers(0, k // 2))
        layers.append(("conv", draw(st.integers(1, 3)), k, pad))
        size = size + 2 * pad - k + 1
        if draw(st.booleans()) and size >= 4:
            layers.append(("pool", 2))
            size //= 2
    if draw(st.booleans()) or not layers or layers[-1][0] == "pool":
        layers.append(("dense", draw(st.integers(2, 6))))
    return dict(
        h=h,
        layers=layers,
        ticks=draw(st.integers(2, 5)),
        samples=draw(st.integers(1, 2)),
        thr=draw(st.integers(0, 6)),
        k=draw(st.integers(1, 4)),
        seed=draw(st.integers(0, 999)),
        last=draw(st.sampled_from(["spikes", "counts"])),
    )


@settings(max_examples=12)
@given(small_networks())
def test_converted_network_equals_qonnx_pattern(c):
    m = make_s2n2_network(
        (1, c["h"], c["h"]),
        c["layers"],
        num_ticks=c["ticks"],
        num_samples=c["samples"],
        threshold=c["thr"],
        decay_shift=c["k"],
        seed=c["seed"],
        last_output=c["last"],
        acc_dtype="INT10",
    )
    rng = np.random.default_rng(c["seed"])
    x = (rng.random((c["ticks"] * c["samples"], 1, c["h"], c["h"])) < 0.5).astype(np.float32)
    y_ref = execute_onnx(m, {"inp": x})["outp"]
    m2 = convert_to_lif(m)
    hw = [n for n in m2.graph.node if n.domain.startswith("finn.custom_op.fpgadataflow")]
    assert len(hw) >= len(m2.graph.node) - 2  # only the input transpose / a flatten may stay outside
    assert "LIF" not in _ops(m2) and "Conv" not in _ops(m2) and "MatMul" not in _ops(m2)
    y = execute_s2n2(m2, {"inp": x})["outp"]
    np.testing.assert_array_equal(y.reshape(y_ref.shape), y_ref)


def test_conv_pool_dense_structure():
    """Binary max pooling: our SpikeMaxPool by default, FINN's depthwise sliding window + Pool on request;
    both execute like the QONNX pattern (plain qonnx execute_onnx, 2 samples)."""
    m = make_s2n2_network(
        (1, 8, 8),
        [("conv", 2, 3, 1), ("pool", 2), ("dense", 3)],
        num_ticks=2,
        num_samples=2,
        threshold=1,
        seed=2,
    )
    x = (np.random.default_rng(6).random((4, 1, 8, 8)) < 0.5).astype(np.float32)
    ref = execute_onnx(m, {"inp": x})["outp"]
    m2 = convert_to_lif(m)
    assert _ops(m2) == [
        "Transpose",
        "FMPadding",
        "ConvolutionInputGenerator",
        "LIF_MVAU",
        "SpikeMaxPool",
        "LIF_MVAU",
    ]
    m3 = convert_to_lif(m, pool_impl="finn")
    assert _ops(m3) == [
        "Transpose",
        "FMPadding",
        "ConvolutionInputGenerator",
        "LIF_MVAU",
        "ConvolutionInputGenerator",
        "Pool",
        "LIF_MVAU",
    ]
    assert ref.sum() > 0
    for conv in (m2, m3):
        np.testing.assert_array_equal(execute_onnx(conv, {"inp": x})["outp"].reshape(ref.shape), ref)
    with pytest.raises(ValueError, match=r"pool_impl must be one of"):
        convert_to_lif(m, pool_impl="hls")


@pytest.mark.parametrize("last", ["spikes", "counts"])
def test_delays_pushed_to_output_equal_shifted_delay_free_network(last):
    """§2.2.2: per-layer delays == delay-free network with its output delayed by the total delay."""
    layers = [("conv", 3, 3, 1), ("dense", 6), ("dense", 4)]
    delays = [(1, 0), (2, 1), (0, 2)]  # total 6 ticks
    ticks = 12
    kw = dict(num_ticks=ticks, num_samples=2, threshold=2, decay_shift=2, seed=5, last_output=last)
    delayed = make_s2n2_network((1, 6, 6), layers, delays=delays, **kw)
    free = make_s2n2_network(
        (1, 6, 6), layers, last_output="spikes", **{k: v for k, v in kw.items() if k != "last_output"}
    )
    x = (np.random.default_rng(1).random((2 * ticks, 1, 6, 6)) < 0.6).astype(np.float32)
    free_spikes = execute_onnx(free, {"inp": x})["outp"].reshape(2, ticks, -1)
    assert free_spikes[:, : ticks - 6].sum() > 0  # some spikes survive the shift
    shifted = apply_delay(free_spikes, 6, tick_axis=1)
    expected = shifted if last == "spikes" else shifted.sum(axis=1)
    per_layer = execute_onnx(delayed, {"inp": x})["outp"]  # each LIF delays its own output
    np.testing.assert_array_equal(per_layer.reshape(expected.shape), expected)
    pushed = convert_to_lif(delayed, push_delays="window")
    from qonnx.custom_op.registry import getCustomOp

    lifs = [getCustomOp(n) for n in pushed.graph.node if n.op_type == "LIF_MVAU"]
    assert [i.get_nodeattr("outputDelay") for i in lifs] == [0, 0, 6]
    assert all(i.get_nodeattr("axonalDelay") == i.get_nodeattr("synapticDelay") == 0 for i in lifs)
    y = execute_s2n2(pushed, {"inp": x})["outp"]
    np.testing.assert_array_equal(y.reshape(expected.shape), expected)
    # latency-only (the default, the chapter's reading): the counter window moves with the delay, so the
    # per-sample outputs are the delay-free network's and the 6 ticks are latency
    lat = convert_to_lif(delayed)
    lifs = [getCustomOp(n) for n in lat.graph.node if n.op_type == "LIF_MVAU"]
    assert [(i.get_nodeattr("outputDelay"), i.get_nodeattr("delayMode")) for i in lifs][-1] == (6, "latency")
    assert lifs[-1].params().latency == 6 and lifs[-1].params().delay == 0
    free_out = free_spikes if last == "spikes" else free_spikes.sum(axis=1)
    y = execute_s2n2(lat, {"inp": x})["outp"]
    np.testing.assert_array_equal(y.reshape(free_out.shape), free_out)
    from finn_s2n2.finn.build import s2n2_performance

    assert s2n2_performance(lat, 10.0)["delay_latency_ticks"] == 6


def test_bad_graphs_fail_at_transformation_time():
    from qonnx.core.datatype import DataType
    from qonnx.custom_op.registry import getCustomOp

    m = make_s2n2_network((1, 4, 4), [("dense", 3)], num_ticks=2)
    m.set_tensor_datatype("inp", DataType["INT4"])
    with pytest.raises(ValueError, match=r"has datatype INT4; S2N2 layers take BINARY"):
        convert_to_lif(m)
    m = make_s2n2_network((1, 4, 4), [("dense", 3)], num_ticks=2)
    m.set_initializer("w0", m.get_initializer("w0") + 0.5)
    with pytest.raises(ValueError, match=r"MatMul node 'matmul0'.*not integers"):
        convert_to_lif(m)
    m = make_s2n2_network((1, 4, 4), [("dense", 3)], num_ticks=2)
    getCustomOp(m.get_nodes_by_op_type("LIF")[0]).set_nodeattr("numTicks", 0)
    with pytest.raises(ValueError, match=r"LIF node 'lif0'.*numTicks is missing"):
        convert_to_lif(m)
    m = make_s2n2_network((1, 4, 4), [("conv", 2, 3, 0), ("dense", 3)], num_ticks=2)
    getCustomOp(m.get_nodes_by_op_type("LIF")[0]).set_nodeattr("tickAxis", 1)
    with pytest.raises(ValueError, match=r"LIF node 'lif0' after a Conv needs tickAxis=0"):
        convert_to_lif(m)


def test_rf1_model_buffer_report_reproduces_table_2_3():
    """The converted S2N2_rf1 graph, with the seed's spike ratios, gives Table 2.3."""
    m = convert_to_lif(finn_s2n2.finn.build.s2n2_rf1_model())
    rows = buffers.model_buffer_report(m, [0.0039, 0.07, 0.08, 0.12])
    assert [r.input_size for r in rows] == [256, 4096, 1152, 128]
    assert [r.tick_batching_bits for r in rows] == [1917, 697304, 212337, 27526]
    assert [r.streaming_bits for r in rows] == [25, 400, 128, 11]
    # FINN's sliding window keeps its own line buffer in front of each conv unit (§2.2.1 must count it):
    # conv1 5x5 on the 20x20 padded 1-channel map: (5-1)*20+5 = 85 bits; conv2 5x5 on 16x16x16: 1,104 bits
    assert [r.sliding_window_bits for r in rows] == [85, (4 * 16 + 5) * 16, 0, 0]


def _check_report(report_dir, n_lif):
    res = json.loads((report_dir / "estimate_layer_resources.json").read_text())
    lif_rows = {k: v for k, v in res.items() if k.startswith("LIF_MVAU")}
    assert len(lif_rows) == n_lif
    assert all(v["BRAM_18K"] > 0 and v["LUT"] > 0 for v in lif_rows.values())
    cycles = json.loads((report_dir / "estimate_layer_cycles.json").read_text())
    assert all(cycles[k] > 0 for k in lif_rows)
    s2n2 = json.loads((report_dir / "s2n2_lif_mvau.json").read_text())["lif_mvau"]
    assert any(v["membrane_bram18"] > 0 for v in s2n2.values())
    return s2n2


def test_estimate_build_s2n2_rf1(tmp_path):
    from finn_s2n2.finn.build import build_estimates, s2n2_rf1_model

    rep_dir = build_estimates(s2n2_rf1_model(), tmp_path / "rf1")
    s2n2 = _check_report(rep_dir, 4)
    # conv1: 16x16 output positions x 16 neurons x INT16 membrane = 4096 x 16 bits -> 4 x BRAM18 (4k x 4);
    # one frame = one tick: 256 positions x 16 neurons x 25 inputs = 102,400 cycles per tick (PE = SIMD = 1)
    first, second = (s2n2[k] for k in sorted(s2n2)[:2])
    assert first["membrane_bram18"] == 4 and first["cycles_per_tick"] == 256 * 16 * 25
    # conv2 (8c5 on 16x16x16, no padding): 12x12 positions x 8 neurons x 400 inputs: the critical node
    crit = 144 * 8 * 400
    assert second["cycles_per_tick"] == crit
    rep = json.loads((rep_dir / "s2n2_lif_mvau.json").read_text())
    finn_perf = json.loads((rep_dir / "estimate_network_performance.json").read_text())
    assert rep["critical_node"] == finn_perf["max_cycles_node_name"] == sorted(s2n2)[1]
    assert rep["max_cycles_per_tick"] == finn_perf["max_cycles"] == crit
    assert rep["cycles_per_sample"] == 128 * crit  # 128 ticks per sample
    assert rep["samples_per_s"] == pytest.approx(1e8 / (128 * crit))
    # FINN's fps is ticks per second here (one frame = one tick)
    assert finn_perf["estimated_throughput_fps"] == pytest.approx(rep["ticks_per_s"])


def test_estimate_build_s2n2_cv(tmp_path):
    from finn_s2n2.finn.build import build_estimates, s2n2_cv_model

    _check_report(build_estimates(s2n2_cv_model(), tmp_path / "cv"), 4)


@pytest.mark.slow
def test_dataflow_partition_cppsim_equals_python(tmp_path):
    """Whole dataflow partition: LIF_MVAU_hls nodes in cppsim (own C++), FINN's RTL sliding window in its
    cppsim mode (python), == python execution of the converted graph and of the QONNX pattern."""
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    from finn.builder.build_dataflow_steps import step_create_dataflow_partition, step_specialize_layers
    from finn.transformation.fpgadataflow.compile_cppsim import CompileCppSim
    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim
    from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode

    from finn_s2n2.finn.build import step_convert_to_lif, step_s2n2_tidy

    ticks = 4
    m = make_s2n2_network(
        (1, 6, 6),
        [("conv", 2, 3, 0), ("dense", 6), ("dense", 3)],
        num_ticks=ticks,
        num_samples=2,
        threshold=2,
        decay_shift=2,
        seed=3,
    )
    x = (np.random.default_rng(4).random((2 * ticks, 1, 6, 6)) < 0.5).astype(np.float32)
    y_ref = execute_onnx(m, {"inp": x})["outp"]
    cfg = DataflowBuildConfig(
        output_dir=str(tmp_path), synth_clk_period_ns=10.0, fpga_part="xc7z020clg400-1", generate_outputs=[]
    )
    m = step_convert_to_lif(step_s2n2_tidy(m, cfg), cfg)
    parent = m.transform(
        __import__(
            "finn.transformation.fpgadataflow.create_dataflow_partition", fromlist=["CreateDataflowPartition"]
        ).CreateDataflowPartition(partition_model_dir=str(tmp_path / "partitions"))
    )
    child = step_create_dataflow_partition(m, cfg)
    child = step_specialize_layers(child, cfg)
    child = child.transform(SetExecMode("cppsim")).transform(PrepareCppSim()).transform(CompileCppSim())
    assert [n.op_type for n in child.graph.node].count("LIF_MVAU_hls") == 3
    from qonnx.custom_op.registry import getCustomOp

    sdp = getCustomOp(parent.get_nodes_by_op_type("StreamingDataflowPartition")[0])
    child_path = tmp_path / "child_cppsim.onnx"
    child.save(str(child_path))
    sdp.set_nodeattr("model", str(child_path))
    y = execute_s2n2(parent, {"inp": x})["outp"]
    assert y_ref.sum() > 0
    np.testing.assert_array_equal(y.reshape(y_ref.shape), y_ref)


@pytest.mark.parametrize("which", ["rf1", "cv"])
def test_folding_target_met_by_every_node_or_named(tmp_path, which):
    """FINN's SetFolding + LIF_MVAU folding at a cycles-per-tick target: every HW node of the partition
    (sliding windows, padding, pooling included) meets it, or the report names the node; FINN's
    estimate_network_performance names the same critical node as the S2N2 report."""
    from finn_s2n2.finn.build import build_estimates, s2n2_cv_model, s2n2_rf1_model

    target = 4096
    model = s2n2_rf1_model() if which == "rf1" else s2n2_cv_model()
    rep_dir = build_estimates(model, tmp_path / which, target_cycles_per_tick=target)
    rep = json.loads((rep_dir / "s2n2_lif_mvau.json").read_text())
    finn_perf = json.loads((rep_dir / "estimate_network_performance.json").read_text())
    cycles = json.loads((rep_dir / "estimate_layer_cycles.json").read_text())
    assert rep["critical_node"] == finn_perf["max_cycles_node_name"]
    assert rep["max_cycles_per_tick"] == finn_perf["max_cycles"] == max(cycles.values())
    missed = {m["node"] for m in rep["folding"]["missed"]}
    for name, c in cycles.items():
        assert c <= target or name in missed, (name, c)
    assert rep["folding"]["target_cycles_per_tick"] == target


def test_unreachable_folding_target_is_named():
    from finn_s2n2.finn.build import lif_folding

    m = convert_to_lif(make_s2n2_network((1, 6, 6), [("conv", 2, 3, 1), ("dense", 3)], num_ticks=2))
    with pytest.raises(
        ValueError,
        match=r"target 1 cycles/tick unreachable by LIF_MVAU_\d+ \(LIF_MVAU\): 36 cycles/tick > 1, fully parallel",
    ):
        lif_folding(m, 1, strict=True)
    with pytest.raises(ValueError, match="target_cycles_per_tick"):
        lif_folding(m, 0)


def test_seed_figure_2_5_three_layer_example():
    """Fig 2.4/2.5: 2-2-2 network, weights 1, a neuron spikes when its input > 0 (threshold 0, reset to zero,
    so the membrane is empty whenever it does not fire).  Input rows of the figure's table (ticks 0-3):
    in(00), in(01) = 01, 11, 00, 01; expected in(1x) = 1, 2, 0, 1; in(2x) = 2, 2, 0, 2; outputs 1, 1, 0, 1.
    With a delay of 3 ticks the output is the same sequence 3 ticks later (§2.2.2)."""
    x = np.array([[0, 1], [1, 1], [0, 0], [0, 1]], dtype=np.float32)  # one frame per tick
    weights = [np.eye(2), np.ones((2, 2)), np.ones((2, 2))]

    def run(delays):
        h, currents = x, []
        for w, d in zip(weights, delays):
            currents.append(h @ w)
            m = finn_s2n2.make_lif_mvau_model(
                w, decay_shift=3, threshold=0, num_ticks=h.shape[0], synaptic_delay=d
            )
            h = execute_onnx(m, {"inp": h})["outp"]
        return currents, h

    currents, out = run([0, 0, 0])
    np.testing.assert_array_equal(currents[1][:, 0], [1, 2, 0, 1])
    np.testing.assert_array_equal(currents[2][:, 0], [2, 2, 0, 2])
    np.testing.assert_array_equal(out[:, 0], [1, 1, 0, 1])
    x = np.concatenate([x, np.zeros((3, 2), dtype=np.float32)], axis=0)  # 7 ticks, room for the delay
    _, out_d = run([0, 3, 0])
    np.testing.assert_array_equal(out_d[:, 0], [0, 0, 0, 1, 1, 0, 1])


def test_sample_major_input_for_finn_verification():
    """SampleMajorInput: graph input (1, numTicks, C, H, W) — one whole sample per axis-0 entry, as FINN's
    verify_step feeds it — then a Reshape to frames; executes like the frame graph before and after
    conversion.  Frames that are not whole samples are named."""
    from qonnx.transformation.infer_shapes import InferShapes

    from finn_s2n2.finn.transformation import SampleMajorInput

    ticks = 3
    m = make_s2n2_network(
        (1, 6, 6), [("conv", 2, 3, 1), ("pool", 2), ("dense", 3)], num_ticks=ticks, num_samples=2, threshold=1
    )
    x = (np.random.default_rng(8).random((2 * ticks, 1, 6, 6)) < 0.5).astype(np.float32)
    ref = execute_onnx(m, {"inp": x})["outp"]
    s = m.transform(SampleMajorInput())
    assert s.get_tensor_shape("inp") == [1, ticks, 1, 6, 6] and s.graph.node[0].op_type == "Reshape"
    assert s.transform(SampleMajorInput()).graph.node[1].op_type != "Reshape"  # idempotent
    conv = convert_to_lif(s)
    for b in range(2):
        one = x[b * ticks : (b + 1) * ticks].reshape(1, ticks, 1, 6, 6)
        np.testing.assert_array_equal(execute_onnx(s, {"inp": one})["outp"].reshape(-1), ref[b])
        np.testing.assert_array_equal(execute_onnx(conv, {"inp": one})["outp"].reshape(-1), ref[b])
    bad = make_s2n2_network((1, 4, 4), [("dense", 3)], num_ticks=ticks)
    bad.set_tensor_shape("inp", [4, 1, 4, 4])
    with pytest.raises(ValueError, match=r"4 frames on axis 0, not a multiple of numTicks=3"):
        bad.transform(InferShapes()).transform(SampleMajorInput())
