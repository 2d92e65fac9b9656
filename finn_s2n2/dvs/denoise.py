"""Background-activity (BA) filters for DVS event streams — seed 002, chapter 3.

All filters take a NumPy structured event array with fields ``x``, ``y``, ``t`` (tonic's layout:
``[("x", int16), ("y", int16), ("t", int64), ("p", bool)]``; any integer ``x``/``y``, integer or float
``t``; ``p`` and other fields are carried along untouched) and return the events that pass, in input
order (a view-free copy).  ``x`` is the column in ``[0, width)``, ``y`` the row in ``[0, height)``.

Support (Eq 3.2): an event ``e = (p, x, y, t)`` has support when a *stored* event at a pixel ``(i, j)`` with
``|i - x| <= 1`` and ``|j - y| <= 1`` satisfies ``t - t_ij < dt`` (strict).  Choices the seed leaves open,
made here and used by every filter and by the HLS C++:

* **self-support** — the 3×3 neighbourhood *includes the pixel itself* (Eq 3.2 has ``|i-x|<=1 ∧ |j-y|<=1``
  and the text says "neighboring pixels and the pixel itself"; the error counts of Eq 3.9/3.11 — S²−4,
  S²−9 non-neighbours — also count the pixel as its own neighbour).  tonic's ``denoise`` differs: it uses the
  4-neighbourhood without the pixel itself.
* **polarity** — support ignores polarity (Eq 3.2 has none); the O(N) filter stores it only to re-emit a
  recovered event with its own polarity.
* **ties** — events are processed in array order; an earlier event with the same timestamp supports a later
  one (``t - t_ij = 0 < dt``).
* **timestamps must be non-decreasing** (a sensor emits them in order): an unsorted stream raises, or is
  stably sorted first with ``sort=True`` (the returned events are then in sorted order).

Filters:

* :func:`baseline_filter` — one timestamp per pixel, 8-neighbourhood + self (§3.4.1).
* :func:`liu_filter` — one timestamp per S×S group; an event is checked against its own group only
  (Liu et al., §3.1/§3.4.2).
* :func:`subsampling_filter` — one timestamp per S×S group; an event is checked against every group that
  contains a pixel of its 3×3 neighbourhood (1 group for inner pixels, 2 for side, 4 for corner pixels),
  the reading of §3.4.3 that gives Eq 3.11's counts 4S²−9, 2S²−9, S²−9.
* :func:`order_n_filter` — the seed's O(N) filter (§3.2): two 32-bit cells per row and per column (layout in
  :mod:`finn_s2n2.dvs.memory`).  For an event ``(p, x, y, t)`` it reads the cells of rows ``y-1..y+1``
  and columns ``x-1..x+1`` (clipped to the sensor).  A row cell of row ``r`` holds the most recent event of
  that row, at ``(pos, r)``; it supports the event when ``|pos - x| <= 1`` and ``t - t_r < dt`` (column cells
  likewise with ``|pos - y| <= 1``) — a stored event is always a true neighbour, so the filter has no false
  positives.  Then row ``y`` and column ``x`` are overwritten with the event and the bookkeeping bit
  ``bk = passed``.

  **Past-event recovery** (§3.2, §3.4.4): when an event passes, every supporting stored event whose
  ``bk`` is 0 (it had no support when it arrived) is emitted now, once, and its ``bk`` is set — in the row
  cell and, when it still holds the same event, in the column cell (a row cell of row ``r`` holding
  ``(pos, r)`` and the column cell ``pos`` holding row ``r`` hold the same event: each is the most recent of
  its line at that pixel).  **Output order**: by default the passed events are returned in input (time)
  order, recovered events at their original place; ``order="emission"`` returns them in the order a
  hardware filter emits them: for each arriving event, first the recovered events in scan order (rows
  ``y-1, y, y+1``, then columns ``x-1, x, x+1``), then the event itself.  That is the order of the HLS
  C++ (``hls/dvs_order_n.h``), which the tests compare bit for bit.

The kernels are compiled with numba (``cache=True``); they are the python execution of the filters, the
specification that the HLS C++ matches.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from numba import njit

from finn_s2n2.dvs.memory import BK_BIT, INFO_EMPTY, MAX_SIDE, POS_MASK

#: tonic's event layout (``tonic.io.events_struct``)
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])

#: error codes returned by the kernels
_OK, _ERR_UNSORTED, _ERR_X, _ERR_Y = 0, 1, 2, 3
#: values of the O(N) filter's status array
DROPPED, PASSED, RECOVERED = 0, 1, 2

_FILTERS = ("baseline", "liu", "subsampling", "order_n")
_BK_BIT = BK_BIT
_POS_MASK = POS_MASK
_INFO_EMPTY = INFO_EMPTY
#: the kernels keep the event index in the upper 32 bits of an int64 info cell
MAX_EVENTS = 2**31 - 1


# ------------------------------------------------------------------------------------------------ validation
def _check_int(name: str, v, lo: int = 1, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {rng}, got {v}")
    return v


def _check_dt(dt) -> float:
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real):
        raise TypeError(f"dt (the temporal window) must be a real number, got {type(dt).__name__} {dt!r}")
    dt = float(dt)
    if not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt (the temporal window) must be finite and > 0, got {dt}")
    return dt


def check_events(events, *, allow_empty: bool = False, name: str = "events") -> np.ndarray:
    """Check that ``events`` is a 1-D structured array with integer ``x``, ``y`` and integer/float ``t``."""
    if not isinstance(events, np.ndarray):
        raise TypeError(f"{name} must be a NumPy structured array, got {type(events).__name__}")
    if events.dtype.names is None:
        raise TypeError(
            f"{name} must be a structured array with fields x, y, t (tonic layout), got dtype {events.dtype}"
        )
    missing = [f for f in ("x", "y", "t") if f not in events.dtype.names]
    if missing:
        raise TypeError(
            f"{name} lacks field(s) {missing}; expected fields x, y, t (and p), got {events.dtype.names}"
        )
    if events.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {events.shape}")
    for f in ("x", "y"):
        if events.dtype[f].kind not in "iu":
            raise TypeError(f"{name}['{f}'] must have an integer dtype, got {events.dtype[f]}")
    if events.dtype["t"].kind not in "iuf":
        raise TypeError(f"{name}['t'] must have an integer or float dtype, got {events.dtype['t']}")
    if events.dtype["t"].kind == "u" and events.dtype["t"].itemsize == 8:
        raise TypeError(f"{name}['t'] is uint64; use int64 (timestamps are compared by difference)")
    if events.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (pass allow_empty=True to get an empty result instead)")
    if events.dtype["t"].kind == "f" and events.size and not np.isfinite(events["t"]).all():
        raise ValueError(f"{name}['t'] contains NaN or infinite timestamps")
    return events


def _raise_kernel_error(err: int, i: int, events: np.ndarray, width: int, height: int) -> None:
    if err == _ERR_UNSORTED:
        raise ValueError(
            f"events['t'] must be non-decreasing: t[{i}]={events['t'][i]} < t[{i - 1}]={events['t'][i - 1]} "
            "(pass sort=True to sort the stream first)"
        )
    if err == _ERR_X:
        raise ValueError(
            f"events['x'][{i}]={events['x'][i]} is outside the sensor: expected 0 <= x < width={width}"
        )
    if err == _ERR_Y:
        raise ValueError(
            f"events['y'][{i}]={events['y'][i]} is outside the sensor: expected 0 <= y < height={height}"
        )


def _prepare(events, width, height, dt, allow_empty):
    events = check_events(events, allow_empty=allow_empty)
    if events.shape[0] > MAX_EVENTS:
        raise ValueError(
            f"events has {events.shape[0]} events; at most {MAX_EVENTS} per call (split the stream)"
        )
    width = _check_int("width", width, 1, MAX_SIDE)
    height = _check_int("height", height, 1, MAX_SIDE)
    dt = _check_dt(dt)
    if events.dtype["t"].kind in "iu":
        # integer timestamps: t - t_ij < dt  <=>  t - t_ij < ceil(dt); integer compares are cheaper
        dt = np.int64(min(math.ceil(dt), 2**62))
    return events, width, height, dt


# ----------------------------------------------------------------------------------------------- kernels
@njit(cache=True, inline="always")
def _hit(info, c, t_cell, t, dt):
    """Eq 3.2 for one stored event: ``|pos - c| <= 1`` and ``t - t_cell < dt`` (empty cells never hit)."""
    return (np.uint64((info & _POS_MASK) - c + 1) <= np.uint64(2)) & (t - t_cell < dt)


@njit(cache=True, error_model="numpy")
def _order_n_kernel(events, width, height, dt, status, emit):
    """O(N) filter (§3.2).  Writes ``status`` (DROPPED/PASSED/RECOVERED) and ``emit`` (indices in emission
    order); returns ``(n_emit, err, err_index)``.

    Cells (padded: index = coordinate + 1; indices 0 and size + 1 stay empty, so rows ``y-1..y+1`` and
    columns ``x-1..x+1`` need no clipping): a timestamp array and an int64 *info* array holding the
    hardware info cell ``bk << 31 | p << 30 | pos`` of :mod:`finn_s2n2.dvs.memory` (polarity left 0:
    the python execution re-emits the input event itself) with the event's index in the upper 32 bits.
    """
    n = events.shape[0]
    if n == 0:
        return 0, 0, -1
    BK = np.int64(1) << _BK_BIT
    ONE = np.uint64(1)
    RI = np.full(height + 2, _INFO_EMPTY, np.int64)
    CI = np.full(width + 2, _INFO_EMPTY, np.int64)
    RT = np.zeros(height + 2, events.t.dtype)
    CT = np.zeros(width + 2, events.t.dtype)
    uw = np.uint64(width)
    uh = np.uint64(height)
    n_emit = 0
    prev = events[0].t
    for i in range(n):
        e = events[i]
        xi = np.int64(e.x)
        yi = np.int64(e.y)
        t = e.t
        if t < prev:
            return n_emit, 1, i
        if np.uint64(xi) >= uw:
            return n_emit, 2, i
        if np.uint64(yi) >= uh:
            return n_emit, 3, i
        prev = t
        ya = np.uint64(yi)  # padded index of row y-1 (unsigned indices: no wrap-around code)
        xa = np.uint64(xi)
        passed = False
        need = False  # a supporting stored event has bk = 0: past-event recovery
        for k in range(3):
            info = RI[ya + np.uint64(k)]
            h = _hit(info, xi, RT[ya + np.uint64(k)], t, dt)
            passed |= h
            need |= h & ((info & BK) == 0)
            info = CI[xa + np.uint64(k)]
            h = _hit(info, yi, CT[xa + np.uint64(k)], t, dt)
            passed |= h
            need |= h & ((info & BK) == 0)
        if need:  # recovery in scan order: rows y-1, y, y+1 then columns x-1, x, x+1
            for r in range(yi, yi + 3):
                info = RI[r]
                if (info & BK) == 0 and _hit(info, xi, RT[r], t, dt):
                    j = info >> 32
                    status[j] = 2
                    emit[n_emit] = j
                    n_emit += 1
                    RI[r] = info | BK
                    pc = (info & _POS_MASK) + 1  # the same event in its column cell?
                    if (CI[pc] & _POS_MASK) == r - 1:
                        CI[pc] |= BK
            for c in range(xi, xi + 3):
                info = CI[c]
                if (info & BK) == 0 and _hit(info, yi, CT[c], t, dt):
                    j = info >> 32
                    status[j] = 2
                    emit[n_emit] = j
                    n_emit += 1
                    CI[c] = info | BK
                    pr = (info & _POS_MASK) + 1
                    if (RI[pr] & _POS_MASK) == c - 1:
                        RI[pr] |= BK
        emit[n_emit] = i  # branch-free: kept only when passed
        n_emit += passed
        status[i] = passed
        tag = (np.int64(i) << 32) | (np.int64(passed) << _BK_BIT)
        yb = ya + ONE
        xb = xa + ONE
        RT[yb] = t
        RI[yb] = tag | xi
        CT[xb] = t
        CI[xb] = tag | yi
    return n_emit, 0, -1


@njit(cache=True)
def _compact(events, status, out):
    """Copy the events with ``status != 0`` to ``out`` (branch-free; ``out`` has one spare slot)."""
    k = 0
    for i in range(events.shape[0]):
        out[k] = events[i]
        k += status[i] != 0
    return k


@njit(cache=True, error_model="numpy")
def _baseline_kernel(events, width, height, dt, passed):
    """Baseline filter (§3.4.1): one timestamp per pixel, support from the 3×3 neighbourhood (itself
    included).  Padded (H+2)×(W+2) surface, so the neighbourhood needs no clipping.  Returns
    ``(err, err_index)``."""
    n = events.shape[0]
    if n == 0:
        return 0, -1
    pw = np.uint64(width + 2)
    T = np.zeros((height + 2) * (width + 2), events.t.dtype)
    valid = np.zeros((height + 2) * (width + 2), np.uint8)
    uw = np.uint64(width)
    uh = np.uint64(height)
    ONE = np.uint64(1)
    prev = events[0].t
    for i in range(n):
        e = events[i]
        x = np.int64(e.x)
        y = np.int64(e.y)
        t = e.t
        if t < prev:
            return 1, i
        if np.uint64(x) >= uw:
            return 2, i
        if np.uint64(y) >= uh:
            return 3, i
        prev = t
        ok = False
        base = np.uint64(y) * pw + np.uint64(x)  # padded index of pixel (x-1, y-1)
        for r in range(3):
            g = base + np.uint64(r) * pw
            ok |= (valid[g] != 0) & (t - T[g] < dt)
            ok |= (valid[g + ONE] != 0) & (t - T[g + ONE] < dt)
            ok |= (valid[g + ONE + ONE] != 0) & (t - T[g + ONE + ONE] < dt)
        passed[i] = ok
        g = base + pw + ONE
        T[g] = t
        valid[g] = 1
    return 0, -1


@njit(cache=True, error_model="numpy")
def _group_kernel(events, width, height, dt, s, neighbours, passed):
    """One timestamp per S×S group.  ``neighbours=False``: Liu's filter (own group only);
    ``neighbours=True``: every group holding a pixel of the 3×3 neighbourhood (sub-sampling filter;
    with ``s=1`` this is the baseline filter).  Returns ``(err, err_index)``."""
    gw = (width + s - 1) // s
    gh = (height + s - 1) // s
    T = np.zeros(gw * gh, events.t.dtype)
    valid = np.zeros(gw * gh, np.uint8)
    uw = np.uint64(width)
    uh = np.uint64(height)
    if events.shape[0] == 0:
        return 0, -1
    prev = events[0].t
    for i in range(events.shape[0]):
        e = events[i]
        x = np.int64(e.x)
        y = np.int64(e.y)
        t = e.t
        if t < prev:
            return 1, i
        if np.uint64(x) >= uw:
            return 2, i
        if np.uint64(y) >= uh:
            return 3, i
        prev = t
        ok = False
        if neighbours:
            gx0 = max(x - 1, 0) // s
            gx1 = min(x + 1, width - 1) // s
            gy0 = max(y - 1, 0) // s
            gy1 = min(y + 1, height - 1) // s
            for gy in range(gy0, gy1 + 1):
                for gx in range(gx0, gx1 + 1):
                    g = gy * gw + gx
                    ok |= (valid[g] != 0) & (t - T[g] < dt)
        else:
            g = (y // s) * gw + x // s
            ok = (valid[g] != 0) & (t - T[g] < dt)
        passed[i] = ok
        g = (y // s) * gw + x // s
        T[g] = t
        valid[g] = 1
    return 0, -1


@njit(cache=True)
def _gather(events, idx, n, out):
    for k in range(n):
        out[k] = events[idx[k]]


# ------------------------------------------------------------------------------------------ public filters
def _run_with_sort(events, sort, run):
    """Run ``run(events) -> (result, err, i)``; on an unsorted stream sort (if asked) and run again."""
    res, err, i = run(events)
    if err == _ERR_UNSORTED and sort:
        events = events[np.argsort(events["t"], kind="stable")]
        res, err, i = run(events)
    return events, res, err, i


def order_n_status(events, width: int, height: int, dt, *, sort: bool = False, allow_empty: bool = False):
    """Run the O(N) filter and return ``(events, status, emission)``.

    ``status[i]`` is :data:`DROPPED` (0), :data:`PASSED` (1, had support on arrival) or :data:`RECOVERED`
    (2, dropped on arrival, emitted later by past-event recovery); ``emission`` holds the indices of the
    emitted events in hardware emission order (see the module docstring).  ``events`` is the input, or its
    stably sorted copy when ``sort=True`` had to sort it.
    """
    events, width, height, dt = _prepare(events, width, height, dt, allow_empty)

    return _order_n_run(events, width, height, dt, sort)


def _order_n_run(events, width, height, dt, sort):
    def run(ev):
        status = np.zeros(ev.shape[0], np.uint8)
        emit = np.empty(ev.shape[0], np.int64)
        n_emit, err, i = _order_n_kernel(ev, width, height, dt, status, emit)
        return (status, emit[:n_emit]), err, i

    events, (status, emission), err, i = _run_with_sort(events, sort, run)
    _raise_kernel_error(err, i, events, width, height)
    return events, status, emission


def order_n_filter(
    events, width: int, height: int, dt, *, order: str = "time", sort: bool = False, allow_empty: bool = False
) -> np.ndarray:
    """The seed's O(N) BA filter with past-event recovery (§3.2); returns the passed events.

    ``order="time"`` (default): input order (recovered events at their original place);
    ``order="emission"``: hardware emission order (recovered events when they are recovered, before the
    event that recovers them).  ``dt`` is the temporal window in the unit of ``t``.
    """
    if order not in ("time", "emission"):
        raise ValueError(f"order must be 'time' or 'emission', got {order!r}")
    events, width, height, dt = _prepare(events, width, height, dt, allow_empty)
    events, status, emission = _order_n_run(events, width, height, dt, sort)
    if order == "time":
        out = np.empty(emission.shape[0] + 1, events.dtype)
        k = _compact(events, status, out)
        return out[:k]
    out = np.empty(emission.shape[0], events.dtype)
    _gather(events, emission, emission.shape[0], out)
    return out


def _group_mask(events, width, height, dt, s, neighbours, sort, allow_empty, baseline=False):
    events, width, height, dt = _prepare(events, width, height, dt, allow_empty)
    s = _check_int("s (sub-sampling factor)", s, 1)

    def run(ev):
        passed = np.zeros(ev.shape[0], np.uint8)
        if baseline:
            err, i = _baseline_kernel(ev, width, height, dt, passed)
        else:
            err, i = _group_kernel(ev, width, height, dt, s, neighbours, passed)
        return passed, err, i

    events, passed, err, i = _run_with_sort(events, sort, run)
    _raise_kernel_error(err, i, events, width, height)
    return events, passed.view(bool)


def baseline_mask(events, width, height, dt, *, sort=False, allow_empty=False):
    """``(events, passed)`` of the baseline filter (one timestamp per pixel, 3×3 incl. self, §3.4.1)."""
    return _group_mask(events, width, height, dt, 1, True, sort, allow_empty, baseline=True)


def liu_mask(events, width, height, dt, s=2, *, sort=False, allow_empty=False):
    """``(events, passed)`` of Liu's filter (one timestamp per S×S group, own group only, §3.4.2)."""
    return _group_mask(events, width, height, dt, s, False, sort, allow_empty)


