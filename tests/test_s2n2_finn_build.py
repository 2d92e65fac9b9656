"""A conv + pool + dense S2N2 net, written here, through FINN's own build flow up to ``step_hw_codegen``.

Khodamoradi 2021, §2.2.3 (sliding-window unit + LIF MVTU, binary pooling unit).  One frame = one tick: every
FINN pass (partitioning, specialisation, SetFolding, MinimizeAccumulatorWidth, estimates, InsertDWC,
InsertFIFO, InsertTLastMarker, PrepareIP code generation) runs unchanged on the graph.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.basic import qonnx_make_model

import finn_s2n2  # noqa: F401  (registers the LIF node)

TICKS = 3


def conv_pool_dense_net(samples: int, seed: int = 0):
    """Spikes (N*T, 1, 8, 8) -> Conv 4c3 pad 1 -> LIF -> MaxPool 2 -> Flatten -> MatMul 64x5 -> LIF (counts)."""
    rng = np.random.default_rng(seed)
    frames = samples * TICKS
    lif = dict(
        domain="finn_s2n2", decay_shift=2, threshold=3, numTicks=TICKS, accDataType="INT10", tickAxis=0
    )
    nodes = [
        helper.make_node("Conv", ["inp", "w0"], ["c0"], kernel_shape=[3, 3], pads=[1, 1, 1, 1], name="conv0"),
        helper.make_node("LIF", ["c0"], ["s0"], name="lif0", outputMode="spikes", **lif),
        helper.make_node("MaxPool", ["s0"], ["p0"], kernel_shape=[2, 2], strides=[2, 2], name="pool0"),
        helper.make_node("Flatten", ["p0"], ["f0"], axis=1, name="flat0"),
        helper.make_node("MatMul", ["f0", "w1"], ["c1"], name="fc1"),
        helper.make_node("LIF", ["c1"], ["outp"], name="lif1", outputMode="counts", **lif),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_pool_dense",
        [helper.make_tensor_value_info("inp", TensorProto.FLOAT, [frames, 1, 8, 8])],
        [helper.make_tensor_value_info("outp", TensorProto.FLOAT, None)],
    )
    model = ModelWrapper(qonnx_make_model(graph, producer_name="test"))
    model.set_initializer("w0", rng.integers(-3, 5, size=(4, 1, 3, 3)).astype(np.float32))
    model.set_initializer("w1", rng.integers(-4, 6, size=(64, 5)).astype(np.float32))
    for t, dt in (("inp", "BINARY"), ("w0", "INT4"), ("w1", "INT4")):
        model.set_tensor_datatype(t, DataType[dt])
    return model.transform(InferShapes()).transform(InferDataTypes())


@pytest.fixture(scope="module")
def codegen_build(tmp_path_factory):
    """The conv + pool + dense net (1 sample) built with S2N2_CODEGEN_STEPS + a top-1 LabelSelect at
    200 cycles per tick.  Returns ``(output dir, step names)``."""
    from hwreshape.compat import prepare_finn

    prepare_finn()  # finn-plus as a library: settings, no-Vivado stand-ins
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType

    from finn_s2n2.finn.build import S2N2_CODEGEN_STEPS, make_step_s2n2_label_select

    tmp = tmp_path_factory.mktemp("codegen")
    steps = list(S2N2_CODEGEN_STEPS)
    steps.insert(2, make_step_s2n2_label_select(1))  # after step_convert_to_lif: top-1 class index out
    names = [s if isinstance(s, str) else s.__name__ for s in steps]
    conv_pool_dense_net(samples=1).save(str(tmp / "net.onnx"))
    cfg = DataflowBuildConfig(
        output_dir=str(tmp / "out"),
        synth_clk_period_ns=10.0,
        fpga_part="xc7z020clg400-1",
        target_fps=int(1e8 / TARGET_CYCLES),
        steps=steps,
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        verbose=False,
        enable_build_pdb_debug=False,
    )
    assert build_dataflow_cfg(str(tmp / "net.onnx"), cfg) == 0
    return tmp / "out", names


#: cycles per tick: needs folding of the sliding window, the pooling unit and both LIF layers
TARGET_CYCLES = 200


def test_conv_pool_net_builds_through_finn_codegen(codegen_build):
    from qonnx.custom_op.registry import getCustomOp

    from finn_s2n2.finn import hls

    out, names = codegen_build
    log = (out / "build_dataflow.log").read_text()
    warnings = [ln for ln in log.splitlines() if "WARNING" in ln or "ERROR" in ln]
    assert not [w for w in warnings if re.search(r"LIF|S2N2|s2n2|SpikeMaxPool", w)], warnings
    assert {
        "step_s2n2_target_fps_parallelization",
        "step_s2n2_minimize_bit_width",
        "step_s2n2_insert_dwc_fifo",
    } <= set(names)
    final = ModelWrapper(str(out / "intermediate_models" / "step_hw_codegen.onnx"))
    ops = _ops(final)
    for op in (
        "FMPadding_rtl",
        "ConvolutionInputGenerator_rtl",
        "LIF_MVAU_hls",
        "SpikeMaxPool_hls",
        "LabelSelect_hls",
        "StreamingFIFO_rtl",
    ):
        assert op in ops, ops
    assert ops[-1] == "TLastMarker_hls", ops
    # every node meets the cycles-per-tick target (the report would name the ones that cannot)
    rep = json.loads((out / "report" / "s2n2_lif_mvau.json").read_text())
    assert rep["folding"] == {"target_cycles_per_tick": TARGET_CYCLES, "missed": []}
    assert max(rep["cycles_per_tick"].values()) <= TARGET_CYCLES
    assert rep["critical_node"] == rep["finn_dataflow_performance"]["max_cycles_node_name"]
    assert rep["ticks_per_sample"] == TICKS and rep["memory_bits"]["sliding_window_buffers"] > 0
    assert rep["memory_bits"]["pooling_buffers"] == 4 * 4  # (8/2 columns) x 4 channels, one bit each
    # the generated partition (FIFOs, sliding windows, LIF units, pooling, LabelSelect, TLastMarker) executes
    # on 2 whole samples and ends in the class index of the QONNX pattern's largest count
    from finn_s2n2.finn.build import execute_s2n2

    m2 = conv_pool_dense_net(samples=2)  # same weights (seed 0), 2 samples
    x = (np.random.default_rng(1).random((2 * TICKS, 1, 8, 8)) < 0.4).astype(np.float32)
    counts = execute_onnx(m2, {"inp": x})["outp"]
    inp, outp = final.graph.input[0].name, final.graph.output[0].name
    top = execute_s2n2(final, {inp: x.transpose(0, 2, 3, 1)})[outp]  # annotated for 1 sample, fed 2
    assert counts.sum() > 0
    np.testing.assert_array_equal(top.reshape(-1), np.argmax(counts, axis=1))
    # PrepareIP generated code for every node; every HLS node's top function passes g++ -fsyntax-only against
    # finn-hlslib + open ap_types (+ our ap_axi_sdata.h / sign_flag shims), ours with no diagnostics at all
    for node in final.graph.node:
        inst = getCustomOp(node)
        code_dir = inst.get_nodeattr("code_gen_dir_ipgen")
        assert code_dir, node.name
        if node.domain.endswith(".hls"):
            try:
                diag = hls.syntax_check(f"{code_dir}/top_{node.name}.cpp")
            except FileNotFoundError as e:  # no finn-hlslib on this machine
                pytest.skip(str(e))
            if node.op_type in ("LIF_MVAU_hls", "SpikeMaxPool_hls"):
                assert diag == "", diag


@pytest.mark.slow
def test_whole_partition_cppsim_equals_python_exec(codegen_build):
    """Every HLS node of the generated partition in C++ — our LIF_MVAU_hls and SpikeMaxPool_hls, FINN's
    LabelSelect_hls and TLastMarker_hls compiled with g++ against finn-hlslib and open ap_types — and the RTL
    nodes in FINN's cppsim mode (their python models): == python execution of the same partition and == the
    QONNX pattern, at 2 samples (execute_s2n2) and at 1 sample through plain qonnx execute_onnx."""
    from finn.util.fpgadataflow import is_hls_node
    from qonnx.custom_op.registry import getCustomOp

    from finn_s2n2.finn.build import execute_s2n2, prepare_partition_cppsim
    from hwreshape.compat import finn_hlslib_dir

    try:
        finn_hlslib_dir()
    except FileNotFoundError as e:
        pytest.skip(f"FINN's own HLS nodes need finn-hlslib: {e}")
    out, _ = codegen_build
    final = ModelWrapper(str(out / "intermediate_models" / "step_hw_codegen.onnx"))
    inp, outp = final.graph.input[0].name, final.graph.output[0].name
    m2 = conv_pool_dense_net(samples=2)
    x = (np.random.default_rng(7).random((2 * TICKS, 1, 8, 8)) < 0.4).astype(np.float32)
    counts = execute_onnx(m2, {"inp": x})["outp"]
    frames = x.transpose(0, 2, 3, 1)
    y_py = execute_s2n2(final, {inp: frames})[outp]
    cpp = prepare_partition_cppsim(final)
    hls_nodes = [n for n in cpp.graph.node if is_hls_node(n)]
    assert {n.op_type for n in hls_nodes} == {
        "LIF_MVAU_hls",
        "SpikeMaxPool_hls",
        "LabelSelect_hls",
        "TLastMarker_hls",
    }
    for n in hls_nodes:
        inst = getCustomOp(n)
        assert inst.get_nodeattr("exec_mode") == "cppsim" and inst.get_nodeattr("executable_path"), n.name
    y_cpp = execute_s2n2(cpp, {inp: frames})[outp]
    assert counts.sum() > 0 and len(set(np.argmax(counts, axis=1))) == 2
    np.testing.assert_array_equal(y_py.reshape(-1), np.argmax(counts, axis=1))
    np.testing.assert_array_equal(y_cpp, y_py)
    # one sample (FINN's batch of one), plain qonnx execution of the whole C++ partition
    y1 = execute_onnx(cpp, {inp: frames[:TICKS]})[outp]
    np.testing.assert_array_equal(y1.reshape(-1), y_py.reshape(-1)[:1])


@pytest.mark.parametrize("samples", [2, 3])
def test_plain_execute_onnx_of_converted_dense_net_equals_qonnx_pattern(samples):
    """One frame = one tick: plain qonnx execute_onnx runs the converted graph on whole samples (batch 2, 3)."""
    from finn_s2n2.finn.build import make_s2n2_network
    from finn_s2n2.finn.transformation import convert_to_lif

    m = make_s2n2_network(
        (1, 4, 4), [("dense", 7), ("dense", 4)], num_ticks=TICKS, num_samples=samples, seed=2, threshold=1
    )
    x = (np.random.default_rng(samples).random((samples * TICKS, 1, 4, 4)) < 0.5).astype(np.float32)
    ref = execute_onnx(m, {"inp": x})["outp"]
    y = execute_onnx(convert_to_lif(m), {"inp": x})["outp"]
    assert ref.shape == (samples, 4) and ref.sum() > 0
    np.testing.assert_array_equal(y.reshape(ref.shape), ref)


@pytest.mark.parametrize("samples", [2, 3])
def test_plain_execute_onnx_of_converted_conv_pool_net_equals_qonnx_pattern(samples):
    """The conv + pool net at batch 2 and 3: plain qonnx execute_onnx of the converted FINN graph (FINN's
    padding, sliding windows, pooling, our LIF_MVAU) == the QONNX pattern's execution."""
    from finn_s2n2.finn.transformation import convert_to_lif

    m = conv_pool_dense_net(samples, seed=samples)
    x = (np.random.default_rng(samples).random((samples * TICKS, 1, 8, 8)) < 0.4).astype(np.float32)
    ref = execute_onnx(m, {"inp": x})["outp"]
    conv = convert_to_lif(m)
    assert "ConvolutionInputGenerator" in _ops(conv)
    y = execute_onnx(conv, {"inp": x})["outp"]
    assert ref.shape == (samples, 5) and ref.sum() > 0
    np.testing.assert_array_equal(y.reshape(ref.shape), ref)


