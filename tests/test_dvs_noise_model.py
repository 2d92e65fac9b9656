"""Poisson noise model and error probabilities (Khodamoradi 2021, Eq 3.7-3.14) vs Monte-Carlo on the real filters."""

import math

import numpy as np
import pytest

from finn_s2n2.dvs import evaluate as ev
from finn_s2n2.dvs import noise_model as nm


def test_poisson_eq_3_7():
    n = np.arange(60)
    p = nm.p_n_events(n, 2.0, 3.0)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert (n * p).sum() == pytest.approx(6.0, rel=1e-12)
    assert nm.p_n_events(0, 0.05, 1e-3) == pytest.approx(math.exp(-5e-5))
    assert nm.p_no_event(0.05, 1e-3) == nm.p_n_events(0, 0.05, 1e-3)
    assert nm.p_n_events(3, 0.0, 1.0) == 0.0 and nm.p_n_events(0, 0.0, 1.0) == 1.0


def test_closed_forms():
    for s in range(2, 12):
        assert sum(nm.group_fractions(s)) == pytest.approx(1.0)  # Eq 3.8
    assert nm.p_false_positive_liu(1.5, 1e-3, 2) == 0.0  # S = 2: no non-neighbour in the group
    assert nm.p_false_negative_liu(2) == pytest.approx(5 / 9)  # every pixel is a corner
    assert nm.p_false_negative_liu(3) == pytest.approx(4 / 9 * 5 / 9 + 4 / 9 * 3 / 9)
    # S=2 sub-sampling: 4 groups around a corner pixel -> 16 - 9 = 7 non-neighbours
    assert nm.p_false_positive_subsampling(1.5, 1e-3, 2) == pytest.approx(1 - math.exp(-1.5e-3 * 7))
    p0 = math.exp(-0.05 * 1e-3)
    assert nm.p_false_negative_order_n(0.05, 1e-3, 128) == pytest.approx((1 - p0**125) ** 2)
    assert nm.p_false_negative_order_n(0.05, 1e-3, 128, 64) == pytest.approx((1 - p0**125) * (1 - p0**61))
    # the dissertation's comparison (Fig 3.9/3.10): O(N) false negatives ~100x below Liu's at 128 x 128, room temp.
    assert nm.p_false_negative_liu(2) / nm.p_false_negative_order_n(0.05, 1e-3, 128) > 100
    e = nm.error_probabilities("order_n", 0.05, 1e-3, 128)
    assert e["false_positive"] == 0.0 and e["false_negative"] > 0
    assert nm.error_probabilities("baseline", 0.05, 1e-3, 128) == {
        "false_positive": 0.0,
        "false_negative": 0.0,
    }
    # exclusive variant = seed expression x P0^9
    assert nm.p_false_positive_liu(5.0, 1e-3, 4, exclusive=True) == pytest.approx(
        nm.p_false_positive_liu(5.0, 1e-3, 4) * math.exp(-5e-3 * 9)
    )


def test_bad_input():
    with pytest.raises(ValueError, match="sub-sampling factor"):
        nm.p_false_positive_liu(0.05, 1e-3, 1)
    with pytest.raises(ValueError, match="rate"):
        nm.p_no_event(-1.0, 1.0)
    with pytest.raises(ValueError, match="t must be finite"):
        nm.p_no_event(1.0, float("nan"))
    with pytest.raises(ValueError, match="sensor side"):
        nm.p_false_negative_order_n(0.05, 1e-3, 2)
    with pytest.raises(ValueError, match="non-negative integer"):
        nm.p_n_events(-1, 1.0, 1.0)
    with pytest.raises(ValueError, match="filter_name"):
        nm.error_probabilities("median", 0.05, 1e-3, 128)


def _within(r, key="analytic"):
    z = (r["estimate"] - r[key]) / r["se"]
    assert abs(z) <= 3, (
        f"{r['filter']}: MC {r['estimate']:.5g} ± {r['se']:.2g} vs {key} {r[key]:.5g} (z={z:.2f})"
    )


@pytest.mark.parametrize("s", [3, 4, 6])
@pytest.mark.parametrize("name", ["liu", "subsampling"])
def test_mc_false_positive_stress_rate(name, s):
    # 5 Hz per pixel, dt = 1 ms: compared with the exact (exclusive) form of Eq 3.9 / 3.11
    r = ev.mc_false_positive(name, 5.0, 1000.0, s, side=120, n_events=150_000, seed=s)
    assert r["k"] > 1000
    _within(r, "analytic_exclusive")


