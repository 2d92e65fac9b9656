"""`hwreshape report`: counts against published figures (NTU report Table I and published parameter counts), all three
model kinds (torch via fvcore, Keras 3, ONNX/QONNX via qonnx), JSON/CSV/plot outputs and bad input."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from hwreshape.examples import zoo
from hwreshape.report import bubble_chart, report_keras, report_onnx, report_torch

HWRESHAPE = Path(sys.executable).parent / "hwreshape"
X224 = torch.rand(1, 3, 224, 224)


def test_resnet50_params_exact_and_macs_within_1pct():
    r = report_torch(zoo.resnet(50), X224, "ResNet50")
    assert r.params == 25_557_032  # 25.6 M
    assert round(r.params / 1e6, 1) == 25.6
    assert abs(r.macs - 4.1e9) / 4.1e9 < 0.01
    assert r.total("ops") == 2 * r.macs and r.total("mem_accesses") == 4 * r.macs  # seed 003 Fig 26
    # 16 residual adds, each holding its full shortcut feature map (float32) in a streaming implementation
    assert len(r.skips) == 16
    expected = sum(math.prod(s["shape"]) * 32 for s in r.skips)
    assert r.total("skip_bits") == expected == 176_619_520


def test_vgg16_and_alexnet_against_known_figures():
    vgg = report_torch(zoo.vgg(16), X224, "VGG16")
    assert vgg.params == 138_357_544 and round(vgg.params / 1e6, 1) == 138.4
    alex = report_torch(zoo.alexnet(), X224, "AlexNet")
    assert alex.params == 60_965_224 and round(alex.params / 1e6, 1) == 61.0
    # seed 003 §IV: "AlexNet having about 724M MACs ... about 2.9G times memory access"
    assert abs(alex.macs - 724e6) / 724e6 < 0.01
    assert round(alex.total("mem_accesses") / 1e9, 1) == 2.9


@pytest.mark.slow
def test_table_i_parameter_and_gflops_columns():
    """Seed 003 Table I: parameters (M) to two decimals, locally built architectures (no weights); the GFLOPs
    column against our operations (2 x conv/dense MACs): Table I also counts element-wise work (BN, adds,
    activations), so ours is lower, by at most 1.5 %."""
    reports = {"AlexNet": report_torch(zoo.alexnet(), X224)}
    for name in ("VGG16", "VGG19", "ResNet50", "InceptionV3", "Xception", "ResNet152"):
        reports[name] = report_keras(zoo.keras_application(name))
    ours = {name: r.params for name, r in reports.items()}
    for name, (_, table_m, gflops) in zoo.TABLE_I.items():
        if gflops is not None:
            g = reports[name].total("ops") / 1e9
            assert g <= gflops and (gflops - g) / gflops < 0.015, (name, g, gflops)
        if name == "ResNet152":
            continue  # see below
        # Table I truncates (AlexNet 60,965,224 -> 60.96) or rounds: within 0.01 M either way
        assert abs(ours[name] / 1e6 - table_m) <= 0.01, (name, ours[name], table_m)
    # ResNet152: Table I prints 60.50 M, which matches no standard ResNet-152 (Keras 60.42 M, torchvision
    # 60.19 M). We reproduce the Keras architecture exactly and document the 0.14 % gap.
    assert ours["ResNet152"] == 60_419_944
    assert abs(ours["ResNet152"] / 1e6 - 60.50) / 60.50 < 0.002


def test_keras_counts_and_skips():
    import keras

    inp = keras.Input((8, 8, 4))
    y = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inp)
    y = keras.layers.ReLU(name="r1")(y)
    y = keras.layers.Add(name="add")([y, inp])
    y = keras.layers.DepthwiseConv2D(3, name="dw")(y)
    y = keras.layers.SeparableConv2D(6, 3, name="sep")(y)
    y = keras.layers.Flatten()(y)
    out = keras.layers.Dense(3, name="fc")(y)
    r = report_keras(keras.Model(inp, out))
    rows = {row.name: row for row in r.layers}
    assert rows["c1"].macs == 8 * 8 * 4 * 4 * 9 and rows["c1"].params == 4 * 4 * 9 + 4
    assert rows["dw"].macs == 6 * 6 * 4 * 9
    assert rows["sep"].macs == 4 * 4 * 4 * 9 + 4 * 4 * 4 * 6
    assert rows["fc"].macs == 4 * 4 * 6 * 3
    assert r.skips == [
        {"add": "add", "shortcut": inp._keras_history[0].name, "shape": [8, 8, 4], "bits": 8 * 8 * 4 * 32}
    ]
    assert r.params == sum(layer.count_params() for layer in keras.Model(inp, out).layers)


def test_onnx_qonnx_brevitas_bitwidths(tmp_path):
    from brevitas.export import export_qonnx

    from hwreshape.smoke import brevitas_mlp

    path = tmp_path / "mlp.onnx"
    export_qonnx(brevitas_mlp(64, 32, 10, bits=2), torch.rand(1, 64), export_path=str(path))
    r = report_onnx(path)
    gemms = [row for row in r.layers if row.type in ("Gemm", "MatMul")]
    assert [g.macs for g in gemms] == [64 * 32, 32 * 32, 32 * 10]
    assert all(g.weight_bitwidth == 2 for g in gemms)
    assert [g.weight_bits for g in gemms] == [64 * 32 * 2, 32 * 32 * 2, 32 * 10 * 2]
    relus = [row for row in r.layers if row.type == "Relu"]
    assert relus and all(row.act_bitwidth == 2 for row in relus)  # the QuantReLU's 2-bit output


def test_residual_skip_bits_torch():
    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.conv(x)) + x

    r = report_torch(nn.Sequential(nn.Conv2d(1, 4, 1), Block()), torch.rand(2, 1, 5, 5))
    assert len(r.skips) == 1 and r.skips[0]["bits"] == 4 * 5 * 5 * 32
    conv = next(row for row in r.layers if row.name == "1.conv")
    assert conv.macs == 5 * 5 * 4 * 4 * 9  # per sample: batch 2 is divided out


def test_skip_bits_of_functional_relu_go_to_the_producing_layer():
    """A block written with ``torch.relu`` (no module): the shortcut buffer belongs to the layer that produced
    the shortcut value, never to the classifier."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 4, 3, padding=1)
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.fc = nn.Linear(4 * 5 * 5, 10)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            x = torch.relu(self.conv(x)) + x
            return self.fc(torch.flatten(x, 1))

    r = report_torch(Net(), torch.rand(1, 1, 5, 5))
    rows = {row.name: row for row in r.layers}
    assert len(r.skips) == 1
    assert rows["stem"].skip_bits == 4 * 5 * 5 * 32
    assert rows["fc"].skip_bits == 0 and rows["conv"].skip_bits == 0


