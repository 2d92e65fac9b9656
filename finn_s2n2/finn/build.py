"""FINN build steps for S2N2 networks and example network builders (S2N2_cv, S2N2_rf1).

Khodamoradi 2021, ch. 2 — Table 2.7 (S2N2_cv: 28x28-16c7-24c7-32c7-10, input sizes per layer from Table 2.8),
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

import copy
import json
from pathlib import Path

from hwreshape.extras import needs_finn  # noqa: F401  # isort: skip
import numpy as np

from finn_s2n2.finn.custom_op.registration import register_finn


def _verifies(cfg, step_type: str) -> bool:
    """Whether ``cfg.verify_steps`` asks for FINN's verification ``step_type`` (a VerificationStepType value)."""
    return any(str(getattr(v, "value", v)) == step_type for v in (cfg.verify_steps or []))


def step_s2n2_tidy(model, cfg):
    """Shape and datatype inference plus unique node names on the front-end's QONNX graph.

    With ``cfg.verify_steps`` set, the graph input becomes sample-major ``(1, numTicks, ...)``
    (:class:`~finn_s2n2.finn.transformation.SampleMajorInput`), so that FINN's verification — one axis-0 entry
    of ``verify_input_npy`` at a time — executes whole samples: give ``verify_input_npy`` as
    ``(N, numTicks, ...)`` and ``verify_expected_output_npy`` as the ``N`` per-sample outputs.  FINN's
    ``TIDY_UP_PYTHON`` ("initial_python") verification runs here."""
    register_finn()
    from qonnx.transformation.general import GiveUniqueNodeNames
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    model = model.transform(InferShapes()).transform(InferDataTypes()).transform(GiveUniqueNodeNames())
    if cfg.verify_steps:
        from finn_s2n2.finn.transformation import SampleMajorInput

        model = model.transform(SampleMajorInput()).transform(GiveUniqueNodeNames())
    if _verifies(cfg, "initial_python"):
        from finn.builder.build_dataflow_steps import verify_step

        verify_step(model, cfg, "initial_python", need_parent=False)
    return model


def step_convert_to_lif(model, cfg):
    """``MatMul``/``Conv`` + ``LIF`` -> ``LIF_MVAU`` (+ SWU/FMPadding), binary MaxPool -> ``SpikeMaxPool``,
    delays pushed to the output (:func:`finn_s2n2.finn.transformation.convert_to_lif`).  FINN's
    ``STREAMLINED_PYTHON`` ("streamlined_python") verification runs here on the converted graph (python
    execution of the HW ops; the S2N2 flow has no streamlining, the conversion takes its place)."""
    from qonnx.transformation.general import GiveUniqueNodeNames

    from finn_s2n2.finn.transformation import convert_to_lif

    model = convert_to_lif(model).transform(GiveUniqueNodeNames())
    if _verifies(cfg, "streamlined_python"):
        from finn.builder.build_dataflow_steps import verify_step

        verify_step(model, cfg, "streamlined_python", need_parent=False)
    return model


def step_s2n2_minimize_bit_width(model, cfg):
    """FINN's ``step_minimize_bit_width``, whose ``FOLDED_HLS_CPPSIM`` verification is run here with every
    HLS node in C++ built without Vitis (:func:`prepare_partition_cppsim`: our nodes, and FINN's own HLS
    nodes against finn-hlslib + open headers) instead of FINN's Vitis-linked ``CompileCppSim``."""
    from finn.builder.build_dataflow_steps import step_minimize_bit_width, verify_step

    cppsim = _verifies(cfg, "folded_hls_cppsim")
    if cppsim:
        cfg = copy.copy(cfg)
        cfg.verify_steps = [v for v in cfg.verify_steps if str(getattr(v, "value", v)) != "folded_hls_cppsim"]
    model = step_minimize_bit_width(model, cfg)
    if cppsim:
        model = prepare_partition_cppsim(model)
        verify_step(model, cfg, "folded_hls_cppsim", need_parent=True)
    return model


