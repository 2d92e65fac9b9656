"""Benchmark: LIF_MVAU python execution per tick vs FINN's own MVAU python execution, and cppsim compile time.

Run: ``.venv/bin/python benchmarks/lif_mvau.py [--quick]``.  Both ops run through qonnx' ``execute_onnx`` on
the same binary input (T frames x P positions x MW; one frame = one tick) with the same integer weights.
Per tick = CPU time (``time.process_time``, single thread) of one whole run / T; the three ops are timed in
alternating order (LIF, MVAU+thr, MVAU, then reversed, ...) and the median and spread (min-max) of the runs
are printed, with the machine load (``os.getloadavg``).  MVAU is measured with thresholds (the MVTU of
Khodamoradi 2021 Fig 2.7 upper: matrix-vector product + 1-bit activation) and without activation
(``noActivation=1``, the bare matrix product).  Target: LIF_MVAU <= 2x MVAU per tick (median ratio).

Second table: binary max pooling per tick, our ``SpikeMaxPool`` (one node) vs FINN's depthwise
``ConvolutionInputGenerator`` + ``Pool`` (the pair ``pool_impl="finn"`` emits), both converted from the same
QONNX ``MaxPool`` graph and executed by plain ``execute_onnx`` on the same frames (same timing method).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _mvau_model(w, ticks, positions, with_thresholds):
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    mw, mh = w.shape
    vecs = [ticks] + ([1, positions] if positions > 1 else [])  # MVAU thresholds need 2-D or 4-D
    ins = ["inp", "weights"] + (["thresh"] if with_thresholds else [])
    node = helper.make_node(
        "MVAU",
        ins,
        ["outp"],
        domain="finn.custom_op.fpgadataflow",
        backend="fpgadataflow",
        name="MVAU_0",
        MW=mw,
        MH=mh,
        SIMD=1,
        PE=1,
        inputDataType="BINARY",
        weightDataType="INT4",
        outputDataType="BINARY" if with_thresholds else "INT32",
        ActVal=0,
        binaryXnorMode=0,
        noActivation=0 if with_thresholds else 1,
        numInputVectors=vecs,
        accDataType="INT32",
    )
    graph = helper.make_graph(
        [node],
        "mvau",
        [helper.make_tensor_value_info("inp", TensorProto.FLOAT, vecs + [mw])],
        [helper.make_tensor_value_info("outp", TensorProto.FLOAT, vecs + [mh])],
    )
    model = ModelWrapper(qonnx_make_model(graph))
    model.set_tensor_datatype("inp", DataType["BINARY"])
    model.set_tensor_datatype("weights", DataType["INT4"])
    model.set_initializer("weights", w.astype(np.float32))
    # annotate the output as FINN's InferDataTypes would (qonnx sanitizes annotated integer tensors)
    model.set_tensor_datatype("outp", DataType["BINARY"] if with_thresholds else DataType["INT32"])
    if with_thresholds:
        model.set_initializer("thresh", np.full((mh, 1), 4.0, dtype=np.float32))
        model.set_tensor_datatype("thresh", DataType["INT32"])
    return model


def _lif_model(w, ticks, positions):
    from finn_s2n2 import make_lif_mvau_model

    return make_lif_mvau_model(
        w, decay_shift=3, threshold=4, num_ticks=ticks, weight_dtype="INT4", num_positions=positions
    )


def _pool_models(frames, c, h, w, k):
    """The same binary MaxPool graph converted with our SpikeMaxPool and with FINN's SWU + Pool."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.basic import qonnx_make_model

    from finn_s2n2.finn.transformation import convert_to_lif

    node = helper.make_node("MaxPool", ["inp"], ["outp"], kernel_shape=[k, k], strides=[k, k], name="pool")
    graph = helper.make_graph(
        [node],
        "pool",
        [helper.make_tensor_value_info("inp", TensorProto.FLOAT, [frames, c, h, w])],
        [helper.make_tensor_value_info("outp", TensorProto.FLOAT, [frames, c, h // k, w // k])],
    )
    model = ModelWrapper(qonnx_make_model(graph)).transform(InferShapes())
    model.set_tensor_datatype("inp", DataType["BINARY"])
    return convert_to_lif(model, pool_impl="s2n2"), convert_to_lif(model, pool_impl="finn")


def _pool_table(reps, quick):
    from qonnx.core.onnx_exec import execute_onnx

    shapes = [(100, 4, 8, 8, 2), (50, 16, 26, 26, 2)] + ([] if quick else [(50, 32, 9, 9, 2)])
    rng = np.random.default_rng(1)
    print(
        f"{'frames':>7}{'C':>4}{'H':>4}{'W':>4}{'k':>3}{'SpikeMaxPool us/tick':>22}{'SWU+Pool us/tick':>18}"
        f"{'ratio (min-max)':>20}"
    )
    for frames, c, h, w, k in shapes:
        ours, finn = _pool_models(frames, c, h, w, k)
        x = (rng.random((frames, c, h, w)) < 0.3).astype(np.float32)
        y0, y1 = execute_onnx(ours, {"inp": x})["outp"], execute_onnx(finn, {"inp": x})["outp"]
        if not np.array_equal(y0, y1):
            raise RuntimeError("SpikeMaxPool and FINN's SWU + Pool disagree")
        t_ours, t_finn = _time_alternating(
            [
                lambda m=ours, v=x: execute_onnx(m, {"inp": v}),
                lambda m=finn, v=x: execute_onnx(m, {"inp": v}),
            ],
            reps,
        )
        ratio = t_ours / t_finn
        print(
            f"{frames:>7}{c:>4}{h:>4}{w:>4}{k:>3}{np.median(t_ours) / frames * 1e6:>22.1f}"
            f"{np.median(t_finn) / frames * 1e6:>18.1f}{np.median(ratio):>10.2f} ({ratio.min():.2f}-{ratio.max():.2f})"
        )


def _time_alternating(fns, reps):
    """CPU seconds of every ``fns[i]()`` over ``reps`` rounds, the order reversed every other round."""
    for fn in fns:
        fn()  # warm-up
    ts = [[] for _ in fns]
    for r in range(reps):
        order = list(range(len(fns)))
        if r % 2:
            order.reverse()
        for i in order:
            t0 = time.process_time()
            fns[i]()
            ts[i].append(time.process_time() - t0)
    return [np.asarray(t) for t in ts]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer shapes and repetitions")
    args = ap.parse_args(argv)
    from hwreshape.compat import prepare_finn

    prepare_finn()
    import torch

    torch.set_num_threads(1)
    from qonnx.core.onnx_exec import execute_onnx

    import finn_s2n2  # noqa: F401

    shapes = [(64, 64, 100, 1), (256, 128, 100, 1), (400, 8, 16, 144)]
    if not args.quick:
        shapes += [(1152, 128, 128, 1), (25, 16, 32, 256)]
    reps = 5 if args.quick else 15
    rng = np.random.default_rng(0)
    import os

    print(f"load average before: {os.getloadavg()}")
    print(
        f"{'MW':>6}{'MH':>6}{'ticks':>7}{'pos':>6}{'LIF_MVAU us/tick':>18}{'MVAU+thr us/tick':>18}"
        f"{'MVAU us/tick':>14}{'ratio vs +thr (min-max)':>25}{'ratio vs bare':>15}"
    )
    worst = 0.0
    for mw, mh, ticks, pos in shapes:
        w = rng.integers(-8, 8, size=(mw, mh))
        x = (rng.random([ticks] + ([pos] if pos > 1 else []) + [mw]) < 0.2).astype(np.float32)
        xm = x.reshape([ticks] + ([1, pos] if pos > 1 else []) + [mw])
        lif = _lif_model(w, ticks, pos)
        mv_t = _mvau_model(w, ticks, pos, True)
        mv_b = _mvau_model(w, ticks, pos, False)
        t_lif, t_thr, t_bare = _time_alternating(
            [
                lambda m=lif, v=x: execute_onnx(m, {"inp": v}),
                lambda m=mv_t, v=xm: execute_onnx(m, {"inp": v}),
                lambda m=mv_b, v=xm: execute_onnx(m, {"inp": v}),
            ],
            reps,
        )
        ratio = t_lif / t_thr
        med = float(np.median(ratio))
        worst = max(worst, med)
        print(
            f"{mw:>6}{mh:>6}{ticks:>7}{pos:>6}{np.median(t_lif) / ticks * 1e6:>18.1f}"
            f"{np.median(t_thr) / ticks * 1e6:>18.1f}{np.median(t_bare) / ticks * 1e6:>14.1f}"
            f"{med:>11.2f} ({ratio.min():.2f}-{ratio.max():.2f})"
            f"{float(np.median(t_lif / t_bare)):>15.2f}"
        )
    print(f"worst median LIF_MVAU / MVAU(+thresholds) per tick: {worst:.2f}x (target <= 2x)")
    print(f"load average after: {os.getloadavg()}")
    _pool_table(reps, args.quick)
    print(f"load average after pooling: {os.getloadavg()}")

    # cppsim compile time of one LIF_MVAU_hls node (own header, g++ + hls4ml ap_types)
    from finn.transformation.fpgadataflow.compile_cppsim import CompileCppSim
    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim

    from finn_s2n2 import make_lif_mvau_model

    w = rng.integers(-8, 8, size=(64, 32))
    node_model = make_lif_mvau_model(
        w, decay_shift=3, threshold=4, num_ticks=16, pe=4, simd=8, specialize=True
    )
    with tempfile.TemporaryDirectory():
        m = node_model.transform(PrepareCppSim())
        t0 = time.perf_counter()
        m.transform(CompileCppSim())
        t_compile = time.perf_counter() - t0
    print(f"cppsim compile (LIF_MVAU_hls MW=64 MH=32 PE=4 SIMD=8, g++ -O1): {t_compile:.1f} s")
    return worst


if __name__ == "__main__":
    main()
