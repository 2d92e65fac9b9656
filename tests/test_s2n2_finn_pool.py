"""``SpikeMaxPool`` / ``SpikeMaxPool_hls``: binary max pooling of spikes as a FINN HW op (Khodamoradi 2021,
§2.2.3).  Python execution == torch's max_pool2d; the own C++ (cppsim, g++ + open ap_types) == python
execution on randomized shapes, PE folds and frame counts (hypothesis); bad input is named."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper
from qonnx.core.datatype import DataType
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.util.basic import qonnx_make_model

import finn_s2n2  # noqa: F401  (registration)


def pool_model(frames, h, w, c, kh, kw, pe=1, op="SpikeMaxPool_hls"):
    from finn_s2n2.finn.custom_op.registration import register_finn

    register_finn()
    domain = "finn.custom_op.fpgadataflow" + (".hls" if op.endswith("_hls") else "")
    node = helper.make_node(
        op,
        ["x"],
        ["y"],
        domain=domain,
        backend="fpgadataflow",
        name="pool",
        NumChannels=c,
        ImgDim=[h, w],
        PoolDim=[kh, kw],
        PE=pe,
    )
    graph = helper.make_graph(
        [node],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [frames, h, w, c])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [frames, h // kh, w // kw, c])],
    )
    model = ModelWrapper(qonnx_make_model(graph))
    model.set_tensor_datatype("x", DataType["BINARY"])
    return model


def test_python_exec_equals_torch_max_pool_and_estimates():
    import torch
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.custom_op.registry import getCustomOp

    x = (np.random.default_rng(0).random((4, 7, 9, 3)) < 0.3).astype(np.float32)
    model = pool_model(4, 7, 9, 3, 2, 3, pe=3)
    y = execute_onnx(model, {"x": x})["y"]
    ref = torch.nn.functional.max_pool2d(torch.from_numpy(x).permute(0, 3, 1, 2), (2, 3)).permute(0, 2, 3, 1)
    np.testing.assert_array_equal(y, ref.numpy())
    inst = getCustomOp(model.graph.node[0])
    assert inst.get_exp_cycles() == 7 * 9 * 1  # one pixel (3 channels / PE 3) per cycle
    assert inst.get_folded_input_shape() == (1, 7, 9, 1, 3) and inst.get_folded_output_shape() == (
        1,
        3,
        3,
        1,
        3,
    )
    assert inst.calc_mem() == 3 and inst.bram_estimation() == 0 and inst.dsp_estimation() == 0


def test_bad_input_is_named():
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.custom_op.registry import getCustomOp

    with pytest.raises(
        ValueError, match=r"SpikeMaxPool node 'pool': attribute PE=2 must divide NumChannels=3"
    ):
        getCustomOp(pool_model(1, 4, 4, 3, 2, 2, pe=2).graph.node[0]).get_exp_cycles()
    with pytest.raises(ValueError, match=r"SpikeMaxPool node 'pool': attribute PoolDim"):
        getCustomOp(pool_model(1, 4, 4, 3, 5, 2).graph.node[0]).get_exp_cycles()
    x = np.full((1, 4, 4, 3), 2.0, dtype=np.float32)
    with pytest.raises(ValueError, match=r"SpikeMaxPool node 'pool': input must be binary spikes"):
        execute_onnx(pool_model(1, 4, 4, 3, 2, 2), {"x": x})


@settings(max_examples=4, deadline=None)
@given(
    h=st.integers(2, 7),
    w=st.integers(2, 7),
    c=st.sampled_from([1, 2, 4, 6]),
    kh=st.integers(1, 2),
    kw=st.integers(1, 3),
    pe_pick=st.integers(0, 3),
    frames=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_cppsim_equals_python_exec(tmp_path_factory, h, w, c, kh, kw, pe_pick, frames, seed):
    """Each drawn configuration is compiled as its own template instance and run frame by frame."""
    from qonnx.custom_op.registry import getCustomOp

    kw = min(kw, w)
    pe = [d for d in range(1, c + 1) if c % d == 0][pe_pick % len([d for d in range(1, c + 1) if c % d == 0])]
    model = pool_model(frames, h, w, c, kh, kw, pe=pe)
    inst = getCustomOp(model.graph.node[0])
    x = (np.random.default_rng(seed).random((frames, h, w, c)) < 0.3).astype(np.float32)
    ctx = {"x": x}
    inst.execute_node(ctx, model.graph)
    y_py = ctx["y"]
    inst.set_nodeattr("code_gen_dir_cppsim", str(tmp_path_factory.mktemp("pool")))
    inst.code_generation_cppsim(model)
    inst.compile_singlenode_code()
    inst.set_nodeattr("exec_mode", "cppsim")
    ctx = {"x": x}
    inst.execute_node(ctx, model.graph)
    np.testing.assert_array_equal(ctx["y"], y_py)
