"""SkipTrim on MNIST (CPU): teachers vs students, float and QKeras <8,3> — a small Table 4.1 / 4.6.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/skiptrim_mnist.py [--quick] [--jobs N]``.

For each depth (ResNet-8, ResNet-20; Fig 4.3.b "ReLU before addition" blocks), precision (float, QKeras
<8,3>) and seed it trains, with tf-keras (QKeras needs tf-keras):

* **teacher**: long skips, cross-entropy, Adam + ASLR for ``--teacher-epochs`` (default 30: the validation
  accuracy of the ResNet-8 pilot plateaued after ~25 epochs, training accuracy 100 %).  The <8,3> teacher is
  the float teacher of the same depth and seed after ``--qat-epochs`` epochs of quantization-aware training
  in QKeras (the dissertation quantizes its float models by QAT, Section 4.3.3); ``--quant-teacher scratch`` trains
  it from scratch instead;
* **cut**: the teacher with every skip removed, no training (the shock Skipper avoids);
* **plain (from scratch)**: the skip-free network trained from random weights with the teacher's recipe
  and epochs (and, for <8,3>, the same ``--qat-epochs`` of QAT from the float plain network): the
  "train NonResNet20 from scratch" baseline of the NonResNet paper (Weng, Khodamoradi & Kastner) and the ``noskip`` run of the public reference —
  skips removed, no teacher, no distillation;
* **no-distill**: a stricter ablation of our own — every skip removed at once, initialised from the
  teacher, cross-entropy only, with exactly Skipper's epochs, learning-rate schedule, seed and
  model-selection window (so it differs from Skipper only by the gradual schedule and the Eq 4.4 term);
* **Skipper**: Algorithm 1, α = 1, Eq 4.4 (β = 0.35, MSE on logits), then the clean exported (BN-folded for
  float) model is what gets evaluated;
* **Trimmer**: Algorithm 1, α = 3 (ResNet-8) / α = 1 (deeper, to fit the CPU budget — a deviation from the
  dissertation's α = 3), Eq 4.4.

Protocol, identical for every contender: students get ``--tail`` (default 10) extra epochs after their last
modification — with 1, Skipper's finished ResNet-20 student trained 1 epoch against no-distill's 10, and the dissertation
trains its students as long as its teachers —
and start from the teacher at the teacher's start learning rate (``--student-lr restart``; ASLR's centre did
not decay during the pilot teachers, so ``continue`` is the same number there).  Model selection
(``--select best-val``, default): every network keeps the weights of its epoch with the best *validation*
accuracy — the teacher among all its epochs, the students (and no-distill, over the same epoch indices as
Skipper) among the epochs in which every block already has its final mode.  The test split is only used for
the reported numbers.  Peers measured side by side: the teacher (Δ in percentage points) and the
no-distillation student.  Data: the MNIST 10k split from ``../shared`` (sklearn digits otherwise), images
average-pooled 28×28 → 14×14 to fit the CPU budget (a deviation), split into train / validation (ASLR
monitors val_loss, selection val accuracy) / test (reported).  Each (depth, seed) group (float, then <8,3>)
runs in its own worker process with one TF thread, ``--jobs`` (default 2) groups side by side, deepest models
first; no new configuration starts after ``--budget-min`` minutes and skipped cells are reported as such.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hwreshape.data import load_mnist_or_digits, split  # noqa: E402


def pool2(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    return x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).mean(axis=(3, 5))


def load(n_train: int, n_val: int, seed: int = 0):
    from hls4ml_skiptrim.training.keras import to_nhwc

    x, y, name = load_mnist_or_digits()
    if name == "mnist10k":
        x = pool2(x)
    xtr, ytr, xrest, yrest = split(x, y, n_train, seed=seed)
    xv, yv, xte, yte = xrest[:n_val], yrest[:n_val], xrest[n_val:], yrest[n_val:]
    return name, to_nhwc(xtr), ytr, to_nhwc(xv), yv, to_nhwc(xte), yte


def train_net(depth, skips, quant, seed, data, args, init=None, name="teacher"):
    """A network trained with the teacher's recipe: CE, Adam + ASLR, ``--teacher-epochs`` from random weights,
    or — with ``init`` (the float network of the same depth, skips and seed) — ``--qat-epochs`` of
    quantization-aware fine-tuning.  ``skips="long"`` is the teacher, ``skips="none"`` the plain network."""
    import tensorflow as tf
    import tf_keras

    from hls4ml_skiptrim.training import keras as sk

    _, xtr, ytr, xv, yv, _, _ = data
    tf_keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    kw = dict(quant=quant, input_shape=xtr.shape[1:], num_classes=10, framework="tf_keras")
    net = sk.resnet(depth, skips, name=name, **kw)
    epochs = args.teacher_epochs
    if init is not None:
        sk.transfer_weights(init, net)
        epochs = args.qat_epochs
    hist = sk.fit_teacher(
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
        select_from=0 if args.select == "best-val" else None,
    )
    return net, hist, epochs


def run_one(
    depth, quant, seed, data, args, float_teacher=None, float_plain=None
) -> tuple[dict, object, object]:
    import tensorflow as tf
    import tf_keras

    from hls4ml_skiptrim.training import keras as sk

    _, xtr, ytr, xv, yv, xte, yte = data
    tf_keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    kw = dict(quant=quant, input_shape=xtr.shape[1:], num_classes=10, framework="tf_keras")
    best = args.select == "best-val"
    row = {"depth": depth, "quant": quant or "float", "seed": seed}
    t0 = time.time()

    init = None
    if quant is not None and args.quant_teacher == "from-float":
        init = float_teacher or train_net(depth, "long", None, seed, data, args)[0]
    teacher, hist, ep_teacher = train_net(depth, "long", quant, seed, data, args, init=init)
    tf_keras.utils.set_random_seed(seed)
    row["teacher"] = sk.accuracy(teacher, xte, yte)
    # students start where the teacher's training ended ("continue"), or at the teacher's start LR ("restart")
    c_hist = hist.history.get("aslr_c") or [args.lr]
    lr_s = float(c_hist[-1]) if args.student_lr == "continue" else args.lr
    fit_kw = dict(lr=lr_s, batch_size=args.batch, seed=seed, verbose=0)

    n_blocks = len(sk.config_of(teacher)["skips"])
    cut = sk.resnet(depth, "none", name="cut", **kw)
    sk.transfer_weights(teacher, cut)
    row["cut"] = sk.accuracy(cut, xte, yte)

    sk_alpha = 1
    skipper = sk.Skipper(teacher, alpha=sk_alpha, verbose=False)
    ep_skip = skipper.schedule.epochs_to_finish + args.tail
    sel_skip = skipper.schedule.epochs_to_finish - 1  # first epoch with every skip removed
    sk.fit_student(
        skipper, xtr, ytr, xv, yv, epochs=ep_skip, select_from=sel_skip if best else None, **fit_kw
    )
    exported = skipper.export()
    assert sk.count_adds(exported) == 0
    row["skipper"] = sk.accuracy(exported, xte, yte)
    row["skipper_vs_gated"] = float(
        np.abs(exported.predict(xte[:256], verbose=0) - skipper.student.predict(xte[:256], verbose=0)).max()
    )

    # same initialisation (the teacher), epochs, LR schedule, seed and selection window as Skipper
    nodistill = sk.resnet(depth, "none", name="nodistill", **kw)
    sk.transfer_weights(teacher, nodistill)
    sk.fit_teacher(
        nodistill, xtr, ytr, xv, yv, epochs=ep_skip, select_from=sel_skip if best else None, **fit_kw
    )
    row["no_distill"] = sk.accuracy(nodistill, xte, yte)

    # the plain network (no skips) trained from random weights with the teacher's recipe and epochs, and
    # quantized like the teacher (QAT from the float plain network): the NonResNet paper's (Weng, Khodamoradi & Kastner) "from scratch" baseline and
    # the public reference's ``noskip`` run
    plain_init = None
    if quant is not None and args.quant_teacher == "from-float":
        plain_init = float_plain or train_net(depth, "none", None, seed, data, args, name="plain")[0]
    plain = train_net(depth, "none", quant, seed, data, args, init=plain_init, name="plain")[0]
    row["plain"] = sk.accuracy(plain, xte, yte)

    tr_alpha = 3 if n_blocks <= 3 else args.trim_alpha_deep
    trimmer = sk.Trimmer(teacher, alpha=tr_alpha, verbose=False)
    ep_trim = trimmer.schedule.epochs_to_finish + args.tail
    sk.fit_student(
        trimmer, xtr, ytr, xv, yv, epochs=ep_trim, select_from="finished" if best else None, **fit_kw
    )
    exported = trimmer.export()
    assert sk.count_adds(exported) == 2 * n_blocks
    row["trimmer"] = sk.accuracy(exported, xte, yte)
    row.update(
        epochs_teacher=ep_teacher,
        teacher_init="float teacher" if init is not None else "random",
        epochs_skipper=ep_skip,
        epochs_trimmer=ep_trim,
        alpha_skipper=sk_alpha,
        alpha_trimmer=tr_alpha,
        lr_student=lr_s,
        seconds=time.time() - t0,
    )
    return row, teacher, plain


COLS = ("teacher", "cut", "plain", "no_distill", "skipper", "trimmer")


def table(rows: list[dict], grid: list[tuple]) -> str:
    lines = [
        "| model | precision | seeds | teacher % | cut (no training) % | plain (from scratch) % | no-distill % "
        "| Skipper % | Trimmer % | Skipper − teacher [pp] | Trimmer − teacher [pp] | Skipper − plain [pp] "
        "| Skipper − no-distill [pp] |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for depth, quant in grid:
        sel = [r for r in rows if r["depth"] == depth and r["quant"] == (quant or "float")]
        if not sel:
            lines.append(f"| ResNet-{depth} | {quant or 'float'} | 0 | not run (budget) |||||||||||")
            continue
        a = {c: 100 * np.array([r[c] for r in sel]) for c in COLS}

        def ms(v):
            return f"{v.mean():.2f} ± {v.std():.2f}" if len(v) > 1 else f"{v.mean():.2f}"

        deltas = (
            a["skipper"] - a["teacher"],
            a["trimmer"] - a["teacher"],
            a["skipper"] - a["plain"],
            a["skipper"] - a["no_distill"],
        )
        lines.append(
            f"| ResNet-{depth} | {quant or 'float'} | {len(sel)} | "
            + " | ".join(ms(a[c]) for c in COLS)
            + " | "
            + " | ".join(f"{d.mean():+.2f}" for d in deltas)
            + " |"
        )
    return "\n".join(lines)


def run_group(depth: int, seed: int, quants: list, args, t_start: float) -> list[dict]:
    """Every precision of one (depth, seed), float first (the <8,3> networks start from the float ones).

    Runs in its own process with one TF thread; ``--jobs`` such groups run side by side."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    data = load(args.n_train, args.n_val)
    rows, float_teacher, float_plain = [], None, None
    for quant in quants:
        if time.time() - t_start > 60 * args.budget_min:
            print(f"budget: skipping ResNet-{depth} {quant or 'float'} seed {seed}", flush=True)
            continue
        row, teacher, plain = run_one(depth, quant, seed, data, args, float_teacher, float_plain)
        if quant is None:
            float_teacher, float_plain = teacher, plain
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="ResNet-8 only, 1 seed, tiny epochs (smoke run)")
    ap.add_argument("--depths", type=int, nargs="+", default=[8, 20])
    ap.add_argument("--quants", nargs="+", default=["float", "<8,3>"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n-train", type=int, default=1500)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--teacher-epochs", type=int, default=30)
    ap.add_argument(
        "--quant-teacher",
        choices=("from-float", "scratch"),
        default="from-float",
        help="QKeras teacher: quantization-aware training of the float teacher (from-float) or from scratch",
    )
    ap.add_argument(
        "--qat-epochs",
        type=int,
        default=10,
        help="QAT epochs of the QKeras teacher (and plain network) when --quant-teacher from-float",
    )
    ap.add_argument(
        "--tail",
        type=int,
        default=10,
        help="student epochs after the last modification (10: the finished student trains at least as long "
        "as no-distill's whole run under --tail 1, so the gradual schedule is not cut short)",
    )
    ap.add_argument("--trim-alpha-deep", type=int, default=1, help="Trimmer α for models with > 3 blocks")
    ap.add_argument("--lr", type=float, default=2e-3, help="Adam + ASLR start centre of the teacher")
    ap.add_argument(
        "--student-lr",
        choices=("continue", "restart"),
        default="restart",
        help="students start at the teacher's last ASLR centre (continue) or at --lr (restart)",
    )
    ap.add_argument(
        "--select",
        choices=("best-val", "last"),
        default="best-val",
        help="weights kept: best validation accuracy (students: among fully modified epochs) or last epoch",
    )
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--budget-min", type=float, default=40.0, help="start no new configuration after this")
    ap.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="worker processes (one (depth, seed) group each, 1 TF thread per process)",
    )
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "out" / "skiptrim_mnist.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.depths, args.seeds, args.n_train, args.n_val = [8], [0], 600, 300
        args.teacher_epochs, args.qat_epochs, args.tail, args.budget_min = 2, 1, 1, 10.0
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    quants = [None if q == "float" else q for q in args.quants]
    data = load(args.n_train, args.n_val)
    print(
        f"data: {data[0]} train {len(data[1])} val {len(data[3])} test {len(data[5])} "
        f"image {data[1].shape[1:]}; {args.jobs} worker process(es), 1 thread each",
        flush=True,
    )
    grid = [(d, q) for d in args.depths for q in quants]
    # longest groups first (deepest model), so that the workers finish close together
    groups = [(d, s) for d in sorted(args.depths, reverse=True) for s in args.seeds]
    rows: list[dict] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    def save(new_rows):
        rows.extend(new_rows)
        rows.sort(key=lambda r: (r["depth"], r["seed"], r["quant"] != "float"))
        out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))

    if args.jobs == 1:
        for depth, seed in groups:
            save(run_group(depth, seed, quants, args, t_start))
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as ex:
            futs = [ex.submit(run_group, d, s, quants, args, t_start) for d, s in groups]
            for f in as_completed(futs):
                save(f.result())
    print(f"\nSkipTrim on {data[0]} ({time.time() - t_start:.0f} s, test accuracy, mean ± std over seeds)")
    print(table(rows, grid))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
