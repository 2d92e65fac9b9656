"""SkipTrim benchmark on cluttered, translated MNIST (CPU): Skipper vs its teacher and three baselines,
paired over seeds with 95 % confidence intervals (Khodamoradi 2021, §4.3, Table 4.1 in small).

Why this task: on 14x14 MNIST a skip-free ResNet trained from scratch already matches its teacher, so nothing
can be shown there; the dissertation's CIFAR-10/100 and SVHN cannot be had here.  The data is the MNIST 10k
split made cluttered and translated (``hls4ml_skiptrim.training.recipes.data.cluttered_translated``: digits
pooled to 14x14 at random positions of a 32x32 canvas with 4 fragments of 7x7 cut from other digits),
split once (seed 0) into train / validation / test.

Cells: one per (depth, precision, seed); defaults ResNet-20 and ResNet-32 in float with seeds 0-7, ResNet-20
QKeras <8,3> with seeds 0-3 (tf-keras; Fig 4.3.b "ReLU before addition" blocks).  Every cell trains, with the
same seed:

* **teacher**: long skips, cross-entropy, Adam + ASLR (the recipes' setting, ASLR monitoring val_loss) for
  ``--teacher-epochs``; the <8,3> teacher is the float teacher of the
  same depth and seed after ``--qat-epochs`` of quantization-aware training (as the dissertation quantizes,
  §4.3.3);
* **plain (from scratch)**: the skip-free network from random weights with the teacher's recipe and epochs
  (NonResNet paper's "train NonResNet20 from scratch"; the public reference's ``noskip``);
* **no-distill**: the teacher with every skip removed at once, cross-entropy only, with Skipper's epochs, rate
  schedule and selection window (differs from Skipper only by the gradual schedule and the Eq 4.4 term);
* **noskip_kd**: the skip-free network from random weights trained with Eq 4.4 (β = 0.35) against the frozen
  teacher for the teacher's epochs (the public reference's ``noskip_kd``: distillation without skips);
* **Skipper**: Algorithm 1, α = 1, Eq 4.4, then ``--tail`` epochs; the exported (BN-folded for float) model is
  evaluated.

Model selection, the same for all: the weights of the epoch with the best validation accuracy (students:
among epochs in which every skip is already gone).  The test split is only used for the reported numbers.

Resumable: every finished cell is written to ``<results>/<settings hash>/<depth>_<precision>_s<seed>.json``
(default ``benchmarks/results/skiptrim_cluttered``, kept in the repository so that finished cells survive a fresh
clone), the teacher and plain weights of every cell to ``<out>/cells/<settings hash>/`` (a <8,3> cell starts from
the float ones); a later invocation with the same settings skips the finished cells and loads the stored
teacher/plain networks of an unfinished one, so the grid can be spread over several sessions and machines.
Cells are deterministic (``enable_op_determinism``, one thread): a resumed cell, with its teacher and plain
networks loaded instead of trained, gives the same numbers bit for bit (checked on ResNet-8).  Each contender's test accuracy is printed
(and written to ``<cell>.partial.json``) as soon as it is known.  ``--budget-min`` stops starting new cells.

Reported: per (depth, precision) the mean accuracy of each contender, and paired per-seed differences with 95 %
Student-t intervals: Skipper − teacher, Skipper − plain, Skipper − no-distill, Skipper − noskip_kd; then the
target lines (Skipper − teacher: CI lower bound ≥ −0.5 pp; Skipper − plain: CI lower bound > 0).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/skiptrim_cluttered.py              # full grid (many hours)
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/skiptrim_cluttered.py --quick      # smoke: ResNet-8, 2 seeds
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hls4ml_skiptrim.training.recipes.stats import paired_ci  # noqa: E402

CONTENDERS = ("teacher", "plain", "no_distill", "noskip_kd", "skipper")
COMPARISONS = ("teacher", "plain", "no_distill", "noskip_kd")


def load(args):
    from hls4ml_skiptrim.training.keras import to_nhwc
    from hls4ml_skiptrim.training.recipes.data import cluttered_translated, load_cluttered_mnist
    from hwreshape.data import load_digits, mnist_dir, split

    if mnist_dir() is not None and not args.digits:
        x, y = load_cluttered_mnist()
        name = "cluttered MNIST 10k (32x32)"
    else:  # fresh clone without ../shared: the same construction on sklearn digits
        x, y = load_digits()
        x, y = cluttered_translated(x, y, canvas=16, n_clutter=4, fragment=4, seed=0)
        name = "cluttered digits (16x16)"
    n_tr, n_va = args.n_train, args.n_val
    if n_tr + n_va >= len(x):
        raise SystemExit(f"--n-train + --n-val must be < {len(x)} (the test split is the rest)")
    xtr, ytr, xrest, yrest = split(x, y, n_tr, seed=0)
    return name, to_nhwc(xtr), ytr, to_nhwc(xrest[:n_va]), yrest[:n_va], to_nhwc(xrest[n_va:]), yrest[n_va:]


def _seed_all(seed):
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _ce_net(depth, skips, quant, seed, data, args, init=None, name="net"):
    """Cross-entropy training with the teacher's recipe (or --qat-epochs of QAT from ``init``)."""
    from hls4ml_skiptrim.training import keras as sk

    _, xtr, ytr, xv, yv, _, _ = data
    _seed_all(seed)
    kw = dict(quant=quant, input_shape=xtr.shape[1:], num_classes=10, framework="tf_keras")
    net = sk.resnet(depth, skips, name=name, **kw)
    epochs = args.teacher_epochs
    if init is not None:
        sk.transfer_weights(init, net)
        epochs = args.qat_epochs
    sk.fit_teacher(
        net,
        xtr,
        ytr,
        xv,
        yv,
        epochs=epochs,
        lr=args.lr,
        batch_size=args.batch,
        seed=seed,
        verbose=0,
        select_from=0,
    )
    return net


