"""Demo stage ``skiptrim recipes``: a ResNet-8 teacher, its Skipper and Trimmer students (PyTorch, sklearn
digits or MNIST 10k), accuracies and a per-epoch plot.  Khodamoradi 2021, ch. 4 (Algorithm 1, Eq 4.4).

Small on purpose (≤ 60 s on 2 cores): width-8 ResNet-8 on 8×8 digits (or MNIST pooled to 14×14 when
``ctx.mnist_dir`` exists and ``ctx.quick`` is False), α = 1 for both students.  Returns the key numbers.
"""

from __future__ import annotations

import copy


def stage(ctx) -> dict:
    import numpy as np
    import torch

    from hls4ml_skiptrim.training import torch as stt
    from hwreshape.data import load_digits, load_mnist_10k, split

    torch.set_num_threads(1)
    torch.manual_seed(0)
    if ctx.mnist_dir is not None and not ctx.quick:
        x, y = load_mnist_10k(ctx.mnist_dir)
        x = x.reshape(len(x), 1, 14, 2, 14, 2).mean(axis=(3, 5))
        name, n_train = "mnist10k/14x14", 3000
    else:
        x, y = load_digits()
        name, n_train = "digits", 1200
    xtr, ytr, xte, yte = split(x, y, n_train, seed=0)
    n_val = len(xte) // 2
    xv, yv, xte, yte = xte[:n_val], yte[:n_val], xte[n_val:], yte[n_val:]
    kw = dict(progress=False, seed=0, lr=2e-3)
    teacher = stt.resnet(8, "long", input_shape=x.shape[1:], width=8)
    t_rec = stt.fit(teacher, xtr, ytr, xv, yv, epochs=3, **kw)
    skipper = stt.Skipper(copy.deepcopy(teacher))
    s_rec = stt.fit(skipper, xtr, ytr, xv, yv, epochs=skipper.schedule.epochs_to_finish + 1, **kw)
    trimmer = stt.Trimmer(copy.deepcopy(teacher), alpha=1)
    r_rec = stt.fit(trimmer, xtr, ytr, xv, yv, epochs=trimmer.schedule.epochs_to_finish + 1, **kw)
    s_exp, r_exp = skipper.export(), trimmer.export()
    acc = {
        k: stt.evaluate(m, xte, yte)[1]
        for k, m in (("teacher", teacher), ("skipper", s_exp), ("trimmer", r_exp))
    }

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(
        [r["epoch"] for r in t_rec], [r["val_accuracy"] for r in t_rec], "k-o", label="teacher (long skips)"
    )
    off = len(t_rec)
    for rec, lab, c in ((s_rec, "Skipper (α=1)", "tab:red"), (r_rec, "Trimmer (α=1)", "tab:blue")):
        ax.plot([off + r["epoch"] for r in rec], [r["val_accuracy"] for r in rec], "-o", color=c, label=lab)
        for r in rec:
            if r["modified"]:
                ax.annotate(
                    "blocks " + ",".join(map(str, r["modified"])),
                    (off + r["epoch"], r["val_accuracy"]),
                    fontsize=7,
                    color=c,
                    textcoords="offset points",
                    xytext=(0, 5),
                )
    ax.set_xlabel("epoch (students start from the trained teacher)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"SkipTrim ResNet-8 on {name} (labels: residual blocks modified in that epoch)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(ctx.out_dir / "skiptrim_recipes.png", dpi=110)
    plt.close(fig)
    return {
        "data": name,
        "teacher_acc": round(acc["teacher"], 4),
        "skipper_acc": round(acc["skipper"], 4),
        "trimmer_acc": round(acc["trimmer"], 4),
        "skipper_adds": stt.count_adds(s_exp),
        "trimmer_adds": stt.count_adds(r_exp),
        "teacher_adds": stt.count_adds(teacher),
        "plot": "skiptrim_recipes.png",
        "mean_val_gap_pp": round(
            float(100 * (np.mean([r["val_accuracy"] for r in s_rec[-1:]]) - t_rec[-1]["val_accuracy"])), 2
        ),
    }
