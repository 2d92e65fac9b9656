"""FINN build steps for S2N2 networks and example network builders (S2N2_cv, S2N2_rf1).

Seed: chapter 2 — Table 2.7 (S2N2_cv: 28x28-16c7-24c7-32c7-10, input sizes per layer from Table 2.8),
Table 2.2 (S2N2_rf1: 16x16-16c5-8c5-128-11, input sizes per layer from Table 2.3), §2.2.3 (MVTU + SWU +
binary pooling unit).

Use the steps in an ordinary FINN build::

    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType
    from finn_s2n2.finn.build import S2N2_ESTIMATE_STEPS
    cfg = DataflowBuildConfig(output_dir="out", synth_clk_period_ns=10.0, fpga_part="xc7z020clg400-1",
                              steps=S2N2_ESTIMATE_STEPS, generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS])
    build_dataflow_cfg("model.onnx", cfg)

or mix :func:`step_s2n2_tidy` and :func:`step_convert_to_lif` with FINN's own step names.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from finn_s2n2.finn.custom_op.registration import register_finn


def step_s2n2_tidy(model, cfg):
    """Shape and datatype inference plus unique node names on the front-end's QONNX graph."""
    register_finn()
    from qonnx.transformation.general import GiveUniqueNodeNames
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    return model.transform(InferShapes()).transform(InferDataTypes()).transform(GiveUniqueNodeNames())


def step_convert_to_lif(model, cfg):
    """``MatMul``/``Conv`` + ``LIF`` -> ``LIF_MVAU`` (+ SWU/FMPadding), binary MaxPool -> SWU + Pool, delays
    pushed to the output (:func:`finn_s2n2.finn.transformation.convert_to_lif`)."""
    from qonnx.transformation.general import GiveUniqueNodeNames

    from finn_s2n2.finn.transformation import convert_to_lif

    return convert_to_lif(model).transform(GiveUniqueNodeNames())


def step_s2n2_report(model, cfg):
    """Write ``report/s2n2_lif_mvau.json``: per LIF_MVAU the BRAM split (weights / membrane / delay line),
    LUT, DSP and cycles per sample, and the per-sample cycles of every HW node (FINN's sliding-window and
    padding units count one frame = one tick, so they are multiplied by the frame count here)."""
    from qonnx.custom_op.registry import getCustomOp

    rows, cycles = {}, {}
    for node in model.graph.node:
        inst = getCustomOp(node)
        if not hasattr(inst, "get_exp_cycles"):
            continue
        c = int(inst.get_exp_cycles())
        if node.op_type.startswith(("ConvolutionInputGenerator", "FMPadding")):
            frames = int(model.get_tensor_shape(node.input[0])[0])
            c *= frames
        cycles[node.name] = c
        if node.op_type.startswith("LIF_MVAU"):
            rows[node.name] = dict(
                weight_bram18=inst.weight_bram_estimation(),
                membrane_bram18=inst.membrane_bram_estimation(),
                delay_bram18=inst.delay_bram_estimation(),
                bram18=inst.bram_estimation(),
                lut=inst.lut_estimation(),
                dsp=inst.dsp_estimation(),
                cycles_per_sample=c,
                numTicks=inst.get_nodeattr("numTicks"),
                MW=inst.get_nodeattr("MW"),
                MH=inst.get_nodeattr("MH"),
                PE=inst.get_nodeattr("PE"),
                SIMD=inst.get_nodeattr("SIMD"),
            )
    report_dir = Path(cfg.output_dir) / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "s2n2_lif_mvau.json").write_text(
        json.dumps(
            {
                "lif_mvau": rows,
                "cycles_per_sample": cycles,
                "max_cycles_per_sample": max(cycles.values(), default=0),
            },
            indent=2,
        )
    )
    return model


