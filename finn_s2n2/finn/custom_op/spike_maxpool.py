"""``SpikeMaxPool`` / ``SpikeMaxPool_hls``: binary max pooling of spike maps as a FINN HW op (own C++).

Khodamoradi 2021, §2.2.3: S2N2 pools binary spikes with a max, i.e. the OR of the spikes in each window.  FINN
does this with a depthwise sliding window (``ConvolutionInputGenerator``) followed by ``Pool_hls``; finn-plus
1.6.1's ``Pool_hls`` code needs Vitis' ``hls::vector`` and a newer finn-hlslib than the open snapshot this project
compiles against, so a pooled S2N2 partition could not run in C++.  This op does the same function in one
streaming unit with its own header ``finn_s2n2/finn/hls/spike_maxpool.hpp`` (g++ + open ``ap_types``): it reads
the NHWC map directly (no sliding window in front) and keeps one word per output column and channel fold.

Tensors (one frame = one tick, like every S2N2 HW node): input ``(1, H, W, C)`` BINARY per frame, output
``(1, H/KH, W/KW, C)``; python execution and cppsim take any number of frames on axis 0 (pooling has no state
across frames).  Kernel == stride, no padding; rows/columns that do not fill a window are dropped (ONNX
``MaxPool`` floor).  ``PE`` channels per cycle (PE divides C): cycles per frame = ``H * W * C / PE``.

Estimates (labelled estimates; no Vivado): memory ``(W/KW) * (C/PE)`` words of ``PE`` bits, in LUTRAM (the
header binds it there, as FINN's sliding window defaults to ``ram_style="distributed"``: a few hundred bits
would waste a BRAM_18K), LUT = ``2 * PE + 32`` (OR lanes, mux, counters) + LUTRAM bits / 64, no BRAM, no DSP.
"""

from __future__ import annotations

import math
from pathlib import Path

from hwreshape.extras import needs_finn  # noqa: F401  # isort: skip
import numpy as np
from finn.custom_op.fpgadataflow.hlsbackend import HLSBackend
from finn.custom_op.fpgadataflow.hwcustomop import HWCustomOp
from qonnx.core.datatype import DataType

from finn_s2n2.finn import hls
from finn_s2n2.finn.custom_op import cppsim

HEADER = hls.HLS_DIR / "spike_maxpool.hpp"