@pytest.mark.parametrize("s", [4, 8])
@pytest.mark.parametrize("name", ["liu", "subsampling"])
def test_mc_false_positive_room_temperature(name, s):
    # 0.05 Hz (room temperature), dt = 1 ms on 128 x 128: the dissertation's expression itself
    r = ev.mc_false_positive(
        name, nm.ROOM_TEMPERATURE_RATE_HZ, 1000.0, s, side=128, n_events=1_000_000, seed=s
    )
    assert r["k"] > 300
    _within(r)


@pytest.mark.parametrize("name", ["baseline", "order_n"])
def test_mc_no_false_positive(name):
    r = ev.mc_false_positive(name, 20.0, 1000.0, 4, side=64, n_events=100_000, seed=1)
    assert r["k"] == 0 and r["analytic"] == 0.0


@pytest.mark.parametrize("s", [2, 3, 4, 8])
def test_mc_false_negative_liu(s):
    _within(ev.mc_false_negative_liu(s, n_pairs=4000, seed=s))


@pytest.mark.parametrize("c", [0.3, 1.0, 2.0])
def test_mc_false_negative_order_n(c):
    # rate chosen so that lambda * t * (M - 3) = c; 2048 x 2048 keeps the neglected noise-support term small
    side, t = 2048, 1000.0
    r = ev.mc_false_negative_order_n(
        c / (t * 1e-6 * (side - 3)), t, side=side, n_pairs=3000, seed=int(10 * c)
    )
    assert r["k"] > 50
    _within(r)


def test_mc_bad_input():
    with pytest.raises(ValueError, match="multiple of s"):
        ev.mc_false_positive("liu", 1.0, 1000.0, 3, side=128)
    with pytest.raises(ValueError, match="must be < dt_us"):
        ev.mc_false_negative_order_n(1.0, 1000.0, dt_us=1000.0)


def _dense_scene(seed=0, side=512):
    """A dense scene: 0.5 Hz everywhere, 30 % of rows and of columns +3 Hz per pixel (edges, texture), and a
    60 × 300 object at +60 Hz per pixel — rows of up to ~20 kHz in total."""
    rng = np.random.default_rng(seed)
    rm = np.full((side, side), 0.5)
    rm[rng.random(side) < 0.3, :] += 3.0
    rm[:, rng.random(side) < 0.3] += 3.0
    rm[200:260, 100:400] += 60.0
    return rm


@pytest.mark.parametrize(("t_us", "dt_us"), [(300.0, 400.0), (1000.0, 1250.0)])
def test_generalised_eq_3_14_dense_scene_within_3_se(t_us, dt_us):
    r = ev.mc_false_negative_order_n_map(_dense_scene(), t_us, dt_us=dt_us, n_pairs=6000, seed=1)
    assert abs(r["z"]) < 3, r
    assert 0.1 < r["estimate"] < 0.7  # a regime where the filter loses a real share of the pairs
    # Eq 3.14 at the scene's mean rate is far off (it ignores where the events are)
    assert r["eq_3_14_mean_rate"] - r["estimate"] > 0.15


def test_generalised_eq_3_14_sparse_noise():
    side, t_us = 1024, 1000.0
    rate_hz = 0.4e6 / (t_us * (side - 3))  # λ t (M - 3) = 0.4
    rm = np.full((side, side), rate_hz)
    r = ev.mc_false_negative_order_n_map(rm, t_us, dt_us=1250.0, n_pairs=3000, seed=3)
    assert abs(r["z"]) < 3, r
    # uniform sparse noise: the generalised model is Eq 3.14 to first order
    assert r["model"] == pytest.approx(r["eq_3_14_mean_rate"], rel=0.05)


def test_generalised_model_closed_form_and_errors():
    rm = np.full((64, 64), 1e-4)
    p = nm.p_false_negative_order_n_map(rm, 10, 10, 11, 11, 100.0, 200.0)
    lam, lam_in = 64 * 1e-4, 3 * 1e-4
    q = (1 - lam_in / lam) * (1 - math.exp(-lam * 100.0))
    s = lam_in / lam * (1 - math.exp(-lam * 200.0))
    assert p == pytest.approx(q * q * (1 - s) ** 4)
    with pytest.raises(ValueError, match="neighbour"):
        nm.p_false_negative_order_n_map(rm, 10, 10, 13, 11, 100.0, 200.0)
    with pytest.raises(ValueError, match="must be < dt"):
        nm.p_false_negative_order_n_map(rm, 10, 10, 11, 11, 300.0, 200.0)
    with pytest.raises(ValueError, match="inside the rate map"):
        nm.p_false_negative_order_n_map(rm, 64, 10, 63, 11, 100.0, 200.0)
    with pytest.raises(ValueError, match="2-D array"):
        nm.p_false_negative_order_n_map(np.ones(5), 1, 1, 1, 1, 1.0, 2.0)
