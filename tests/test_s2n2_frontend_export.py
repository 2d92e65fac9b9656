"""S2N2 front-end export: torch (quantized) == qonnx exec of the exported graph == FINN python exec after
``InferLIFLayers`` == cppsim of the FINN dataflow partition, for random small SNNs and a trained reduced rf1."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from finn_s2n2.snn.export import execute_qonnx, spikes_to_frames, to_qonnx
from finn_s2n2.snn.models import spiking_convnet, spiking_mlp
from finn_s2n2.snn.nn import LIF, SpikingNet, TimeDistributed

torch.set_num_threads(1)


def _finn_python_exec(model, spikes):
    from finn_s2n2.finn.build import execute_s2n2
    from finn_s2n2.finn.transformation import convert_to_lif

    conv = convert_to_lif(model)
    assert not [n.op_type for n in conv.graph.node if n.op_type in ("Conv", "MatMul", "LIF", "MaxPool")]
    # no dangling nodes (e.g. the weight Quant nodes consumed into LIF_MVAU weights)
    outputs = {o.name for o in conv.graph.output}
    assert all(conv.find_consumers(n.output[0]) or n.output[0] in outputs for n in conv.graph.node)
    name = conv.graph.input[0].name
    return execute_s2n2(conv, {name: spikes_to_frames(spikes)})[conv.graph.output[0].name]


@st.composite
def _snn(draw):
    seed = draw(st.integers(0, 10_000))
    ticks = draw(st.integers(2, 6))
    n = draw(st.integers(1, 2))
    kw = dict(
        weight_bit_width=draw(st.integers(3, 8)),
        decay_shift=draw(st.integers(1, 4)),
        acc_bits=draw(st.sampled_from([12, 16, 20])),
        threshold=draw(st.sampled_from([0.5, 1.0, 2.0])),
    )
    if draw(st.booleans()):
        side = draw(st.integers(5, 8))
        convs = [
            (
                draw(st.integers(1, 3)),
                draw(st.sampled_from([1, 3])),
                draw(st.integers(0, 1)),
                draw(st.sampled_from([1, 2])),
            )
        ]
        dense = [draw(st.integers(2, 5))] * draw(st.integers(0, 1)) + [draw(st.integers(2, 4))]
        net = spiking_convnet((1, side, side), convs, dense, quantized=True, **kw)
        shape = (n, ticks, 1, side, side)
    else:
        sizes = [draw(st.integers(2, 10)) for _ in range(draw(st.integers(2, 4)))]
        net = spiking_mlp(sizes, quantized=True, **kw)
        shape = (n, ticks, sizes[0])
    rng = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    x = (torch.rand(shape, generator=rng) < draw(st.sampled_from([0.2, 0.5, 0.8]))).float()
    return net, x, draw(st.sampled_from([None, 0.1, 0.3]))


@settings(max_examples=8)
@given(case=_snn())
def test_torch_equals_qonnx_equals_finn_python_exec(case):
    net, x, target = case
    if target is not None:
        net.calibrate(x, target=target)
    with torch.no_grad():
        ref = net(x).numpy()
    try:
        model = to_qonnx(net, x)
    except ValueError as e:
        # a drawn threshold T can be unrepresentable: T / (weight scale) beyond the INT<acc_bits> membrane range
        # (e.g. T = 2 with a small weight scale at acc_bits = 12); the export must refuse it by name
        assert "outside the membrane range" in str(e) and "LIF.threshold/scale" in str(e), e
        assume(False)
    ops = [n.op_type for n in model.graph.node]
    assert "Quant" in ops and "LIF" in ops
    np.testing.assert_array_equal(execute_qonnx(model, x), ref)
    out = _finn_python_exec(model, x)
    np.testing.assert_array_equal(out.reshape(ref.shape), ref)


def test_export_is_the_quantized_model_and_saves(tmp_path):
    torch.manual_seed(1)
    net = spiking_mlp([6, 5, 3])
    x = (torch.rand(2, 8, 6) < 0.5).float()
    net.calibrate(x, target=0.3)
    m = to_qonnx(net, x, tmp_path / "mlp.onnx")
    assert (tmp_path / "mlp.onnx").is_file()
    net.set_quantized(True)
    np.testing.assert_array_equal(execute_qonnx(m, x), net(x).detach().numpy())
    lif = [n for n in m.graph.node if n.op_type == "LIF"][0]
    assert lif.domain == "finn_s2n2"
    with pytest.raises(ValueError, match="frames"):
        execute_qonnx(m, torch.zeros(3, 8, 6))


def test_export_errors_name_the_module():
    x = torch.zeros(1, 2, 4)
    with pytest.raises(ValueError, match="float weights"):
        to_qonnx(SpikingNet(TimeDistributed(torch.nn.Linear(4, 2, bias=False)), LIF(), input_rank=3), x)
    import brevitas.nn as qnn

    with pytest.raises(ValueError, match="bias"):
        to_qonnx(SpikingNet(TimeDistributed(qnn.QuantLinear(4, 2, bias=True)), LIF(), input_rank=3), x)
    with pytest.raises(ValueError, match="no S2N2/QONNX mapping"):
        to_qonnx(
            SpikingNet(
                TimeDistributed(qnn.QuantLinear(4, 2, bias=False)),
                TimeDistributed(torch.nn.ReLU()),
                LIF(),
                input_rank=3,
            ),
            x,
        )
    with pytest.raises(ValueError, match="binary"):
        to_qonnx(spiking_mlp([4, 2]), torch.full((1, 2, 4), 0.5))
    with pytest.raises(TypeError, match="SpikingNet"):
        to_qonnx(torch.nn.Linear(2, 2), x)


@pytest.mark.slow
def test_trained_rf1_to_finn_estimate_build_and_cppsim(tmp_path):
    """End to end: a (reduced) S2N2_rf1 trained on synthetic AMC → QONNX → FINN estimate build with the S2N2
    steps → cppsim of the dataflow partition on a few examples == torch predictions (quantized)."""
    from hwreshape.compat import prepare_finn

    prepare_finn()
    import finn.builder.build_dataflow  # noqa: F401  (import order: the builder before its config/steps)
    from finn.builder.build_dataflow_config import DataflowBuildConfig
    from finn.builder.build_dataflow_steps import step_create_dataflow_partition, step_specialize_layers
    from finn.transformation.fpgadataflow.compile_cppsim import CompileCppSim
    from finn.transformation.fpgadataflow.create_dataflow_partition import CreateDataflowPartition
    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim
    from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode
    from qonnx.custom_op.registry import getCustomOp

    from finn_s2n2.finn.build import build_estimates, execute_s2n2, step_convert_to_lif, step_s2n2_tidy
    from finn_s2n2.snn.encoding import iq_to_spikes
    from finn_s2n2.training.datasets import synthetic_amc
    from finn_s2n2.training.recipes import train_rf1

    ticks = 16
    data = synthetic_amc(3, snrs=[10, 18], classes=["BPSK", "QPSK", "AM-DSB"], length=ticks, seed=0)
    res = train_rf1(
        data=data, width=0.25, ticks=ticks, epochs=1, batch=8, bits=3, quantized=True, progress=False
    )
    net = res.net
    x = torch.from_numpy(iq_to_spikes(data[0][:2], 3))
    with torch.no_grad():
        ref = net(x).numpy()
    model = to_qonnx(net, x, tmp_path / "rf1.onnx")
    report = build_estimates(model, tmp_path / "build")
    assert (report / "estimate_layer_resources.json").is_file()
    cfg = DataflowBuildConfig(
        output_dir=str(tmp_path / "cpp"),
        synth_clk_period_ns=10.0,
        fpga_part="xc7z020clg400-1",
        generate_outputs=[],
    )
    m = step_convert_to_lif(step_s2n2_tidy(model, cfg), cfg)
    parent = m.transform(CreateDataflowPartition(partition_model_dir=str(tmp_path / "partitions")))
    child = step_specialize_layers(step_create_dataflow_partition(m, cfg), cfg)
    child = child.transform(SetExecMode("cppsim")).transform(PrepareCppSim()).transform(CompileCppSim())
    assert [n.op_type for n in child.graph.node].count("LIF_MVAU_hls") == 4
    child.save(str(tmp_path / "child.onnx"))
    getCustomOp(parent.get_nodes_by_op_type("StreamingDataflowPartition")[0]).set_nodeattr(
        "model", str(tmp_path / "child.onnx")
    )
    out = execute_s2n2(parent, {parent.graph.input[0].name: spikes_to_frames(x)})[parent.graph.output[0].name]
    assert ref.sum() > 0
    np.testing.assert_array_equal(out.reshape(ref.shape), ref)
    np.testing.assert_array_equal(out.reshape(ref.shape).argmax(1), ref.argmax(1))


def test_export_refuses_a_threshold_beyond_the_membrane_range():
    # T / (weight scale) must fit the INT<acc_bits> membrane: tiny weights (tiny scale) at 12 bits cannot hold T = 2
    torch.manual_seed(0)
    net = spiking_mlp([4, 3], quantized=True, acc_bits=12, threshold=2.0)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(1e-3)
    x = (torch.rand(1, 3, 4) < 0.5).float()
    with pytest.raises(
        ValueError, match=r"LIF\.threshold/scale=\d+ is outside the membrane range \[-2048, 2047\]"
    ):
        to_qonnx(net, x)
