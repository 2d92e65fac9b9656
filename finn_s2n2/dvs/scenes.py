"""Synthetic DVS scenes with per-event ground truth (signal / BA noise) — for Khodamoradi 2021, chapter 3.

DVS recordings are not available offline, so the evaluation of the filters runs on synthetic streams:

* :func:`poisson_noise` — background activity as an independent Poisson process per pixel (§3.3, Eq 3.7) at
  ``rate`` Hz per pixel (0.05 Hz room temperature … 1.5 Hz at 60 °C, higher for stress), uniform polarity.
* moving objects rendered as a sensor would see them: a binary brightness image ``mask(t)``; a pixel emits
  an event whenever its brightness changes (ON when it becomes bright, OFF when it becomes dark) at the
  change time plus a pixel latency drawn from an exponential distribution (``latency_us``; DVS128 ≈ 15 µs,
  more at low light).  Objects: :func:`moving_bars` (a bar sweeping the sensor), :func:`moving_dots`
  (small squares bouncing around) and :func:`laser_spot` (a small fast bright spot on a Lissajous path —
  the dissertation's laser-pointer experiment of §3.4.6).
* :func:`make_scene` merges a scene with noise and returns ``(events, is_signal)``, time-sorted.

Timestamps are microseconds (int64 by default, tonic layout :data:`~finn_s2n2.dvs.denoise.EVENT_DTYPE`;
``float_time=True`` keeps them continuous in a float64 ``t`` field, used by the Monte-Carlo estimates so that
no tick rounding enters the comparison with the continuous-time formulas).
"""

from __future__ import annotations

import numbers

import numpy as np

from finn_s2n2.dvs.denoise import EVENT_DTYPE

FLOAT_EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.float64), ("p", bool)])
SCENES = ("noise", "bars", "dots", "spot")


def _dtype(float_time: bool) -> np.dtype:
    return FLOAT_EVENT_DTYPE if float_time else EVENT_DTYPE


def _check_pos_int(name, v, hi=32767):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 1 <= v <= hi:
        raise ValueError(f"{name} must be an int in [1, {hi}], got {v!r}")
    return int(v)


def _check_nonneg(name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    return float(v)


def _assemble(x, y, t, p, float_time):
    ev = np.zeros(len(t), _dtype(float_time))
    order = np.argsort(t, kind="stable")
    ev["x"], ev["y"], ev["p"] = np.asarray(x)[order], np.asarray(y)[order], np.asarray(p)[order]
    tt = np.asarray(t, dtype=np.float64)[order]
    ev["t"] = tt if float_time else np.floor(tt).astype(np.int64)
    return ev


def poisson_noise(width, height, rate_hz, duration_us, rng=None, *, t0_us=0.0, float_time=False):
    """BA noise: each pixel fires as a Poisson process of ``rate_hz`` during ``[t0_us, t0_us + duration_us)``."""
    width, height = _check_pos_int("width", width), _check_pos_int("height", height)
    rate_hz, duration_us = _check_nonneg("rate_hz", rate_hz), _check_nonneg("duration_us", duration_us)
    rng = np.random.default_rng(rng)
    n = rng.poisson(width * height * rate_hz * duration_us * 1e-6)
    t = t0_us + rng.random(n) * duration_us
    return _assemble(
        rng.integers(0, width, n), rng.integers(0, height, n), t, rng.integers(0, 2, n), float_time
    )


def render(
    mask_fn,
    width,
    height,
    duration_us,
    step_us,
    rng=None,
    *,
    latency_us=15.0,
    fire_prob=1.0,
    float_time=False,
    window_fn=None,
):
    """Events of a changing binary brightness image ``mask_fn(t_us) -> bool (height, width)``.

    The image is sampled every ``step_us``; a pixel whose value changed between two samples emits one event
    (ON if it became bright) at a uniform time inside the step plus an exponential latency (mean
    ``latency_us``), with probability ``fire_prob`` (a brief change may not reach the pixel's threshold or
    falls in its refractory period — a fast spot leaves a sparse trail).  Events later than ``duration_us`` are
    dropped.  ``window_fn(t_us) -> (x0, x1, y0, y1)``
    (optional) bounds the bright region at ``t_us``; ``mask_fn(t_us, window)`` then renders only that window,
    which keeps small objects cheap.
    """
    width, height = _check_pos_int("width", width), _check_pos_int("height", height)
    duration_us, step_us = _check_nonneg("duration_us", duration_us), _check_nonneg("step_us", step_us)
    if step_us <= 0:
        raise ValueError("step_us must be > 0")
    rng = np.random.default_rng(rng)
    n_steps = int(np.ceil(duration_us / step_us))
    xs, ys, ts, ps = [], [], [], []
    if window_fn is None:
        prev = np.asarray(mask_fn(0.0), dtype=bool)
        if prev.shape != (height, width):
            raise ValueError(f"mask_fn must return a ({height}, {width}) image, got {prev.shape}")
    for k in range(1, n_steps + 1):
        if window_fn is None:
            cur = np.asarray(mask_fn(k * step_us), dtype=bool)
            yy, xx = np.nonzero(cur != prev)
            pol = cur[yy, xx]
            prev = cur
        else:
            a, b = window_fn((k - 1) * step_us), window_fn(k * step_us)
            win = (
                max(min(a[0], b[0]), 0),
                min(max(a[1], b[1]), width),
                max(min(a[2], b[2]), 0),
                min(max(a[3], b[3]), height),
            )
            if win[0] >= win[1] or win[2] >= win[3]:
                continue
            before, cur = mask_fn((k - 1) * step_us, win), mask_fn(k * step_us, win)
            yy, xx = np.nonzero(cur != before)
            pol = cur[yy, xx]
            xx, yy = xx + win[0], yy + win[2]
        if fire_prob < 1.0:
            keep = rng.random(yy.size) < fire_prob
            xx, yy, pol = xx[keep], yy[keep], pol[keep]
        if yy.size:
            xs.append(xx)
            ys.append(yy)
            ts.append((k - 1 + rng.random(yy.size)) * step_us + rng.exponential(latency_us, yy.size))
            ps.append(pol)
    if not xs:
        return np.zeros(0, _dtype(float_time))
    x, y, t, p = (np.concatenate(a) for a in (xs, ys, ts, ps))
    keep = t < duration_us
    return _assemble(x[keep], y[keep], t[keep], p[keep], float_time)


def _grid(width, height):
    return np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)


