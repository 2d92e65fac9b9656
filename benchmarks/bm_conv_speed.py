"""BMConv2d speed and memory: compiled BM op (ours) vs ``torch.nn.functional.conv2d`` (the peer), same run.

Four shapes (3x3, padding 1, float32, CPU): ResNet-20 layers 16 ch @ 32², 32 ch @ 16², 64 ch @ 8² at batch 32
and the ResNet-18 stage-1 layer 64 ch @ 56² at batch 8. For each shape and mode — forward under ``no_grad`` and
forward + backward (gradients of x and the weights) — the two methods alternate (ours first on even
repetitions, conv2d first on odd ones); each call is timed in CPU time of the calling thread
(``time.thread_time``) with ``torch.set_num_threads(1)`` (both run single-threaded in the calling thread), and
the median and the min–max spread over the repetitions are reported. Saved-for-backward bytes are summed over
the unique tensors autograd packs (``torch.autograd.graph.saved_tensors_hooks``). Two threads: batch 1,
64 ch @ 56², wall time (``time.perf_counter``) of 1 vs 2 threads, alternating in blocks of three calls whose first
is not timed (it wakes the sleeping second OpenMP thread), with the load average printed (the machine is shared:
the 2-thread speed-up needs an idle second core).

    .venv/bin/python benchmarks/bm_conv_speed.py [--quick] [--reps N] [--out benchmarks/out/bm_conv_speed.json]
    .venv/bin/python benchmarks/bm_conv_speed.py --baseline-commit be410cb   # + the first compiled kernel
    .venv/bin/python benchmarks/bm_conv_speed.py --baseline-commit 4d8018c   # + the custom-op kernel before the speed work
    .venv/bin/python benchmarks/bm_conv_speed.py --baseline-commit 7c8f293   # + the kernel before the row strip
    .venv/bin/python benchmarks/bm_conv_speed.py --threads-only --threads-reps 41  # longer 1-vs-2-thread check
    .venv/bin/python benchmarks/bm_conv_speed.py --inputs relu   # typical layer: ReLU input, converted weights

The thread comparison needs two idle cores: run it without other jobs (and without ``OMP_NUM_THREADS=1`` in the
environment); on a loaded machine the medians mostly measure waits for a descheduled thread, and the
fastest-calls ratio printed next to them is only a hint of what an idle machine gives.

Measure with the machine otherwise idle: a busy second core slows conv2d more than our kernel (the ratios then
flatter us). Each shape first checks our output against the float64 reference on one image; that call allocates
and frees >= 19 MB, which raises glibc's dynamic mmap/trim thresholds as any training process does in its first
steps, so both methods run with the allocator warm (in a fresh process conv2d page-faults its buffers on every
call and runs 2-3x slower).

``--baseline-commit REV`` adds a third method, ``bm_ops/_kernel.py`` + ``_kernel.cpp`` as they were at ``REV``
(extracted with ``git show`` into a temporary package, built into its own cache), timed in the same loop.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHAPES = [(16, 32, 32), (32, 16, 32), (64, 8, 32), (64, 56, 8)]  # (channels, H=W, batch)


def make(c, h, n, seed=0, inputs="worst"):
    """x, conv2d weights w and the BM log weights of one shape. ``inputs="worst"``: randn x of both signs and
    v+ and v- both finite at every tap (nothing to skip); ``"relu"``: x after a ReLU (half zeros, no negative
    inputs) and the log weights converted from w as they are (-inf where the sign does not match), the typical
    layer inside a converted ResNet."""
    import torch

    from bm_ops.functional import to_log_weights

    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c, h, h, generator=g)
    w = (torch.randn(c, c, 3, 3, generator=g) * 0.1).requires_grad_()
    vp, vn = to_log_weights(w.detach())
    if inputs == "relu":
        return torch.relu(x).requires_grad_(), w, vp.requires_grad_(), vn.requires_grad_()
    if inputs != "worst":
        raise ValueError(f"make: inputs must be 'worst' or 'relu', got {inputs!r}")
    # v+ and v- both finite at every tap and x of both signs, no zeros (worst case: nothing to skip)
    vp = torch.where(torch.isfinite(vp), vp, vn).requires_grad_()
    vn = torch.where(torch.isfinite(vn), vn, vp.detach() - 0.5).requires_grad_()
    return x.requires_grad_(), w, vp, vn


_BASELINE = None


def load_baseline(rev: str):
    """``bm_conv2d_fast`` of ``bm_ops/_kernel.py`` at git revision ``rev`` (a temporary package, own cache)."""
    global _BASELINE
    tmp = Path(tempfile.mkdtemp(prefix="bm_baseline_"))
    pkg = tmp / "bm_baseline"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("_kernel.py", "_kernel.cpp"):
        src = subprocess.run(
            ["git", "show", f"{rev}:bm_ops/{name}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        (pkg / name).write_text(src)
    os.environ["BM_OPS_CACHE_BASELINE"] = str(tmp / "cache")
    text = (
        (pkg / "_kernel.py")
        .read_text()
        .replace('os.environ.get("BM_OPS_CACHE")', 'os.environ.get("BM_OPS_CACHE_BASELINE")')
        # a revision that registers the torch.library op too: its own op namespace (no clash with ours)
        .replace('"bm_ops::', '"bm_ops_baseline::')
        .replace("torch.ops.bm_ops.", "torch.ops.bm_ops_baseline.")
    )
    (pkg / "_kernel.py").write_text(text)
    sys.path.insert(0, str(tmp))
    _BASELINE = importlib.import_module("bm_baseline._kernel").bm_conv2d_fast
    return _BASELINE


def step_fn(method, mode, x, w, vp, vn):
    import torch
    import torch.nn.functional as F

    from bm_ops._kernel import bm_conv2d_fast

    if method == "conv2d":
        f = lambda: F.conv2d(x, w, padding=1)  # noqa: E731
    elif method == "ours":
        f = lambda: bm_conv2d_fast(x, vp, vn, None, 1, 1)  # noqa: E731
    elif method == "baseline":
        f = lambda: _BASELINE(x, vp, vn, None, 1, 1)  # noqa: E731
    else:
        raise ValueError(method)
    if mode == "fwd":

        def run():
            with torch.no_grad():
                f()

        return run

    def run_bwd():
        x.grad = w.grad = vp.grad = vn.grad = None
        f().sum().backward()

    return run_bwd


def saved_bytes(method, x, w, vp, vn) -> int:
    import torch
    import torch.nn.functional as F

    from bm_ops._kernel import bm_conv2d_fast

    seen: dict[tuple, int] = {}

    def pack(t):
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
        seen[key] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = F.conv2d(x, w, padding=1) if method == "conv2d" else bm_conv2d_fast(x, vp, vn, None, 1, 1)
    del y
    return sum(seen.values())


def timed(fn, clock) -> float:
    t0 = clock()
    fn()
    return clock() - t0


def stats(v):
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v)}


def load_avg() -> str:
    try:
        return " ".join(f"{a:.2f}" for a in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--quick", action="store_true", help="3 repetitions (for make bench); the result needs >= 7"
    )
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 7, 3 with --quick)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "bm_conv_speed.json"))
    ap.add_argument(
        "--baseline-commit", default=None, help="also time bm_ops/_kernel.py of this git revision"
    )
    ap.add_argument(
        "--threads-only", action="store_true", help="only the batch-1 1-vs-2-thread comparison (no shapes)"
    )
    ap.add_argument("--threads-reps", type=int, default=None, help="repetitions of the thread comparison")
    ap.add_argument(
        "--inputs",
        choices=["worst", "relu"],
        default="worst",
        help="worst: randn x, both log weights finite (the targets); relu: x after a ReLU, converted weights",
    )
    args = ap.parse_args(argv)
    import torch

    from bm_ops._kernel import bm_conv2d_fast, kernel_available
    from bm_ops.functional import bm_conv2d

    if not kernel_available():
        raise SystemExit(
            "bm_conv_speed: the compiled kernel is unavailable (see the warning); nothing to measure"
        )
    reps = args.reps or (3 if args.quick else 7)
    methods = ["ours", "conv2d"]
    if args.baseline_commit:
        load_baseline(args.baseline_commit)
        methods.append("baseline")
    load_before = load_avg()
    torch.set_num_threads(1)
    rows = []
    for c, h, n in [] if args.threads_only else SHAPES:
        x, w, vp, vn = make(c, h, n, inputs=args.inputs)
        # correctness guard: ours == float64 reference on this very input (its >= 19 MB temporaries also leave the
        # allocator warm for both methods: see the module docstring)
        with torch.no_grad():
            ref = bm_conv2d(x[:1].double(), vp.double(), vn.double(), None, 1, 1)
            err = float((bm_conv2d_fast(x[:1], vp, vn, None, 1, 1).double() - ref).abs().max())
        row = {"shape": f"{c}ch@{h}x{h}", "batch": n, "max_abs_err": err}
        for mode in ("fwd", "fwdbwd"):
            fns = {m: step_fn(m, mode, x, w, vp, vn) for m in methods}
            for fn in fns.values():
                fn()  # warm-up
            t = {m: [] for m in fns}
            for r in range(reps):
                for m in methods if r % 2 == 0 else methods[::-1]:
                    t[m].append(timed(fns[m], time.thread_time))
            row[mode] = {m: stats(v) for m, v in t.items()}
            row[mode]["ratio"] = row[mode]["ours"]["median"] / row[mode]["conv2d"]["median"]
            if "baseline" in t:
                row[mode]["baseline_ratio"] = row[mode]["baseline"]["median"] / row[mode]["conv2d"]["median"]
        sb = {m: saved_bytes(m, x, w, vp, vn) for m in ("ours", "conv2d")}
        row["saved_bytes"] = {**sb, "ratio": sb["ours"] / sb["conv2d"]}
        rows.append(row)

    # threads: batch 1, 64 ch @ 56^2, wall time, 1 vs 2 threads alternating
    x, w, vp, vn = make(64, 56, 1, inputs=args.inputs)
    threads = {}
    for mode in ("fwd", "fwdbwd"):
        fn = step_fn("ours", mode, x, w, vp, vn)
        t = {1: [], 2: []}
        for nt in (1, 2):
            torch.set_num_threads(nt)
            fn()
        for r in range(args.threads_reps or reps):
            for nt in (1, 2) if r % 2 == 0 else (2, 1):
                # a block of calls per thread count, the first one untimed: during the 1-thread calls the second
                # OpenMP thread may have gone to sleep, and the first 2-thread call pays for waking it; a training
                # loop calls the op back to back with one thread count
                torch.set_num_threads(nt)
                fn()
                for _ in range(2):
                    t[nt].append(timed(fn, time.perf_counter))
        threads[mode] = {
            "1": stats(t[1]),
            "2": stats(t[2]),
            "speedup": statistics.median(t[1]) / statistics.median(t[2]),
            "best_case_speedup": min(t[1]) / min(t[2]),
        }
    torch.set_num_threads(1)
    result = {
        "reps": reps,
        "inputs": args.inputs,
        "load_before": load_before,
        "load_after": load_avg(),
        "rows": rows,
        "threads": threads,
    }

    print(
        f"BM conv (ours) vs torch conv2d, 3x3 pad 1, float32, 1 thread, CPU time (thread_time), {reps} reps, order alternated"
        f", inputs: {args.inputs}"
    )
    print(f"load average before: {load_before}; after: {result['load_after']} (2 cores, shared)")
    print(
        f"{'shape':<11} {'N':>2} | {'fwd conv ms':>11} {'fwd ours ms':>11} {'ratio':>5} | {'f+b conv ms':>11} "
        f"{'f+b ours ms':>11} {'ratio':>5} | {'saved conv MiB':>14} {'ours MiB':>8} {'ratio':>5} | {'max|err|':>8}"
    )
    for r in rows:
        f, b, s = r["fwd"], r["fwdbwd"], r["saved_bytes"]

        def ms(d):
            return f"{1e3 * d['median']:.1f}±{1e3 * (d['max'] - d['min']) / 2:.1f}"

        print(
            f"{r['shape']:<11} {r['batch']:>2} | {ms(f['conv2d']):>11} {ms(f['ours']):>11} {f['ratio']:>5.2f} | "
            f"{ms(b['conv2d']):>11} {ms(b['ours']):>11} {b['ratio']:>5.2f} | {s['conv2d'] / 2**20:>14.2f} "
            f"{s['ours'] / 2**20:>8.2f} {s['ratio']:>5.2f} | {r['max_abs_err']:>8.1e}"
        )
    print("(ms: median ± half the min-max spread)")
    if args.baseline_commit:
        print(f"baseline = bm_ops/_kernel.py at {args.baseline_commit}, same loop (ratios to conv2d):")
        for r in rows:
            print(
                f"{r['shape']:<11} fwd baseline {r['fwd']['baseline_ratio']:.2f} ours {r['fwd']['ratio']:.2f} | "
                f"f+b baseline {r['fwdbwd']['baseline_ratio']:.2f} ours {r['fwdbwd']['ratio']:.2f}"
            )
    for mode, d in threads.items():
        print(
            f"batch 1, 64ch@56x56, {mode}: 1 thread {1e3 * d['1']['median']:.1f} ms "
            f"[{1e3 * d['1']['min']:.1f}, {1e3 * d['1']['max']:.1f}], 2 threads {1e3 * d['2']['median']:.1f} ms "
            f"[{1e3 * d['2']['min']:.1f}, {1e3 * d['2']['max']:.1f}] (wall): speed-up {d['speedup']:.2f}x "
            f"(medians; fastest calls: {d['best_case_speedup']:.2f}x)"
        )
    print("targets: fwd ratio <= 4, f+b ratio <= 6, saved ratio <= 2, 2-thread speed-up >= 1.6")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