def make_step_s2n2_label_select(k: int = 1):
    """A build step that appends FINN's ``LabelSelect`` (top-``k``) to the counting output layer
    (:class:`~finn_s2n2.finn.transformation.InsertLabelSelect`); run it after :func:`step_convert_to_lif`."""

    def step_s2n2_label_select(model, cfg):
        from qonnx.transformation.general import GiveUniqueNodeNames

        from finn_s2n2.finn.transformation import FixTickBatchShapes, InsertLabelSelect

        model = model.transform(InsertLabelSelect(k)).transform(GiveUniqueNodeNames())
        return model.transform(FixTickBatchShapes())

    step_s2n2_label_select.__name__ = f"step_s2n2_label_select_top{k}"
    return step_s2n2_label_select


# ------------------------------------------------------------------------------------------ folding
def _hw_nodes(model):
    """Specialised (HLS/RTL) FINN nodes, plus our LIF_MVAU / SpikeMaxPool nodes also before specialisation."""
    from finn.util.fpgadataflow import is_hls_node, is_rtl_node

    return [
        n
        for n in model.graph.node
        if is_hls_node(n)
        or is_rtl_node(n)
        or (n.op_type in OWN_HW_OPS and n.domain == "finn.custom_op.fpgadataflow")
    ]


#: our abstract HW ops (FINN's SetFolding does not know them; S2N2SetFolding folds them)
OWN_HW_OPS = ("LIF_MVAU", "SpikeMaxPool")

#: model metadata key where S2N2SetFolding records its target (read by the S2N2 report)
FOLDING_TARGET_KEY = "s2n2_target_cycles_per_tick"


def folding_misses(model, target: int) -> list[dict]:
    """HW nodes above ``target`` cycles per tick, with the reason (their most parallel setting reached)."""
    from qonnx.custom_op.registry import getCustomOp

    out = []
    for node in _hw_nodes(model):
        inst = getCustomOp(node)
        cyc = int(inst.get_exp_cycles())
        if cyc > target:
            out.append(
                dict(
                    node=node.name,
                    op_type=node.op_type,
                    cycles_per_tick=cyc,
                    reason=_why_unreachable(inst, node),
                )
            )
    return out


def _divisors(n: int):
    return [d for d in range(1, n + 1) if n % d == 0]


class _DropOwnOpWarnings:
    """logging.Filter for FINN's SetFolding logger: drops its "doesn't know how to handle op_type LIF_MVAU"
    (or SpikeMaxPool) line (those nodes are folded by :class:`S2N2SetFolding` itself)."""

    def filter(self, record):
        msg = record.getMessage()
        return not ("doesn't know how to handle op_type" in msg and any(o in msg for o in OWN_HW_OPS))


