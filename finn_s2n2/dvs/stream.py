"""Stateful, packet-by-packet versions of the DVS background-activity filters (Khodamoradi 2021, ch. 3).

A sensor delivers events in packets (dv-processing: an ``EventStore`` every few ms).  The filters here keep
their memory between packets, so that a stream cut into packets of any size gives exactly the events of one
call over the whole stream (:mod:`finn_s2n2.dvs.denoise` runs the same kernels on a fresh state).  They follow
dv-processing's streaming convention (``dv.noise.KNoiseFilter``)::

    f = OrderNFilter(346, 260, dt=2000)
    for packet in packets:            # structured arrays, tonic or dv-processing field names
        f.accept(packet)
        kept = f.generate_events()    # or: kept = f(packet)
    tail = f.flush()                  # end of the stream (events held back by order="time"), then reset

* :class:`OrderNFilter` — the O(N) filter with past-event recovery.  ``order="emission"`` (default for the
  stream): each call returns what the hardware emits during the packet — an event that is *recovered* by a
  later event comes out with the packet of that later event, in front of it.  ``order="time"``: events come
  out in input order; an event that may still be recovered (it is held, with ``bk = 0``, by a row or column
  cell whose age is below ``dt``) holds back itself and every later event until it is final, at most ``dt``
  of stream (exact ages; with ``timestamp_bits=32`` cells never expire, see below).
* :class:`BaselineFilter`, :class:`LiuFilter`, :class:`SubsamplingFilter` — the per-pixel and per-group
  baselines; their decision is final on arrival (nothing is held back).
* :class:`RefractoryFilter` — a hot-pixel / refractory stage: drops an event when its own pixel fired less
  than ``period`` ago; chain it in front of a BA filter with :class:`FilterChain`.

Memory between packets: the filter state (rows/columns, or one cell per pixel/group) and, for the O(N) filter,
the few events still referenced by a ``bk = 0`` cell (they may be recovered).  With ``timestamp_bits=32``
(hardware ages modulo 2^32) a ``bk = 0`` cell never expires — a cell 2^32 ticks old aliases to a young one and
can still be recovered, as in the hardware — so the O(N) filter keeps such events until their cell is
overwritten.

After a bad packet (unsorted, coordinate outside the sensor) the filter raises and refuses further packets
until :meth:`reset` (its state is partly updated).
"""

from __future__ import annotations

import numpy as np

from finn_s2n2.dvs import denoise as _d
from finn_s2n2.dvs.memory import MAX_SIDE

_ORDER_N_MAX_SUPPORT = 6  # three row and three column cells
_BASELINE_MAX_SUPPORT = 9


