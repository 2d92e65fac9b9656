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


def test_occupancy_model_hand_computed(tmp_path):
    """4x4x1 input, one 3x3 'same' conv, long skip: worked out by hand from the model's rules.

    Input word j arrives at cycle j and the Clone writes both copies then.  ZeroPadding2D (6x6) emits padded
    word k at cycle k, reading input (r-1, c-1) there: inputs 0-3 at cycles 7-10, 4-7 at 13-16, 8-11 at 19-22,
    12-15 at 25-28.  The conv emits output 0 when it has padded word (2, 2) = 14 (cycle 14), so the Add reads
    skip word 0 at cycle 14 while the Clone has written 15 skip words: occupancy 15 (depth 16, the frame).
    The ZeroPadding2D copy: at cycle 15, 16 words written, 6 read (cycles 7-10, 13, 14): occupancy 10.
    """
    import hls4ml
    import keras

    from hls4ml_skiptrim.hls4ml.estimate import fifo_occupancy

    inp = keras.Input((4, 4, 1), name="x")
    y = keras.layers.Conv2D(1, 3, padding="same", name="c0")(inp)
    model = keras.Model(inp, keras.layers.Add(name="a0")([y, inp]))
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="model")
    hm = hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(tmp_path), io_type="io_stream"
    )
    assert fifo_occupancy(hm) == {"x": 1, "x_cpy1": 10, "x_cpy2": 15, "zp2d_c0": 1, "c0": 1}
    opt = sorted((b.layer, b.depth) for b in stream_memory(hm, "optimized").buffers if b.kind == "stream")
    assert opt == [("c0", 2), ("clone_x", 11), ("clone_x", 16), ("zp2d_c0", 2)]  # max occupancy + 1 (hls4ml)


def test_optimized_depths_and_weights(tmp_path):
    """Optimised depths never exceed hls4ml's defaults; only FIFOs waiting for a parallel path stay deep.
    Line buffers are SRL (0 BRAM); Resource-strategy weights go to BRAM by reuse factor, Latency ones do not."""
    model = resnet_variant("long", (8, 8, 3), filters=8, n_blocks=1, head=False)
    hm = to_hls(model, fuse=False, output_dir=str(tmp_path / "l"))
    default, opt = stream_memory(hm), stream_memory(hm, "optimized")
    d = {b.name: b.depth for b in default.buffers if b.kind == "stream"}
    o = {b.name: b.depth for b in opt.buffers if b.kind == "stream"}
    assert set(d) == set(o) and all(o[k] <= d[k] for k in d)
    deep = [k for k in o if o[k] > 2]
    assert len(deep) >= 1 and any("cpy" in k for k in deep)  # the skip copy waits for the two convs
    lbs = [b for b in default.buffers if b.kind == "line_buffer"]
    assert lbs and all(b.bram18 == 0 and b.srl_luts > 0 for b in lbs)
    assert stream_memory(hm, include_weights=True).weight_bram18 == 0  # Latency: weights in LUT ROM
    res = to_hls(model, fuse=False, output_dir=str(tmp_path / "r"), Strategy="Resource", ReuseFactor=8)
    est = stream_memory(res, "optimized", include_weights=True)
    w = [b for b in est.buffers if b.kind == "weights" and b.bram18 > 0]
    assert w and all(b.depth == res.graph[b.layer].get_attr("reuse_factor") > 1 for b in w)
    assert est.bram18_total == est.bram18 + est.weight_bram18
    with pytest.raises(ValueError, match="fifo_depths"):
        stream_memory(hm, "small")
