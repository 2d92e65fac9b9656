"""``hwreshape report``: per-layer hardware cost of a model (NTU report §III–IV, plus the figures of the other works).

Columns (per layer and total):

* ``params`` — parameters (weights + biases + any learned quantizer scales) of the layer;
* ``macs`` — multiply-accumulates of one inference (batch 1).  **Counted by an established counter**:
  fvcore's ``FlopCountAnalysis`` for PyTorch (it counts one "flop" per MAC for conv/linear/matmul, traces
  the real module graph, gives a per-module breakdown, and accepts handlers for ops it does not know — chosen
  over ptflops (hook based, misses functional ops and residual adds), torchinfo (parameters only, MACs for a
  few module types) and calflops (pulls in transformers)); qonnx's ``inference_cost`` for ONNX/QONNX files
  (it reads FINN/QONNX datatypes, so weight and activation bits come out right).  Keras 3 models are read by
  our own short rules (Conv*, DepthwiseConv2D, SeparableConv2D, Dense), because none of these counters reads
  Keras.  Our own layers get our own rules: BM convolutions (no multiplications: ``macs`` counts the
  add+max pairs, see ``bm_ops.cost`` for gates/latency), LIF neurons (``ops`` = per-tick membrane updates);
* ``ops`` — operations = additions + multiplications = 2 × MACs (the NTU report counts GFLOPs this way);
* ``mem_accesses`` — 4 per MAC (NTU report Fig 26: read input, read weight, read and write the partial sum),
  i.e. the no-reuse upper bound that the data-reuse schemes of Fig 27 reduce;
* ``act_bits`` / ``weight_bits`` — output activation and weight memory at the model's bit-widths
  (Brevitas quant tensors / QONNX datatypes; 32-bit float otherwise);
* ``skip_bits`` — skip-connection buffer: for every residual ``Add``, the bits of its shortcut operand that a
  streaming implementation holds while the main branch computes — modelled as the full feature map
  (H·W·C·bits), which is what hls4ml's io_stream allocates (stream depth H·W); an *estimate*;
* BM rows (``bm_ops.cost.conv_ratios``): gate and latency ratios standard/BM; SNN rows
  (``finn_s2n2.finn.buffers``): input-buffer bits streaming vs tick-batching at a given spike ratio.

All numbers are counts or documented models, not synthesis results.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAC_OPERATORS = {"conv", "linear", "matmul", "addmm", "bmm", "einsum", "mm"}


@dataclass
class LayerCost:
    name: str
    type: str
    params: int = 0
    macs: int = 0
    ops: int = 0
    mem_accesses: int = 0
    act_elems: int = 0
    act_bitwidth: int = 32
    act_bits: int = 0
    weight_bitwidth: int = 32
    weight_bits: int = 0
    skip_bits: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class Report:
    model: str
    source: str
    input_shape: list
    layers: list[LayerCost]
    skips: list[dict] = field(default_factory=list)
    bm: list[dict] = field(default_factory=list)
    snn: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def total(self, key: str) -> int:
        return int(sum(getattr(r, key) for r in self.layers))

    @property
    def params(self) -> int:
        return self.total("params")

    @property
    def macs(self) -> int:
        return self.total("macs")

    def totals(self) -> dict:
        keys = ("params", "macs", "ops", "mem_accesses", "act_bits", "weight_bits", "skip_bits")
        return {k: self.total(k) for k in keys}

    def to_dict(self) -> dict:
        d = {"model": self.model, "source": self.source, "input_shape": self.input_shape}
        d.update(self.totals())
        d["layers"] = [asdict(r) for r in self.layers]
        d["skips"], d["bm"], d["snn"], d["notes"] = self.skips, self.bm, self.snn, self.notes
        return d

    def to_csv(self) -> str:
        buf = io.StringIO()
        cols = [f for f in LayerCost.__dataclass_fields__ if f != "extra"]
        w = csv.writer(buf)
        w.writerow(cols)
        for r in self.layers:
            w.writerow([getattr(r, c) for c in cols])
        tot = self.totals()
        w.writerow(["TOTAL", ""] + [tot.get(c, "") for c in cols[2:]])
        return buf.getvalue()

    def print(self, console=None, max_rows: int = 60) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console(width=170)
        t = Table(title=f"hardware cost: {self.model} ({self.source}, input {self.input_shape})")
        for c in (
            "layer",
            "type",
            "params",
            "MACs",
            "ops",
            "mem acc.",
            "act bits",
            "weight bits",
            "skip bits",
        ):
            t.add_column(c, justify="left" if c in ("layer", "type") else "right")
        rows = self.layers if len(self.layers) <= max_rows else self.layers[: max_rows - 1]
        for r in rows:
            t.add_row(
                r.name,
                r.type,
                _h(r.params),
                _h(r.macs),
                _h(r.ops),
                _h(r.mem_accesses),
                _h(r.act_bits),
                _h(r.weight_bits),
                _h(r.skip_bits),
            )
        if len(rows) < len(self.layers):
            t.add_row(f"… {len(self.layers) - len(rows)} more layers", "", "", "", "", "", "", "", "")
        tot = self.totals()
        t.add_row(
            "TOTAL",
            "",
            _h(tot["params"]),
            _h(tot["macs"]),
            _h(tot["ops"]),
            _h(tot["mem_accesses"]),
            _h(tot["act_bits"]),
            _h(tot["weight_bits"]),
            _h(tot["skip_bits"]),
            style="bold",
        )
        console.print(t)
        if self.bm:
            bt = Table(title="BM layers (bm_ops.cost: standard / BM, estimates)")
            for c in ("layer", "filters", "channels", "kernel", "gate ratio", "latency ratio"):
                bt.add_column(c)
            for b in self.bm:
                bt.add_row(
                    b["layer"],
                    str(b["filters"]),
                    str(b["channels"]),
                    str(b["kernel_size"]),
                    f"{b['gate_ratio']:.3f}",
                    f"{b['latency_ratio']:.3f}",
                )
            console.print(bt)
        if self.snn:
            st = Table(
                title=f"SNN input buffers (finn_s2n2.finn.buffers, spike ratio {self.snn[0]['spike_ratio']})"
            )
            for c in ("layer", "inputs", "ticks", "tick-batching bits", "streaming bits", "improvement"):
                st.add_column(c)
            for s in self.snn:
                st.add_row(
                    s["name"],
                    str(s["num_inputs"]),
                    str(s["num_ticks"]),
                    _h(s["tick_batching_bits"]),
                    _h(s["streaming_bits"]),
                    f"{s['improvement']:.1f}x",
                )
            console.print(st)
        for n in self.notes:
            console.print(f"[dim]note: {n}[/dim]")


def _h(v) -> str:
    v = float(v)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.3f}{unit}"
    return f"{v:g}"


def _finish(row: LayerCost) -> LayerCost:
    row.ops = 2 * row.macs if row.extra.get("ops") is None else int(row.extra.pop("ops"))
    row.mem_accesses = 4 * row.macs
    row.act_bits = row.act_elems * row.act_bitwidth
    row.weight_bits = row.params * row.weight_bitwidth
    return row


# ----------------------------------------------------------------------------------------------- PyTorch
def _our_layer_kind(m) -> str | None:
    mod = type(m).__module__
    if mod.startswith("bm_ops") and type(m).__name__ in ("BMConv2d", "BMLinear"):
        return "bm"
    if mod.startswith("finn_s2n2") and type(m).__name__ == "LIF":
        return "lif"
    return None


def _is_row_module(m) -> bool:
    from torch import nn

    if _our_layer_kind(m) is not None:
        return True
    if isinstance(
        m,
        (
            nn.modules.conv._ConvNd,
            nn.Linear,
            nn.modules.batchnorm._BatchNorm,
            nn.LayerNorm,
            nn.Embedding,
            nn.MultiheadAttention,
        ),
    ):
        return True
    return len(list(m.children())) == 0


def _bitwidth(value, default: int = 32) -> int:
    bw = getattr(value, "bit_width", None)
    if bw is None:
        return default
    try:
        return int(round(float(bw)))
    except (TypeError, ValueError):
        return default


def _weight_bitwidth(m) -> int:
    if hasattr(m, "quant_weight"):
        try:
            return _bitwidth(m.quant_weight())
        except Exception:
            return 32
    return 32


def report_torch(model, example_input, name: str | None = None, spike_ratio: float = 0.1) -> Report:
    """Cost report of a torch ``nn.Module`` for ``example_input`` (a tensor or a tuple of tensors)."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"report_torch expects a torch.nn.Module, got {type(model).__name__}")
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    batch = int(inputs[0].shape[0]) if inputs[0].dim() > 0 else 1
    model = model.eval()
    rows = _row_modules(model)
    outputs, in_shapes, hooked = _record_activations(model, rows, inputs, batch)
    notes = [] if hooked else ["activation sizes unavailable (TorchScript modules take no forward hooks)"]
    if isinstance(model, torch.jit.ScriptModule):
        return _report_torchscript(model, inputs, name, batch, notes)
    flops = FlopCountAnalysis(model, inputs)
    flops.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    per_mod = flops.by_module_and_operator()

    rep = Report(name or type(model).__name__, "torch (fvcore)", list(inputs[0].shape), [], notes=notes)
    for rname, mod in rows.items():
        kind = _our_layer_kind(mod)
        macs = sum(v for op, v in per_mod.get(rname, {}).items() if op in MAC_OPERATORS)
        row = LayerCost(
            rname or "(model)",
            type(mod).__name__,
            params=sum(p.numel() for p in mod.parameters()),
            weight_bitwidth=_weight_bitwidth(mod),
        )
        act = outputs.get(rname)
        if act is not None:
            row.act_elems, row.act_bitwidth = act[0], act[1]
        if kind == "bm":
            macs = _bm_row(rep, rname, mod, act)
        elif kind == "lif":
            macs = 0
            row.extra["ops"] = row.act_elems  # one membrane update (decay, add, compare) per neuron and tick
            _snn_row(rep, rname, rows, in_shapes, spike_ratio)
        row.macs = int(round(macs / max(batch, 1)))
        rep.layers.append(_finish(row))
    _torch_skips(model, inputs, rep, outputs)
    if flops.unsupported_ops():
        notes.append("fvcore ignored (no MACs): " + ", ".join(sorted(flops.unsupported_ops())))
    return rep


