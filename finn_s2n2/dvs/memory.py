"""Memory of the DVS background-activity filters: the O(N) filter's cell layout and a BRAM model.

Khodamoradi 2021, chapter 3, §3.2 and Table 3.1.

Cell layout (§3.2, Fig 3.4.a).  The O(N) filter keeps *two 32-bit cells per row and per column*:

* cell 0 — the timestamp ``t`` of the most recent event of that row (column);
* cell 1 — ``bk << 31 | p << 30 | pos``: the bookkeeping bit (the stored event has been emitted),
  the polarity, and the 30-bit *other-axis* position (the column ``x`` for a row cell, the row ``y`` for a
  column cell).

This module is the single place where that layout is written down; :mod:`finn_s2n2.dvs.denoise` (the
python execution, the specification), the HLS C++ (``hls/dvs_order_n.h``, which exports the same constants
so tests compare them) and the memory model below all use it.

Choice the dissertation leaves open — *empty cells*: it does not say how a row that has not seen an event yet
is marked.  We mark it with the all-ones position ``POS_EMPTY = 2**30 - 1`` and ``bk = 1``: no coordinate of
a sensor with sides ≤ ``MAX_SIDE = 2**30 - 2`` is within one pixel of it, so an empty cell never supports an
event and is never "recovered".  This costs no extra bit, at the price of two unusable coordinates.

BRAM model (Table 3.1).  One memory of ``depth`` words of ``width`` bits is mapped on 18-Kib block RAMs
configured 512 × 36, with the depth rounded up to a power of two (as Vivado HLS does for a plain array):
``ceil(pow2(depth) / 512) * ceil(width / 36)`` BRAM18.  For the O(N) filter (four memories: row and column
× timestamp and info, depths H and W, 32 bits) this reproduces Table 3.1 exactly on the XC7A200T
(730 BRAM18): 4, 4, 4, 8, 16 BRAM18 = 0.55 %, 0.55 %, 0.55 %, 1.10 %, 2.19 % for 128² … 1280².
For the baseline (one 32-bit timestamp per pixel, §3.4.1) the same model gives exactly half of the dissertation's
figures at every size (32 vs 64 BRAM18 at 128², 4096 vs 8192 at 1280²): the scaling (× 4 per doubling of
the side, 2 × pow2(W·H) · 32 / 16 Kib) is reproduced, the constant factor 2 is not explained by the dissertation
(a 64-bit cell or a duplicated array would explain it); :func:`table_3_1` reports both columns.
"""

from __future__ import annotations

import math
import numbers

# --- cell layout (§3.2, Fig 3.4) --------------------------------------------------------------------------
CELL_BITS = 32
#: bit index of the bookkeeping bit in the info cell
BK_BIT = 31
#: bit index of the polarity in the info cell
POL_BIT = 30
#: width of the other-axis position field
POS_BITS = 30
POS_MASK = (1 << POS_BITS) - 1
#: position that marks an empty cell (never within one pixel of a valid coordinate)
POS_EMPTY = POS_MASK
#: largest sensor side the layout supports with the empty-cell marker
MAX_SIDE = (1 << POS_BITS) - 2
#: info cell of an empty row/column: bk = 1, p = 0, pos = POS_EMPTY
INFO_EMPTY = (1 << BK_BIT) | POS_EMPTY
#: timestamps are 32-bit in hardware (§3.0.1: "timing information … coded in a 32 bits time-stamp")
TIMESTAMP_BITS = 32

#: BRAM18 primitive in its 512 x 36 configuration
BRAM18_DEPTH = 512
BRAM18_WIDTH = 36
#: BRAM18 count of the Artix-7 XC7A200T, the denominator of Table 3.1's percentages
XC7A200T_BRAM18 = 730


