"""Graph transformations that map the front-end's QONNX pattern onto S2N2 hardware ops in FINN.

Khodamoradi 2021, ch. 2, §2.2.3 (convolutions = FINN sliding-window unit + LIF MVTU; binary max pooling, which
the chapter does with FINN's pooling unit "as is" — here by default our C++-simulable ``SpikeMaxPool``, the
same OR over each window, see :data:`POOL_IMPLS`), §2.2.2 (fixed per-layer delays pushed to the network output).

Input pattern (what :mod:`finn_s2n2.finn.custom_op.lif` documents for the exporter):

* ``MatMul(spikes, W) -> LIF``: ``spikes`` BINARY ``(frames, MW)`` (``tickAxis=0``) or ``(N, T, MW)``
  (``tickAxis=1``); ``W`` an integer initializer ``(MW, MH)`` or a ``Quant`` node with constant inputs,
  zero point 0 and scale 1 (the integer grid itself);
* ``Conv(spikes, W) -> LIF`` in NCHW with ``frames = N*T`` on axis 0 (``tickAxis=0``), no bias, group 1,
  dilation 1; zero padding becomes FINN's ``FMPadding``;
* ``MaxPool`` (kernel = stride, no padding) on spikes, NCHW;
* ``Flatten``/``Reshape`` from NCHW ``(frames, C, H, W)`` to ``(frames, C*H*W)`` before a dense layer.

Output: ``Transpose`` (NCHW->NHWC) at the graph input, then only FINN HW nodes — ``FMPadding``,
``ConvolutionInputGenerator``, ``SpikeMaxPool`` (binary MaxPool; or FINN's depthwise sliding window + ``Pool``
with ``pool_impl="finn"``) and ``LIF_MVAU`` — so that FINN's dataflow partitioning, specialisation and
estimate reports take the whole network.

FINN-native shapes: one frame = one tick.  Every HW node's attributes describe one frame, exactly as for an
MVAU network (``LIF_MVAU`` gets ``numInputVectors = [1]`` or ``[1, OH, OW]`` plus ``numTicks``), so FINN's own
passes (InsertDWC, InsertFIFO, SetFolding, estimates, code generation) see consistent folded shapes.  The
graph tensors keep the exported frame count (``N x numTicks`` frames on axis 0, sample-major) so that whole
samples can be executed; FINN's sliding-window and padding ops annotate one frame in their shape functions,
and :class:`FixTickBatchShapes` re-annotates their outputs with the real frame count for execution.
"""

from __future__ import annotations

import numpy as np
from onnx import helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.registry import getCustomOp
from qonnx.transformation.base import Transformation
from qonnx.transformation.general import RemoveUnusedTensors
from qonnx.transformation.infer_datatypes import InferDataTypes
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.transformation.remove import RemoveUnusedNodes
from qonnx.util.basic import get_by_name

from finn_s2n2.finn.custom_op.lif_attrs import LIF_NODEATTRS
from finn_s2n2.finn.custom_op.registration import register_finn

FD = "finn.custom_op.fpgadataflow"


def _attr(node, name, default=None):
    a = get_by_name(node.attribute, name)
    return default if a is None else helper.get_attribute_value(a)


def _weight_values(model, node, tensor):
    """Integer weights from an initializer or a constant Quant node (scale 1, zero point 0)."""
    w = model.get_initializer(tensor)
    if w is None:
        prod = model.find_producer(tensor)
        if prod is None or prod.op_type != "Quant":
            raise ValueError(
                f"{node.op_type} node '{node.name}': weights '{tensor}' must be an initializer or a "
                f"constant Quant node"
            )
        vals = [model.get_initializer(i) for i in prod.input]
        if any(v is None for v in vals):
            raise ValueError(f"Quant node '{prod.name}' feeding '{node.name}' must have constant inputs")
        x, scale, zeropt, bits = vals
        if not (np.all(scale == 1) and np.all(zeropt == 0)):
            raise ValueError(
                f"Quant node '{prod.name}' feeding '{node.name}': LIF layers need integer weights "
                f"(scale 1, zero point 0); fold the scale into the LIF threshold before export"
            )
        from qonnx.custom_op.general.quant import quant

        w = quant(
            x,
            scale,
            zeropt,
            bits,
            signed=_attr(prod, "signed", 1),
            narrow=_attr(prod, "narrow", 0),
            rounding_mode=_attr(prod, "rounding_mode", b"ROUND").decode()
            if isinstance(_attr(prod, "rounding_mode", b"ROUND"), bytes)
            else _attr(prod, "rounding_mode", "ROUND"),
        )
    w = np.asarray(w)
    if not np.all(w == np.round(w)):
        raise ValueError(f"{node.op_type} node '{node.name}': weights '{tensor}' are not integers")
    return w


