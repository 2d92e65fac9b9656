"""Poisson model of DVS background activity and the filters' error probabilities — Khodamoradi 2021, §3.3–§3.4.

Every function is written once here and used by the evaluation, the demo and the tests.  Units: ``rate``
is the BA rate per pixel (events per unit time, e.g. Hz) and ``t``/``dt`` a duration in the same time unit
(e.g. seconds); only the product ``rate * t`` matters.  ``s`` is the sub-sampling factor S, ``m`` (or
``width``/``height``) the sensor side.  Room temperature ≈ 0.05 Hz, 60 °C ≈ 1.5 Hz (§3.3, [8]).

* Eq 3.7  :func:`p_n_events` — ``P{N(t) = n} = (λt)^n e^{-λt} / n!``; :func:`p_no_event` = ``P{N(t) = 0}``.
* Eq 3.8  :func:`group_fractions` — corner, side and inner pixels of an S×S group: 4, 4(S−2), (S−2)².
* Eq 3.9  :func:`p_false_positive_liu`.
* Eq 3.10 :func:`p_false_negative_liu`.
* Eq 3.11 :func:`p_false_positive_subsampling`.
* Eq 3.14 :func:`p_false_negative_order_n`; generalised to any scene (per-pixel rates of noise *and* signal)
  in :func:`p_false_negative_order_n_map`.
* The baseline has neither error, the O(N) filter no false positive, the sub-sampling filter no false
  negative (§3.4.1, §3.4.3, §3.4.4): :func:`error_probabilities` returns 0 for them.

Extension (not in the dissertation), ``exclusive=True`` in Eq 3.9/3.11: the dissertation's expression is the
probability that at least one *non-neighbour* in the checked groups fired within the window. A false positive,
measured as "the filter passes the event although Eq 3.2 finds no support", additionally needs the event's
nine neighbours (itself included) to be silent: each term is multiplied by ``P{N(t)=0}^9``. That product is
exact for Poisson noise; the dissertation's expression is its first-order equivalent (they differ by a
relative ``1 - e^{-9λt}``, 0.045 % at room temperature and dt = 1 ms).

Deviation for non-square sensors: Eq 3.14 is written for M × M; for W × H we use
``(1 - P0^{W-3}) (1 - P0^{H-3})`` (row of e1: W pixels, column: H pixels).  Eq 3.14 neglects the chance
that BA noise in e4's own neighbourhood supports it, and counts "at least one BA event among the M−3 other
pixels of the row" where the exact condition is "the *last* event of the row is not a neighbour of e4";
both are second-order effects (see the Monte-Carlo tests in ``tests/test_dvs_noise_model.py``).
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import gammaln


def _check_nonneg(name, v):
    a = np.asarray(v, dtype=float)
    if a.dtype.kind not in "f" or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name} must be finite and >= 0, got {v!r}")
    return a


def _check_s(s, lo=2):
    if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < lo:
        raise ValueError(f"s (sub-sampling factor S) must be an int >= {lo}, got {s!r}")
    return int(s)


def _check_side(name, m):
    if isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 3:
        raise ValueError(f"{name} (sensor side) must be an int >= 3, got {m!r}")
    return int(m)


def _out(a):
    return float(a) if np.ndim(a) == 0 else a


def p_n_events(n, rate, t):
    """Eq 3.7: probability of exactly ``n`` BA events from one pixel during ``t`` (Poisson, rate ``rate``)."""
    n = np.asarray(n)
    if n.dtype.kind not in "iu" or np.any(n < 0):
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    lam = _check_nonneg("rate", rate) * _check_nonneg("t", t)
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.where(lam > 0, n * np.log(np.where(lam > 0, lam, 1.0)) - lam - gammaln(n + 1), 0.0)
    p = np.where(lam > 0, np.exp(logp), (n == 0).astype(float))
    return _out(p)


def p_no_event(rate, t):
    """``P{N(t) = 0} = e^{-rate t}`` (Eq 3.7 with n = 0)."""
    return _out(np.exp(-_check_nonneg("rate", rate) * _check_nonneg("t", t)))


def group_fractions(s: int) -> tuple[float, float, float]:
    """Eq 3.8: fractions of corner (4), side (4(S−2)) and inner ((S−2)²) pixels in an S×S group."""
    s = _check_s(s)
    return 4 / s**2, 4 * (s - 2) / s**2, (s - 2) ** 2 / s**2


def _fp(rate, dt, s, counts, exclusive):
    p0 = p_no_event(rate, dt)
    fc, fs, fi = group_fractions(s)
    kc, ks, ki = counts
    nb = np.power(p0, 9) if exclusive else 1.0
    return _out(
        nb * (fc * (1 - np.power(p0, kc)) + fs * (1 - np.power(p0, ks)) + fi * (1 - np.power(p0, ki)))
    )


def p_false_positive_liu(rate, dt, s: int, *, exclusive: bool = False):
    """Eq 3.9: false-positive probability of Liu's filter (non-neighbours inside the event's own group:
    S²−4 for corner, S²−6 for side, S²−9 for inner pixels)."""
    s = _check_s(s)
    return _fp(rate, dt, s, (s * s - 4, s * s - 6, max(s * s - 9, 0)), exclusive)


def p_false_positive_subsampling(rate, dt, s: int, *, exclusive: bool = False):
    """Eq 3.11: false-positive probability of the sub-sampling filter (non-neighbours in the groups that
    hold the 3×3 neighbourhood: 4S²−9 corner, 2S²−9 side, S²−9 inner)."""
    s = _check_s(s)
    return _fp(rate, dt, s, (4 * s * s - 9, 2 * s * s - 9, max(s * s - 9, 0)), exclusive)


def p_false_negative_liu(s: int) -> float:
    """Eq 3.10: probability that Liu's filter loses the only supporting neighbour because it lies in another
    group: corner pixels 5 of 9 neighbours outside, side pixels 3 of 9 (the supporter is uniform over the
    3×3 neighbourhood, the pixel itself included)."""
    fc, fs, _ = group_fractions(s)
    return fc * 5 / 9 + fs * 3 / 9


def p_false_negative_order_n(rate, t, width: int, height: int | None = None):
    """Eq 3.14: probability that BA noise overwrites both the row and the column cell of the only supporting
    event e1 within ``t`` (= t4 − t1): ``(1 − P0^{W−3}) (1 − P0^{H−3})``; ``height=None`` means square."""
    width = _check_side("width", width)
    height = width if height is None else _check_side("height", height)
    p0 = p_no_event(rate, t)
    return _out((1 - np.power(p0, width - 3)) * (1 - np.power(p0, height - 3)))


def _line_terms(rate_map, line_axis, line, center, t):
    """For each (line, center): ``Λ_in`` (events/time in the 3 pixels ``center-1..center+1`` of the line),
    ``Λ`` (whole line) and the probability that the line's *last* event during ``t`` lies inside / outside."""
    lines = rate_map if line_axis == 0 else rate_map.T  # lines[r] = the pixels of line r
    cum = np.concatenate([np.zeros((lines.shape[0], 1)), np.cumsum(lines, axis=1)], axis=1)
    n = lines.shape[1]
    lo = np.clip(center - 1, 0, n)
    hi = np.clip(center + 2, 0, n)
    lam = cum[line, n]
    lam_in = cum[line, hi] - cum[line, lo]
    frac_in = np.divide(lam_in, lam, out=np.zeros_like(lam), where=lam > 0)
    p_any = 1.0 - np.exp(-lam * t)
    return frac_in * p_any, (1.0 - frac_in) * p_any  # last event inside, last event outside


