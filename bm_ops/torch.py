"""PyTorch BM layers: ``BMConv2d``, ``BMLinear`` and the paper's layer conversion.

Limonova et al.: *The BM Convolutional Layer* (forward function) and *Training of BM Network*
step 2 (conversion ``v^+ = ln|w|`` where ``w > 0`` else ``-inf``, ``v^- = ln|w|`` where ``w < 0`` else ``-inf``).

The layers hold ``v_pos`` / ``v_neg`` (``nn.Parameter``, shaped like the standard weight, ``-inf`` = absent tap)
and ``bias``. On CPU (and on the meta device) they call the custom op ``torch.ops.bm_ops.conv2d``
(``bm_ops._kernel``: compiled kernel, fake kernel, registered autograd), so ``torch.compile(fullgraph=True)``
and ``torch.export`` trace them; on other devices, or with ``backend="reference"``, they run
:func:`bm_ops.functional.bm_conv2d` (same function, plain autograd, double-differentiable).

Authors' training semantics (their published code, not the paper; off by default): ``input_floor=0.1`` computes
``ln max(x^a, 0.1)`` (every tap enters both sign terms) and ``weight_floor=1e-6`` in the conversions gives
``v^± = ln max(±w, 1e-6)`` (finite, so every tap of both signs keeps learning; the paper's ``-inf`` taps get no
gradient, so a weight's sign and sparsity are frozen at conversion).

Notes (deviations / practicalities, also in the README):

* Fresh layers (not converted) are initialised like ``nn.Conv2d`` (Kaiming-uniform weight) and then converted,
  so a BM layer trained from scratch starts where a converted one would.
* ``-inf`` entries get zero gradient and stay ``-inf`` under SGD/Adam, **but** weight decay on them gives
  ``-inf * wd`` → the update turns them into ``+inf``/NaN: exclude ``v_pos``/``v_neg`` from weight decay
  (``bm_ops.training.recipes.param_groups`` does).
* ``dilation != 1``, ``groups != 1`` and non-zero padding modes are not part of the paper and are rejected.
"""

from __future__ import annotations

import math

from hwreshape.extras import needs_torch  # noqa: F401  # isort: skip
import torch
from torch import nn

from bm_ops.functional import _check_floor, check_log_weights, pair, to_log_weights
from bm_ops.functional import bm_conv2d as _ref_conv2d

__all__ = ["BMConv2d", "BMLinear", "from_conv", "from_linear", "convert_layers", "convertible_layers"]

_BACKENDS = ("auto", "kernel", "reference")


def _check_backend(backend: str) -> str:
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
    return backend


def _run(backend, x, v_pos, v_neg, bias, stride, padding, input_floor):
    if backend == "reference" or (backend == "auto" and x.device.type not in ("cpu", "meta")):
        return _ref_conv2d(x, v_pos, v_neg, bias, stride, padding, input_floor=input_floor)
    from bm_ops._kernel import bm_conv2d_fast

    return bm_conv2d_fast(x, v_pos, v_neg, bias, stride, padding, input_floor=input_floor)


class BMConv2d(nn.Module):
    """Bipolar Morphological 2-D convolution (Limonova et al., *The BM Convolutional Layer*), drop-in for ``nn.Conv2d``.

    ``y = sum_{a,b} p^a p^b exp(ln x^a (.) v^b) + bias`` with ``(.)`` the max-plus correlation over
    ``C x K_h x K_w`` taps; zero padding (``ln 0 = -inf``). ``input_floor`` (default 0, the paper): use
    ``ln max(x^a, input_floor)`` — 0.1 is the authors' published code; ``weight_floor`` (default None, the
    paper): the conversion floor of :func:`bm_ops.functional.to_log_weights` used by ``reset_parameters``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        bias: bool = True,
        dilation=1,
        groups: int = 1,
        padding_mode: str = "zeros",
        backend: str = "auto",
        device=None,
        dtype=None,
        *,
        input_floor: float = 0.0,
        weight_floor: float | None = None,
    ):
        super().__init__()
        self.input_floor = _check_floor(input_floor, "BMConv2d: input_floor")
        self.weight_floor = weight_floor
        if pair(dilation, "dilation") != (1, 1):
            raise ValueError(f"BMConv2d: dilation {dilation!r} is not supported (only 1)")
        if groups != 1:
            raise ValueError(f"BMConv2d: groups={groups} is not supported (only 1)")
        if padding_mode != "zeros":
            raise ValueError(f"BMConv2d: padding_mode {padding_mode!r} is not supported (only 'zeros')")
        for name, val in (("in_channels", in_channels), ("out_channels", out_channels)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"BMConv2d: {name} must be a positive int, got {val!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"BMConv2d: kernel_size/stride must be >= 1 and padding >= 0, got "
                f"{self.kernel_size}, {self.stride}, {self.padding}"
            )
        self.backend = _check_backend(backend)
        kw = {"device": device, "dtype": dtype}
        shape = (out_channels, in_channels, *self.kernel_size)
        self.v_pos = nn.Parameter(torch.empty(shape, **kw))
        self.v_neg = nn.Parameter(torch.empty(shape, **kw))
        self.bias = nn.Parameter(torch.empty(out_channels, **kw)) if bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Kaiming-uniform standard weight (as ``nn.Conv2d``), then the paper's conversion (``weight_floor``)."""
        w = torch.empty(self.v_pos.shape, device=self.v_pos.device, dtype=self.v_pos.dtype)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        vp, vn = to_log_weights(w, self.weight_floor)
        self.v_pos.copy_(vp)
        self.v_neg.copy_(vn)
        if self.bias is not None:
            fan_in = w[0].numel()
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"BMConv2d: expected NCHW input, got shape {tuple(x.shape)}")
        return _run(
            self.backend, x, self.v_pos, self.v_neg, self.bias, self.stride, self.padding, self.input_floor
        )

    def weight_equivalent(self) -> torch.Tensor:
        """Standard weight with the same taps, ``exp(v^+) - exp(v^-)`` (the inverse of the conversion)."""
        return (torch.exp(self.v_pos) - torch.exp(self.v_neg)).detach()

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        s += f", padding={self.padding}, bias={self.bias is not None}"
        s += f", input_floor={self.input_floor}" if self.input_floor else ""
        return s + ("" if self.backend == "auto" else f", backend={self.backend!r}")