def _make_s2n2_set_folding():
    from finn.transformation.fpgadataflow.set_folding import SetFolding

    class S2N2SetFolding(SetFolding):
        """FINN's ``SetFolding`` extended to ``LIF_MVAU``: a target in cycles per frame (= per tick).

        ``LIF_MVAU_*`` nodes are folded like FINN's MVAU with embedded weights (SIMD through the divisors of
        MW, then PE through the divisors of MH, until the node meets the target), ``SpikeMaxPool_*`` nodes
        through the divisors of their channels (PE) like FINN folds its pooling; every other node is
        folded by FINN's own ``SetFolding`` (sliding windows, padding, pooling, label select ...).
        Afterwards every HW node of the graph is checked: ``self.missed`` lists the nodes above the target
        (:func:`folding_misses`: node, op_type, cycles_per_tick, reason; logged as a warning naming them);
        ``strict=True`` raises ValueError naming them instead.  The target is recorded in the model's
        metadata (``s2n2_target_cycles_per_tick``) for the S2N2 report.
        """

        def __init__(self, target_cycles_per_frame, strict=False, **kw):
            kw.setdefault("two_pass_relaxation", False)
            super().__init__(target_cycles_per_frame, **kw)
            if int(target_cycles_per_frame) < 1:
                raise ValueError(
                    f"S2N2SetFolding: target cycles per tick must be >= 1, got {target_cycles_per_frame}"
                )
            self.strict = strict
            self.missed = []

        def apply(self, model):
            import logging

            from qonnx.custom_op.registry import getCustomOp

            target = self.target_cycles_per_frame
            for node in _hw_nodes(model):
                if node.op_type.startswith("SpikeMaxPool"):
                    inst = getCustomOp(node)
                    for pe in _divisors(inst.get_nodeattr("NumChannels")):
                        inst.set_nodeattr("PE", pe)
                        if inst.get_exp_cycles() <= target:
                            break
                    continue
                if not node.op_type.startswith("LIF_MVAU"):
                    continue
                inst = getCustomOp(node)
                mw, mh = inst.get_nodeattr("MW"), inst.get_nodeattr("MH")
                inst.set_nodeattr("PE", 1)
                for simd in _divisors(mw):
                    inst.set_nodeattr("SIMD", simd)
                    if inst.get_exp_cycles() <= target:
                        break
                for pe in _divisors(mh):
                    inst.set_nodeattr("PE", pe)
                    if inst.get_exp_cycles() <= target:
                        break
            flt = _DropOwnOpWarnings()
            log = logging.getLogger("finn.transformation.fpgadataflow.set_folding")
            import finn.transformation.fpgadataflow.set_folding as sf_mod

            loggers = {log, getattr(sf_mod, "log", log)}
            for lg in loggers:
                lg.addFilter(flt)
            try:
                model, _ = super().apply(model)
            finally:
                for lg in loggers:
                    lg.removeFilter(flt)
            model.set_metadata_prop(FOLDING_TARGET_KEY, str(int(target)))
            self.missed = folding_misses(model, target)
            if self.missed:
                lines = "; ".join(
                    f"{m['node']} ({m['op_type']}): {m['cycles_per_tick']} cycles/tick > {target}, {m['reason']}"
                    for m in self.missed
                )
                if self.strict:
                    raise ValueError(f"S2N2SetFolding: target {target} cycles/tick unreachable by {lines}")
                logging.getLogger(__name__).warning(f"S2N2SetFolding: target missed by {lines}")
            return model, False

    return S2N2SetFolding


def _why_unreachable(inst, node) -> str:
    """Why a node stays above the target after folding (its most parallel setting is reached)."""
    names = inst.get_nodeattr_types()
    parts = [f"{a}={inst.get_nodeattr(a)}" for a in ("SIMD", "PE", "parallel_window") if a in names]
    if node.op_type.startswith("LIF_MVAU"):
        return f"fully parallel ({', '.join(parts)}): positions per tick x 1 cycle is the floor"
    if node.op_type.startswith("SpikeMaxPool"):
        return f"fully parallel ({', '.join(parts)}): one input pixel per cycle is the floor"
    return f"FINN's SetFolding reached {', '.join(parts) or 'its limit'}"


def S2N2SetFolding(target_cycles_per_tick: int, strict: bool = False, **kw):
    """FINN's ``SetFolding`` that also folds ``LIF_MVAU`` nodes (see :func:`_make_s2n2_set_folding`).

    A class factory so that importing this module does not import finn-plus.  The target is in cycles
    per frame, and a frame is one tick."""
    register_finn()
    return _make_s2n2_set_folding()(target_cycles_per_tick, strict=strict, **kw)


def lif_folding(model, target_cycles_per_tick: int, strict: bool = False):
    """Fold every HW node of ``model`` (and of its dataflow partitions) to <= ``target_cycles_per_tick``
    cycles per tick with :func:`S2N2SetFolding`; returns the model."""
    if not isinstance(target_cycles_per_tick, (int, np.integer)) or target_cycles_per_tick < 1:
        raise ValueError(f"target_cycles_per_tick must be an int >= 1, got {target_cycles_per_tick!r}")
    return model.transform(
        S2N2SetFolding(int(target_cycles_per_tick), strict=strict), apply_to_subgraphs=True
    )


def step_s2n2_target_fps_parallelization(model, cfg):
    """FINN's ``step_target_fps_parallelization`` for S2N2 graphs: ``cfg.target_fps`` is in ticks (frames)
    per second, so the target is ``fclk / target_fps`` cycles per tick; every node is folded to it
    (:func:`S2N2SetFolding`) and ``report/auto_folding_config.json`` is written like FINN's step does."""
    from finn.util.config import extract_model_config_to_json
    from qonnx.transformation.general import GiveUniqueNodeNames

    target = cfg._resolve_cycles_per_frame()
    if target is None:
        return model
    model = lif_folding(model, int(target)).transform(GiveUniqueNodeNames())
    report_dir = Path(cfg.output_dir) / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    extract_model_config_to_json(
        model, str(report_dir / "auto_folding_config.json"), ["PE", "SIMD", "parallel_window", "ram_style"]
    )
    return model


