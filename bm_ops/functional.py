"""Reference math of the Bipolar Morphological (BM) neuron and BM convolution.

Limonova et al. ("ResNet-like Architecture with Low Hardware Requirements"),
sections *The bipolar morphological neuron*, *The BM Convolutional Layer* and *Training of BM Network*.

BM neuron (eq. for ``y_BM``)::

    y = sum_{alpha, beta in {+,-}} p^alpha p^beta exp( max_j ( ln x_j^alpha + v_j^beta ) ) + v_b

with ``p^+ = 1``, ``p^- = -1``, ``x^+ = max(x, 0)``, ``x^- = max(-x, 0)``; ``ln 0 = -inf`` and ``exp(-inf) = 0``.
The BM convolution replaces the dot product of every receptive field by the same expression, the max running
over the ``C x K_h x K_w`` taps (eq. for ``(I (.) v)_{n,m,c}``). The activation ``sigma`` of the paper is
*not* part of the layer (as for ``torch.nn.Conv2d``): put it after the layer.

Conversion (Limonova et al., *Training of BM Network*, step 2): ``v^+ = ln|w|`` where ``w > 0`` else ``-inf``,
``v^- = ln|w|`` where ``w < 0`` else ``-inf`` — see :func:`to_log_weights`. For every ``x`` the converted
neuron computes ``max_j`` of the products instead of their sum, so conversion is exact only when one tap
dominates each receptive field; the recipe fine-tunes afterwards.

Two implementations of the same function live here:

* NumPy inputs → NumPy output, float64 math, ``exp(max(ln x + v))`` literally (the specification).
* torch inputs → torch output, differentiable through plain autograd. The max is a sub-gradient: the gradient
  of every term goes to its arg-max tap only (``d/dv = exp(max)``, ``d/dx^alpha = exp(v)`` at that tap), and
  terms whose max is ``-inf`` (all taps zero or ``-inf``) contribute 0 with gradient 0 — never NaN. It
  materialises the ``(N, F, C*K*K, L)`` tensor in filter chunks: it is the *reference*, not the fast path
  (``bm_ops.torch.BMConv2d`` uses the compiled kernel in ``bm_ops._kernel``).

Ties in the arg-max are resolved to the first tap in ``(c, kh, kw)`` order (the order ``unfold`` uses), which
is also what the compiled kernel does.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "bm_conv2d",
    "bm_linear",
    "to_log_weights",
    "split_sign",
    "check_log_weights",
    "pair",
    "AUTHORS_WEIGHT_FLOOR",
    "AUTHORS_INPUT_FLOOR",
]

NEG_INF = -math.inf
_TORCH_CHUNK_ELEMS = 1 << 24  # max elements of the (N, f_chunk, C*K*K, L) tensor in the torch reference


def _is_torch(x) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch")


def pair(value, name: str) -> tuple[int, int]:
    """``int`` or 2-sequence of ints → ``(h, w)``; anything else is a ``TypeError``/``ValueError`` naming ``name``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


def split_sign(x):
    """``(x^+, x^-)`` of the paper: ``x^+ = max(x, 0)``, ``x^- = max(-x, 0)`` (NumPy or torch)."""
    if _is_torch(x):
        import torch

        return torch.relu(x), torch.relu(-x)
    x = np.asarray(x)
    return np.maximum(x, 0), np.maximum(-x, 0)


AUTHORS_WEIGHT_FLOOR = 1e-6  # the authors' published code: v^± = ln max(±w, 1e-6) at conversion
AUTHORS_INPUT_FLOOR = 0.1  # the authors' published layer: ln max(x^a, 0.1) (their ``input_shift``)


