"""Frontends: Keras 3 (float accuracy bound), PyTorch (torch.fx) and QKeras (keras-v2 converter).

Each frontend: the pattern is found and fused, the fused C-simulation equals the unfused one bit for bit,
and the fused output stays within the precision of the float framework output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hls4ml
import keras
import numpy as np
import pytest

import hls4ml_skiptrim  # noqa: E402

hls4ml_skiptrim.register()


def block_error_bound(w_fold, x_max, e_in, lsb):
    """Worst-case |y_hls - y_float| after one block ``relu(conv(x)) + x`` with truncating fixed point.

    Input error ``e_in`` (skip path and conv input), weights and bias truncated to the ``lsb`` grid, exact
    'auto' accumulator and Add, one more truncation at the ReLU output:
    ``conv error <= L1 * e_in + N * (x_max + e_in) * lsb + lsb`` with ``L1`` = largest per-output-channel sum of
    |w| and ``N`` = taps per output; ReLU is 1-Lipschitz; the Add adds the skip error ``e_in``.
    ``w_fold`` is laid out (..., n_out) with the BN scale folded in.
    """
    w2 = np.abs(np.asarray(w_fold, dtype=np.float64)).reshape(-1, np.shape(w_fold)[-1])
    l1, n_taps = w2.sum(0).max(), w2.shape[0]
    return l1 * e_in + n_taps * (x_max + e_in) * lsb + lsb + lsb + e_in


def test_keras3_fused_within_float_precision(tmp_path):
    """fixed<24,10> everywhere (14 fractional bits): the fused C-sim stays within :func:`block_error_bound`."""
    c, h, w = 4, 6, 5
    inp = keras.Input((h, w, c), name="x")
    y = keras.layers.Conv2D(c, 3, padding="same", name="c0")(inp)
    y = keras.layers.BatchNormalization(name="bn0")(y)
    y = keras.layers.Activation("relu", name="r0")(y)
    model = keras.Model(inp, keras.layers.Add(name="a0")([y, inp]))
    rng = np.random.default_rng(3)
    model.get_layer("c0").set_weights([rng.normal(0, 0.4, (3, 3, c, c)), rng.normal(0, 0.2, c)])
    model.get_layer("bn0").set_weights(
        [
            rng.uniform(0.5, 1.5, c),
            rng.uniform(-0.3, 0.3, c),
            rng.uniform(-0.3, 0.3, c),
            rng.uniform(0.5, 1.5, c),
        ]
    )
    cfg = hls4ml.utils.config_from_keras_model(
        model, granularity="name", backend="Vitis", default_precision="fixed<24,10>"
    )
    cfg["Model"]["ShortSkipFusion"] = True
    hm = hls4ml.converters.convert_from_keras_model(
        model, hls_config=cfg, output_dir=str(tmp_path), io_type="io_stream", backend="Vitis"
    )
    fused = [layer for layer in hm.get_layers() if layer.class_name == "ShortSkipConv2D"]
    assert len(fused) == 1 and not fused[0].get_attr("use_bn")  # hls4ml folded BN into the conv weights
    hm.compile()
    x = rng.uniform(-3, 3, (16, h, w, c)).astype("float32")
    y_hls = np.asarray(hm.predict(x)).reshape(len(x), -1)
    y_ref = model.predict(x, verbose=0).reshape(len(x), -1)
    lsb = 2.0**-14
    w_fold = fused[0].weights["weight"].data_unquantized  # (kh, kw, C, F), BN folded by hls4ml
    bound = block_error_bound(w_fold, np.abs(x).max(), lsb, lsb)
    err = np.abs(y_hls - y_ref).max()
    assert err <= bound, (err, bound)


def _torch_net(c):
    """Three blocks, one per PyTorch spelling of the ReLU (``nn.ReLU``, ``F.relu``, ``torch.relu``), with the
    skip as the second, first and second operand of the add."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Block(nn.Module):
        def __init__(self, spelling):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1)
            self.bn = nn.BatchNorm2d(c)
            self.relu = nn.ReLU()
            self.spelling = spelling

        def forward(
            self, x
        ):  # Khodamoradi 2021, Listing 4.2 (Trimmer): out1 = act(BN1(conv1(inp))); out1 += inp
            y = self.bn(self.conv(x))
            if self.spelling == "module":
                return self.relu(y) + x
            if self.spelling == "functional":
                return x + F.relu(y)
            return torch.relu(y) + x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.b0, self.b1, self.b2 = Block("module"), Block("functional"), Block("torch")

        def forward(self, x):
            return self.b2(self.b1(self.b0(x)))

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        for b in (net.b0, net.b1, net.b2):
            b.bn.running_mean.uniform_(-0.3, 0.3)
            b.bn.running_var.uniform_(0.5, 1.5)
            b.bn.weight.uniform_(0.5, 1.5)
            b.bn.bias.uniform_(-0.3, 0.3)
    return net


