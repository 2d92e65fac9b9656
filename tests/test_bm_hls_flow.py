"""BM layer inside hls4ml's standard flow: every config granularity, both backends and IO types, refused on the
backends without BM C++, and ``serialize_model``/``deserialize_model``.

Quantisation runs after hls4ml's precision inference (``bm_quantize`` pass), so ``config_from_keras_model`` with
``granularity='model' | 'type' | 'name'`` (``auto`` precisions included) converts; the C-simulation equals
:func:`bm_ops.fixedpoint.bm_conv2d_fixed` bit for bit for the formats the layer was quantised for.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hls4ml
import keras
import numpy as np
import pytest

from bm_ops.fixedpoint import FixedType, bm_conv2d_fixed, quantize_bm_layer
from bm_ops.hls4ml.convert import bm_layer_model
from bm_ops.keras import BMConv2D


def _model():
    keras.utils.set_random_seed(1)
    inp = keras.Input((5, 6, 2), name="bm_in")
    layer = BMConv2D(3, 3, padding="same", name="bmk")
    return keras.Model(inp, layer(inp)), layer


def _convert(model, tmp, granularity, backend, io_type):
    cfg = hls4ml.utils.config_from_keras_model(
        model, granularity=granularity, backend=backend, default_precision="fixed<14,5>"
    )
    return hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(tmp), io_type=io_type, backend=backend
    )


def _bm_node(hm):
    (node,) = [n for n in hm.get_layers() if n.class_name == "BMConv2D"]
    return node


def _reference(layer, state, x_raw):
    vp, vn, b = (
        keras.ops.convert_to_numpy(t).astype(np.float64) for t in (layer.v_pos, layer.v_neg, layer.bias)
    )
    q = quantize_bm_layer(
        vp.transpose(3, 2, 0, 1), vn.transpose(3, 2, 0, 1), b, state.input_t, state.result_t, state.cfg
    )
    y = bm_conv2d_fixed(x_raw.transpose(0, 3, 1, 2), q, 1, (1, 1, 1, 1))
    return state.result_t.to_float(y).transpose(0, 2, 3, 1)


@pytest.mark.parametrize("granularity", ["model", "type", "name"])
def test_every_granularity_converts_on_both_backends_and_io_types(tmp_path, granularity):
    model, _ = _model()
    for backend in ("Vivado", "Vitis"):
        for io_type in ("io_parallel", "io_stream"):
            hm = _convert(model, tmp_path / f"{backend}_{io_type}", granularity, backend, io_type)
            state = _bm_node(hm).fixed_state()
            assert state.input_t == FixedType(14, 5)
            if granularity != "model":  # hls4ml's type/name configs say 'auto': the exact accumulator type
                assert state.result_t == FixedType(
                    state.accum_bits, state.accum_bits - state.cfg.accum_frac_bits
                )
            else:
                assert state.result_t == FixedType(14, 5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "granularity,backend,io_type", [("type", "Vivado", "io_parallel"), ("name", "Vitis", "io_stream")]
)
def test_granularity_csim_bit_exact(tmp_path, granularity, backend, io_type):
    model, layer = _model()
    hm = _convert(model, tmp_path / "prj", granularity, backend, io_type)
    state = _bm_node(hm).fixed_state()
    hm.compile()
    rng = np.random.default_rng(0)
    x_raw = rng.integers(state.input_t.min_raw, state.input_t.max_raw + 1, size=(4, 5, 6, 2))
    x_raw[rng.random(x_raw.shape) < 0.15] = 0
    y = np.asarray(hm.predict(np.ascontiguousarray(state.input_t.to_float(x_raw).reshape(4, -1)))).reshape(
        4, 5, 6, 3
    )
    np.testing.assert_array_equal(y, _reference(layer, state, x_raw))


@pytest.mark.parametrize("backend", ["Quartus", "oneAPI", "Catapult"])
def test_backends_without_bm_cpp_raise_at_conversion(tmp_path, backend):
    rng = np.random.default_rng(0)
    vp, vn = rng.normal(size=(2, 1, 3, 3)), rng.normal(size=(2, 1, 3, 3))
    with pytest.raises(
        ValueError, match=f"BMConv2D layer 'bm0'.*Vivado and Vitis backends only, not '{backend}'"
    ):
        bm_layer_model(
            vp,
            vn,
            None,
            (5, 5, 1),
            FixedType(8, 3),
            FixedType(16, 6),
            backend=backend,
            output_dir=str(tmp_path),
        )


def _files(root):
    stamp = next(
        ln.split(":", 1)[1].strip()
        for ln in (root / "hls4ml_config.yml").read_text().splitlines()
        if ln.startswith("Stamp:")
    )
    return {
        str(f.relative_to(root)): f.read_bytes().replace(stamp.encode(), b"STAMP")
        for f in sorted((root / "firmware").rglob("*"))
        if f.is_file()
    }


def test_serialize_model_round_trip(tmp_path):
    from hls4ml.utils.serialization import deserialize_model, serialize_model

    model, _ = _model()
    hm = _convert(model, tmp_path / "orig", "name", "Vitis", "io_stream")
    hm.write()
    serialize_model(hm, tmp_path / "bm.fml")
    loaded = deserialize_model(tmp_path / "bm.fml", output_dir=tmp_path)
    assert _bm_node(loaded).fixed_state() == _bm_node(hm).fixed_state()
    loaded.config.config["OutputDir"] = str(tmp_path / "loaded")
    loaded.write()
    orig, back = _files(tmp_path / "orig"), _files(tmp_path / "loaded")
    assert "firmware/nnet_utils/nnet_bm_conv.h" in orig
    assert orig == back


@pytest.mark.parametrize(
    "k,hw,stride,pads",
    [
        (3, (6, 7), (2, 1), (1, 0, 1, 1)),  # stride 2 rows, asymmetric padding
        pytest.param(3, (5, 4), (1, 2), (2, 2, 0, 2), marks=pytest.mark.slow),  # window rows fully in padding
    ],
)
def test_io_stream_line_buffer_bit_exact(tmp_path, k, hw, stride, pads):
    """io_stream keeps a line buffer (not the frame) and emits outputs as their last pixel arrives (bottom
    padding rows wait for earlier rows): C-sim == bm_conv2d_fixed bit for bit."""
    from bm_ops.fixedpoint import BMFixedConfig

    rng = np.random.default_rng(5)
    w = rng.normal(size=(3, 2, k, k))
    w[rng.random(w.shape) < 0.2] = 0.0
    w[:, 0, 0, 0] = rng.normal(size=3) + 0.05
    from bm_ops.functional import to_log_weights

    vp, vn = to_log_weights(w)
    b = rng.normal(size=3)
    it, rt = FixedType(10, 4), FixedType(16, 7, True, "RND", "SAT")
    m = bm_layer_model(
        vp,
        vn,
        b,
        (*hw, 2),
        it,
        rt,
        stride,
        pads,
        BMFixedConfig(),
        "io_stream",
        "Vivado",
        str(tmp_path / "prj"),
    )
    m.compile()
    x = rng.integers(it.min_raw, it.max_raw + 1, size=(4, 2, *hw))
    x[rng.random(x.shape) < 0.15] = 0
    y = np.asarray(m.predict(np.ascontiguousarray(it.to_float(x).transpose(0, 2, 3, 1).reshape(4, -1))))
    q = quantize_bm_layer(vp, vn, b, it, rt, BMFixedConfig())
    ref = rt.to_float(bm_conv2d_fixed(x, q, stride, pads)).transpose(0, 2, 3, 1).reshape(4, -1)
    np.testing.assert_array_equal(y.reshape(4, -1), ref)


def _struct(text, base):
    """``{name: value}`` of the ``static const`` members of the first ``struct configN : nnet::<base>``."""
    import re

    body = re.search(r"struct config\d+ : nnet::" + base + r" \{(.*?)\n\};", text, re.S).group(1)
    return {k: int(v) for k, v in re.findall(r"static const (?:unsigned|int) (\w+) = (-?\d+);", body)}


def test_io_stream_buffer_at_most_twice_hls4ml_conv_line_buffer(tmp_path):
    """32x32x16 3x3 'same', io_stream, fixed<14,5> input: the BM line buffer (lb_size = (filt_height-1) rows +
    filt_width pixels of ap_int<log_bits> logs + 2-bit signs per channel) against hls4ml's Conv2D line buffer ((filt_height-1) x n_chan
    ap_shift_reg of depth in_width, input element type) -- sizes from the written projects' parameters.h."""
    import re

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 16), name="x")
    plain = keras.Model(inp, keras.layers.Conv2D(16, 3, padding="same", name="c")(inp))
    bm = keras.Model(inp, BMConv2D(16, 3, padding="same", name="c")(inp))
    sizes = {}
    for tag, model in (("conv", plain), ("bm", bm)):
        hm = _convert(model, tmp_path / tag, "model", "Vivado", "io_stream")
        hm.write()
        params = (tmp_path / tag / "firmware" / "parameters.h").read_text()
        if tag == "conv":
            cfg = _struct(params, "conv2d_config")
            defines = (tmp_path / tag / "firmware" / "defines.h").read_text()
            elem = int(re.search(r"typedef nnet::array<ap_fixed<(\d+),\d+>, 16\*1> \w+;", defines).group(1))
            sizes[tag] = (cfg["filt_height"] - 1) * cfg["n_chan"] * cfg["in_width"] * elem
        else:
            cfg = _struct(params, "bm_conv2d_config")  # lb_size pixels (nnet_bm_conv.h)
            assert cfg["lb_size"] == (cfg["filt_height"] - 1) * cfg["in_width"] + cfg["filt_width"]
            sizes[tag] = cfg["lb_size"] * cfg["n_chan"] * (cfg["log_bits"] + 2)
    assert sizes["conv"] == 2 * 16 * 34 * 14  # fixed<14,5>, padded width 34 (ZeroPadding2D before the conv)
    assert sizes["bm"] <= 2 * sizes["conv"], sizes
