"""Peer BA filters used by the benchmark and the agreement checks (own code; the peers' libraries are called
as shipped).

* :func:`tonic_denoise_numba` — tonic's ``denoise_numpy`` algorithm (tonic 1.x, ``tonic.functional.denoise``)
  compiled with numba: one "expiry" time ``t + filter_time`` per pixel, an event passes when one of its four
  direct neighbours (not the pixel itself, not the diagonals) expires after ``t``.  Its quirks are kept so
  that the output equals tonic's: the memory starts at ``filter_time`` (events before ``filter_time`` pass
  when a neighbour is still at the initial value), the pixel's own expiry is written before the check, and
  the sensor size is taken from the data (``max + 1``).  Written to compare like with like: tonic's own
  function is a Python loop.
* :func:`dv_filter` — run a dv-processing noise filter (``KNoiseFilter``: the same O(N) row/column
  algorithm; ``BackgroundActivityNoiseFilter``: per pixel) over a prepared ``dv.EventStore``.
* :func:`to_dv_store` — a ``dv.EventStore`` from a structured array (its native input, built outside timing).
"""

from __future__ import annotations

import datetime

import numpy as np
from numba import njit

from finn_s2n2.dvs.denoise import check_events


@njit(cache=True)
def _tonic_kernel(events, width, height, filter_time, keep):
    mem = np.full((width, height), filter_time, np.float64)
    k = 0
    for i in range(events.shape[0]):
        e = events[i]
        x = np.int64(e.x)
        y = np.int64(e.y)
        t = np.float64(e.t)
        mem[x, y] = t + filter_time
        ok = (
            (x > 0 and mem[x - 1, y] > t)
            or (x < width - 1 and mem[x + 1, y] > t)
            or (y > 0 and mem[x, y - 1] > t)
            or (y < height - 1 and mem[x, y + 1] > t)
        )
        keep[k] = i
        k += ok
    return k


def tonic_denoise_numba(events, filter_time=10000) -> np.ndarray:
    """tonic's ``denoise_numpy(events, filter_time)`` compiled with numba (same output)."""
    ev = check_events(events, allow_empty=True)
    if ev.size == 0:
        return events[:0].copy()
    width = int(ev["x"].max()) + 1
    height = int(ev["y"].max()) + 1
    keep = np.empty(ev.size, np.int64)
    k = _tonic_kernel(ev, width, height, float(filter_time), keep)
    return events[keep[:k]]


def to_dv_store(events):
    """A ``dv.EventStore`` holding ``events`` (tonic or dv field names)."""
    import dv_processing as dv

    ev = check_events(events, allow_empty=True)
    store = dv.EventStore()
    p = ev["p"] if "p" in ev.dtype.names else np.zeros(ev.size, bool)
    for t, x, y, q in zip(ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist(), (p > 0).tolist()):
        store.push_back(t, x, y, q)
    return store


def dv_filter(name: str, store, width: int, height: int, dt_us: float):
    """Run ``dv.noise.<name>`` (``KNoiseFilter`` or ``BackgroundActivityNoiseFilter``) over ``store``; returns
    the output ``dv.EventStore``."""
    import dv_processing as dv

    delta = datetime.timedelta(microseconds=dt_us)
    if name == "KNoiseFilter":
        f = dv.noise.KNoiseFilter((width, height), timeDelta=delta)
    elif name == "BackgroundActivityNoiseFilter":
        f = dv.noise.BackgroundActivityNoiseFilter((width, height), backgroundActivityDuration=delta)
    else:
        raise ValueError(f"name must be 'KNoiseFilter' or 'BackgroundActivityNoiseFilter', got {name!r}")
    f.accept(store)
    return f.generateEvents()
