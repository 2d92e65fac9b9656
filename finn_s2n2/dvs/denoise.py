"""Background-activity (BA) filters for DVS event streams — Khodamoradi 2021, chapter 3.

All filters take a NumPy structured event array with fields ``x``, ``y``, ``t`` (tonic's layout:
``[("x", int16), ("y", int16), ("t", int64), ("p", bool)]``) or dv-processing's names ``timestamp`` and
``polarity`` for ``t`` and ``p`` (any integer ``x``/``y``, integer or float ``t``, either byte order; other
fields are carried along untouched) and return the events that pass, in input order.  ``x`` is the column in
``[0, width)``, ``y`` the row in ``[0, height)``.  An empty array gives an empty result.

Support (Khodamoradi 2021, §3.2, Eq 3.2): an event ``e = (p, x, y, t)`` has support when a *stored* event at a
pixel ``(i, j)`` with ``|i - x| <= 1`` and ``|j - y| <= 1`` satisfies ``t - t_ij < dt`` (strict).  The
dissertation's reading, the default of every filter (:data:`DISSERTATION`):

* **self-support** — the 3×3 neighbourhood *includes the pixel itself* (Eq 3.2 and the counts S²−4, S²−9 of
  Eq 3.9/3.11).  ``exclude_self=True`` leaves the pixel out (jAER, dv-processing and E-MLB do): a hot pixel
  then needs a neighbour to pass.
* **polarity** — support ignores polarity; ``same_polarity=True`` requires the supporter's polarity to equal
  the event's (``p > 0`` is ON).
* **one supporter** — ``min_support=k`` requires ``k`` distinct supporting stored events.
* **ties** — events are processed in array order; an earlier event with the same timestamp supports a later
  one (``t - t_ij = 0 < dt``).
* **timestamps must be non-decreasing** (a sensor emits them in order): an unsorted stream raises, or is
  stably sorted first with ``sort=True`` (the returned events are then in sorted order).
* **exact ages** — integer ages ``t - t_ij`` are computed in unsigned 64-bit arithmetic (exact for every
  int64 pair); ``timestamp_bits=32`` instead compares them modulo 2^32 like the 32-bit hardware
  (:mod:`finn_s2n2.dvs.hls`): a cell older than 2^32 ticks then aliases to a young one.

Filters (pure functions, one call = the whole stream; :mod:`finn_s2n2.dvs.stream` has the stateful,
packet-by-packet versions, which run the same kernels):

* :func:`baseline_filter` — one timestamp per pixel, 8-neighbourhood + self (§3.4.1).
* :func:`liu_filter` — one timestamp per S×S group; an event is checked against its own group only
  (Liu et al., §3.1/§3.4.2).
* :func:`subsampling_filter` — one timestamp per S×S group; an event is checked against every group that
  contains a pixel of its 3×3 neighbourhood (1 group for inner pixels, 2 for side, 4 for corner pixels),
  the reading of §3.4.3 that gives Eq 3.11's counts 4S²−9, 2S²−9, S²−9.
* :func:`order_n_filter` — the O(N) filter (§3.2): two 32-bit cells per row and per column (layout in
  :mod:`finn_s2n2.dvs.memory`).  For an event ``(p, x, y, t)`` it reads the cells of rows ``y-1..y+1``
  and columns ``x-1..x+1`` (clipped to the sensor).  A row cell of row ``r`` holds the most recent event of
  that row, at ``(pos, r)``; it supports the event when ``|pos - x| <= 1`` and ``t - t_r < dt`` (column cells
  likewise with ``|pos - y| <= 1``) — a stored event is always a true neighbour, so the filter has no false
  positives.  Then row ``y`` and column ``x`` are overwritten with the event and the bookkeeping bit
  ``bk = passed``.  With ``min_support > 1`` a stored event held by both a row and a column cell counts once.

  **Past-event recovery** (§3.2, §3.4.4): when an event passes, every supporting stored event whose
  ``bk`` is 0 (it had no support when it arrived) is emitted now, once, and its ``bk`` is set — in the row
  cell and, when it still holds the same event, in the column cell (a row cell of row ``r`` holding
  ``(pos, r)`` and the column cell ``pos`` holding row ``r`` hold the same event: each is the most recent of
  its line at that pixel).  **Output order**: by default the passed events are returned in input (time)
  order, recovered events at their original place; ``order="emission"`` returns them in the order a
  hardware filter emits them: for each arriving event, first the recovered events in scan order (rows
  ``y-1, y, y+1``, then columns ``x-1, x, x+1``), then the event itself.  That is the order of the HLS
  C++ (``hls/dvs_order_n.h``), which the tests compare bit for bit.  A one-call time-order run finds the same
  recovered events by *marking* supporters instead of keeping ``bk`` (no unpredictable branch; see
  :func:`_order_n_kernel`).

The kernels are compiled with numba (``cache=True``); they are the python execution of the filters, the
specification that the HLS C++ matches.  Every kernel takes its memory (the filter *state*) as arguments, so
that a stream cut into packets gives exactly the result of one call.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from hwreshape.extras import needs_dvs  # noqa: F401  # isort: skip
import numpy as np
from numba import njit, types
from numba.extending import overload

from finn_s2n2.dvs.memory import BK_BIT, INFO_EMPTY, MAX_SIDE, POL_BIT, POS_MASK

#: tonic's event layout (``tonic.io.events_struct``)
EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", bool)])
#: dv-processing's names for ``t`` and ``p`` (``dv.EventStore.numpy()``)
DV_FIELD_NAMES = {"timestamp": "t", "polarity": "p"}

#: error codes returned by the kernels
_OK, _ERR_UNSORTED, _ERR_X, _ERR_Y = 0, 1, 2, 3
#: values of the O(N) filter's status array
DROPPED, PASSED, RECOVERED = 0, 1, 2

#: the dissertation's support rule (Eq 3.2), the default of every filter
DISSERTATION = {"exclude_self": False, "same_polarity": False, "min_support": 1}

_FILTERS = ("baseline", "liu", "subsampling", "order_n")
_BK_BIT = BK_BIT
_POL_BIT = POL_BIT
_POS_MASK = POS_MASK
_INFO_EMPTY = INFO_EMPTY
#: empty cell of the O(N) kernel's key array: the hardware's empty info cell with the polarity bit set
KEY_EMPTY = INFO_EMPTY | (1 << POL_BIT)
#: the O(N) kernel keeps the event index in the upper 32 bits of an int64 info cell
MAX_EVENTS = 2**31 - 1
#: age masks: exact 64-bit ages, or 32-bit hardware timestamps
_MASK64 = np.uint64(2**64 - 1)
_TIMESTAMP_BITS = (32, 64)


# ------------------------------------------------------------------------------------------------ validation
def _check_int(name: str, v, lo: int = 1, hi: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__} {v!r}")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {rng}, got {v}")
    return v


def _check_dt(dt, name: str = "dt (the temporal window)") -> float:
    if isinstance(dt, bool) or not isinstance(dt, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(dt).__name__} {dt!r}")
    dt = float(dt)
    if not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {dt}")
    return dt


def _canonical_dtype(dtype: np.dtype, name: str) -> np.dtype:
    """``dtype`` with dv-processing's field names mapped to ``t``/``p`` (same offsets: a view)."""
    names = list(dtype.names)
    for dv_name, ours in DV_FIELD_NAMES.items():
        if dv_name in names:
            if ours in names:
                raise TypeError(f"{name} has both fields {ours!r} and {dv_name!r}; expected one of them")
            names[names.index(dv_name)] = ours
    if names == list(dtype.names):
        return dtype
    return np.dtype(
        {
            "names": names,
            "formats": [dtype.fields[n][0] for n in dtype.names],
            "offsets": [dtype.fields[n][1] for n in dtype.names],
            "itemsize": dtype.itemsize,
        }
    )


