"""Batch-norm folding, Khodamoradi 2021 Eq 4.3 — framework-free (NumPy).

``y = W_bn (W_conv x + b_conv) + b_bn = W_bn+conv x + b_bn+conv`` where the inference-time batch norm is the
per-channel affine map ``W_bn = γ / sqrt(σ² + ε)``, ``b_bn = β − μ·γ / sqrt(σ² + ε)``.  Hence
``W_bn+conv = W_bn ⊙ W_conv`` (scaled along the output-channel axis) and ``b_bn+conv = W_bn·b_conv + b_bn``.

Folding needs a convolution immediately followed by its BN; in a skip-free student (Listing 4.1) or the
Trimmer's (Conv.+BN/Act.) short-skip blocks (Listing 4.2) every convolution is.  The torch and Keras exports
(:func:`hls4ml_skiptrim.training.torch.fold_bn`, :func:`hls4ml_skiptrim.training.keras.export`) both call :func:`fold_conv_bn`.
"""

from __future__ import annotations

import numpy as np


def bn_affine(gamma, beta, mean, var, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """Inference BN as ``(W_bn, b_bn)`` per channel (Eq 4.3)."""
    gamma, beta, mean, var = (np.asarray(a, dtype=np.float64) for a in (gamma, beta, mean, var))
    if not (gamma.shape == beta.shape == mean.shape == var.shape) or gamma.ndim != 1:
        raise ValueError(
            f"BN parameters must be 1-D of one length, got {gamma.shape}, {beta.shape}, {mean.shape}, {var.shape}"
        )
    if eps < 0 or np.any(var + eps <= 0):
        raise ValueError("BN variance + eps must be positive")
    w = gamma / np.sqrt(var + eps)
    return w, beta - mean * w


def fold_conv_bn(kernel, bias, gamma, beta, mean, var, eps: float, out_axis: int):
    """Eq 4.3: fold a BN that follows a convolution/dense layer into its kernel and bias.

    ``kernel``: any layout; ``out_axis`` names its output-channel axis (torch OIHW: 0; Keras HWIO: -1).
    ``bias``: (C_out,) or None (treated as zeros).  Returns ``(kernel', bias')`` in the input's dtype.
    """
    kernel = np.asarray(kernel)
    w_bn, b_bn = bn_affine(gamma, beta, mean, var, eps)
    c_out = kernel.shape[out_axis]
    if w_bn.shape != (c_out,):
        raise ValueError(
            f"BN has {w_bn.shape[0]} channels but the kernel has {c_out} outputs (axis {out_axis})"
        )
    b = np.zeros(c_out) if bias is None else np.asarray(bias, dtype=np.float64)
    if b.shape != (c_out,):
        raise ValueError(f"bias must be ({c_out},), got {b.shape}")
    shape = [1] * kernel.ndim
    shape[out_axis] = c_out
    k = kernel.astype(np.float64) * w_bn.reshape(shape)
    dtype = kernel.dtype if np.issubdtype(kernel.dtype, np.floating) else np.float32
    return k.astype(dtype), (w_bn * b + b_bn).astype(dtype)
