"""Paired comparisons over seeds for the SkipTrim benchmarks: mean difference and its 95 % confidence interval.

Two contenders trained with the same seeds (same data split, same teacher) give paired accuracies; the
difference per seed removes the seed-to-seed spread they share.  The interval is Student's t interval of the
mean difference, ``mean ± t(0.975, n−1) · sd / sqrt(n)`` (``sd`` with ``n − 1`` degrees of freedom), i.e. the
interval whose exclusion of 0 is the paired t-test at 5 %.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["paired_ci"]


def paired_ci(a, b, level: float = 0.95) -> dict:
    """``a − b`` per seed: ``{"n", "mean", "lo", "hi", "diffs"}`` (``lo``/``hi`` NaN for fewer than 2 pairs)."""
    from scipy import stats

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"paired_ci: a and b must be 1-D of equal length, got {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("paired_ci: no pairs")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired_ci: values must be finite")
    if not 0.0 < level < 1.0:
        raise ValueError(f"paired_ci: level must be in (0, 1), got {level!r}")
    d = a - b
    n = d.size
    mean = float(d.mean())
    if n < 2:
        return {"n": n, "mean": mean, "lo": math.nan, "hi": math.nan, "diffs": d.tolist()}
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
    return {"n": n, "mean": mean, "lo": mean - half, "hi": mean + half, "diffs": d.tolist()}
