"""Demo stage ``hwreshape.examples.s2n2_finn:stage``: S2N2 LIF matrix-vector units inside FINN.

Khodamoradi 2021, ch. 2 (Eq 2.2-2.6, §2.2.3, Tables 2.2/2.3/2.5/2.7/2.8).  Steps: rate-code a few digits into spike
trains, run a small S2N2 network as the front-end's QONNX pattern and after ``InferLIFLayers`` (equal),
estimate-only FINN builds of the S2N2_rf1 and S2N2_cv shapes, the Eq 2.5 buffer comparison of Tables
2.3/2.5/2.8 (PNG), and — outside quick mode — cppsim of one ``LIF_MVAU_hls`` node against python exec.
No training here (weights are random integers): the numbers are about the hardware mapping.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np


def _spike_digits(ctx, n: int, ticks: int, size: int, seed: int = 0):
    """Rate coding (Bernoulli per tick with the pixel intensity) of ``n`` digits resized to ``size``."""
    from hwreshape.data import load_mnist_or_digits

    x, _, _ = load_mnist_or_digits(ctx.mnist_dir)
    x = np.asarray(x[:n], dtype=np.float32)[:, 0]
    h = x.shape[-1]
    idx = (np.arange(size) * h / size).astype(int)
    img = x[:, idx][:, :, idx]
    rng = np.random.default_rng(seed)
    spikes = (rng.random((n, ticks, size, size)) < img[:, None]).astype(np.float32)
    return spikes.reshape(n * ticks, 1, size, size)


def _table_rows():
    from finn_s2n2.finn import buffers

    rows = []
    for table, ticks, spec in (
        (
            "2.3 rf1",
            128,
            [
                ("Conv.1", "conv", (1, 16, 16), 5, 0.0039),
                ("Conv.2", "conv", (16, 16, 16), 5, 0.07),
                ("Dense 1", "dense", (8, 12, 12), 128, 0.08),
                ("Dense 2", "dense", (128,), 11, 0.12),
            ],
        ),
        (
            "2.8 cv",
            500,
            [
                ("Conv.1", "conv", (1, 28, 28), 7, 0.007),
                ("Conv.2", "conv", (16, 13, 13), 7, 0.16),
                ("Conv.3", "conv", (24, 11, 11), 7, 0.33),
                ("Dense", "dense", (32, 4, 4), 10, 0.41),
            ],
        ),
    ):
        for name, kind, shape, k, p in spec:
            kw = dict(kernel_size=k) if kind == "conv" else dict(out_features=k)
            rows.append(
                (
                    table,
                    buffers.layer_buffer(
                        name, kind=kind, num_ticks=ticks, input_shape=shape, spike_ratio=p, **kw
                    ),
                )
            )
    return rows


def _plot(rows, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{t.split()[1]} {r.name}" for t, r in rows]
    tb = [r.tick_batching_bits for _, r in rows]
    sb = [r.streaming_bits for _, r in rows]
    xs = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(xs - 0.2, tb, 0.4, label="tick-batching (Eq 2.5)")
    ax.bar(xs + 0.2, sb, 0.4, label="S2N2 streaming buffer")
    ax.set_yscale("log")
    ax.set_xticks(xs, labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("input buffer [bits]")
    ax.set_title("Input buffer per layer, Khodamoradi 2021 Tables 2.3 / 2.8 (reproduced)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage(ctx):
    from qonnx.core.onnx_exec import execute_onnx

    import finn_s2n2
    from finn_s2n2.finn.build import (
        build_estimates,
        make_s2n2_network,
        s2n2_cv_model,
        s2n2_rf1_model,
    )
    from finn_s2n2.finn.transformation import convert_to_lif

    out = Path(ctx.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = {}
    t0 = time.perf_counter()
    # 1) a small spiking network on rate-coded digits: QONNX pattern == converted FINN graph
    ticks, n = 8, 3
    x = _spike_digits(ctx, n, ticks, 8)
    m = make_s2n2_network(
        (1, 8, 8),
        [("conv", 4, 3, 1), ("pool", 2), ("dense", 10)],
        num_ticks=ticks,
        num_samples=n,
        threshold=3,
        decay_shift=3,
        seed=1,
    )
    y_ref = execute_onnx(m, {"inp": x})["outp"]
    y_hw = execute_onnx(convert_to_lif(m), {"inp": x})["outp"]  # plain qonnx execution, 3 samples
    res["qonnx_eq_finn_graph"] = bool(np.array_equal(y_ref, y_hw))
    res["spike_counts_sample0"] = "".join(str(int(v)) for v in y_hw[0])
    # 2) estimate-only FINN builds of the dissertation's network shapes
    with tempfile.TemporaryDirectory() as td:
        for name, model in (("rf1", s2n2_rf1_model()), ("cv", s2n2_cv_model())):
            rep = build_estimates(model, Path(td) / name)
            res_json = json.loads((rep / "estimate_layer_resources.json").read_text())
            s2n2 = json.loads((rep / "s2n2_lif_mvau.json").read_text())
            res[f"{name}_bram18"] = int(res_json["total"]["BRAM_18K"])
            res[f"{name}_membrane_bram18"] = sum(v["membrane_bram18"] for v in s2n2["lif_mvau"].values())
            res[f"{name}_lut_est"] = int(res_json["total"]["LUT"])
            res[f"{name}_cycles_per_tick"] = s2n2["max_cycles_per_tick"]
            res[f"{name}_critical_node"] = s2n2["critical_node"]
            res[f"{name}_samples_per_s"] = round(s2n2["samples_per_s"], 2)
            (out / f"s2n2_{name}_estimates.json").write_text(
                json.dumps({"finn": res_json, "s2n2": s2n2}, indent=2)
            )
    # 3) Eq 2.5 vs streaming buffers (Tables 2.3 / 2.8)
    rows = _table_rows()
    _plot(rows, out / "s2n2_buffers.png")
    res["rf1_mean_improvement"] = float(np.mean([r.improvement for t, r in rows if t.startswith("2.3")]))
    # 4) cppsim of one node (compiles one g++ binary, skipped in quick mode)
    if not ctx.quick:
        from finn.transformation.fpgadataflow.compile_cppsim import CompileCppSim
        from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim
        from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode

        rng = np.random.default_rng(0)
        node = finn_s2n2.make_lif_mvau_model(
            rng.integers(-8, 8, size=(16, 8)),
            decay_shift=3,
            threshold=6,
            num_ticks=10,
            pe=2,
            simd=4,
            batch=2,
            specialize=True,
        )
        xs = (rng.random((20, 16)) < 0.4).astype(np.float32)  # 2 samples x 10 ticks, one frame per tick
        y_py = execute_onnx(node, {"inp": xs})["outp"]
        node = node.transform(SetExecMode("cppsim")).transform(PrepareCppSim()).transform(CompileCppSim())
        res["cppsim_eq_python"] = bool(np.array_equal(y_py, execute_onnx(node, {"inp": xs})["outp"]))
    res["seconds"] = round(time.perf_counter() - t0, 1)
    return res