def _check_floor(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a float >= 0, got {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"{name} must be a finite float >= 0, got {value!r}")
    return value


def to_log_weights(w, floor=None):
    """The paper's conversion of a weight tensor ``w`` into ``(v_pos, v_neg)``.

    ``v_pos = ln|w|`` where ``w > 0`` else ``-inf``; ``v_neg = ln|w|`` where ``w < 0`` else ``-inf`` (zeros go to
    ``-inf`` in both). Works on NumPy arrays (float64 result) and torch tensors (same dtype, no grad; meta tensors
    give meta results without the finiteness check).

    ``floor`` (``None`` = the paper's rule): the authors' published conversion ``v^± = ln max(±w, floor)`` with
    ``floor = 1e-6`` (:data:`AUTHORS_WEIGHT_FLOOR`): every log-weight is finite (``>= ln floor``), so both signs
    of every tap get gradients and a weight can change sign or come back from zero during fine-tuning.
    """
    if floor is not None:
        floor = _check_floor(floor, "to_log_weights: floor")
        if floor <= 0.0:
            raise ValueError("to_log_weights: floor must be > 0 (use None for the paper's -inf rule)")
    if _is_torch(w):
        import torch

        w = w.detach()
        if not w.is_meta and not torch.isfinite(w).all():
            raise ValueError("to_log_weights: w contains NaN or inf; expected finite weights")
        if floor is not None:
            return torch.log(torch.clamp(w, min=floor)), torch.log(torch.clamp(-w, min=floor))
        ninf = torch.full_like(w, NEG_INF)
        mag = torch.log(torch.where(w != 0, w.abs(), torch.ones_like(w)))
        return torch.where(w > 0, mag, ninf), torch.where(w < 0, mag, ninf)
    w = np.asarray(w, dtype=np.float64)
    if not np.isfinite(w).all():
        raise ValueError("to_log_weights: w contains NaN or inf; expected finite weights")
    if floor is not None:
        return np.log(np.maximum(w, floor)), np.log(np.maximum(-w, floor))
    with np.errstate(divide="ignore"):
        mag = np.log(np.abs(w))
    return np.where(w > 0, mag, NEG_INF), np.where(w < 0, mag, NEG_INF)


def check_log_weights(v_pos, v_neg, ndim: int, where: str = "bm", values: bool = True) -> None:
    """Validate a ``(v_pos, v_neg)`` pair: same shape, ``ndim`` dims, no NaN and no ``+inf`` (``-inf`` allowed).

    ``values=False`` checks the shapes only (for traced/compiled code, where the values are not known yet).
    """
    for name, v in (("v_pos", v_pos), ("v_neg", v_neg)):
        if v.ndim != ndim:
            raise ValueError(f"{where}: {name} must have {ndim} dims, got shape {tuple(v.shape)}")
    if tuple(v_pos.shape) != tuple(v_neg.shape):
        raise ValueError(f"{where}: v_pos shape {tuple(v_pos.shape)} != v_neg shape {tuple(v_neg.shape)}")
    if not values:
        return
    for name, v in (("v_pos", v_pos), ("v_neg", v_neg)):
        if _is_torch(v):
            import torch

            bad = bool(torch.isnan(v).any()) or bool((v == math.inf).any())
        else:
            arr = np.asarray(v)
            bad = bool(np.isnan(arr).any()) or bool((arr == math.inf).any())
        if bad:
            raise ValueError(
                f"{where}: {name} contains NaN or +inf; log-domain weights must be finite or -inf"
            )


def _check_conv_args(x, v_pos, v_neg, bias, stride, padding, where="bm_conv2d", values=True):
    check_log_weights(v_pos, v_neg, 4, where, values)
    if x.ndim != 4:
        raise ValueError(f"{where}: x must be NCHW (4 dims), got shape {tuple(x.shape)}")
    f, c, kh, kw = (int(s) for s in v_pos.shape)
    if int(x.shape[1]) != c:
        raise ValueError(
            f"{where}: x has {int(x.shape[1])} channels but v_pos expects {c} (shape {tuple(v_pos.shape)})"
        )
    sh, sw = pair(stride, "stride")
    ph, pw = pair(padding, "padding")
    if sh < 1 or sw < 1:
        raise ValueError(f"{where}: stride must be >= 1, got {(sh, sw)}")
    if ph < 0 or pw < 0:
        raise ValueError(f"{where}: padding must be >= 0, got {(ph, pw)}")
    h, w = int(x.shape[2]), int(x.shape[3])
    oh = (h + 2 * ph - kh) // sh + 1
    ow = (w + 2 * pw - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"{where}: kernel {(kh, kw)} larger than padded input {(h + 2 * ph, w + 2 * pw)}")
    if bias is not None and tuple(bias.shape) != (f,):
        raise ValueError(f"{where}: bias must have shape ({f},), got {tuple(bias.shape)}")
    if bias is not None and values:
        b = bias.detach() if _is_torch(bias) else np.asarray(bias)
        if _is_torch(b):
            import torch

            if not torch.isfinite(b).all():
                raise ValueError(f"{where}: bias contains NaN or inf")
        elif not np.isfinite(b).all():
            raise ValueError(f"{where}: bias contains NaN or inf")
    return (f, c, kh, kw), (sh, sw), (ph, pw), (oh, ow)


# ----------------------------------------------------------------------------------------------- NumPy


def _np_unfold(x, kh, kw, sh, sw, ph, pw, oh, ow):
    """(N, C, H, W) → (N, C*kh*kw, oh*ow), padding filled with 0 (tap order c, kh, kw like torch.unfold)."""
    n, c, _, _ = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
    return cols.reshape(n, c * kh * kw, oh * ow)


def _np_bm_conv2d(x, v_pos, v_neg, bias, stride, padding, input_floor=0.0):
    x = np.asarray(x, dtype=np.float64)
    v_pos = np.asarray(v_pos, dtype=np.float64)
    v_neg = np.asarray(v_neg, dtype=np.float64)
    bias = None if bias is None else np.asarray(bias, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError("bm_conv2d: x contains NaN or inf")
    (f, c, kh, kw), (sh, sw), (ph, pw), (oh, ow) = _check_conv_args(x, v_pos, v_neg, bias, stride, padding)
    n = x.shape[0]
    out = np.zeros((n, f, oh * ow), dtype=np.float64)
    vs = {+1: v_pos.reshape(f, -1), -1: v_neg.reshape(f, -1)}
    for p_a, xa in zip((+1, -1), split_sign(x)):
        # pad *before* the log so that padding taps are ln 0 = -inf (ln max(0, s) with an input floor s)
        with np.errstate(divide="ignore"):
            lx = np.log(np.maximum(_np_unfold(xa, kh, kw, sh, sw, ph, pw, oh, ow), input_floor))
        for p_b, v in vs.items():
            # (N, 1, T, L) + (1, F, T, 1) → max over taps T, one filter at a time to bound memory
            for fi in range(f):
                m = (lx + v[fi][None, :, None]).max(axis=1)
                out[:, fi] += p_a * p_b * np.exp(m)
    out = out.reshape(n, f, oh, ow)
    if bias is not None:
        out += bias[None, :, None, None]
    return out


# ----------------------------------------------------------------------------------------------- torch


def _torch_bm_conv2d(x, v_pos, v_neg, bias, stride, padding, input_floor=0.0):
    import torch
    import torch.nn.functional as F

    if not torch.isfinite(x.detach()).all():
        raise ValueError("bm_conv2d: x contains NaN or inf")
    (f, c, kh, kw), (sh, sw), (ph, pw), (oh, ow) = _check_conv_args(x, v_pos, v_neg, bias, stride, padding)
    n = x.shape[0]
    taps = c * kh * kw
    L = oh * ow
    out = x.new_zeros((n, f, L))
    vs = ((+1, v_pos.reshape(f, taps)), (-1, v_neg.reshape(f, taps)))
    chunk = max(1, _TORCH_CHUNK_ELEMS // max(1, n * taps * L))
    for p_a, xa in zip((+1, -1), split_sign(x)):
        cols = F.unfold(xa, (kh, kw), padding=(ph, pw), stride=(sh, sw))  # (N, T, L), differentiable
        if input_floor > 0:  # max(x^a, s): the gradient reaches x only where x^a > s
            cols = torch.where(cols > input_floor, cols, torch.full_like(cols, input_floor))
        pos = cols > 0
        safe = torch.where(pos, cols, torch.ones_like(cols))
        lx = torch.where(pos, torch.log(safe), torch.full_like(cols, NEG_INF))
        for p_b, v in vs:
            for f0 in range(0, f, chunk):
                vc = v[f0 : f0 + chunk]
                with torch.no_grad():
                    s = lx.detach()[:, None, :, :] + vc.detach()[None, :, :, None]  # (N, f, T, L)
                    m, idx = s.max(dim=2)  # first maximal tap on ties
                    alive = m > NEG_INF
                # gather the arg-max tap and rebuild exp(ln x + v) = x * exp(v) with autograd
                xg = torch.gather(cols[:, None].expand(-1, vc.shape[0], -1, -1), 2, idx[:, :, None]).squeeze(
                    2
                )
                vg = torch.gather(vc[None, :, :].expand(n, -1, -1), 2, idx)
                xs = torch.where(alive, xg, torch.ones_like(xg))
                vsafe = torch.where(alive, vg, torch.zeros_like(vg))
                term = torch.where(alive, torch.exp(torch.log(xs) + vsafe), torch.zeros_like(xg))
                out[:, f0 : f0 + vc.shape[0]] = out[:, f0 : f0 + vc.shape[0]] + (p_a * p_b) * term
    out = out.reshape(n, f, oh, ow)
    if bias is not None:
        out = out + bias[None, :, None, None]
    return out


# ----------------------------------------------------------------------------------------------- public


def bm_conv2d(x, v_pos, v_neg, bias=None, stride=1, padding=0, *, input_floor=0.0):
    """BM convolution (Limonova et al., *The BM Convolutional Layer*), reference implementation.

    Args:
        x: input, NCHW. NumPy array (float64 math, NumPy result) or torch tensor (torch result, differentiable).
        v_pos, v_neg: log-domain weights ``v^+``, ``v^-`` shaped like a conv weight ``(F, C, K_h, K_w)``;
            ``-inf`` allowed (an absent tap), NaN and ``+inf`` rejected.
        bias: ``(F,)`` or None.
        stride, padding: int or ``(h, w)``; padding taps are zeros (``ln 0 = -inf``), as in the paper's ``I``.
        input_floor: ``s >= 0``; the log-domain input is ``ln max(x^a, s)`` (padding taps ``ln s``). ``0`` (default)
            is the paper; the authors' published layer uses ``0.1`` (:data:`AUTHORS_INPUT_FLOOR`, their
            ``input_shift``): every tap then enters both sign terms and the gradient reaches ``x`` only where
            ``x^a > s``.

    Returns ``sum_{a,b} p^a p^b exp(ln I^a (.) v^b) + b``, shape ``(N, F, H_out, W_out)``.
    """
    input_floor = _check_floor(input_floor, "bm_conv2d: input_floor")
    if _is_torch(x) or _is_torch(v_pos):
        import torch

        if not (
            isinstance(x, torch.Tensor)
            and isinstance(v_pos, torch.Tensor)
            and isinstance(v_neg, torch.Tensor)
        ):
            raise TypeError("bm_conv2d: x, v_pos and v_neg must all be torch tensors or all NumPy arrays")
        return _torch_bm_conv2d(x, v_pos, v_neg, bias, stride, padding, input_floor)
    return _np_bm_conv2d(x, v_pos, v_neg, bias, stride, padding, input_floor)


def bm_linear(x, v_pos, v_neg, bias=None, *, input_floor=0.0):
    """BM neuron layer (eq. ``y_BM`` without ``sigma``): ``x`` is ``(N, in)``, ``v_pos``/``v_neg`` ``(out, in)``."""
    if x.ndim != 2:
        raise ValueError(f"bm_linear: x must be (N, in_features), got shape {tuple(x.shape)}")
    check_log_weights(v_pos, v_neg, 2, "bm_linear")
    if int(x.shape[1]) != int(v_pos.shape[1]):
        raise ValueError(
            f"bm_linear: x has {int(x.shape[1])} features but v_pos expects {int(v_pos.shape[1])} (shape {tuple(v_pos.shape)})"
        )
    y = bm_conv2d(
        x[:, :, None, None], v_pos[:, :, None, None], v_neg[:, :, None, None], bias, input_floor=input_floor
    )
    return y[:, :, 0, 0]