def make_step_lif_folding(target_cycles_per_tick: int, strict: bool = False):
    """A build step (``step(model, cfg)``) that applies :func:`lif_folding` with the given target."""

    def step_lif_folding(model, cfg):
        return lif_folding(model, target_cycles_per_tick, strict=strict)

    step_lif_folding.__name__ = f"step_lif_folding_{target_cycles_per_tick}"
    return step_lif_folding


# ------------------------------------------------------------------------------------------ hardware flow
def step_s2n2_insert_dwc_fifo(model, cfg):
    """FINN's stream plumbing without FIFO sizing (no RTL simulation here): ``InsertDWC``,
    ``InsertFIFO(create_shallow_fifos=True)``, ``SpecializeLayers`` (for the new DWC/FIFO nodes) and
    ``InsertTLastMarker`` — the same transformations as FINN's ``step_set_fifo_depths`` with
    ``force_minimal_fifos``, minus its IP synthesis."""
    from finn.transformation.fpgadataflow.insert_dwc import InsertDWC
    from finn.transformation.fpgadataflow.insert_fifo import InsertFIFO
    from finn.transformation.fpgadataflow.insert_tlastmarker import InsertTLastMarker
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames

    model = model.transform(InsertDWC())
    model = model.transform(InsertFIFO(create_shallow_fifos=True))
    model = model.transform(SpecializeLayers(cfg._resolve_fpga_part()))
    model = model.transform(InsertTLastMarker(both=False, external=True, dynamic=False))
    model = model.transform(SpecializeLayers(cfg._resolve_fpga_part()))
    return model.transform(GiveUniqueNodeNames()).transform(GiveReadableTensorNames())


# ------------------------------------------------------------------------------------------ report
def swu_buffer_bits(inst) -> int:
    """Bits of a FINN sliding-window unit's own line buffer.

    RTL SWU: FINN's ``get_buffer_depth()`` words of ``SIMD`` elements; HLS/abstract: the classic line
    buffer ``((K_h - 1) * W_in + K_w) * C`` elements.  Times the element width (1 bit for spikes)."""
    bits = inst.get_input_datatype().bitwidth()
    if hasattr(inst, "get_buffer_depth"):
        return int(inst.get_buffer_depth()) * int(inst.get_nodeattr("SIMD")) * bits
    kh, kw = inst.get_nodeattr("ConvKernelDim")
    _, w = inst.get_nodeattr("IFMDim")
    return ((kh - 1) * w + kw) * inst.get_nodeattr("IFMChannels") * bits