def test_im2col_shim_executes_each_frame_like_qonnx_alone():
    """The cause of the batch > 1 mismatch and its fix: qonnx' own Im2Col mixes the images of a batch; the
    registered shim equals qonnx' Im2Col run on each image alone (FINN's ConvolutionInputGenerator uses it)."""
    from qonnx.custom_op.general.im2col import Im2Col as QonnxIm2Col
    from qonnx.custom_op.registry import getCustomOp

    from finn_s2n2.finn.custom_op.im2col import Im2Col

    node = helper.make_node(
        "Im2Col",
        ["x"],
        ["y"],
        domain="qonnx.custom_op.general",
        stride=[1, 1],
        kernel_size=[2, 2],
        input_shape="(1,3,3,2)",
    )
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 3, 3, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2, 2, 8])],
    )
    model = ModelWrapper(qonnx_make_model(graph))
    model.set_tensor_datatype("x", DataType["INT8"])
    assert type(getCustomOp(node)) is Im2Col
    x = np.random.default_rng(0).integers(-8, 8, size=(3, 3, 3, 2)).astype(np.float32)
    per_frame = []
    for f in range(3):
        ctx = {"x": x[f : f + 1]}
        QonnxIm2Col(node).execute_node(ctx, model.graph)
        per_frame.append(ctx["y"])
    ctx = {"x": x}
    QonnxIm2Col(node).execute_node(ctx, model.graph)
    assert not np.array_equal(ctx["y"], np.concatenate(per_frame))  # qonnx 1.0.0: frames interleaved
    ctx = {"x": x}
    Im2Col(node).execute_node(ctx, model.graph)
    np.testing.assert_array_equal(ctx["y"], np.concatenate(per_frame))