def subsampling_mask(events, width, height, dt, s=2, *, sort=False, allow_empty=False):
    """``(events, passed)`` of the sub-sampling filter (groups overlapping the 3×3 neighbourhood, §3.4.3)."""
    return _group_mask(events, width, height, dt, s, True, sort, allow_empty)


def order_n_mask(events, width, height, dt, *, sort=False, allow_empty=False):
    """``(events, passed)`` of the O(N) filter, recovered events included."""
    events, status, _ = order_n_status(events, width, height, dt, sort=sort, allow_empty=allow_empty)
    return events, status != DROPPED


def baseline_filter(events, width: int, height: int, dt, *, sort=False, allow_empty=False) -> np.ndarray:
    """Baseline BA filter: one timestamp per pixel, an event passes with support in its 3×3 (§3.4.1)."""
    ev, m = baseline_mask(events, width, height, dt, sort=sort, allow_empty=allow_empty)
    return ev[m]


def liu_filter(
    events, width: int, height: int, dt, s: int = 2, *, sort=False, allow_empty=False
) -> np.ndarray:
    """Liu's BA filter with sub-sampling factor ``s`` (§3.1, §3.4.2)."""
    ev, m = liu_mask(events, width, height, dt, s, sort=sort, allow_empty=allow_empty)
    return ev[m]


