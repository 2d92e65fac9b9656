"""The two host smoke flows of the foundation, used by the tests and by ``hwreshape demo``.

* :func:`finn_estimate_build` — a small Brevitas quantized MLP, exported to QONNX with Brevitas' own
  exporter, run through finn-plus' ``build_dataflow_cfg`` with the default FINN steps up to
  ``step_generate_estimate_reports`` (estimate-only: no Vivado needed) — proves :func:`compat.prepare_finn`.
* :func:`qkeras_hls4ml_csim` — a QKeras ``QConv2D → BatchNormalization → QActivation → Add`` block converted
  by hls4ml's keras-v2 converter (:func:`compat.qkeras_to_hls`), compiled with g++ and run in C-simulation —
  proves :func:`compat.qkeras_to_hls`.  QKeras needs tf-keras, so this flow runs in a child Python process
  (``TF_USE_LEGACY_KERAS=1`` must precede the first TensorFlow import; the parent may already hold Keras 3).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: FINN's default steps up to (and including) the estimate reports: everything that runs without Vivado.
FINN_ESTIMATE_STEPS = [
    "step_qonnx_to_finn",
    "step_tidy_up",
    "step_streamline",
    "step_convert_to_hw",
    "step_create_dataflow_partition",
    "step_specialize_layers",
    "step_target_fps_parallelization",
    "step_apply_folding_config",
    "step_minimize_bit_width",
    "step_generate_estimate_reports",
]


def brevitas_mlp(in_features: int = 64, hidden: int = 32, classes: int = 10, bits: int = 2, seed: int = 0):
    """A small Brevitas quantized MLP (quantized input, ``bits``-bit weights/activations), eval mode."""
    import torch
    from brevitas.nn import QuantIdentity, QuantLinear, QuantReLU
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        QuantIdentity(bit_width=8, return_quant_tensor=True),
        QuantLinear(in_features, hidden, bias=False, weight_bit_width=bits),
        nn.BatchNorm1d(hidden),
        QuantReLU(bit_width=bits, return_quant_tensor=True),
        QuantLinear(hidden, hidden, bias=False, weight_bit_width=bits),
        nn.BatchNorm1d(hidden),
        QuantReLU(bit_width=bits, return_quant_tensor=True),
        QuantLinear(hidden, classes, bias=False, weight_bit_width=bits),
    )
    with torch.no_grad():  # non-trivial BN statistics so streamlining has real work to do
        for m in model:
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def finn_estimate_build(out_dir: str | os.PathLike, in_features: int = 64) -> dict:
    """Export :func:`brevitas_mlp` to QONNX and run a finn-plus estimate-only build into ``out_dir``.

    Returns a summary: number of HW layers in the estimate report, their op types, total LUT/BRAM estimates,
    the critical-path cycles, and the report folder.
    """
    import torch
    from brevitas.export import export_qonnx

    from hwreshape.compat import host_io_preserved, prepare_finn

    prepare_finn()
    import finn.builder.build_dataflow as build
    import finn.builder.build_dataflow_config as build_cfg

    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / "mlp_qonnx.onnx"
    export_qonnx(brevitas_mlp(in_features), torch.rand(1, in_features), export_path=str(onnx_path))
    cfg = build_cfg.DataflowBuildConfig(
        output_dir=str(out_dir / "build"),
        synth_clk_period_ns=10.0,
        fpga_part="xc7z020clg400-1",
        steps=FINN_ESTIMATE_STEPS,
        generate_outputs=[build_cfg.DataflowOutputType.ESTIMATE_REPORTS],
        enable_build_pdb_debug=False,
        verbose=False,
    )
    t0 = time.perf_counter()
    with host_io_preserved():
        ret = build.build_dataflow_cfg(str(onnx_path), cfg)
    if ret != 0:
        raise RuntimeError(f"finn-plus estimate build failed (return code {ret}); see {out_dir / 'build'}")
    report = out_dir / "build" / "report"
    layers = json.loads((report / "estimate_layer_resources.json").read_text())
    cycles = json.loads((report / "estimate_layer_cycles.json").read_text())
    total = layers.get("total", {})
    return {
        "hw_layers": len([k for k in layers if k != "total"]),
        "op_types": sorted({k.rsplit("_", 1)[0] for k in layers if k != "total"}),
        "LUT": float(total.get("LUT", 0.0)),
        "BRAM_18K": float(total.get("BRAM_18K", 0.0)),
        "max_cycles": max(cycles.values()) if cycles else 0,
        "seconds": time.perf_counter() - t0,
        "report_dir": str(report),
    }


_QKERAS_CHILD = r"""
import json, sys, os
import numpy as np
from hwreshape.compat import use_legacy_keras, qkeras_config, qkeras_to_hls
use_legacy_keras()
import tf_keras as keras
from qkeras import QActivation, QConv2D, quantized_bits
args = json.loads(sys.argv[1])
rng = np.random.default_rng(args["seed"])
keras.utils.set_random_seed(args["seed"])
h, w, c = args["shape"]
inp = keras.Input((h, w, c), name="x")
y = QConv2D(c, 3, padding="same", name="conv",
            kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1))(inp)