def s2n2_performance(model, clk_ns: float, fpga_part: str = "xc7z020clg400-1") -> dict:
    """Throughput model of an S2N2 dataflow graph (one frame = one tick).

    ``cycles_per_tick`` of every HW node (FINN's ``get_exp_cycles``: cycles per frame), the critical
    (slowest) node, ``ticks_per_sample`` (numTicks), ``cycles_per_sample = ticks x max cycles/tick``
    (pipelined steady state), ``samples_per_s`` and ``ticks_per_s`` at ``clk_ns``; the memory breakdown of
    every LIF_MVAU (weights, membranes, delay line in BRAM_18K and bits), every sliding window (line
    buffer bits, FINN's BRAM/LUT estimates) and every SpikeMaxPool (partial-OR buffer bits)."""
    from qonnx.custom_op.registry import getCustomOp

    cycles, lif, swu, pools = {}, {}, {}, {}
    ticks = set()
    latency = 0
    for node in _hw_nodes(model):
        inst = getCustomOp(node)
        cycles[node.name] = int(inst.get_exp_cycles())
        if node.op_type.startswith("LIF_MVAU"):
            p = inst.params()
            ticks.add(p.num_ticks)
            latency = max(latency, p.latency)
            pe = inst.get_nodeattr("PE")
            lif[node.name] = dict(
                MW=inst.get_nodeattr("MW"),
                MH=inst.get_nodeattr("MH"),
                PE=pe,
                SIMD=inst.get_nodeattr("SIMD"),
                positions=inst.positions()[0],
                numTicks=p.num_ticks,
                cycles_per_tick=cycles[node.name],
                weight_bits=inst.get_nodeattr("MW")
                * inst.get_nodeattr("MH")
                * inst.get_weight_datatype().bitwidth(),
                membrane_bits=inst.calc_mmem() * pe * p.acc_bits,
                delay_bits=0 if p.output_mode == "counts" else p.delay * inst.calc_mmem() * pe,
                weight_bram18=inst.weight_bram_estimation(),
                membrane_bram18=inst.membrane_bram_estimation(),
                delay_bram18=inst.delay_bram_estimation(),
                bram18=inst.bram_estimation(),
                lut=inst.lut_estimation(),
                dsp=inst.dsp_estimation(),
            )
        elif node.op_type.startswith("SpikeMaxPool"):
            pools[node.name] = dict(
                buffer_bits=inst.calc_mem() * inst.get_nodeattr("PE"),
                bram18=int(inst.bram_estimation()),
                lut=int(inst.lut_estimation()),
                cycles_per_tick=cycles[node.name],
            )
        elif node.op_type.startswith("ConvolutionInputGenerator"):
            swu[node.name] = dict(
                line_buffer_bits=swu_buffer_bits(inst),
                bram18=int(inst.bram_estimation(fpga_part)),
                lut=int(inst.lut_estimation(fpga_part)),
                cycles_per_tick=cycles[node.name],
            )
    if len(ticks) > 1:
        raise ValueError(f"LIF_MVAU nodes disagree on numTicks: {sorted(ticks)}")
    t = ticks.pop() if ticks else 1
    critical = max(cycles, key=cycles.get) if cycles else None
    max_c = cycles[critical] if critical else 0
    fclk = 1e9 / float(clk_ns)
    return {
        "clk_ns": float(clk_ns),
        "ticks_per_sample": t,
        "cycles_per_tick": cycles,
        "critical_node": critical,
        "max_cycles_per_tick": max_c,
        "cycles_per_sample": t * max_c,
        "ticks_per_s": fclk / max_c if max_c else 0.0,
        "samples_per_s": fclk / (t * max_c) if max_c else 0.0,
        # delays pushed to the output in latency-only mode: the output stream is this many ticks later
        "delay_latency_ticks": latency,
        "lif_mvau": lif,
        "sliding_window": swu,
        "spike_maxpool": pools,
        "memory_bits": {
            "weights": sum(v["weight_bits"] for v in lif.values()),
            "membranes": sum(v["membrane_bits"] for v in lif.values()),
            "delay_lines": sum(v["delay_bits"] for v in lif.values()),
            "sliding_window_buffers": sum(v["line_buffer_bits"] for v in swu.values()),
            "pooling_buffers": sum(v["buffer_bits"] for v in pools.values()),
        },
    }


def step_s2n2_report(model, cfg):
    """Write ``report/s2n2_lif_mvau.json``: :func:`s2n2_performance` at the build clock plus FINN's own
    ``dataflow_performance`` analysis of the same graph (its critical node must be ours)."""
    from finn.analysis.fpgadataflow.dataflow_performance import dataflow_performance
    from finn.transformation.fpgadataflow.annotate_cycles import AnnotateCycles

    rep = s2n2_performance(model, cfg.synth_clk_period_ns, cfg._resolve_fpga_part())
    finn_perf = model.transform(AnnotateCycles()).analysis(dataflow_performance)
    rep["finn_dataflow_performance"] = {
        k: v for k, v in finn_perf.items() if isinstance(v, (int, float, str))
    }
    target = model.get_metadata_prop(FOLDING_TARGET_KEY)
    if target:
        rep["folding"] = {"target_cycles_per_tick": int(target), "missed": folding_misses(model, int(target))}
    report_dir = Path(cfg.output_dir) / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "s2n2_lif_mvau.json").write_text(json.dumps(rep, indent=2))
    return model


#: steps for an estimate-only S2N2 build (no Vivado): tidy, convert, partition, specialise, fold, reports
S2N2_ESTIMATE_STEPS = [
    step_s2n2_tidy,
    step_convert_to_lif,
    "step_create_dataflow_partition",
    "step_specialize_layers",
    step_s2n2_target_fps_parallelization,
    "step_apply_folding_config",
    step_s2n2_minimize_bit_width,
    "step_generate_estimate_reports",
    step_s2n2_report,
]

