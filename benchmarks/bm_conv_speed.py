"""BMConv2d speed and memory: fast kernel (ours) vs naive unfold+max vs torch.nn.functional.conv2d.

Forward + backward, batch 32, ResNet-20 layer shapes (16 ch @ 32², 32 ch @ 16², 64 ch @ 8², 3×3, padding 1),
float32, CPU. Times are the minimum over repetitions (wall clock, interleaved: ours, conv2d, naive), all with
the same torch thread count. Peak memory: each (method, shape) runs once in a fresh subprocess, and the
increase of the process' peak RSS over its RSS right before the call is reported.

The naive version is the textbook one: unfold ``ln x^a``, add ``v^b`` broadcast to (N, F, C·9, L), ``max`` over
taps, ``exp``, for the four (a, b) terms, with plain autograd.

    .venv/bin/python benchmarks/bm_conv_speed.py [--quick] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = [(16, 32), (32, 16), (64, 8)]  # (channels, H=W)
BATCH = 32


def naive_bm_conv2d(x, v_pos, v_neg, padding=1):
    import torch
    import torch.nn.functional as F

    f = v_pos.shape[0]
    n, _, h, w = x.shape
    out = 0
    for p_a, xa in ((1.0, torch.relu(x)), (-1.0, torch.relu(-x))):
        cols = F.unfold(xa, 3, padding=padding)  # (N, C*9, L)
        lx = torch.where(
            cols > 0, torch.log(torch.where(cols > 0, cols, torch.ones_like(cols))), float("-inf")
        )
        for p_b, v in ((1.0, v_pos), (-1.0, v_neg)):
            s = lx[:, None] + v.reshape(f, -1)[None, :, :, None]  # (N, F, C*9, L)
            m = s.max(dim=2).values
            out = out + p_a * p_b * torch.exp(m)
    return out.reshape(n, f, h, w)


def make(c, h, seed=0):
    import torch

    from bm_ops.functional import to_log_weights

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, c, h, h, generator=g).requires_grad_()
    w = (torch.randn(c, c, 3, 3, generator=g) * 0.1).requires_grad_()
    vp, vn = to_log_weights(w.detach())
    # v+ and v- both finite at every tap (worst case for the kernel: no -inf to skip)
    vp = torch.where(torch.isfinite(vp), vp, vn).requires_grad_()
    vn = torch.where(torch.isfinite(vn), vn, vp.detach() - 0.5).requires_grad_()
    return x, w, vp, vn


def step_fn(method, x, w, vp, vn):
    import torch.nn.functional as F

    from bm_ops._kernel import bm_conv2d_fast

    if method == "conv2d":
        return lambda: F.conv2d(x, w, padding=1).sum().backward()
    if method == "ours":
        return lambda: bm_conv2d_fast(x, vp, vn, None, 1, 1).sum().backward()
    if method == "naive":
        return lambda: naive_bm_conv2d(x, vp, vn).sum().backward()
    raise ValueError(method)


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def child(method, c, h, threads) -> None:
    import torch

    from bm_ops._kernel import _lib

    torch.set_num_threads(threads)
    _lib()
    x, w, vp, vn = make(c, h)
    fn = step_fn(method, x, w, vp, vn)
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS watermark (VmHWM) to the current RSS
    fn()
    peak = _status_kib("VmHWM")
    print(json.dumps({"peak_mib": (peak - before) / 1024.0}))


def peak_memory(method, c, h, threads) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--child", method, str(c), str(h), str(threads)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, naive only on the first shape")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        m, c, h, t = args.child
        child(m, int(c), int(h), int(t))
        return []
    import torch

    from bm_ops._kernel import _lib
    from bm_ops.functional import bm_conv2d

    torch.set_num_threads(args.threads)
    _lib()  # JIT build outside the timings
    reps = args.reps or (3 if args.quick else 7)
    rows = []
    for k, (c, h) in enumerate(SHAPES):
        x, w, vp, vn = make(c, h)
        # correctness guard: ours == reference on this very input
        with torch.no_grad():
            ref = bm_conv2d(x[:2].double(), vp.double(), vn.double(), None, 1, 1)
            from bm_ops._kernel import bm_conv2d_fast

            got = bm_conv2d_fast(x[:2], vp, vn, None, 1, 1)
        err = float((got.double() - ref).abs().max())
        methods = ["ours", "conv2d"] + (["naive"] if not args.quick or k == 0 else [])
        fns = {m: step_fn(m, x, w, vp, vn) for m in methods}
        for fn in fns.values():
            fn()  # warm-up
        times = {m: [] for m in methods}
        for _ in range(reps):
            for m in methods:
                x.grad = w.grad = vp.grad = vn.grad = None
                t0 = time.perf_counter()
                fns[m]()
                times[m].append(time.perf_counter() - t0)
        best = {m: min(v) for m, v in times.items()}
        mem = {m: peak_memory(m, c, h, args.threads) for m in methods}
        rows.append({"shape": f"{c}ch@{h}x{h}", "err": err, "best_s": best, "peak_mib": mem})

    print(
        f"BMConv2d fwd+bwd, batch {BATCH}, 3x3 pad 1, float32, torch threads {args.threads}, min of {reps} reps"
    )
    hdr = (
        f"{'shape':<11} {'conv2d ms':>9} {'ours ms':>8} {'naive ms':>9} {'ours/conv2d':>11} {'naive/ours':>10} "
        f"{'conv2d MiB':>10} {'ours MiB':>8} {'naive MiB':>9} {'mem ours/conv2d':>15} {'max|err|':>9}"
    )
    print(hdr)
    for r in rows:
        b, m = r["best_s"], r["peak_mib"]
        nv = b.get("naive")
        naive_ms = f"{1e3 * nv:.1f}" if nv else "-"
        naive_ratio = f"{nv / b['ours']:.1f}" if nv else "-"
        naive_mib = f"{m['naive']:.1f}" if "naive" in m else "-"
        print(
            f"{r['shape']:<11} {1e3 * b['conv2d']:>9.1f} {1e3 * b['ours']:>8.1f} {naive_ms:>9} "
            f"{b['ours'] / b['conv2d']:>11.2f} {naive_ratio:>10} {m['conv2d']:>10.1f} {m['ours']:>8.1f} "
            f"{naive_mib:>9} {m['ours'] / m['conv2d']:>15.2f} {r['err']:>9.1e}"
        )
    print("targets: ours/conv2d <= 10, naive/ours >= 20, mem ours/conv2d <= 2")
    return rows


if __name__ == "__main__":
    main()
