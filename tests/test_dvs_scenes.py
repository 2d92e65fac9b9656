"""Synthetic DVS scenes with ground truth, ROC/recovery evaluation (Khodamoradi 2021, §3.3, §3.4.6)."""

import numpy as np
import pytest
from scipy import stats

from finn_s2n2.dvs import denoise as d
from finn_s2n2.dvs import evaluate as ev
from finn_s2n2.dvs import scenes


def test_poisson_noise_statistics():
    # 64 x 64 pixels at 20 Hz for 2 s: counts per pixel ~ Poisson(40), uniform over pixels, sorted times
    e = scenes.poisson_noise(64, 64, 20.0, 2_000_000, 0)
    assert e.dtype == d.EVENT_DTYPE and np.all(np.diff(e["t"]) >= 0)
    assert abs(e.size - 64 * 64 * 40) < 4 * np.sqrt(64 * 64 * 40)
    counts = np.bincount(e["y"].astype(int) * 64 + e["x"], minlength=64 * 64)
    assert counts.var() / counts.mean() == pytest.approx(1.0, abs=0.1)  # Poisson: variance = mean
    # inter-arrival times of the merged process are exponential (KS test, Eq 3.7)
    ef = scenes.poisson_noise(64, 64, 20.0, 2_000_000, 1, float_time=True)
    gaps = np.diff(ef["t"])
    assert stats.kstest(gaps, "expon", args=(0, gaps.mean())).pvalue > 0.01


@pytest.mark.parametrize("kind", ["bars", "dots", "spot"])
def test_scenes_have_ground_truth(kind):
    e, sig = scenes.make_scene(kind, 64, 48, 200_000, 1.5, seed=2)
    assert e.shape == sig.shape and np.all(np.diff(e["t"]) >= 0)
    assert sig.sum() > 100 and (~sig).sum() > 0
    assert e["x"].max() < 64 and e["y"].max() < 48 and e["x"].min() >= 0
    # signal events are spatio-temporally correlated: the baseline keeps far more signal than noise
    r = ev.scene_rates(e, sig, 64, 48, 2000, "baseline")
    assert r["signal_kept"] > 5 * r["noise_kept"]
    # same seed -> same stream
    e2, sig2 = scenes.make_scene(kind, 64, 48, 200_000, 1.5, seed=2)
    assert np.array_equal(e, e2) and np.array_equal(sig, sig2)


def test_render_polarity_and_fire_prob():
    # a bright square appears at t > 500 and disappears at t > 1500: ON events, then OFF events
    def mask(t):
        m = np.zeros((8, 8), bool)
        if 500 < t <= 1500:
            m[2:4, 2:4] = True
        return m

    e = scenes.render(mask, 8, 8, 3000, 100, 0, latency_us=1.0)
    assert e.size == 8 and e["p"][:4].all() and not e["p"][4:].any()
    assert scenes.render(mask, 8, 8, 3000, 100, 0, fire_prob=0.0).size == 0


def test_recovery_gain_on_spot_scene():
    e, sig = scenes.make_scene("spot", 128, 128, 400_000, 0.05, seed=5, fire_prob=0.25)
    g = ev.recovery_gain(e, sig, 128, 128, 1000)
    assert g["order_n_signal_passed"] > g["baseline_signal_passed"]
    assert g["gain_percent"] > 10  # recovery passes real events the baseline loses for good
    assert g["dissertation_gain_percent"] == 180.0


def test_roc_table_and_plot(tmp_path):
    e, sig = scenes.make_scene("dots", 64, 64, 200_000, 1.5, seed=3)
    rows = ev.roc_table(e, sig, 64, 64, [500, 2000, 8000])
    assert len(rows) == 12
    for f in ev.FILTERS:
        kept = [r["signal_kept"] for r in rows if r["filter"] == f]
        assert kept == sorted(kept)  # a longer window never keeps less signal for these scenes
    path = ev.plot_roc(rows, tmp_path / "roc.png")
    assert path.stat().st_size > 10_000


def test_bad_input():
    with pytest.raises(ValueError, match="kind must be one of"):
        scenes.make_scene("lasers", 64, 64, 1000, 1.0)
    with pytest.raises(ValueError, match="rate_hz"):
        scenes.poisson_noise(64, 64, -1.0, 1000)
    with pytest.raises(ValueError, match="width"):
        scenes.poisson_noise(0, 64, 1.0, 1000)
    with pytest.raises(ValueError, match=r"\(8, 8\) image"):
        scenes.render(lambda t: np.zeros((4, 4), bool), 8, 8, 1000, 10)
    e, sig = scenes.make_scene("noise", 16, 16, 100_000, 5.0, seed=0)
    with pytest.raises(ValueError, match="is_signal must have the shape"):
        ev.scene_rates(e, sig[:-1], 16, 16, 1000, "baseline")
