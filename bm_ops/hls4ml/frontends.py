"""hls4ml frontend handlers for BM conv layers: Keras 3 ``bm_ops.keras.BMConv2D`` and torch ``bm_ops.torch.BMConv2d``.

Both produce the same IR dict (``class_name='BMConv2D'``) with float log-domain weights ``v_pos_data`` /
``v_neg_data`` in ``(F, C, Kh, Kw)`` order; quantisation happens in :class:`bm_ops.hls4ml.layer.BMConv2D`.
Unsupported configurations (groups, dilation, non-zero padding modes, weights of the wrong shape) raise a
``ValueError`` naming the layer at conversion time.
"""

from __future__ import annotations

import math
import sys

import numpy as np

__all__ = ["layer_dict_from_arrays", "parse_torch_bmconv2d", "register_frontends", "is_bm_torch_module"]


def _out_size(n, k, s, p0, p1, where):
    o = (n + p0 + p1 - k) // s + 1
    if o < 1:
        raise ValueError(f"{where}: kernel {k} larger than padded input {n + p0 + p1}")
    return o


def layer_dict_from_arrays(
    name: str,
    v_pos,
    v_neg,
    bias,
    in_hwc: tuple[int, int, int],
    stride: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> dict:
    """IR attributes of a BMConv2D from float weights ``(F, C, Kh, Kw)``; ``pads`` = (top, bottom, left, right)."""
    where = f"BM layer '{name}'"
    v_pos = np.asarray(v_pos, dtype=np.float64)
    v_neg = np.asarray(v_neg, dtype=np.float64)
    if v_pos.ndim != 4 or v_pos.shape != v_neg.shape:
        raise ValueError(f"{where}: v_pos/v_neg must be (F, C, Kh, Kw), got {v_pos.shape}, {v_neg.shape}")
    f, c, kh, kw = v_pos.shape
    h, w, cin = (int(s) for s in in_hwc)
    if cin != c:
        raise ValueError(f"{where}: input has {cin} channels, weights expect {c}")
    sh, sw = (int(s) for s in stride)
    pt, pb, pl, pr = (int(p) for p in pads)
    if min(pt, pb, pl, pr) < 0 or sh < 1 or sw < 1:
        raise ValueError(f"{where}: invalid stride {stride} / padding {pads}")
    return {
        "name": name,
        "class_name": "BMConv2D",
        "data_format": "channels_last",
        "v_pos_data": v_pos,
        "v_neg_data": v_neg,
        "bias_data": None if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1),
        "in_height": h,
        "in_width": w,
        "n_chan": c,
        "n_filt": f,
        "filt_height": kh,
        "filt_width": kw,
        "stride_height": sh,
        "stride_width": sw,
        "pad_top": pt,
        "pad_bottom": pb,
        "pad_left": pl,
        "pad_right": pr,
        "out_height": _out_size(h, kh, sh, pt, pb, where),
        "out_width": _out_size(w, kw, sw, pl, pr, where),
    }


def _pair(v, name, where):
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(a) for a in v)
    if len(v) != 2:
        raise ValueError(f"{where}: {name} must be an int or a pair, got {v}")
    return v


# ----------------------------------------------------------------------------------------------- torch


def is_bm_torch_module(m) -> bool:
    """True for the torch BM conv module of ``bm_ops.torch`` (kept as a leaf by the hls4ml FX tracer)."""
    return type(m).__module__ == "bm_ops.torch" and type(m).__name__ in ("BMConv2d",)