class _Stream:
    """Common machinery: validation, lazy state (its timestamp type comes from the first packet), output
    queue, counters.  Subclasses implement :meth:`_new_state`, :meth:`_process` and :meth:`_run_fresh`."""

    kind = ""

    def __init__(self, width: int, height: int, dt, *, timestamp_bits: int = 64):
        self.width = _d._check_int("width", width, 1, MAX_SIDE)
        self.height = _d._check_int("height", height, 1, MAX_SIDE)
        self.dt = _d._check_dt(dt, self._dt_name)
        if timestamp_bits not in (32, 64):
            raise ValueError(
                f"timestamp_bits must be 32 (hardware) or 64 (exact ages), got {timestamp_bits!r}"
            )
        self.timestamp_bits = timestamp_bits
        self.reset()

    _dt_name = "dt (the temporal window)"

    # ------------------------------------------------------------------ dv-processing style interface
    def reset(self) -> None:
        """Forget everything (empty state, no held events, counters to zero)."""
        self._state = None
        self._t_kind = None
        self._dtype = None
        self._prev = None
        self._queue: list[np.ndarray] = []
        self._broken = None
        self.n_in = 0
        self.n_out = 0

    def accept(self, events) -> None:
        """Filter one packet (a structured array; may be empty); the kept events wait in
        :meth:`generate_events`."""
        if self._broken is not None:
            raise RuntimeError(
                f"{type(self).__name__}: a previous packet failed ({self._broken}); call reset()"
            )
        ev = _d.check_events(events, allow_empty=True)
        self.n_in += ev.size
        if ev.size == 0:
            return
        ev = self._conform(ev)
        try:
            out = self._process(ev)
        except ValueError as exc:
            self._broken = str(exc).split(" (")[0]
            raise
        self._push(out, events.dtype)

    def generate_events(self) -> np.ndarray:
        """The events kept since the last call (output order of the filter), with the caller's field names."""
        q = self._queue
        self._queue = []
        if not q:
            return np.empty(0, self._dtype if self._dtype is not None else _d.EVENT_DTYPE)
        out = q[0] if len(q) == 1 else _d.concat(q, q[0].dtype)
        self.n_out += out.size
        return out

    # dv-processing spelling
    generateEvents = generate_events

    def __call__(self, events) -> np.ndarray:
        """``accept(events)`` then ``generate_events()``."""
        self.accept(events)
        return self.generate_events()

    filter = __call__

    def flush(self) -> np.ndarray:
        """End of the stream: the events still held back (``order="time"`` of the O(N) filter) and anything not
        yet generated; then :meth:`reset`."""
        tail = self._flush_held()
        if tail is not None and tail.size:
            self._queue.append(tail)
        out = self.generate_events()
        n_in, n_out = self.n_in, self.n_out
        self.reset()
        self.n_in, self.n_out = n_in, n_out
        return out

    @property
    def reduction_factor(self) -> float:
        """``n_in / n_out`` so far (dv-processing's ``getReductionFactor``)."""
        return self.n_in / self.n_out if self.n_out else float("inf")

    # ------------------------------------------------------------------ helpers
    def _push(self, out, like_dtype):
        if out is not None and out.size:
            self._queue.append(_d._restore_names(out, like_dtype))

    def _conform(self, ev):
        kind = "f" if ev.dtype["t"].kind == "f" else "i"
        if self._t_kind is None:
            self._t_kind = kind
            self._mask = _d.age_mask(self.timestamp_bits, kind)
            self._kdt = _d.kernel_dt(self.dt, kind)
            self._dtype = ev.dtype
            self._prev = -np.inf if kind == "f" else np.int64(-(2**63))
            self._state = self._new_state()
        elif kind != self._t_kind:
            raise TypeError(
                f"events['t'] is {ev.dtype['t']} but this stream started with "
                f"{'float' if self._t_kind == 'f' else 'integer'} timestamps"
            )
        if ev.dtype != self._dtype:
            if set(ev.dtype.names) != set(self._dtype.names):
                raise TypeError(
                    f"packet fields {ev.dtype.names} differ from the stream's {self._dtype.names}"
                )
            ev = ev.astype(self._dtype)
        return ev

    def _raise(self, err, i, ev, prev):
        _d._raise_kernel_error(err, i, ev, self.width, self.height, prev)

    def _flush_held(self):
        return None

    def run_once(self, ev):
        """Run a fresh state over the whole (checked) array ``ev``: the pure functions of
        :mod:`finn_s2n2.dvs.denoise` (``(status, emission)`` for the O(N) filter, else the boolean mask)."""
        self.reset()
        if ev.size == 0:
            return self._empty_result()
        ev = self._conform(ev)
        return self._run_fresh(ev)