_CHECKED: dict = {}  # dtype -> canonical dtype of a dtype already validated (packets repeat their dtype)


def check_events(events, *, allow_empty: bool = True, name: str = "events") -> np.ndarray:
    """Check ``events`` and return it as a 1-D structured array with fields ``x``, ``y``, ``t`` (``p``) in
    native byte order: dv-processing's ``timestamp``/``polarity`` are renamed (a view), big-endian fields are
    converted (a copy).  Integer ``x``/``y``, integer or float ``t``."""
    if isinstance(events, np.ndarray) and events.ndim == 1 and events.dtype in _CHECKED and events.size:
        dtype, native = _CHECKED[events.dtype]
        ev = events if dtype is events.dtype else events.view(dtype)
        if not native:
            ev = ev.astype(dtype.newbyteorder("="))
        if ev.dtype["t"].kind == "f" and not np.isfinite(ev["t"]).all():
            raise ValueError(f"{name}['t'] contains NaN or infinite timestamps")
        return ev
    if not isinstance(events, np.ndarray):
        raise TypeError(f"{name} must be a NumPy structured array, got {type(events).__name__}")
    if events.dtype.names is None:
        raise TypeError(
            f"{name} must be a structured array with fields x, y, t (tonic) or x, y, timestamp "
            f"(dv-processing), got dtype {events.dtype}"
        )
    dtype = _canonical_dtype(events.dtype, name)
    missing = [f for f in ("x", "y", "t") if f not in dtype.names]
    if missing:
        raise TypeError(
            f"{name} lacks field(s) {missing}; expected fields x, y, t (and p) or x, y, timestamp (and "
            f"polarity), got {events.dtype.names}"
        )
    if events.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {events.shape}")
    for f in ("x", "y"):
        if dtype[f].kind not in "iu":
            raise TypeError(f"{name}['{f}'] must have an integer dtype, got {dtype[f]}")
    if dtype["t"].kind not in "iuf":
        raise TypeError(f"{name}['t'] must have an integer or float dtype, got {dtype['t']}")
    if dtype["t"].kind == "u" and dtype["t"].itemsize == 8:
        raise TypeError(f"{name}['t'] is uint64; use int64 (timestamps are compared by difference)")
    if "p" in dtype.names and dtype["p"].kind not in "biu":
        raise TypeError(f"{name}['p'] (polarity) must be bool or integer, got {dtype['p']}")
    if events.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (pass allow_empty=True to get an empty result instead)")
    native = all(dtype.fields[f][0].isnative for f in dtype.names)
    if len(_CHECKED) < 64:
        _CHECKED[events.dtype] = (dtype, native)
    if dtype is not events.dtype:
        events = events.view(dtype)
    if not native:
        events = events.astype(dtype.newbyteorder("="))
    if events.dtype["t"].kind == "f" and events.size and not np.isfinite(events["t"]).all():
        raise ValueError(f"{name}['t'] contains NaN or infinite timestamps")
    return events


