"""A saved BM QONNX graph executes in a fresh interpreter through qonnx's domain lookup alone."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from bm_ops.qonnx.export import to_qonnx
from bm_ops.torch import BMConv2d

RUN = r"""
import sys, numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
m = ModelWrapper(sys.argv[1])
x = np.load(sys.argv[2])
out = execute_onnx(m, {m.graph.input[0].name: x})[m.graph.output[0].name]
assert "bm_ops.qonnx.custom_op" in sys.modules  # loaded by qonnx through the bm_ops package's __all__
np.save(sys.argv[3], out)
"""


def test_saved_graph_runs_without_importing_bm_ops(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(BMConv2d(2, 3, 3, padding=1)).eval()
    x = torch.rand(1, 2, 6, 6) - 0.3
    to_qonnx(model, x, tmp_path / "bm.onnx")
    np.save(tmp_path / "x.npy", x.numpy())
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            RUN,
            str(tmp_path / "bm.onnx"),
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected, rtol=1e-5, atol=1e-5)


def test_light_import_and_unknown_attribute():
    import bm_ops

    assert "BMConv" in bm_ops.__all__
    with pytest.raises(AttributeError, match="NoSuchOp"):
        bm_ops.__getattr__("NoSuchOp")