class OrderNFilter(_Stream):
    """Stateful O(N) filter (§3.2) with past-event recovery; see the module docstring for ``order``.

    ``exclude_self``, ``same_polarity``, ``min_support`` (1…6): support options of
    :mod:`finn_s2n2.dvs.denoise` (defaults: the dissertation's Eq 3.2).  ``recover=False`` turns past-event
    recovery off (then nothing is held back and ``bk`` stays unused), the variant dv-processing's
    ``KNoiseFilter`` implements.  ``timestamp_bits=32`` compares ages
    modulo 2^32 like the HLS filter.  ``order="time"`` finds the recovered events by marking,
    ``order="emission"`` by the ``bk`` bookkeeping (same events; see :func:`denoise._order_n_kernel`).
    """

    kind = "order_n"

    def __init__(
        self,
        width: int,
        height: int,
        dt,
        *,
        order: str = "emission",
        exclude_self: bool = False,
        same_polarity: bool = False,
        min_support: int = 1,
        recover: bool = True,
        timestamp_bits: int = 64,
    ):
        if order not in ("time", "emission"):
            raise ValueError(f"order must be 'time' or 'emission', got {order!r}")
        self.order = order
        self.exclude_self, self.same_polarity, self.min_support = _d.check_options(
            exclude_self, same_polarity, min_support, max_support=_ORDER_N_MAX_SUPPORT
        )
        if not isinstance(recover, bool | np.bool_):
            raise TypeError(f"recover must be a bool, got {type(recover).__name__} {recover!r}")
        self.recover = bool(recover)
        super().__init__(width, height, dt, timestamp_bits=timestamp_bits)

    def reset(self) -> None:
        super().reset()
        self._held = None
        self._held_status = None

    def _new_state(self):
        return _d.order_n_state(self.width, self.height, self._t_kind)

    def _kernel(self, V, start, status, emit, mark=None, gate=None):
        K, T = self._state
        n_emit, err, i = _d._order_n_kernel(
            V, start, self.width, self.height, self._kdt, self._mask, self._prev,
            True if self.exclude_self else None, self.min_support if self.min_support > 1 else None,
            _d.polarity_flag(V, self.same_polarity), None if self.recover else True,
            K, T, status, emit, mark, gate,
        )  # fmt: skip
        if err:
            self._raise(err, i - start, V, self._prev if i == start else None)
        self._prev = V["t"][-1]
        return None if emit is None else emit[:n_emit]

    def _empty_result(self):
        return np.zeros(0, np.uint8), (np.zeros(0, np.int64) if self.order == "emission" else None)

    def _run_fresh(self, ev):
        if ev.shape[0] > _d.MAX_EVENTS:
            raise ValueError(
                f"events has {ev.shape[0]} events; at most {_d.MAX_EVENTS} per call (split the stream)"
            )
        if self.order == "time" and self.recover:
            # one call in time order: recovery by marking (no bk bookkeeping, no branch; the same statuses);
            # the state's bk bits are then stale: the stream is reset
            status = np.zeros(ev.shape[0], np.uint8)
            self._kernel(ev, 0, status, None, np.zeros(ev.shape[0], np.uint8))
            self.reset()
            return status, None
        status = np.zeros(ev.shape[0], np.uint8)
        emit = np.empty(ev.shape[0] + 1, np.int64) if self.order == "emission" else None
        return status, self._kernel(ev, 0, status, emit)

    def _process(self, ev):
        # events still referenced by a bk = 0 cell (numbers 0 .. start-1) are held, the packet follows them;
        # the kernel reads only the packet, so the two are never joined.  One numba call per packet.
        held = self._held if self._held is not None else ev[:0]
        start = held.shape[0]
        n = start + ev.shape[0]
        if n > _d.MAX_EVENTS:
            raise ValueError(
                f"packet has {ev.shape[0]} events; at most {_d.MAX_EVENTS - start} here (split it)"
            )
        status = np.zeros(n, np.uint8)
        emission = self.order == "emission"
        marking = not emission and self.recover  # time order: recovery by marking (bk = passed gates it)
        out = np.empty(n + 1, ev.dtype)
        new_held = np.empty(n, ev.dtype)
        K, T = self._state
        err, i, n_out, m = _d._order_n_packet(
            held, ev, self._held_status if start else status, self.width, self.height, self._kdt, self._mask,
            self._prev, True if self.exclude_self else None,
            self.min_support if self.min_support > 1 else None, _d.polarity_flag(ev, self.same_polarity),
            None if self.recover else True, K, T, self.timestamp_bits == 64, status,
            np.empty(n + 1, np.int64) if emission else None, np.zeros(n, np.uint8) if marking else None,
            out, new_held,
        )  # fmt: skip
        if err:
            self._raise(err, i - start, ev, self._prev if i == start else None)
        self._prev = ev["t"][-1]
        self._held = new_held[: n - m]
        self._held_status = status[m:]
        return out[:n_out]

    def _flush_held(self):
        if self.order == "time" and self._held is not None and self._held.size:
            return _d.take(self._held, self._held_status)
        return None


class _MaskStream(_Stream):
    """Filters whose decision is final on arrival: a kernel writes a boolean ``passed`` per event."""

    def _empty_result(self):
        return np.zeros(0, bool)

    def _passed(self, ev):
        passed = np.zeros(ev.shape[0], np.uint8)
        err, i = self._run_kernel(ev, passed)
        if err:
            self._raise(err, i, ev, self._prev if i == 0 else None)
        self._prev = ev["t"][-1]
        return passed.view(bool)

    def _run_fresh(self, ev):
        return self._passed(ev)

    def _process(self, ev):
        return _d.take(ev, self._passed(ev))


class BaselineFilter(_MaskStream):
    """Stateful baseline filter (§3.4.1): one timestamp per pixel, support in the 3×3 neighbourhood.
    ``exclude_self``, ``same_polarity``, ``min_support`` (1…9) as for :class:`OrderNFilter`."""

    kind = "baseline"

    def __init__(
        self, width, height, dt, *, exclude_self=False, same_polarity=False, min_support=1, timestamp_bits=64
    ):
        self.exclude_self, self.same_polarity, self.min_support = _d.check_options(
            exclude_self, same_polarity, min_support, max_support=_BASELINE_MAX_SUPPORT
        )
        super().__init__(width, height, dt, timestamp_bits=timestamp_bits)

    def _new_state(self):
        n = (self.height + 2) * (self.width + 2)
        return np.zeros(n, np.float64 if self._t_kind == "f" else np.int64), np.zeros(n, np.uint8)

    def _run_kernel(self, ev, passed):
        T, V = self._state
        pol = _d.polarity_flag(ev, self.same_polarity)
        return _d._baseline_kernel(
            ev, self.width, self.height, self._kdt, self._mask, self._prev,
            True if self.exclude_self else None, self.min_support, pol, T, V, passed,
        )  # fmt: skip


