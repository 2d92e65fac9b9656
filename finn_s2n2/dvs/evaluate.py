"""Evaluation of the DVS BA filters — Khodamoradi 2021, §3.4 (error analysis) and §3.4.6 (laser-pointer experiment).

* Monte-Carlo estimates of the modelled error probabilities, each with its binomial standard error and the
  analytic value of :mod:`finn_s2n2.dvs.noise_model`:

  - :func:`mc_false_positive` (Eq 3.9 / 3.11): pure Poisson noise; a false positive is an event that the
    filter passes while Eq 3.2 (the baseline) finds no support.  Only events in *interior* groups (not
    touching the sensor border) and after a burn-in of one window are counted — the dissertation's formulas assume
    every group has its full set of neighbours.
  - :func:`mc_false_negative_liu` (Eq 3.10): isolated pairs ``e1 → e4`` (e1 uniform over e4's 3×3
    neighbourhood, e4 uniform over the group positions, no noise); a false negative is ``e4`` dropped.
  - :func:`mc_false_negative_order_n` (Eq 3.14): pairs ``e1 → e4`` at ``t4 = t1 + t`` on a large sensor under
    Poisson noise; many pairs share a time slot on disjoint rows and columns (spacing 4) so they never
    touch each other's cells.  A false negative is ``e4`` not passing on arrival.

* :func:`scene_rates` / :func:`roc_table` / :func:`plot_roc`: signal kept vs noise kept per filter and
  window on synthetic scenes with ground truth (ROC-style), plotted to PNG.
* :func:`recovery_gain`: real events passed by the O(N) filter vs the baseline on the laser-spot scene —
  the dissertation reports +180 % on its DVS128 recordings.
"""

from __future__ import annotations

import numpy as np

from finn_s2n2.dvs import noise_model as nm
from finn_s2n2.dvs.denoise import PASSED, filter_mask, order_n_status
from finn_s2n2.dvs.scenes import FLOAT_EVENT_DTYPE, poisson_noise

FILTERS = ("baseline", "liu", "subsampling", "order_n")
#: past-event recovery gain reported by the dissertation on the laser-pointer recordings (§3.4.6)
DISSERTATION_RECOVERY_GAIN_PERCENT = 180.0


def _binomial(k: int, n: int) -> tuple[float, float]:
    if n <= 0:
        raise ValueError("no trials were counted")
    p = k / n
    return p, float(np.sqrt(max(p * (1 - p), 1.0 / n) / n))


def mc_false_positive(filter_name, rate_hz, dt_us, s, *, side=128, n_events=200_000, seed=0) -> dict:
    """Monte-Carlo false-positive rate of ``liu`` / ``subsampling`` (or 0-expected ``baseline``/``order_n``)
    on pure Poisson noise, with the analytic Eq 3.9/3.11 (``analytic``: the dissertation's expression,
    ``analytic_exclusive``: times ``P0^9``, the exact probability of the measured event)."""
    if filter_name not in FILTERS:
        raise ValueError(f"filter_name must be one of {FILTERS}, got {filter_name!r}")
    if side % s or side // s < 3:
        raise ValueError(f"side={side} must be a multiple of s={s} with at least 3 groups per side")
    duration = n_events / (side * side * rate_hz * 1e-6)
    ev = poisson_noise(side, side, rate_hz, duration + dt_us, seed, float_time=True)
    if filter_name == "order_n":  # false positive = passed on arrival (recovered events have future support)
        passed = order_n_status(ev, side, side, dt_us)[1] == PASSED
    else:
        _, passed = filter_mask(filter_name, ev, side, side, dt_us, s=s)
    _, base = filter_mask("baseline", ev, side, side, dt_us)
    g = side // s
    gx, gy = ev["x"] // s, ev["y"] // s
    sel = (ev["t"] >= dt_us) & (gx >= 1) & (gx <= g - 2) & (gy >= 1) & (gy <= g - 2)
    k = int((passed & ~base & sel).sum())
    n = int(sel.sum())
    p, se = _binomial(k, n)
    rate_per_us = rate_hz * 1e-6
    if filter_name == "liu":
        an, ex = (
            nm.p_false_positive_liu(rate_per_us, dt_us, s),
            nm.p_false_positive_liu(rate_per_us, dt_us, s, exclusive=True),
        )
    elif filter_name == "subsampling":
        an = nm.p_false_positive_subsampling(rate_per_us, dt_us, s)
        ex = nm.p_false_positive_subsampling(rate_per_us, dt_us, s, exclusive=True)
    else:
        an = ex = 0.0
    return {
        "filter": filter_name,
        "estimate": p,
        "se": se,
        "k": k,
        "n": n,
        "analytic": an,
        "analytic_exclusive": ex,
    }