@pytest.mark.parametrize("samples", [2, 3])
def test_plain_execute_onnx_of_conv_pool_net_equals_quantized_torch(samples):
    """Quantized torch conv + pool + dense SNN -> QONNX -> converted FINN graph: plain qonnx execute_onnx
    on samples x ticks frames == the torch model's spike counts (batch 2 and 3)."""
    import torch

    from finn_s2n2.finn.transformation import convert_to_lif
    from finn_s2n2.snn.export import spikes_to_frames, to_qonnx
    from finn_s2n2.snn.models import spiking_convnet

    torch.manual_seed(samples)
    net = spiking_convnet((1, 8, 8), [(3, 3, 1, 2)], [5], quantized=True, weight_bit_width=4, decay_shift=2)
    x = (torch.rand((samples, 6, 1, 8, 8), generator=torch.Generator().manual_seed(samples)) < 0.5).float()
    net.calibrate(x, target=0.3)
    with torch.no_grad():
        ref = net(x).numpy()
    conv = convert_to_lif(to_qonnx(net, x))
    assert "ConvolutionInputGenerator" in _ops(conv)
    name = conv.graph.input[0].name
    y = execute_onnx(conv, {name: spikes_to_frames(x)})[conv.graph.output[0].name]
    assert ref.shape == (samples, 5) and ref.sum() > 0
    np.testing.assert_array_equal(y.reshape(ref.shape), ref)


