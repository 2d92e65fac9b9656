"""Demo stage ``bm ops (qonnx + hls4ml)``: one BM conv layer through QONNX and hls4ml C-simulation.

Limonova et al. (*The BM Convolutional Layer*, *Hardware implementation*, Table 2). A standard conv
is converted to BM (step 2 of the paper), exported to QONNX (``bm_ops::BMConv``, executed by qonnx), built with hls4ml
(``BMConv2D`` plugin layer, ReuseFactor ``k·k``, ``compile()``/``predict()``) and compared with the fixed-point reference
(bit-exact) and with the float layer (within the documented log/exp approximation bound). The gate/latency
ratios of the layer come from ``bm_ops.cost`` (Limonova et al. Tables 1–2 model, an *estimate*).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

__all__ = ["stage"]


def stage(ctx) -> dict:
    import torch

    from bm_ops.fixedpoint import FixedType, bm_conv2d_fixed, float_error_bound, quantize_bm_layer
    from bm_ops.hls4ml.convert import bm_layer_model
    from bm_ops.qonnx.export import execute_qonnx, to_qonnx
    from bm_ops.torch import from_conv

    torch.set_num_threads(1)
    torch.manual_seed(0)
    c, f, k, hw = (2, 4, 3, 8) if ctx.quick else (4, 8, 3, 12)
    conv = torch.nn.Conv2d(c, f, k, padding=1)
    bm = from_conv(conv).eval()
    vp, vn, b = (t.detach().numpy().astype(np.float64) for t in (bm.v_pos, bm.v_neg, bm.bias))

    it, rt = FixedType(10, 3), FixedType(20, 8, True, "RND", "SAT")
    rng = np.random.default_rng(0)
    x_raw = rng.integers(it.min_raw, it.max_raw + 1, size=(8, c, hw, hw))
    x = it.to_float(x_raw)

    # QONNX: export + qonnx execution vs torch
    work = Path(tempfile.mkdtemp(prefix="bm_demo_hls_"))
    net = torch.nn.Sequential(bm)
    mw = to_qonnx(net, torch.tensor(x[:2], dtype=torch.float32), work / "bm.onnx")
    y_q = execute_qonnx(mw, x[:2].astype(np.float32))
    with torch.no_grad():
        y_t = net(torch.tensor(x, dtype=torch.float32)).numpy().astype(np.float64)
    qonnx_diff = float(np.abs(y_q - y_t[:2]).max())

    # hls4ml C-simulation vs the fixed-point reference and the float layer
    rf = k * k  # ReuseFactor: the c*k*k taps x f filters of a window in k*k clocks (c*f tap operations each)
    hm = bm_layer_model(
        vp, vn, b, (hw, hw, c), it, rt, (1, 1), (1, 1, 1, 1), output_dir=str(work / "hls"), reuse_factor=rf
    )
    hm.compile()
    y_c = np.asarray(hm.predict(np.ascontiguousarray(x.transpose(0, 2, 3, 1).reshape(len(x), -1))))
    y_c = y_c.reshape(len(x), hw, hw, f).transpose(0, 3, 1, 2)
    layer = quantize_bm_layer(vp, vn, b, it, rt)
    y_ref = rt.to_float(bm_conv2d_fixed(x_raw, layer, 1, 1))
    bit_exact = bool(np.array_equal(y_c, y_ref))
    bound = float_error_bound(x, vp, vn, layer, 1, 1) + np.abs(b - layer.bias / 2.0**16)[None, :, None, None]
    err = np.abs(y_c - y_t)
    within = bool(np.all(err <= bound + 1e-5))

    from bm_ops.cost import conv_ratios

    gate_ratio, latency_ratio = conv_ratios(f, c, k)
    eb = layer.error_bound()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.6))
    ax[0].scatter(y_t.ravel(), y_c.ravel(), s=4)
    lim = [float(min(y_t.min(), y_c.min())), float(max(y_t.max(), y_c.max()))]
    ax[0].plot(lim, lim, "k--", lw=0.8)
    ax[0].set_xlabel("float BM layer (torch)")
    ax[0].set_ylabel("hls4ml C-sim (fixed point)")
    ax[0].set_title(f"bit-exact vs reference: {bit_exact}")
    ax[1].hist((err / np.maximum(bound, 1e-12)).ravel(), bins=40)
    ax[1].set_xlabel("|C-sim − float| / documented bound")
    ax[1].set_title(f"per-term rel. err ≤ {eb['rel_err'] * 100:.2f} %")
    fig.tight_layout()
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(ctx.out_dir / "bm_hls_csim.png", dpi=110)
    plt.close(fig)

    return {
        "layer": f"{c}->{f} k{k} @{hw}x{hw}",
        "reuse_factor": rf,
        "qonnx_vs_torch_max_diff": qonnx_diff,
        "csim_bit_exact": bit_exact,
        "csim_vs_float_max_err": float(err.max()),
        "within_bound": within,
        "est_gates_std/bm": float(gate_ratio),
        "est_latency_std/bm": float(latency_ratio),
    }
