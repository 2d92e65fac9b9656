"""Every project the plugins generate passes ``g++ -fsyntax-only -Wall`` (no synthesis tool here), with no
warning from our headers except the HLS idioms g++ flags in hls4ml's own headers too (``-Wunknown-pragmas``,
``-Wunused-label``): fused short-skip and BM
layers, Vivado and Vitis, io_parallel and io_stream."""

from __future__ import annotations

import os
import shutil
import subprocess

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hls4ml
import keras
import pytest

from bm_ops.keras import BMConv2D

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")

OUR_HEADERS = ("nnet_shortskip.h", "nnet_bm_conv.h")


def _model():
    """Fused short-skip block (BN kept: explicit conv type) followed by a BM conv with stride 2."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 5, 3), name="x")
    y = keras.layers.Conv2D(3, 3, padding="same", name="c0")(inp)
    y = keras.layers.BatchNormalization(name="bn0")(y)
    y = keras.layers.ReLU(name="r0")(y)
    x = keras.layers.Add(name="a0")([inp, y])
    return keras.Model(inp, BMConv2D(2, 3, strides=2, padding="same", name="bm")(x))


@pytest.mark.parametrize("backend", ["Vivado", "Vitis"])
@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_generated_project_passes_gxx_syntax_check(tmp_path, backend, io_type):
    model = _model()
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    cfg["Model"]["ShortSkipFusion"] = True
    cfg["LayerName"]["c0"]["Precision"]["result"] = "fixed<20,8>"
    cfg["LayerName"]["bm"]["ReuseFactor"] = 3  # a valid value for 27 taps (hls4ml would round 2)
    hm = hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(tmp_path), io_type=io_type, backend=backend
    )
    kinds = {layer.class_name for layer in hm.get_layers()}
    assert {"ShortSkipConv2D", "BMConv2D", "BatchNormalization"} <= kinds or {
        "ShortSkipConv2D",
        "BMConv2D",
    } <= kinds
    hm.write()
    fw = tmp_path / "firmware"
    for header in OUR_HEADERS:
        assert (fw / "nnet_utils" / header).is_file()
    cmd = [
        "g++",
        "-fsyntax-only",
        "-Wall",
        "-std=c++14",
        f"-I{fw}",
        f"-I{fw / 'ap_types'}",
        str(fw / "myproject.cpp"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # HLS pragmas are unknown to g++ and loop labels name HLS loops (hls4ml's own headers give the same
    # [-Wunknown-pragmas] / [-Wunused-label] notes): any other warning located in our headers fails the test
    hls_idioms = ("-Wunknown-pragmas", "-Wunused-label")
    ours = [
        ln
        for ln in proc.stderr.splitlines()
        if any(h in ln for h in OUR_HEADERS) and "warning" in ln and not any(i in ln for i in hls_idioms)
    ]
    assert not ours, "\n".join(ours)