def test_label_select_readout_equals_top_k_of_counts():
    """FINN's LabelSelect after the counting layer: class indices, largest count first, ties to the lower
    label (ONNX TopK, torch.argmax)."""
    from finn_s2n2.finn.build import execute_s2n2
    from finn_s2n2.finn.transformation import FixTickBatchShapes, InsertLabelSelect, convert_to_lif

    m = conv_pool_dense_net(3, seed=3)
    x = (np.random.default_rng(3).random((3 * TICKS, 1, 8, 8)) < 0.4).astype(np.float32)
    counts = execute_onnx(m, {"inp": x})["outp"]
    conv = convert_to_lif(m).transform(InsertLabelSelect(2)).transform(FixTickBatchShapes())
    assert [n.op_type for n in conv.graph.node][-1] == "LabelSelect"
    top = execute_s2n2(conv, {"inp": x})["outp"]
    expected = np.argsort(-counts, axis=1, kind="stable")[:, :2]
    np.testing.assert_array_equal(top, expected)
    with pytest.raises(ValueError, match=r"k=6 > 5 labels"):
        convert_to_lif(m).transform(InsertLabelSelect(6))


@pytest.mark.slow
def test_specialised_cppsim_graph_plain_execute_onnx_equals_quantized_torch(tmp_path):
    """After specialisation to HW layers (FINN's partitioning and SpecializeLayers; every HLS node in C++,
    the RTL padding / sliding window in FINN's cppsim mode): plain qonnx execute_onnx of the parent graph
    (its StreamingDataflowPartition executes the partition) == the quantized torch conv + pool + dense SNN at
    batch 2 and 3 (the same compiled partition, axis 0 re-annotated for 3 samples)."""
    import torch
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    from finn.builder.build_dataflow_steps import step_create_dataflow_partition, step_specialize_layers
    from qonnx.custom_op.registry import getCustomOp

    from finn_s2n2.finn.build import prepare_partition_cppsim, step_convert_to_lif, step_s2n2_tidy
    from finn_s2n2.finn.transformation import FixTickBatchShapes
    from finn_s2n2.snn.export import spikes_to_frames, to_qonnx
    from finn_s2n2.snn.models import spiking_convnet

    torch.manual_seed(4)
    net = spiking_convnet((1, 8, 8), [(3, 3, 1, 2)], [5], quantized=True, weight_bit_width=4, decay_shift=2)
    x = (torch.rand((3, 6, 1, 8, 8), generator=torch.Generator().manual_seed(4)) < 0.5).float()
    net.calibrate(x, target=0.3)
    with torch.no_grad():
        ref = net(x).numpy()
    cfg = DataflowBuildConfig(
        output_dir=str(tmp_path), synth_clk_period_ns=10.0, fpga_part="xc7z020clg400-1", generate_outputs=[]
    )
    model = step_convert_to_lif(step_s2n2_tidy(to_qonnx(net, x[:2]), cfg), cfg)
    child = step_specialize_layers(step_create_dataflow_partition(model, cfg), cfg)
    assert {"ConvolutionInputGenerator_rtl", "LIF_MVAU_hls", "SpikeMaxPool_hls"} <= set(_ops(child))
    child = prepare_partition_cppsim(child.transform(FixTickBatchShapes()))
    parent = ModelWrapper(str(tmp_path / "intermediate_models" / "dataflow_parent.onnx"))
    for samples in (2, 3):
        if samples == 3:  # whole samples on axis 0: the same C++ partition, annotations for 3 samples
            for m in (parent, child):
                name = m.graph.input[0].name
                m.set_tensor_shape(name, [3 * 6] + list(m.get_tensor_shape(name))[1:])
            parent, child = parent.transform(FixTickBatchShapes()), child.transform(FixTickBatchShapes())
        child.save(str(tmp_path / f"child_{samples}.onnx"))
        sdp = getCustomOp(parent.get_nodes_by_op_type("StreamingDataflowPartition")[0])
        sdp.set_nodeattr("model", str(tmp_path / f"child_{samples}.onnx"))
        frames = spikes_to_frames(x[:samples])
        y = execute_onnx(parent, {parent.graph.input[0].name: frames})[parent.graph.output[0].name]
        assert ref[:samples].sum() > 0
        np.testing.assert_array_equal(y.reshape(ref[:samples].shape), ref[:samples])