def pack_info(bk: int, p: int, pos: int) -> int:
    """Pack the info cell ``bk << 31 | p << 30 | pos`` (§3.2, Fig 3.4.a)."""
    if bk not in (0, 1) or p not in (0, 1):
        raise ValueError(f"pack_info: bk and p must be 0 or 1, got bk={bk!r}, p={p!r}")
    if not 0 <= pos <= POS_MASK:
        raise ValueError(f"pack_info: pos must be in [0, {POS_MASK}], got {pos!r}")
    return (bk << BK_BIT) | (p << POL_BIT) | pos


def unpack_info(info: int) -> tuple[int, int, int]:
    """Inverse of :func:`pack_info`: ``(bk, p, pos)``."""
    info = int(info)
    if not 0 <= info < (1 << CELL_BITS):
        raise ValueError(f"unpack_info: info must be a 32-bit unsigned value, got {info!r}")
    return (info >> BK_BIT) & 1, (info >> POL_BIT) & 1, info & POS_MASK


# --- memory model (Table 3.1) ------------------------------------------------------------------------------
def _check_side(name: str, v) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(v).__name__}")
    if v <= 0:
        raise ValueError(f"{name} must be > 0, got {v}")
    return int(v)


def _pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def bram18(depth: int, width: int = CELL_BITS) -> int:
    """BRAM18 blocks for one memory of ``depth`` words × ``width`` bits (512 × 36 mode, depth → pow2)."""
    _check_side("depth", depth)
    _check_side("width", width)
    return math.ceil(_pow2(depth) / BRAM18_DEPTH) * math.ceil(width / BRAM18_WIDTH)


def memory_cells(filter_name: str, width: int, height: int, s: int = 2) -> list[int]:
    """Depths of the memories (in 32-bit cells) that ``filter_name`` keeps for a ``width`` × ``height`` sensor.

    ``"baseline"``: one cell per pixel (§3.4.1).  ``"liu"`` / ``"subsampling"``: one cell per S×S group
    (§3.1, §3.4.3).  ``"order_n"``: two cells per row and two per column (§3.2) — four memories.
    """
    _check_side("width", width)
    _check_side("height", height)
    if filter_name == "baseline":
        return [width * height]
    if filter_name in ("liu", "subsampling"):
        _check_side("s", s)
        return [math.ceil(width / s) * math.ceil(height / s)]
    if filter_name == "order_n":
        return [height, height, width, width]
    raise ValueError(
        f"filter_name must be one of 'baseline', 'liu', 'subsampling', 'order_n'; got {filter_name!r}"
    )


def memory_bits(filter_name: str, width: int, height: int, s: int = 2) -> int:
    """Memory of ``filter_name`` in bits (32-bit cells)."""
    return CELL_BITS * sum(memory_cells(filter_name, width, height, s))


def memory_bram18(filter_name: str, width: int, height: int, s: int = 2) -> int:
    """Memory of ``filter_name`` in BRAM18 blocks (model of the module docstring)."""
    return sum(bram18(d) for d in memory_cells(filter_name, width, height, s))


#: Table 3.1's BRAM column (percent of the XC7A200T), keyed by sensor side
TABLE_3_1_BRAM_PERCENT = {
    128: {"baseline": 8.77, "order_n": 0.55},
    256: {"baseline": 35.07, "order_n": 0.55},
    512: {"baseline": 140.27, "order_n": 0.55},
    1024: {"baseline": 561.10, "order_n": 1.10},
    1280: {"baseline": 1122.19, "order_n": 2.19},
}


def table_3_1(sides=(128, 256, 512, 1024, 1280), device_bram18: int = XC7A200T_BRAM18) -> list[dict]:
    """Rows of our memory model next to Table 3.1 for square sensors of the given sides."""
    rows = []
    for n in sides:
        row = {"side": n}
        for f in ("baseline", "order_n"):
            b = memory_bram18(f, n, n)
            row[f"{f}_bits"] = memory_bits(f, n, n)
            row[f"{f}_bram18"] = b
            row[f"{f}_percent"] = 100.0 * b / device_bram18
            row[f"{f}_table_3_1_percent"] = TABLE_3_1_BRAM_PERCENT.get(n, {}).get(f)
        rows.append(row)
    return rows