def test_cli_json_csv_plot_and_bad_input(tmp_path):
    model_py = tmp_path / "net.py"
    model_py.write_text(
        "import torch\nfrom torch import nn\n"
        "def build():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8*6*6, 10)), torch.rand(1, 3, 8, 8)\n"
    )
    js, cs, png = tmp_path / "r.json", tmp_path / "r.csv", tmp_path / "p.png"
    proc = subprocess.run(
        [
            str(HWRESHAPE),
            "report",
            f"{model_py}:build",
            "--json",
            str(js),
            "--csv",
            str(cs),
            "--plot",
            str(png),
            "--accuracy",
            "91.5",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(js.read_text())
    assert data["params"] == 3 * 8 * 9 + 8 + 288 * 10 + 10
    assert data["macs"] == 6 * 6 * 8 * 27 + 288 * 10
    assert cs.read_text().splitlines()[0].startswith("name,type,params,macs")
    assert png.stat().st_size > 5000
    # TorchScript needs an input shape; unknown files and kinds are named
    ts = tmp_path / "m.pt"
    torch.jit.script(nn.Linear(4, 2)).save(str(ts))
    bad = subprocess.run([str(HWRESHAPE), "report", str(ts)], capture_output=True, text=True)
    assert bad.returncode == 2 and "--input-shape" in bad.stderr
    ok = subprocess.run(
        [str(HWRESHAPE), "report", str(ts), "--input-shape", "1,4", "--json", str(js)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(js.read_text())["macs"] == 8
    for spec, msg in (
        (str(tmp_path / "nope.onnx"), "not found"),
        (str(model_py), "unknown model kind"),
        (f"{model_py}:missing", "no callable"),
    ):
        p = subprocess.run([str(HWRESHAPE), "report", spec], capture_output=True, text=True)
        assert p.returncode == 2 and msg in p.stderr, (spec, p.stderr)
    p = subprocess.run(
        [str(HWRESHAPE), "report", f"{model_py}:build", "--plot", str(png)], capture_output=True, text=True
    )
    assert p.returncode == 2 and "--accuracy" in p.stderr


def test_bubble_chart_rejects_empty(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        bubble_chart([], tmp_path / "x.png")