def _ops(model):
    return [n.op_type for n in model.graph.node]


@pytest.mark.parametrize("samples", [2, 3])
def test_plain_execute_onnx_equals_quantized_torch(samples):
    """The front end's quantized torch MLP -> QONNX -> converted FINN graph: plain qonnx execute_onnx on
    samples x ticks frames == the torch model's spike counts (batch 2 and 3)."""
    import torch

    from finn_s2n2.finn.transformation import convert_to_lif
    from finn_s2n2.snn.export import spikes_to_frames, to_qonnx
    from finn_s2n2.snn.models import spiking_mlp

    torch.manual_seed(samples)
    net = spiking_mlp(
        [12, 9, 4], quantized=True, weight_bit_width=4, decay_shift=2, acc_bits=16, threshold=0.25
    )
    x = (torch.rand((samples, 8, 12), generator=torch.Generator().manual_seed(samples)) < 0.7).float()
    with torch.no_grad():
        ref = net(x).numpy()
    conv = convert_to_lif(to_qonnx(net, x))
    name = conv.graph.input[0].name
    y = execute_onnx(conv, {name: spikes_to_frames(x).astype(np.float32)})[conv.graph.output[0].name]
    assert ref.shape == (samples, 4) and ref.sum() > 0
    np.testing.assert_array_equal(y.reshape(ref.shape), ref)