#: the hardware flow up to FINN's code generation (no Vivado/Vitis needed): estimate steps, then DWC/FIFO/TLast
#: insertion and ``step_hw_codegen`` (PrepareIP: HLS C++ and RTL generated for every node)
S2N2_CODEGEN_STEPS = S2N2_ESTIMATE_STEPS[:-1] + [
    step_s2n2_insert_dwc_fifo,
    "step_hw_codegen",
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
    """S2N2_cv shape on a 28x28 MNIST spike input, 500 ticks (Khodamoradi 2021, §2.4)."""
    return make_s2n2_network((1, 28, 28), S2N2_CV_LAYERS, num_ticks=num_ticks, **kw)


def s2n2_rf1_model(num_ticks: int = 128, **kw):
    """S2N2_rf1 shape on a 16x16 quantised I/Q constellation, 128 ticks (Khodamoradi 2021, §2.3)."""
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

    ``target_cycles_per_tick`` folds every node to that many cycles per tick (:func:`S2N2SetFolding`,
    through ``cfg.target_fps = fclk / target``).
    """
    register_finn()
    from finn.builder.build_dataflow import build_dataflow_cfg
    from finn.builder.build_dataflow_config import DataflowBuildConfig, DataflowOutputType

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "s2n2_input.onnx"
    model.save(str(path))
    steps = list(S2N2_ESTIMATE_STEPS)
    target_fps = None
    if target_cycles_per_tick is not None:
        steps[steps.index(step_s2n2_target_fps_parallelization)] = make_step_lif_folding(
            target_cycles_per_tick
        )
    cfg = DataflowBuildConfig(
        target_fps=target_fps,
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
#: our HLS nodes: their own cppsim (g++ + open ap_types), any number of frames per call
OWN_HLS_OPS = ("LIF_MVAU_hls", "SpikeMaxPool_hls")


def prepare_partition_cppsim(model):
    """cppsim of a whole dataflow partition without Vitis: every HLS node gets C++ and ``exec_mode="cppsim"``.

    * our ``LIF_MVAU_hls`` / ``SpikeMaxPool_hls``: their own code generation and g++ build;
    * FINN's own HLS nodes (``LabelSelect_hls``, ``TLastMarker_hls``, ``StreamingDataWidthConverter_hls``,
      ``StreamingFIFO_hls`` ...): FINN's ``code_generation_cppsim``, compiled by
      :func:`finn_s2n2.finn.hls.compile_finn_hls_node` (g++, finn-hlslib, open ``ap_types`` + shims) instead of
      FINN's Vitis-linked build; FINN's own ``execute_node`` runs the executable;
    * RTL nodes (sliding window, padding, FIFOs, width converters): ``exec_mode="cppsim"``, which FINN
      implements with their python models (there is no C++ of an RTL node).

    FINN's ``Pool_hls`` (``pool_impl="finn"``) is refused by name: its code needs Vitis' ``hls::vector`` and a
    newer finn-hlslib (docs/s2n2_finn.md).  Needs finn-hlslib (:func:`hwreshape.compat.finn_hlslib_dir`) as
    soon as a FINN HLS node is present.  Returns the model."""
    from finn.util.fpgadataflow import is_hls_node, is_rtl_node
    from qonnx.custom_op.registry import getCustomOp

    from finn_s2n2.finn import hls
    from hwreshape.compat import finn_build_dir

    for node in model.graph.node:
        if not (is_hls_node(node) or is_rtl_node(node)):
            continue
        inst = getCustomOp(node)
        inst.set_nodeattr("exec_mode", "cppsim")
        if is_rtl_node(node):
            continue
        if node.op_type == "Pool_hls":
            raise RuntimeError(
                f"Pool_hls node '{node.name}': finn-plus 1.6.1 generates Pool_batch<ISIZE, K> over Vitis' "
                f"hls::vector, which neither the open ap_types nor this finn-hlslib provide; convert with "
                f"pool_impl='s2n2' (SpikeMaxPool) for a C++-simulable partition"
            )
        code_dir = inst.get_nodeattr("code_gen_dir_cppsim")
        if not code_dir or not Path(code_dir).is_dir():
            import tempfile

            code_dir = tempfile.mkdtemp(prefix=f"code_gen_cppsim_{node.name}_", dir=finn_build_dir())
            inst.set_nodeattr("code_gen_dir_cppsim", code_dir)
        inst.code_generation_cppsim(model)
        if node.op_type in OWN_HLS_OPS:
            inst.compile_singlenode_code()
        else:
            hls.compile_finn_hls_node(inst)
    return model


def _python_exec_of_specialised(node):
    """FINN's abstract op class for an ``*_hls``/``*_rtl`` node without a python mode (e.g. ``Pool_hls``)."""
    import finn.custom_op.fpgadataflow as fd

    base = node.op_type.rsplit("_", 1)[0]
    return fd.custom_op.get(base) if node.op_type.endswith(("_hls", "_rtl")) else None


