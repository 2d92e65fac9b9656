"""BM network → hls4ml C-simulation on MNIST, side by side with the same network of standard convs (peer).

Limonova et al. (BM convolutions in hardware; MNIST accuracy after fine-tuning). Target:
a BM network trained by the model-side recipe (``bm_ops.training.recipes.convert_and_finetune``) converts through hls4ml
(``BMConv2D`` plugin layer, ``compile()``/``predict()``) and classifies the MNIST test split within 0.5 pp of its
float BM accuracy. The peer is hls4ml's own ``Conv2D`` on the float network before BM conversion.

Data: the MNIST 10k split (``hwreshape.data``; sklearn digits when ``../shared`` is absent), 2×2-average-pooled
to 14×14 (keeps C-simulation of the peer's fully unrolled ``Conv2D`` small), seeded train/test split.
Network: Conv(1→8,3,p1)-ReLU-MaxPool2 → Conv(8→16,3,p1)-ReLU-MaxPool2 → Flatten → Linear(144→10).

    .venv/bin/python benchmarks/bm_hls4ml_mnist.py            # 8k train / 2k test
    .venv/bin/python benchmarks/bm_hls4ml_mnist.py --quick    # 2k / 1k, fewer epochs
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bm_ops.training.recipes import as_loader, convert_and_finetune, evaluate, train_epochs  # noqa: E402
from hwreshape.data import load_mnist_or_digits, split  # noqa: E402


def make_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 3 * 3, 10),
    )


def pool14(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    if h < 28:  # sklearn digits (8x8): keep as is
        return x
    return x.reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5)).astype(np.float32)


def fx_name(name: str) -> str:
    """torch.fx node name of a submodule path (what hls4ml uses as layer name): ``0`` -> ``_0``, ``a.b`` -> ``a_b``."""
    n = name.replace(".", "_")
    return f"_{n}" if n[:1].isdigit() else n


def to_hls(net, in_shape, out_dir, bm_result="ap_fixed<20,8,RND,SAT>", bm_cfg=None):
    import hls4ml

    from bm_ops.hls4ml import register

    register()
    cfg = hls4ml.utils.config_from_pytorch_model(
        net,
        in_shape,
        default_precision="ap_fixed<16,6>",
        channels_last_conversion="full",
        transpose_outputs=False,
        granularity="name",
    )
    for lc in cfg["LayerName"].values():
        if isinstance(lc, dict) and "Precision" in lc:
            lc["Precision"] = (
                {"result": "ap_fixed<16,6>"}
                if not isinstance(lc["Precision"], dict)
                else {k: ("ap_fixed<16,6>" if v == "auto" else v) for k, v in lc["Precision"].items()}
            )
    for name, m in net.named_modules():
        if type(m).__name__ == "BMConv2d":
            lc = cfg["LayerName"].setdefault(fx_name(name), {})
            lc["Precision"] = {"result": bm_result}
            lc.update(bm_cfg or {})
    hm = hls4ml.converters.convert_from_pytorch_model(
        net, hls_config=cfg, output_dir=str(out_dir), io_type="io_parallel", backend="Vivado"
    )
    t0 = time.perf_counter()
    hm.compile()
    return hm, time.perf_counter() - t0


def csim_accuracy(hm, x, y):
    t0 = time.perf_counter()
    flat = np.ascontiguousarray(x.reshape(len(x), -1))  # NCHW: channels_last_conversion='full' transposes
    out = np.asarray(hm.predict(flat)).reshape(len(x), -1)
    dt = time.perf_counter() - t0
    return float((out.argmax(1) == y).mean()), dt


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--table-bits",
        type=int,
        default=10,
        help="log/exp table index bits of the BM layers (10 = the BMFixedConfig default)",
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x, y, data_name = load_mnist_or_digits()
    x = pool14(x)
    n_train, n_test = (2000, 1000) if args.quick else (8000, 2000)
    n_train = min(n_train, int(len(x) * 0.8))
    xtr, ytr, xte, yte = split(x, y, n_train, seed=args.seed)
    xte, yte = xte[:n_test], yte[:n_test]
    float_epochs, eps = (4, 1) if args.quick else (10, 2)
    train = as_loader((xtr, ytr), 64, shuffle=True, seed=args.seed)
    test = as_loader((xte, yte), 256)

    t0 = time.perf_counter()
    net = make_net()
    train_epochs(net, train, test, float_epochs, lr=3e-3, scheduler="none", seed=args.seed)
    float_acc, _ = evaluate(net, test)
    peer = copy.deepcopy(net).eval()
    bm, log = convert_and_finetune(
        net,
        (xtr, ytr),
        (xte, yte),
        epochs_per_step=eps,
        lr=1e-3,
        scheduler="none",
        seed=args.seed,
        progress=False,
    )
    bm.eval()
    bm_float_acc, _ = evaluate(bm, test)
    t_train = time.perf_counter() - t0

    out_dir = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bm_hls4ml_mnist_"))
    in_shape = tuple(xte.shape[1:])
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({"bm": bm, "peer": peer}, out_dir / "models.pt")  # for later inspection
    bm_cfg = {
        "LogTableBits": args.table_bits,
        "ExpTableBits": args.table_bits,
        "LogFracBits": args.table_bits + 4,
    }
    hm_bm, tc_bm = to_hls(bm, in_shape, out_dir / "bm", bm_cfg=bm_cfg)
    hm_peer, tc_peer = to_hls(peer, in_shape, out_dir / "peer")
    acc_bm, tp_bm = csim_accuracy(hm_bm, xte, yte)
    acc_peer, tp_peer = csim_accuracy(hm_peer, xte, yte)

    from bm_ops.fixedpoint import BMFixedConfig

    gate = lat = None
    try:
        from bm_ops.cost import conv_ratios

        ratios = [
            conv_ratios(m.out_channels, m.in_channels, m.kernel_size[0])
            for m in bm.modules()
            if type(m).__name__ == "BMConv2d"
        ]
        gate = float(np.mean([r[0] for r in ratios]))
        lat = float(np.mean([r[1] for r in ratios]))
    except ImportError:
        pass

    rows = [
        ("standard conv (hls4ml Conv2D, peer)", float_acc, acc_peer, tc_peer, tp_peer),
        ("BM conv (bm_ops BMConv2D)", bm_float_acc, acc_bm, tc_bm, tp_bm),
    ]
    print(f"\nartifacts (trained models, hls4ml projects): {out_dir}")
    print(
        f"data: {data_name} 2x2-pooled to {in_shape}, train {len(xtr)}, test {len(xte)}; train+convert {t_train:.0f} s"
    )
    print(
        f"{'model':40s} {'float acc':>9s} {'C-sim acc':>9s} {'Δ pp':>6s} {'compile s':>9s} {'predict s':>9s}"
    )
    for name, fa, ca, tc, tp in rows:
        print(f"{name:40s} {fa * 100:9.2f} {ca * 100:9.2f} {(ca - fa) * 100:6.2f} {tc:9.1f} {tp:9.2f}")
    print(
        f"ratios BM/peer: C-sim acc {acc_bm / acc_peer:.4f}, compile time {tc_bm / tc_peer:.2f}, "
        f"predict time {tp_bm / tp_peer:.2f}"
    )
    if gate is not None:
        print(f"bm_ops.cost estimate (standard/BM, mean over BM layers): gates {gate:.2f}, latency {lat:.2f}")
    d_pp = (acc_bm - bm_float_acc) * 100
    print(
        f"target |C-sim − float BM| ≤ 0.5 pp: {abs(d_pp):.2f} pp measured, {'PASS' if abs(d_pp) <= 0.5 else 'MISS'}"
    )
    print(
        f"BM layers: LogTableBits=ExpTableBits={args.table_bits}, LogFracBits={args.table_bits + 4}, other defaults of {BMFixedConfig()}"
    )
    return {
        "float_acc": float_acc,
        "bm_float_acc": bm_float_acc,
        "bm_csim_acc": acc_bm,
        "peer_csim_acc": acc_peer,
        "delta_pp": d_pp,
        "pid": os.getpid(),
    }


if __name__ == "__main__":
    main()
