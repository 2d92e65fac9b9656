"""C-simulation of the HLS C++ O(N) DVS filter (Khodamoradi 2021, §3.2): build once with g++, run streams via
ctypes.

``dvs_order_n.h`` holds the filter (one event per call, row/column memories of Fig 3.4, a one-word output
register so that the last event emitted for a packet carries TLAST), ``dvs_order_n_top.cpp`` the HLS top
(AXI-Stream words in and out, II target 7 = the most words one event can emit) and an ``extern "C"`` test
bench.  :func:`build` compiles them into a
shared library with g++ and the ``ap_int``/``hls_stream`` headers shipped in the hls4ml wheel
(``hwreshape.compat.ap_types_include()``), cached by a hash of the sources and flags, so one compile serves
every stream of a test session (and later sessions).  :func:`csim_order_n` runs a structured event array
through it and returns the emitted events in emission order with their TLAST — the tests compare them with
``finn_s2n2.dvs.stream.OrderNFilter`` (emission order, ``timestamp_bits=32``) packet by packet.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SOURCES = ("dvs_order_n.h", "dvs_order_n_top.cpp")
#: largest sensor side the compiled test bench accepts (template parameters of the state)
MAX_SIDE = 2048
_CXXFLAGS = [
    "-O2",
    "-std=c++14",
    "-shared",
    "-fPIC",
    "-w",
    f"-DDVS_MAX_W={MAX_SIDE}",
    f"-DDVS_MAX_H={MAX_SIDE}",
]

_LIB: ctypes.CDLL | None = None


def _ap_types_include() -> str:
    from hwreshape.compat import ap_types_include

    return ap_types_include()


def build(cache_dir: str | os.PathLike | None = None, cxx: str | None = None) -> Path:
    """Compile the C-simulation library (once per source hash) and return its path."""
    cxx = cxx or os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise FileNotFoundError(f"C++ compiler {cxx!r} not found: the DVS filter C-simulation needs g++")
    inc = _ap_types_include()
    h = hashlib.sha256()
    for name in SOURCES:
        h.update((HERE / name).read_bytes())
    h.update(" ".join([cxx, *_CXXFLAGS, inc]).encode())
    cache = Path(cache_dir or Path(tempfile.gettempdir()) / "hwreshape_dvs_hls")
    cache.mkdir(parents=True, exist_ok=True)
    lib = cache / f"dvs_order_n_{h.hexdigest()[:16]}.so"
    if not lib.exists():
        tmp = lib.with_suffix(f".{os.getpid()}.tmp")
        cmd = [cxx, *_CXXFLAGS, f"-I{inc}", f"-I{HERE}", str(HERE / "dvs_order_n_top.cpp"), "-o", str(tmp)]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(
                f"g++ failed building the DVS filter C-simulation:\n{' '.join(cmd)}\n{res.stderr[-4000:]}"
            )
        os.replace(tmp, lib)
    return lib


def load() -> ctypes.CDLL:
    """The loaded C-simulation library (built on first use)."""
    global _LIB
    if _LIB is None:
        lib = ctypes.CDLL(str(build()))
        u32p = np.ctypeslib.ndpointer(np.uint32, flags="C_CONTIGUOUS")
        u8p = np.ctypeslib.ndpointer(np.uint8, flags="C_CONTIGUOUS")
        lib.dvs_order_n_run.restype = ctypes.c_long
        lib.dvs_order_n_run.argtypes = [
            ctypes.c_long, u32p, u32p, u32p, u8p, u8p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32,
            u32p, u32p, u32p, u8p, u8p,
        ]  # fmt: skip
        lib.dvs_layout.restype = None
        lib.dvs_layout.argtypes = [u32p]
        _LIB = lib
    return _LIB


def layout() -> dict:
    """Cell-layout constants compiled into the C++ (compare with :mod:`finn_s2n2.dvs.memory`)."""
    v = np.zeros(7, np.uint32)
    load().dvs_layout(v)
    keys = ("BK_BIT", "POL_BIT", "POS_BITS", "POS_EMPTY", "MAX_W", "MAX_H", "MAX_OUT_PER_EVENT")
    return dict(zip(keys, (int(a) for a in v)))


def csim_order_n(events: np.ndarray, width: int, height: int, dt: int, *, last=None, wrap: bool = False):
    """Run ``events`` through the HLS filter; return the emitted events (x, y, t, p, last) in emission order.

    ``last``: boolean per event, True ends a packet (input TLAST); default: one packet (the final event).
    Hardware limits are checked here: sides ≤ :data:`MAX_SIDE`, integer ``dt`` in [1, 2**32), timestamps in
    [0, 2**32) — or, with ``wrap=True``, any non-negative int64 timestamps, of which the hardware sees the
    32-bit counter ``t mod 2**32`` (compare with the python filter's ``timestamp_bits=32``; output ``t`` is
    the 32-bit counter).
    """
    from finn_s2n2.dvs.denoise import check_events

    events = check_events(events, allow_empty=True)
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int | np.integer) or not 1 <= v <= MAX_SIDE:
            raise ValueError(f"{name} must be an int in [1, {MAX_SIDE}] for the C-simulation, got {v!r}")
    if not isinstance(dt, int | np.integer) or not 1 <= dt < 2**32:
        raise ValueError(f"dt must be an int in [1, 2**32) for the 32-bit hardware filter, got {dt!r}")
    t = events["t"]
    hi = 2**63 if wrap else 2**32
    if t.size and (t.min() < 0 or t.max() >= hi or np.any(t != np.floor(t))):
        rng = "[0, 2**63) (wrap=True)" if wrap else "[0, 2**32) (or pass wrap=True)"
        raise ValueError(f"events['t'] must be integers in {rng} for the 32-bit hardware timestamps")
    n = events.shape[0]
    if last is None:
        last = np.zeros(n, bool)
        last[-1:] = True
    last = np.asarray(last)
    if last.shape != (n,):
        raise ValueError(f"last must have one flag per event, shape ({n},), got {last.shape}")
    x = np.ascontiguousarray(events["x"], np.uint32)
    y = np.ascontiguousarray(events["y"], np.uint32)
    tt = np.ascontiguousarray(np.asarray(t, np.int64) & 0xFFFFFFFF, np.uint32)
    p = np.ascontiguousarray(events["p"] > 0 if "p" in events.dtype.names else np.zeros(n), np.uint8)
    lst = np.ascontiguousarray(last, np.uint8)
    cap = max(7 * n, 1)
    ox, oy, ot = (np.zeros(cap, np.uint32) for _ in range(3))
    op = np.zeros(cap, np.uint8)
    ol = np.zeros(cap, np.uint8)
    k = load().dvs_order_n_run(n, x, y, tt, p, lst, int(width), int(height), int(dt), ox, oy, ot, op, ol)
    if k < 0:
        raise ValueError(f"C-simulation rejected the stream: a coordinate is outside {width} x {height}")
    out = np.zeros(
        k, dtype=[("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.uint8), ("last", np.uint8)]
    )
    out["x"], out["y"], out["t"], out["p"], out["last"] = ox[:k], oy[:k], ot[:k], op[:k], ol[:k]
    return out
