"""Registration (entry point, idempotency), config switches, qualification and bad input of the fusion pass.

Conversion only (no C++ compile): fast.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hls4ml
import keras
import pytest

from hls4ml_skiptrim.hls4ml.layers import add_can_overflow, precision_range  # noqa: E402

L = keras.layers


def _run_fresh(code: str) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=240
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_entry_point_registers_on_plain_import_hls4ml():
    out = _run_fresh(
        """
        import sys
        import hls4ml
        assert 'hls4ml_skiptrim.hls4ml.plugin' in sys.modules, 'entry point did not load the plugin'
        from hls4ml.model.layers import layer_map
        from hls4ml.model.flow import get_flow
        from hls4ml.model.optimizer import get_optimizer
        from hls4ml.backends import get_backend
        from hls4ml_skiptrim.hls4ml.plugin import is_registered, writer_flows
        assert is_registered()
        assert 'ShortSkipConv2D' in layer_map
        assert 'vivado:fuse_short_skip' in get_flow('vivado:optimize').optimizers
        for b in ('vivado', 'vitis'):
            get_optimizer(b + ':shortskipconv2d_config_template')
            get_optimizer(b + ':shortskipconv2d_function_template')
            # opt-in: the header is written by a write-flow pass into projects with a fused layer only
            assert not any(k.endswith('nnet_shortskip.h') for k in get_backend(b).get_custom_source())
            assert all(b + ':shortskip_header' in get_flow(f).optimizers for f in writer_flows(b))
        assert 'shortskip_config' in get_flow('optimize').optimizers
        print('OK')
        """
    )
    assert out.strip().endswith("OK")


def test_import_is_light_and_register_idempotent():
    out = _run_fresh(
        """
        import sys
        import hls4ml_skiptrim
        heavy = [m for m in ('hls4ml', 'tensorflow', 'keras', 'torch') if m in sys.modules]
        assert not heavy, heavy
        first = hls4ml_skiptrim.register()   # hls4ml's entry point already registered during 'import hls4ml'
        second = hls4ml_skiptrim.register()
        assert first is False and second is False, (first, second)
        from hls4ml_skiptrim.hls4ml.plugin import register
        assert register(register_backend=None, register_writer=None) is False
        print('OK')
        """
    )
    assert out.strip().endswith("OK")


def _short_net(kernel=3, act="relu", bn=True, extra_output=False, c=4, hw=6, stride=1):
    inp = keras.Input((hw, hw, c), name="x")
    y = L.Conv2D(c, kernel, padding="same", strides=stride, name="c0")(inp)
    if bn:
        y = L.BatchNormalization(name="bn0")(y)
    y = L.Activation(act, name="r0")(y)
    skip = inp if stride == 1 else L.AveragePooling2D(stride, name="pool")(inp)
    out = L.Add(name="a0")([y, skip])
    return keras.Model(inp, [out, y] if extra_output else out)


ON = {"ShortSkipFusion": True}


def _convert(
    model, io_type="io_stream", backend="Vivado", model_cfg=ON, layer_cfg=None, granularity="name", tmp=None
):
    cfg = hls4ml.utils.config_from_keras_model(model, granularity=granularity, backend=backend)
    cfg["Model"].update(model_cfg or {})
    for name, extra in (layer_cfg or {}).items():
        cfg["LayerName"][name].update(extra)
    return hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(tmp), io_type=io_type, backend=backend
    )


def _kinds(hm):
    return [layer.class_name for layer in hm.get_layers()]


@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_fused_when_enabled_off_otherwise(tmp_path, io_type):
    model = _short_net()
    hm = _convert(model, io_type, tmp=tmp_path / "on")
    assert _kinds(hm).count("ShortSkipConv2D") == 1
    assert hm.shortskip_report["a0"] == "fused into c0_shortskip"
    fused = next(layer for layer in hm.get_layers() if layer.class_name == "ShortSkipConv2D")
    assert fused.get_attr("fused_layers") == ["c0", "r0", "a0"] or fused.get_attr("fused_layers") == [
        "c0",
        "bn0",
        "r0",
        "a0",
    ]
    for tag, model_cfg in (("absent", {}), ("false", {"ShortSkipFusion": False})):
        off = _convert(model, io_type, model_cfg=model_cfg, tmp=tmp_path / tag)
        assert "ShortSkipConv2D" not in _kinds(off)
        assert not hasattr(off, "shortskip_report")  # not enabled: the plugin did not even look
    # a per-layer True enables (and requires) that one block; the others are reported as not requested
    inp = keras.Input((5, 5, 3), name="x")
    x = inp
    for i in range(2):
        y = L.Conv2D(3, 3, padding="same", name=f"c{i}")(inp if i == 0 else x)
        x = L.Add(name=f"a{i}")([L.Activation("relu", name=f"r{i}")(y), x])
    hm = _convert(keras.Model(inp, x), io_type, model_cfg={}, layer_cfg={"r1": ON}, tmp=tmp_path / "one")
    assert hm.shortskip_report == {
        "a0": "not requested (hls_config['Model']['ShortSkipFusion'] is not True)",
        "a1": "fused into c1_shortskip",
    }


def test_layer_switch_disables_one_block(tmp_path):
    inp = keras.Input((5, 5, 3), name="x")
    x = inp
    for i in range(2):
        y = L.Conv2D(3, 3, padding="same", name=f"c{i}")(x)
        y = L.Activation("relu", name=f"r{i}")(y)
        x = L.Add(name=f"a{i}")([y, x])
    hm = _convert(keras.Model(inp, x), layer_cfg={"a1": {"ShortSkipFusion": False}}, tmp=tmp_path)
    assert [layer.name for layer in hm.get_layers() if layer.class_name == "ShortSkipConv2D"] == [
        "c0_shortskip"
    ]
    assert hm.shortskip_report["a1"] == "disabled by ShortSkipFusion=False"


def test_unfused_blocks_keep_reason(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="hls4ml_skiptrim")
    # even kernel (Keras 'same' pads asymmetrically): no centre tap
    hm = _convert(_short_net(kernel=2), "io_parallel", tmp=tmp_path / "even")
    assert "ShortSkipConv2D" not in _kinds(hm)
    assert "even kernel" in hm.shortskip_report["a0"]
    assert any("even kernel" in r.getMessage() for r in caplog.records)
    # the ReLU output is also a model output: fusing would lose it
    hm = _convert(_short_net(extra_output=True), "io_parallel", tmp=tmp_path / "fan")
    assert "ShortSkipConv2D" not in _kinds(hm)
    assert "also used outside the block" in hm.shortskip_report["a0"]
    # other activation / strided block with a pooled skip: not a short-skip block at all
    for tag, net in (("tanh", _short_net(act="tanh")), ("stride", _short_net(stride=2, hw=6))):
        hm = _convert(net, "io_stream", tmp=tmp_path / tag)
        assert "ShortSkipConv2D" not in _kinds(hm)
        assert hm.shortskip_report["a0"].startswith("not a Conv2D")


def test_must_fuse_near_miss_raises_with_reason(tmp_path):
    # tanh instead of ReLU is no block at all; asking for it on any of its layers names what was found
    for layer in ("c0", "r0", "a0"):
        with pytest.raises(ValueError, match=r"ShortSkipFusion=True .*'a0'.*Activation 'r0' \(tanh\)"):
            _convert(_short_net(act="tanh"), "io_parallel", model_cfg={}, layer_cfg={layer: ON}, tmp=tmp_path)
    # strided conv with a pooled skip: the skip operand is not the conv input
    with pytest.raises(ValueError, match=r"ShortSkipFusion=True .*not the input of Conv2D 'c0'"):
        _convert(_short_net(stride=2), "io_parallel", layer_cfg={"c0": ON}, tmp=tmp_path)


@pytest.mark.parametrize(
    "model_cfg,layer_cfg,match",
    [
        ({"ShortSkipFusion": 0}, {}, r"\['ShortSkipFusion'\] must be True or False .*got 0"),
        ({"ShortSkipFusion": "False"}, {}, r"must be True or False .*got 'False'"),
        ({"ShortSkipFusion": "false"}, {}, r"must be True or False .*got 'false'"),
        (
            {"ShortSkipFussion": False},
            {},
            r"unknown hls4ml_skiptrim key; valid keys here: ShortSkipFusion, Short",
        ),
        ({"shortskipfusion": True}, {}, r"unknown hls4ml_skiptrim key"),
        ({}, {"c0": {"ShortSkipFusion": 1}}, r"\['LayerName'\]\['c0'\]\['ShortSkipFusion'\] must be True"),
        (
            {},
            {"c0": {"ShortSkipOverflow": "wrap"}},
            r"'c0'\]\['ShortSkipOverflow'\]: unknown .*ShortSkipFusion$",
        ),
        ({"ShortSkipFusion": True, "ShortSkipOverflow": "WRAP"}, {}, r"ShortSkipOverflow.*one of"),
    ],
)
def test_invalid_switch_values_and_keys_raise(tmp_path, model_cfg, layer_cfg, match):
    with pytest.raises(ValueError, match=match):
        _convert(_short_net(), "io_parallel", model_cfg=model_cfg, layer_cfg=layer_cfg, tmp=tmp_path)


def _spelled_net(relu, order, conv_act=False):
    inp = keras.Input((5, 5, 3), name="x")
    y = L.Conv2D(3, 3, padding="same", name="c0", activation="relu" if conv_act else None)(inp)
    if not conv_act:
        y = relu(y)
    return keras.Model(inp, L.Add(name="a0")([y, inp] if order == 0 else [inp, y]))


@pytest.mark.parametrize("order", [0, 1])
def test_keras_relu_spellings_fuse(tmp_path, order):
    nets = {
        "Activation": _spelled_net(L.Activation("relu", name="r0"), order),
        "ReLU": _spelled_net(L.ReLU(name="r0"), order),  # hls4ml 1.3: ThresholdedReLU(threshold=0)
        "conv_activation": _spelled_net(None, order, conv_act=True),
    }
    for tag, net in nets.items():
        hm = _convert(net, "io_parallel", tmp=tmp_path / tag)
        assert hm.shortskip_report["a0"] == "fused into c0_shortskip", (tag, hm.shortskip_report)


def test_other_backends_fusion_off_with_reason(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="hls4ml_skiptrim")
    for backend in ("Quartus", "oneAPI", "Catapult"):
        hm = _convert(_short_net(), "io_parallel", backend=backend, tmp=tmp_path / backend)
        assert "ShortSkipConv2D" not in _kinds(hm)
        assert hm.shortskip_report["a0"].startswith(f"fusion off: backend '{backend}' is not supported"), (
            backend
        )
        with pytest.raises(ValueError, match=f"ShortSkipFusion=True on a layer but backend '{backend}'"):
            _convert(
                _short_net(), "io_parallel", backend=backend, model_cfg={}, layer_cfg={"a0": ON}, tmp=tmp_path
            )
    assert any("fusion off" in r.getMessage() for r in caplog.records)


def test_layer_switch_true_on_unqualified_block_raises(tmp_path):
    with pytest.raises(ValueError, match=r"ShortSkipFusion=True .*'a0'.*even kernel"):
        _convert(
            _short_net(kernel=2), "io_parallel", layer_cfg={"c0": {"ShortSkipFusion": True}}, tmp=tmp_path
        )


def test_overflowing_skip_add_error_mode(tmp_path, caplog):
    model = _short_net(bn=False)
    narrow = {"r0": {"Precision": {"result": "fixed<12,6>"}}, "a0": {"Precision": {"result": "fixed<12,6>"}}}
    with pytest.raises(ValueError, match=r"short skip add 'a0'.*Add result type is fixed<12,6"):
        _convert(
            model,
            "io_stream",
            model_cfg={**ON, "ShortSkipOverflow": "error"},
            layer_cfg=narrow,
            tmp=tmp_path / "e",
        )
    caplog.set_level(logging.WARNING, logger="hls4ml_skiptrim")
    hm = _convert(model, "io_stream", layer_cfg=narrow, tmp=tmp_path / "w")  # default 'wrap': fused + warning
    assert "ShortSkipConv2D" in _kinds(hm)
    assert any("wraps/saturates exactly like the unfused Add" in r.getMessage() for r in caplog.records)
    # a wide enough Add type raises nothing even in 'error' mode
    wide = {"r0": {"Precision": {"result": "ufixed<10,4>"}}, "a0": {"Precision": {"result": "fixed<20,8>"}}}
    hm = _convert(
        model,
        "io_stream",
        model_cfg={**ON, "ShortSkipOverflow": "error"},
        layer_cfg=wide,
        tmp=tmp_path / "ok",
    )
    assert "ShortSkipConv2D" in _kinds(hm)
    with pytest.raises(ValueError, match="ShortSkipOverflow"):
        _convert(model, "io_stream", model_cfg={**ON, "ShortSkipOverflow": "saturate"}, tmp=tmp_path / "bad")


def test_precision_range_and_overflow_rule():
    from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType

    lo, hi, lsb = precision_range(FixedPrecisionType(8, 3, signed=True))
    assert (lo, hi, lsb) == (-4, 4 - 2**-5, 2**-5)
    lo, hi, lsb = precision_range(FixedPrecisionType(8, 3, signed=False))
    assert (lo, hi) == (0, 8 - 2**-5)
    assert precision_range(IntegerPrecisionType(4, signed=True))[:2] == (-8, 7)
    s, a = FixedPrecisionType(8, 3), FixedPrecisionType(8, 3, signed=False)
    # skip in [-4, 4), relu in [0, 8): sum in [-4, 12) needs 5 signed integer bits
    assert add_can_overflow(s, a, FixedPrecisionType(12, 4))
    assert not add_can_overflow(s, a, FixedPrecisionType(12, 5))
    with pytest.raises(TypeError):
        precision_range("fixed<8,3>")


def test_channels_first_is_rejected_with_reason(tmp_path):
    """hls4ml keeps channels_first convolutions for io_parallel; the fused layer supports channels_last only."""
    inp = keras.Input((3, 5, 5), name="x")
    y = L.Conv2D(3, 3, padding="same", data_format="channels_first", name="c0")(inp)
    y = L.Activation("relu", name="r0")(y)
    model = keras.Model(inp, L.Add(name="a0")([y, inp]))
    hm = _convert(model, "io_parallel", tmp=tmp_path / "cf")
    assert "ShortSkipConv2D" not in _kinds(hm)
    assert "channels_last only" in hm.shortskip_report["a0"]
    with pytest.raises(ValueError, match="channels_last only"):
        _convert(model, "io_parallel", layer_cfg={"a0": {"ShortSkipFusion": True}}, tmp=tmp_path / "cf2")


def test_register_does_not_break_unrelated_models(tmp_path):
    inp = keras.Input((4, 4, 2), name="x")
    out = L.Dense(3, name="d")(L.Flatten(name="f")(L.Conv2D(2, 3, name="c")(inp)))
    hm = _convert(keras.Model(inp, out), "io_parallel", tmp=tmp_path)
    assert "ShortSkipConv2D" not in _kinds(hm) and "Conv2D" in _kinds(hm)
    assert hm.shortskip_report == {}  # enabled: the report exists even without any Add


@pytest.mark.parametrize("first", ["bm_ops.hls4ml.layer", "hls4ml_skiptrim.hls4ml.passes"])
def test_importing_a_plugin_module_before_hls4ml_registers_cleanly(first):
    """Importing one of our hls4ml modules first triggers ``import hls4ml`` while it is half-imported; the
    entry point then defers and registration finishes at the end of that import (no loader warning)."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    code = textwrap.dedent(
        f"""
        import {first}
        import bm_ops.hls4ml as bm
        from hls4ml_skiptrim.hls4ml import plugin
        from hls4ml.model.flow import get_flow
        from hls4ml.model.layers import layer_map
        assert 'BMConv2D' in layer_map and 'ShortSkipConv2D' in layer_map
        assert plugin.is_registered() and not plugin._deferred and not bm._deferred
        assert 'bm_quantize' in get_flow('convert').optimizers
        assert 'vivado:fuse_short_skip' in get_flow('vivado:optimize').optimizers
        print('OK')
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "OK" in proc.stdout, out[-3000:]
    assert "failed" not in out.lower(), out[-3000:]


def test_fused_model_survives_serialize_model(tmp_path):
    from hls4ml.utils.serialization import deserialize_model, serialize_model

    hm = _convert(_short_net(), "io_stream", tmp=tmp_path / "orig")
    hm.write()
    serialize_model(hm, tmp_path / "m.fml")
    loaded = deserialize_model(tmp_path / "m.fml", output_dir=tmp_path)
    assert [n.class_name for n in loaded.get_layers()].count("ShortSkipConv2D") == 1
    loaded.config.config["OutputDir"] = str(tmp_path / "loaded")
    loaded.write()

    def files(root):
        stamp = hm.config.get_config_value("Stamp")
        fw = root / "firmware"
        return {
            str(f.relative_to(fw)): f.read_bytes().replace(stamp.encode(), b"S")
            for f in fw.rglob("*")
            if f.is_file()
        }

    orig, back = files(tmp_path / "orig"), files(tmp_path / "loaded")
    assert "nnet_utils/nnet_shortskip.h" in orig and orig == back