@pytest.mark.slow
def test_finn_verify_steps_run_whole_samples(tmp_path):
    """FINN's own verification through build_dataflow_cfg: with verify_steps set the S2N2 graph input is
    sample-major (1, numTicks, ...), so each axis-0 entry of verify_input_npy is a whole sample.  Checked at
    initial_python (step_s2n2_tidy), streamlined_python (step_convert_to_lif) and folded_hls_cppsim (every
    HLS node in C++).  Sample 1's expected output is deliberately off by one: FINN must report SUCCESS for
    sample 0 and FAIL for sample 1, and the saved output of sample 1 must be the true counts."""
    from hwreshape.compat import prepare_finn

    prepare_finn()
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import (
        DataflowBuildConfig,
        DataflowOutputType,
        VerificationStepType,
    )

    from finn_s2n2.finn.build import S2N2_ESTIMATE_STEPS

    x = (np.random.default_rng(11).random((2 * TICKS, 1, 8, 8)) < 0.4).astype(np.float32)
    counts = execute_onnx(conv_pool_dense_net(samples=2), {"inp": x})["outp"]
    assert counts.shape == (2, 5) and counts.sum() > 0
    expected = counts.copy()
    expected[1, 0] += 1
    np.save(tmp_path / "in.npy", x.reshape(2, TICKS, 1, 8, 8))
    np.save(tmp_path / "out.npy", expected)
    conv_pool_dense_net(samples=1).save(str(tmp_path / "net.onnx"))
    checked = ["initial_python", "streamlined_python", "folded_hls_cppsim"]
    cfg = DataflowBuildConfig(
        output_dir=str(tmp_path / "out"),
        synth_clk_period_ns=10.0,
        fpga_part="xc7z020clg400-1",
        steps=list(S2N2_ESTIMATE_STEPS),
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        verify_steps=[VerificationStepType(v) for v in checked],
        verify_input_npy=str(tmp_path / "in.npy"),
        verify_expected_output_npy=str(tmp_path / "out.npy"),
        verbose=False,
        enable_build_pdb_debug=False,
    )
    assert build_dataflow_cfg(str(tmp_path / "net.onnx"), cfg) == 0
    vdir = tmp_path / "out" / "verification_output"
    for step in checked:
        assert (vdir / f"verify_{step}_0_SUCCESS.npy").is_file(), sorted(p.name for p in vdir.iterdir())
        bad = vdir / f"verify_{step}_1_FAIL.npy"
        assert bad.is_file(), sorted(p.name for p in vdir.iterdir())
        np.testing.assert_array_equal(np.load(bad).reshape(-1), counts[1])


@pytest.mark.slow
def test_finn_cppsim_verification_with_label_select(tmp_path):
    """FINN's folded_hls_cppsim verification of a partition that ends in FINN's own LabelSelect_hls (compiled
    with g++ against finn-hlslib and the open headers): both samples' class indices verified as SUCCESS."""
    from hwreshape.compat import finn_hlslib_dir, prepare_finn

    try:
        finn_hlslib_dir()
    except FileNotFoundError as e:
        pytest.skip(f"FINN's LabelSelect_hls needs finn-hlslib: {e}")
    prepare_finn()
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import (
        DataflowBuildConfig,
        DataflowOutputType,
        VerificationStepType,
    )

    from finn_s2n2.finn.build import S2N2_ESTIMATE_STEPS, make_step_s2n2_label_select

    x = (np.random.default_rng(7).random((2 * TICKS, 1, 8, 8)) < 0.4).astype(np.float32)
    counts = execute_onnx(conv_pool_dense_net(samples=2), {"inp": x})["outp"]
    labels = np.argmax(counts, axis=1).reshape(2, 1)
    assert len(set(labels.ravel())) == 2
    np.save(tmp_path / "in.npy", x.reshape(2, TICKS, 1, 8, 8))
    np.save(tmp_path / "out.npy", labels.astype(np.float32))
    conv_pool_dense_net(samples=1).save(str(tmp_path / "net.onnx"))
    steps = list(S2N2_ESTIMATE_STEPS)
    steps.insert(2, make_step_s2n2_label_select(1))
    cfg = DataflowBuildConfig(
        output_dir=str(tmp_path / "out"),
        synth_clk_period_ns=10.0,
        fpga_part="xc7z020clg400-1",
        steps=steps,
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        verify_steps=[VerificationStepType.FOLDED_HLS_CPPSIM],
        verify_input_npy=str(tmp_path / "in.npy"),
        verify_expected_output_npy=str(tmp_path / "out.npy"),
        verbose=False,
        enable_build_pdb_debug=False,
    )
    assert build_dataflow_cfg(str(tmp_path / "net.onnx"), cfg) == 0
    vdir = tmp_path / "out" / "verification_output"
    assert sorted(p.name for p in vdir.glob("verify_*.npy")) == [
        "verify_folded_hls_cppsim_0_SUCCESS.npy",
        "verify_folded_hls_cppsim_1_SUCCESS.npy",
    ]
    child = ModelWrapper(str(tmp_path / "out" / "intermediate_models" / "step_s2n2_minimize_bit_width.onnx"))
    assert "LabelSelect_hls" in _ops(child)