def _row_modules(model) -> dict:
    """The modules that get a table row: the first module on each path that is a layer (``_is_row_module``)."""
    rows: dict[str, object] = {}

    def walk(prefix, mod):
        for cname, child in mod.named_children():
            full = f"{prefix}.{cname}" if prefix else cname
            if _is_row_module(child):
                rows[full] = child
            else:
                walk(full, child)

    walk("", model)
    return rows or {"": model}


def _record_activations(model, rows: dict, inputs: tuple, batch: int):
    """Run ``model`` once with forward hooks on the row modules: per row (elements per sample, bit width, shape)
    of the first output, the shape of the first input, and whether any hook could be attached."""
    import torch

    outputs: dict[str, tuple] = {}
    in_shapes: dict[str, tuple] = {}
    hooks = []
    for rname, mod in rows.items():

        def hook(m, args, out, rname=rname):
            t = out[0] if isinstance(out, (tuple, list)) else out
            if hasattr(t, "value") and not isinstance(t, torch.Tensor):  # Brevitas QuantTensor
                bw, t = _bitwidth(t), t.value
            else:
                bw = _bitwidth(t)
            if isinstance(t, torch.Tensor) and rname not in outputs:
                outputs[rname] = (t.numel() // max(batch, 1), bw, tuple(t.shape))
                a = args[0] if args else None
                a = getattr(a, "value", a)
                if isinstance(a, torch.Tensor):
                    in_shapes[rname] = tuple(a.shape)

        try:
            hooks.append(mod.register_forward_hook(hook))
        except RuntimeError:  # TorchScript modules take no hooks
            pass
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for h in hooks:
            h.remove()
    return outputs, in_shapes, bool(hooks)


def _report_torchscript(model, inputs, name, batch, notes) -> Report:
    """TorchScript: fvcore cannot trace ScriptModules; torch's own dispatch-level ``FlopCounterMode`` can
    (it counts 2 flops per MAC for mm/conv). One row for the whole model: no per-module breakdown."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(*inputs)
    macs = counter.get_total_flops() // 2 // max(batch, 1)
    notes.append("TorchScript: whole-model count by torch.utils.flop_counter (no per-layer breakdown)")
    row = LayerCost(
        "(torchscript)",
        type(model).__name__,
        params=sum(p.numel() for p in model.parameters()),
        macs=int(macs),
    )
    return Report(
        name or "torchscript",
        "torchscript (torch FlopCounterMode)",
        list(inputs[0].shape),
        [_finish(row)],
        notes=notes,
    )


def _bm_row(rep: Report, rname: str, mod, act) -> int:
    """Our rule for BM layers: one add + one max per (input tap, filter, output position) instead of a MAC."""
    v = mod.v_pos
    filters, channels = int(v.shape[0]), int(v.shape[1])
    k = tuple(int(s) for s in v.shape[2:]) or (1,)
    positions = (act[0] // filters) if act else 1
    ks = int(k[0]) if len(set(k)) == 1 else k
    entry = {
        "layer": rname,
        "filters": filters,
        "channels": channels,
        "kernel_size": ks,
        "add_max_pairs": positions * filters * channels * math.prod(k) * 4,
    }
    if importlib.util.find_spec("bm_ops.cost") is not None:
        from bm_ops.cost import conv_ratios

        entry["gate_ratio"], entry["latency_ratio"] = conv_ratios(
            filters, channels, ks if isinstance(ks, int) else k[0]
        )
    rep.bm.append(entry)
    return positions * filters * channels * math.prod(k)


def _snn_row(rep: Report, rname: str, rows: dict, in_shapes: dict, spike_ratio: float) -> None:
    """SNN input buffer of the weight layer feeding this LIF (its input is a spike tensor (N, T, ...))."""
    from torch import nn

    names = list(rows)
    i = names.index(rname)
    for prev in reversed(names[:i]):
        m = rows[prev]
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and prev in in_shapes:
            shape = in_shapes[prev]
            break
    else:
        return
    from finn_s2n2.finn.buffers import layer_buffer

    ticks = int(shape[1]) if len(shape) >= 3 else 1
    if isinstance(m, nn.modules.conv._ConvNd):
        feat = shape[-3:] if len(shape) >= 4 else shape[1:]
        k = m.kernel_size
        lb = layer_buffer(
            prev,
            kind="conv",
            num_ticks=ticks,
            input_shape=tuple(feat),
            spike_ratio=spike_ratio,
            kernel_size=k,
        )
    else:
        lb = layer_buffer(
            prev,
            kind="dense",
            num_ticks=ticks,
            input_shape=(int(shape[-1]),),
            spike_ratio=spike_ratio,
            out_features=m.out_features,
        )
    d = asdict(lb) if hasattr(lb, "__dataclass_fields__") else dict(lb)
    rep.snn.append(d)


def _torch_skips(model, inputs, rep: Report, outputs) -> None:
    """Residual adds found with torch.fx; the shortcut operand is the input produced earliest in the graph."""
    import operator

    import torch
    from torch.fx.passes.shape_prop import ShapeProp

    try:
        gm = torch.fx.symbolic_trace(model)
        ShapeProp(gm).propagate(*inputs)
    except Exception as exc:  # Brevitas and dynamic control flow are often not fx-traceable
        rep.notes.append(f"skip buffers not analysed: model is not torch.fx traceable ({type(exc).__name__})")
        return
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    batch = int(inputs[0].shape[0]) if inputs[0].dim() > 0 else 1
    for node in gm.graph.nodes:
        is_add = (node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add)) or (
            node.op == "call_method" and node.target in ("add", "add_")
        )
        if not is_add:
            continue
        args = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
        if len(args) != 2:
            continue
        shortcut = min(args, key=lambda a: order[a])
        meta = shortcut.meta.get("tensor_meta")
        if meta is None:
            continue
        elems = math.prod(meta.shape) // max(batch, 1)
        bits = 32
        src = _producing_module(shortcut)
        if src in outputs:
            bits = outputs[src][1]
        rep.skips.append(
            {"add": node.name, "shortcut": shortcut.name, "shape": list(meta.shape)[1:], "bits": elems * bits}
        )
        if src is None:
            rep.notes.append(f"skip buffer of {node.name} holds the model input ({elems * bits} bits)")
        else:
            _attach_skip(rep, str(src), elems * bits)


def _producing_module(node):
    """The ``call_module`` target that produced ``node``, looking through functional ops (``torch.relu``,
    ``F.relu``, ``x.view`` ...) on the first tensor operand; None when the value comes from a model input."""
    import torch

    seen = 0
    while node is not None and node.op != "call_module" and seen < 10_000:
        if node.op == "placeholder":
            return None
        node = next((a for a in node.args if isinstance(a, torch.fx.Node)), None)
        seen += 1
    return node.target if node is not None else None


def _attach_skip(rep: Report, producer: str, bits: int) -> None:
    for r in rep.layers:
        if r.name == producer:
            r.skip_bits += bits
            return
    rep.notes.append(f"skip buffer of {bits} bits: producer {producer} has no row in the table")


# ----------------------------------------------------------------------------------------------- Keras 3
def report_keras(model, name: str | None = None) -> Report:
    """Cost report of a Keras 3 model (own per-layer rules: no established counter reads Keras)."""
    import keras

    if not isinstance(model, keras.Model):
        raise TypeError(f"report_keras expects a Keras 3 model, got {type(model).__module__}")
    rep = Report(name or model.name, "keras (own rules)", [None] + list(model.inputs[0].shape[1:]), [])
    order = {layer.name: i for i, layer in enumerate(model.layers)}
    for layer in model.layers:
        cls = type(layer).__name__
        if cls == "InputLayer":
            continue
        out = layer.output
        out_shape = tuple(out.shape[1:]) if not isinstance(out, list) else tuple(out[0].shape[1:])
        row = LayerCost(
            layer.name, cls, params=int(layer.count_params()), act_elems=int(math.prod(out_shape))
        )
        in_shape = tuple(layer.input.shape[1:]) if not isinstance(layer.input, list) else None
        cfg = layer.get_config()
        if cls in ("Conv1D", "Conv2D", "Conv3D"):
            groups = cfg.get("groups", 1)
            row.macs = math.prod(out_shape) * (in_shape[-1] // groups) * math.prod(cfg["kernel_size"])
        elif cls == "DepthwiseConv2D":
            row.macs = math.prod(out_shape) * math.prod(cfg["kernel_size"])
        elif cls in ("SeparableConv1D", "SeparableConv2D"):
            dm = cfg.get("depth_multiplier", 1)
            spatial = math.prod(out_shape[:-1])
            row.macs = (
                spatial * in_shape[-1] * dm * math.prod(cfg["kernel_size"])
                + spatial * in_shape[-1] * dm * out_shape[-1]
            )
        elif cls == "Dense":
            row.macs = math.prod(in_shape) * out_shape[-1]
        elif cls == "BMConv2D":
            filters, ch = out_shape[-1], in_shape[-1]
            k = cfg["kernel_size"] if isinstance(cfg["kernel_size"], int) else cfg["kernel_size"][0]
            row.macs = math.prod(out_shape) * ch * k * k
            entry = {"layer": layer.name, "filters": filters, "channels": ch, "kernel_size": k}
            from bm_ops.cost import conv_ratios

            entry["gate_ratio"], entry["latency_ratio"] = conv_ratios(filters, ch, k)
            rep.bm.append(entry)
        elif cls == "Add" and isinstance(layer.input, list):
            producers = [t._keras_history[0].name for t in layer.input]
            shortcut = min(producers, key=lambda p: order.get(p, -1))
            t = layer.input[producers.index(shortcut)]
            bits = int(math.prod(t.shape[1:])) * 32
            rep.skips.append(
                {"add": layer.name, "shortcut": shortcut, "shape": list(t.shape[1:]), "bits": bits}
            )
            row.skip_bits = bits
        rep.layers.append(_finish(row))
    return rep


# ----------------------------------------------------------------------------------------------- ONNX / QONNX
def report_onnx(path_or_model, name: str | None = None) -> Report:
    """Cost report of an ONNX/QONNX file through qonnx's ``inference_cost`` (MACs, datatype-aware bits)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.inference_cost import inference_cost

    model = path_or_model if isinstance(path_or_model, ModelWrapper) else ModelWrapper(str(path_or_model))
    # inference_cost renames nodes/tensors (GiveUniqueNodeNames/GiveReadableTensorNames) on the model it gets
    model_cost = ModelWrapper(model.model.__deepcopy__())
    res = inference_cost(model_cost, cost_breakdown=True, discount_sparsity=False)
    node_cost = res.get("node_cost", {})
    ishape = model.get_tensor_shape(model.graph.input[0].name)
    default_name = "onnx" if isinstance(path_or_model, ModelWrapper) else Path(str(path_or_model)).stem
    rep = Report(
        name or default_name,
        "onnx (qonnx inference_cost)",
        list(ishape),
        [],
    )
    from qonnx.transformation.general import GiveReadableTensorNames, GiveUniqueNodeNames
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    m = model.transform(InferShapes()).transform(InferDataTypes(allow_scaledint_dtypes=True))
    m = m.transform(GiveUniqueNodeNames()).transform(GiveReadableTensorNames())
    inits = {i.name for i in m.graph.initializer}
    order = {}
    for i, n in enumerate(m.graph.node):
        for o in n.output:
            order[o] = i
    for n in m.graph.node:
        if n.op_type in ("Quant", "BipolarQuant", "Trunc"):
            continue  # quantizers: their bit-width is attributed to the weights / activations they quantize
        c = node_cost.get(n.name, {})
        params = sum(
            int(math.prod(m.get_tensor_shape(i)))
            for i in n.input
            if i in inits and n.op_type not in ("Quant", "Reshape")
        )
        row = LayerCost(n.name, n.op_type, params=params, macs=int(c.get("total_macs", 0)))
        oshape = m.get_tensor_shape(n.output[0])
        if oshape:
            row.act_elems = int(math.prod(oshape[1:])) if len(oshape) > 1 else int(math.prod(oshape))
            dt = m.get_tensor_datatype(n.output[0])
            consumers = m.find_consumers(n.output[0]) or []
            if len(consumers) == 1 and consumers[0].op_type in ("Quant", "BipolarQuant"):
                dt = m.get_tensor_datatype(consumers[0].output[0])  # activation quantizer after this node
            row.act_bitwidth = int(dt.bitwidth())
        wbits = [int(m.get_tensor_datatype(i).bitwidth()) for i in n.input[1:2] if i in inits]
        w_producer = [m.find_producer(i) for i in n.input[1:2] if i not in inits]
        if w_producer and w_producer[0] is not None and w_producer[0].op_type == "Quant":
            q = w_producer[0]
            bw = m.get_initializer(q.input[3])
            wsrc = q.input[0]
            if wsrc in inits:
                row.params = int(math.prod(m.get_tensor_shape(wsrc))) + sum(
                    int(math.prod(m.get_tensor_shape(i))) for i in n.input[2:] if i in inits
                )
            wbits = [int(bw)] if bw is not None else wbits
        row.weight_bitwidth = wbits[0] if wbits else 32
        if n.op_type == "Add" and len([i for i in n.input if i not in inits]) == 2:
            a, b = n.input[0], n.input[1]
            shortcut = min((a, b), key=lambda t: order.get(t, -1))
            sshape = m.get_tensor_shape(shortcut)
            bits = int(math.prod(sshape[1:])) * int(m.get_tensor_datatype(shortcut).bitwidth())
            rep.skips.append({"add": n.name, "shortcut": shortcut, "shape": list(sshape[1:]), "bits": bits})
            row.skip_bits = bits
        rep.layers.append(_finish(row))
    if res.get("total_cost", {}).get("unsupported") not in (None, "set()"):
        rep.notes.append(f"qonnx inference_cost: unsupported ops {res['total_cost']['unsupported']}")
    return rep


# ----------------------------------------------------------------------------------------------- loading
def load_target(spec: str, input_shape: list[int] | None = None):
    """Resolve ``spec``: ``file.py:callable`` (returns ``(nn.Module, example_input)``), a TorchScript file
    (``.pt``/``.pth``, needs ``input_shape``), a Keras file (``.keras``/``.h5``) or ONNX (``.onnx``).
    Returns ``(kind, obj, example_input_or_None, name)``."""
    if ":" in spec and spec.split(":", 1)[0].endswith(".py"):
        path, func = spec.split(":", 1)
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"model file {path} not found")
        mspec = importlib.util.spec_from_file_location(f"_hwreshape_model_{p.stem}", p)
        module = importlib.util.module_from_spec(mspec)
        sys.modules[mspec.name] = module
        mspec.loader.exec_module(module)
        if not hasattr(module, func):
            raise ValueError(f"{path} has no callable {func!r}")
        res = getattr(module, func)()
        if not (isinstance(res, tuple) and len(res) == 2):
            raise ValueError(f"{spec} must return (nn.Module, example_input), got {type(res).__name__}")
        return "torch", res[0], res[1], f"{p.stem}:{func}"
    p = Path(spec)
    if not p.is_file():
        raise FileNotFoundError(f"model file {spec} not found")
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        return "onnx", p, None, p.stem
    if suffix in (".keras", ".h5"):
        import keras

        return "keras", keras.models.load_model(p, compile=False, safe_mode=False), None, p.stem
    if suffix in (".pt", ".pth", ".ts"):
        import torch

        if not input_shape:
            raise ValueError(f"{spec}: a TorchScript model needs --input-shape (e.g. 1,3,224,224)")
        return "torch", torch.jit.load(str(p)), torch.rand(*input_shape), p.stem
    raise ValueError(f"{spec}: unknown model kind (expected file.py:callable, .pt/.pth, .keras/.h5 or .onnx)")


