"""Stream-memory / BRAM18 *estimate* of a converted hls4ml model (the estimate analogue of Khodamoradi 2021, Table 4.5).

Khodamoradi 2021, ch. 4, Table 4.5 (BRAM of Fig. 4.4: long skip 508, no skip
406 = 0.79, vanilla short skips 556 = 1.10, fused short skips 428 = 0.84) and Section 4.1.2 (a skip
connection costs buffer memory because its data lives until the parallel path has finished).

These are *estimates* (no Vivado here).  The model, written once here:

* **Which buffers.**  ``io_stream``: every inter-layer ``hls::stream`` (hls4ml sizes each one in
  ``StreamVariableConverter``: depth = ``prod(shape) // shape[-1]`` = H*W words -- a full feature map -- and a
  word packs all ``shape[-1]`` channels, width = C * element bits); in-place streams (reshape/flatten,
  ``pragma=None``) cost nothing; the model's input and output streams are top-level ports, not FIFOs, and are
  listed but not counted.  Per layer, a ``LineBuffer`` convolution or pooling holds ``filt_height - 1``
  rows of the (padded) input in ``(filt_height - 1) * n_chan`` shift registers of depth ``in_width``.
  Window registers (``filt_height*filt_width*n_chan`` values) and ``io_parallel`` arrays (completely
  partitioned) are registers: counted in bits, 0 BRAM.  Weights are not counted (identical in the variants
  compared by Table 4.5's a/c/d networks; use the HLS report for them).
* **BRAM18 mapping.**  Following Vitis HLS ``config_storage fifo`` defaults (``auto_srl_max_depth=2``,
  ``auto_srl_max_bits=1024``): a buffer with depth <= 2 or depth*width <= 1024 bits goes to SRL/LUTs (0 BRAM);
  otherwise it takes the cheapest BRAM18 aspect ratio, ``min over (w, d) in {(1,16384), (2,8192), (4,4096),
  (9,2048), (18,1024), (36,512)} of ceil(width/w) * ceil(depth/d)``.
* **Line buffers** are ``ap_shift_reg`` arrays read only at fixed taps; Vitis/Vivado HLS implement
  ``ap_shift_reg`` in shift-register LUTs (SRL), so they are classified ``srl``: bits and SRL32 LUTs
  (``ceil(depth/32)`` per bit), 0 BRAM18.
* **FIFO depths.**  ``fifo_depths='default'``: hls4ml's depths (H*W words per stream).  ``'optimized'``: the
  depth hls4ml's FIFO-depth optimisation would set (``max occupancy + 1``, ``vivado:fifo_depth_optimization``)
  where the occupancy comes from an *occupancy model of the streaming schedule* (:func:`fifo_occupancy`)
  instead of RTL co-simulation: every layer reads one word per cycle as soon as it is available (unbounded
  FIFOs, zero compute latency); a window layer (conv, pooling, fused layer) emits output ``(r, c)`` once it has
  read input pixel ``(r*s_h + k_h - 1, c*s_w + k_w - 1)``; ``ZeroPadding2D`` emits pad words without reading;
  ``Add``/``Concatenate`` read word ``k`` of all inputs together; ``Clone`` writes all copies when it reads;
  any other layer maps its ``k``-th output to a proportional share of its input.  At most one word leaves a
  layer per cycle.  Occupancy = the largest number of words written but not yet read.  What this leaves out:
  compute latency and initiation intervals > 1 (longer latencies on the long path raise the skip FIFO), so
  treat it as a lower bound of what co-simulation would find.
* **Weights** (``include_weights=True``): one buffer per weight array.  ``Latency`` strategy: hls4ml
  partitions weights completely -> registers/LUT ROM, 0 BRAM18.  ``Resource`` strategy: hls4ml reshapes them
  to ``ReuseFactor`` words of ``n_weights / ReuseFactor`` values -> BRAM18 by the rule below.  Table 4.5
  counts every BRAM of the synthesised design, so compare it with ``bram18_total`` (streams + weights).
* **Fused layer.**  :class:`~hls4ml_skiptrim.hls4ml.layers.ShortSkipConv2D` reads its skip operand from the centre
  tap of its own window: no Clone copy and no Add stream, only its line buffer.

Deviation from the dissertation's hardware numbers: the dissertation synthesised its designs (Vivado HLS, Alveo U250)
and counts every BRAM; nothing here is synthesised.  With hls4ml's default depths every stream is a full
feature map, so skips cost far more than in the dissertation's hand-sized design and the *ordering* of the
variants differs from Table 4.5 (there, fused 0.84 > no-skip 0.79 of the long-skip design; here fused <
no-skip with default depths because the fused layer removes full-frame FIFOs).  With optimised depths the
FIFOs shrink to a few words except those that wait for a parallel path; see docs/shortskip_hls4ml.md for the
measured columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

#: BRAM18 simple-dual-port aspect ratios (width bits, depth words).
BRAM18_SHAPES = ((1, 16384), (2, 8192), (4, 4096), (9, 2048), (18, 1024), (36, 512))
#: Vitis HLS ``config_storage fifo`` defaults: smaller buffers become SRLs.
AUTO_SRL_MAX_DEPTH = 2
AUTO_SRL_MAX_BITS = 1024


def bram18_for(depth: int, width: int) -> int:
    """BRAM18 blocks for a ``depth x width`` buffer (0 when it maps to SRL/registers); see module docstring."""
    if depth < 0 or width < 0:
        raise ValueError(f"depth and width must be >= 0, got depth={depth}, width={width}")
    if depth == 0 or width == 0 or depth <= AUTO_SRL_MAX_DEPTH or depth * width <= AUTO_SRL_MAX_BITS:
        return 0
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in BRAM18_SHAPES)


@dataclass
class Buffer:
    """One buffer: an inter-layer stream, a layer's line buffer, or a port (listed, not counted)."""

    name: str
    layer: str
    kind: str  # 'stream' | 'line_buffer' (SRL) | 'registers' | 'weights' | 'port'
    depth: int
    width: int
    count: int = 1  # identical memories (e.g. one shift register per channel)
    in_bram: bool = True  # False: registers / LUT ROM (weights of the Latency strategy)

    @property
    def bits(self) -> int:
        return 0 if self.kind == "port" else self.depth * self.width * self.count

    @property
    def bram18(self) -> int:
        if self.kind in ("port", "registers", "line_buffer") or not self.in_bram:
            return 0
        return bram18_for(self.depth, self.width) * self.count

    @property
    def srl_luts(self) -> int:
        """SRL32 LUTs of a shift-register line buffer (0 for anything else)."""
        return math.ceil(self.depth / 32) * self.width * self.count if self.kind == "line_buffer" else 0