def execute_s2n2(model, input_dict, return_full_exec_context: bool = False):
    """Execute an S2N2 graph (before or after partitioning) on ``N x numTicks`` frames (axis 0).

    Plain qonnx ``execute_onnx`` does this too for the graphs as converted (tested at 2 and 3 samples; FINN's
    sliding window goes through the frame-wise ``Im2Col`` shim, :mod:`finn_s2n2.finn.custom_op.im2col`).
    This function adds what FINN's execution lacks for a multi-sample stream:

    * the input may hold another number of frames (whole samples) than the graph is annotated with; axis 0
      of the annotations is then adapted on a copy (:class:`~finn_s2n2.finn.transformation.FixTickBatchShapes`);
    * FINN's own HW nodes run once per frame of axis 0: FINN writes them for one frame (its HLS nodes in
      ``cppsim`` and its width converters assert a one-frame input, its depthwise RTL sliding window reshapes
      to one frame), and none of them keeps state across frames (our stateful LIF units run whole
      samples);
    * specialised FINN nodes (``*_hls``/``*_rtl``) with ``exec_mode`` "" or "python" use the python
      execution of FINN's abstract op (``Pool_hls`` has no python mode, ``FMPadding_rtl`` does nothing);
    * ``StreamingDataflowPartition`` nodes are executed recursively with this function.
    """
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_node
    from qonnx.custom_op.registry import getCustomOp
    from qonnx.util.basic import get_preferred_qonnx_opset

    register_finn()
    inputs = {i.name for i in model.graph.input}
    for k, v in input_dict.items():
        declared = model.get_tensor_shape(k) if k in inputs else None
        shape = list(np.shape(v))
        if (
            declared
            and len(declared) == len(shape)
            and list(declared[1:]) == shape[1:]
            and declared[0] != shape[0]
        ):
            # another number of frames than the graph was annotated with: re-annotate axis 0 (a copy)
            from finn_s2n2.finn.transformation import FixTickBatchShapes

            model = ModelWrapper(copy.deepcopy(model.model))
            model.set_tensor_shape(k, shape)
            model = model.transform(FixTickBatchShapes())
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
        inst = getCustomOp(node) if node.domain.startswith("finn.custom_op.fpgadataflow") else None
        if inst is None or node.op_type.startswith(OWN_HW_OPS):
            execute_node(node, ctx, model.graph, opset)
            continue
        runner = inst
        if inst.get_nodeattr("exec_mode") in ("", "python"):
            base = _python_exec_of_specialised(node)
            runner = base(node) if base is not None else inst
        x = ctx[node.input[0]]
        oshape = list(model.get_tensor_shape(node.output[0]))
        outs = []
        for f in range(x.shape[0]):  # FINN's own node: one frame per call
            sub = {i: ctx[i] for i in node.input[1:]}  # parameter inputs (initializers), if any
            sub.update({node.input[0]: x[f : f + 1], node.output[0]: np.zeros([1] + oshape[1:], np.float32)})
            runner.execute_node(sub, model.graph)
            outs.append(np.asarray(sub[node.output[0]]))
        ctx[node.output[0]] = np.concatenate(outs, axis=0)
    if return_full_exec_context:
        return ctx
    return {o.name: ctx[o.name] for o in model.graph.output}