y = keras.layers.BatchNormalization(name="bn")(y)
y = QActivation("quantized_relu(6,2)", name="relu")(y)
out = keras.layers.Add(name="add")([y, inp])
model = keras.Model(inp, out)
bn = model.get_layer("bn")
bn.set_weights([rng.uniform(0.5, 1.5, c), rng.uniform(-0.2, 0.2, c), rng.uniform(-0.2, 0.2, c), rng.uniform(0.5, 1.5, c)])
cfg = qkeras_config(model, default_precision=args["precision"])
hls_model = qkeras_to_hls(model, hls_config=cfg, output_dir=args["out"], backend=args["backend"], io_type=args["io_type"])
hls_model.compile()
# inputs on the input precision grid so that the only difference is the internal fixed-point arithmetic
x = np.round(rng.uniform(-2, 2, (args["n"], h, w, c)) * 64) / 64
y_keras = model.predict(x, verbose=0)
y_hls = np.asarray(hls_model.predict(np.ascontiguousarray(x))).reshape(y_keras.shape)
print("RESULT " + json.dumps({"max_abs_err": float(np.max(np.abs(y_keras - y_hls))),
                               "max_abs_out": float(np.max(np.abs(y_keras))),
                               "layers": [l.class_name for l in hls_model.get_layers()]}))
"""


def qkeras_hls4ml_csim(
    out_dir: str | os.PathLike | None = None,
    shape: tuple[int, int, int] = (6, 6, 3),
    precision: str = "fixed<16,6>",
    backend: str = "Vivado",
    io_type: str = "io_parallel",
    n: int = 8,
    seed: int = 0,
    timeout: float = 600,
) -> dict:
    """Build a QKeras Conv+BN+ReLU+Add block, convert with hls4ml (keras-v2 path), C-simulate, compare.

    Runs in a child interpreter (tf-keras must be selected before TensorFlow loads). Returns
    ``max_abs_err`` (Keras vs C-sim), ``max_abs_out``, the hls4ml layer classes and the wall time.
    """
    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="hwreshape_qkeras_")).resolve()
    args = dict(
        shape=list(shape),
        precision=precision,
        backend=backend,
        io_type=io_type,
        n=n,
        seed=seed,
        out=str(out_dir),
    )
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _QKERAS_CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-3000:]
        raise RuntimeError(f"QKeras -> hls4ml C-simulation failed (exit {proc.returncode}):\n{tail}")
    res = json.loads(lines[-1][len("RESULT ") :])
    res["seconds"] = time.perf_counter() - t0
    return res


def stage_environment(ctx) -> dict:
    from hwreshape.env import collect

    info = collect()
    missing = [r.name for r in info if r.required and not r.ok]
    if missing:
        raise RuntimeError(f"missing or broken hosts: {', '.join(missing)}")
    versions = {r.name: r.version for r in info if r.name in ("finn-plus", "hls4ml", "brevitas", "torch")}
    return versions


def stage_finn_estimate(ctx) -> dict:
    res = finn_estimate_build(Path(ctx.out_dir) / "finn_smoke")
    return {
        "hw_layers": res["hw_layers"],
        "LUT_est": round(res["LUT"]),
        "BRAM18_est": res["BRAM_18K"],
        "max_cycles": res["max_cycles"],
    }


def stage_qkeras_hls4ml(ctx) -> dict:
    res = qkeras_hls4ml_csim(Path(ctx.out_dir) / "qkeras_smoke")
    return {"max_abs_err": res["max_abs_err"], "layers": len(res["layers"])}
