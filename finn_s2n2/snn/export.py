"""Export a trained :class:`finn_s2n2.snn.nn.SpikingNet` to QONNX for the FINN back-end (Khodamoradi 2021, §2.2.3).

:func:`to_qonnx` writes the graph contract documented in :mod:`finn_s2n2.finn.custom_op.lif` and consumed by
:class:`finn_s2n2.finn.transformation.InferLIFLayers`:

* graph input ``spikes``: BINARY, the ticks of each sample as consecutive frames on axis 0
  (``(N·T, C, H, W)`` for conv nets, ``(N·T, F)`` for dense nets; ``tickAxis=0``, sample-major);
* each Brevitas ``QuantConv2d`` / ``QuantLinear`` becomes a QONNX ``Quant`` node (the Brevitas integer weights,
  ``weight_bit_width`` bits, signed, narrow range as Brevitas' ``Int8WeightPerTensorFloat``) followed by a
  ``Conv`` (NCHW, pads from the layer, no bias) or ``MatMul``;
* each :class:`~finn_s2n2.snn.nn.LIF` becomes a ``LIF`` node (domain ``finn_s2n2``) whose integer ``threshold``
  is ``floor(T / s)`` — the Brevitas per-tensor weight scale ``s`` is folded into the threshold, so the
  ``Quant`` nodes carry scale 1 (the integer grid), which is what ``LIF_MVAU`` executes;
* ``MaxPool2d`` → ``MaxPool`` (binary spikes; the FINN flow maps it to ``SpikeMaxPool``, an OR over the window,
  or to FINN's pooling unit with ``pool_impl="finn"``), ``Flatten`` → ``Flatten(axis=1)``;
* ``AvgPool2d`` / ``SumPool2d`` of spikes (kernel == stride, no padding) are **folded into the next weight
  layer**, which must be a ``QuantLinear`` (after an optional ``Flatten``): sum pooling then a linear map is
  one linear map on the unpooled spikes, ``W'[o, c, h, w] = W[o, c, h // k_h, w // k_w]`` (0 for the rows
  and columns that the pooling drops); average pooling additionally divides the weight scale by
  ``k_h k_w``, which only changes the integer threshold ``floor(T k_h k_w / s)``.  Both are exact.  A pool
  before a convolution (it would need a strided kernel) is refused by name;
* a LIF's ``axonal_delay`` / ``synaptic_delay`` / ``delay_mode`` become the ``axonalDelay`` / ``synapticDelay`` /
  ``delayMode`` attributes.

The exported graph *is* the quantized model: its qonnx execution equals ``net.set_quantized(True)`` bit for
bit (tested), whatever mode the torch net is in.

Deviation: we write the graph with ``onnx.helper`` instead of ``brevitas.export.export_qonnx`` because the
TorchScript exporter cannot express the tick-folded frame layout with a stateful per-sample LIF (it would trace
the Python time loop) and Brevitas's ``Quant`` nodes carry the float scale that the back-end needs folded.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from finn_s2n2.snn.nn import LIF, SpikingNet, TimeDistributed, avg_pool_divisor, weight_layer_scale

__all__ = ["execute_qonnx", "frames_to_spikes", "spikes_to_frames", "to_qonnx"]


def spikes_to_frames(spikes) -> np.ndarray:
    """``(N, T, ...)`` spikes → ``(N·T, ...)`` frames (the graph input layout, sample-major)."""
    x = spikes.detach().cpu().numpy() if isinstance(spikes, torch.Tensor) else np.asarray(spikes)
    if x.ndim < 3:
        raise ValueError(f"spikes_to_frames: spikes must be (N, T, ...), got shape {x.shape}")
    return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:]).astype(np.float32)


def frames_to_spikes(frames: np.ndarray, num_ticks: int) -> np.ndarray:
    """Inverse of :func:`spikes_to_frames`."""
    f = np.asarray(frames)
    if f.shape[0] % num_ticks:
        raise ValueError(f"frames_to_spikes: {f.shape[0]} frames is not a multiple of num_ticks={num_ticks}")
    return f.reshape((f.shape[0] // num_ticks, num_ticks) + f.shape[1:])


def _int_weights(layer: nn.Module) -> tuple[np.ndarray, float, int, bool]:
    if not hasattr(layer, "quant_weight"):
        raise ValueError(
            f"to_qonnx: {type(layer).__name__} has float weights; S2N2 layers need Brevitas QuantConv2d/QuantLinear "
            f"(integer weights for LIF_MVAU)"
        )
    if getattr(layer, "bias", None) is not None:
        raise ValueError(
            f"to_qonnx: {type(layer).__name__} has a bias; LIF_MVAU implements Eq 2.2 without bias"
        )
    qw = layer.quant_weight()
    scale = weight_layer_scale(layer)
    w_int = qw.int().detach().cpu().numpy().astype(np.float32)
    bits = int(qw.bit_width)
    zp = qw.zero_point.detach()
    if torch.any(zp != 0):
        raise ValueError(f"to_qonnx: {type(layer).__name__} weight quantizer has a non-zero zero point")
    narrow = bool(getattr(layer.weight_quant, "is_narrow_range", True))
    return w_int, scale, bits, narrow


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)


def _unpool_weights(w_int: np.ndarray, kh: int, kw: int, chw: tuple[int, int, int]) -> np.ndarray:
    """Weights ``(out, C·Hp·Wp)`` of a Linear after a ``kh x kw`` sum pool (stride = kernel) → the same map
    on the unpooled ``(C, H, W)`` spikes, ``(out, C·H·W)``; positions the floor pooling drops get 0."""
    c, h, w = chw
    hp, wp = h // kh, w // kw
    if w_int.shape[1] != c * hp * wp:
        raise ValueError(f"to_qonnx: Linear after pooling expects {c * hp * wp} inputs, has {w_int.shape[1]}")
    wp4 = w_int.reshape(w_int.shape[0], c, hp, wp)
    full = np.zeros((w_int.shape[0], c, h, w), dtype=w_int.dtype)
    full[:, :, : hp * kh, : wp * kw] = wp4.repeat(kh, axis=2).repeat(kw, axis=3)
    return full.reshape(w_int.shape[0], c * h * w)


def to_qonnx(
    net: SpikingNet, example_spikes: torch.Tensor, path: str | Path | None = None, *, name: str = "s2n2"
):
    """Export ``net`` (evaluated on ``example_spikes`` (N, T, ...) for shapes) to a QONNX ``ModelWrapper``.

    Saves to ``path`` when given.  Raises ``ValueError`` naming the module for anything that has no S2N2
    mapping (float layers, biases, unsupported modules, a LIF not preceded by a weight layer)."""
    from onnx import TensorProto, helper
    from qonnx.core.datatype import DataType
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.basic import qonnx_make_model

    import finn_s2n2  # noqa: F401  (registers the LIF op with qonnx)

    if not isinstance(net, SpikingNet):
        raise TypeError(f"to_qonnx: expected a finn_s2n2.snn.nn.SpikingNet, got {type(net).__name__}")
    net.check_input(example_spikes)
    n, ticks = int(example_spikes.shape[0]), int(example_spikes.shape[1])
    shape = [n * ticks] + list(example_spikes.shape[2:])
    nodes, inits, dtypes = [], {}, {}
    cur = "spikes"
    pending_scale = None
    pending_pool = None  # (tag, k_h, k_w, divisor, (C, H, W) before pooling): folded into the next Linear
    acc_dtypes = []
    x = example_spikes
    with torch.no_grad():
        for i, m in enumerate(net):
            inner = m.module if isinstance(m, TimeDistributed) else m
            tag = f"{i}_{type(inner).__name__}"
            if isinstance(inner, nn.Conv2d | nn.Linear):
                w_int, scale, bits, narrow = _int_weights(inner)
                pending_scale = scale
                if pending_pool is not None:
                    if not isinstance(inner, nn.Linear):
                        raise ValueError(
                            f"to_qonnx: {pending_pool[0]}: average/sum pooling of spikes folds into a following "
                            f"Linear only; before {tag} it would need a strided kernel (use MaxPool2d here)"
                        )
                    w_int = _unpool_weights(w_int, *pending_pool[1:3], pending_pool[4])
                    pending_scale = scale / pending_pool[3]
                    pending_pool = None
                if isinstance(inner, nn.Linear):
                    w_int = w_int.T.copy()  # (MW, MH) for MatMul
                else:
                    if inner.groups != 1 or tuple(inner.dilation) != (1, 1) or tuple(inner.stride) != (1, 1):
                        raise ValueError(
                            f"to_qonnx: {tag}: only stride 1, dilation 1, group 1 convolutions map to LIF_MVAU"
                        )
                    if isinstance(inner.padding, str) or inner.padding_mode != "zeros":
                        raise ValueError(
                            f"to_qonnx: {tag}: use integer zero padding (got {inner.padding!r}, {inner.padding_mode})"
                        )
                wq = f"w{i}_int"
                inits[wq] = w_int
                inits[f"w{i}_scale"] = np.array(1.0, dtype=np.float32)
                inits[f"w{i}_zeropt"] = np.array(0.0, dtype=np.float32)
                inits[f"w{i}_bits"] = np.array(float(bits), dtype=np.float32)
                nodes.append(
                    helper.make_node(
                        "Quant",
                        [wq, f"w{i}_scale", f"w{i}_zeropt", f"w{i}_bits"],
                        [f"w{i}_q"],
                        domain="qonnx.custom_op.general",
                        name=f"Quant_{i}",
                        signed=1,
                        narrow=int(narrow),
                        rounding_mode="ROUND",
                    )
                )
                out = f"cur{i}"
                if isinstance(inner, nn.Linear):
                    nodes.append(helper.make_node("MatMul", [cur, f"w{i}_q"], [out], name=f"MatMul_{i}"))
                else:
                    p = inner.padding
                    nodes.append(
                        helper.make_node(
                            "Conv",
                            [cur, f"w{i}_q"],
                            [out],
                            name=f"Conv_{i}",
                            kernel_shape=list(inner.kernel_size),
                            pads=[p[0], p[1], p[0], p[1]],
                            strides=[1, 1],
                            dilations=[1, 1],
                            group=1,
                        )
                    )
                cur = out
                x = m(x)
            elif isinstance(m, LIF):
                if pending_pool is not None:
                    raise ValueError(
                        f"to_qonnx: {pending_pool[0]} must be followed by Flatten/Linear, not a LIF"
                    )
                if pending_scale is None:
                    raise ValueError(
                        f"to_qonnx: LIF at position {i} is not preceded by a Brevitas weight layer"
                    )
                thr = m.threshold_int(pending_scale)
                out = f"lif{i}"
                delays = {}
                if m.delay:
                    delays = dict(
                        axonalDelay=m.axonal_delay, synapticDelay=m.synaptic_delay, delayMode=m.delay_mode
                    )
                nodes.append(
                    helper.make_node(
                        "LIF",
                        [cur],
                        [out],
                        domain="finn_s2n2",
                        name=f"LIF_{i}",
                        decay_shift=m.decay_shift,
                        threshold=thr,
                        numTicks=ticks,
                        accDataType=f"INT{m.acc_bits}",
                        reset=m.reset,
                        overflow=m.overflow,
                        outputMode=m.output_mode,
                        tickAxis=0,
                        **delays,
                    )
                )
                acc_dtypes.append(m.acc_bits)
                dtypes[out] = "BINARY"
                cur = out
                if m.output_mode == "counts" and i != len(net) - 1:
                    raise ValueError(
                        f"to_qonnx: LIF at position {i} counts spikes but is not the last module"
                    )
                x = m(x, scale=pending_scale)
                pending_scale = None
            elif avg_pool_divisor(inner) > 1 or type(inner).__name__ == "SumPool2d":
                if pending_pool is not None:
                    raise ValueError(f"to_qonnx: {tag}: two average/sum pools in a row; merge them")
                kh, kw = _pair(inner.kernel_size)
                if _pair(inner.stride or inner.kernel_size) != (kh, kw) or _pair(inner.padding) != (0, 0):
                    raise ValueError(
                        f"to_qonnx: {tag}: only pooling with kernel == stride and no padding folds into the next "
                        f"Linear (got kernel {inner.kernel_size}, stride {inner.stride}, padding {inner.padding})"
                    )
                if getattr(inner, "ceil_mode", False):
                    raise ValueError(f"to_qonnx: {tag}: ceil_mode=True is not supported")
                if x.dim() != 5:
                    raise ValueError(f"to_qonnx: {tag}: pooling needs (N, T, C, H, W) spikes")
                pending_pool = (tag, kh, kw, avg_pool_divisor(inner), tuple(x.shape[2:]))
                x = m(x)
            elif isinstance(inner, nn.MaxPool2d):
                k = inner.kernel_size if isinstance(inner.kernel_size, int) else inner.kernel_size[0]
                s = inner.stride if isinstance(inner.stride, int) else inner.stride[0]
                if (inner.padding not in (0, (0, 0))) or k != s or inner.ceil_mode:
                    raise ValueError(
                        f"to_qonnx: {tag}: only MaxPool2d with kernel == stride and no padding is supported"
                    )
                if pending_pool is not None:
                    raise ValueError(
                        f"to_qonnx: {pending_pool[0]} must be followed by Flatten/Linear, not {tag}"
                    )
                out = f"pool{i}"
                nodes.append(
                    helper.make_node(
                        "MaxPool", [cur], [out], name=f"MaxPool_{i}", kernel_shape=[k, k], strides=[k, k]
                    )
                )
                dtypes[out] = "BINARY"
                cur = out
                x = m(x)
            elif isinstance(inner, nn.Flatten):
                out = f"flat{i}"
                nodes.append(helper.make_node("Flatten", [cur], [out], name=f"Flatten_{i}", axis=1))
                dtypes[out] = "BINARY"
                cur = out
                x = m(x)
            else:
                raise ValueError(f"to_qonnx: module {i} ({type(inner).__name__}) has no S2N2/QONNX mapping")
    if pending_pool is not None:
        raise ValueError(f"to_qonnx: {pending_pool[0]} must be followed by Flatten/Linear")
    last = net[len(net) - 1]
    if not isinstance(last, LIF):
        raise ValueError("to_qonnx: the network must end with a LIF (spikes or per-label counts)")
    out_shape = list(x.shape) if last.output_mode == "counts" else [n * ticks] + list(x.shape[2:])
    inp = helper.make_tensor_value_info("spikes", TensorProto.FLOAT, shape)
    outp = helper.make_tensor_value_info(cur, TensorProto.FLOAT, out_shape)
    graph = helper.make_graph(nodes, name, [inp], [outp])
    model = qonnx_make_model(graph, producer_name="finn_s2n2.snn.export")
    mw = ModelWrapper(model)
    for k, v in inits.items():
        mw.set_initializer(k, v)
    mw.set_tensor_datatype("spikes", DataType["BINARY"])
    for k, v in dtypes.items():
        mw.set_tensor_datatype(k, DataType[v])
    if last.output_mode == "counts":
        mw.set_tensor_datatype(cur, DataType[f"UINT{max(1, math.ceil(math.log2(ticks + 1)))}"])
    from qonnx.transformation.infer_shapes import InferShapes

    mw = mw.transform(InferShapes())
    if path is not None:
        mw.save(str(path))
    return mw


def execute_qonnx(model, spikes) -> np.ndarray:
    """Run an exported graph with qonnx's ``execute_onnx`` on ``(N, T, ...)`` spikes; returns the graph output
    (counts ``(N, classes)`` or frames)."""
    from qonnx.core.onnx_exec import execute_onnx

    frames = spikes_to_frames(spikes)
    iname = model.graph.input[0].name
    ishape = model.get_tensor_shape(iname)
    if list(frames.shape) != list(ishape):
        raise ValueError(
            f"execute_qonnx: spikes give frames {list(frames.shape)}, the graph expects {list(ishape)}"
        )
    out = execute_onnx(model, {iname: frames})
    return out[model.graph.output[0].name]