def p_false_negative_order_n_map(rate_map, x1, y1, x4, y4, t, dt):
    """Eq 3.14 generalised to any scene: probability that the O(N) filter drops ``e4 = (x4, y4, t1 + t)``
    whose supporter ``e1 = (x1, y1, t1)`` is a neighbour, given the per-pixel event rates ``rate_map[y, x]``
    (noise *and* signal, events per unit of ``t``; the lines' events are taken as Poisson processes).

    Row ``y1``'s cell still supports e4 at ``t4`` unless the *last* event of that row during ``t`` lies
    outside columns ``x4-1..x4+1``: ``q_row = (Λ_out/Λ)(1 − e^{−Λ t})`` with ``Λ`` the row's total rate and
    ``Λ_out`` its rate outside those three columns (likewise ``q_col`` for column ``x1``).  The other two rows and two
    columns of e4's neighbourhood support it when their last event during ``dt`` is inside:
    ``s = (Λ_in/Λ)(1 − e^{−Λ dt})``.  ``P = q_row q_col Π (1 − s)``, lines taken as independent.  With a
    uniform rate ``λ`` and ``Λ_in ≪ Λ`` this is Eq 3.14's ``(1 − P0^{M−3})²`` (first order; Eq 3.14 neglects
    the other four lines and the refresh of e1's cells by events next to e4).  Vectorised over the pairs.
    """
    rate_map = np.asarray(rate_map, dtype=float)
    if rate_map.ndim != 2 or not np.all(np.isfinite(rate_map)) or np.any(rate_map < 0):
        raise ValueError("rate_map must be a 2-D array (height, width) of finite rates >= 0")
    x1, y1, x4, y4 = (np.asarray(a, dtype=np.int64) for a in (x1, y1, x4, y4))
    h, w = rate_map.shape
    if np.any((x1 < 0) | (x1 >= w) | (x4 < 0) | (x4 >= w) | (y1 < 0) | (y1 >= h) | (y4 < 0) | (y4 >= h)):
        raise ValueError(f"pixel coordinates must lie inside the rate map ({w} x {h})")
    if np.any((np.abs(x1 - x4) > 1) | (np.abs(y1 - y4) > 1)):
        raise ValueError("e1 must be a neighbour of e4 (|x1 - x4| <= 1 and |y1 - y4| <= 1)")
    t = _check_nonneg("t", t)
    dt = _check_nonneg("dt", dt)
    if np.any(t >= dt):
        raise ValueError(f"t (= t4 - t1) must be < dt for e1 to support e4, got t={t}, dt={dt}")
    p = _line_terms(rate_map, 0, y1, x4, t)[1] * _line_terms(rate_map, 1, x1, y4, t)[1]
    for d in (-1, 0, 1):
        for line_axis, line, other, center in ((0, y4 + d, y1, x4), (1, x4 + d, x1, y4)):
            ok = (line != other) & (line >= 0) & (line < (h if line_axis == 0 else w))
            s_in = _line_terms(
                rate_map, line_axis, np.clip(line, 0, (h if line_axis == 0 else w) - 1), center, dt
            )[0]
            p = p * np.where(ok, 1.0 - s_in, 1.0)
    return _out(p)


