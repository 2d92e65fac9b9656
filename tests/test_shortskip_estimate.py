"""Stream-memory / BRAM18 estimator: mapping rule, hls4ml's stream depths, and the Table 4.5 analogue."""

from __future__ import annotations

import os
import re

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest

from hls4ml_skiptrim.hls4ml.estimate import bram18_for, compare, stream_memory  # noqa: E402
from hwreshape.examples.shortskip import resnet_variant, table_4_5_estimates, to_hls  # noqa: E402


def test_bram18_mapping_rule():
    assert bram18_for(2, 4096) == 0  # depth <= 2: SRL/registers
    assert bram18_for(64, 16) == 0  # 1024 bits: SRL
    assert bram18_for(65, 16) == 1  # 1040 bits: one BRAM18 (1024 x 18)
    assert bram18_for(1024, 256) == 15  # 256 bits = 15 x 18-bit columns, 1024 deep
    assert bram18_for(1156, 256) == 24  # 1156 > 1024: 8 x 36-bit columns, 3 x 512 deep
    assert bram18_for(16384, 1) == 1
    assert bram18_for(0, 64) == 0
    with pytest.raises(ValueError, match="depth"):
        bram18_for(-1, 8)


def test_stream_depths_match_written_pragmas(tmp_path):
    """The estimator reads depth H*W (hls4ml's StreamVariableConverter); the written C++ uses the same depth."""
    model = resnet_variant("short", (6, 5, 3), filters=4, n_blocks=1, head=False)
    hm = to_hls(model, fuse=False, io_type="io_stream", output_dir=str(tmp_path))
    est = stream_memory(hm)
    hm.write()
    src = (tmp_path / "firmware" / "myproject.cpp").read_text()
    written = dict(re.findall(r"#pragma HLS STREAM variable=(\w+) depth=(\d+)", src))
    streams = [b for b in est.buffers if b.kind == "stream"]
    assert streams and all(int(written[b.name]) == b.depth for b in streams)
    convs = [b for b in streams if b.layer.endswith("_conv") and not b.layer.startswith("zp2d_")]
    assert len(convs) == 3 and all(b.depth == 6 * 5 and b.width == 4 * 16 for b in convs)
    pads = [b for b in streams if b.layer.startswith("zp2d_")]  # ZeroPadding2D before each 3x3 conv
    assert len(pads) == 3 and all(b.depth == (6 + 2) * (5 + 2) for b in pads)
    assert est.total_bits == sum(b.depth * b.width * b.count for b in est.buffers if b.kind != "port")


def test_fused_layer_drops_clone_and_add_streams(tmp_path):
    model = resnet_variant("short", (8, 8, 3), filters=8, n_blocks=1, head=False)
    plain = stream_memory(to_hls(model, fuse=False, output_dir=str(tmp_path / "p")))
    fused = stream_memory(to_hls(model, fuse=True, output_dir=str(tmp_path / "f")))
    plain_layers, fused_layers = plain.by_layer(), fused.by_layer()
    assert any(name.startswith("clone_") for name in plain_layers)
    assert not any(name.startswith("clone_") for name in fused_layers)
    assert {"b0a_conv_shortskip", "b0b_conv_shortskip"} <= set(fused_layers)
    # per block half: Clone (2 copies) + conv + BN + ReLU + Add streams become the fused layer's one stream
    assert plain.n_fifos - fused.n_fifos == 2 * 5
    assert fused.bram18 < plain.bram18 and fused.total_bits < plain.total_bits


def test_table_4_5_analogue_ordering():
    est = table_4_5_estimates(input_shape=(16, 16, 3), filters=8, n_blocks=2)
    b = {k.split(" (")[0]: v.bram18 for k, v in est.items()}
    assert b["no skip"] < b["long skip"] < b["short skip"]
    assert b["fused short"] <= 0.84 * b["long skip"]
    table = compare(est)
    assert "fused short (4.4.d)" in table and "1.00" in table


def test_io_parallel_is_registers_only(tmp_path):
    model = resnet_variant("short", (4, 4, 2), filters=2, n_blocks=1, head=False)
    est = stream_memory(to_hls(model, io_type="io_parallel", output_dir=str(tmp_path)))
    assert est.bram18 == 0 and est.total_bits > 0
    assert {b.kind for b in est.buffers} <= {"registers", "port"}


def test_bad_input():
    with pytest.raises(TypeError, match="ModelGraph"):
        stream_memory(object())
    with pytest.raises(ValueError):
        compare({})
    with pytest.raises(ValueError, match="variant"):
        resnet_variant("medium")
