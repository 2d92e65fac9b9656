"""HLS C++ O(N) DVS filter: g++ C-simulation == python execution, event for event (Khodamoradi 2021 §3.2),
including TLAST framing per packet and 32-bit timestamp wrap."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finn_s2n2.dvs import denoise as d
from finn_s2n2.dvs import hls, memory
from finn_s2n2.dvs import stream as s


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
    assert lay["MAX_OUT_PER_EVENT"] == 7  # the II target of the top


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
    out = hls.csim_order_n(ev, w, h, dt)
    _same(out, d.order_n_filter(ev, w, h, dt, order="emission"))
    assert out["last"].tolist() == [0] * (out.size - 1) + [1] * (out.size > 0)  # one packet: TLAST at the end


@st.composite
def wrapping_packets(draw):
    """Streams whose timestamps cross 2^32 several times (gaps just below, at and above 2^32), cut into packets."""
    w = draw(st.integers(1, 24))
    h = draw(st.integers(1, 24))
    n = draw(st.integers(1, 1500))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    dt = draw(st.sampled_from([5, 50, 1000, 2**20]))
    steps = rng.integers(0, 3 * dt, n)
    big = rng.random(n) < 0.01
    steps[big] += 2**32 + rng.integers(-2 * dt, 2 * dt, big.sum())
    ev = np.zeros(n, d.EVENT_DTYPE)
    ev["x"], ev["y"] = rng.integers(0, w, n), rng.integers(0, h, n)
    ev["t"] = rng.integers(0, 2**32) + np.cumsum(np.maximum(steps, 0))
    ev["p"] = rng.integers(0, 2, n)
    last = rng.random(n) < draw(st.sampled_from([0.0, 0.01, 0.2]))
    last[-1] = True
    return ev, w, h, dt, last


@settings(max_examples=60, deadline=None)
@given(wrapping_packets())
def test_csim_equals_python_packets_tlast_and_wrap(lib, case):
    """Packet by packet, the C-sim's TLAST-delimited output equals the python stream's per-packet output
    (emission order, ages modulo 2^32: timestamp_bits=32)."""
    ev, w, h, dt, last = case
    out = hls.csim_order_n(ev, w, h, dt, last=last, wrap=True)
    f = s.OrderNFilter(w, h, dt, timestamp_bits=32)
    ends = np.flatnonzero(last) + 1
    py = [f(p) for p in np.split(ev, ends[:-1])]
    py = [p for p in py if p.size]  # a packet that emits nothing emits no TLAST
    cs = np.split(out, np.flatnonzero(out["last"])[:-1] + 1) if out.size else []
    assert len(cs) == len(py)
    for a, b in zip(cs, py):
        b = b.copy()
        b["t"] &= 0xFFFFFFFF  # the hardware sees the 32-bit counter
        _same(a, b)
        assert a["last"][-1] == 1 and not a["last"][:-1].any()


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
    with pytest.raises(ValueError, match=r"\[0, 2\*\*32\) \(or pass wrap=True\)"):
        hls.csim_order_n(ev2, 8, 8, 5)
    ev2["t"] = [0, 1, 2**32 + 3]  # 2^32 + 2 ticks after t=1: aliases to 2 ticks in 32-bit hardware
    out = hls.csim_order_n(ev2, 8, 8, 5, wrap=True)
    assert out["t"].tolist() == [0, 1, 3]
    assert d.order_n_filter(ev2, 8, 8, 5, timestamp_bits=32).size == 3
    assert d.order_n_filter(ev2, 8, 8, 5).size == 2  # exact ages: the third event is alone
    with pytest.raises(ValueError, match="one flag per event"):
        hls.csim_order_n(ev, 8, 8, 5, last=[True])
    ev3 = ev.copy()
    ev3["x"] = [0, 9, 1]
    with pytest.raises(ValueError, match="outside 8 x 8"):
        hls.csim_order_n(ev3, 8, 8, 5)