def mc_false_negative_liu(s, *, n_pairs=4000, dt_us=1000.0, seed=0) -> dict:
    """Monte-Carlo false-negative rate of Liu's filter (Eq 3.10): isolated supported pairs, no noise."""
    rng = np.random.default_rng(seed)
    side = 4 * s
    slot = 3.0 * dt_us
    t1 = np.arange(n_pairs) * slot
    x4 = s + rng.integers(0, 2 * s, n_pairs)  # groups 1..2 of 0..3: neighbourhood inside the sensor
    y4 = s + rng.integers(0, 2 * s, n_pairs)
    off = rng.integers(-1, 2, (2, n_pairs))
    ev = np.zeros(2 * n_pairs, FLOAT_EVENT_DTYPE)
    ev["x"][0::2], ev["y"][0::2], ev["t"][0::2] = x4 + off[0], y4 + off[1], t1
    ev["x"][1::2], ev["y"][1::2], ev["t"][1::2] = x4, y4, t1 + 0.5 * dt_us
    _, passed = filter_mask("liu", ev, side, side, dt_us, s=s)
    k = int((~passed[1::2]).sum())
    p, se = _binomial(k, n_pairs)
    return {
        "filter": "liu",
        "estimate": p,
        "se": se,
        "k": k,
        "n": n_pairs,
        "analytic": nm.p_false_negative_liu(s),
    }