def moving_bars(width, height, duration_us, rng=None, *, speed_px_s=200.0, bar_px=4.0, **kw):
    """A vertical bright bar of ``bar_px`` pixels sweeping left to right (wrapping) and a horizontal one
    sweeping top to bottom at ``speed_px_s``."""
    X, Y = _grid(width, height)
    speed = speed_px_s * 1e-6

    def mask(t):
        px = (speed * t) % (width + bar_px) - bar_px
        py = (0.7 * speed * t + height / 2) % (height + bar_px) - bar_px
        return ((X >= px) & (X < px + bar_px)) | ((Y >= py) & (Y < py + bar_px))

    return render(mask, width, height, duration_us, 0.4 / max(speed, 1e-12), rng, **kw)


def moving_dots(width, height, duration_us, rng=None, *, n_dots=6, size_px=3.0, speed_px_s=150.0, **kw):
    """``n_dots`` bright squares of ``size_px`` bouncing inside the sensor at ``speed_px_s``."""
    rng = np.random.default_rng(rng)
    X, Y = _grid(width, height)
    p0 = rng.random((n_dots, 2)) * [width - size_px, height - size_px]
    ang = rng.random(n_dots) * 2 * np.pi
    v = speed_px_s * 1e-6 * np.stack([np.cos(ang), np.sin(ang)], 1)
    span = np.array([width - size_px, height - size_px])

    def mask(t):
        pos = p0 + v * t
        pos = np.abs((pos + span) % (2 * span) - span)  # reflect at the borders
        m = np.zeros((height, width), bool)
        for px, py in pos:
            m |= (X >= px) & (X < px + size_px) & (Y >= py) & (Y < py + size_px)
        return m

    return render(mask, width, height, duration_us, 0.4 / (speed_px_s * 1e-6), rng, **kw)


def laser_spot(width, height, duration_us, rng=None, *, radius_px=1.2, speed_px_s=3000.0, **kw):
    """A small fast bright spot (laser pointer) on a Lissajous path covering the sensor, mean speed
    ≈ ``speed_px_s``."""
    ax, ay = 0.4 * width, 0.4 * height
    # Lissajous 3:2; mean speed ≈ 2·hypot(ax, ay)·w → angular rate w for the requested speed
    w = speed_px_s * 1e-6 / (2.0 * np.hypot(ax, ay))

    def centre(t):
        return width / 2 + ax * np.sin(3 * w * t), height / 2 + ay * np.sin(2 * w * t + 0.5)

    def window(t):
        cx, cy = centre(t)
        r = int(np.ceil(radius_px)) + 1
        return int(cx) - r, int(cx) + r + 1, int(cy) - r, int(cy) + r + 1

    def mask(t, win):
        cx, cy = centre(t)
        X, Y = np.meshgrid(np.arange(win[0], win[1]) + 0.5, np.arange(win[2], win[3]) + 0.5)
        return (X - cx) ** 2 + (Y - cy) ** 2 <= radius_px**2

    return render(mask, width, height, duration_us, 0.3 / (speed_px_s * 1e-6), rng, window_fn=window, **kw)


def make_scene(
    kind, width=128, height=128, duration_us=1_000_000, noise_hz=1.5, seed=0, *, float_time=False, **kw
):
    """``(events, is_signal)``: scene ``kind`` (``noise``, ``bars``, ``dots``, ``spot``) plus Poisson BA noise of
    ``noise_hz`` per pixel, time-sorted; ``is_signal`` is the per-event ground truth."""
    if kind not in SCENES:
        raise ValueError(f"kind must be one of {SCENES}, got {kind!r}")
    rng = np.random.default_rng(seed)
    if kind == "noise":
        sig = np.zeros(0, _dtype(float_time))
    else:
        fn = {"bars": moving_bars, "dots": moving_dots, "spot": laser_spot}[kind]
        sig = fn(width, height, duration_us, rng, float_time=float_time, **kw)
    noise = poisson_noise(width, height, noise_hz, duration_us, rng, float_time=float_time)
    ev = np.concatenate([sig, noise])
    truth = np.concatenate([np.ones(sig.size, bool), np.zeros(noise.size, bool)])
    order = np.argsort(ev["t"], kind="stable")
    return ev[order], truth[order]
