"""Keras 3 BM convolution layer ``BMConv2D`` (channels-last), same function as ``bm_ops.functional.bm_conv2d``.

Limonova et al., *The BM Convolutional Layer*; conversion of a trained ``keras.layers.Conv2D`` with the
paper's rule (``v^+ = ln|w|`` for ``w > 0``, ``v^- = ln|w|`` for ``w < 0``, else ``-inf``) via :func:`from_conv`.

Written with ``keras.ops`` only (backend-agnostic). The max-plus correlation runs tap by tap and channel by
channel: for each offset ``(kh, kw)`` and input channel ``c`` it adds ``ln x^a[..., c]`` (an ``(N, H_out, W_out, 1)``
slice) to ``v^b[kh, kw, c]`` (``(F,)``) and keeps the running max, so the largest intermediate is the
``(N, H_out, W_out, F)`` output itself — never an ``(N, H_out, W_out, C, F)`` or ``(N, positions, F, C K^2)``
tensor. Zeros (``ln 0 = -inf``) and all ``-inf`` maxima give 0 with zero gradient (guarded ``log``/``exp``), as in
the torch reference; ties give the gradient to the first tap (``maximum`` passes it to its first argument).
Height and width may be dynamic (``keras.Input((None, None, C))``): the geometry is computed from the runtime
shape. ``input_floor`` (default 0): ``ln max(x^a, input_floor)``, the authors' published semantics at 0.1.

Layout follows Keras: weights ``v_pos``/``v_neg`` are ``(K_h, K_w, C, F)`` (the ``Conv2D`` kernel layout). Padding:
``"valid"``, ``"same"`` (TensorFlow semantics, extra row/column at the bottom/right when odd) or an int / pair
of ints (symmetric, PyTorch-style — an extension for layers converted from torch). ``channels_first``,
dilation and groups are rejected. Importing this module imports Keras (and its backend).
"""

from __future__ import annotations

import math

from hwreshape.extras import needs_keras  # noqa: F401  # isort: skip
import keras
import numpy as np
from keras import ops

from bm_ops.functional import _check_floor, pair, to_log_weights

__all__ = ["BMConv2D", "from_conv", "from_torch"]


