"""DVS background-activity filters (Khodamoradi 2021, ch. 3): semantics, properties, bad input."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from finn_s2n2.dvs import denoise as d
from finn_s2n2.dvs import stream as s


def make(xs, ys, ts, ps=None):
    ev = np.zeros(len(xs), d.EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"] = xs, ys, ts
    if ps is not None:
        ev["p"] = ps
    return ev


def eq_3_2_oracle(ev, dt):
    """Eq 3.2 written out directly: most recent timestamp per pixel, 3x3 neighbourhood incl. the pixel."""
    last = {}
    out = np.zeros(ev.size, bool)
    for i, (x, y, t) in enumerate(zip(ev["x"].tolist(), ev["y"].tolist(), ev["t"].tolist())):
        out[i] = any(
            (x + a, y + b) in last and t - last[(x + a, y + b)] < dt for a in (-1, 0, 1) for b in (-1, 0, 1)
        )
        last[(x, y)] = t
    return out


@st.composite
def streams(draw, max_side=12, max_n=200):
    w = draw(st.integers(1, max_side))
    h = draw(st.integers(1, max_side))
    n = draw(st.integers(1, max_n))
    seed = draw(st.integers(0, 2**31))
    dt = draw(st.integers(1, 60))
    rng = np.random.default_rng(seed)
    ev = make(
        rng.integers(0, w, n),
        rng.integers(0, h, n),
        np.sort(rng.integers(0, 8 * n, n)),
        rng.integers(0, 2, n),
    )
    return ev, w, h, dt


def test_recovery_of_a_past_event():
    # e0 has no support when it arrives; e1 (a neighbour, 100 later) supports it -> e0 is recovered, once.
    ev = make([5, 6, 6], [5, 6, 7], [0, 100, 150])
    _, status, emission = d.order_n_status(ev, 16, 16, 1000)
    assert status.tolist() == [d.RECOVERED, d.PASSED, d.PASSED]
    assert emission.tolist() == [0, 1, 2]  # recovered first, then the event that recovered it
    # the baseline cannot recover: it drops e0 (past-event false negative)
    assert d.baseline_mask(ev, 16, 16, 1000)[1].tolist() == [False, True, True]


def test_emission_order_vs_time_order():
    # A (far away) passes at t=20 because of its own pixel; B is recovered at t=40 -> emitted after A.
    ev = make([10, 10, 2, 3], [10, 10, 2, 3], [0, 20, 30, 40])
    time_order = d.order_n_filter(ev, 16, 16, 100)
    emit_order = d.order_n_filter(ev, 16, 16, 100, order="emission")
    assert time_order["t"].tolist() == [0, 20, 30, 40]
    assert emit_order["t"].tolist() == [0, 20, 30, 40]  # e0 recovered by e1 before e1 (both at pixel 10,10)
    ev2 = make([2, 10, 3], [2, 10, 3], [0, 5, 40])
    assert d.order_n_filter(ev2, 16, 16, 100)["t"].tolist() == [0, 40]
    assert d.order_n_filter(ev2, 16, 16, 100, order="emission")["t"].tolist() == [0, 40]
    ev3 = make([2, 10, 10, 3], [2, 10, 10, 3], [0, 5, 6, 40])  # e1,e2 pass at t=6; e0 recovered at t=40
    assert d.order_n_filter(ev3, 16, 16, 100)["t"].tolist() == [0, 5, 6, 40]
    assert d.order_n_filter(ev3, 16, 16, 100, order="emission")["t"].tolist() == [5, 6, 0, 40]


def test_fig_3_8_false_negative():
    # e1 at (4,4); BA2 in column 4 far away overwrites column 4, BA3 in row 4 far away overwrites row 4;
    # e4 at (5,5) then finds no support (Eq 3.13) although e1 is its neighbour within dt.
    ev = make([4, 4, 20, 5], [4, 20, 4, 5], [0, 10, 20, 30])
    _, status, _ = d.order_n_status(ev, 32, 32, 100)
    assert status[3] == d.DROPPED
    assert eq_3_2_oracle(ev, 100)[3]  # the baseline passes it
    # without BA3 the row cell still holds e1: e4 passes and recovers e1
    ev_ok = make([4, 4, 5], [4, 20, 5], [0, 10, 30])
    assert d.order_n_status(ev_ok, 32, 32, 100)[1].tolist() == [d.RECOVERED, d.DROPPED, d.PASSED]


def test_self_support_and_strict_window():
    ev = make([3, 3, 3], [3, 3, 3], [0, 99, 198])
    for name in ("baseline", "liu", "subsampling", "order_n"):
        m = d.filter_mask(name, ev, 8, 8, 100, s=2)[1]
        assert m[1] and m[2], name  # same pixel supports, 99 < 100
    ev = make([3, 3], [3, 3], [0, 100])
    for name in ("baseline", "liu", "subsampling", "order_n"):
        assert not d.filter_mask(name, ev, 8, 8, 100, s=2)[1].any(), name  # 100 is not < 100


@settings(max_examples=60)
@given(streams())
def test_baseline_is_eq_3_2(case):
    ev, w, h, dt = case
    assert np.array_equal(d.baseline_mask(ev, w, h, dt)[1], eq_3_2_oracle(ev, dt))
    # the sub-sampling filter with S = 1 is the baseline
    assert np.array_equal(d.subsampling_mask(ev, w, h, dt, 1)[1], eq_3_2_oracle(ev, dt))


@settings(max_examples=60)
@given(streams(), st.integers(1, 5))
def test_group_filters_properties(case, s):
    ev, w, h, dt = case
    liu = d.liu_mask(ev, w, h, dt, s)[1]
    sub = d.subsampling_mask(ev, w, h, dt, s)[1]
    base = d.baseline_mask(ev, w, h, dt)[1]
    assert not (liu & ~sub).any()  # sub-sampling checks a superset of Liu's groups
    assert not (base & ~sub).any()  # no false negatives for the sub-sampling filter (§3.4.3)


@settings(max_examples=80)
@given(streams())
def test_order_n_properties(case):
    ev, w, h, dt = case
    _, status, emission = d.order_n_status(ev, w, h, dt)
    base = eq_3_2_oracle(ev, dt)
    passed = status == d.PASSED
    # zero false positives (§3.4.4): an event passed on arrival has real support
    assert not (passed & ~base).any()
    # every emitted event exactly once; emission = the passed-or-recovered set
    assert len(set(emission.tolist())) == emission.size
    assert sorted(emission.tolist()) == np.flatnonzero(status != d.DROPPED).tolist()
    # a recovered event is supported by a later PASSED neighbour within dt, emitted after it was recovered
    pos = {int(j): k for k, j in enumerate(emission)}
    for j in np.flatnonzero(status == d.RECOVERED):
        later = [
            i
            for i in range(j + 1, ev.size)
            if status[i] == d.PASSED
            and abs(int(ev["x"][i]) - int(ev["x"][j])) <= 1
            and abs(int(ev["y"][i]) - int(ev["y"][j])) <= 1
            and ev["t"][i] - ev["t"][j] < dt
            and pos[i] > pos[int(j)]
        ]
        assert later, f"recovered event {j} has no later supporting event"
    # time-order output = events with status != DROPPED in input order
    assert np.array_equal(d.order_n_filter(ev, w, h, dt), ev[status != d.DROPPED])


def test_float_timestamps_and_other_dtypes():
    rng = np.random.default_rng(0)
    n = 500
    ev = make(rng.integers(0, 20, n), rng.integers(0, 20, n), np.sort(rng.integers(0, 5000, n)))
    evf = np.zeros(
        n, [("x", np.int64), ("y", np.uint16), ("t", np.float64), ("p", np.int8), ("extra", np.float32)]
    )
    for f in "xytp":
        evf[f] = ev[f]
    evf["extra"] = np.arange(n)
    for name in ("baseline", "liu", "subsampling", "order_n"):
        assert np.array_equal(
            d.filter_mask(name, ev, 20, 20, 50)[1], d.filter_mask(name, evf, 20, 20, 50.0)[1]
        )
    # unsigned 32-bit timestamps (a sensor's raw counter) over the whole uint32 range
    ev32 = make(rng.integers(0, 20, n), rng.integers(0, 20, n), np.sort(rng.integers(0, 2**32 - 1, n)))
    evu = np.zeros(n, [("x", np.uint8), ("y", np.int32), ("t", np.uint32), ("p", np.uint8)])
    for f in "xytp":
        evu[f] = ev32[f]
    for name in ("baseline", "liu", "subsampling", "order_n"):
        assert np.array_equal(
            d.filter_mask(name, ev32, 20, 20, 5_000_000)[1], d.filter_mask(name, evu, 20, 20, 5_000_000)[1]
        )
    out = d.order_n_filter(evf, 20, 20, 50)
    assert out.dtype == evf.dtype and np.array_equal(
        out["extra"], np.flatnonzero(d.order_n_mask(ev, 20, 20, 50)[1])
    )


def test_sort_when_asked():
    ev = make([1, 1, 2, 9], [1, 1, 2, 9], [10, 5, 7, 8])
    with pytest.raises(ValueError, match=r"non-decreasing: t\[1\]=5 < t\[0\]=10.*sort=True"):
        d.order_n_filter(ev, 16, 16, 10)
    with pytest.raises(ValueError, match="non-decreasing"):
        d.baseline_filter(ev, 16, 16, 10)
    srt = ev[np.argsort(ev["t"], kind="stable")]
    assert np.array_equal(d.order_n_filter(ev, 16, 16, 10, sort=True), d.order_n_filter(srt, 16, 16, 10))
    assert np.array_equal(d.liu_filter(ev, 16, 16, 10, 2, sort=True), d.liu_filter(srt, 16, 16, 10, 2))


@pytest.mark.parametrize("name", ["baseline", "liu", "subsampling", "order_n"])
def test_bad_input(name):
    f = lambda ev, w=16, h=16, dt=10, **kw: d.filter_mask(name, ev, w, h, dt, **kw)
    ok = make([1, 2], [1, 2], [0, 1])
    with pytest.raises(ValueError, match=r"events\['x'\]\[1\]=16 is outside the sensor.*width=16"):
        f(make([1, 16], [1, 2], [0, 1]))
    with pytest.raises(ValueError, match=r"events\['y'\]\[0\]=-1 is outside"):
        f(make([1, 2], [-1, 2], [0, 1]))
    with pytest.raises(ValueError, match="empty"):
        f(ok[:0], allow_empty=False)
    ev_e, m_e = f(ok[:0])  # an empty packet is no error: empty result
    assert ev_e.size == 0 and m_e.size == 0
    for bad_dt in (0, -5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="dt"):
            f(ok, dt=bad_dt)
    with pytest.raises(TypeError, match="dt"):
        f(ok, dt="10")
    with pytest.raises(TypeError, match="structured array"):
        f(np.zeros((3, 4)))
    with pytest.raises(TypeError, match="structured array"):
        f([(1, 2, 3, True)])
    with pytest.raises(TypeError, match=r"lacks field\(s\) \['t'\]"):
        f(np.zeros(3, [("x", "i2"), ("y", "i2"), ("p", "?")]))
    with pytest.raises(TypeError, match=r"events\['x'\] must have an integer dtype"):
        f(np.zeros(3, [("x", "f4"), ("y", "i2"), ("t", "i8")]))
    with pytest.raises(ValueError, match="NaN"):
        f(np.array([(1, 1, np.nan)], [("x", "i2"), ("y", "i2"), ("t", "f8")]))
    with pytest.raises(ValueError, match="1-D"):
        f(ok.reshape(1, 2))
    with pytest.raises(ValueError, match="width must be in"):
        f(ok, w=0)
    with pytest.raises(TypeError, match="height must be an int"):
        f(ok, h=16.0)


def test_bad_order_and_s():
    ok = make([1, 2], [1, 2], [0, 1])
    with pytest.raises(ValueError, match="order must be"):
        d.order_n_filter(ok, 4, 4, 5, order="sorted")
    with pytest.raises(ValueError, match="sub-sampling factor"):
        d.liu_filter(ok, 4, 4, 5, 0)
    with pytest.raises(ValueError, match="filter name"):
        d.filter_mask("median", ok, 4, 4, 5)


def test_tonic_transform_in_compose():
    import tonic

    rng = np.random.default_rng(3)
    n = 2000
    ev = np.zeros(n, tonic.io.events_struct)
    ev["x"], ev["y"] = rng.integers(0, 34, n), rng.integers(0, 34, n)
    ev["t"] = np.sort(rng.integers(0, 100_000, n))
    tf = tonic.transforms.Compose([d.OrderNDenoise(sensor_size=(34, 34, 2), filter_time=2000)])
    out = tf(ev)
    assert out.dtype == ev.dtype
    assert np.array_equal(out, d.order_n_filter(ev, 34, 34, 2000))
    assert 0 < out.size < n
    with pytest.raises(ValueError, match="sensor_size"):
        d.OrderNDenoise(sensor_size=(34,), filter_time=10)
    with pytest.raises(ValueError, match="dt"):
        d.OrderNDenoise(sensor_size=(34, 34, 2), filter_time=0)


@settings(max_examples=40, deadline=None)
@given(
    streams(),
    st.sampled_from(
        [
            {},
            {"exclude_self": True},
            {"same_polarity": True},
            {"min_support": 2},
            {"min_support": 3, "exclude_self": True, "same_polarity": True},
            {"timestamp_bits": 32},
        ]
    ),
    st.sampled_from(["int", "float", "far"]),
)
def test_marking_equals_bookkeeping(case, opts, kind):
    """One call in time order recovers by marking supporters (no bk bits); the status of every event must be
    the one of the bk bookkeeping kernel (the streaming / emission-order path): PASSED, RECOVERED, DROPPED."""
    ev, w, h, dt = case
    assume(not (kind == "float" and opts.get("timestamp_bits") == 32))  # 32-bit ages need integers
    if kind == "float":
        ev = ev.astype([("x", "i2"), ("y", "i2"), ("t", "f8"), ("p", "?")])
        ev["t"] *= 0.37
    elif kind == "far":  # timestamps near the int64 limits and around 2^32 (32-bit aliasing)
        ev["t"] += 2**63 - 1 - int(ev["t"][-1]) if opts.get("timestamp_bits") != 32 else 2**32 - 50
    _, bk_status, emission = d.order_n_status(ev, w, h, dt, **opts)  # bookkeeping kernel
    f = s.OrderNFilter(w, h, dt, order="time", **opts)
    marked, none = f.run_once(d.check_events(ev))  # marking kernel
    assert none is None
    assert np.array_equal(marked, bk_status)
    assert np.array_equal(d.order_n_filter(ev, w, h, dt, **opts), ev[bk_status != d.DROPPED])
    assert np.array_equal(np.sort(emission), np.flatnonzero(bk_status))
