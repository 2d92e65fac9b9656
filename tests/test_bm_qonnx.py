"""QONNX side of the BM ops: custom ops in the ``bm_ops`` domain, ``to_qonnx`` export, execution == torch."""

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.custom_op.registry import getCustomOp, is_custom_op

from bm_ops.functional import bm_conv2d
from bm_ops.qonnx.custom_op import DOMAIN, BMConv, BMMatMul
from bm_ops.qonnx.export import execute_qonnx, to_qonnx
from bm_ops.torch import BMConv2d, BMLinear


def test_ops_registered_in_bm_ops_domain():
    assert DOMAIN == "bm_ops"
    assert is_custom_op("bm_ops", "BMConv") and is_custom_op("bm_ops", "BMMatMul")
    node = helper.make_node("BMConv", ["x", "vp", "vn"], ["y"], domain="bm_ops", kernel_shape=[3, 3])
    assert isinstance(getCustomOp(node), BMConv)
    node = helper.make_node("BMMatMul", ["x", "vp", "vn"], ["y"], domain="bm_ops")
    assert isinstance(getCustomOp(node), BMMatMul)


def _conv_graph(vp, vn, bias, x_shape, strides, pads, **extra):
    inits = [
        numpy_helper.from_array(vp.astype(np.float32), "vp"),
        numpy_helper.from_array(vn.astype(np.float32), "vn"),
    ]
    ins = ["x", "vp", "vn"]
    if bias is not None:
        inits.append(numpy_helper.from_array(bias.astype(np.float32), "b"))
        ins.append("b")
    node = helper.make_node(
        "BMConv",
        ins,
        ["y"],
        domain="bm_ops",
        kernel_shape=list(vp.shape[2:]),
        strides=strides,
        pads=pads,
        **extra,
    )
    g = helper.make_graph(
        [node],
        "bm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=inits,
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("bm_ops", 1)])
    return ModelWrapper(m)


def test_handmade_graph_shape_inference_and_asymmetric_pads():
    rng = np.random.default_rng(0)
    from bm_ops.functional import to_log_weights

    vp, vn = to_log_weights(rng.normal(size=(3, 2, 3, 2)))
    bias = rng.normal(size=3).astype(np.float32)
    mw = _conv_graph(vp, vn, bias, (1, 2, 6, 5), [2, 1], [1, 0, 0, 1])
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    mw = mw.transform(InferShapes()).transform(InferDataTypes())
    assert mw.get_tensor_shape("y") == [1, 3, 3, 5]
    x = rng.normal(size=(1, 2, 6, 5)).astype(np.float32)
    y = execute_qonnx(mw, x)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 0), (0, 1)))
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # the graph stores float32 initializers
    ref = bm_conv2d(xp, f32(vp), f32(vn), f32(bias), (2, 1), 0)
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-6)


def test_bad_attributes_rejected():
    vp = np.zeros((1, 1, 3, 3))
    for extra, msg in (({"group": 2}, "group=2"), ({"dilations": [2, 2]}, "dilations")):
        mw = _conv_graph(vp, vp, None, (1, 1, 5, 5), [1, 1], [0, 0, 0, 0], **extra)
        with pytest.raises(ValueError, match=msg):
            execute_qonnx(mw, np.ones((1, 1, 5, 5), np.float32))


class _Net(torch.nn.Module):
    def __init__(self, c, f, k, stride, pad, hw, quant):
        super().__init__()
        import brevitas.nn as qnn

        self.q = qnn.QuantIdentity(bit_width=6, return_quant_tensor=False) if quant else torch.nn.Identity()
        self.conv = BMConv2d(c, f, k, stride=stride, padding=pad)
        oh = (hw[0] + 2 * pad - k) // stride + 1
        ow = (hw[1] + 2 * pad - k) // stride + 1
        self.fc = BMLinear(f * oh * ow, 3)

    def forward(self, x):
        return self.fc(torch.flatten(torch.relu(self.conv(self.q(x))), 1))


@settings(max_examples=5)
@given(
    c=st.integers(1, 3),
    f=st.integers(1, 3),
    k=st.integers(1, 3),
    stride=st.integers(1, 2),
    pad=st.integers(0, 1),
    h=st.integers(3, 7),
    w=st.integers(3, 7),
    quant=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_qonnx_exec_equals_torch(tmp_path_factory, c, f, k, stride, pad, h, w, quant, seed):
    torch.manual_seed(seed)
    net = _Net(c, f, k, stride, pad, (h, w), quant).eval()
    with torch.no_grad():  # some absent taps (-inf), as after conversion
        net.conv.v_neg[:, :, 0, 0] = -float("inf")
    x = torch.randn(2, c, h, w)
    path = tmp_path_factory.mktemp("q") / "bm.onnx"
    mw = to_qonnx(net, x, path)
    ops = [(n.op_type, n.domain) for n in mw.graph.node]
    assert ("BMConv", "bm_ops") in ops and ("BMMatMul", "bm_ops") in ops
    assert (("Quant", "qonnx.custom_op.general") in ops) == quant
    # the saved file reloads and executes the same
    y = execute_qonnx(str(path), x.numpy())
    with torch.no_grad():
        yt = net(x).numpy()
    np.testing.assert_allclose(y, yt, rtol=1e-4, atol=1e-5)
    assert onnx.load(str(path)).graph.node[-1].domain == "bm_ops"


def test_onnxruntime_cannot_run_it_but_qonnx_can(tmp_path):
    net = _Net(1, 2, 3, 1, 1, (5, 5), False).eval()
    x = torch.randn(1, 1, 5, 5)
    mw = to_qonnx(net, x, tmp_path / "m.onnx")
    import onnxruntime as ort

    with pytest.raises(Exception, match="bm_ops:BMConv|BMConv.*not a registered"):
        ort.InferenceSession(str(tmp_path / "m.onnx"))
    assert execute_qonnx(mw, x.numpy()).shape == (1, 3)


def test_export_bad_input():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        to_qonnx("not a model", torch.zeros(1), "/tmp/x.onnx")
    net = _Net(1, 2, 3, 1, 1, (5, 5), False)
    with torch.no_grad():
        net.conv.v_pos[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'conv' v_pos contains NaN"):
        to_qonnx(net, torch.zeros(1, 1, 5, 5), "/tmp/x.onnx")
    with pytest.raises(TypeError, match="example_input"):
        to_qonnx(_Net(1, 2, 3, 1, 1, (5, 5), False), np.zeros((1, 1, 5, 5)), "/tmp/x.onnx")
