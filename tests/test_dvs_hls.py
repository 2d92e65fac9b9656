"""HLS C++ O(N) DVS filter: g++ C-simulation == python execution, event for event (seed 002 §3.2)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finn_s2n2.dvs import denoise as d
from finn_s2n2.dvs import hls, memory


@pytest.fixture(scope="module")
def lib():
    return hls.load()  # one g++ build per source hash, shared by every stream below


def test_layout_matches_memory_module(lib):
    lay = hls.layout()
    assert lay["BK_BIT"] == memory.BK_BIT
    assert lay["POL_BIT"] == memory.POL_BIT
    assert lay["POS_BITS"] == memory.POS_BITS
    assert lay["POS_EMPTY"] == memory.POS_EMPTY
    assert lay["MAX_W"] == lay["MAX_H"] == hls.MAX_SIDE


def _same(a, b):
    assert a.size == b.size
    for f in "xyt":
        assert np.array_equal(a[f], b[f].astype(np.int64)), f
    assert np.array_equal(a["p"], (b["p"] != 0).astype(np.uint8))


@st.composite
def hw_streams(draw):
    w = draw(st.integers(1, 64))
    h = draw(st.integers(1, 64))
    n = draw(st.integers(1, 3000))
    seed = draw(st.integers(0, 2**31))
    dt = draw(st.sampled_from([1, 7, 50, 300, 1000, 10**5, 2**31 + 5]))
    span = draw(st.sampled_from([n, 10 * n, 100 * n, 2**32 - 1]))
    t0 = draw(st.integers(0, 2**32 - 1 - span))
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, d.EVENT_DTYPE)
    ev["x"], ev["y"] = rng.integers(0, w, n), rng.integers(0, h, n)
    ev["t"] = t0 + np.sort(rng.integers(0, span + 1, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev, w, h, dt


@settings(max_examples=120)
@given(hw_streams())
def test_csim_equals_python(lib, case):
    ev, w, h, dt = case
    _same(hls.csim_order_n(ev, w, h, dt), d.order_n_filter(ev, w, h, dt, order="emission"))


def test_csim_equals_python_large_sensor_and_recoveries(lib):
    rng = np.random.default_rng(7)
    n = 20000
    ev = np.zeros(n, d.EVENT_DTYPE)
    # clustered activity (many recoveries) on a 1280 x 720 sensor, plus uniform noise
    cx, cy = rng.integers(1, 1279, n), rng.integers(1, 719, n)
    jitter = rng.integers(-1, 2, (2, n))
    noise = rng.random(n) < 0.5
    ev["x"] = np.where(
        noise, rng.integers(0, 1280, n), np.clip(np.repeat(cx[::4], 4)[:n] + jitter[0], 0, 1279)
    )
    ev["y"] = np.where(noise, rng.integers(0, 720, n), np.clip(np.repeat(cy[::4], 4)[:n] + jitter[1], 0, 719))
    ev["t"] = np.sort(rng.integers(0, 10 * n, n))
    ev["p"] = rng.integers(0, 2, n)
    _, status, _ = d.order_n_status(ev, 1280, 720, 40)
    assert (status == d.RECOVERED).sum() > 100  # the stream exercises recovery
    _same(hls.csim_order_n(ev, 1280, 720, 40), d.order_n_filter(ev, 1280, 720, 40, order="emission"))


def test_csim_bad_input(lib):
    ev = np.zeros(3, d.EVENT_DTYPE)
    ev["t"] = [0, 1, 2]
    with pytest.raises(ValueError, match="dt must be an int"):
        hls.csim_order_n(ev, 8, 8, 0)
    with pytest.raises(ValueError, match="width must be an int"):
        hls.csim_order_n(ev, hls.MAX_SIDE + 1, 8, 5)
    ev2 = ev.copy()
    ev2["t"] = [0, 1, 2**33]
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\)"):
        hls.csim_order_n(ev2, 8, 8, 5)
    ev3 = ev.copy()
    ev3["x"] = [0, 9, 1]
    with pytest.raises(ValueError, match="outside 8 x 8"):
        hls.csim_order_n(ev3, 8, 8, 5)
