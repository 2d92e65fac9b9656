"""Demo stage ``bm ops (model side)``: Table 2 check, fast kernel vs reference/conv2d, convert + fine-tune on digits.

Writes ``bm_gates.png`` (Fig 1 style: estimated gates per conv layer, standard vs BM) into ``ctx.out_dir``.
"""

from __future__ import annotations

import time


def stage(ctx) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch import nn

    from bm_ops._kernel import bm_conv2d_fast
    from bm_ops.cost import TABLE2, conv_ratios, network_costs
    from bm_ops.functional import bm_conv2d, to_log_weights
    from bm_ops.training.recipes import as_loader, convert_and_finetune, train_epochs
    from hwreshape.data import load_digits, split

    torch.set_num_threads(1)
    torch.manual_seed(0)
    res: dict = {}

    # 1. Table 2 (Limonova et al.) with the documented counting model
    errs = []
    for cfg, (g, lat) in TABLE2.items():
        gg, ll = conv_ratios(*cfg)
        errs += [abs(gg / g - 1), abs(ll / lat - 1)]
    res["table2_max_err_pct"] = 100 * max(errs)

    # 2. fast kernel == reference, and its speed next to conv2d (16 ch @ 32x32, batch 8, fwd+bwd, 1 thread)
    x = torch.randn(8, 16, 32, 32, requires_grad=True)
    w = torch.randn(16, 16, 3, 3) * 0.1
    vp, vn = (t.requires_grad_() for t in to_log_weights(w))
    wq = w.clone().requires_grad_()
    with torch.no_grad():
        ref = bm_conv2d(x[:1].double(), vp.double(), vn.double(), None, 1, 1)
        got = bm_conv2d_fast(x[:1], vp, vn, None, 1, 1)
    res["kernel_max_abs_err"] = float((got.double() - ref).abs().max())

    def median_cpu(fn, reps=5):
        fn()
        ts = []
        for _ in range(reps):
            t0 = time.thread_time()
            fn()
            ts.append(time.thread_time() - t0)
        return float(np.median(ts))

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()

        return run

    t_bm = median_cpu(lambda: bm_conv2d_fast(x, vp, vn, None, 1, 1).sum().backward())
    t_conv = median_cpu(lambda: F.conv2d(x, wq, padding=1).sum().backward())
    res["bm_over_conv2d_cpu_time"] = t_bm / t_conv  # fwd+bwd, 1 thread, CPU time (robust to a loaded machine)
    t_bm_f = median_cpu(no_grad(lambda: bm_conv2d_fast(x, vp, vn, None, 1, 1)))
    t_conv_f = median_cpu(no_grad(lambda: F.conv2d(x, wq, padding=1)))
    res["bm_over_conv2d_forward_no_grad"] = t_bm_f / t_conv_f

    # 3. the paper's training recipe on sklearn digits: float net -> convs converted layer by layer with fine-tuning
    xd, yd = load_digits()
    n_train = 600 if ctx.quick else 1200
    xtr, ytr, xte, yte = split(xd, yd, n_train, seed=0)
    train = as_loader((xtr, ytr), 32, shuffle=True)
    test = as_loader((xte[:400], yte[:400]), 256)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 10),
    )
    recs = train_epochs(model, train, test, 4 if ctx.quick else 6, lr=3e-3, scheduler="none")
    res["digits_float_acc"] = recs[-1]["val_acc"]
    model, log = convert_and_finetune(
        model,
        train,
        test,
        epochs_per_step=1 if ctx.quick else 2,
        final_epochs=1,
        lr=2e-3,
        log_path=ctx.out_dir / "bm_recipe_log.csv",
        progress=False,
    )
    res["digits_bm_acc"] = log[-1]["acc_finetuned"]
    res["digits_bm_acc_before_finetune"] = min(r["acc_converted"] for r in log)
    res["digits_bm_acc_after_bn_recalibration"] = min(r["acc_recalibrated"] for r in log)

    # 4. Fig 1 style plot for the converted model
    rows = network_costs(model, (1, 1, 8, 8))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [r["name"] for r in rows]
        pos = np.arange(len(rows))
        fig, ax = plt.subplots(figsize=(5, 3))
        ax.bar(pos - 0.2, [r["gates_standard"] for r in rows], 0.4, label="standard")
        ax.bar(pos + 0.2, [r["gates_bm"] for r in rows], 0.4, label="BM")
        ax.set_xticks(pos, names)
        ax.set_ylabel("gates (estimate, one output position)")
        ax.set_title("BM vs standard layer gates (Table 1 model)")
        ax.legend()
        fig.tight_layout()
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(ctx.out_dir / "bm_gates.png", dpi=100)
        plt.close(fig)
    except ImportError:  # matplotlib is a declared dependency; the numbers above do not need it
        pass
    res["model_gate_ratio"] = sum(r["gates_standard"] for r in rows) / sum(r["gates_bm"] for r in rows)
    return res
