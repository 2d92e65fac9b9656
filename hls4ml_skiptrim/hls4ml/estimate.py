"""Stream-memory / BRAM18 *estimate* of a converted hls4ml model (the estimate analogue of seed Table 4.5).

Seed: ``shared/seeds/002_109d4a7c65ddce44.txt`` chapter 4, Table 4.5 (BRAM of Fig. 4.4: long skip 508, no skip
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
* **Fused layer.**  :class:`~hls4ml_skiptrim.hls4ml.layers.ShortSkipConv2D` reads its skip operand from the centre
  tap of its own window: no Clone copy and no Add stream, only its line buffer.

Deviation from the seed's hardware numbers: the seed counts every BRAM of the synthesised design (weights,
Vivado's FIFO choices, the Add's buffer); this model counts activation buffers only, so ratios between
variants are larger than Table 4.5's (the fixed weight cost is left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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
    kind: str  # 'stream' | 'line_buffer' | 'registers' | 'port'
    depth: int
    width: int
    count: int = 1  # identical memories (e.g. one shift register per channel)

    @property
    def bits(self) -> int:
        return 0 if self.kind == "port" else self.depth * self.width * self.count

    @property
    def bram18(self) -> int:
        if self.kind in ("port", "registers"):
            return 0
        return bram18_for(self.depth, self.width) * self.count


@dataclass
class StreamMemory:
    """Result of :func:`stream_memory`: buffers, per-layer sums and totals (``total_bits``, ``bram18``)."""

    model_name: str
    io_type: str
    buffers: list[Buffer] = field(default_factory=list)

    @property
    def total_bits(self) -> int:
        return sum(b.bits for b in self.buffers)

    @property
    def bram18(self) -> int:
        return sum(b.bram18 for b in self.buffers)

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


def stream_memory(hls_model) -> StreamMemory:
    """Estimate stream FIFO and line-buffer memory of a converted (not necessarily compiled) hls4ml model."""
    if not hasattr(hls_model, "get_layers") or not hasattr(hls_model, "config"):
        raise TypeError(f"stream_memory expects an hls4ml ModelGraph, got {type(hls_model).__name__}")
    io_type = hls_model.config.get_config_value("IOType")
    ports = set(hls_model.inputs) | set(hls_model.outputs)
    res = StreamMemory(hls_model.config.get_project_name(), io_type)
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
            else:
                depth, width = math.prod(shape), elem
                kind = "port" if out_name in ports else "registers"
            res.buffers.append(Buffer(var.name, layer.name, kind, depth, width))
        lb = _line_buffer(layer, io_type)
        if lb is not None:
            res.buffers.append(lb)
    return res


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


#: Seed Table 4.5 (BRAM of Fig. 4.4 on Alveo U250, Vivado HLS), for the comparison report.
SEED_TABLE_4_5 = {
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