class BMLinear(nn.Module):
    """Layer of BM neurons (eq. ``y_BM`` without ``sigma``), drop-in for ``nn.Linear``; input ``(..., in)``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        backend: str = "auto",
        device=None,
        dtype=None,
        *,
        input_floor: float = 0.0,
        weight_floor: float | None = None,
    ):
        super().__init__()
        self.input_floor = _check_floor(input_floor, "BMLinear: input_floor")
        self.weight_floor = weight_floor
        for name, val in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise ValueError(f"BMLinear: {name} must be a positive int, got {val!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.backend = _check_backend(backend)
        kw = {"device": device, "dtype": dtype}
        self.v_pos = nn.Parameter(torch.empty((out_features, in_features), **kw))
        self.v_neg = nn.Parameter(torch.empty((out_features, in_features), **kw))
        self.bias = nn.Parameter(torch.empty(out_features, **kw)) if bias else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        w = torch.empty(self.v_pos.shape, device=self.v_pos.device, dtype=self.v_pos.dtype)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5))
        vp, vn = to_log_weights(w, self.weight_floor)
        self.v_pos.copy_(vp)
        self.v_neg.copy_(vn)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(
                f"BMLinear: expected (..., {self.in_features}) input, got shape {tuple(x.shape)}"
            )
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features, 1, 1)
        y = _run(
            self.backend,
            x2,
            self.v_pos[:, :, None, None],
            self.v_neg[:, :, None, None],
            self.bias,
            1,
            0,
            self.input_floor,
        )
        return y.reshape(*lead, self.out_features)

    def weight_equivalent(self) -> torch.Tensor:
        return (torch.exp(self.v_pos) - torch.exp(self.v_neg)).detach()

    def extra_repr(self) -> str:
        s = f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
        return s + (f", input_floor={self.input_floor}" if self.input_floor else "")


def _check_finite(t: torch.Tensor, what: str) -> None:
    if not torch.isfinite(t).all():
        raise ValueError(f"{what} contains NaN or inf; cannot convert to log-domain weights")


def _load_converted(bm, src: nn.Module, w: torch.Tensor, bias_what: str, weight_floor=None):
    """The paper's conversion into ``bm``: ``v_pos``/``v_neg`` from ``w`` (``to_log_weights``), the bias copied,
    the train/eval mode of ``src`` kept."""
    vp, vn = to_log_weights(w, weight_floor)
    with torch.no_grad():
        bm.v_pos.copy_(vp)
        bm.v_neg.copy_(vn)
        if src.bias is not None:
            _check_finite(src.bias.detach(), bias_what)
            bm.bias.copy_(src.bias.detach())
    bm.train(src.training)
    return bm


def from_conv(
    conv: nn.Conv2d, backend: str = "auto", *, weight_floor: float | None = None, input_floor: float = 0.0
) -> BMConv2d:
    """The paper's conversion of a trained ``nn.Conv2d`` (or subclass, e.g. Brevitas ``QuantConv2d``) into a ``BMConv2d``.

    For Brevitas layers the float ``weight`` is converted (the quantizer is not carried over). ``weight_floor``
    (e.g. ``1e-6``, the authors' code) gives ``v^± = ln max(±w, weight_floor)``; ``input_floor`` is passed to the
    layer (see :class:`BMConv2d`).
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"from_conv expects a torch.nn.Conv2d, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(f"from_conv: groups={conv.groups} is not supported by BMConv2d (only 1)")
    if tuple(conv.dilation) != (1, 1):
        raise ValueError(f"from_conv: dilation={tuple(conv.dilation)} is not supported by BMConv2d (only 1)")
    if conv.padding_mode != "zeros":
        raise ValueError(f"from_conv: padding_mode={conv.padding_mode!r} is not supported (only 'zeros')")
    padding = conv.padding
    if isinstance(padding, str):
        if padding == "valid":
            padding = (0, 0)
        elif padding == "same" and tuple(conv.stride) == (1, 1) and all(k % 2 == 1 for k in conv.kernel_size):
            padding = (conv.kernel_size[0] // 2, conv.kernel_size[1] // 2)
        else:
            raise ValueError(
                f"from_conv: padding={padding!r} with kernel {conv.kernel_size} is not supported"
            )
    w = conv.weight.detach()
    _check_finite(w, "from_conv: conv.weight")
    bm = BMConv2d(
        conv.in_channels,
        conv.out_channels,
        tuple(conv.kernel_size),
        stride=tuple(conv.stride),
        padding=tuple(padding),
        bias=conv.bias is not None,
        backend=backend,
        device=w.device,
        dtype=w.dtype,
        input_floor=input_floor,
        weight_floor=weight_floor,
    )
    return _load_converted(bm, conv, w, "from_conv: conv.bias", weight_floor)


def from_linear(
    linear: nn.Linear, backend: str = "auto", *, weight_floor: float | None = None, input_floor: float = 0.0
) -> BMLinear:
    """The paper's conversion of a trained ``nn.Linear`` into a ``BMLinear`` (options as :func:`from_conv`)."""
    if not isinstance(linear, nn.Linear):
        raise TypeError(f"from_linear expects a torch.nn.Linear, got {type(linear).__name__}")
    w = linear.weight.detach()
    _check_finite(w, "from_linear: linear.weight")
    bm = BMLinear(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        backend=backend,
        device=w.device,
        dtype=w.dtype,
        input_floor=input_floor,
        weight_floor=weight_floor,
    )
    return _load_converted(bm, linear, w, "from_linear: linear.bias", weight_floor)


def convertible_layers(model: nn.Module, include_linear: bool = True) -> list[str]:
    """Names of the ``nn.Conv2d`` (and ``nn.Linear``) submodules in registration order."""
    kinds = (nn.Conv2d, nn.Linear) if include_linear else (nn.Conv2d,)
    return [
        n for n, m in model.named_modules() if n and isinstance(m, kinds) and not isinstance(m, (BMConv2d,))
    ]


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def convert_layers(
    model: nn.Module,
    names=None,
    include_linear: bool = True,
    backend: str = "auto",
    *,
    weight_floor: float | None = None,
    input_floor: float = 0.0,
) -> nn.Module:
    """Replace layers of ``model`` in place by their BM versions (the paper's conversion) and return ``model``.

    ``names``: submodule names (``model.named_modules()``) to convert; ``None`` converts every ``nn.Conv2d``
    (and every ``nn.Linear`` when ``include_linear``). Unknown names or layers of another type raise.
    ``weight_floor`` / ``input_floor``: the authors' semantics options (see :func:`from_conv`).
    """
    opts = {"weight_floor": weight_floor, "input_floor": input_floor}
    if names is None:
        names = convertible_layers(model, include_linear)
    elif isinstance(names, str):
        names = [names]
    modules = dict(model.named_modules())
    for name in names:
        if name not in modules or not name:
            raise ValueError(f"convert_layers: no submodule named {name!r}")
        m = modules[name]
        if isinstance(m, (BMConv2d, BMLinear)):
            continue
        if isinstance(m, nn.Conv2d):
            _set_submodule(model, name, from_conv(m, backend, **opts))
        elif isinstance(m, nn.Linear):
            _set_submodule(model, name, from_linear(m, backend, **opts))
        else:
            raise ValueError(
                f"convert_layers: {name!r} is a {type(m).__name__}, expected nn.Conv2d or nn.Linear"
            )
    return model


def check_module(m: nn.Module) -> None:
    """Validate the log-domain parameters of a BM layer (no NaN / +inf)."""
    if isinstance(m, BMConv2d):
        check_log_weights(m.v_pos, m.v_neg, 4, "BMConv2d")
    elif isinstance(m, BMLinear):
        check_log_weights(m.v_pos, m.v_neg, 2, "BMLinear")
