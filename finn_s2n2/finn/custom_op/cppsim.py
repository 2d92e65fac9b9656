"""The cppsim plumbing shared by our HLS custom ops (``LIF_MVAU_hls``, ``SpikeMaxPool_hls``): compile the
generated ``execute_<op>.cpp`` with g++, and run it on a binary input file, reading its binary output."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from finn_s2n2.finn import hls


def compile_node(op) -> None:
    """Compile ``execute_<op_type>.cpp`` of ``op``'s cppsim folder; store the executable's path on the node."""
    path = Path(op.get_nodeattr("code_gen_dir_cppsim"))
    src = path / f"execute_{op.onnx_node.op_type}.cpp"
    if not src.is_file():
        raise RuntimeError(f"{op.who()}: no generated code in '{path}'; run PrepareCppSim first")
    op.set_nodeattr("executable_path", str(hls.compile_cpp([src], path / "node_model")))


def is_cppsim(op) -> bool:
    """True for ``exec_mode == "cppsim"``, False for python (``""``/``"python"``); anything else raises."""
    mode = op.get_nodeattr("exec_mode")
    if mode in ("", "python"):
        return False
    if mode != "cppsim":
        raise ValueError(
            f"{op.who()}: exec_mode {mode!r} unsupported (use '' for python or 'cppsim'; rtlsim needs Vivado)"
        )
    return True


def run_node(op, x: np.ndarray, out_dtype) -> np.ndarray:
    """Write ``x`` as uint8 to ``input_0.bin``, run the compiled node, return ``output_0.bin`` (flat)."""
    path = Path(op.get_nodeattr("code_gen_dir_cppsim"))
    exe = op.get_nodeattr("executable_path")
    if not exe or not Path(exe).is_file():
        raise RuntimeError(f"{op.who()}: no cppsim executable; run PrepareCppSim and CompileCppSim")
    x.astype(np.uint8).tofile(path / "input_0.bin")
    res = subprocess.run([exe], cwd=path, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"{op.who()}: cppsim failed ({res.returncode}): {res.stderr[-2000:]}")
    return np.fromfile(path / "output_0.bin", dtype=out_dtype)
