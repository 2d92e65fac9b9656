"""Event readers and packet helpers for the DVS filters, through the existing libraries.

* :func:`read_aedat4` / :func:`iter_aedat4` — AEDAT4 recordings (iniVation DAVIS/DVXplorer) via
  dv-processing's ``dv.io.MonoCameraRecording``.
* :func:`read_prophesee` — Prophesee EVT2 / EVT3 / DAT recordings via expelliarmus (optional: ``pip install
  expelliarmus``; a clear ``ImportError`` otherwise).
* :func:`to_events` — any structured array with tonic's (``x, y, t, p``) or dv-processing's (``timestamp, x,
  y, polarity``) field names, either byte order, as tonic's layout :data:`~finn_s2n2.dvs.denoise.EVENT_DTYPE`.
* :func:`split_by_time` — cut a stream into packets of a fixed duration (how a sensor delivers it).

Every reader returns tonic's layout (``t`` in µs, int64) plus the sensor size ``(width, height)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from finn_s2n2.dvs.denoise import EVENT_DTYPE, check_events


def to_events(events) -> np.ndarray:
    """A copy of ``events`` in tonic's layout ``x:int16, y:int16, t:int64, p:bool`` (``p > 0`` is ON; without
    a polarity field every event is OFF).  Accepts tonic's or dv-processing's field names, either byte order.
    Raises when ``x``/``y`` do not fit int16 or ``t`` is not integral."""
    ev = check_events(events, allow_empty=True)
    out = np.zeros(ev.size, EVENT_DTYPE)
    for f in ("x", "y"):
        a = ev[f]
        if a.size and (a.min() < np.iinfo(np.int16).min or a.max() > np.iinfo(np.int16).max):
            raise ValueError(f"events['{f}'] does not fit int16 (tonic layout): range [{a.min()}, {a.max()}]")
        out[f] = a
    t = ev["t"]
    if t.dtype.kind == "f" and t.size and np.any(t != np.floor(t)):
        raise ValueError("events['t'] has fractional values; tonic's layout needs integer (µs) timestamps")
    out["t"] = t
    if "p" in ev.dtype.names:
        out["p"] = ev["p"] > 0
    return out


def _dv():
    try:
        import dv_processing as dv
    except ImportError as exc:  # pragma: no cover - dv-processing is a project dependency
        raise ImportError("reading AEDAT4 needs dv-processing: pip install dv-processing") from exc
    return dv


def _open_aedat4(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"AEDAT4 recording not found: {path}")
    rec = _dv().io.MonoCameraRecording(path)
    if not rec.isEventStreamAvailable():
        raise ValueError(f"{path} has no event stream (an AEDAT4 file with events is expected)")
    return rec


def iter_aedat4(path) -> Iterator[np.ndarray]:
    """The recording's event packets, as stored, in tonic's layout."""
    rec = _open_aedat4(path)
    while True:
        batch = rec.getNextEventBatch()
        if batch is None:
            return
        yield to_events(batch.numpy())


def read_aedat4(path) -> tuple[np.ndarray, tuple[int, int]]:
    """``(events, (width, height))`` of an AEDAT4 recording (all event packets concatenated)."""
    rec = _open_aedat4(path)
    width, height = rec.getEventResolution()
    parts = []
    while True:
        batch = rec.getNextEventBatch()
        if batch is None:
            break
        parts.append(to_events(batch.numpy()))
    ev = np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)
    return ev, (int(width), int(height))


#: sensor sizes of Prophesee recordings by encoding are not in the file for EVT2/EVT3 without a header
#: parser; the caller passes them (Gen4 / IMX636: 1280 × 720)
PROPHESEE_ENCODINGS = ("evt2", "evt3", "dat")


def read_prophesee(
    path, encoding: str = "evt3", sensor_size=(1280, 720)
) -> tuple[np.ndarray, tuple[int, int]]:
    """``(events, (width, height))`` of a Prophesee recording (``.raw`` EVT2/EVT3 or ``.dat``) via expelliarmus.

    ``sensor_size`` is returned as given (IMX636/Gen4: 1280 × 720; Gen3: 640 × 480); events outside it raise.
    """
    if encoding not in PROPHESEE_ENCODINGS:
        raise ValueError(f"encoding must be one of {PROPHESEE_ENCODINGS}, got {encoding!r}")
    try:
        from expelliarmus import Wizard
    except ImportError as exc:
        raise ImportError(
            "reading Prophesee EVT2/EVT3/DAT recordings needs expelliarmus: pip install expelliarmus (or hwreshape[prophesee])"
        ) from exc
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Prophesee recording not found: {path}")
    ev = to_events(Wizard(encoding=encoding).read(path))
    w, h = int(sensor_size[0]), int(sensor_size[1])
    if ev.size and (ev["x"].max() >= w or ev["y"].max() >= h):
        raise ValueError(
            f"{path}: events reach x={ev['x'].max()}, y={ev['y'].max()}, outside sensor_size={sensor_size}"
        )
    return ev, (w, h)


def split_by_time(events, packet) -> list[np.ndarray]:
    """Cut a time-sorted stream into consecutive packets of duration ``packet`` (unit of ``t``), aligned to
    the first timestamp; packets with no events are kept (empty arrays), as a sensor would deliver them."""
    ev = check_events(events, allow_empty=True)
    if not packet > 0:
        raise ValueError(f"packet (duration) must be > 0, got {packet!r}")
    if ev.size == 0:
        return []
    t = ev["t"]
    k = ((t - t[0]) // packet).astype(np.int64)
    edges = np.searchsorted(k, np.arange(1, int(k[-1]) + 1), side="left")
    return np.split(events, edges)
