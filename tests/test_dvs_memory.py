"""Memory of the DVS filters: cell layout (§3.2, Fig 3.4) and BRAM model vs Table 3.1."""

import pytest

from finn_s2n2.dvs import memory as m


def test_pack_unpack_layout():
    for bk in (0, 1):
        for p in (0, 1):
            for pos in (0, 1, 1279, m.POS_MASK):
                c = m.pack_info(bk, p, pos)
                assert 0 <= c < 2**32 and m.unpack_info(c) == (bk, p, pos)
    assert m.INFO_EMPTY == m.pack_info(1, 0, m.POS_EMPTY)
    assert m.BK_BIT == 31 and m.POL_BIT == 30 and m.POS_BITS == 30  # 1 + 1 + 30 = 32 bits (Fig 3.4.a)
    assert (
        m.MAX_SIDE - 1
    ) + 1 < m.POS_EMPTY  # largest coordinate is not within one pixel of the empty marker


def test_table_3_1_order_n_exact_and_baseline_scaling():
    rows = {r["side"]: r for r in m.table_3_1()}
    for side, seed in m.TABLE_3_1_BRAM_PERCENT.items():
        r = rows[side]
        assert round(r["order_n_percent"], 2) == seed["order_n"], side  # 0.55, 0.55, 0.55, 1.10, 2.19
        # the baseline model gives exactly half the dissertation's BRAM at every size (see module docstring)
        assert r["baseline_percent"] * 2 == pytest.approx(seed["baseline"], abs=0.006), side
    # O(N): 2 x 2 cells of 32 bits per row and column; baseline: 32 bits per pixel
    assert rows[128]["order_n_bits"] == 4 * 128 * 32 and rows[128]["baseline_bits"] == 128 * 128 * 32
    # baseline memory grows 4x per doubling of the side, O(N) 2x
    assert rows[256]["baseline_bits"] == 4 * rows[128]["baseline_bits"]
    assert rows[256]["order_n_bits"] == 2 * rows[128]["order_n_bits"]
    # the O(N) filter at 1280^2 still needs far less than a 128^2 baseline (Fig 3.14)
    assert rows[1280]["order_n_bram18"] < rows[128]["baseline_bram18"]


def test_group_filters_and_bram_mapping():
    assert m.memory_cells("liu", 128, 128, 2) == [64 * 64]
    assert m.memory_cells("subsampling", 130, 128, 4) == [33 * 32]
    assert m.bram18(512) == 1 and m.bram18(513) == 2 and m.bram18(1280) == 4 and m.bram18(512, 37) == 2
    assert m.memory_bram18("liu", 256, 256, 2) == m.memory_bram18("baseline", 128, 128)


def test_bad_input():
    with pytest.raises(ValueError, match="filter_name"):
        m.memory_bits("median", 128, 128)
    with pytest.raises(ValueError, match="width must be > 0"):
        m.memory_bits("baseline", 0, 128)
    with pytest.raises(TypeError, match="height must be an int"):
        m.memory_bits("baseline", 128, 12.5)
    with pytest.raises(ValueError, match="pos must be"):
        m.pack_info(0, 0, 2**30)
    with pytest.raises(ValueError, match="bk and p"):
        m.pack_info(2, 0, 0)
    with pytest.raises(ValueError, match="32-bit"):
        m.unpack_info(2**32)