def _restore_names(out: np.ndarray, like: np.dtype) -> np.ndarray:
    """View ``out`` (canonical names) with the field names of the caller's dtype ``like``."""
    if like.names == out.dtype.names:
        return out
    return out.view(
        np.dtype(
            {
                "names": list(like.names),
                "formats": [out.dtype.fields[n][0] for n in out.dtype.names],
                "offsets": [out.dtype.fields[n][1] for n in out.dtype.names],
                "itemsize": out.dtype.itemsize,
            }
        )
    )


def _raise_kernel_error(err: int, i: int, events: np.ndarray, width: int, height: int, prev=None) -> None:
    if err == _ERR_UNSORTED:
        before = f"t[{i - 1}]={events['t'][i - 1]}" if i > 0 else f"the previous packet's last t={prev}"
        raise ValueError(
            f"events['t'] must be non-decreasing: t[{i}]={events['t'][i]} < {before} "
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


def kernel_dt(dt, t_kind: str):
    """The window as the kernels compare it: ``uint64(ceil(dt))`` for integer timestamps (``age < dt`` ⇔
    ``age < ceil(dt)``), ``float`` for float timestamps."""
    dt = _check_dt(dt)
    if t_kind in "iu":
        return np.uint64(min(math.ceil(dt), 2**64 - 1))
    return dt


def age_mask(timestamp_bits, t_kind: str):
    """Mask applied to integer ages: ``None`` (exact ages) or ``2**32 - 1`` (``timestamp_bits=32``)."""
    if timestamp_bits not in _TIMESTAMP_BITS:
        raise ValueError(f"timestamp_bits must be 32 (hardware) or 64 (exact ages), got {timestamp_bits!r}")
    if timestamp_bits == 32 and t_kind == "f":
        raise TypeError("timestamp_bits=32 models integer hardware timestamps; events['t'] is a float")
    return np.uint64(2**32 - 1) if timestamp_bits == 32 else None


def check_options(exclude_self, same_polarity, min_support, *, max_support: int) -> tuple[bool, bool, int]:
    """Validate the support options (see the module docstring)."""
    for n, v in (("exclude_self", exclude_self), ("same_polarity", same_polarity)):
        if not isinstance(v, bool | np.bool_):
            raise TypeError(f"{n} must be a bool, got {type(v).__name__} {v!r}")
    k = _check_int("min_support (supporters required)", min_support, 1, max_support)
    return bool(exclude_self), bool(same_polarity), k


def polarity_flag(events: np.ndarray, same_polarity: bool):
    """``True`` when ``same_polarity`` (the kernels then read ``p > 0`` from each record), else ``None`` (the
    polarity code is pruned); raises when the events have no polarity field."""
    if not same_polarity:
        return None
    if "p" not in events.dtype.names:
        raise TypeError("same_polarity=True needs a polarity field 'p' (or 'polarity') in events")
    return True


# ----------------------------------------------------------------------------------------------- kernels
def _age(t, tc, mask):  # pragma: no cover - replaced by the overload inside numba
    raise NotImplementedError


@overload(_age, inline="always")
def _age_impl(t, tc, mask):
    """Age ``t - tc`` of a stored timestamp: unsigned 64-bit for integers (exact for any int64 pair with
    ``tc <= t``; ``& mask`` models 32-bit hardware, ``mask=None``: exact), plain difference for floats."""
    if isinstance(t, types.Integer):
        if mask is None or isinstance(mask, types.NoneType):
            return lambda t, tc, mask: np.uint64(t) - np.uint64(tc)
        return lambda t, tc, mask: (np.uint64(t) - np.uint64(tc)) & mask
    return lambda t, tc, mask: t - tc


@njit(cache=True, inline="always")
def _hit(key, cpe, pm, t_cell, t, dt, mask):
    """Offset ``d = (key & pm) - cpe`` (unsigned) of one stored event and its support (Eq 3.2): the event
    supports when ``d <= 2`` (its position is within one pixel of the arriving event's, and with ``pm``
    including the polarity bit its polarity is equal) and ``t - t_cell < dt``; ``d == 1`` is the pixel
    itself.  ``cpe = (p << 30) + c - 1`` (mod 2^64) of the arriving event, ``c`` its coordinate along the
    cell's axis."""
    d = np.uint64(key & pm) - cpe
    return d, (d <= np.uint64(2)) & (_age(t, t_cell, mask) < dt)


@njit(cache=True)
def _check_event(e, t, prev, uw, uh):
    if t < prev:
        return 1
    if np.uint64(np.int64(e.x)) >= uw:
        return 2
    if np.uint64(np.int64(e.y)) >= uh:
        return 3
    return 0


@njit(cache=True, inline="always")
def _recover(K, kc, status, emit, n_emit, other, line):
    """Past-event recovery of the stored event in cell ``kc`` (its ``bk`` is 0): mark it RECOVERED, emit its
    index, set ``bk`` in this cell and, when the other axis' cell of its pixel (``other + pos``) still holds
    it (its position is this cell's ``line``), there too.  Returns the new ``n_emit``."""
    BK = np.int64(1) << _BK_BIT
    info = K[kc]
    j = np.uint64(info >> 32)
    status[j] = 2
    if emit is not None:
        emit[np.uint64(n_emit)] = j
    K[kc] = info | BK
    oc = other + np.uint64(info & _POS_MASK)
    if (K[oc] & _POS_MASK) == line:
        K[oc] |= BK
    return n_emit + 1


@njit(cache=True, error_model="numpy", boundscheck=False)
def _order_n_kernel(
    events, start, width, height, dt, mask, prev, excl, k_min, pol, norec, K, T, status, emit, mark, gate
):
    """O(N) filter (§3.2) on one packet ``events``, numbered from ``start`` on (indices ``0 .. start-1`` are
    earlier events still referenced by the cells; the kernel never reads them).  Writes ``status``
    (DROPPED/PASSED/RECOVERED, indexed by event number) and ``emit`` (event numbers in emission order); returns
    ``(n_emit, err, err_number)``.  ``prev``: the last timestamp seen before ``events[0]``.

    Options are passed as ``None`` when off (``excl``: exclude the pixel itself; ``k_min``: supporters
    required, ``None`` = 1; ``pol``: ``True`` for equal polarity, ``p > 0`` read from each record; ``norec``:
    ``True`` turns past-event recovery off; ``emit``: ``None`` when only ``status`` is wanted; ``mark``: see
    below), so that numba compiles a variant per combination with the unused code pruned.

    Recovery, two ways with the same statuses (tested against each other):

    * *bookkeeping* (``mark`` None; streams and ``order="emission"``): the dissertation's ``bk`` bits — when an
      event passes, each supporting cell with ``bk = 0`` is recovered (and ``bk`` set, in its twin cell too), in
      scan order.  The branch on "some supporter has ``bk = 0``" is unpredictable (3–4 ns/event more).
    * *marking* (``mark``: a zeroed uint8 array, one per event; one fresh call in time order): an event is
      RECOVERED iff it was dropped on arrival and later supported a passing event while still held by a cell —
      exactly when the bookkeeping recovers it, since ``bk`` only keeps it from being emitted twice.  So every
      supporting cell ORs its support bit into ``mark`` at its event's index (no branch, no select), and a
      last pass turns marked DROPPED events into RECOVERED.  ``bk`` is then not maintained (nor for ``norec``:
      the tag holds ``bk = 1``, which keeps the new cells off the support test's critical path).  With
      ``gate`` (streams in time order) ``bk`` holds "passed on arrival", only ``bk = 0`` cells mark, and the
      end-of-packet :func:`_order_n_rebase` sets ``bk`` of cells whose event is final (recovered or expired)
      — a cell's event index may then be stale, but it only ever ORs 0 into ``mark``.

    State (:func:`order_n_state`): one *key* array ``K`` (int64) and one timestamp array ``T``, the
    ``height + 2`` row cells first, then the ``width + 2`` column cells, both padded (cell = coordinate + 1;
    the first and last cell of each axis stay empty, so rows ``y-1..y+1`` and columns ``x-1..x+1`` need no
    clipping).  A key is the hardware info cell ``bk << 31 | p << 30 | pos`` of :mod:`finn_s2n2.dvs.memory`
    (``p`` stored when ``pol`` is given) with the event's index in the upper 32 bits; an empty cell is
    :data:`KEY_EMPTY` (the hardware's empty cell with the polarity bit set: with ``pol`` it then never
    matches, see :func:`_hit`).  The six cells are tested without branches; unsigned indices and
    ``boundscheck=False`` keep numba's wrap-around and bounds code out of the loop.
    """
    n = start + events.shape[0]
    BK = np.int64(1) << _BK_BIT
    ONE = np.uint64(1)
    TWO = np.uint64(2)
    uw = np.uint64(width)
    uh = np.uint64(height)
    C0 = np.uint64(height + 2)  # first column cell
    C1 = C0 + ONE  # column cell of x = 0
    if pol is None:
        pm = np.int64(_POS_MASK)
    else:
        pm = np.int64(_POS_MASK | (1 << _POL_BIT))
    n_emit = 0
    ustart = np.uint64(start)
    for i in range(start, n):
        ui = np.uint64(i)  # unsigned indices: no wrap-around code for negative indices
        e = events[ui - ustart]
        t = e.t
        ux = np.uint64(np.int64(e.x))
        uy = np.uint64(np.int64(e.y))
        if (t < prev) | (ux >= uw) | (uy >= uh):
            return n_emit, _check_event(e, t, prev, uw, uh), i
        prev = t
        if pol is None:
            pinfo = np.int64(0)
        else:
            pinfo = np.int64(e.p > 0) << _POL_BIT
        cx = np.uint64(pinfo) + ux - ONE
        cy = np.uint64(pinfo) + uy - ONE
        r = uy  # row cells y-1, y, y+1: r, r+1, r+2
        c = C0 + ux  # column cells x-1, x, x+1: c, c+1, c+2
        i0 = K[r]
        i1 = K[r + ONE]
        i2 = K[r + TWO]
        j0 = K[c]
        j1 = K[c + ONE]
        j2 = K[c + TWO]
        _, h0 = _hit(i0, cx, pm, T[r], t, dt, mask)
        d1, h1 = _hit(i1, cx, pm, T[r + ONE], t, dt, mask)
        _, h2 = _hit(i2, cx, pm, T[r + TWO], t, dt, mask)
        _, g0 = _hit(j0, cy, pm, T[c], t, dt, mask)
        e1, g1 = _hit(j1, cy, pm, T[c + ONE], t, dt, mask)
        _, g2 = _hit(j2, cy, pm, T[c + TWO], t, dt, mask)
        if excl is not None:  # the pixel itself: own row cell at x, own column cell at y
            h1 &= d1 != ONE
            g1 &= e1 != ONE
        passed = h0 | h1 | h2 | g0 | g1 | g2
        if (
            k_min is not None
        ):  # count distinct supporters: a column cell's event also in a row cell counts once
            nsup = np.int64(h0) + h1 + h2
            for k, hc, cinfo in ((0, g0, j0), (1, g1, j1), (2, g2, j2)):
                if hc:
                    rr = np.uint64(cinfo & _POS_MASK) + ONE  # the row cell of the stored event's row
                    dup = (K[rr] & _POS_MASK) == np.int64(ux) + k - 1  # ... holds it (rr is in r..r+2)
                    nsup += not dup
            passed = nsup >= k_min
        if mark is not None:  # recovery by marking: every stored event that supports a passing event
            for h, key in ((h0, i0), (h1, i1), (h2, i2), (g0, j0), (g1, j1), (g2, j2)):
                if k_min is not None:
                    h &= passed
                if gate is not None:  # streams: only events not yet final (bk = 0) are marked
                    h &= (key & BK) == 0
                mark[np.uint64(key >> 32)] |= np.uint8(h)  # no branch, no select
        elif norec is None:
            # a supporting stored event with bk = 0: past-event recovery
            need = (
                (h0 & ((i0 & BK) == 0))
                | (h1 & ((i1 & BK) == 0))
                | (h2 & ((i2 & BK) == 0))
                | (g0 & ((j0 & BK) == 0))
                | (g1 & ((j1 & BK) == 0))
                | (g2 & ((j2 & BK) == 0))
            )
            if k_min is not None:
                need &= passed  # (with one supporter, need implies passed)
            if need:  # in scan order: rows y-1, y, y+1 then columns x-1, x, x+1 (re-read: bk may be set now)
                for k, h, info in ((0, h0, i0), (1, h1, i1), (2, h2, i2)):
                    if h & ((info & BK) == 0):
                        n_emit = _recover(K, r + np.uint64(k), status, emit, n_emit, C1, np.int64(uy) + k - 1)
                for k, h in ((0, g0), (1, g1), (2, g2)):
                    if h & ((K[c + np.uint64(k)] & BK) == 0):
                        n_emit = _recover(
                            K, c + np.uint64(k), status, emit, n_emit, ONE, np.int64(ux) + k - 1
                        )
        if emit is not None:
            emit[np.uint64(n_emit)] = i  # branch-free: kept only when passed
            n_emit += passed
        status[ui] = passed
        if norec is None and (mark is None or gate is not None):
            tag = (np.int64(i) << 32) | (np.int64(passed) << _BK_BIT) | pinfo
        else:  # bk unused: the new cells do not wait for the support test
            tag = (np.int64(i) << 32) | BK | pinfo
        K[r + ONE] = tag | np.int64(ux)
        T[r + ONE] = t
        K[c + ONE] = tag | np.int64(uy)
        T[c + ONE] = t
    if mark is not None:  # dropped on arrival and marked: RECOVERED (held events too)
        for i in range(np.uint64(0), np.uint64(n)):
            st = status[i]
            status[i] = st | ((mark[i] & (st ^ np.uint8(1))) << np.uint8(1))
    return n_emit, 0, -1


def order_n_state(width: int, height: int, t_kind: str):
    """A fresh (empty) state of the O(N) kernel: keys ``K`` and timestamps ``T``, rows then columns, padded."""
    n = height + 2 + width + 2
    return np.full(n, KEY_EMPTY, np.int64), np.zeros(n, np.float64 if t_kind == "f" else np.int64)


@njit(cache=True)
def _order_n_rebase(K, T, t_last, dt, mask, expire, n, status):
    """End of a packet: set ``bk`` of cells whose event is final — (``status`` given: recovery by marking)
    its status is not DROPPED, or (``expire``) it can no longer be supported (age ≥ dt at ``t_last``: exact
    ages only) —, find the oldest event index ``m`` still referenced by a ``bk = 0`` cell (``n`` if none) and
    shift the indices of those cells by ``-m``.  Events before ``m`` are final."""
    BK = np.int64(1) << _BK_BIT
    LOW = (np.int64(1) << 32) - 1
    m = n
    for c in range(K.shape[0]):
        info = K[c]
        if (info & BK) == 0:
            final = False
            if status is not None:
                final = status[np.uint64(info >> 32)] != 0
            if final or (expire and not (_age(t_last, T[c], mask) < dt)):
                K[c] = info | BK
            else:
                m = min(m, info >> 32)
    shift = np.int64(m) << 32
    for c in range(K.shape[0]):
        info = K[c]
        K[c] = (info - shift) if (info & BK) == 0 else (info & LOW)
    return m


@njit(cache=True)
def _order_n_packet(
    held, events, held_status, width, height, dt, mask, prev, excl, k_min, pol, norec, K, T, expire,
    status, emit, mark, out, new_held,
):  # fmt: skip
    """One packet of the stateful O(N) filter in one call (:class:`~finn_s2n2.dvs.stream.OrderNFilter`):
    the ``held`` events (numbers ``0 .. start-1``, statuses ``held_status``) are followed by ``events``; run
    the kernel (recovery by marking when ``mark`` is given, else bookkeeping; emission order when ``emit`` is
    given), finalise the cells (:func:`_order_n_rebase`), write the output to ``out`` (the emitted events, or
    in time order the final events before the oldest pending one ``m``) and the events from ``m`` on to
    ``new_held``.  Returns ``(err, err_number, n_out, m)``."""
    start = held.shape[0]
    n = start + events.shape[0]
    for j in range(start):
        status[j] = held_status[j]
    gate = True if mark is not None else None
    n_emit, err, i = _order_n_kernel(
        events, start, width, height, dt, mask, prev, excl, k_min, pol, norec, K, T, status, emit, mark, gate
    )
    if err != 0:
        return err, i, 0, 0
    if mark is not None:
        m = _order_n_rebase(K, T, events[events.shape[0] - 1].t, dt, mask, expire, n, status)
    else:
        m = _order_n_rebase(K, T, events[events.shape[0] - 1].t, dt, mask, expire, n, None)
    if emit is not None:
        for k in range(n_emit):
            j = emit[k]
            if j < start:
                out[k] = held[j]
            else:
                out[k] = events[j - start]
        n_out = n_emit
    else:
        n_out = 0
        for j in range(m):
            if j < start:
                out[n_out] = held[j]
            else:
                out[n_out] = events[j - start]
            n_out += status[j] != 0
    for j in range(m, n):
        if j < start:
            new_held[j - m] = held[j]
        else:
            new_held[j - m] = events[j - start]
    return 0, -1, n_out, m


@njit(cache=True)
def _compact(events, status, out):
    """Copy the events with ``status != 0`` to ``out`` (branch-free; ``out`` has one spare slot)."""
    k = 0
    for i in range(events.shape[0]):
        out[k] = events[i]
        k += status[i] != 0
    return k


@njit(cache=True, error_model="numpy")
def _baseline_kernel(events, width, height, dt, mask, prev, excl, k_min, pol, T, V, passed):
    """Baseline filter (§3.4.1): one timestamp per pixel, support from the 3×3 neighbourhood (itself
    included unless ``excl`` is given), ``k_min`` supporters, equal polarity when ``pol`` is ``True``.  Padded
    (H+2)×(W+2) state ``T`` (timestamps) and ``V`` (0 empty, 1 + polarity).  Returns ``(err, err_index)``."""
    n = events.shape[0]
    pw = np.uint64(width + 2)
    uw = np.uint64(width)
    uh = np.uint64(height)
    ONE = np.uint64(1)
    for i in range(n):
        e = events[i]
        t = e.t
        err = _check_event(e, t, prev, uw, uh)
        if err != 0:
            return err, i
        prev = t
        if pol is None:
            v = np.uint8(1)
        else:
            v = np.uint8(1 + (e.p > 0))
        base = np.uint64(np.int64(e.y)) * pw + np.uint64(np.int64(e.x))  # padded index of (x-1, y-1)
        me = base + pw + ONE
        cnt = 0
        for r in range(3):
            g = base + np.uint64(r) * pw
            for c in range(3):
                gc = g + np.uint64(c)
                vv = V[gc]
                ok = (vv != 0) & (_age(t, T[gc], mask) < dt)
                if pol is not None:
                    ok &= vv == v
                if excl is not None:
                    ok &= gc != me
                cnt += ok
        passed[i] = cnt >= k_min
        T[me] = t
        V[me] = v
    return 0, -1


@njit(cache=True, error_model="numpy")
def _group_kernel(events, width, height, dt, mask, prev, s, neighbours, T, V, passed):
    """One timestamp per S×S group.  ``neighbours=False``: Liu's filter (own group only);
    ``neighbours=True``: every group holding a pixel of the 3×3 neighbourhood (sub-sampling filter;
    with ``s=1`` this is the baseline filter).  Returns ``(err, err_index)``."""
    gw = (width + s - 1) // s
    uw = np.uint64(width)
    uh = np.uint64(height)
    for i in range(events.shape[0]):
        e = events[i]
        t = e.t
        err = _check_event(e, t, prev, uw, uh)
        if err != 0:
            return err, i
        prev = t
        x = np.int64(e.x)
        y = np.int64(e.y)
        ok = False
        if neighbours:
            gx0 = max(x - 1, 0) // s
            gx1 = min(x + 1, width - 1) // s
            gy0 = max(y - 1, 0) // s
            gy1 = min(y + 1, height - 1) // s
            for gy in range(gy0, gy1 + 1):
                for gx in range(gx0, gx1 + 1):
                    g = gy * gw + gx
                    ok |= (V[g] != 0) & (_age(t, T[g], mask) < dt)
        else:
            g = (y // s) * gw + x // s
            ok = (V[g] != 0) & (_age(t, T[g], mask) < dt)
        passed[i] = ok
        g = (y // s) * gw + x // s
        T[g] = t
        V[g] = 1
    return 0, -1


@njit(cache=True, error_model="numpy")
def _refractory_kernel(events, width, height, period, mask, prev, T, V, passed):
    """Refractory stage: an event passes unless its own pixel fired (passed or not) less than ``period``
    ago.  State: one timestamp ``T`` and a valid flag ``V`` per pixel.  Returns ``(err, err_index)``."""
    uw = np.uint64(width)
    uh = np.uint64(height)
    for i in range(events.shape[0]):
        e = events[i]
        t = e.t
        err = _check_event(e, t, prev, uw, uh)
        if err != 0:
            return err, i
        prev = t
        g = np.int64(e.y) * width + np.int64(e.x)
        passed[i] = not ((V[g] != 0) & (_age(t, T[g], mask) < period))
        T[g] = t
        V[g] = 1
    return 0, -1


@njit(cache=True)
def _gather(events, idx, n, out):
    for k in range(n):
        out[k] = events[idx[k]]


@njit(cache=True)
def _copy_into(src, dst, off):
    for i in range(src.shape[0]):
        dst[off + i] = src[i]


# NumPy copies packed structured arrays (tonic's 13-byte layout) field by field, at ~30 ns per event; these
# helpers copy records in numba instead (~1 ns per event).
def take(events: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``events[keep]`` for a boolean or 0/1 ``keep`` (a fresh array)."""
    keep = keep.view(np.uint8) if keep.dtype == bool else keep
    out = np.empty(int(np.count_nonzero(keep)) + 1, events.dtype)
    k = _compact(events, keep, out)
    return out[:k]


def concat(parts, dtype) -> np.ndarray:
    """``np.concatenate(parts)`` for structured arrays of one ``dtype`` (a fresh array)."""
    out = np.empty(sum(p.shape[0] for p in parts), dtype)
    off = 0
    for p in parts:
        if p.shape[0]:
            _copy_into(p, out, off)
            off += p.shape[0]
    return out


# ------------------------------------------------------------------------------------------ public filters
def _one_shot(kind: str, events, width, height, dt, *, sort=False, allow_empty=True, order="time", **opts):
    """Run one fresh stream of filter ``kind`` over the whole of ``events`` (see :mod:`.stream`); the O(N)
    filter returns ``(status, emission)``, ``emission`` ``None`` for ``order="time"`` (not computed)."""
    from finn_s2n2.dvs.stream import make_stream

    ev = check_events(events, allow_empty=allow_empty)
    f = make_stream(kind, width, height, dt, order=order, **opts)
    if sort and ev.size and np.any(ev["t"][1:] < ev["t"][:-1]):
        ev = ev[np.argsort(ev["t"], kind="stable")]
    return ev, f, f.run_once(ev)


def order_n_status(
    events, width: int, height: int, dt, *, sort: bool = False, allow_empty: bool = True, **opts
):
    """Run the O(N) filter and return ``(events, status, emission)``.

    ``status[i]`` is :data:`DROPPED` (0), :data:`PASSED` (1, had support on arrival) or :data:`RECOVERED`
    (2, dropped on arrival, emitted later by past-event recovery); ``emission`` holds the indices of the
    emitted events in hardware emission order (see the module docstring).  ``events`` is the (canonical,
    native-order) input, or its stably sorted copy when ``sort=True`` had to sort it.  ``opts``:
    ``exclude_self``, ``same_polarity``, ``min_support``, ``timestamp_bits``.
    """
    ev, _, (status, emission) = _one_shot(
        "order_n", events, width, height, dt, sort=sort, allow_empty=allow_empty, order="emission", **opts
    )
    return ev, status, emission


def order_n_filter(
    events,
    width: int,
    height: int,
    dt,
    *,
    order: str = "time",
    sort: bool = False,
    allow_empty: bool = True,
    **opts,
) -> np.ndarray:
    """The O(N) BA filter with past-event recovery (Khodamoradi 2021, §3.2); returns the passed events.

    ``order="time"`` (default): input order (recovered events at their original place);
    ``order="emission"``: hardware emission order (recovered events when they are recovered, before the
    event that recovers them).  ``dt`` is the temporal window in the unit of ``t``.  ``opts``:
    ``exclude_self``, ``same_polarity``, ``min_support`` (default: :data:`DISSERTATION`), ``timestamp_bits``.
    """
    if order not in ("time", "emission"):
        raise ValueError(f"order must be 'time' or 'emission', got {order!r}")
    ev, _, (status, emission) = _one_shot(
        "order_n", events, width, height, dt, sort=sort, allow_empty=allow_empty, order=order, **opts
    )
    if order == "time":
        out = np.empty(int(np.count_nonzero(status)) + 1, ev.dtype)
        k = _compact(ev, status, out)
        out = out[:k]
    else:
        out = np.empty(emission.shape[0], ev.dtype)
        _gather(ev, emission, emission.shape[0], out)
    return _restore_names(out, events.dtype)


def _mask(kind, events, width, height, dt, sort, allow_empty, **opts):
    ev, _, passed = _one_shot(kind, events, width, height, dt, sort=sort, allow_empty=allow_empty, **opts)
    return ev, passed


def baseline_mask(events, width, height, dt, *, sort=False, allow_empty=True, **opts):
    """``(events, passed)`` of the baseline filter (one timestamp per pixel, 3×3 incl. self, §3.4.1);
    ``opts``: ``exclude_self``, ``same_polarity``, ``min_support``, ``timestamp_bits``."""
    return _mask("baseline", events, width, height, dt, sort, allow_empty, **opts)


def liu_mask(events, width, height, dt, s=2, *, sort=False, allow_empty=True, **opts):
    """``(events, passed)`` of Liu's filter (one timestamp per S×S group, own group only, §3.4.2)."""
    return _mask("liu", events, width, height, dt, sort, allow_empty, s=s, **opts)


def subsampling_mask(events, width, height, dt, s=2, *, sort=False, allow_empty=True, **opts):
    """``(events, passed)`` of the sub-sampling filter (groups overlapping the 3×3 neighbourhood, §3.4.3)."""
    return _mask("subsampling", events, width, height, dt, sort, allow_empty, s=s, **opts)


def order_n_mask(events, width, height, dt, *, sort=False, allow_empty=True, **opts):
    """``(events, passed)`` of the O(N) filter, recovered events included."""
    ev, _, (status, _) = _one_shot(
        "order_n", events, width, height, dt, sort=sort, allow_empty=allow_empty, **opts
    )
    return ev, status != DROPPED


def refractory_mask(events, width, height, period, *, sort=False, allow_empty=True, **opts):
    """``(events, passed)`` of the refractory stage (drop an event when its pixel fired < ``period`` ago)."""
    return _mask("refractory", events, width, height, period, sort, allow_empty, **opts)


def _select(events, ev, m):
    return _restore_names(take(ev, m), events.dtype)


def baseline_filter(
    events, width: int, height: int, dt, *, sort=False, allow_empty=True, **opts
) -> np.ndarray:
    """Baseline BA filter: one timestamp per pixel, an event passes with support in its 3×3 (§3.4.1)."""
    return _select(
        events, *baseline_mask(events, width, height, dt, sort=sort, allow_empty=allow_empty, **opts)
    )


def liu_filter(
    events, width: int, height: int, dt, s: int = 2, *, sort=False, allow_empty=True, **opts
) -> np.ndarray:
    """Liu's BA filter with sub-sampling factor ``s`` (§3.1, §3.4.2)."""
    return _select(
        events, *liu_mask(events, width, height, dt, s, sort=sort, allow_empty=allow_empty, **opts)
    )


def subsampling_filter(
    events, width: int, height: int, dt, s: int = 2, *, sort=False, allow_empty=True, **opts
) -> np.ndarray:
    """The "normal sub-sampling" BA filter with factor ``s`` (§3.4.3)."""
    return _select(
        events, *subsampling_mask(events, width, height, dt, s, sort=sort, allow_empty=allow_empty, **opts)
    )


def refractory_filter(events, width: int, height: int, period, *, sort=False, allow_empty=True, **opts):
    """Refractory / hot-pixel stage: drop an event when its own pixel fired less than ``period`` ago."""
    return _select(
        events, *refractory_mask(events, width, height, period, sort=sort, allow_empty=allow_empty, **opts)
    )


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
    unit of the events' ``t``.  ``order``/``sort``/``allow_empty`` and the support options as in
    :func:`order_n_filter`; an empty sample gives an empty sample.
    """

    sensor_size: tuple
    filter_time: float
    order: str = "time"
    sort: bool = False
    allow_empty: bool = True
    exclude_self: bool = False
    same_polarity: bool = False
    min_support: int = 1

    def __post_init__(self):
        if not isinstance(self.sensor_size, tuple | list) or len(self.sensor_size) not in (2, 3):
            raise ValueError(f"sensor_size must be (width, height[, polarities]), got {self.sensor_size!r}")
        _check_int("sensor_size[0] (width)", self.sensor_size[0], 1, MAX_SIDE)
        _check_int("sensor_size[1] (height)", self.sensor_size[1], 1, MAX_SIDE)
        _check_dt(self.filter_time)
        if self.order not in ("time", "emission"):
            raise ValueError(f"order must be 'time' or 'emission', got {self.order!r}")
        check_options(self.exclude_self, self.same_polarity, self.min_support, max_support=6)

    def __call__(self, events):
        return order_n_filter(
            events,
            int(self.sensor_size[0]),
            int(self.sensor_size[1]),
            self.filter_time,
            order=self.order,
            sort=self.sort,
            allow_empty=self.allow_empty,
            exclude_self=self.exclude_self,
            same_polarity=self.same_polarity,
            min_support=self.min_support,
        )