def subsampling_filter(
    events, width: int, height: int, dt, s: int = 2, *, sort=False, allow_empty=False
) -> np.ndarray:
    """The "normal sub-sampling" BA filter with factor ``s`` (§3.4.3)."""
    ev, m = subsampling_mask(events, width, height, dt, s, sort=sort, allow_empty=allow_empty)
    return ev[m]


def filter_mask(name: str, events, width, height, dt, s: int = 2, **kw):
    """``(events, passed)`` for the filter called ``name`` (``baseline``, ``liu``, ``subsampling``, ``order_n``)."""
    if name == "baseline":
        return baseline_mask(events, width, height, dt, **kw)
    if name == "liu":
        return liu_mask(events, width, height, dt, s, **kw)
    if name == "subsampling":
        return subsampling_mask(events, width, height, dt, s, **kw)
    if name == "order_n":
        return order_n_mask(events, width, height, dt, **kw)
    raise ValueError(f"filter name must be one of {_FILTERS}, got {name!r}")


# ------------------------------------------------------------------------------------------ tonic transform
@dataclass(frozen=True)
class OrderNDenoise:
    """tonic-style transform (usable inside ``tonic.transforms.Compose``) running :func:`order_n_filter`.

    ``sensor_size`` is tonic's ``(width, height[, polarities])``; ``filter_time`` is the window ``dt`` in the
    unit of the events' ``t``.  ``order``/``sort``/``allow_empty`` as in :func:`order_n_filter`.
    """

    sensor_size: tuple
    filter_time: float
    order: str = "time"
    sort: bool = False
    allow_empty: bool = False

    def __post_init__(self):
        if not isinstance(self.sensor_size, tuple | list) or len(self.sensor_size) not in (2, 3):
            raise ValueError(f"sensor_size must be (width, height[, polarities]), got {self.sensor_size!r}")
        _check_int("sensor_size[0] (width)", self.sensor_size[0], 1, MAX_SIDE)
        _check_int("sensor_size[1] (height)", self.sensor_size[1], 1, MAX_SIDE)
        _check_dt(self.filter_time)
        if self.order not in ("time", "emission"):
            raise ValueError(f"order must be 'time' or 'emission', got {self.order!r}")

    def __call__(self, events):
        return order_n_filter(
            events,
            int(self.sensor_size[0]),
            int(self.sensor_size[1]),
            self.filter_time,
            order=self.order,
            sort=self.sort,
            allow_empty=self.allow_empty,
        )