@dataclass
class StreamMemory:
    """Result of :func:`stream_memory`: buffers, per-layer sums and totals (``total_bits``, ``bram18``)."""

    model_name: str
    io_type: str
    buffers: list[Buffer] = field(default_factory=list)
    fifo_depths: str = "default"

    @property
    def total_bits(self) -> int:
        """Activation buffer bits (streams, line buffers, registers; weights excluded)."""
        return sum(b.bits for b in self.buffers if b.kind != "weights")

    @property
    def bram18(self) -> int:
        """BRAM18 of the activation buffers (streams + line buffers; weights excluded)."""
        return sum(b.bram18 for b in self.buffers if b.kind != "weights")

    @property
    def weight_bram18(self) -> int:
        return sum(b.bram18 for b in self.buffers if b.kind == "weights")

    @property
    def bram18_total(self) -> int:
        """Every BRAM18 the model counts (activation buffers + weights), the analogue of Table 4.5's totals."""
        return self.bram18 + self.weight_bram18

    @property
    def srl_luts(self) -> int:
        return sum(b.srl_luts for b in self.buffers)

    @property
    def n_fifos(self) -> int:
        return sum(1 for b in self.buffers if b.kind == "stream")

    def by_layer(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for b in self.buffers:
            d = out.setdefault(b.layer, {"bits": 0, "bram18": 0})
            d["bits"] += b.bits
            d["bram18"] += b.bram18
        return out

    def table(self) -> str:
        rows = [
            f"{'buffer':<34} {'layer':<26} {'kind':<11} {'depth':>6} {'width':>6} {'x':>3} {'bits':>9} {'BRAM18':>6}"
        ]
        for b in self.buffers:
            rows.append(
                f"{b.name:<34} {b.layer:<26} {b.kind:<11} {b.depth:>6} {b.width:>6} {b.count:>3} {b.bits:>9} {b.bram18:>6}"
            )
        rows.append(
            f"{'total':<34} {'':<26} {'':<11} {'':>6} {'':>6} {'':>3} {self.total_bits:>9} {self.bram18:>6}"
        )
        return "\n".join(rows)


def _elem_width(var) -> int:
    prec = getattr(var.type, "precision", None)
    width = getattr(prec, "width", None)
    if width is None:
        raise TypeError(
            f"variable {var.name}: cannot size a buffer of precision {prec!r} (need a fixed/int type)"
        )
    return int(width)


FIFO_DEPTH_MODES = ("default", "optimized")


def stream_memory(hls_model, fifo_depths: str = "default", include_weights: bool = False) -> StreamMemory:
    """Estimate stream FIFO and line-buffer memory of a converted (not necessarily compiled) hls4ml model.

    ``fifo_depths``: ``'default'`` (hls4ml's depths) or ``'optimized'`` (occupancy model, see module
    docstring); ``include_weights`` adds the weight arrays (see ``bram18_total``).
    """
    if not hasattr(hls_model, "get_layers") or not hasattr(hls_model, "config"):
        raise TypeError(f"stream_memory expects an hls4ml ModelGraph, got {type(hls_model).__name__}")
    if fifo_depths not in FIFO_DEPTH_MODES:
        raise ValueError(f"fifo_depths must be one of {FIFO_DEPTH_MODES}, got {fifo_depths!r}")
    io_type = hls_model.config.get_config_value("IOType")
    ports = set(hls_model.inputs) | set(hls_model.outputs)
    res = StreamMemory(hls_model.config.get_project_name(), io_type, fifo_depths=fifo_depths)
    occupancy = fifo_occupancy(hls_model) if (fifo_depths == "optimized" and io_type == "io_stream") else {}
    for layer in hls_model.get_layers():
        for out_name, var in layer.variables.items():
            shape = [int(s) for s in var.shape]
            elem = _elem_width(var)
            if io_type == "io_stream":
                pragma = getattr(var, "pragma", None)
                if not (isinstance(pragma, tuple) and pragma[0] == "stream"):
                    continue  # in-place stream: no FIFO of its own
                depth, width = int(pragma[1]), shape[-1] * elem
                kind = "port" if out_name in ports else "stream"
                if kind == "stream" and out_name in occupancy:
                    depth = occupancy[out_name] + 1  # hls4ml's rule: max occupancy + 1
            else:
                depth, width = math.prod(shape), elem
                kind = "port" if out_name in ports else "registers"
            res.buffers.append(Buffer(var.name, layer.name, kind, depth, width))
        lb = _line_buffer(layer, io_type)
        if lb is not None:
            res.buffers.append(lb)
        if include_weights:
            res.buffers.extend(_weight_buffers(layer))
    return res


def _weight_buffers(layer) -> list[Buffer]:
    out = []
    strategy = str(layer.get_attr("strategy", "latency")).lower()
    rf = int(layer.get_attr("reuse_factor", 1) or 1)
    for wname, w in getattr(layer, "weights", {}).items():
        n = int(getattr(w, "data_length", 0) or math.prod(getattr(w, "shape", ()) or (0,)))
        prec = getattr(w.type, "precision", None)
        elem = int(getattr(prec, "width", 0) or 0)
        if n == 0 or elem == 0:
            continue
        if strategy == "resource" and wname == "weight" and rf > 1:
            out.append(Buffer(w.name, layer.name, "weights", rf, math.ceil(n / rf) * elem))
        else:  # latency strategy / biases: completely partitioned (registers / LUT ROM)
            out.append(Buffer(w.name, layer.name, "weights", n, elem, in_bram=False))
    return out


def _words(var) -> int:
    shape = [int(s) for s in var.shape]
    return max(1, math.prod(shape) // max(1, shape[-1]))


def _greedy(arrivals: np.ndarray) -> np.ndarray:
    """Read times when each word is read as soon as it has arrived, at most one word per cycle."""
    out = np.empty(len(arrivals), dtype=np.int64)
    t = -1
    for i, a in enumerate(arrivals):
        t = max(int(a), t + 1)
        out[i] = t
    return out


def _emit(need_times: np.ndarray) -> np.ndarray:
    """Write times of outputs whose inputs are complete at ``need_times`` (one word per cycle)."""
    return _greedy(need_times)


def _window_needs(layer, n_out: int, in_h: int, in_w: int) -> np.ndarray:
    """Index of the last input pixel a window layer needs before it can emit each output pixel."""
    fh = int(layer.get_attr("filt_height", layer.get_attr("pool_height", 1)) or 1)
    fw = int(layer.get_attr("filt_width", layer.get_attr("pool_width", 1)) or 1)
    sh = int(layer.get_attr("stride_height", fh if layer.get_attr("pool_height") else 1) or 1)
    sw = int(layer.get_attr("stride_width", fw if layer.get_attr("pool_width") else 1) or 1)
    pt, pl = int(layer.get_attr("pad_top", 0) or 0), int(layer.get_attr("pad_left", 0) or 0)
    ow = int(layer.get_attr("out_width", 1) or 1)
    k = np.arange(n_out)
    r, c = k // ow, k % ow
    ih = np.clip(r * sh + fh - 1 - pt, 0, in_h - 1)
    iw = np.clip(c * sw + fw - 1 - pl, 0, in_w - 1)
    return ih * in_w + iw


def fifo_occupancy(hls_model) -> dict[str, int]:
    """Largest number of words waiting in each inter-layer stream under the occupancy model (module docstring).

    Returns ``{stream variable name: max occupancy}`` for the streams of an ``io_stream`` model.
    """
    write: dict[str, np.ndarray] = {}  # tensor -> write time of each word
    alias: dict[str, str] = {}  # in-place stream -> the stream it shares
    reads: dict[str, list[np.ndarray]] = {}
    for layer in hls_model.get_layers():
        outs = list(layer.outputs)
        ins = [alias.get(i, i) for i in layer.inputs]
        out_vars = [hls_model.get_layer_output_variable(o) for o in outs]
        if layer.class_name == "Input" or not ins:
            for o, v in zip(outs, out_vars):
                write[o] = np.arange(_words(v), dtype=np.int64)
            continue
        if any(i not in write for i in ins):
            raise ValueError(f"fifo_occupancy: layer {layer.name} reads {ins} before they are produced")
        if len(outs) == 1 and not (
            isinstance(out_vars[0].pragma, tuple) and out_vars[0].pragma[0] == "stream"
        ):
            alias[outs[0]] = ins[0]  # reshape / flatten: same stream
            write[outs[0]] = write[ins[0]]
            continue
        n_out = _words(out_vars[0])
        if len(ins) > 1:  # Add / Concatenate / Multiply ...: word k of every input together
            arrivals = np.max(np.stack([write[i][:n_out] for i in ins]), axis=0)
            r = _greedy(arrivals)
            for i in ins:
                reads.setdefault(i, []).append(r)
            t_out = r
        elif layer.class_name == "ZeroPadding2D":
            in_h, in_w = int(layer.get_attr("in_height")), int(layer.get_attr("in_width"))
            ow = int(layer.get_attr("out_width"))
            pt, pl = int(layer.get_attr("pad_top")), int(layer.get_attr("pad_left"))
            src = write[ins[0]]
            t_out = np.empty(n_out, dtype=np.int64)
            r_in = np.empty(len(src), dtype=np.int64)
            t = -1
            for k in range(n_out):
                rr, cc = divmod(k, ow)
                ih, iw = rr - pt, cc - pl
                if 0 <= ih < in_h and 0 <= iw < in_w:
                    j = ih * in_w + iw
                    t = max(int(src[j]), t + 1)
                    r_in[j] = t
                else:
                    t = t + 1
                t_out[k] = t
            reads.setdefault(ins[0], []).append(r_in)
        else:
            src = write[ins[0]]
            r = _greedy(src)
            reads.setdefault(ins[0], []).append(r)
            in_var = hls_model.get_layer_output_variable(layer.inputs[0])
            if layer.get_attr("filt_height") is not None or layer.get_attr("pool_height") is not None:
                shape = [int(s) for s in in_var.shape]
                need = _window_needs(layer, n_out, shape[0], shape[1] if len(shape) > 2 else 1)
            elif n_out == len(src):
                need = np.arange(n_out)
            else:  # proportional consumption (global pooling, dense on a flattened stream, ...)
                need = np.ceil((np.arange(n_out) + 1) * len(src) / n_out).astype(np.int64) - 1
            t_out = _emit(r[need])
        for o in outs:
            write[o] = t_out
    occ = {}
    for name, w in write.items():
        if name in alias or name not in reads:
            continue
        r_all = np.sort(np.concatenate(reads[name])) if len(reads[name]) == 1 else None
        if r_all is None:  # a stream has one reader in hls4ml (fan-out goes through Clone)
            raise ValueError(f"fifo_occupancy: stream {name} has {len(reads[name])} readers")
        done = np.searchsorted(r_all, w, side="left")  # words read strictly before each write
        occ[name] = int(np.max(np.arange(1, len(w) + 1) - done))
    return occ


#: io_stream layers that keep ``filt_height - 1`` input rows (hls4ml ``LineBuffer`` implementation).
LINE_BUFFER_LAYERS = (
    "Conv2D",
    "PointwiseConv2D",
    "DepthwiseConv2D",
    "Conv2DBatchnorm",
    "ShortSkipConv2D",
    "Pooling2D",
)


def _line_buffer(layer, io_type) -> Buffer | None:
    """``(filt_height-1) x n_chan`` shift registers of depth ``in_width`` (hls4ml LineBuffer conv / pooling)."""
    if io_type != "io_stream":
        return None
    if layer.class_name not in LINE_BUFFER_LAYERS:
        return None
    fh = layer.get_attr("filt_height", layer.get_attr("pool_height"))
    if fh is None or layer.get_attr("in_width") is None or layer.get_attr("n_chan") is None:
        return None
    if str(layer.get_attr("implementation", "linebuffer")).lower() != "linebuffer" or int(fh) <= 1:
        return None
    elem = _elem_width(layer.get_input_variable())
    count = (int(fh) - 1) * int(layer.get_attr("n_chan"))
    return Buffer(
        f"{layer.name}.line_buffer", layer.name, "line_buffer", int(layer.get_attr("in_width")), elem, count
    )


#: Khodamoradi 2021, Table 4.5 (BRAM of Fig. 4.4 on Alveo U250, Vivado HLS), for the comparison report.
DISSERTATION_TABLE_4_5 = {
    "long skip (4.4.a)": 508,
    "no skip (4.4.b)": 406,
    "short skip (4.4.c)": 556,
    "fused short (4.4.d)": 428,
}


def compare(estimates: dict[str, StreamMemory], reference: str | None = None) -> str:
    """Table of total bits and BRAM18 per variant, normalised to ``reference`` (default: the first)."""
    if not estimates:
        raise ValueError("compare needs at least one estimate")
    reference = reference or next(iter(estimates))
    if reference not in estimates:
        raise ValueError(f"reference {reference!r} not among {list(estimates)}")
    ref = estimates[reference]
    rows = [f"{'variant':<22} {'FIFOs':>5} {'buffer bits':>12} {'BRAM18':>7} {'norm':>6}"]
    for name, est in estimates.items():
        norm = est.bram18 / ref.bram18 if ref.bram18 else float("nan")
        rows.append(f"{name:<22} {est.n_fifos:>5} {est.total_bits:>12} {est.bram18:>7} {norm:>6.2f}")
    return "\n".join(rows)