@pytest.mark.slow
@pytest.mark.parametrize("io_type,backend", [("io_stream", "Vivado"), ("io_parallel", "Vitis")])
def test_pytorch_frontend_channels_last_internal(tmp_path, io_type, backend):
    """torch.fx path.  ``channels_last_conversion='internal'`` (inputs given channels-last): with 'full',
    hls4ml 1.3 feeds the untransposed input into the first skip Add (ENVIRONMENT.md pitfall) -- that block is
    then correctly left unfused (its skip operand is not the conv input)."""
    import torch

    c, h, w = 4, 6, 5
    net = _torch_net(c)
    x = np.random.default_rng(0).uniform(-2, 2, (8, c, h, w)).astype("float32")
    y_torch = net(torch.from_numpy(x)).detach().numpy().transpose(0, 2, 3, 1).reshape(len(x), -1)
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    ys = {}
    for fuse in (True, False):
        cfg = hls4ml.utils.config_from_pytorch_model(
            net,
            input_shape=(c, h, w),
            granularity="name",
            backend=backend,
            default_precision="fixed<24,10>",
            channels_last_conversion="internal",
        )
        cfg["Model"]["ShortSkipFusion"] = fuse
        hm = hls4ml.converters.convert_from_pytorch_model(
            net, hls_config=cfg, output_dir=str(tmp_path / str(fuse)), io_type=io_type, backend=backend
        )
        n_fused = [layer.class_name for layer in hm.get_layers()].count("ShortSkipConv2D")
        assert n_fused == (3 if fuse else 0), getattr(hm, "shortskip_report", None)
        hm.compile()
        ys[fuse] = np.asarray(hm.predict(x_cl)).reshape(len(x), -1)
    np.testing.assert_array_equal(ys[True], ys[False])
    lsb, e, x_in = 2.0**-14, 2.0**-14, torch.from_numpy(x)
    for blk in (net.b0, net.b1, net.b2):  # propagate the bound block by block (BN folded as hls4ml does)
        scale = (blk.bn.weight / torch.sqrt(blk.bn.running_var + blk.bn.eps)).detach()
        w_fold = (blk.conv.weight.detach() * scale[:, None, None, None]).permute(2, 3, 1, 0).numpy()
        e = block_error_bound(w_fold, float(x_in.abs().max()), e, lsb)
        x_in = blk(x_in).detach()
    err = np.abs(ys[True] - y_torch).max()
    assert err <= e, (err, e)


QKERAS_SCRIPT = r"""
import os, sys, json, tempfile, shutil
os.environ['TF_USE_LEGACY_KERAS'] = '1'; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '3'
import numpy as np
from hwreshape.compat import qkeras_to_hls, qkeras_config
import tf_keras as keras
from qkeras import QConv2D, QConv2DBatchnorm, QActivation, quantized_bits
rng = np.random.default_rng(0)
C, H, W = 4, 6, 5
inp = keras.Input((H, W, C), name='x')
outs = []
for br in ('f', 'u'):   # identical branches: f fused, u with per-layer ShortSkipFusion=False
    x = inp
    for i in range(2):
        q = dict(kernel_quantizer=quantized_bits(8, 2, alpha=1), bias_quantizer=quantized_bits(8, 2, alpha=1))
        if i == 0:   # QConv2D + BatchNormalization
            y = QConv2D(C, 3, padding='same', name=f'{br}_c{i}', **q)(x)
            y = keras.layers.BatchNormalization(name=f'{br}_bn{i}')(y)
        else:        # QConv2DBatchnorm (BN folded by QKeras/hls4ml), skip as the first Add operand
            y = QConv2DBatchnorm(C, 3, padding='same', name=f'{br}_c{i}', **q)(x)
        y = QActivation('quantized_relu(8,3)', name=f'{br}_r{i}')(y)
        x = keras.layers.Add(name=f'{br}_a{i}')([y, x] if i == 0 else [x, y])
    outs.append(x)
model = keras.Model(inp, outs)
for layer in model.layers:
    if layer.weights and layer.name.startswith('f_'):
        if 'bn' in layer.name:
            wts = [rng.uniform(0.5, 1.5, C), rng.uniform(-.3, .3, C), rng.uniform(-.3, .3, C), rng.uniform(.5, 1.5, C)]
        elif isinstance(layer, QConv2DBatchnorm):   # kernel, bias, BN gamma/beta/mean/variance, step counter
            draw = {'kernel': lambda s: rng.normal(0, .4, s), 'bias': lambda s: rng.normal(0, .4, s),
                    'gamma': lambda s: rng.uniform(.5, 1.5, s), 'beta': lambda s: rng.uniform(-.3, .3, s),
                    'moving_mean': lambda s: rng.uniform(-.3, .3, s),
                    'moving_variance': lambda s: rng.uniform(.5, 1.5, s)}
            wts = []
            for v, cur in zip(layer.weights, layer.get_weights()):
                key = v.name.split('/')[-1].split(':')[0]
                wts.append(draw[key](cur.shape) if key in draw else cur)
        else:
            wts = [rng.normal(0, .4, w.shape) for w in layer.get_weights()]
        layer.set_weights(wts)
        model.get_layer('u_' + layer.name[2:]).set_weights(wts)
cfg = qkeras_config(model)
cfg['Model']['ShortSkipFusion'] = True
for i in range(2):
    cfg['LayerName'][f'u_c{i}']['ShortSkipFusion'] = False
cfg['LayerName']['x']['Precision']['result'] = 'fixed<12,4>'
tmp = tempfile.mkdtemp()
hm = qkeras_to_hls(model, hls_config=cfg, output_dir=tmp, io_type=sys.argv[1])
kinds = [l.class_name for l in hm.get_layers()]
fused_bn = [bool(l.get_attr('use_bn')) for l in hm.get_layers() if l.class_name == 'ShortSkipConv2D']
hm.compile()
x = np.round(rng.uniform(-3, 3, (8, H, W, C)) * 256) / 256   # on the fixed<12,4> input grid
yf, yu = (np.asarray(y).reshape(8, -1) for y in hm.predict(x.astype('float32')))
yk = [np.asarray(y).reshape(8, -1) for y in model.predict(x, verbose=0)]
shutil.rmtree(tmp, ignore_errors=True)
print('RESULT ' + json.dumps({'kinds': kinds, 'fused_bn': fused_bn, 'report': dict(hm.shortskip_report),
      'bit_exact': bool(np.array_equal(yf, yu)),
      'err_f': float(np.abs(yf - yk[0]).max()), 'err_u': float(np.abs(yu - yk[1]).max())}))
"""


