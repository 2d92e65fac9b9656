"""hls4ml BM conv layer: registration, conversion-time errors, C-simulation == bm_ops.fixedpoint bit for bit."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bm_ops.fixedpoint import BMFixedConfig, FixedType, bm_conv2d_fixed, float_error_bound, quantize_bm_layer
from bm_ops.functional import bm_conv2d, to_log_weights
from bm_ops.hls4ml import BACKENDS, register
from bm_ops.hls4ml.config import valid_reuse_factors
from bm_ops.hls4ml.convert import bm_layer_model


def _weights(f, c, k, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(f, c, k, k)) * scale
    w[rng.random(w.shape) < 0.25] = 0.0
    w[:, 0, 0, 0] = rng.normal(size=f) + 0.05
    vp, vn = to_log_weights(w)
    return vp, vn, rng.normal(size=f)


def _csim_vs_reference(tmp_path, it, rt, cfg, f, c, k, hw, stride, pads, io_type, backend, seed, rf=1):
    vp, vn, b = _weights(f, c, k, seed)
    rng = np.random.default_rng(seed + 1)
    x = rng.integers(it.min_raw, it.max_raw + 1, size=(5, c, *hw))
    x[rng.random(x.shape) < 0.15] = 0
    m = bm_layer_model(
        vp,
        vn,
        b,
        (hw[0], hw[1], c),
        it,
        rt,
        stride,
        pads,
        cfg,
        io_type,
        backend,
        str(tmp_path / "prj"),
        reuse_factor=rf,
    )
    m.compile()
    xf = np.ascontiguousarray(it.to_float(x).transpose(0, 2, 3, 1).reshape(len(x), -1))
    y = np.asarray(m.predict(xf)).reshape(len(x), -1)
    layer = quantize_bm_layer(vp, vn, b, it, rt, cfg)
    ref = rt.to_float(bm_conv2d_fixed(x, layer, stride, pads)).transpose(0, 2, 3, 1).reshape(len(x), -1)
    np.testing.assert_array_equal(y, ref)
    return m


def test_register_idempotent_and_both_backends():
    import hls4ml  # noqa: F401
    from hls4ml.backends import get_backend
    from hls4ml.model.layers import layer_map

    register()
    register()
    assert layer_map["BMConv2D"].__module__ == "bm_ops.hls4ml.layer"
    assert BACKENDS == ("Vivado", "Vitis")
    from hls4ml.model.flow import get_flow

    for name in BACKENDS:
        # opt-in: the header is copied by a write-flow pass into projects with a BM layer, never into every project
        assert not any(str(p).endswith("nnet_bm_conv.h") for p in get_backend(name).custom_source.values())
        assert f"{name.lower()}:bm_header" in get_flow(f"{name.lower()}:write").optimizers
    convert = get_flow("convert").optimizers  # quantisation right before hls4ml's precision inference
    assert convert.index("bm_quantize") == convert.index("infer_precision_types") - 1


def test_csim_bit_exact_io_parallel_vivado(tmp_path):
    it = FixedType(10, 4)
    rt = FixedType(14, 6, True, "RND", "SAT")  # exercises the result type's own rounding + saturation
    _csim_vs_reference(
        tmp_path, it, rt, BMFixedConfig(), 3, 2, 3, (6, 7), (2, 1), (1, 0, 1, 1), "io_parallel", "Vivado", 0
    )


@pytest.mark.parametrize(
    "backend,io_type,rf",
    [
        ("Vitis", "io_parallel", 36),  # 18 taps x 2 filter groups: one tap of 2 filters per clock
        pytest.param("Vivado", "io_stream", 6, marks=pytest.mark.slow),  # 3 taps of all 4 filters per clock
    ],
)
def test_csim_bit_exact_reuse_factor(tmp_path, backend, io_type, rf):
    """ReuseFactor > 1 on the other backend / IO type pairs: hls4ml C-sim == bm_conv2d_fixed bit for bit."""
    it = FixedType(9, 3, False)
    rt = FixedType(16, 7, True, "TRN", "SAT")
    _csim_vs_reference(
        tmp_path, it, rt, BMFixedConfig(), 4, 2, 3, (5, 6), (1, 2), (1, 1, 0, 1), io_type, backend, 2, rf
    )


@pytest.mark.slow
@settings(max_examples=3, deadline=None)
@given(
    signed=st.booleans(),
    width=st.integers(6, 16),
    integer=st.integers(1, 6),
    rw=st.integers(10, 20),
    ri=st.integers(4, 10),
    rmode=st.sampled_from([("TRN", "WRAP"), ("RND", "SAT"), ("TRN", "SAT")]),
    k=st.integers(1, 3),
    stride=st.integers(1, 2),
    pad=st.integers(0, 1),
    lt=st.integers(4, 9),
    io_backend=st.sampled_from([("io_stream", "Vitis"), ("io_parallel", "Vitis"), ("io_stream", "Vivado")]),
    seed=st.integers(0, 1000),
    rf_pick=st.integers(0, 100),
)
def test_csim_bit_exact_random(
    tmp_path_factory, signed, width, integer, rw, ri, rmode, k, stride, pad, lt, io_backend, seed, rf_pick
):
    it = FixedType(width, min(integer, width), signed)
    rt = FixedType(rw, ri, True, *rmode)
    cfg = BMFixedConfig(log_table_bits=lt, exp_table_bits=max(2, lt - 1), log_frac_bits=max(10, lt))
    valid = valid_reuse_factors(2 * k * k, 2)  # 2 channels x k x k taps, 2 filters
    rf = valid[rf_pick % len(valid)]
    _csim_vs_reference(
        tmp_path_factory.mktemp("r"),
        it,
        rt,
        cfg,
        2,
        2,
        k,
        (5, 6),
        (stride, stride),
        (pad,) * 4,
        *io_backend,
        seed,
        rf,
    )


# ------------------------------------------------------------------------------------------ frontends


def _torch_net(f=3, k=3, stride=1, pad=1):
    from bm_ops.torch import BMConv2d

    torch.manual_seed(0)
    net = torch.nn.Sequential(BMConv2d(2, f, k, stride=stride, padding=pad))
    with torch.no_grad():
        net[0].v_neg[:, 1] = -float("inf")
    return net.eval()


def _torch_convert(net, tmp_path, io_type="io_parallel", layer_cfg=None):
    import hls4ml

    cfg = hls4ml.utils.config_from_pytorch_model(
        net,
        (2, 6, 6),
        default_precision="ap_fixed<16,6>",
        channels_last_conversion="full",
        transpose_outputs=False,
        granularity="name",
    )
    cfg["LayerName"].setdefault("_0", {})
    for name in cfg["LayerName"]:
        cfg["LayerName"][name]["Precision"] = (
            {"result": "ap_fixed<16,6>"} if name != "_0" else {"result": "ap_fixed<20,8,RND,SAT>"}
        )
    if layer_cfg:
        cfg["LayerName"]["_0"].update(layer_cfg)
    return hls4ml.converters.convert_from_pytorch_model(
        net, hls_config=cfg, output_dir=str(tmp_path / "t"), io_type=io_type
    )


@pytest.mark.slow
def test_torch_frontend_csim_matches_reference_and_float(tmp_path):
    net = _torch_net()
    m = _torch_convert(net, tmp_path)
    m.compile()
    it, rt = FixedType(16, 6), FixedType(20, 8, True, "RND", "SAT")
    rng = np.random.default_rng(3)
    x_raw = rng.integers(-2000, 2000, size=(4, 2, 6, 6))
    x = it.to_float(x_raw)
    # channels_last_conversion='full': hls4ml takes the torch (NCHW) layout and transposes internally
    y = np.asarray(m.predict(np.ascontiguousarray(x.reshape(4, -1)))).reshape(4, 6, 6, 3)
    conv = net[0]
    vp, vn, b = (t.detach().numpy().astype(np.float64) for t in (conv.v_pos, conv.v_neg, conv.bias))
    layer = quantize_bm_layer(vp, vn, b, it, rt)
    ref = rt.to_float(bm_conv2d_fixed(x_raw, layer, 1, 1)).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(y, ref)
    # float BM layer (torch) within the documented approximation bound
    with torch.no_grad():
        yt = net(torch.tensor(x, dtype=torch.float32)).numpy().astype(np.float64)
    bound = (
        float_error_bound(x, vp, vn, layer, 1, 1) + np.abs(b - layer.bias / 2**16)[None, :, None, None] + 1e-5
    )
    assert np.all(np.abs(y.transpose(0, 3, 1, 2) - yt) <= bound)


def test_torch_conversion_time_errors(tmp_path):
    import hls4ml  # noqa: F401

    register()
    net = _torch_net()
    with torch.no_grad():  # a filter with only -inf weights
        net[0].v_pos[1] = -float("inf")
        net[0].v_neg[1] = -float("inf")
    with pytest.raises(ValueError, match=r"'_0'.*filter\(s\) \[1\] have only -inf"):
        _torch_convert(net, tmp_path)
    net = _torch_net()
    with pytest.raises(ValueError, match="log_frac_bits=4 is narrower than exp_table_bits=10"):
        _torch_convert(net, tmp_path, layer_cfg={"LogFracBits": 4})
    with pytest.raises(ValueError, match="weight_bits=3 too narrow"):
        _torch_convert(net, tmp_path, layer_cfg={"WeightBits": 3})
    net[0].dilation = (2, 2)
    with pytest.raises(ValueError, match="dilation=\\(2, 2\\) is not supported"):
        _torch_convert(net, tmp_path)


def test_layer_level_errors():
    vp, vn, b = _weights(2, 1, 3)
    with pytest.raises(ValueError, match="BM layers need a fixed-point"):
        FixedType.from_hls(type("FloatPrecisionType", (), {})(), where="x")
    with pytest.raises(ValueError, match="io_type"):
        bm_layer_model(vp, vn, b, (5, 5, 1), FixedType(8, 3), FixedType(16, 6), io_type="io_serial")
    with pytest.raises(ValueError, match="input has 2 channels, weights expect 1"):
        bm_layer_model(vp, vn, b, (5, 5, 2), FixedType(8, 3), FixedType(16, 6))


def test_float_model_agreement_helper_consistent():
    """The reference used by the C-sim tests agrees with the float layer within its bound (non-compiled check)."""
    it, rt = FixedType(12, 4), FixedType(24, 10)
    vp, vn, b = _weights(3, 2, 3, seed=5)
    layer = quantize_bm_layer(vp, vn, b, it, rt)
    x = it.to_float(np.random.default_rng(0).integers(it.min_raw, it.max_raw, size=(3, 2, 6, 6)))
    y = rt.to_float(bm_conv2d_fixed(it.from_float(x), layer, 1, 1))
    yf = bm_conv2d(x, vp, vn, layer.bias / 2.0**16, 1, 1)
    assert np.all(np.abs(y - yf) <= float_error_bound(x, vp, vn, layer, 1, 1))


def test_plugin_loads_through_hls4ml_plugin_loader():
    """hls4ml's own loader (entry point / HLS4ML_BACKEND_PLUGINS) registers everything at ``import hls4ml``."""
    import os
    import subprocess
    import sys

    code = (
        "import sys, hls4ml\n"
        "assert 'torch' not in sys.modules, 'plugin must not import torch at import hls4ml'\n"
        "from hls4ml.model.layers import layer_map\n"
        "from hls4ml.converters.keras_v3._base import registry\n"
        "from hls4ml.converters.pytorch_to_hls import layer_handlers\n"
        "from hls4ml.utils.torch import CustomFXTracer\n"
        "assert 'BMConv2D' in layer_map and 'bm_ops.keras.BMConv2D' in registry and 'BMConv2d' in layer_handlers\n"
        "assert getattr(CustomFXTracer.is_leaf_module, '_bm_ops_wrapped', False)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, HLS4ML_BACKEND_PLUGINS="bm_ops.hls4ml")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().endswith("ok")


def _keras_model(padding="same", strides=2, dead=False):
    import keras

    from bm_ops.keras import BMConv2D

    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 7, 2), name="bm_in")
    layer = BMConv2D(3, 3, strides=strides, padding=padding, name="bmk")
    model = keras.Model(inp, layer(inp))
    if dead:
        vp = keras.ops.convert_to_numpy(layer.v_pos).copy()
        vn = keras.ops.convert_to_numpy(layer.v_neg).copy()
        vp[..., 2] = -np.inf
        vn[..., 2] = -np.inf
        layer.v_pos.assign(vp)
        layer.v_neg.assign(vn)
    return model, layer