class SpikeMaxPool(HWCustomOp):
    """Max pooling (= OR) of binary spikes, kernel == stride (FINN abstract HW op)."""

    def get_nodeattr_types(self):
        attrs = {
            "NumChannels": ("i", True, 0),
            "ImgDim": ("ints", True, []),  # [H, W]
            "PoolDim": ("ints", True, []),  # [KH, KW] = stride
            "PE": ("i", False, 1),
            "inputDataType": ("s", False, "BINARY"),
        }
        attrs.update(HWCustomOp.get_nodeattr_types(self))
        return attrs

    def who(self) -> str:
        return f"SpikeMaxPool node '{self.onnx_node.name or '<unnamed>'}'"

    def dims(self):
        """``(H, W, C, PE, KH, KW, OH, OW)``; ValueError naming the node and attribute on bad input."""
        who = self.who()
        img, pool = list(self.get_nodeattr("ImgDim")), list(self.get_nodeattr("PoolDim"))
        c, pe = int(self.get_nodeattr("NumChannels")), int(self.get_nodeattr("PE"))
        if len(img) != 2 or min(img) < 1:
            raise ValueError(f"{who}: attribute ImgDim must be [H, W] >= 1, got {img}")
        if len(pool) != 2 or min(pool) < 1 or pool[0] > img[0] or pool[1] > img[1]:
            raise ValueError(
                f"{who}: attribute PoolDim must be [KH, KW] >= 1 inside ImgDim={img}, got {pool}"
            )
        if c < 1 or pe < 1 or c % pe:
            raise ValueError(f"{who}: attribute PE={pe} must divide NumChannels={c} (both >= 1)")
        if self.get_nodeattr("inputDataType") != "BINARY":
            raise ValueError(
                f"{who}: attribute inputDataType must be BINARY (spikes), got {self.get_nodeattr('inputDataType')}"
            )
        h, w = img
        kh, kw = pool
        return h, w, c, pe, kh, kw, h // kh, w // kw

    # ------------------------------------------------------------------ shapes / types
    def get_input_datatype(self, ind=0):
        return DataType["BINARY"]

    def get_output_datatype(self, ind=0):
        return DataType["BINARY"]

    def get_normal_input_shape(self, ind=0):
        h, w, c = self.dims()[:3]
        return (1, h, w, c)

    def get_normal_output_shape(self, ind=0):
        _, _, c, _, _, _, oh, ow = self.dims()
        return (1, oh, ow, c)

    def get_folded_input_shape(self, ind=0):
        h, w, c, pe = self.dims()[:4]
        return (1, h, w, c // pe, pe)

    def get_folded_output_shape(self, ind=0):
        _, _, c, pe, _, _, oh, ow = self.dims()
        return (1, oh, ow, c // pe, pe)

    def get_instream_width(self, ind=0):
        return int(self.get_nodeattr("PE"))

    def get_outstream_width(self, ind=0):
        return int(self.get_nodeattr("PE"))

    def get_number_output_values(self):
        return int(np.prod(self.get_folded_output_shape()[:-1]))

    def make_shape_compatible_op(self, model):
        """One output frame per input frame: axis 0 follows the input tensor's frame count."""
        oshape = list(self.get_normal_output_shape())
        ishape = model.get_tensor_shape(self.onnx_node.input[0])
        oshape[0] = int(ishape[0]) if ishape else 1
        return self.make_const_shape_op(oshape)

    def infer_node_datatype(self, model):
        self.dims()
        idt = model.get_tensor_datatype(self.onnx_node.input[0])
        if idt != DataType["BINARY"]:
            raise ValueError(
                f"{self.who()}: input tensor '{self.onnx_node.input[0]}' has datatype {idt.name}, "
                f"SpikeMaxPool needs BINARY spikes"
            )
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["BINARY"])

    def verify_node(self):
        try:
            self.dims()
            return ["SpikeMaxPool attributes valid"]
        except ValueError as e:
            return [str(e)]

    # ------------------------------------------------------------------ python execution (the spec)
    def frames_input(self, x) -> np.ndarray:
        """The input as ``(F, H, W, C)`` binary spikes; ValueError naming the node otherwise."""
        h, w, c = self.dims()[:3]
        x = np.asarray(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != (h, w, c) or x.shape[0] < 1:
            raise ValueError(f"{self.who()}: input shape {x.shape} is not (frames, {h}, {w}, {c})")
        if not np.all((x == 0) | (x == 1)):
            raise ValueError(f"{self.who()}: input must be binary spikes (0/1)")
        return x

    def execute_node(self, context, graph):
        node = self.onnx_node
        _, _, c, _, kh, kw, oh, ow = self.dims()
        x = self.frames_input(context[node.input[0]])
        win = x[:, : oh * kh, : ow * kw, :].reshape(x.shape[0], oh, kh, ow, kw, c)
        context[node.output[0]] = win.max(axis=(2, 4)).astype(np.float32)

    # ------------------------------------------------------------------ estimates
    def calc_mem(self) -> int:
        """Depth of the partial-OR memory: (W/KW) * (C/PE) words of PE bits."""
        _, _, c, pe, _, _, _, ow = self.dims()
        return ow * (c // pe)

    def bram_estimation(self, fpgapart=None):
        return 0  # the partial-OR memory is bound to LUTRAM (spike_maxpool.hpp)

    def lut_estimation(self, fpgapart=None):
        pe = int(self.get_nodeattr("PE"))
        return 2 * pe + 32 + math.ceil(self.calc_mem() * pe / 64)

    def dsp_estimation(self, fpgapart=None):
        return 0

    def uram_estimation(self, fpgapart=None):
        return 0

    def get_exp_cycles(self):
        """Cycles per frame (= per tick): one input word per cycle, ``H * W * C / PE``."""
        h, w, c, pe = self.dims()[:4]
        return h * w * (c // pe)

    def get_op_and_param_counts(self):
        return {}


class SpikeMaxPool_hls(SpikeMaxPool, HLSBackend):
    """``SpikeMaxPool`` implemented by ``s2n2::SpikeMaxPool`` (HLS C++, ``spike_maxpool.hpp``).

    cppsim as for ``LIF_MVAU_hls``: own main, raw spike bytes in/out, g++ with the open ``ap_types``."""

    def get_nodeattr_types(self):
        attrs = SpikeMaxPool.get_nodeattr_types(self)
        attrs.update(HLSBackend.get_nodeattr_types(self))
        return attrs

    def template_args(self) -> str:
        h, w, c, pe, kh, kw = self.dims()[:6]
        return f"{h}, {w}, {c}, {pe}, {kh}, {kw}"

    # ------------------------------------------------------------------ cppsim
    def code_generation_cppsim(self, model):
        node = self.onnx_node
        path = Path(self.get_nodeattr("code_gen_dir_cppsim"))
        path.mkdir(parents=True, exist_ok=True)
        h, w, c, pe = self.dims()[:4]
        src = f"""// generated by finn_s2n2 for node {node.name}: cppsim of s2n2::SpikeMaxPool
// One call of the top function per frame (= tick); the number of frames is read from input_0.bin's size.
#include <cstdio>
#include <cstdint>
#include <vector>
#include "spike_maxpool.hpp"

int main() {{
    const unsigned FRAME = {h * w * c};
    std::vector<uint8_t> x;
    FILE *f = std::fopen("input_0.bin", "rb");
    if (!f) {{ std::fprintf(stderr, "no input_0.bin\\n"); return 1; }}
    int ch;
    while ((ch = std::fgetc(f)) != EOF) x.push_back((uint8_t)ch);
    std::fclose(f);
    if (x.size() % FRAME) {{ std::fprintf(stderr, "input_0.bin is not whole frames\\n"); return 1; }}
    std::vector<uint8_t> res;
    for (size_t base = 0; base < x.size(); base += FRAME) {{
        hls::stream<ap_uint<{pe}> > in("in0");
        hls::stream<ap_uint<{pe}> > out("out");
        for (unsigned i = 0; i < FRAME; i += {pe}) {{
            ap_uint<{pe}> word = 0;
            for (unsigned p = 0; p < {pe}; p++) word[p] = x[base + i + p] & 1;
            in.write(word);
        }}
        s2n2::SpikeMaxPool<{self.template_args()}>(in, out);
        if (!in.empty()) {{ std::fprintf(stderr, "input stream not drained\\n"); return 2; }}
        while (!out.empty()) {{
            ap_uint<{pe}> word = out.read();
            for (unsigned p = 0; p < {pe}; p++) res.push_back((uint8_t)word[p]);
        }}
    }}
    FILE *o = std::fopen("output_0.bin", "wb");
    std::fwrite(res.data(), 1, res.size(), o);
    std::fclose(o);
    return 0;
}}
"""
        (path / f"execute_{node.op_type}.cpp").write_text(src)

    def compile_singlenode_code(self):
        cppsim.compile_node(self)

    def execute_node(self, context, graph):
        if not cppsim.is_cppsim(self):
            return SpikeMaxPool.execute_node(self, context, graph)
        node = self.onnx_node
        x = self.frames_input(context[node.input[0]])
        out = cppsim.run_node(self, x, np.uint8)
        oshape = (x.shape[0],) + tuple(self.get_normal_output_shape()[1:])
        if out.size != int(np.prod(oshape)):
            raise RuntimeError(f"{self.who()}: cppsim wrote {out.size} values, expected {oshape}")
        context[node.output[0]] = out.reshape(oshape).astype(np.float32)

    # ------------------------------------------------------------------ HLS code generation (ipgen)
    def global_includes(self):
        self.code_gen_dict["$GLOBALS$"] = ['#include "spike_maxpool.hpp"']

    def defines(self, var):
        self.code_gen_dict["$DEFINES$"] = []

    def generate_params(self, model, path):
        """A copy of ``spike_maxpool.hpp`` next to the generated top function."""
        import shutil

        Path(path).mkdir(parents=True, exist_ok=True)
        shutil.copy(HEADER, Path(path) / HEADER.name)

    def docompute(self):
        self.code_gen_dict["$DOCOMPUTE$"] = [f"s2n2::SpikeMaxPool<{self.template_args()}>(in0_V, out0_V);"]

    def blackboxfunction(self):
        pe = self.get_nodeattr("PE")
        self.code_gen_dict["$BLACKBOXFUNCTION$"] = [
            f"void {self.onnx_node.name}(hls::stream<ap_uint<{pe}>> &in0_V, hls::stream<ap_uint<{pe}>> &out0_V)"
        ]

    def pragmas(self):
        self.code_gen_dict["$PRAGMAS$"] = [
            "#pragma HLS INTERFACE axis port=in0_V",
            "#pragma HLS INTERFACE axis port=out0_V",
            "#pragma HLS INTERFACE ap_ctrl_none port=return",
        ]


# complete a registration that was deferred because this module was imported before finn-plus
from finn_s2n2.finn.custom_op.registration import register_finn  # noqa: E402

register_finn()