@pytest.mark.slow
def test_qkeras_frontend_through_keras_v2_converter():
    """QKeras needs TF_USE_LEGACY_KERAS=1 before TensorFlow loads: runs in a fresh interpreter."""
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(QKERAS_SCRIPT), "io_stream"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and line, proc.stdout[-3000:] + proc.stderr[-3000:]
    res = json.loads(line[0][len("RESULT ") :])
    assert res["report"] == {
        "f_a0": "fused into f_c0_shortskip",
        "u_a0": "disabled by ShortSkipFusion=False",
        "f_a1": "fused into f_c1_shortskip",
        "u_a1": "disabled by ShortSkipFusion=False",
    }
    # QConv2D + BN: quantized conv weights, BN stays a separate scale/bias stage; QConv2DBatchnorm: folded
    assert res["fused_bn"] == [True, False]
    assert res["bit_exact"]
    # hls4ml's own deviation from QKeras (BN in fixed<16,6>, quantized_relu(8,3) steps of 2^-5) is the same
    # for the fused and the unfused model: fusion adds no error.
    assert res["err_f"] == res["err_u"]


@pytest.mark.slow
def test_brevitas_qonnx_block_stays_unfused(tmp_path):
    """Brevitas -> QONNX -> hls4ml: the ONNX path inserts ApplyAlpha (scale) nodes between Conv, ReLU and Add,
    so the pattern does not survive; the block must stay unfused with its reason recorded (never miscompiled)."""
    import brevitas.nn as qnn
    import torch
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.util.cleanup import cleanup_model

    class Block(torch.nn.Module):
        def __init__(self, c):
            super().__init__()
            self.inp = qnn.QuantIdentity(bit_width=8)
            self.conv = qnn.QuantConv2d(c, c, 3, padding=1, weight_bit_width=8, bias=True)
            self.relu = qnn.QuantReLU(bit_width=8)

        def forward(self, x):
            x = self.inp(x)
            return self.relu(self.conv(x)) + x

    torch.manual_seed(0)
    onnx_path = tmp_path / "block.onnx"
    export_qonnx(Block(4).eval(), torch.rand(1, 4, 6, 5) * 2 - 1, export_path=str(onnx_path))
    mw = cleanup_model(ModelWrapper(str(onnx_path)))
    mw = cleanup_model(mw.transform(ConvertToChannelsLastAndClean()))
    cfg = hls4ml.utils.config.config_from_onnx_model(mw, granularity="name", backend="Vivado")
    cfg["Model"]["ShortSkipFusion"] = True
    hm = hls4ml.converters.convert_from_onnx_model(
        mw, hls_config=cfg, output_dir=str(tmp_path / "prj"), io_type="io_stream", backend="Vivado"
    )
    kinds = [layer.class_name for layer in hm.get_layers()]
    assert "ShortSkipConv2D" not in kinds and "ApplyAlpha" in kinds and "Merge" in kinds
    (reason,) = hm.shortskip_report.values()
    assert reason.startswith("not a Conv2D->(BN)->ReLU->Add(conv input) block: operand 0 comes from"), reason