def parse_torch_bmconv2d(
    operation, layer_name, input_names, input_shapes, node, class_object, data_reader, config
):
    """hls4ml PyTorch handler for ``bm_ops.torch.BMConv2d`` (signature of ``pytorch_handler`` functions)."""
    where = f"BMConv2d '{layer_name}'"
    m = class_object
    if getattr(m, "groups", 1) != 1:
        raise ValueError(
            f"{where}: groups={m.groups} is not supported by the BM hls4ml layer (groups=1 only)"
        )
    dil = _pair(getattr(m, "dilation", 1), "dilation", where)
    if dil != (1, 1):
        raise ValueError(f"{where}: dilation={dil} is not supported by the BM hls4ml layer")
    if getattr(m, "padding_mode", "zeros") != "zeros":
        raise ValueError(f"{where}: padding_mode={m.padding_mode!r} not supported (zeros only)")
    pad = m.padding
    if isinstance(pad, str):
        raise ValueError(f"{where}: string padding {pad!r} not supported; give integer padding")
    ph, pw = _pair(pad, "padding", where)
    stride = _pair(m.stride, "stride", where)
    shape = input_shapes[0]
    if len(shape) != 4:
        raise ValueError(f"{where}: expected an NCHW input, got shape {shape}")
    _, c, h, w = shape
    bias = None if getattr(m, "bias", None) is None else m.bias.detach().cpu().numpy()
    layer = layer_dict_from_arrays(
        layer_name,
        m.v_pos.detach().cpu().numpy(),
        m.v_neg.detach().cpu().numpy(),
        bias,
        (h, w, c),
        stride,
        (ph, ph, pw, pw),
    )
    layer["data_format"] = "channels_first"  # PyTorch; hls4ml's channels-last conversion flips it
    layer["inputs"] = input_names
    out_shape = [shape[0], layer["n_filt"], layer["out_height"], layer["out_width"]]
    return layer, out_shape


def _conv_like(cls) -> None:
    """hls4ml's torch parser reads ``padding_mode``/``groups`` of every module whose class name contains 'Conv'.

    BM layers only exist with zero padding and one group (``bm_ops.torch`` rejects the rest): expose these
    facts as class constants when the class does not define them.
    """
    if not hasattr(cls, "padding_mode"):
        cls.padding_mode = "zeros"
    if not hasattr(cls, "groups"):
        cls.groups = 1


def _patch_fx_tracer() -> None:
    """Make hls4ml's torch.fx tracer keep BM modules as leaves (it only knows torch.nn/brevitas.nn).

    hls4ml 1.3 has no registration door for leaf modules of third-party packages; this wraps
    ``CustomFXTracer.is_leaf_module`` once (idempotent) — documented deviation in README ``bm_hls``.
    """
    from hls4ml.utils.torch import CustomFXTracer

    if getattr(CustomFXTracer.is_leaf_module, "_bm_ops_wrapped", False):
        return
    orig = CustomFXTracer.is_leaf_module

    def is_leaf_module(self, m, module_qualified_name):
        if is_bm_torch_module(m):
            _conv_like(type(m))
            return True
        return orig(self, m, module_qualified_name)

    is_leaf_module._bm_ops_wrapped = True
    CustomFXTracer.is_leaf_module = is_leaf_module


# ----------------------------------------------------------------------------------------------- keras 3