def run_cell(depth, quant, seed, data, args, cells: Path) -> dict:
    from hls4ml_skiptrim.training import keras as sk

    _, xtr, ytr, xv, yv, xte, yte = data
    t0 = time.time()
    kw = dict(quant=quant, input_shape=xtr.shape[1:], num_classes=10, framework="tf_keras")
    fit_kw = dict(lr=args.lr, batch_size=args.batch, seed=seed, verbose=0)
    row = {"depth": depth, "quant": quant or "float", "seed": seed}
    partial = cells / f"{depth}_{quant or 'float'}_s{seed}.partial.json"

    def progress(name, acc):
        row[name] = acc
        partial.write_text(json.dumps(row))
        print(
            f"    ResNet-{depth} {quant or 'float'} seed {seed}: {name} test acc {100 * acc:.2f} %",
            flush=True,
        )

    def ce_net(skips, q, name, init=None):
        """A cross-entropy network (teacher / plain) of precision ``q``: loaded if stored, else trained+stored.

        Stored weights make a cell resumable network by network, and the <8,3> cells start from the float ones."""
        path = cells / f"{depth}_{q or 'float'}_s{seed}_{name}.weights.h5"
        if path.exists():
            net = sk.resnet(depth, skips, name=name, **{**kw, "quant": q})
            net.load_weights(str(path))
            return net
        net = _ce_net(depth, skips, q, seed, data, args, init=init, name=name)
        net.save_weights(str(path))
        return net

    init_t = ce_net("long", None, "teacher") if quant is not None else None
    teacher = ce_net("long", quant, "teacher", init=init_t)
    progress("teacher", sk.accuracy(teacher, xte, yte))

    init_p = ce_net("none", None, "plain") if quant is not None else None
    plain = ce_net("none", quant, "plain", init=init_p)
    progress("plain", sk.accuracy(plain, xte, yte))

    _seed_all(seed)
    skipper = sk.Skipper(teacher, alpha=1, verbose=False)
    ep_skip = skipper.schedule.epochs_to_finish + args.tail
    sel = skipper.schedule.epochs_to_finish - 1  # first epoch with every skip removed
    sk.fit_student(skipper, xtr, ytr, xv, yv, epochs=ep_skip, select_from=sel, **fit_kw)
    exported = skipper.export()
    if sk.count_adds(exported) != 0:
        raise RuntimeError("Skipper's exported model still has skip additions")
    progress("skipper", sk.accuracy(exported, xte, yte))

    _seed_all(seed)
    nodistill = sk.resnet(depth, "none", name="nodistill", **kw)
    sk.transfer_weights(teacher, nodistill)
    sk.fit_teacher(nodistill, xtr, ytr, xv, yv, epochs=ep_skip, select_from=sel, **fit_kw)
    progress("no_distill", sk.accuracy(nodistill, xte, yte))

    # distillation without skips: a gated student from random weights, every skip removed at epoch 0
    # (Algorithm 1 with all blocks in one step), Eq 4.4 against the frozen teacher for the teacher's epochs
    _seed_all(seed + 10_000)
    cfg = sk.config_of(teacher)
    fresh = sk.resnet(depth, "long", gated=True, name="noskip_kd", **kw)
    kd = sk.Skipper(teacher, alpha=1, blocks_per_step=len(cfg["skips"]), student=fresh, verbose=False)
    ep_kd = args.teacher_epochs if quant is None else args.teacher_epochs + args.qat_epochs
    sk.fit_student(kd, xtr, ytr, xv, yv, epochs=ep_kd, select_from="finished", **fit_kw)
    progress("noskip_kd", sk.accuracy(kd.export(), xte, yte))

    row.update(epochs_teacher=args.teacher_epochs, epochs_skipper=ep_skip, epochs_noskip_kd=ep_kd)
    row["seconds"] = time.time() - t0  # of this invocation (stored networks are loaded, not retrained)
    partial.unlink(missing_ok=True)
    return row