def error_probabilities(
    filter_name: str, rate, dt, width: int, height: int | None = None, s: int = 2
) -> dict:
    """``{"false_positive": …, "false_negative": …}`` of ``filter_name`` for window ``dt`` (§3.4).

    The O(N) false negative is Eq 3.14 at ``t = dt`` (the worst case, supporter at the edge of the window).
    """
    if filter_name == "baseline":
        return {"false_positive": 0.0, "false_negative": 0.0}
    if filter_name == "liu":
        return {
            "false_positive": p_false_positive_liu(rate, dt, s),
            "false_negative": p_false_negative_liu(s),
        }
    if filter_name == "subsampling":
        return {"false_positive": p_false_positive_subsampling(rate, dt, s), "false_negative": 0.0}
    if filter_name == "order_n":
        return {"false_positive": 0.0, "false_negative": p_false_negative_order_n(rate, dt, width, height)}
    raise ValueError(
        f"filter_name must be 'baseline', 'liu', 'subsampling' or 'order_n', got {filter_name!r}"
    )


#: BA rate per pixel of a DVS128 at room temperature and at 60 °C (§3.3, [8])
ROOM_TEMPERATURE_RATE_HZ = 0.05
RATE_60C_HZ = 1.5


__all__ = [
    "p_n_events",
    "p_no_event",
    "group_fractions",
    "p_false_positive_liu",
    "p_false_positive_subsampling",
    "p_false_negative_liu",
    "p_false_negative_order_n",
    "p_false_negative_order_n_map",
    "error_probabilities",
    "ROOM_TEMPERATURE_RATE_HZ",
    "RATE_60C_HZ",
]