def _smallest_int_type(w) -> str:
    bits = 2
    lo, hi = int(np.min(w, initial=0)), int(np.max(w, initial=0))
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return f"INT{bits}"


def _lif_attrs(lif_node):
    inst = getCustomOp(lif_node)
    inst.params()  # validate: errors name the LIF node and attribute
    return {k: inst.get_nodeattr(k) for k in LIF_NODEATTRS}


def _require_binary(model, tensor, who):
    dt = model.get_tensor_datatype(tensor)
    if dt != DataType["BINARY"]:
        raise ValueError(
            f"{who}: input '{tensor}' has datatype {dt.name}; S2N2 layers take BINARY spikes "
            f"(annotate the graph input, or feed the output of a LIF node)"
        )


#: how a binary MaxPool is mapped: our streaming ``SpikeMaxPool`` (default) or FINN's depthwise sliding window
#: + ``Pool`` (FINN's pooling unit as in §2.2.3; its ``Pool_hls`` C++ needs Vitis' ``hls::vector`` and a newer
#: finn-hlslib, so such a partition runs only in python and estimates)
POOL_IMPLS = ("s2n2", "finn")


class InferLIFLayers(Transformation):
    """``MatMul``/``Conv`` + ``LIF`` -> ``LIF_MVAU`` (+ ``FMPadding``/``ConvolutionInputGenerator``); binary
    ``MaxPool`` -> ``SpikeMaxPool`` (``pool_impl="s2n2"``, default) or ``ConvolutionInputGenerator`` + ``Pool``
    (``pool_impl="finn"``).  One rewrite per call (FINN style)."""

    def __init__(self, pool_impl: str = "s2n2"):
        super().__init__()
        if pool_impl not in POOL_IMPLS:
            raise ValueError(f"InferLIFLayers: pool_impl must be one of {POOL_IMPLS}, got {pool_impl!r}")
        self.pool_impl = pool_impl

    def apply(self, model):
        register_finn()
        for node in model.graph.node:
            if node.op_type == "LIF" and node.domain == "finn_s2n2":
                prod = model.find_producer(node.input[0])
                if prod is None or prod.op_type not in ("MatMul", "Conv"):
                    raise ValueError(
                        f"LIF node '{node.name}': input must come from a MatMul or Conv "
                        f"(got {prod.op_type if prod else 'graph input'})"
                    )
                if len(model.find_consumers(prod.output[0]) or []) != 1:
                    raise ValueError(f"{prod.op_type} node '{prod.name}' feeds more than the LIF node")
                if prod.op_type == "MatMul":
                    self._dense(model, prod, node)
                else:
                    self._conv(model, prod, node)
                return model, True
            if node.op_type == "MaxPool" and node.domain == "":
                if model.get_tensor_datatype(node.input[0]) == DataType["BINARY"]:
                    if self.pool_impl == "s2n2":
                        self._spike_maxpool(model, node)
                    else:
                        self._maxpool(model, node)
                    return model, True
        return model, False

    # -------------------------------------------------------------- dense
    def _dense(self, model, mm, lif):
        attrs = _lif_attrs(lif)
        who = f"MatMul node '{mm.name}'"
        if attrs["tickAxis"] != 0:
            raise ValueError(
                f"LIF node '{lif.name}': attribute tickAxis=1 is not streamable; export frames N*T on axis 0 "
                f"(tickAxis=0), one frame per tick"
            )
        x = mm.input[0]
        _require_binary(model, x, who)
        w = _weight_values(model, mm, mm.input[1])
        if w.ndim != 2:
            raise ValueError(f"{who}: weights must be 2-D (MW, MH), got {w.shape}")
        ishape = list(model.get_tensor_shape(x))
        mw, mh = w.shape
        if len(ishape) != 2 or ishape[1] != mw:
            raise ValueError(f"{who}: input shape {ishape} is not (frames, MW={mw})")
        wname = model.make_new_valueinfo_name()
        model.set_initializer(wname, w.astype(np.float32))
        wdt = _smallest_int_type(w)
        model.set_tensor_datatype(wname, DataType[wdt])
        new = helper.make_node(
            "LIF_MVAU",
            [x, wname],
            [lif.output[0]],
            domain=FD,
            backend="fpgadataflow",
            name=f"LIF_MVAU_{lif.name}",
            MW=mw,
            MH=mh,
            SIMD=1,
            PE=1,
            numInputVectors=[1],
            inputDataType="BINARY",
            weightDataType=wdt,
            **attrs,
        )
        idx = list(model.graph.node).index(mm)
        model.graph.node.insert(idx, new)
        model.graph.node.remove(mm)
        model.graph.node.remove(lif)
        getCustomOp(new).params()

    # -------------------------------------------------------------- conv
    def _conv(self, model, conv, lif):
        attrs = _lif_attrs(lif)
        who = f"Conv node '{conv.name}'"
        if attrs["tickAxis"] != 0:
            raise ValueError(f"LIF node '{lif.name}' after a Conv needs tickAxis=0 (frames N*T on axis 0)")
        if (
            len(conv.input) > 2
            and model.get_initializer(conv.input[2]) is not None
            and np.any(model.get_initializer(conv.input[2]) != 0)
        ):
            raise ValueError(f"{who}: a bias is not supported by LIF_MVAU (Eq 2.2 has none)")
        if _attr(conv, "group", 1) != 1 or any(d != 1 for d in _attr(conv, "dilations", [1, 1])):
            raise ValueError(f"{who}: only group=1, dilation=1 convolutions are supported")
        x = conv.input[0]
        _require_binary(model, x, who)
        w = _weight_values(model, conv, conv.input[1])
        if w.ndim != 4:
            raise ValueError(f"{who}: 2-D convolutions (OIHW weights) only, got weights {w.shape}")
        cout, cin, kh, kw = w.shape
        frames, c, h, wd = model.get_tensor_shape(x)
        if c != cin:
            raise ValueError(f"{who}: input has {c} channels, weights expect {cin}")
        pads = list(_attr(conv, "pads", [0, 0, 0, 0]))
        strides = list(_attr(conv, "strides", [1, 1]))
        idx = list(model.graph.node).index(conv)
        nodes = []
        nhwc = model.make_new_valueinfo_name()
        model.set_tensor_shape(nhwc, [frames, h, wd, c])
        model.set_tensor_datatype(nhwc, DataType["BINARY"])
        nodes.append(
            helper.make_node("Transpose", [x], [nhwc], perm=[0, 2, 3, 1], name=f"Transpose_in_{conv.name}")
        )
        cur = nhwc
        if any(pads):
            ph, pw = h + pads[0] + pads[2], wd + pads[1] + pads[3]
            padded = model.make_new_valueinfo_name()
            model.set_tensor_shape(padded, [frames, ph, pw, c])
            model.set_tensor_datatype(padded, DataType["BINARY"])
            nodes.append(
                helper.make_node(
                    "FMPadding",
                    [cur],
                    [padded],
                    domain=FD,
                    backend="fpgadataflow",
                    name=f"FMPadding_{conv.name}",
                    ImgDim=[h, wd],
                    Padding=pads,
                    NumChannels=c,
                    SIMD=1,
                    inputDataType="BINARY",
                    numInputVectors=1,
                )
            )
            cur, h, wd = padded, ph, pw
        oh = (h - kh) // strides[0] + 1
        ow = (wd - kw) // strides[1] + 1
        swu_out = model.make_new_valueinfo_name()
        model.set_tensor_shape(swu_out, [frames, oh, ow, kh * kw * c])
        model.set_tensor_datatype(swu_out, DataType["BINARY"])
        nodes.append(
            helper.make_node(
                "ConvolutionInputGenerator",
                [cur],
                [swu_out],
                domain=FD,
                backend="fpgadataflow",
                name=f"ConvolutionInputGenerator_{conv.name}",
                ConvKernelDim=[kh, kw],
                IFMChannels=c,
                IFMDim=[h, wd],
                OFMDim=[oh, ow],
                SIMD=1,
                Stride=strides,
                Dilation=[1, 1],
                inputDataType="BINARY",
                outputDataType="BINARY",
                depthwise=0,
            )
        )
        # FINN SWU order of the window vector: (kh, kw, cin)
        wmat = w.transpose(2, 3, 1, 0).reshape(kh * kw * cin, cout)
        wname = model.make_new_valueinfo_name()
        model.set_initializer(wname, wmat.astype(np.float32))
        wdt = _smallest_int_type(wmat)
        model.set_tensor_datatype(wname, DataType[wdt])
        mv_out = model.make_new_valueinfo_name()
        model.set_tensor_datatype(mv_out, DataType["BINARY"])
        nodes.append(
            helper.make_node(
                "LIF_MVAU",
                [swu_out, wname],
                [mv_out],
                domain=FD,
                backend="fpgadataflow",
                name=f"LIF_MVAU_{lif.name}",
                MW=kh * kw * cin,
                MH=cout,
                SIMD=1,
                PE=1,
                numInputVectors=[1, oh, ow],
                inputDataType="BINARY",
                weightDataType=wdt,
                **attrs,
            )
        )
        mv_inst = getCustomOp(nodes[-1])
        model.set_tensor_shape(
            mv_out, [frames // attrs["numTicks"] if attrs["outputMode"] == "counts" else frames, oh, ow, cout]
        )
        mv_inst.params()
        model.set_tensor_datatype(mv_out, mv_inst.get_output_datatype())
        # spikes (frames, OH, OW, MH) or counts (N, OH, OW, MH) back to the LIF node's NCHW layout
        nodes.append(
            helper.make_node(
                "Transpose", [mv_out], [lif.output[0]], perm=[0, 3, 1, 2], name=f"Transpose_out_{conv.name}"
            )
        )
        for i, n in enumerate(nodes):
            model.graph.node.insert(idx + i, n)
        model.graph.node.remove(conv)
        model.graph.node.remove(lif)

    # -------------------------------------------------------------- binary max-pool
    @staticmethod
    def _pool_kernel(mp):
        who = f"MaxPool node '{mp.name}'"
        k = list(_attr(mp, "kernel_shape"))
        s = list(_attr(mp, "strides", k))
        if k != s or any(_attr(mp, "pads", [0, 0, 0, 0])) or len(k) != 2:
            raise ValueError(f"{who}: only 2-D pooling with kernel == stride and no padding is supported")
        if _attr(mp, "ceil_mode", 0) or any(d != 1 for d in _attr(mp, "dilations", [1, 1])):
            raise ValueError(f"{who}: ceil_mode=1 and dilations are not supported")
        return k, s

    @staticmethod
    def _replace_nhwc(model, node, out_nhwc_shape, middle):
        """Replace the NCHW ``node`` by ``Transpose`` (to NHWC) -> ``middle(nhwc_in, nhwc_out)`` nodes -> ``Transpose``
        (back to NCHW); the new NHWC tensors are binary (spikes)."""
        x = node.input[0]
        frames, c, h, wd = model.get_tensor_shape(x)
        idx = list(model.graph.node).index(node)
        nhwc = model.make_new_valueinfo_name()
        model.set_tensor_shape(nhwc, [frames, h, wd, c])
        out = model.make_new_valueinfo_name()
        model.set_tensor_shape(out, list(out_nhwc_shape))
        for t in (nhwc, out):
            model.set_tensor_datatype(t, DataType["BINARY"])
        nodes = [
            helper.make_node("Transpose", [x], [nhwc], perm=[0, 2, 3, 1], name=f"Transpose_in_{node.name}"),
            *middle(nhwc, out),
            helper.make_node(
                "Transpose", [out], [node.output[0]], perm=[0, 3, 1, 2], name=f"Transpose_out_{node.name}"
            ),
        ]
        for i, n in enumerate(nodes):
            model.graph.node.insert(idx + i, n)
        model.graph.node.remove(node)

    def _spike_maxpool(self, model, mp):
        """``MaxPool`` of spikes -> NHWC ``SpikeMaxPool`` (own streaming OR unit, no sliding window)."""
        k, _ = self._pool_kernel(mp)
        frames, c, h, wd = model.get_tensor_shape(mp.input[0])

        def middle(nhwc, pooled):
            return [
                helper.make_node(
                    "SpikeMaxPool",
                    [nhwc],
                    [pooled],
                    domain=FD,
                    backend="fpgadataflow",
                    name=f"SpikeMaxPool_{mp.name}",
                    NumChannels=c,
                    ImgDim=[h, wd],
                    PoolDim=k,
                    PE=1,
                    inputDataType="BINARY",
                )
            ]

        self._replace_nhwc(model, mp, [frames, h // k[0], wd // k[1], c], middle)

    def _maxpool(self, model, mp):
        """``MaxPool`` of spikes -> FINN's ``ConvolutionInputGenerator`` (depthwise) + ``Pool`` (MaxPool)."""
        k, s = self._pool_kernel(mp)
        frames, c, h, wd = model.get_tensor_shape(mp.input[0])
        oh, ow = (h - k[0]) // s[0] + 1, (wd - k[1]) // s[1] + 1

        def middle(nhwc, pooled):
            swu_out = model.make_new_valueinfo_name()
            model.set_tensor_shape(swu_out, [frames, oh, ow, k[0] * k[1] * c])
            model.set_tensor_datatype(swu_out, DataType["BINARY"])
            return [
                helper.make_node(
                    "ConvolutionInputGenerator",
                    [nhwc],
                    [swu_out],
                    domain=FD,
                    backend="fpgadataflow",
                    name=f"ConvolutionInputGenerator_{mp.name}",
                    ConvKernelDim=k,
                    IFMChannels=c,
                    IFMDim=[h, wd],
                    OFMDim=[oh, ow],
                    SIMD=1,
                    Stride=s,
                    Dilation=[1, 1],
                    inputDataType="BINARY",
                    outputDataType="BINARY",
                    depthwise=1,
                ),
                helper.make_node(
                    "Pool",
                    [swu_out],
                    [pooled],
                    domain=FD,
                    backend="fpgadataflow",
                    name=f"Pool_{mp.name}",
                    Channels=c,
                    PE=1,
                    KernelSize=k,
                    Function="MaxPool",
                    OutImgDims=[oh, ow],
                    InputDataType="BINARY",
                    OutputDataType="BINARY",
                    BatchSize=1,
                ),
            ]

        self._replace_nhwc(model, mp, [frames, oh, ow, c], middle)


class RemoveInverseTransposes(Transformation):
    """``Transpose(0,3,1,2) -> Transpose(0,2,3,1)`` (NHWC->NCHW->NHWC) with a single consumer: bypass both."""

    def apply(self, model):
        for t1 in model.graph.node:
            if t1.op_type != "Transpose" or list(_attr(t1, "perm", [])) != [0, 3, 1, 2]:
                continue
            cons = model.find_consumers(t1.output[0]) or []
            if (
                len(cons) != 1
                or cons[0].op_type != "Transpose"
                or list(_attr(cons[0], "perm", [])) != [0, 2, 3, 1]
            ):
                continue
            t2 = cons[0]
            if t1.output[0] in [o.name for o in model.graph.output]:
                continue
            for n in model.find_consumers(t2.output[0]) or []:
                for i, name in enumerate(n.input):
                    if name == t2.output[0]:
                        n.input[i] = t1.input[0]
            for o in model.graph.output:
                if o.name == t2.output[0]:
                    # keep the graph output name: rename the producer's output instead
                    prod = model.find_producer(t1.input[0])
                    for i, name in enumerate(prod.output):
                        if name == t1.input[0]:
                            prod.output[i] = t2.output[0]
            model.graph.node.remove(t1)
            model.graph.node.remove(t2)
            return model, True
        return model, False


class AbsorbTransposeFlattenIntoLIFMVAU(Transformation):
    """``Transpose(0,3,1,2) -> Flatten/Reshape -> LIF_MVAU`` (dense on an NCHW flatten): feed the NHWC stream
    directly and permute the weight rows from (C, H, W) to (H, W, C) order."""

    def apply(self, model):
        for t in model.graph.node:
            if t.op_type != "Transpose" or list(_attr(t, "perm", [])) != [0, 3, 1, 2]:
                continue
            cons = model.find_consumers(t.output[0]) or []
            if len(cons) != 1 or cons[0].op_type not in ("Flatten", "Reshape"):
                continue
            fl = cons[0]
            mvs = model.find_consumers(fl.output[0]) or []
            if len(mvs) != 1 or not mvs[0].op_type.startswith("LIF_MVAU"):
                continue
            mv = mvs[0]
            frames, h, w, c = model.get_tensor_shape(t.input[0])
            oshape = model.get_tensor_shape(fl.output[0])
            if list(oshape) != [frames, c * h * w]:
                continue
            wmat = model.get_initializer(mv.input[1])
            perm = np.arange(c * h * w).reshape(c, h, w).transpose(1, 2, 0).reshape(-1)
            model.set_initializer(mv.input[1], wmat[perm, :])
            mv.input[0] = t.input[0]
            model.graph.node.remove(t)
            model.graph.node.remove(fl)
            return model, True
        return model, False


class PushDelaysToOutput(Transformation):
    """§2.2.2: move every per-layer axonal/synaptic delay of the S2N2 layers to the output layer(s).

    With only inter-layer connections, delaying every layer by its fixed delay equals running the network
    delay-free and delaying its output by the sum D (neurons at rest stay at rest: threshold >= 0, checked).
    ``mode="latency"`` (default, the chapter's reading): the output node gets ``outputDelay = D`` with
    ``delayMode="latency"`` — the output stream is D ticks later and the counter window moves with it, so
    per-sample counts (and spikes) equal the delay-free network's; D is latency.  ``mode="window"``: the
    output node shifts its spikes by D inside each sample's window (``delayMode="window"``), which equals
    executing every layer's own delay (the last D ticks' spikes fall out of the sample).
    """

    def __init__(self, mode: str = "latency"):
        super().__init__()
        if mode not in ("latency", "window"):
            raise ValueError(f"PushDelaysToOutput: mode must be 'latency' or 'window', got {mode!r}")
        self.mode = mode

    def apply(self, model):
        lifs = [n for n in model.graph.node if n.op_type.startswith("LIF_MVAU") or n.op_type == "LIF"]
        total = 0
        for n in lifs:
            inst = getCustomOp(n)
            total += inst.get_nodeattr("axonalDelay") + inst.get_nodeattr("synapticDelay")
        if total == 0:
            return model, False
        for n in lifs:
            if getCustomOp(n).get_nodeattr("threshold") < 0:
                raise ValueError(
                    f"{n.op_type} node '{n.name}': threshold < 0 fires without input, delays cannot "
                    f"be pushed through it (§2.2.2)"
                )
        outs = {o.name for o in model.graph.output}
        out_nodes = [n for n in lifs if self._reaches_output(model, n, outs)]
        if not out_nodes:
            raise ValueError(
                "PushDelaysToOutput: no LIF/LIF_MVAU node drives a graph output through delay-neutral nodes"
            )
        for n in lifs:
            inst = getCustomOp(n)
            inst.set_nodeattr("axonalDelay", 0)
            inst.set_nodeattr("synapticDelay", 0)
        for n in out_nodes:
            inst = getCustomOp(n)
            if inst.get_nodeattr("outputDelay") and inst.get_nodeattr("delayMode") != self.mode:
                raise ValueError(
                    f"{n.op_type} node '{n.name}': attribute outputDelay already pushed in delayMode "
                    f"{inst.get_nodeattr('delayMode')!r}, cannot add {self.mode!r} delays"
                )
            inst.set_nodeattr("outputDelay", inst.get_nodeattr("outputDelay") + total)
            inst.set_nodeattr("delayMode", self.mode)
            inst.params()
        return model, False

    @staticmethod
    def _reaches_output(model, node, outs):
        t = node.output[0]
        while t not in outs:
            cons = model.find_consumers(t) or []
            if len(cons) != 1 or cons[0].op_type not in ("Transpose", "Reshape", "Flatten", "Identity"):
                return False
            t = cons[0].output[0]
        return True


class FixTickBatchShapes(Transformation):
    """Re-annotate axis 0 of the outputs of FINN HW nodes with the real frame count after ``InferShapes``.

    FINN's own ops (sliding window, padding, pooling, ...) annotate one frame in their shape functions; the
    S2N2 graph carries ``N x numTicks`` frames.  Walking the graph in order, every FINN HW node's output gets
    its input's frame count (``LIF_MVAU`` with ``outputMode="counts"``: ``frames / numTicks``).  Only the
    annotations change; node attributes stay per frame."""

    def apply(self, model):
        changed = False
        for node in model.graph.node:
            frame_wise = (
                node.domain.startswith(FD)
                or node.op_type in ("Flatten", "Identity")
                or (node.op_type == "Transpose" and list(_attr(node, "perm", [0]))[0] == 0)
            )
            if not frame_wise or not node.input or not node.output:
                continue
            ishape = model.get_tensor_shape(node.input[0])
            oshape = model.get_tensor_shape(node.output[0])
            if not ishape or not oshape:
                continue
            frames = int(ishape[0])
            if node.op_type.startswith("LIF_MVAU"):
                inst = getCustomOp(node)
                if inst.get_nodeattr("outputMode") == "counts":
                    t = inst.get_nodeattr("numTicks")
                    frames = frames // t if frames % t == 0 else 1
            if oshape[0] != frames:
                model.set_tensor_shape(node.output[0], [frames] + list(oshape[1:]))
                changed = True
        return model, changed


class InsertLabelSelect(Transformation):
    """Read-out: FINN's ``LabelSelect`` (top-k) after a ``LIF_MVAU`` whose per-label spike counters
    (``outputMode="counts"``) are a graph output, so that the build ends in class indices like an MVAU
    classifier (§2.2.3, Fig 2.8 counters).  The graph output keeps its name and becomes the ``(N, k)`` label
    indices (largest count first; ties go to the lower label, as ONNX TopK and ``argmax`` do)."""

    def __init__(self, k: int = 1):
        super().__init__()
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"InsertLabelSelect: k must be an int >= 1, got {k!r}")
        self.k = k

    def apply(self, model):
        outs = {o.name for o in model.graph.output}
        for node in model.graph.node:
            if not node.op_type.startswith("LIF_MVAU") or node.output[0] not in outs:
                continue
            inst = getCustomOp(node)
            if inst.get_nodeattr("outputMode") != "counts":
                raise ValueError(
                    f"LIF_MVAU node '{node.name}': attribute outputMode must be 'counts' for a LabelSelect "
                    f"read-out (got {inst.get_nodeattr('outputMode')!r})"
                )
            labels = inst.get_nodeattr("MH")
            if inst.positions()[0] != 1:
                raise ValueError(
                    f"LIF_MVAU node '{node.name}': a LabelSelect read-out needs a dense last layer"
                )
            if self.k > labels:
                raise ValueError(f"InsertLabelSelect: k={self.k} > {labels} labels of '{node.name}'")
            out_name = node.output[0]
            counts = model.make_new_valueinfo_name()
            node.output[0] = counts
            cshape = list(model.get_tensor_shape(out_name))
            model.set_tensor_shape(counts, cshape)
            model.set_tensor_datatype(counts, inst.get_output_datatype())
            odt = DataType.get_smallest_possible(labels - 1)
            ls = helper.make_node(
                "LabelSelect",
                [counts],
                [out_name],
                domain=FD,
                backend="fpgadataflow",
                name=f"LabelSelect_{node.name}",
                Labels=labels,
                PE=1,
                K=self.k,
                inputDataType=inst.get_output_datatype().name,
                outputDataType=odt.name,
                numInputVectors=[1],
            )
            model.graph.node.insert(list(model.graph.node).index(node) + 1, ls)
            model.set_tensor_shape(out_name, cshape[:-1] + [self.k])
            model.set_tensor_datatype(out_name, odt)
            return model, False
        raise ValueError("InsertLabelSelect: no LIF_MVAU node with per-label counters drives a graph output")


def convert_to_lif(model, push_delays: bool | str = True, pool_impl: str = "s2n2"):
    """Run the whole conversion: InferLIFLayers, transpose clean-up, flatten absorption, delays, shapes.

    ``push_delays``: ``True`` or ``"latency"`` — :class:`PushDelaysToOutput` in the chapter's latency-only
    mode (per-sample outputs equal the delay-free network's); ``"window"`` — pushed delays still shift the
    output inside each sample (same outputs as per-layer delays); ``False`` — every layer keeps its delays.
    ``pool_impl``: ``"s2n2"`` (default) — binary max pooling by our ``SpikeMaxPool`` (C++ simulable);
    ``"finn"`` — FINN's depthwise sliding window + ``Pool`` (see :data:`POOL_IMPLS`)."""
    register_finn()
    model = model.transform(InferShapes()).transform(InferDataTypes())
    model = model.transform(InferLIFLayers(pool_impl))
    # the weight Quant nodes consumed into LIF_MVAU weights are left dangling by the rewrite: drop them
    model = model.transform(RemoveUnusedNodes()).transform(RemoveUnusedTensors())
    model = model.transform(RemoveInverseTransposes())
    model = model.transform(AbsorbTransposeFlattenIntoLIFMVAU())
    if push_delays:
        model = model.transform(PushDelaysToOutput("latency" if push_delays is True else push_delays))
    model = model.transform(InferShapes()).transform(InferDataTypes())
    model = model.transform(FixTickBatchShapes())
    return model


def _num_ticks_of(model) -> int:
    """The ``numTicks`` shared by every LIF / LIF_MVAU node (ValueError naming them when they disagree)."""
    ticks = {}
    for n in model.graph.node:
        if (n.op_type == "LIF" and n.domain == "finn_s2n2") or n.op_type.startswith("LIF_MVAU"):
            ticks[n.name] = int(getCustomOp(n).get_nodeattr("numTicks"))
    if not ticks:
        raise ValueError("no LIF / LIF_MVAU node: cannot tell the ticks per sample")
    if len(set(ticks.values())) != 1:
        raise ValueError(f"LIF nodes disagree on attribute numTicks: {ticks}")
    return next(iter(ticks.values()))


class SampleMajorInput(Transformation):
    """Make the graph input sample-major, ``(1, numTicks, ...)``, for FINN's batch-of-one conventions.

    FINN treats axis 0 of the graph input as the batch and its verification (``verify_steps``) executes the
    verification input one axis-0 entry at a time, forcing each into the model's input shape.  An S2N2 graph
    streams ``N x numTicks`` frames on axis 0, so one entry would be one tick — a partial sample, which our
    ops refuse by name.  This transformation gives the graph a new input of shape ``(1, numTicks, *frame)``
    (one whole sample) under the old input's name and datatype, feeds the old consumers through a
    ``Reshape`` to ``(numTicks, *frame)`` frames, and re-annotates every shape for that one sample.  The
    verification input is then ``(N, numTicks, *frame)`` (e.g. ``spikes_to_frames`` undone:
    ``frames.reshape(N, numTicks, ...)``) and each entry is a whole sample.  Apply it to the QONNX pattern
    (before :func:`convert_to_lif`); the ``Reshape`` stays outside the dataflow partition."""

    def apply(self, model):
        inp = model.graph.input[0]
        name = inp.name
        shape = model.get_tensor_shape(name)
        t = _num_ticks_of(model)
        if shape is None or len(shape) < 2:
            raise ValueError(f"SampleMajorInput: graph input '{name}' needs a known shape (frames, ...)")
        if (
            len(shape) >= 3
            and shape[1] == t
            and any(n.op_type == "Reshape" for n in model.find_consumers(name) or [])
        ):
            return model, False  # already sample-major
        if shape[0] % t:
            raise ValueError(
                f"SampleMajorInput: graph input '{name}' has {shape[0]} frames on axis 0, not a multiple of "
                f"numTicks={t}"
            )
        frame = [int(s) for s in shape[1:]]
        dt = model.get_tensor_datatype(name)
        frames = model.make_new_valueinfo_name()
        for n in model.graph.node:
            for i, x in enumerate(n.input):
                if x == name:
                    n.input[i] = frames
        shape_name = model.make_new_valueinfo_name()
        model.set_initializer(shape_name, np.asarray([-1] + frame, dtype=np.int64))
        model.graph.node.insert(
            0, helper.make_node("Reshape", [name, shape_name], [frames], name="Reshape_sample_to_frames")
        )
        # one sample: drop every stale shape annotation and infer again from the new input
        del model.graph.value_info[:]
        for o in model.graph.output:
            o.type.tensor_type.ClearField("shape")
        model.set_tensor_shape(name, [1, t] + frame)
        model.set_tensor_datatype(name, dt)
        model = model.transform(InferShapes()).transform(InferDataTypes())
        return model.transform(FixTickBatchShapes()), False
