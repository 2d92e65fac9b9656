"""``LIF_MVAU``: FINN's matrix-vector unit with a LIF neuron instead of thresholds (abstract HW op).

Khodamoradi 2021, ch. 2, §2.2.3 and Fig 2.7 (MVTU with LIF: accumulator initialised with the decayed membrane,
SIMD lanes that load a weight only where the input bit is 1, comparator, reset selector, last-tick control,
per-label output counters), Eq 2.2–2.4, §2.2.2 (delays applied once at the output).
The python execution below is the specification; ``LIF_MVAU_hls`` (own C++) matches it bit for bit.

Tensors: one frame = one tick (FINN-native shapes)
--------------------------------------------------
Like FINN's MVAU, the attributes describe ONE frame, and a frame is one tick:
``numInputVectors = [1]`` (dense) or ``[1, OH, OW]`` (after a sliding-window unit).  ``numTicks`` frames make
one sample; the hardware counts them with a tick counter that clears the membranes (and the counters of
``outputMode="counts"``) after the last tick of every sample, so consecutive frames of the stream are
consecutive ticks (sample-major: frame ``f`` is tick ``f % numTicks`` of sample ``f // numTicks``).

input 0: binary spikes, per frame ``(1, *positions, MW)`` (FINN DataType BINARY).  Python execution and
cppsim take any number ``F`` of frames on axis 0, ``F`` a multiple of ``numTicks`` (whole samples).
input 1: integer weights ``(MW, MH)`` (initializer, ``weightDataType``).
output: spikes, per frame ``(1, *positions, MH)`` (BINARY), or with ``outputMode="counts"`` the per-neuron
spike counters, one frame ``(1, *positions, MH)`` (UINT, ``count_bits(numTicks)`` bits) emitted after the
last tick of each sample (F / numTicks output frames for F input frames).

Estimates (labelled as *estimates*; no Vivado here)
---------------------------------------------------
* BRAM_18K = per PE (the HLS kernel partitions its memories per PE): weight memory (depth
  ``MW*MH/(PE*SIMD)`` x width ``SIMD*W``) + membrane memory (depth ``P*MH/PE`` x ``acc_bits``, the dominant
  term per the dissertation's synthesis results) + delay line; a memory uses LUTRAM when ``ram_style="distributed"`` or (``"auto"``) when it
  has at most 64 words.  BRAM_18K blocks per memory: :func:`bram18_blocks` (aspect ratios 512x36 ...
  16384x1).
* LUT = ``PE * (SIMD * cur_bits + 4 * acc_bits + count_bits) + 64`` + LUTRAM bits / 64 (gated adder tree
  of SIMD lanes, decay subtractor, membrane adder, saturation + comparator + reset mux, counter, control).
* DSP = 0 (decay by shift-subtract, §2.3 "Synthesis Results"; no multiplier).
* cycles per frame (= per tick, FINN's unit) = ``positions * (MH/PE) * (MW/SIMD)``; one sample takes
  ``numTicks`` frames.
"""

from __future__ import annotations

import math

from hwreshape.extras import needs_finn  # noqa: F401  # isort: skip
import numpy as np
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from qonnx.core.datatype import DataType

from finn_s2n2 import numerics
from finn_s2n2.finn.custom_op.lif_attrs import LIF_NODEATTRS, apply_delay, validate_lif_attrs


def bram18_blocks(depth: int, width: int) -> int:
    """BRAM_18K blocks for a depth x width memory (aspect ratios 512x36, 1kx18, 2kx9, 4kx4, 8kx2, 16kx1)."""
    if depth <= 0 or width <= 0:
        return 0
    for d, w in ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2)):
        if depth <= d:
            return math.ceil(width / w)
    return math.ceil(width / 1) * math.ceil(depth / 16384)


