"""``hwreshape demo`` stage for ASLR (Khodamoradi 2021, ch. 5): Algorithm 2 on a Fig 5.3-like cost sequence, then
a small CNN on digits trained with per-layer Eq 5.10 draws (start rate 0.05; the opt-in pre-flight check against a
learning-rate range test, Eq 5.9, is run and its verdict reported), Algorithm 2 fed the validation error.

Writes ``aslr_demo.png`` (left: the search of Fig 5.3; right: centre ``c`` and the per-layer draws per step)
and returns the key numbers.  Runs in a few seconds on 2 cores.
"""

from __future__ import annotations

import time
import warnings


def stage(ctx) -> dict:
    import numpy as np
    import torch

    from aslr.core import ASLRSearch
    from aslr.lr_finder import StartLRWarning, lr_range_test
    from aslr.torch import ASLR, layer_param_groups
    from hwreshape.data import load_digits

    t0 = time.time()
    torch.set_num_threads(1)
    out_dir = ctx.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)

    # 1) Fig 5.3: improvement, plateau -> +s, improvement, plateau -> widening search with direction flips
    costs = [0.9, 0.7, 0.72, 0.6, 0.62, 0.63, 0.64, 0.65, 0.66, 0.5]
    search = ASLRSearch(0.05)
    fig53 = [0.05] + [search.observe(c) for c in costs]

    # 2) training: a 2-conv CNN on sklearn digits, SGD + momentum, one param group per layer
    x, y = load_digits()
    g = np.random.default_rng(0).permutation(len(x))
    tr, va = g[:1300], g[1300:]
    xt, yt = torch.from_numpy(x[tr]), torch.from_numpy(y[tr])
    xv, yv = torch.from_numpy(x[va]), torch.from_numpy(y[va])
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 16, 10),
    )
    opt = torch.optim.SGD(layer_param_groups(model, momentum=0.9), lr=1.0)
    # the opt-in pre-flight check: a range test (torch-lr-finder on a copy of the model) and the start value checked
    # against its boundaries.  Its verdict is reported, not obeyed: with momentum 0.9 the short sweep puts the range
    # above 0.05, yet 0.05 trains this CNN well and the middle point (~0.2) trains it poorly (see docs/aslr.md).
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(xt, yt),
        batch_size=32,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    rt = lr_range_test(
        model, opt, torch.nn.CrossEntropyLoss(), loader, start_lr=1e-4, end_lr=10.0, num_iter=60
    )
    start = 0.05
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", StartLRWarning)
        sched = ASLR(opt, start, generator=torch.Generator().manual_seed(0), preflight=rt)
    verdict = "inside" if not caught else str(caught[0].message).split(" is ")[1].split(" the ")[0]
    epochs = 8 if ctx.quick else 15
    bs = 32
    draws, accs = [], []
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt) - bs + 1, bs):
            b = perm[i : i + bs]
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xt[b]), yt[b]).backward()
            opt.step()
            draws.append(sched.get_last_lr())
            sched.step()
        with torch.no_grad():
            out = model(xv)
            accs.append((out.argmax(1) == yv).float().mean().item())
        sched.observe(1.0 - accs[-1])  # Algorithm 2's cost: the validation error

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4))
    a1.step(range(len(fig53)), fig53, where="post", label="c (Algorithm 2)")
    a1b = a1.twinx()
    a1b.plot(range(1, len(costs) + 1), costs, "o--", color="tab:gray", ms=3, label="validation cost")
    a1.set_xlabel("epoch")
    a1.set_ylabel("centre learning rate c")
    a1b.set_ylabel("validation cost")
    a1.set_title("Algorithm 2 on a Fig 5.3-like cost sequence", fontsize=9)
    d = np.asarray(draws)
    steps_per_epoch = len(draws) / epochs
    xs = np.arange(len(d)) / steps_per_epoch
    for j in range(d.shape[1]):
        a2.plot(xs, d[:, j], lw=0.4, alpha=0.6)
    a2.step(range(epochs + 1), sched.c_history, where="post", color="k", lw=1.5, label="c")
    a2.set_yscale("log")
    a2.set_xlabel("epoch")
    a2.set_ylabel("per-layer learning rate c_u")
    a2.set_title(f"digits CNN from lr {start:g}: val acc {100 * accs[-1]:.1f} %", fontsize=9)
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "aslr_demo.png", dpi=100)
    plt.close(fig)

    return {
        "fig5.3_trajectory": " ".join(f"{c:g}" for c in fig53),
        "start_lr": start,
        "range_test": f"[{rt.low:.3g}, {rt.high:.3g}] (middle {rt.suggestion:.3g}); start {start:g}: {verdict}",
        "final_c": sched.c,
        "val_acc": accs[-1],
        "epochs": epochs,
        "layers": len(opt.param_groups),
        "seconds": time.time() - t0,
    }
