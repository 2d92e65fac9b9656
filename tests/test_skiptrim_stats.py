"""paired_ci: Student's t interval of the per-seed differences; excludes 0 exactly when the paired t-test rejects."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from hls4ml_skiptrim.training.recipes.stats import paired_ci


def test_known_values():
    r = paired_ci([0.90, 0.92, 0.91, 0.93], [0.89, 0.90, 0.91, 0.90])
    d = np.array([0.01, 0.02, 0.0, 0.03])
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert r["n"] == 4 and r["mean"] == pytest.approx(d.mean())
    assert r["lo"] == pytest.approx(d.mean() - half) and r["hi"] == pytest.approx(d.mean() + half)
    one = paired_ci([0.9], [0.8])
    assert one["mean"] == pytest.approx(0.1) and math.isnan(one["lo"]) and math.isnan(one["hi"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=3, max_size=10))
def test_interval_excludes_zero_iff_paired_t_test_rejects(pairs):
    a, b = np.array(pairs).T
    d = a - b
    if d.std(ddof=1) < 1e-9:  # degenerate: the t statistic is undefined
        return
    r = paired_ci(a, b)
    p = stats.ttest_rel(a, b).pvalue
    if abs(p - 0.05) > 1e-6:
        assert (r["lo"] > 0 or r["hi"] < 0) == (p < 0.05)


def test_bad_input():
    with pytest.raises(ValueError, match="equal length"):
        paired_ci([1, 2], [1])
    with pytest.raises(ValueError, match="no pairs"):
        paired_ci([], [])
    with pytest.raises(ValueError, match="finite"):
        paired_ci([1, float("nan")], [1, 2])
    with pytest.raises(ValueError, match="level"):
        paired_ci([1, 2], [1, 2], level=95)