def lif_folding(model, target_cycles_per_tick: int):
    """Choose PE/SIMD of every ``LIF_MVAU`` so that one tick takes <= ``target_cycles_per_tick`` cycles.

    Cycles per tick of a node = positions x (MH/PE) x (MW/SIMD).  Like FINN's ``SetFolding`` for the MVAU:
    raise SIMD through the divisors of MW first, then PE through the divisors of MH; a node that cannot
    reach the target ends fully parallel (PE = MH, SIMD = MW).  Returns the model (attributes set in place).
    """
    from qonnx.custom_op.registry import getCustomOp

    def divisors(n):
        return [d for d in range(1, n + 1) if n % d == 0]

    if target_cycles_per_tick < 1:
        raise ValueError(f"target_cycles_per_tick must be >= 1, got {target_cycles_per_tick}")
    for node in model.graph.node:
        if not node.op_type.startswith("LIF_MVAU"):
            continue
        inst = getCustomOp(node)
        mw, mh = inst.get_nodeattr("MW"), inst.get_nodeattr("MH")
        npos = inst._layout()[4]
        simd, pe = 1, 1
        for simd in divisors(mw):
            if npos * mh * (mw // simd) <= target_cycles_per_tick:
                break
        for pe in divisors(mh):
            if npos * (mh // pe) * (mw // simd) <= target_cycles_per_tick:
                break
        inst.set_nodeattr("SIMD", simd)
        inst.set_nodeattr("PE", pe)
    return model


def make_step_lif_folding(target_cycles_per_tick: int):
    """A build step (``step(model, cfg)``) that applies :func:`lif_folding` with the given target."""

    def step_lif_folding(model, cfg):
        return lif_folding(model, target_cycles_per_tick)

    step_lif_folding.__name__ = f"step_lif_folding_{target_cycles_per_tick}"
    return step_lif_folding


#: steps for an estimate-only S2N2 build (no Vivado): tidy, convert, partition, specialise, fold, reports
S2N2_ESTIMATE_STEPS = [
    step_s2n2_tidy,
    step_convert_to_lif,
    "step_create_dataflow_partition",
    "step_specialize_layers",
    "step_apply_folding_config",
    "step_generate_estimate_reports",
    step_s2n2_report,
]


# ------------------------------------------------------------------------------------------ networks
def make_s2n2_network(
    input_chw,
    layers,
    *,
    num_ticks: int,
    num_samples: int = 1,
    decay_shift: int = 3,
    threshold: int = 8,
    acc_dtype: str = "INT16",
    weight_bits: int = 4,
    seed: int = 0,
    delays=None,
    last_output: str = "counts",
):
    """The front-end's QONNX pattern for a feed-forward S2N2 network (for tests, demos and builds).

    ``layers``: ``("conv", out_ch, kernel, pad)``, ``("pool", k)``, ``("dense", out)``; the last dense layer
    emits per-label counts.  Input ``(num_samples*num_ticks, C, H, W)`` BINARY (frames, ``tickAxis=0``).
    Weights are random ``INT<weight_bits>``.  ``delays``: optional list of ``(axonal, synaptic)`` per LIF layer.
    ``last_output="spikes"`` makes the last layer emit spikes instead of counts.
    """
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes
    from qonnx.util.basic import qonnx_make_model

    import finn_s2n2  # noqa: F401  (registers LIF)

    rng = np.random.default_rng(seed)
    frames = num_samples * num_ticks
    c, h, w = input_chw
    nodes, inits = [], {}
    cur, shape = "inp", [frames, c, h, w]
    lif_layers = [i for i, layer in enumerate(layers) if layer[0] in ("conv", "dense")]
    wlo, whi = -(1 << (weight_bits - 1)), (1 << (weight_bits - 1))
    for i, layer in enumerate(layers):
        kind = layer[0]
        if kind == "pool":
            k = layer[1]
            out = f"pool{i}"
            nodes.append(
                helper.make_node(
                    "MaxPool", [cur], [out], kernel_shape=[k, k], strides=[k, k], name=f"pool{i}"
                )
            )
            shape = [frames, shape[1], shape[2] // k, shape[3] // k]
            cur = out
            continue
        last = i == lif_layers[-1]
        if kind == "conv":
            _, cout, k, pad = layer
            wt = rng.integers(wlo, whi, size=(cout, shape[1], k, k)).astype(np.float32)
            inits[f"w{i}"] = wt
            nodes.append(
                helper.make_node(
                    "Conv",
                    [cur, f"w{i}"],
                    [f"cur{i}"],
                    kernel_shape=[k, k],
                    pads=[pad] * 4,
                    strides=[1, 1],
                    name=f"conv{i}",
                )
            )
            shape = [frames, cout, shape[2] + 2 * pad - k + 1, shape[3] + 2 * pad - k + 1]
        elif kind == "dense":
            _, out_f = layer
            if len(shape) == 4:
                nodes.append(helper.make_node("Flatten", [cur], [f"flat{i}"], axis=1, name=f"flatten{i}"))
                cur = f"flat{i}"
                shape = [frames, int(np.prod(shape[1:]))]
            wt = rng.integers(wlo, whi, size=(shape[1], out_f)).astype(np.float32)
            inits[f"w{i}"] = wt
            nodes.append(helper.make_node("MatMul", [cur, f"w{i}"], [f"cur{i}"], name=f"matmul{i}"))
            shape = [frames, out_f]
        else:
            raise ValueError(f"layer {i}: unknown kind {kind!r} (conv, pool, dense)")
        ax, syn = delays[lif_layers.index(i)] if delays else (0, 0)
        out = "outp" if last else f"spk{i}"
        nodes.append(
            helper.make_node(
                "LIF",
                [f"cur{i}"],
                [out],
                domain="finn_s2n2",
                name=f"lif{i}",
                decay_shift=decay_shift,
                threshold=threshold,
                numTicks=num_ticks,
                accDataType=acc_dtype,
                outputMode=last_output if last else "spikes",
                axonalDelay=ax,
                synapticDelay=syn,
                tickAxis=0,
            )
        )
        cur = out
    if cur != "outp":
        raise ValueError("the last layer must be conv or dense (it emits the per-label counts)")
    inp = helper.make_tensor_value_info("inp", TensorProto.FLOAT, [frames, c, h, w])
    outp = helper.make_tensor_value_info("outp", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "s2n2", [inp], [outp])
    model = ModelWrapper(qonnx_make_model(graph, producer_name="finn_s2n2"))
    for k, v in inits.items():
        model.set_initializer(k, v)
        model.set_tensor_datatype(k, DataType[f"INT{weight_bits}"])
    model.set_tensor_datatype("inp", DataType["BINARY"])
    model = model.transform(InferShapes()).transform(InferDataTypes())
    return model


#: S2N2_cv (Table 2.7 / 2.8): 28x28 - 16c7 (pad 2) - pool 2 - 24c7 (pad 2) - 32c7 (pad 2) - pool 2 - 10
S2N2_CV_LAYERS = [
    ("conv", 16, 7, 2),
    ("pool", 2),
    ("conv", 24, 7, 2),
    ("conv", 32, 7, 2),
    ("pool", 2),
    ("dense", 10),
]
#: S2N2_rf1 (Table 2.2 / 2.3): 16x16 - 16c5 (pad 2) - 8c5 - 128 - 11
S2N2_RF1_LAYERS = [("conv", 16, 5, 2), ("conv", 8, 5, 0), ("dense", 128), ("dense", 11)]


def s2n2_cv_model(num_ticks: int = 500, **kw):
    """S2N2_cv shape on a 28x28 MNIST spike input, 500 ticks (seed §2.4)."""
    return make_s2n2_network((1, 28, 28), S2N2_CV_LAYERS, num_ticks=num_ticks, **kw)


def s2n2_rf1_model(num_ticks: int = 128, **kw):
    """S2N2_rf1 shape on a 16x16 quantised I/Q constellation, 128 ticks (seed §2.3)."""
    return make_s2n2_network((1, 16, 16), S2N2_RF1_LAYERS, num_ticks=num_ticks, **kw)


def build_estimates(
    model,
    output_dir,
    *,
    fpga_part: str = "xc7z020clg400-1",
    clk_ns: float = 10.0,
    folding_config_file: str | None = None,
    target_cycles_per_tick: int | None = None,
):
    """Run the estimate-only S2N2 build (no Vivado) and return the report folder.

    ``target_cycles_per_tick`` inserts :func:`make_step_lif_folding` before FINN's folding-config step.
    """
    register_finn()
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "s2n2_input.onnx"
    model.save(str(path))
    steps = list(S2N2_ESTIMATE_STEPS)
    if target_cycles_per_tick is not None:
        steps.insert(steps.index("step_apply_folding_config"), make_step_lif_folding(target_cycles_per_tick))
    cfg = DataflowBuildConfig(
        output_dir=str(out),
        synth_clk_period_ns=clk_ns,
        fpga_part=fpga_part,
        steps=steps,
        generate_outputs=[DataflowOutputType.ESTIMATE_REPORTS],
        folding_config_file=folding_config_file,
        enable_build_pdb_debug=False,
        verbose=False,
    )
    rc = build_dataflow_cfg(str(path), cfg)
    if rc != 0:
        log = out / "build_dataflow.log"
        raise RuntimeError(f"S2N2 estimate build failed (rc={rc}); see {log}")
    return out / "report"


# ------------------------------------------------------------------------------------------ execution
#: FINN ops whose python execution handles exactly one frame (their shape functions hard-code batch 1)
SINGLE_FRAME_OPS = ("ConvolutionInputGenerator", "FMPadding")


def execute_s2n2(model, input_dict, return_full_exec_context: bool = False):
    """Execute an S2N2 graph (before or after partitioning) whose frame axis carries N x numTicks frames.

    Nodes run through qonnx' ``execute_node`` (python exec or cppsim per node ``exec_mode``), except that
    FINN's single-frame ops (sliding window, padding) are executed once per frame: qonnx' ``Im2Col`` python
    execution — used by FINN's ``ConvolutionInputGenerator`` — interleaves the batch wrongly for more than
    one frame (its column matrix is ``(C*k*k, OH*OW*N)`` but is reshaped as ``(N, C, k, k, OH, OW)``), and
    ``FMPadding`` reshapes to its one-frame output shape.  ``StreamingDataflowPartition`` nodes are executed
    recursively with this function.
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_node
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.util.basic import get_preferred_qonnx_opset

    register_finn()
    ctx = model.make_empty_exec_context()
    for k, v in input_dict.items():
        ctx[k] = np.asarray(v)
    opsets = model.get_opset_imports()
    for node in model.graph.node:
        opset = opsets.get(node.domain, get_preferred_qonnx_opset())
        if node.op_type == "StreamingDataflowPartition":
            child = ModelWrapper(getCustomOp(node).get_nodeattr("model"))
            res = execute_s2n2(child, {child.graph.input[0].name: ctx[node.input[0]]})
            ctx[node.output[0]] = res[child.graph.output[0].name]
            continue
        if node.op_type.startswith(SINGLE_FRAME_OPS):
            x = ctx[node.input[0]]
            oshape = list(model.get_tensor_shape(node.output[0]))
            outs = []
            for f in range(x.shape[0]):
                sub = {
                    node.input[0]: x[f : f + 1],
                    node.output[0]: np.zeros([1] + oshape[1:], dtype=np.float32),
                }
                execute_node(node, sub, model.graph, opset)
                outs.append(sub[node.output[0]])
            ctx[node.output[0]] = np.concatenate(outs, axis=0)
            continue
        execute_node(node, ctx, model.graph, opset)
    if return_full_exec_context:
        return ctx
    return {o.name: ctx[o.name] for o in model.graph.output}
