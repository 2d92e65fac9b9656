"""Spike encoders for the S2N2 networks (seed 002): I/Q constellation events (§2.3, Fig 2.9–2.10) and image
rate / latency coding (§2.4).

* :func:`iq_to_spikes` — §2.3: each complex sample (I, Q) is quantised with a *uniform* ``bits``-bit quantiser
  per axis; tick t of the output holds one 2^bits × 2^bits binary plane with exactly one spike at
  (row = Q index, column = I index).  The dissertation feeds "one sample per tick" and uses 4-bit planes (16 × 16),
  so the first layer sees a spike ratio of 1/256 = 0.39 % (Table 2.3).  The quantiser range is not given in the
  dissertation: we use the symmetric range [−A, A] with A the example's peak |I|/|Q| (``scale="max"``, default),
  A = ``clip``·RMS (``scale="rms"``) or a fixed float.
* :func:`rate_code` — §2.4: the dissertation converts MNIST with DECOLLE's script (Poisson/Bernoulli rate coding:
  each pixel fires in each 1 ms tick with probability ``gain``·x·dt, 50 Hz at full intensity → p = 0.05,
  which reproduces the 0.7 % input spike ratio of Table 2.8 for MNIST's mean intensity).  We implement this
  Bernoulli rate code with ``max_rate`` = spike probability per tick at intensity 1; our CPU recipes use fewer
  ticks (e.g. 32 instead of 500) and a larger ``max_rate`` — a documented deviation.
* :func:`latency_code` — time-to-first-spike alternative (one spike per pixel, brighter = earlier), not used by
  the seed, offered because it needs far fewer ticks.

All encoders return binary arrays with the time axis second: (N, T, C, H, W), the layout of every S2N2 module.
"""

from __future__ import annotations

import numpy as np


def iq_to_spikes(
    iq: np.ndarray,
    bits: int = 4,
    *,
    scale: str | float = "max",
    clip: float = 2.0,
    dtype=np.float32,
) -> np.ndarray:
    """I/Q samples → one-spike-per-tick constellation planes (§2.3).

    ``iq``: (N, 2, L) or (2, L) array, row 0 = in-phase, row 1 = quadrature (RadioML layout).
    Returns (N, L, 1, 2^bits, 2^bits) (or (L, 1, 2^bits, 2^bits)) of ``dtype`` with exactly one 1 per tick.
    Index of value v in [−A, A]: ``clip(floor((v + A) / (2A) · 2^bits), 0, 2^bits − 1)``.
    """
    iq = np.asarray(iq)
    single = iq.ndim == 2
    if single:
        iq = iq[None]
    if iq.ndim != 3 or iq.shape[1] != 2:
        raise ValueError(f"iq_to_spikes: iq must have shape (N, 2, L) or (2, L), got {np.shape(iq)}")
    if not np.issubdtype(iq.dtype, np.floating) and not np.issubdtype(iq.dtype, np.integer):
        raise TypeError(f"iq_to_spikes: iq must be a real numeric array, got dtype {iq.dtype}")
    if not isinstance(bits, int | np.integer) or not 1 <= bits <= 8:
        raise ValueError(f"iq_to_spikes: bits must be an int in [1, 8], got {bits!r}")
    if not np.all(np.isfinite(iq)):
        raise ValueError("iq_to_spikes: iq contains NaN or inf")
    x = iq.astype(np.float64)
    if isinstance(scale, str):
        if scale == "max":
            a = np.max(np.abs(x), axis=(1, 2))
        elif scale == "rms":
            if clip <= 0:
                raise ValueError(f"iq_to_spikes: clip must be > 0, got {clip}")
            a = clip * np.sqrt(np.mean(x**2, axis=(1, 2)))
        else:
            raise ValueError(f"iq_to_spikes: scale must be 'max', 'rms' or a positive float, got {scale!r}")
    else:
        if not float(scale) > 0:
            raise ValueError(f"iq_to_spikes: a numeric scale must be > 0, got {scale!r}")
        a = np.full(x.shape[0], float(scale))
    a = np.where(a > 0, a, 1.0)[:, None, None]
    levels = 1 << int(bits)
    idx = np.floor((x + a) / (2 * a) * levels).astype(np.int64)
    idx = np.clip(idx, 0, levels - 1)
    n, _, length = x.shape
    out = np.zeros((n, length, 1, levels, levels), dtype=dtype)
    nn_, tt = np.meshgrid(np.arange(n), np.arange(length), indexing="ij")
    out[nn_, tt, 0, idx[:, 1, :], idx[:, 0, :]] = 1
    return out[0] if single else out


def _check_images(images: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim not in (3, 4):
        raise ValueError(f"{name}: images must have shape (N, C, H, W) or (N, H, W), got {x.shape}")
    if x.ndim == 3:
        x = x[:, None]
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"{name}: images must be float intensities in [0, 1], got dtype {x.dtype}")
    if x.size and (np.nanmin(x) < 0 or np.nanmax(x) > 1 or not np.all(np.isfinite(x))):
        raise ValueError(f"{name}: image intensities must be finite and in [0, 1]")
    return x


def rate_code(
    images: np.ndarray,
    num_ticks: int,
    *,
    max_rate: float = 0.05,
    seed: int | np.random.Generator | None = 0,
    dtype=np.float32,
) -> np.ndarray:
    """Bernoulli rate code (DECOLLE's MNIST conversion, §2.4): pixel x spikes at each tick with prob. max_rate·x.

    ``images`` (N, C, H, W) or (N, H, W) in [0, 1] → (N, num_ticks, C, H, W) binary.  The DECOLLE default
    (50 Hz, 1 ms ticks) is ``max_rate=0.05``.
    """
    x = _check_images(images, "rate_code")
    if not isinstance(num_ticks, int | np.integer) or num_ticks < 1:
        raise ValueError(f"rate_code: num_ticks must be a positive int, got {num_ticks!r}")
    if not 0 < max_rate <= 1:
        raise ValueError(f"rate_code: max_rate is a per-tick probability in (0, 1], got {max_rate}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    u = rng.random((x.shape[0], int(num_ticks)) + x.shape[1:], dtype=np.float32)
    return (u < (max_rate * x)[:, None]).astype(dtype)


def latency_code(
    images: np.ndarray, num_ticks: int, *, threshold: float = 0.2, dtype=np.float32
) -> np.ndarray:
    """Time-to-first-spike code: a pixel with x > threshold spikes once at tick round((1 − x)/(1 − thr)·(T−1)).

    ``images`` (N, C, H, W) or (N, H, W) in [0, 1] → (N, num_ticks, C, H, W) binary; brighter fires earlier.
    """
    x = _check_images(images, "latency_code")
    if not isinstance(num_ticks, int | np.integer) or num_ticks < 1:
        raise ValueError(f"latency_code: num_ticks must be a positive int, got {num_ticks!r}")
    if not 0 <= threshold < 1:
        raise ValueError(f"latency_code: threshold must be in [0, 1), got {threshold}")
    t = np.rint((1 - x) / (1 - threshold) * (num_ticks - 1)).astype(np.int64)
    t = np.clip(t, 0, num_ticks - 1)
    fire = x > threshold
    out = np.zeros((x.shape[0], int(num_ticks)) + x.shape[1:], dtype=dtype)
    n, c, h, w = np.nonzero(fire)
    out[n, t[n, c, h, w], c, h, w] = 1
    return out