def _pads(padding, size, k, s):
    """(before, after) padding of one spatial dim; ``size`` an int or (dynamic dims) a scalar tensor."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = (size + s - 1) // s
        total = (out - 1) * s + k - size
        total = max(total, 0) if isinstance(total, int) else ops.maximum(total, 0)
        return total // 2, total - total // 2
    return padding, padding


@keras.saving.register_keras_serializable(package="bm_ops")
class BMConv2D(keras.layers.Layer):
    """Bipolar Morphological 2-D convolution for Keras 3 (channels-last input ``(N, H, W, C)``)."""

    def __init__(
        self,
        filters,
        kernel_size,
        strides=1,
        padding="valid",
        use_bias=True,
        data_format=None,
        input_floor=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.input_floor = _check_floor(input_floor, "BMConv2D: input_floor")
        if not isinstance(filters, int) or isinstance(filters, bool) or filters < 1:
            raise ValueError(f"BMConv2D: filters must be a positive int, got {filters!r}")
        self.filters = filters
        self.kernel_size = pair(
            tuple(kernel_size) if isinstance(kernel_size, list) else kernel_size, "kernel_size"
        )
        self.strides = pair(tuple(strides) if isinstance(strides, list) else strides, "strides")
        if isinstance(padding, str):
            padding = padding.lower()
            if padding not in ("valid", "same"):
                raise ValueError(f"BMConv2D: padding must be 'valid', 'same' or ints, got {padding!r}")
            self.padding = padding
        else:
            self.padding = pair(tuple(padding) if isinstance(padding, list) else padding, "padding")
        if min(self.kernel_size) < 1 or min(self.strides) < 1:
            raise ValueError(
                f"BMConv2D: kernel_size and strides must be >= 1, got {self.kernel_size}, {self.strides}"
            )
        fmt = data_format or keras.config.image_data_format()
        if fmt != "channels_last":
            raise ValueError(f"BMConv2D: only channels_last is supported, got data_format={fmt!r}")
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"BMConv2D: expected (N, H, W, C) input, got shape {tuple(input_shape)}")
        c = int(input_shape[-1])
        shape = (*self.kernel_size, c, self.filters)
        fan_in = c * self.kernel_size[0] * self.kernel_size[1]

        def init(shape, dtype=None, which=0):
            # Kaiming-uniform standard weight (as torch), then the paper's conversion
            bound = 1.0 / math.sqrt(fan_in)
            w = np.random.default_rng().uniform(-bound, bound, size=shape)
            return ops.convert_to_tensor(to_log_weights(w)[which], dtype=dtype)

        self.v_pos = self.add_weight(
            name="v_pos", shape=shape, initializer=lambda s, dtype=None: init(s, dtype, 0)
        )
        self.v_neg = self.add_weight(
            name="v_neg", shape=shape, initializer=lambda s, dtype=None: init(s, dtype, 1)
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
            if self.use_bias
            else None
        )

    def _geometry(self, h, w):
        kh, kw = self.kernel_size
        sh, sw = self.strides
        if isinstance(self.padding, str):
            (pt, pb), (pl, pr) = _pads(self.padding, h, kh, sh), _pads(self.padding, w, kw, sw)
        else:
            pt = pb = self.padding[0]
            pl = pr = self.padding[1]
        oh = (h + pt + pb - kh) // sh + 1
        ow = (w + pl + pr - kw) // sw + 1
        if isinstance(oh, int) and isinstance(ow, int) and (oh < 1 or ow < 1):
            raise ValueError(
                f"BMConv2D {self.name}: kernel {self.kernel_size} larger than padded input {(h, w)}"
            )
        return (pt, pb, pl, pr), (oh, ow)

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        if h is None or w is None:
            oh = ow = None
            if h is not None or w is not None:
                _, (oh2, ow2) = self._geometry(int(h or self.kernel_size[0]), int(w or self.kernel_size[1]))
                oh, ow = (oh2 if h is not None else None), (ow2 if w is not None else None)
            return (n, oh, ow, self.filters)
        _, (oh, ow) = self._geometry(int(h), int(w))
        return (n, oh, ow, self.filters)

    def call(self, x):
        if x.shape[-1] is not None and int(x.shape[-1]) != int(self.v_pos.shape[2]):
            raise ValueError(
                f"BMConv2D {self.name}: input has {int(x.shape[-1])} channels, weights expect {int(self.v_pos.shape[2])}"
            )
        h = int(x.shape[1]) if x.shape[1] is not None else ops.shape(x)[1]
        w = int(x.shape[2]) if x.shape[2] is not None else ops.shape(x)[2]
        (pt, pb, pl, pr), (oh, ow) = self._geometry(h, w)
        kh, kw = self.kernel_size
        sh, sw = self.strides
        c_in = int(self.v_pos.shape[2])
        ninf = ops.cast(-np.inf, x.dtype)
        out = 0.0
        for p_a, xa in ((1.0, ops.relu(x)), (-1.0, ops.relu(-x))):
            xa = ops.pad(
                xa, ((0, 0), (pt, pb), (pl, pr), (0, 0))
            )  # zero padding: ln 0 = -inf (ln s with a floor)
            if self.input_floor > 0:
                lx = ops.log(ops.maximum(xa, ops.cast(self.input_floor, x.dtype)))
            else:
                pos = xa > 0
                lx = ops.where(pos, ops.log(ops.where(pos, xa, ops.ones_like(xa))), ninf)
            taps = [
                lx[:, i:, j:][:, ::sh, ::sw][:, :oh, :ow]  # (N, oh, ow, C) at offset (i, j)
                for i in range(kh)
                for j in range(kw)
            ]
            for p_b, v in ((1.0, self.v_pos), (-1.0, self.v_neg)):
                m = None
                for c in range(c_in):  # channel-major tap order (c, kh, kw), as the torch reference
                    for t, sl in enumerate(taps):
                        s = sl[..., c : c + 1] + v[t // kw, t % kw, c]  # (N, oh, ow, F)
                        m = s if m is None else ops.maximum(m, s)
                alive = m > ninf
                term = ops.where(alive, ops.exp(ops.where(alive, m, ops.zeros_like(m))), ops.zeros_like(m))
                out = out + (p_a * p_b) * term
        if self.bias is not None:
            out = out + self.bias
        return out

    def get_config(self):
        cfg = super().get_config()
        cfg.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            padding=self.padding,
            use_bias=self.use_bias,
            input_floor=self.input_floor,
        )
        return cfg


def from_conv(conv) -> BMConv2D:
    """The paper's conversion of a built ``keras.layers.Conv2D`` (channels-last, no dilation/groups) into ``BMConv2D``.

    The Conv2D's ``activation`` is not carried over (the BM layer is linear-free: put the activation after it).
    """
    if not isinstance(conv, keras.layers.Conv2D):
        raise TypeError(f"from_conv expects a keras.layers.Conv2D, got {type(conv).__name__}")
    if not conv.built:
        raise ValueError(f"from_conv: layer {conv.name} is not built (call it on an input first)")
    if tuple(conv.dilation_rate) != (1, 1):
        raise ValueError(
            f"from_conv: {conv.name} has dilation_rate={tuple(conv.dilation_rate)}; only 1 is supported"
        )
    if getattr(conv, "groups", 1) != 1:
        raise ValueError(f"from_conv: {conv.name} has groups={conv.groups}; only 1 is supported")
    if conv.data_format != "channels_last":
        raise ValueError(f"from_conv: {conv.name} uses {conv.data_format}; only channels_last is supported")
    w = np.asarray(keras.ops.convert_to_numpy(conv.kernel), dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValueError(f"from_conv: {conv.name} kernel contains NaN or inf")
    bm = BMConv2D(conv.filters, tuple(conv.kernel_size), tuple(conv.strides), conv.padding, conv.use_bias)
    bm.build((None, None, None, w.shape[2]))
    vp, vn = to_log_weights(w)
    bm.v_pos.assign(vp.astype(np.float32))
    bm.v_neg.assign(vn.astype(np.float32))
    if conv.use_bias:
        bm.bias.assign(keras.ops.convert_to_numpy(conv.bias))
    return bm


def from_torch(layer) -> BMConv2D:
    """A ``BMConv2D`` computing the same function as a torch ``BMConv2d`` or (converted) ``nn.Conv2d``."""
    from torch import nn

    from bm_ops.torch import BMConv2d
    from bm_ops.torch import from_conv as torch_from_conv

    if isinstance(layer, nn.Conv2d):
        layer = torch_from_conv(layer)
    if not isinstance(layer, BMConv2d):
        raise TypeError(
            f"from_torch expects a bm_ops.torch.BMConv2d or nn.Conv2d, got {type(layer).__name__}"
        )
    bm = BMConv2D(
        layer.out_channels,
        layer.kernel_size,
        layer.stride,
        layer.padding,
        layer.bias is not None,
        input_floor=layer.input_floor,
    )
    bm.build((None, None, None, layer.in_channels))
    # torch (F, C, kh, kw) -> keras (kh, kw, C, F)
    bm.v_pos.assign(layer.v_pos.detach().permute(2, 3, 1, 0).float().numpy())
    bm.v_neg.assign(layer.v_neg.detach().permute(2, 3, 1, 0).float().numpy())
    if layer.bias is not None:
        bm.bias.assign(layer.bias.detach().float().numpy())
    return bm