def report(spec: str, input_shape: list[int] | None = None, spike_ratio: float = 0.1) -> Report:
    kind, obj, example, name = load_target(spec, input_shape)
    if kind == "torch":
        return report_torch(obj, example, name, spike_ratio=spike_ratio)
    if kind == "keras":
        return report_keras(obj, name)
    return report_onnx(obj, name)


def bubble_chart(points: list[dict], path: str | Path, title: str = "accuracy vs operations") -> Path:
    """NTU report Fig 21/28: accuracy (y) vs operations (x, G-ops), bubble area proportional to parameters.
    ``points``: dicts with ``name``, ``accuracy``, ``ops``, ``params``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not points:
        raise ValueError("bubble_chart needs at least one model")
    fig, ax = plt.subplots(figsize=(7, 5))
    pmax = max(p["params"] for p in points)
    for p in points:
        size = 2000 * p["params"] / pmax
        ax.scatter(p["ops"] / 1e9, p["accuracy"], s=size, alpha=0.45)
        ax.annotate(
            f"{p['name']}\n{p['params'] / 1e6:.1f} M",
            (p["ops"] / 1e9, p["accuracy"]),
            ha="center",
            va="center",
            fontsize=8,
        )
    ax.set_xlabel("operations per inference [G-ops] (2 x MACs)")
    ax.set_ylabel("accuracy [%]")
    ax.set_title(title + " (bubble area ∝ parameters)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _shape_arg(text: str) -> list[int]:
    """``--input-shape`` value: positive integers separated by commas."""
    import argparse

    try:
        dims = [int(s) for s in text.split(",")]
    except ValueError:
        dims = []
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas (e.g. 1,3,224,224), got {text!r}"
        )
    return dims


def main(argv: list[str] | None = None) -> int:

    from hwreshape.cli import _Parser

    ap = _Parser(prog="hwreshape report", description="hardware-cost report of one or more models")
    ap.add_argument("models", nargs="+", help="file.py:callable | model.pt | model.keras/.h5 | model.onnx")
    ap.add_argument(
        "--input-shape",
        type=_shape_arg,
        help="for TorchScript: comma-separated input shape, e.g. 1,3,224,224",
    )
    ap.add_argument("--json", help="write the report(s) as JSON (top level: params, macs, layers, ...)")
    ap.add_argument("--csv", help="write the per-layer table(s) as CSV")
    ap.add_argument(
        "--spike-ratio", type=float, default=0.1, help="spike ratio for SNN buffer rows (default 0.1)"
    )
    ap.add_argument("--plot", help="write an accuracy-vs-operations bubble chart (needs --accuracy)")
    ap.add_argument("--accuracy", type=float, nargs="*", help="one accuracy [%%] per model, for --plot")
    args = ap.parse_args(argv)
    shape = args.input_shape
    if args.plot and (not args.accuracy or len(args.accuracy) != len(args.models)):
        ap.error(f"--plot needs --accuracy with one value per model ({len(args.models)} models)")
    try:
        reports = [report(m, shape, args.spike_ratio) for m in args.models]
    except (FileNotFoundError, ValueError, TypeError) as exc:
        print(f"hwreshape report: {exc}", file=sys.stderr)
        return 2
    for r in reports:
        r.print()
    if args.json:
        data = (
            reports[0].to_dict()
            if len(reports) == 1
            else {
                "params": sum(r.params for r in reports),
                "macs": sum(r.macs for r in reports),
                "models": [r.to_dict() for r in reports],
            }
        )
        Path(args.json).write_text(json.dumps(data, indent=2, default=str))
    if args.csv:
        Path(args.csv).write_text("".join(r.to_csv() for r in reports))
    if args.plot:
        pts = [
            {"name": r.model, "accuracy": a, "ops": r.total("ops"), "params": r.params}
            for r, a in zip(reports, args.accuracy)
        ]
        print(f"wrote {bubble_chart(pts, args.plot)}")
    return 0


def demo_stage(ctx) -> dict:
    """NTU report Table I check on locally built AlexNet/VGG-16/ResNet-50 plus the Fig 28 bubble chart."""
    import torch

    from hwreshape.examples import zoo

    x = torch.rand(1, 3, 224, 224)
    res, pts = {}, []
    for name, builder in (
        ("AlexNet", zoo.alexnet),
        ("VGG16", lambda: zoo.vgg(16)),
        ("ResNet50", lambda: zoo.resnet(50)),
    ):
        r = report_torch(builder(), x, name)
        res[f"{name}_params_M"] = round(r.params / 1e6, 2)
        res[f"{name}_GMACs"] = round(r.macs / 1e9, 2)
        pts.append(
            {"name": name, "accuracy": zoo.TABLE_I[name][0], "ops": r.total("ops"), "params": r.params}
        )
    bubble_chart(
        pts, Path(ctx.out_dir) / "report_accuracy_vs_ops.png", "reference CNNs of the NTU report, Table I"
    )
    return res