class _GroupFilter(_MaskStream):
    _neighbours = False

    def __init__(self, width, height, dt, s: int = 2, *, timestamp_bits=64):
        self.s = _d._check_int("s (sub-sampling factor)", s, 1)
        super().__init__(width, height, dt, timestamp_bits=timestamp_bits)

    def _new_state(self):
        n = -(-self.width // self.s) * -(-self.height // self.s)
        return np.zeros(n, np.float64 if self._t_kind == "f" else np.int64), np.zeros(n, np.uint8)

    def _run_kernel(self, ev, passed):
        T, V = self._state
        return _d._group_kernel(
            ev,
            self.width,
            self.height,
            self._kdt,
            self._mask,
            self._prev,
            self.s,
            self._neighbours,
            T,
            V,
            passed,
        )


class LiuFilter(_GroupFilter):
    """Stateful Liu filter (§3.1, §3.4.2): one timestamp per S×S group, own group only."""

    kind = "liu"


class SubsamplingFilter(_GroupFilter):
    """Stateful sub-sampling filter (§3.4.3): groups overlapping the 3×3 neighbourhood."""

    kind = "subsampling"
    _neighbours = True


class RefractoryFilter(_MaskStream):
    """Hot-pixel / refractory stage: an event passes unless its own pixel fired (passed or not) less than
    ``period`` ago — a pixel firing faster than ``1/period`` keeps only the first event of each burst.  Not
    in the dissertation; jAER and dv-processing offer the same stage."""

    kind = "refractory"
    _dt_name = "period (the refractory period)"

    def __init__(self, width, height, period, *, timestamp_bits=64):
        super().__init__(width, height, period, timestamp_bits=timestamp_bits)

    @property
    def period(self):
        return self.dt

    def _new_state(self):
        n = self.height * self.width
        return np.zeros(n, np.float64 if self._t_kind == "f" else np.int64), np.zeros(n, np.uint8)

    def _run_kernel(self, ev, passed):
        T, V = self._state
        return _d._refractory_kernel(
            ev, self.width, self.height, self._kdt, self._mask, self._prev, T, V, passed
        )


class FilterChain:
    """Filters applied one after the other, packet by packet (e.g. ``RefractoryFilter`` then
    ``OrderNFilter``); the same ``accept``/``generate_events``/``flush`` interface."""

    def __init__(self, *filters):
        if not filters or not all(isinstance(f, _Stream | FilterChain) for f in filters):
            raise TypeError(
                "FilterChain takes one or more stream filters (OrderNFilter, BaselineFilter, ...)"
            )
        self.filters = filters
        self._queue: list[np.ndarray] = []

    def accept(self, events) -> None:
        for f in self.filters:
            events = f(events)
        self._queue.append(events)

    def generate_events(self) -> np.ndarray:
        q, self._queue = self._queue, []
        return _d.concat(q, q[0].dtype) if q else np.empty(0, _d.EVENT_DTYPE)

    generateEvents = generate_events

    def __call__(self, events) -> np.ndarray:
        self.accept(events)
        return self.generate_events()

    def flush(self) -> np.ndarray:
        """Flush every stage in turn, feeding each one's tail through the stages after it."""
        parts = [self.generate_events()]
        for k, f in enumerate(self.filters):
            tail = f.flush()
            for g in self.filters[k + 1 :]:
                tail = g(tail)
            parts.append(tail)
        parts = [p for p in parts if p.size]
        return _d.concat(parts, parts[0].dtype) if parts else np.empty(0, _d.EVENT_DTYPE)

    def reset(self) -> None:
        self._queue = []
        for f in self.filters:
            f.reset()


_KINDS = {
    "order_n": OrderNFilter,
    "baseline": BaselineFilter,
    "liu": LiuFilter,
    "subsampling": SubsamplingFilter,
    "refractory": RefractoryFilter,
}


def make_stream(kind: str, width, height, dt, *, order: str = "emission", s: int = 2, **opts) -> _Stream:
    """A fresh stream filter of ``kind`` (``order_n``, ``baseline``, ``liu``, ``subsampling``, ``refractory``)."""
    if kind not in _KINDS:
        raise ValueError(f"filter name must be one of {tuple(_KINDS)}, got {kind!r}")
    if kind == "order_n":
        return OrderNFilter(width, height, dt, order=order, **opts)
    if kind in ("liu", "subsampling"):
        return _KINDS[kind](width, height, dt, s, **opts)
    return _KINDS[kind](width, height, dt, **opts)