def report(rows, grid) -> tuple[str, dict]:
    lines = [
        "| model | precision | seeds | teacher % | plain % | no-distill % | noskip_kd % | Skipper % "
        "| Skipper − teacher [pp, 95 % CI] | Skipper − plain | Skipper − no-distill | Skipper − noskip_kd |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for depth, quant in grid:
        sel = sorted(
            (r for r in rows if r["depth"] == depth and r["quant"] == (quant or "float")),
            key=lambda r: r["seed"],
        )
        key = f"ResNet-{depth} {quant or 'float'}"
        if not sel:
            lines.append(f"| ResNet-{depth} | {quant or 'float'} | 0 | not run |||||||||")
            continue
        acc = {c: 100 * np.array([r[c] for r in sel]) for c in CONTENDERS}
        cis = {c: paired_ci(acc["skipper"], acc[c]) for c in COMPARISONS}
        summary[key] = {"seeds": [r["seed"] for r in sel], "means": {c: float(acc[c].mean()) for c in acc}}
        summary[key]["skipper_minus"] = cis

        def fmt(ci):
            return f"{ci['mean']:+.2f} [{ci['lo']:+.2f}, {ci['hi']:+.2f}]"

        lines.append(
            f"| ResNet-{depth} | {quant or 'float'} | {len(sel)} | "
            + " | ".join(f"{acc[c].mean():.2f}" for c in CONTENDERS)
            + " | "
            + " | ".join(fmt(cis[c]) for c in COMPARISONS)
            + " |"
        )
        lo_t, lo_p = cis["teacher"]["lo"], cis["plain"]["lo"]
        if len(sel) < 2:  # no interval from one seed: the targets are not established either way
            summary[key]["acceptance"] = None
            lines.append(f"\ntarget {key}: not established (1 seed; the 95 % CIs need >= 2)\n")
            continue
        summary[key]["acceptance"] = {
            "skipper_ci_lower_vs_teacher_ge_-0.5pp": bool(lo_t >= -0.5),
            "skipper_minus_plain_ci_above_0": bool(lo_p > 0),
        }
        lines.append(
            f"\ntarget {key} ({len(sel)} seeds): Skipper − teacher CI lower bound {lo_t:+.2f} pp (>= −0.50: "
            f"{'met' if lo_t >= -0.5 else 'MISSED'}); Skipper − plain CI lower bound {lo_p:+.2f} pp (> 0: "
            f"{'met' if lo_p > 0 else 'MISSED'})\n"
        )
    return "\n".join(lines), summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="ResNet-8 float, 2 seeds, tiny epochs (smoke run)")
    ap.add_argument(
        "--cells",
        nargs="+",
        default=["20:float:0-7", "32:float:0-7", "20:<8,3>:0-3"],
        help="depth:precision:seeds groups (seeds as a-b or a,b,c)",
    )
    ap.add_argument("--n-train", type=int, default=7000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--teacher-epochs", type=int, default=30)
    ap.add_argument("--qat-epochs", type=int, default=10)
    ap.add_argument("--tail", type=int, default=10, help="Skipper epochs after its last modification")
    ap.add_argument("--lr", type=float, default=2e-3, help="Adam + ASLR start centre")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--budget-min", type=float, default=1e9, help="start no new cell after this many minutes")
    ap.add_argument("--digits", action="store_true", help="cluttered sklearn digits even if MNIST is present")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "skiptrim_cluttered"))
    ap.add_argument(
        "--results",
        default=str(Path(__file__).resolve().parent / "results" / "skiptrim_cluttered"),
        help="folder of the finished cells' JSON (kept in the repository; --quick uses <out>/results)",
    )
    args = ap.parse_args(argv)
    if args.quick:
        args.cells = ["8:float:0-1"]
        args.n_train, args.n_val, args.teacher_epochs, args.qat_epochs, args.tail = 600, 300, 2, 1, 1
        args.results = str(Path(args.out) / "results")
    grid, todo = [], []
    for spec in args.cells:
        try:
            d, q, s = spec.split(":")
            seeds = (
                range(int(s.split("-")[0]), int(s.split("-")[1]) + 1) if "-" in s else map(int, s.split(","))
            )
            depth, quant = int(d), (None if q == "float" else q)
        except ValueError:
            ap.error(f"--cells: expected depth:precision:seeds like 20:float:0-7, got {spec!r}")
        grid.append((depth, quant))
        todo += [(depth, quant, seed) for seed in seeds]
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    data = load(args)
    out = Path(args.out)
    tag = f"{data[0]}|{args.n_train}|{args.n_val}|{args.teacher_epochs}|{args.qat_epochs}|{args.tail}|{args.lr}|{args.batch}"
    key = hashlib.sha1(tag.encode()).hexdigest()[:10]
    cells = out / "cells" / key  # stored networks (large, not kept in the repository)
    done_dir = Path(args.results) / key  # finished cells (small JSON, kept in the repository)
    for d in (cells, done_dir):
        d.mkdir(parents=True, exist_ok=True)
        (d / "settings.txt").write_text(tag + "\n")
    print(
        f"data: {data[0]} train {len(data[1])} val {len(data[3])} test {len(data[5])}; finished cells in "
        f"{done_dir}, networks in {cells}",
        flush=True,
    )
    t_start = time.time()
    rows = []
    for depth, quant, seed in todo:
        f = done_dir / f"{depth}_{quant or 'float'}_s{seed}.json"
        legacy = cells / f.name  # where earlier versions stored finished cells
        if not f.exists() and legacy.exists():
            f.write_text(legacy.read_text())
        if f.exists():
            rows.append(json.loads(f.read_text()))
            print(f"  stored  ResNet-{depth} {quant or 'float'} seed {seed}", flush=True)
            continue
        if time.time() - t_start > 60 * args.budget_min:
            print(f"  budget: not starting ResNet-{depth} {quant or 'float'} seed {seed}", flush=True)
            continue
        row = run_cell(depth, quant, seed, data, args, cells)
        tmp = f.with_suffix(".tmp")
        tmp.write_text(json.dumps(row))
        tmp.replace(f)
        rows.append(row)
        print(f"  done    {json.dumps(row)}", flush=True)
    text, summary = report(rows, grid)
    print(f"\nSkipTrim on {data[0]}: test accuracy, means over seeds; paired differences with 95 % CIs")
    print(text)
    wall = sum(r["seconds"] for r in rows)
    print(f"cells: {len(rows)} of {len(todo)}; training time of the stored cells {wall / 3600:.2f} h")
    (out / "skiptrim_cluttered.json").write_text(
        json.dumps({"args": vars(args), "rows": rows, "summary": summary})
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