def _keras_handler_class():
    from hls4ml.converters.keras_v3._base import KerasV3LayerHandler, registry

    if "bm_ops.keras.BMConv2D" in registry:
        return type(registry["bm_ops.keras.BMConv2D"])

    class BMConv2DKerasHandler(KerasV3LayerHandler):
        """Keras 3 handler for ``bm_ops.keras.BMConv2D`` (channels_last, padding 'valid' or 'same')."""

        handles = ("bm_ops.keras.BMConv2D",)

        def handle(self, layer, in_tensors, out_tensors):
            import keras

            where = f"BMConv2D '{layer.name}'"
            if len(in_tensors) != 1:
                raise ValueError(f"{where}: expected one input")
            if getattr(layer, "data_format", "channels_last") != "channels_last":
                raise ValueError(f"{where}: only data_format='channels_last' is supported")
            dil = _pair(getattr(layer, "dilation_rate", 1), "dilation_rate", where)
            if dil != (1, 1):
                raise ValueError(f"{where}: dilation_rate={dil} is not supported by the BM hls4ml layer")
            if getattr(layer, "groups", 1) != 1:
                raise ValueError(f"{where}: groups={layer.groups} is not supported by the BM hls4ml layer")
            h, w, c = (int(s) for s in in_tensors[0].shape[1:])
            vp = keras.ops.convert_to_numpy(layer.v_pos)
            vn = keras.ops.convert_to_numpy(layer.v_neg)
            kh, kw = _pair(layer.kernel_size, "kernel_size", where)
            f = int(getattr(layer, "filters", vp.shape[-1]))
            if vp.shape == (kh, kw, c, f):  # Keras kernel layout -> (F, C, Kh, Kw)
                vp, vn = vp.transpose(3, 2, 0, 1), vn.transpose(3, 2, 0, 1)
            elif vp.shape != (f, c, kh, kw):
                raise ValueError(f"{where}: unexpected v_pos shape {vp.shape}")
            bias = None
            if getattr(layer, "use_bias", True) and getattr(layer, "bias", None) is not None:
                bias = keras.ops.convert_to_numpy(layer.bias)
            sh, sw = _pair(layer.strides, "strides", where)
            padding = layer.padding
            if isinstance(padding, str) and padding.lower() == "valid":
                pads = (0, 0, 0, 0)
            elif isinstance(padding, str) and padding.lower() == "same":
                ph = max((math.ceil(h / sh) - 1) * sh + kh - h, 0)
                pw = max((math.ceil(w / sw) - 1) * sw + kw - w, 0)
                pads = (ph // 2, ph - ph // 2, pw // 2, pw - pw // 2)
            elif not isinstance(padding, str):
                ph, pw = _pair(padding, "padding", where)  # symmetric integer padding (torch style)
                pads = (ph, ph, pw, pw)
            else:
                raise ValueError(f"{where}: padding {padding!r} not supported")
            d = layer_dict_from_arrays(layer.name, vp, vn, bias, (h, w, c), (sh, sw), pads)
            d.pop("name")
            return d

        def maybe_get_activation_config(self, layer, out_tensors):
            act = getattr(layer, "activation", None)
            if act is None:
                return None, None
            return super().maybe_get_activation_config(layer, out_tensors)

    return BMConv2DKerasHandler


class _AfterImport:
    """``sys.meta_path`` finder that runs a callback right after a given module finished executing.

    hls4ml loads plugins while ``hls4ml.model`` / ``hls4ml.converters`` are still half-imported, and importing
    ``hls4ml.utils.torch`` would pull torch into every ``import hls4ml``: the PyTorch handler and the FX-tracer
    leaf rule are therefore attached when hls4ml itself imports those modules.
    """

    def __init__(self, name, callback):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        import importlib.util

        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        orig_exec, callback, me = spec.loader.exec_module, self.callback, self

        def exec_module(module):
            orig_exec(module)
            if me in sys.meta_path:
                sys.meta_path.remove(me)
            callback()

        spec.loader.exec_module = exec_module
        return spec


def _after_import(name: str, callback) -> None:
    """Run ``callback`` now if ``name`` is fully imported, else right after it is imported."""
    mod = sys.modules.get(name)
    spec = getattr(mod, "__spec__", None)
    if mod is not None and not getattr(spec, "_initializing", False):
        callback()
        return
    if mod is not None:  # being imported right now (partial): cannot hook its loader any more
        raise ImportError(f"{name} is partially initialized")
    if not any(isinstance(f, _AfterImport) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(name, callback))


def _register_torch_handler() -> None:
    from hls4ml.converters.pytorch_to_hls import layer_handlers, register_pytorch_layer_handler

    if "BMConv2d" not in layer_handlers:
        register_pytorch_layer_handler("BMConv2d", parse_torch_bmconv2d)


_FRONTENDS_DONE = False


def register_frontends() -> None:
    """Register the Keras 3 and PyTorch handlers with hls4ml (idempotent; deferred while hls4ml is importing)."""
    global _FRONTENDS_DONE
    if _FRONTENDS_DONE:
        return
    _keras_handler_class()
    _after_import("hls4ml.converters.pytorch_to_hls", _register_torch_handler)
    _after_import("hls4ml.utils.torch", _patch_fx_tracer)
    _FRONTENDS_DONE = True