def _keras_convert(model, tmp_path, io_type):
    import hls4ml

    register()
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", default_precision="ap_fixed<16,6>")
    cfg["LayerName"]["bm_in"]["Precision"]["result"] = "ap_fixed<12,4>"
    cfg["LayerName"]["bmk"]["Precision"]["result"] = "ap_fixed<18,7,RND,SAT>"
    return hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(tmp_path / "k"), io_type=io_type, backend="Vitis"
    )


def test_keras_conversion_time_errors(tmp_path):
    model, _ = _keras_model(dead=True)
    with pytest.raises(ValueError, match=r"'bmk'.*filter\(s\) \[2\] have only -inf"):
        _keras_convert(model, tmp_path, "io_parallel")


@pytest.mark.slow
def test_keras_frontend_csim_io_stream_vitis(tmp_path):
    """Keras 3 BMConv2D ('same', stride 2: asymmetric padding) -> hls4ml Vitis io_stream C-sim == reference."""
    model, layer = _keras_model()
    m = _keras_convert(model, tmp_path, "io_stream")
    m.compile()
    it, rt = FixedType(12, 4), FixedType(18, 7, True, "RND", "SAT")
    rng = np.random.default_rng(1)
    x_raw = rng.integers(it.min_raw, it.max_raw + 1, size=(4, 6, 7, 2))
    x = it.to_float(x_raw)
    y = np.asarray(m.predict(np.ascontiguousarray(x.reshape(4, -1)))).reshape(4, 3, 4, 3)
    import keras

    vp, vn, b = (
        keras.ops.convert_to_numpy(t).astype(np.float64) for t in (layer.v_pos, layer.v_neg, layer.bias)
    )
    vp, vn = vp.transpose(3, 2, 0, 1), vn.transpose(3, 2, 0, 1)
    q = quantize_bm_layer(vp, vn, b, it, rt)
    ref = rt.to_float(bm_conv2d_fixed(x_raw.transpose(0, 3, 1, 2), q, 2, (0, 1, 1, 1))).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(y, ref)
    yk = np.asarray(model(x.astype(np.float32)), dtype=np.float64)
    assert np.abs(y - yk).max() < 0.05 * max(1.0, np.abs(yk).max())
