"""Opt-in: with the package installed and nothing enabled, hls4ml writes byte-identical projects.

Two fresh processes convert and write the same Keras Conv->BN->ReLU->Add model (the exact block the fused layer
targets) for Vivado/Vitis x io_parallel/io_stream, and a PyTorch Conv->ReLU->add block through torch.fx: one with this project's ``hls4ml.backends`` entry points
hidden from ``importlib.metadata`` (vanilla hls4ml), one with them present (both plugins load at
``import hls4ml``).  Every written file must be identical, except hls4ml's own per-run random ``Stamp`` (normalised)
and the copies of the user's model hls4ml writes (``keras_model.keras``: a zip with a time stamp; the PyTorch
project's ``hls4ml_config.yml``: pickled tensors keyed by memory addresses) -- these differ between any two runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent(
    """
    import importlib.metadata as md, os, sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    OURS = ("hls4ml_skiptrim", "bm_ops")
    if sys.argv[1] == "hide":
        def entry_points(**kw):
            eps = md.EntryPoints(
                ep for d in md.distributions() for ep in d.entry_points
                if not (ep.group == "hls4ml.backends" and ep.value.split(".")[0] in OURS)
            )
            return eps.select(**kw) if kw else eps
        md.entry_points = entry_points
    import hls4ml, keras
    keras.utils.set_random_seed(0)
    os.makedirs(sys.argv[2], exist_ok=True)
    os.chdir(sys.argv[2])
    L = keras.layers
    inp = keras.Input((5, 5, 3), name="x")
    y = L.Conv2D(3, 3, padding="same", name="c0")(inp)
    y = L.BatchNormalization(name="bn0")(y)
    y = L.Activation("relu", name="r0")(y)
    model = keras.Model(inp, L.Add(name="a0")([y, inp]))
    for io in ("io_parallel", "io_stream"):
        for be in ("Vivado", "Vitis"):
            cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=be)
            hm = hls4ml.converters.convert_from_keras_model(
                model, hls_config=cfg, output_dir=f"{io}_{be}", io_type=io, backend=be
            )
            assert not hasattr(hm, "shortskip_report"), "plugin acted without being enabled"
            hm.write()
    # PyTorch through torch.fx (the BM plugin wraps the FX tracer's leaf rule: other modules must be unaffected)
    import torch
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.relu = torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.ReLU()
        def forward(self, x):
            return self.relu(self.conv(x)) + x
    torch.manual_seed(0)
    net = Block().eval()
    cfg = hls4ml.utils.config_from_pytorch_model(net, input_shape=(3, 5, 5), granularity="name",
                                                 channels_last_conversion="internal")
    hm = hls4ml.converters.convert_from_pytorch_model(net, hls_config=cfg, output_dir="torch_io_stream",
                                                      io_type="io_stream")
    hm.write()
    print("LOADED", sorted(k for k in sys.modules if k.split(".")[0] in OURS))
    """
)


def _run(mode: str, out: Path) -> str:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return next(line for line in proc.stdout.splitlines() if line.startswith("LOADED"))


def _tree(root: Path) -> dict[str, bytes]:
    files = {}
    for prj in sorted(p for p in root.iterdir() if p.is_dir()):
        stamp = next(
            # YAML quotes an all-digit stamp ('53059029'); the C++ and build files use it bare
            line.split(":", 1)[1].strip().strip("'\"")
            for line in (prj / "hls4ml_config.yml").read_text().splitlines()
            if line.startswith("Stamp:")
        )
        for f in sorted(prj.rglob("*")):
            if f.is_file() and f.name not in ("keras_model.keras", "pytorch_model.pt"):
                data = f.read_bytes().replace(stamp.encode(), b"STAMP")
                # the YAML line quotes an all-digit stamp and not another: compare the line without quoting
                files[str(f.relative_to(root))] = re.sub(rb"(?m)^Stamp: .*$", b"Stamp: STAMP", data)
    return files


@pytest.mark.slow
def test_not_enabled_projects_are_byte_identical_to_vanilla_hls4ml(tmp_path):
    hidden = _run("hide", tmp_path / "vanilla")
    present = _run("show", tmp_path / "installed")
    assert hidden == "LOADED []", hidden  # the entry points really were hidden
    assert "hls4ml_skiptrim.hls4ml.plugin" in present and "bm_ops.hls4ml.layer" in present, present
    vanilla, installed = _tree(tmp_path / "vanilla"), _tree(tmp_path / "installed")
    assert len(vanilla) > 50
    assert sorted(vanilla) == sorted(installed)  # no extra file (e.g. our C++ headers)
    # the PyTorch project's hls4ml_config.yml embeds the pickled torch model, whose tensor storage keys are
    # memory addresses: it differs between any two runs, vanilla or not
    differing = [
        name
        for name in vanilla
        if vanilla[name] != installed[name] and name != "torch_io_stream/hls4ml_config.yml"
    ]
    assert not differing, differing