class LIF_MVAU(HWCustomOp):
    """Matrix-vector unit with LIF activation over ticks (FINN abstract hardware op)."""

    _ATTR_CACHE: dict = {}

    def get_nodeattr_types(self):
        # qonnx calls this on every get_nodeattr; the dictionary only depends on the class, so build it once
        cached = LIF_MVAU._ATTR_CACHE.get(type(self))
        if cached is None:
            cached = LIF_MVAU._ATTR_CACHE[type(self)] = self._build_nodeattr_types()
        return dict(cached)

    def _build_nodeattr_types(self):
        attrs = {
            "MW": ("i", True, 0),
            "MH": ("i", True, 0),
            "SIMD": ("i", True, 0),
            "PE": ("i", True, 0),
            "numInputVectors": ("ints", False, [1]),
            "inputDataType": ("s", False, "BINARY"),
            "weightDataType": ("s", False, "INT8"),
            "ram_style": ("s", False, "auto"),
            "resType": ("s", False, "lut"),
            "mem_mode": ("s", False, "internal_embedded"),
        }
        attrs.update(LIF_NODEATTRS)
        attrs.update(HWCustomOp.get_nodeattr_types(self))
        return attrs

    # ------------------------------------------------------------------ validation
    def who(self) -> str:
        return f"LIF_MVAU node '{self.onnx_node.name or '<unnamed>'}'"

    def params(self):
        """Validate every attribute; ValueError naming the node and attribute on bad input."""
        p = validate_lif_attrs(self)
        who = self.who()
        mw, mh, simd, pe = (int(self.get_nodeattr(a)) for a in ("MW", "MH", "SIMD", "PE"))
        for name, v in (("MW", mw), ("MH", mh), ("SIMD", simd), ("PE", pe)):
            if v < 1:
                raise ValueError(f"{who}: attribute {name} must be >= 1, got {v}")
        if mw % simd:
            raise ValueError(f"{who}: SIMD={simd} does not divide MW={mw}")
        if mh % pe:
            raise ValueError(f"{who}: PE={pe} does not divide MH={mh}")
        idt = self.get_nodeattr("inputDataType")
        if idt != "BINARY":
            raise ValueError(f"{who}: inputDataType must be BINARY (spikes), got {idt}")
        wdt_name = self.get_nodeattr("weightDataType")
        try:
            wdt = DataType[wdt_name]
        except (KeyError, AttributeError) as e:
            raise ValueError(f"{who}: weightDataType={wdt_name!r} is not a FINN DataType") from e
        if wdt == DataType["BIPOLAR"]:
            raise ValueError(f"{who}: weightDataType BIPOLAR is not supported; store +-1 weights as INT2")
        if not wdt.is_integer() or wdt.bitwidth() > 24:
            raise ValueError(f"{who}: weightDataType must be an integer type of <= 24 bits, got {wdt_name}")
        vecs = [int(v) for v in self.get_nodeattr("numInputVectors")]
        if not vecs or vecs[0] != 1 or any(v < 1 for v in vecs):
            raise ValueError(
                f"{who}: attribute numInputVectors={vecs} must describe one frame (one tick): [1] for a dense "
                f"layer or [1, OH, OW] after a sliding window; the ticks are frames (numTicks={p.num_ticks})"
            )
        if p.tick_axis != 0:
            raise ValueError(
                f"{who}: attribute tickAxis={p.tick_axis}: LIF_MVAU streams ticks as frames on axis 0 (tickAxis=0)"
            )
        return p

    def get_weight_datatype(self):
        return DataType[self.get_nodeattr("weightDataType")]

    def cur_bits(self) -> int:
        """Width of the Eq 2.2 current accumulator (never overflows)."""
        return numerics.current_bits(self.get_nodeattr("MW"), self.get_weight_datatype().bitwidth())

    def positions(self) -> tuple[int, tuple[int, ...]]:
        """``(P, positions)``: output positions per tick (``OH*OW`` of a convolution, 1 for dense)."""
        vecs = [int(v) for v in self.get_nodeattr("numInputVectors")]
        pos = tuple(vecs[1:])
        return math.prod(pos), pos

    def num_samples(self, frames: int) -> int:
        """Samples in ``frames`` streamed frames; ValueError naming the node unless whole samples."""
        t = self.params().num_ticks
        if frames < 1 or frames % t:
            raise ValueError(
                f"{self.who()}: got {frames} frames, not a multiple of numTicks={t} "
                f"(one frame = one tick: feed whole samples of numTicks frames)"
            )
        return frames // t

    # ------------------------------------------------------------------ shapes / types
    def get_input_datatype(self, ind=0):
        if ind == 0:
            return DataType[self.get_nodeattr("inputDataType")]
        if ind == 1:
            return self.get_weight_datatype()
        raise ValueError(f"{self.who()}: no input {ind}")

    def get_output_datatype(self, ind=0):
        p = validate_lif_attrs(self)
        return DataType["BINARY"] if p.output_mode == "spikes" else DataType[f"UINT{p.count_bits}"]

    def get_normal_input_shape(self, ind=0):
        mw = self.get_nodeattr("MW")
        if ind == 0:
            return tuple(list(self.get_nodeattr("numInputVectors")) + [mw])
        if ind == 1:
            return (mw, self.get_nodeattr("MH"))
        raise ValueError(f"{self.who()}: no input {ind}")

    def get_normal_output_shape(self, ind=0):
        """One output frame: ``(1, *positions, MH)`` (spikes every tick, or counters once per sample)."""
        vecs = [int(v) for v in self.get_nodeattr("numInputVectors")]
        return tuple(vecs + [self.get_nodeattr("MH")])

    def get_folded_input_shape(self, ind=0):
        mw, simd = self.get_nodeattr("MW"), self.get_nodeattr("SIMD")
        if ind != 0:
            raise ValueError(f"{self.who()}: weights are embedded (internal_embedded), no weight stream")
        return tuple(list(self.get_nodeattr("numInputVectors")) + [mw // simd, simd])

    def get_folded_output_shape(self, ind=0):
        mh, pe = self.get_nodeattr("MH"), self.get_nodeattr("PE")
        oshape = list(self.get_normal_output_shape())
        return tuple(oshape[:-1] + [mh // pe, pe])

    def get_instream_width(self, ind=0):
        if ind == 0:
            return self.get_nodeattr("SIMD") * self.get_input_datatype(0).bitwidth()
        return 0

    def get_outstream_width(self, ind=0):
        return self.get_nodeattr("PE") * self.get_output_datatype().bitwidth()

    def get_number_output_values(self):
        return int(np.prod(self.get_folded_output_shape()[:-1]))

    def make_shape_compatible_op(self, model):
        """FINN's per-frame output shape, with axis 0 scaled to the frames of the input tensor when the graph
        carries whole samples (``F`` frames in -> ``F`` spike frames, or ``F / numTicks`` counter frames)."""
        p = self.params()
        oshape = list(self.get_normal_output_shape())
        ishape = model.get_tensor_shape(self.onnx_node.input[0])
        frames = int(ishape[0]) if ishape else 1
        if p.output_mode == "spikes":
            oshape[0] = frames
        elif frames % p.num_ticks == 0:
            oshape[0] = frames // p.num_ticks
        return self.make_const_shape_op(oshape)

    def infer_node_datatype(self, model):
        node = self.onnx_node
        self.params()
        idt = model.get_tensor_datatype(node.input[0])
        if idt != DataType["BINARY"]:
            raise ValueError(
                f"{self.who()}: input tensor '{node.input[0]}' has datatype {idt.name}, "
                f"LIF_MVAU needs BINARY spikes"
            )
        w = model.get_initializer(node.input[1])
        if w is not None:
            self.check_weights(w)
        model.set_tensor_datatype(node.output[0], self.get_output_datatype())

    def check_weights(self, w):
        mw, mh = self.get_nodeattr("MW"), self.get_nodeattr("MH")
        w = np.asarray(w)
        if w.shape != (mw, mh):
            raise ValueError(f"{self.who()}: weights have shape {w.shape}, expected (MW, MH)=({mw}, {mh})")
        wdt = self.get_weight_datatype()
        if not (np.all(w == np.round(w)) and wdt.allowed(w.min()) and wdt.allowed(w.max())):
            raise ValueError(
                f"{self.who()}: weights must be integers inside {wdt.name} "
                f"[{wdt.min()}, {wdt.max()}], got range [{w.min()}, {w.max()}]"
            )

    # ------------------------------------------------------------------ FINN bit-width passes
    def minimize_weight_bit_width(self, model, datatype_only=False):
        """FINN's ``MinimizeWeightBitWidth``: the smallest signed integer type that holds the weights."""
        w = model.get_initializer(self.onnx_node.input[1])
        if w is None:
            return DataType[self.get_nodeattr("weightDataType")]
        bits = 2
        lo, hi = int(np.min(w, initial=0)), int(np.max(w, initial=0))
        while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
            bits += 1
        if bits < self.get_weight_datatype().bitwidth():
            self.set_nodeattr("weightDataType", f"INT{bits}")
            model.set_tensor_datatype(self.onnx_node.input[1], DataType[f"INT{bits}"])
        return self.get_weight_datatype()

    def minimize_accumulator_width(self, model, datatype_only=False):
        """FINN's ``MinimizeAccumulatorWidth``: the Eq 2.2 current register is already minimal
        (:meth:`cur_bits`, from MW and the weight width); the membrane width ``accDataType`` is part of the
        neuron's semantics (saturation/wrap point, threshold range) and is kept."""
        return DataType[self.get_nodeattr("accDataType")]

    def verify_node(self):
        try:
            self.params()
            return ["LIF_MVAU attributes valid"]
        except (ValueError, TypeError) as e:
            return [str(e)]

    # ------------------------------------------------------------------ python execution (the spec)
    def execute_node(self, context, graph):
        node = self.onnx_node
        p = self.params()
        mw, mh = self.get_nodeattr("MW"), self.get_nodeattr("MH")
        npos, pos = self.positions()
        x = self.stream_input(context[node.input[0]])
        frames = x.shape[0]
        n = self.num_samples(frames)
        if not np.all((x == 0) | (x == 1)):
            raise ValueError(f"{self.who()}: input must be binary spikes (0/1)")
        w = context[node.input[1]]
        spikes_in = x.reshape(n, p.num_ticks, npos, mw)
        current = numerics.spike_current(spikes_in, w)  # Eq 2.2, (N, T, P, MH)
        spikes = numerics.lif_sequence(
            current,
            decay_shift=p.decay_shift,
            threshold=p.threshold,
            acc_bits=p.acc_bits,
            overflow_mode=p.overflow,
            reset_mode=p.reset,
        )
        spikes = apply_delay(spikes, p.delay, tick_axis=1)
        if p.output_mode == "counts":
            out = spikes.sum(axis=1).reshape((n, *pos, mh))
        else:
            out = spikes.reshape((frames, *pos, mh))
        context[node.output[0]] = out.astype(np.float32)

    def stream_input(self, x):
        """The input as ``(F, *positions, MW)`` for ``F`` frames.  A tensor of another shape with the same
        stream order is accepted (e.g. an NHWC map ``(F, H, W, C)`` feeding a dense layer after the flatten
        was absorbed by :class:`~finn_s2n2.finn.transformation.AbsorbTransposeFlattenIntoLIFMVAU`)."""
        x = np.asarray(x)
        npos, pos = self.positions()
        per_frame = npos * self.get_nodeattr("MW")
        if x.ndim < 1 or x.shape[0] < 1 or x.size != x.shape[0] * per_frame:
            raise ValueError(
                f"{self.who()}: input shape {x.shape} is not (frames, {', '.join(map(str, pos + (self.get_nodeattr('MW'),)))})"
            )
        return x.reshape((x.shape[0], *pos, self.get_nodeattr("MW")))

    # ------------------------------------------------------------------ estimates
    def calc_wmem(self):
        self.params()
        return (
            self.get_nodeattr("MW")
            * self.get_nodeattr("MH")
            // (self.get_nodeattr("PE") * self.get_nodeattr("SIMD"))
        )

    def calc_mmem(self):
        """Depth of each PE's membrane memory: positions x MH / PE."""
        self.params()
        return self.positions()[0] * self.get_nodeattr("MH") // self.get_nodeattr("PE")

    def _on_bram(self, depth: int) -> bool:
        style = self.get_nodeattr("ram_style")
        if style == "distributed":
            return False
        if style in ("block", "ultra"):
            return True
        return depth > 64

    def weight_bram_estimation(self) -> int:
        """One weight memory per PE (the HLS kernel partitions PE, packs the SIMD lanes into one word):
        PE x blocks(depth MW*MH/(PE*SIMD), width SIMD * weight bits)."""
        pe, simd = self.get_nodeattr("PE"), self.get_nodeattr("SIMD")
        depth = self.calc_wmem()
        width = simd * self.get_weight_datatype().bitwidth()
        return pe * bram18_blocks(depth, width) if self._on_bram(depth) else 0

    def membrane_bram_estimation(self) -> int:
        """One membrane memory per PE (partitioned in the HLS kernel): PE x blocks(P*MH/PE, acc bits)."""
        p = self.params()
        depth = self.calc_mmem()
        return self.get_nodeattr("PE") * bram18_blocks(depth, p.acc_bits) if self._on_bram(depth) else 0

    def delay_bram_estimation(self) -> int:
        p = self.params()
        if p.output_mode == "counts" or p.delay == 0:
            return 0
        depth = p.delay * self.calc_mmem()
        return self.get_nodeattr("PE") * bram18_blocks(depth, 1) if self._on_bram(depth) else 0

    def bram_estimation(self, fpgapart=None):
        return self.weight_bram_estimation() + self.membrane_bram_estimation() + self.delay_bram_estimation()

    def lut_estimation(self, fpgapart=None):
        p = self.params()
        pe, simd = self.get_nodeattr("PE"), self.get_nodeattr("SIMD")
        count = p.count_bits if p.output_mode == "counts" else 0
        luts = pe * (simd * self.cur_bits() + 4 * p.acc_bits + count) + 64
        lutram_bits = 0
        if not self._on_bram(self.calc_wmem()):
            lutram_bits += self.calc_wmem() * pe * simd * self.get_weight_datatype().bitwidth()
        if not self._on_bram(self.calc_mmem()):
            lutram_bits += self.calc_mmem() * pe * p.acc_bits
        return int(luts + math.ceil(lutram_bits / 64))

    def dsp_estimation(self, fpgapart=None):
        return 0

    def uram_estimation(self, fpgapart=None):
        return 0

    def get_exp_cycles(self):
        """Cycles per frame (= per tick): positions x (MH/PE) x (MW/SIMD), like FINN's MVAU."""
        self.params()
        mw, mh = self.get_nodeattr("MW"), self.get_nodeattr("MH")
        return self.positions()[0] * (mh // self.get_nodeattr("PE")) * (mw // self.get_nodeattr("SIMD"))

    def get_op_and_param_counts(self):
        vecs = [int(v) for v in self.get_nodeattr("numInputVectors")]
        mw, mh = self.get_nodeattr("MW"), self.get_nodeattr("MH")
        wbits = self.get_weight_datatype().bitwidth()
        return {
            f"op_mac_SCALEDINT{wbits}_BINARY": int(np.prod(vecs)) * mw * mh,  # per frame (tick)
            f"param_weight_INT{wbits}": mw * mh,
            "param_membrane_bits": self.calc_mmem() * self.get_nodeattr("PE") * self.params().acc_bits,
        }


# complete a registration that was deferred because this module was imported before finn-plus
from finn_s2n2.finn.custom_op.registration import register_finn  # noqa: E402

register_finn()