def _order_n_pairs(noise_fn, width, height, t_us, dt_us, n_pairs, rng):
    """Pairs ``e1 -> e4`` (``t4 = t1 + t_us``) on disjoint rows and columns (spacing 4: no pair touches another's
    cells), in time slots of ``2 dt + t``, merged with the noise ``noise_fn(total_duration)``; returns the
    time-sorted events, the role of each (0 noise, 1 e1, 2 e4) and the pair coordinates ``(x1, y1, x4, y4)``."""
    per_slot = min(width, height) // 4 - 1
    n_slots = -(-n_pairs // per_slot)
    slot = 2.0 * dt_us + t_us
    xs, ys, ts, role, pos = [], [], [], [], []
    for k in range(n_slots):
        m = min(per_slot, n_pairs - k * per_slot)
        rows = 4 * rng.permutation(per_slot)[:m] + 2
        cols = 4 * rng.permutation(per_slot)[:m] + 2
        off = rng.integers(-1, 2, (2, m))
        t1 = dt_us + k * slot + rng.random(m) * dt_us
        xs += [cols, cols + off[0]]
        ys += [rows, rows + off[1]]
        ts += [t1, t1 + t_us]
        role += [np.ones(m, np.int8), np.full(m, 2, np.int8)]
        pos.append(np.stack([cols, rows, cols + off[0], rows + off[1]]))
    noise = noise_fn(dt_us + n_slots * slot)
    ev = np.zeros(noise.size + 2 * n_pairs, FLOAT_EVENT_DTYPE)
    ev["x"] = np.concatenate([noise["x"], *xs])
    ev["y"] = np.concatenate([noise["y"], *ys])
    ev["t"] = np.concatenate([noise["t"], *ts])
    roles = np.concatenate([np.zeros(noise.size, np.int8), *role])
    order = np.argsort(ev["t"], kind="stable")
    return ev[order], roles[order], np.concatenate(pos, axis=1)


def mc_false_negative_order_n(rate_hz, t_us, *, dt_us=None, side=2048, n_pairs=3000, seed=0) -> dict:
    """Monte-Carlo false-negative rate of the O(N) filter (Eq 3.14) for pairs ``t4 - t1 = t_us`` under Poisson
    noise of ``rate_hz`` on a ``side`` × ``side`` sensor (window ``dt_us``, default ``1.25 · t_us``)."""
    dt_us = 1.25 * t_us if dt_us is None else float(dt_us)
    if not t_us < dt_us:
        raise ValueError(f"t_us={t_us} must be < dt_us={dt_us} (e4 must have e1's support)")
    rng = np.random.default_rng(seed)
    ev, roles, _ = _order_n_pairs(
        lambda total: poisson_noise(side, side, rate_hz, total, rng, float_time=True), side, side, t_us, dt_us,
        n_pairs, rng,
    )  # fmt: skip
    _, status, _ = order_n_status(ev, side, side, dt_us)
    e4 = roles == 2
    k = int((status[e4] != PASSED).sum())
    p, se = _binomial(k, int(e4.sum()))
    an = nm.p_false_negative_order_n(rate_hz * 1e-6, t_us, side)
    return {"filter": "order_n", "estimate": p, "se": se, "k": k, "n": int(e4.sum()), "analytic": an}


def rate_map_events(rate_map_hz, duration_us, rng, *, t0_us=0.0) -> np.ndarray:
    """Events of independent Poisson pixels with per-pixel rates ``rate_map_hz[y, x]`` (float µs timestamps)."""
    rate_map_hz = np.asarray(rate_map_hz, dtype=float)
    counts = rng.poisson(rate_map_hz * duration_us * 1e-6)
    yy, xx = np.nonzero(counts)
    c = counts[yy, xx]
    ev = np.zeros(int(c.sum()), FLOAT_EVENT_DTYPE)
    ev["x"], ev["y"] = np.repeat(xx, c), np.repeat(yy, c)
    ev["t"] = t0_us + rng.random(ev.size) * duration_us
    ev["p"] = rng.integers(0, 2, ev.size)
    return ev[np.argsort(ev["t"], kind="stable")]


def mc_false_negative_order_n_map(rate_map_hz, t_us, *, dt_us=None, n_pairs=3000, seed=0) -> dict:
    """Monte-Carlo O(N) false negatives in a scene of per-pixel rates ``rate_map_hz[y, x]`` (noise and signal)
    against :func:`~finn_s2n2.dvs.noise_model.p_false_negative_order_n_map` (the generalised Eq 3.14) and
    Eq 3.14 at the mean rate.  Pairs are placed as in :func:`mc_false_negative_order_n`; the expected count is
    ``Σ P_i`` over the pairs, its standard error ``sqrt(Σ P_i (1 − P_i))``."""
    rate_map_hz = np.asarray(rate_map_hz, dtype=float)
    h, w = rate_map_hz.shape
    dt_us = 1.25 * t_us if dt_us is None else float(dt_us)
    if not t_us < dt_us:
        raise ValueError(f"t_us={t_us} must be < dt_us={dt_us} (e4 must have e1's support)")
    rng = np.random.default_rng(seed)
    ev, roles, (x1, y1, x4, y4) = _order_n_pairs(
        lambda total: rate_map_events(rate_map_hz, total, rng), w, h, t_us, dt_us, n_pairs, rng
    )
    _, status, _ = order_n_status(ev, w, h, dt_us)
    e4_idx = np.flatnonzero(roles == 2)  # the model is summed over the pairs: their order does not matter
    p_model = nm.p_false_negative_order_n_map(rate_map_hz * 1e-6, x1, y1, x4, y4, t_us, dt_us)
    k = int((status[e4_idx] != PASSED).sum())
    expected = float(np.sum(p_model))
    se = float(np.sqrt(np.sum(p_model * (1 - p_model))))
    mean_rate = float(rate_map_hz.mean()) * 1e-6
    return {
        "filter": "order_n",
        "k": k,
        "n": int(e4_idx.size),
        "estimate": k / e4_idx.size,
        "model": expected / e4_idx.size,
        "se": se / e4_idx.size,
        "z": (k - expected) / se if se > 0 else float("nan"),
        "eq_3_14_mean_rate": float(nm.p_false_negative_order_n(mean_rate, t_us, w, h)),
    }


def scene_rates(events, is_signal, width, height, dt, filter_name, s=2) -> dict:
    """Signal kept (1 − false-negative rate) and noise kept (false-positive rate) against ground truth."""
    is_signal = np.asarray(is_signal, bool)
    if is_signal.shape != events.shape:
        raise ValueError(f"is_signal must have the shape of events {events.shape}, got {is_signal.shape}")
    _, passed = filter_mask(filter_name, events, width, height, dt, s=s)
    n_sig, n_noise = int(is_signal.sum()), int((~is_signal).sum())
    return {
        "filter": filter_name,
        "dt": dt,
        "signal_kept": float(passed[is_signal].mean()) if n_sig else float("nan"),
        "noise_kept": float(passed[~is_signal].mean()) if n_noise else float("nan"),
        "signal_passed": int(passed[is_signal].sum()),
        "noise_passed": int(passed[~is_signal].sum()),
    }


def roc_table(events, is_signal, width, height, dts, filters=FILTERS, s=2) -> list[dict]:
    """:func:`scene_rates` for every filter and window in ``dts``."""
    return [scene_rates(events, is_signal, width, height, dt, f, s) for f in filters for dt in dts]


def plot_roc(rows, path, title="DVS BA filters: signal kept vs noise kept"):
    """Plot :func:`roc_table` rows (one curve per filter over the windows) to a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    for f in dict.fromkeys(r["filter"] for r in rows):
        rr = sorted((r for r in rows if r["filter"] == f), key=lambda r: r["dt"])
        ax.plot([r["noise_kept"] for r in rr], [r["signal_kept"] for r in rr], "o-", label=f)
        for r in rr[:: max(1, len(rr) // 3)]:
            ax.annotate(f"{r['dt']:g}", (r["noise_kept"], r["signal_kept"]), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("noise kept (false-positive rate)")
    ax.set_ylabel("signal kept (1 - false-negative rate)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def recovery_gain(events, is_signal, width, height, dt) -> dict:
    """Real events passed by the O(N) filter (recovery included) vs the baseline (§3.4.6)."""
    base = scene_rates(events, is_signal, width, height, dt, "baseline")
    ours = scene_rates(events, is_signal, width, height, dt, "order_n")
    b, o = base["signal_passed"], ours["signal_passed"]
    return {
        "baseline_signal_passed": b,
        "order_n_signal_passed": o,
        "gain_percent": 100.0 * (o - b) / b if b else float("inf"),
        "dissertation_gain_percent": DISSERTATION_RECOVERY_GAIN_PERCENT,
        "baseline_noise_kept": base["noise_kept"],
        "order_n_noise_kept": ours["noise_kept"],
    }


# ------------------------------------------------------------------------------------------- real recordings
def two_sided_support(events, width, height, dt) -> np.ndarray:
    """Proxy for "signal" on a recording without labels: an event has a neighbour event (8-neighbourhood, the
    pixel itself excluded) within ``dt`` before *or after* it.  Past support is the baseline filter with
    ``exclude_self=True``; future support the same filter on the time-reversed stream."""
    from finn_s2n2.dvs.denoise import baseline_mask, check_events

    ev = check_events(events)
    past = baseline_mask(ev, width, height, dt, exclude_self=True)[1]
    rev = ev[::-1].copy()
    rev["t"] = -rev["t"]
    future = baseline_mask(rev, width, height, dt, exclude_self=True)[1][::-1]
    return past | future


def hot_pixels(events, width, height, *, min_rate_hz=100.0, factor=50.0):
    """Pixels firing at more than ``max(min_rate_hz, factor × median rate of the active pixels)`` (µs
    timestamps); returns ``(mask[height, width], rate_map_hz[height, width])``."""
    from finn_s2n2.dvs.denoise import check_events

    ev = check_events(events)
    duration_s = max(float(ev["t"][-1] - ev["t"][0]), 1.0) * 1e-6
    counts = np.zeros((height, width), np.int64)
    np.add.at(counts, (ev["y"].astype(np.int64), ev["x"].astype(np.int64)), 1)
    rate = counts / duration_s
    active = rate[counts > 0]
    thr = max(min_rate_hz, factor * float(np.median(active))) if active.size else min_rate_hz
    return rate > thr, rate


def real_data_report(events, width, height, dt_us=2000.0) -> dict:
    """What the filters do on a real recording (µs timestamps, no labels): pass fractions of the filters and
    their variants, the share of events with two-sided support that each keeps, a BA-rate estimate (events
    without two-sided support per pixel and second: an upper bound of the noise that is isolated, a lower bound
    of the BA rate when signal supports some noise), hot pixels, the mean row/column event rates, and the O(N)
    loss predicted by Eq 3.14 at the BA rate vs the generalised model at the recording's own rates."""
    from finn_s2n2.dvs.denoise import (
        baseline_mask,
        check_events,
        order_n_mask,
        order_n_status,
        refractory_mask,
    )

    ev = check_events(events)
    n = ev.size
    duration_s = float(ev["t"][-1] - ev["t"][0]) * 1e-6
    two = two_sided_support(ev, width, height, dt_us)
    hot, rate = hot_pixels(ev, width, height)
    is_hot = hot[ev["y"].astype(np.int64), ev["x"].astype(np.int64)]
    masks = {
        "baseline (Eq 3.2)": baseline_mask(ev, width, height, dt_us)[1],
        "O(N) dissertation": order_n_mask(ev, width, height, dt_us)[1],
        "O(N) on arrival (no recovery)": order_n_status(ev, width, height, dt_us)[1] == PASSED,
        "O(N) exclude_self": order_n_mask(ev, width, height, dt_us, exclude_self=True)[1],
        "O(N) = KNoiseFilter": order_n_mask(ev, width, height, dt_us + 1, recover=False, same_polarity=True)[
            1
        ],
        "baseline exclude_self": baseline_mask(ev, width, height, dt_us, exclude_self=True)[1],
    }
    refr = refractory_mask(ev, width, height, dt_us)[1]
    masks["refractory(dt) then O(N) exclude_self"] = refr.copy()
    masks["refractory(dt) then O(N) exclude_self"][refr] = order_n_mask(
        ev[refr], width, height, dt_us, exclude_self=True
    )[1]
    rows = {
        k: {
            "passed": float(m.mean()),
            "two_sided_kept": float(m[two].mean()),
            "unsupported_kept": float(m[~two].mean()) if (~two).any() else float("nan"),
            "hot_pixel_events_kept": float(m[is_hot].mean()) if is_hot.any() else float("nan"),
        }
        for k, m in masks.items()
    }
    ba_rate_hz = float((~two).sum()) / (width * height * duration_s)
    base_arrival = masks["baseline (Eq 3.2)"]
    onn = masks["O(N) on arrival (no recovery)"]
    measured_loss = 1.0 - onn[base_arrival & two].sum() / max(int((base_arrival & two).sum()), 1)
    # model: supporter on e4's own row and column, t = dt / 2 (a typical age), at the recording's rates
    sel = np.flatnonzero(base_arrival & two & ~is_hot)
    x4, y4 = ev["x"][sel].astype(np.int64), ev["y"][sel].astype(np.int64)
    rate_us = rate * 1e-6
    p_map = nm.p_false_negative_order_n_map(rate_us, x4, y4, x4, y4, dt_us / 2, dt_us)
    return {
        "events": n,
        "duration_s": duration_s,
        "event_rate_hz": n / duration_s,
        "two_sided_fraction": float(two.mean()),
        "ba_rate_estimate_hz_per_pixel": ba_rate_hz,
        "hot_pixels": int(hot.sum()),
        "hot_pixel_event_share": float(is_hot.mean()),
        "hot_pixel_max_rate_hz": float(rate.max()),
        "mean_row_rate_hz": float(rate.sum(axis=1).mean()),
        "mean_col_rate_hz": float(rate.sum(axis=0).mean()),
        "filters": rows,
        "o_n_arrival_loss_vs_baseline": float(measured_loss),
        "eq_3_14_at_ba_rate": float(nm.p_false_negative_order_n(ba_rate_hz * 1e-6, dt_us / 2, width, height)),
        "generalised_model_mean": float(np.mean(p_map)) if sel.size else float("nan"),
    }
