"""Optimizer pass: find ``Conv2D -> (BatchNormalization) -> ReLU -> Add(conv input)`` and fuse it.

Khodamoradi 2021, ch. 4 -- Listing 4.2 (short skips, "ReLU before addition"),
Listing 4.3 (one fused layer, the skip value is added in the conv's output loop after the ReLU) and Fig. 4.4.d.

The pass runs at the end of the backend's ``optimize`` flow (``vivado:optimize``, which the Vitis backend
reuses), i.e. after precision inference, so the fused layer inherits the exact types of the unfused chain
(bit-exact C-simulation).  In ``io_stream`` hls4ml's ``streaming`` flow has already inserted a ``Clone`` of the
conv input and a ``ZeroPadding2D`` before the conv; the pass drops the clone copy that fed the ``Add`` (and
the ``Clone`` itself when nothing else needs it): the fused layer reads the skip operand from the centre tap of
the sliding window its line buffer already holds.

The pass is opt-in: it does nothing unless the convert config enables it (see
:mod:`hls4ml_skiptrim.hls4ml.config` for the keys and their validation).  Enabled, every ``Add`` the pass looks at
gets an entry in ``hls_model.shortskip_report``.  ``ShortSkipOverflow`` says what to do when the Add result type
cannot hold ``relu_out + skip`` (see :func:`hls4ml_skiptrim.hls4ml.layers.add_can_overflow`): ``'wrap'``
(default) keeps hls4ml's own semantics (the result wraps/saturates exactly as the unfused Add would, a warning is
logged); ``'error'`` raises ``ValueError`` naming the layer and the types.

The ReLU may be spelt in every way hls4ml 1.3 parses it: ``Activation`` with ``activation='relu'`` (Keras
``Activation('relu')``/``activation='relu'``, QKeras ``quantized_relu``, PyTorch ``nn.ReLU``/``F.relu``/
``torch.relu``) or a ``ParametrizedActivation`` whose parameter is 0 (Keras 3 ``ReLU()`` comes out of hls4ml 1.3
as ``ThresholdedReLU`` with threshold 0; ``LeakyReLU`` with slope 0).  Both operand orders of the Add match.

Blocks that do not qualify (stride != 1, channel change, even kernel, not ``same`` padding, other
activation, fan-out of an intermediate tensor, channels_first, Encoded conv implementation, DA / unrolled
strategies) stay unfused; the reason is logged (logger ``hls4ml_skiptrim``) and recorded in
``hls_model.shortskip_report`` (``{add_layer_name: 'fused into <name>' | reason}``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from hls4ml.model.layers import (
    Activation,
    BatchNormalization,
    Conv2D,
    DepthwiseConv2D,
    Merge,
    ParametrizedActivation,
)
from hls4ml.model.optimizer import OptimizerPass
from hls4ml.model.types import NamedType, TensorVariable

from hls4ml_skiptrim.hls4ml.config import settings_of
from hls4ml_skiptrim.hls4ml.layers import ShortSkipConv2D, add_can_overflow, skip_add_range

log = logging.getLogger("hls4ml_skiptrim")

PASS_NAME = "fuse_short_skip"
NOT_A_BLOCK = "not a Conv2D->(BN)->ReLU->Add(conv input) block"


class ShortSkipMatch:
    """The layers of one candidate block (Khodamoradi 2021, Fig. 4.4.c) and, if any, why it cannot be fused."""

    def __init__(
        self, add, act=None, bn=None, conv=None, zp=None, clone=None, skip_input=None, reason=None, nearby=()
    ):
        self.add, self.act, self.bn, self.conv, self.zp, self.clone = add, act, bn, conv, zp, clone
        self.skip_input = skip_input  # name of the Add input that carries the skip operand
        self.reason = reason
        self.nearby = list(nearby)  # layers looked at when this is no block at all (for ShortSkipFusion=True)

    @property
    def layers(self):
        found = [n for n in (self.conv, self.bn, self.act, self.add) if n is not None]
        return found + [n for n in self.nearby if n not in found]

    @property
    def is_block(self) -> bool:
        return self.conv is not None


def _producer(model, tensor_name):
    for node in model.graph.values():
        if tensor_name in node.outputs:
            return node
    return None


def _consumers(model, tensor_name):
    return [n for n in model.graph.values() if tensor_name in n.inputs]


def _layer_switch(nodes):
    """Per-layer ``ShortSkipFusion`` (hls4ml stores LayerName keys as snake_case attributes)."""
    values = [n.get_attr("short_skip_fusion") for n in nodes if n is not None]
    values = [v for v in values if v is not None]
    if any(v is False for v in values):
        return False
    if any(v is True for v in values):
        return True
    return None


def _is_relu(node) -> bool:
    """``max(x, 0)`` in any spelling hls4ml 1.3 parses (see the module docstring)."""
    if node is None:
        return False
    act = str(node.get_attr("activation", "")).lower()
    if isinstance(node, ParametrizedActivation):
        return act in ("thresholdedrelu", "leakyrelu") and float(node.get_attr("activ_param", 1.0)) == 0.0
    return node.class_name == "Activation" and act == "relu"


def _block_like(node) -> bool:
    """A layer that could belong to a block (its ``ShortSkipFusion=True`` then asks for this block)."""
    return isinstance(node, (Activation, BatchNormalization, Conv2D)) and not isinstance(
        node, ShortSkipConv2D
    )


def _chain(model, node) -> list:
    """``node`` and up to two producers above it while they look like block layers (activation, BN, conv)."""
    found = []
    while _block_like(node) and len(found) < 3 and node not in found:
        found.append(node)
        if isinstance(node, Conv2D):
            break
        node = _producer(model, node.inputs[0]) if node.inputs else None
    return found


def _describe(node) -> str:
    if node is None:
        return "the model input"
    act = node.get_attr("activation")
    extra = (
        f" ({act}, parameter {node.get_attr('activ_param')})"
        if isinstance(node, ParametrizedActivation)
        else ""
    )
    if not extra and act is not None:
        extra = f" ({act})"
    return f"{node.class_name} '{node.name}'{extra}"


def _single_use(model, tensor_name) -> bool:
    return len(_consumers(model, tensor_name)) == 1 and tensor_name not in model.outputs


def _same_tensor(model, a, b):
    """True when tensor names ``a`` and ``b`` carry the same data (equal, or two copies of one Clone)."""
    if a == b:
        return True, None
    pa, pb = _producer(model, a), _producer(model, b)
    if pa is not None and pa is pb and pa.class_name == "Clone":
        return True, pa
    return False, None


def analyse(model, add) -> ShortSkipMatch | None:
    """Return the candidate block ending in ``add`` (``None`` when ``add`` is no two-input Add).

    A returned match with ``reason`` set cannot be fused; ``is_block`` says whether it is a short-skip block at
    all (a near-miss such as ``tanh`` instead of ReLU, or a skip from elsewhere, is not).
    """
    if not isinstance(add, Merge) or str(add.get_attr("op", "")).lower() != "add" or len(add.inputs) != 2:
        return None
    io_type = model.config.get_config_value("IOType")
    best = None
    misses, nearby = [], []
    for i in (0, 1):
        act = _producer(model, add.inputs[i])
        nearby += _chain(model, act)
        if not _is_relu(act):
            misses.append(f"operand {i} comes from {_describe(act)}, not a ReLU")
            continue
        prev = _producer(model, act.inputs[0])
        bn = None
        if (
            prev is not None
            and prev.class_name == "BatchNormalization"
            and isinstance(prev, BatchNormalization)
        ):
            bn = prev
            prev = _producer(model, bn.inputs[0])
        if not isinstance(prev, Conv2D) or isinstance(prev, (DepthwiseConv2D, ShortSkipConv2D)):
            misses.append(f"ReLU '{act.name}' is fed by {_describe(prev)}, not a Conv2D (BN optional)")
            continue
        conv = prev
        m = ShortSkipMatch(add, act=act, bn=bn, conv=conv, skip_input=add.inputs[1 - i])
        src = conv.inputs[0]
        zp = _producer(model, src)
        if zp is not None and zp.class_name == "ZeroPadding2D" and io_type == "io_stream":
            m.zp = zp
            src = zp.inputs[0]
        same, clone = _same_tensor(model, src, m.skip_input)
        if not same:  # ReLU-chain Add whose other operand is not the conv input: not a short skip
            misses.append(f"the other operand '{m.skip_input}' is not the input of Conv2D '{conv.name}'")
            continue
        m.clone = clone
        m.reason = _qualify(model, m, io_type)
        if best is None or (best.reason is not None and m.reason is None):
            best = m
    if best is None:
        return ShortSkipMatch(add, reason=f"{NOT_A_BLOCK}: " + "; ".join(misses), nearby=nearby)
    return best


def _qualify(model, m: ShortSkipMatch, io_type) -> str | None:
    conv, bn, act, add = m.conv, m.bn, m.act, m.add
    if conv.get_attr("data_format", "channels_last") != "channels_last":
        return (
            f"{conv.name}: data_format={conv.get_attr('data_format')!r}; the fused layer supports channels_last "
            "only (convert with channels_last, e.g. PyTorch channels_last_conversion='full')"
        )
    fh, fw = conv.get_attr("filt_height"), conv.get_attr("filt_width")
    if fh % 2 == 0 or fw % 2 == 0:
        return f"{conv.name}: even kernel {fh}x{fw} has no centre tap"
    if conv.get_attr("stride_height") != 1 or conv.get_attr("stride_width") != 1:
        return f"{conv.name}: stride {conv.get_attr('stride_height')}x{conv.get_attr('stride_width')} != 1"
    if conv.get_attr("n_chan") != conv.get_attr("n_filt"):
        return f"{conv.name}: channel change {conv.get_attr('n_chan')} -> {conv.get_attr('n_filt')}"
    ph, pw = (fh - 1) // 2, (fw - 1) // 2
    pads_src = m.zp if m.zp is not None else conv
    pads = tuple(pads_src.get_attr(k, 0) for k in ("pad_top", "pad_bottom", "pad_left", "pad_right"))
    if pads != (ph, ph, pw, pw):
        return f"{conv.name}: padding {pads} is not 'same' ({(ph, ph, pw, pw)})"
    if m.zp is not None and any(
        conv.get_attr(k, 0) for k in ("pad_top", "pad_bottom", "pad_left", "pad_right")
    ):
        return f"{conv.name}: padded twice"
    if io_type == "io_stream" and m.zp is None and (fh > 1 or fw > 1):
        return f"{conv.name}: io_stream conv without its ZeroPadding2D layer"
    skip_shape = list(model.get_layer_output_variable(m.skip_input).shape)
    out_shape = list(add.get_output_variable().shape)
    if skip_shape != out_shape or list(conv.get_output_variable().shape) != out_shape:
        return f"{add.name}: shapes differ (skip {skip_shape}, conv {conv.get_output_variable().shape}, add {out_shape})"
    strategy = str(conv.get_attr("strategy", "latency")).lower()
    if strategy not in ("latency", "resource"):
        return f"{conv.name}: strategy {strategy!r} is not supported (latency, resource)"
    if io_type == "io_stream" and str(conv.get_attr("implementation", "linebuffer")).lower() != "linebuffer":
        return f"{conv.name}: ConvImplementation {conv.get_attr('implementation')!r} (only LineBuffer)"
    if io_type not in ("io_parallel", "io_stream"):
        return f"io_type {io_type!r} not supported"
    for node in (conv, bn, act):
        if node is not None and not _single_use(model, node.outputs[0]):
            return f"{node.name}: its output is also used outside the block"
    if bn is not None and bn.get_attr("n_filt", -1) not in (-1, conv.get_attr("n_filt")):
        return f"{bn.name}: per-element BatchNormalization (n_filt={bn.get_attr('n_filt')})"
    if m.clone is not None and m.skip_input not in m.clone.outputs:
        return f"{add.name}: skip operand is not a copy of the conv input"
    return None


class FuseShortSkip(OptimizerPass):
    """Replace a qualifying Conv2D (+BN) + ReLU + Add(conv input) chain by one :class:`ShortSkipConv2D`."""

    name = PASS_NAME

    def match(self, node):
        if not isinstance(node, Merge) or str(node.get_attr("op", "")).lower() != "add":
            return False
        model = node.model
        settings = settings_of(model)
        if not settings.enabled:  # opt-in: a conversion that did not ask for the plugin is left untouched
            return False
        report = _report(model)
        if node.name in report:  # decided already (unfused): do not re-log on every optimizer sweep
            return False
        m = analyse(model, node)
        if m is None:
            report[node.name] = "not a two-input Add"
            return False
        layer = _layer_switch(m.layers)
        if layer is False:
            report[node.name] = "disabled by ShortSkipFusion=False"
            log.info("short skip: %s left unfused (%s)", node.name, report[node.name])
            return False
        if layer is None and settings.model_fusion is not True:
            report[node.name] = "not requested (hls_config['Model']['ShortSkipFusion'] is not True)"
            return False
        if m.reason is not None:
            if layer is True:
                raise ValueError(
                    f"ShortSkipFusion=True for block ending in '{node.name}' but it cannot be fused: {m.reason}"
                )
            report[node.name] = m.reason
            if m.is_block:
                log.warning("short skip: %s left unfused: %s", node.name, m.reason)
            else:
                log.debug("short skip: %s is %s", node.name, m.reason)
            return False
        return True

    def transform(self, model, node):
        m = analyse(model, node)
        _check_overflow(model, m)
        fused = _build_node(model, m)
        _rewire(model, m, fused)
        _report(model)[node.name] = f"fused into {fused.name}"
        log.info("short skip: fused %s into %s", " -> ".join(n.name for n in m.layers), fused.name)
        return True


def _report(model) -> dict:
    rep = getattr(model, "shortskip_report", None)
    if rep is None:
        rep = OrderedDict()
        model.shortskip_report = rep
    return rep


def _check_overflow(model, m: ShortSkipMatch):
    mode = settings_of(model).overflow
    skip_p = model.get_layer_output_variable(m.skip_input).type.precision
    act_p = m.act.get_output_variable().type.precision
    res_p = m.add.get_output_variable().type.precision
    try:
        overflow = add_can_overflow(skip_p, act_p, res_p)
    except TypeError:
        return  # float / exotic types: nothing to check, C++ arithmetic decides
    if not overflow:
        return
    lo, hi = skip_add_range(skip_p, act_p)
    msg = (
        f"short skip add '{m.add.name}': relu({m.act.name}) + skip spans [{float(lo)}, {float(hi)}] "
        f"(skip {skip_p}, relu {act_p}) but the Add result type is {res_p}"
    )
    if mode == "error":
        raise ValueError(msg + "; widen the Add result precision or set ShortSkipOverflow='wrap'")
    log.warning("%s: it wraps/saturates exactly like the unfused Add (ShortSkipOverflow='wrap')", msg)


def _build_node(model, m: ShortSkipMatch) -> ShortSkipConv2D:
    conv, bn, act, add = m.conv, m.bn, m.act, m.add
    attrs = {}
    for k, v in conv.attributes.attributes.items():
        if isinstance(v, TensorVariable) or k.startswith("__hls4ml_reserved_out_"):
            continue
        if k in ("result_t", "index", "function_cpp", "config_cpp", "include_header"):
            continue
        attrs[k] = v
    index = model.next_layer()
    attrs["index"] = index
    conv_p = conv.get_output_variable().type.precision
    attrs["conv_out_t"] = NamedType(f"layer{index}_conv_t", conv_p)
    if bn is not None:
        attrs["use_bn"] = True
        attrs["bn_scale"] = bn.weights["scale"]
        attrs["bn_bias"] = bn.weights["bias"]
        attrs["bn_out_t"] = NamedType(f"layer{index}_bn_t", bn.get_output_variable().type.precision)
    else:
        attrs["use_bn"] = False
        attrs["bn_out_t"] = NamedType(f"layer{index}_bn_t", conv_p)
    attrs["act_out_t"] = NamedType(f"layer{index}_act_t", act.get_output_variable().type.precision)
    attrs["skip_row"] = (conv.get_attr("filt_height") - 1) // 2
    attrs["skip_col"] = (conv.get_attr("filt_width") - 1) // 2
    attrs["fused_layers"] = [n.name for n in m.layers]
    attrs[add.outputs[0]] = add.get_output_variable()
    name = f"{conv.name}_shortskip"
    node = model.make_node(ShortSkipConv2D, name, attrs, [conv.inputs[0]], [add.outputs[0]], initialize=False)
    node.set_attr("short_skip_fusion", True)
    return node


def _rewire(model, m: ShortSkipMatch, fused):
    gone = {n.name for n in (m.conv, m.bn, m.act) if n is not None}
    graph = OrderedDict()
    for name, node in model.graph.items():
        if name in gone:
            continue
        if name == m.add.name:
            graph[fused.name] = fused
            continue
        graph[name] = node
    model.graph = graph
    for n in (m.conv, m.bn, m.act):
        if n is not None:
            model.output_vars.pop(n.outputs[0], None)
    if m.clone is not None:
        _drop_clone_output(model, m.clone, m.skip_input)


def _drop_clone_output(model, clone, out_name):
    """Remove the copy ``out_name`` from a Clone (and the Clone itself when one copy is left)."""
    clone.outputs.remove(out_name)
    for key in (out_name, "__hls4ml_reserved_out_" + out_name):
        clone.attributes.attributes.pop(key, None)
    model.output_vars.pop(out_name, None)
    if len(clone.outputs) > 1:
        return
    (last,) = clone.outputs
    src = clone.inputs[0]
    for node in model.graph.values():
        node.inputs = [src if i == last else i for i in node.inputs]
    model.outputs = [src if o == last else o for o in model.outputs]
    model.output_vars.pop(last, None)
    del model.graph[clone.name]


# finish a registration deferred while this module was half-imported (see plugin.register)
from hls4ml_skiptrim.hls4ml import plugin as _plugin  # noqa: E402

_plugin.resume()
