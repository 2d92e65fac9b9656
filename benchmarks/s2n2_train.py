"""S2N2 front-end training benchmark (Khodamoradi 2021, §2.3 / §2.4): our SpikingNet vs snnTorch, trained rf1 and cv.

Parts (all by default; select with --parts):

* ``peer``   — time of one training step (forward + backward) of S2N2_rf1 built with ``finn_s2n2.snn.nn`` vs the same
  network built with snnTorch (``nn.Conv2d``/``nn.Linear`` + ``snntorch.Leaky(beta=0.875, threshold=1,
  reset_mechanism="zero")``, stepped tick by tick as snnTorch tutorials do), same batch, same thread count.
* ``rf1``    — train S2N2_rf1 on synthetic AMC (``finn_s2n2.training.datasets.synthetic_amc``; *not* RadioML;
  ``--channel radioml`` adds Rician multipath and a sample-rate offset), report the validation accuracy of the
  float net and of the **quantized graph** (LIF_MVAU fixed point, what FINN executes) overall and at SNR ≥ 10 dB,
  and, on the same split in the same run, the two baselines of ``finn_s2n2.training.baselines`` (a CNN on the
  time-summed constellation = rate histogram; a 1-D CNN on the event sequence); accuracy-vs-SNR plot, spike ratios.
  Defaults: 60 examples per (class, SNR), width 0.5, 128 ticks, cross-entropy on counts, surrogate slope 5,
  8 epochs, ASLR with a cosine anneal to 0.05 (docs/snn_frontend.md: the quantized graph above the
  rate-histogram baseline overall and at >= 10 dB for seeds 0, 1, 2; 18-27 min per seed on one core).
* ``cv``     — train S2N2_cv on rate-coded MNIST-10k (``shared/data/mnist``; its held-out test part), report the
  float and the quantized-graph accuracy (with a Wilson 95 % interval) and spike ratios.  Defaults: 16 ticks,
  width 0.5, quantization-aware, 12 epochs, ASLR with a cosine anneal to 0.05 (``recipes.AnnealedASLR``).
* ``report`` — read the saved JSON results and print the Table 2.3 / 2.8-style buffer comparison for our
  trained nets through ``finn_s2n2.finn.buffers`` (the FINN back-end's Eq 2.5 implementation).

Run: ``.venv/bin/python benchmarks/s2n2_train.py [--quick] [--parts peer,rf1,cv,report] [--seed S] [--out DIR]``.
``--seed`` sets the split, the initialisation and every training draw of both nets and the baselines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def wilson_ci(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of an accuracy ``p`` measured on ``n`` examples."""
    if n <= 0:
        return float("nan"), float("nan")
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return float(mid - half), float(mid + half)


def _snntorch_rf1(width: float, ticks: int):
    import snntorch as snn
    from torch import nn

    c1, c2, d1 = max(1, round(16 * width)), max(1, round(8 * width)), max(1, round(128 * width))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, c1, 5, padding=2, bias=False)
            self.conv2 = nn.Conv2d(c1, c2, 5, bias=False)
            self.fc1 = nn.Linear(c2 * 144, d1, bias=False)
            self.fc2 = nn.Linear(d1, 11, bias=False)
            kw = dict(beta=0.875, threshold=1.0, reset_mechanism="zero")
            self.l1, self.l2, self.l3, self.l4 = (snn.Leaky(**kw) for _ in range(4))

        def forward(self, x):  # (N, T, 1, 16, 16)
            m1, m2, m3, m4 = (lif.init_leaky() for lif in (self.l1, self.l2, self.l3, self.l4))
            counts = 0
            for t in range(x.shape[1]):
                s1, m1 = self.l1(self.conv1(x[:, t]), m1)
                s2, m2 = self.l2(self.conv2(s1), m2)
                s3, m3 = self.l3(self.fc1(s2.flatten(1)), m3)
                s4, m4 = self.l4(self.fc2(s3), m4)
                counts = counts + s4
            return counts

    return Net()


def part_peer(args) -> dict:
    from finn_s2n2.snn.encoding import iq_to_spikes
    from finn_s2n2.snn.models import s2n2_rf1
    from finn_s2n2.training.datasets import synthetic_amc

    ticks = 32 if args.quick else 128
    batch = 8 if args.quick else 16
    iq, y, _ = synthetic_amc(1, snrs=[10], length=ticks, seed=0)
    x = torch.from_numpy(iq_to_spikes(iq[:batch]))
    yt = torch.from_numpy(y[:batch])
    rows = []
    for name, net in (
        ("finn_s2n2 (ours)", s2n2_rf1(width=args.width)),
        ("snntorch 1.0", _snntorch_rf1(args.width, ticks)),
    ):
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = net(x)
            loss = torch.nn.functional.cross_entropy(out * (20 / ticks), yt)
            loss.backward()
            times.append(time.perf_counter() - t0)
            net.zero_grad()
        rows.append((name, float(np.median(times))))
    ours, peer = rows[0][1], rows[1][1]
    print(
        f"\n== training step of S2N2_rf1 (width {args.width}, batch {batch}, {ticks} ticks, 1 thread), median of {args.repeats}"
    )
    print(f"{'implementation':<20} {'s/step':>10}")
    for n, t in rows:
        print(f"{n:<20} {t:>10.3f}")
    print(f"ratio snntorch/ours = {peer / ours:.2f}x  (>1: ours faster)")
    return dict(ours_s=ours, snntorch_s=peer, ratio=peer / ours, batch=batch, ticks=ticks, width=args.width)


def part_rf1(args, out: Path) -> dict:
    from finn_s2n2.snn.encoding import iq_to_spikes
    from finn_s2n2.training.baselines import BASELINES, baseline_features, train_baseline
    from finn_s2n2.training.datasets import synthetic_amc
    from finn_s2n2.training.recipes import accuracy_by_group, amc_split, spike_ratios, train_rf1

    n = 2 if args.quick else args.rf1_n
    kw = (
        dict(epochs=1, width=0.25)
        if args.quick
        else dict(
            epochs=args.rf1_epochs,
            width=args.width,
            lr=args.rf1_lr,
            batch=args.rf1_batch,
            loss=args.rf1_loss,
            quantized=args.rf1_qat,
            anneal=args.rf1_anneal if args.rf1_anneal > 0 else None,
            slope=args.rf1_slope,
            decay_shift=args.rf1_decay_shift,
            reset=args.rf1_reset,
        )
    )
    data = synthetic_amc(n, length=128, seed=0, channel=args.channel, snr_convention=args.snr_convention)
    iq, y, snr = data
    val, tr = amc_split(len(iq), args.seed)  # the split train_rf1(seed=args.seed) uses
    hi = snr[val] >= 10
    base = {}
    feats = baseline_features(iq, 4)
    for kind in BASELINES:
        t0 = time.perf_counter()
        pred, info = train_baseline(
            kind,
            feats[kind][tr],
            y[tr],
            feats[kind][val],
            epochs=2 if args.quick else args.base_epochs,
            seed=args.seed,
        )
        base[kind] = dict(
            acc=float(np.mean(pred == y[val])),
            acc_ge10db=float(np.mean(pred[hi] == y[val][hi])),
            acc_by_snr=accuracy_by_group(pred, y[val], snr[val]),
            seconds=time.perf_counter() - t0,
            **info,
        )
    t0 = time.perf_counter()
    res = train_rf1(data=data, **kw, seed=args.seed, progress=not args.no_progress, time_budget_s=args.budget)
    secs = time.perf_counter() - t0
    ex = res.extra
    x = torch.from_numpy(iq_to_spikes(ex["val_iq"][:32]))
    mean_r, max_r = spike_ratios(res.net, x)
    torch.save(res.net.state_dict(), out / "rf1.pt")
    by = ex["acc_by_snr"]
    print(
        f"\n== S2N2_rf1 on synthetic AMC (NOT RadioML), channel={args.channel}, SNR convention={args.snr_convention}"
    )
    print(
        f"train {ex['n_train']} / val {ex['n_val']} examples, {ex['ticks']} ticks, width {kw['width']}, {secs:.0f} s"
    )
    n_hi = int(hi.sum())
    ci = lambda p, n: "{:.3f}-{:.3f}".format(*wilson_ci(p, n))
    print(f"{'reader':<34} {'overall':>8} {'95 % CI':>12} {'>=10 dB':>8} {'95 % CI':>12}")
    rows = [
        ("S2N2_rf1 float", res.val_acc, ex["acc_ge10db"], ""),
        ("S2N2_rf1 quantized graph (FINN)", ex["q_acc"], ex["q_acc_ge10db"], ""),
    ]
    rows += [
        ("baseline " + k, b["acc"], b["acc_ge10db"], f"   ({b['seconds']:.0f} s)") for k, b in base.items()
    ]
    for name, a, a_hi, note in rows:
        print(f"{name:<34} {a:>8.4f} {ci(a, len(val)):>12} {a_hi:>8.4f} {ci(a_hi, n_hi):>12}{note}")
    print(f"(Wilson 95 % intervals over {len(val)} validation examples, {n_hi} at >= 10 dB)")
    print("SNR    " + " ".join(f"{k:>5d}" for k in by))
    print("float  " + " ".join(f"{v:>5.2f}" for v in by.values()))
    print("quant  " + " ".join(f"{v:>5.2f}" for v in ex["q_acc_by_snr"].values()))
    print(
        "input spike ratio per layer (mean / max over 32 val samples):",
        [f"{a:.4f}/{b:.4f}" for a, b in zip(mean_r, max_r)],
    )
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(9, 3.2))
        ax[0].plot(list(by), list(by.values()), "o-")
        ax[0].set_xlabel("SNR (dB)")
        ax[0].set_ylabel("val accuracy")
        ax[0].set_title("S2N2_rf1, synthetic AMC")
        ax[1].bar(range(len(mean_r)), mean_r)
        ax[1].set_xticks(range(len(mean_r)), ["Conv.1", "Conv.2", "Dense 1", "Dense 2"][: len(mean_r)])
        ax[1].set_ylabel("input spike ratio")
        fig.tight_layout()
        fig.savefig(out / "rf1_accuracy_vs_snr.png", dpi=100)
    except Exception as e:  # plotting is optional
        print("plot skipped:", e)
    return dict(
        val_acc=res.val_acc,
        acc_ge10db=ex["acc_ge10db"],
        q_acc=ex["q_acc"],
        q_acc_ge10db=ex["q_acc_ge10db"],
        q_acc_by_snr=ex["q_acc_by_snr"],
        q_acc_ci95=list(wilson_ci(ex["q_acc"], len(val))),
        q_acc_ge10db_ci95=list(wilson_ci(ex["q_acc_ge10db"], n_hi)),
        baselines=base,
        channel=args.channel,
        snr_convention=args.snr_convention,
        acc_by_snr=by,
        ratios_mean=mean_r,
        ratios_max=max_r,
        n_train=ex["n_train"],
        n_val=ex["n_val"],
        ticks=ex["ticks"],
        width=kw["width"],
        seconds=secs,
        history=res.history,
        qat=bool(args.rf1_qat),
        seed=args.seed,
    )


def part_cv(args, out: Path) -> dict:
    from finn_s2n2.snn.encoding import rate_code
    from finn_s2n2.training.recipes import spike_ratios, train_cv

    kw = (
        dict(n_train=300, epochs=1, width=0.25, ticks=8)
        if args.quick
        else dict(
            n_train=args.cv_n,
            epochs=args.cv_epochs,
            width=args.width,
            ticks=args.cv_ticks,
            quantized=args.cv_qat,
            anneal=args.cv_anneal if args.cv_anneal > 0 else None,
        )
    )
    t0 = time.perf_counter()
    res = train_cv(**kw, seed=args.seed, progress=not args.no_progress, time_budget_s=args.budget)
    secs = time.perf_counter() - t0
    ex = res.extra
    x = torch.from_numpy(rate_code(ex["val_x"][:32], ex["ticks"], max_rate=ex["max_rate"], seed=1))
    mean_r, max_r = spike_ratios(res.net, x)
    torch.save(res.net.state_dict(), out / "cv.pt")
    print(
        f"\n== S2N2_cv on {ex['source']}: train {ex['n_train']} / val {ex['n_val']}, {ex['ticks']} ticks "
        f"(rate code p={ex['max_rate']}), width {kw['width']}, {secs:.0f} s"
    )
    lo, hi = wilson_ci(ex["q_acc"], ex["n_val"])
    print(
        f"test-part accuracy (seed {args.seed}): float {res.val_acc:.4f}, quantized graph (FINN) {ex['q_acc']:.4f} "
        f"(95 % Wilson CI {lo:.4f}-{hi:.4f})"
    )
    print(
        "input spike ratio per layer (mean / max over 32 val samples):",
        [f"{a:.4f}/{b:.4f}" for a, b in zip(mean_r, max_r)],
    )
    return dict(
        val_acc=res.val_acc,
        q_acc=ex["q_acc"],
        source=ex["source"],
        ratios_mean=mean_r,
        ratios_max=max_r,
        n_train=ex["n_train"],
        n_val=ex["n_val"],
        ticks=ex["ticks"],
        width=kw["width"],
        seconds=secs,
        history=res.history,
        qat=bool(args.cv_qat),
        seed=args.seed,
        q_acc_ci95=[lo, hi],
    )


def part_report(results: dict) -> None:
    from finn_s2n2.snn.models import s2n2_cv, s2n2_rf1
    from finn_s2n2.training.recipes import buffer_comparison

    for key, builder, shape, seed_ticks in (
        ("rf1", s2n2_rf1, (1, 16, 16), 128),
        ("cv", s2n2_cv, (1, 28, 28), 500),
    ):
        if key not in results:
            continue
        r = results[key]
        net = builder(width=r["width"])
        cases = [(f"our {r['ticks']} ticks", r["ticks"])]
        if seed_ticks != r["ticks"]:
            cases.append(
                (f"the dissertation's {seed_ticks} ticks (ratios of our {r['ticks']}-tick run)", seed_ticks)
            )
        for label, ticks in cases:
            rows = buffer_comparison(net, shape, r["ratios_max"], ticks)
            print(
                f"\n== buffer comparison S2N2_{key} (width {r['width']}), max spike ratios measured on our trained net, {label}"
            )
            print(
                f"{'layer':<8} {'ticks':>6} {'input':>12} {'max ratio':>10} {'tick-batching':>14} {'S2N2':>8} {'improvement':>12}"
            )
            for row in rows:
                print(
                    f"{row['layer']:<8} {row['ticks']:>6} {row['input']:>12} {row['spike_ratio']:>10.4f} "
                    f"{row['tick_batching_bits']:>14,} {row['streaming_bits']:>8,} {row['improvement']:>11,.0f}x"
                )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--parts", default="peer,rf1,cv,report")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "s2n2_train"))
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--rf1-n", type=int, default=60, help="examples per (class, SNR) pair")
    ap.add_argument("--rf1-epochs", type=int, default=8)
    ap.add_argument("--rf1-lr", type=float, default=5e-3)
    ap.add_argument("--rf1-batch", type=int, default=16)
    ap.add_argument("--rf1-loss", choices=["smooth_l1", "ce"], default="ce")
    ap.add_argument("--rf1-anneal", type=float, default=0.05, help="as --cv-anneal (0: plain ASLR)")
    ap.add_argument("--rf1-slope", type=float, default=5.0, help="surrogate slope of every LIF")
    ap.add_argument("--rf1-decay-shift", type=int, default=3, help="k of d = 1 - 2^-k (3: d = 0.875)")
    ap.add_argument("--rf1-reset", choices=["zero", "subtract"], default="zero")
    ap.add_argument("--cv-n", type=int, default=9000)
    ap.add_argument("--cv-epochs", type=int, default=12)
    ap.add_argument("--cv-ticks", type=int, default=16)
    ap.add_argument(
        "--cv-anneal",
        type=float,
        default=0.05,
        help="cosine factor on ASLR's rates falls to this value by the last epoch (0: plain ASLR)",
    )
    ap.add_argument(
        "--cv-qat",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="train S2N2_cv quantization-aware (LIF_MVAU fixed point in the forward pass)",
    )
    ap.add_argument(
        "--rf1-qat", action=argparse.BooleanOptionalAction, default=False, help="the same for S2N2_rf1"
    )
    ap.add_argument("--qat", action="store_true", help="both --cv-qat and --rf1-qat")
    ap.add_argument("--seed", type=int, default=0, help="seed of the split, init and training draws")
    ap.add_argument("--channel", choices=["awgn", "radioml"], default="awgn")
    ap.add_argument("--snr-convention", choices=["power", "radioml"], default="power")
    ap.add_argument("--base-epochs", type=int, default=20, help="training epochs of each baseline")
    ap.add_argument("--budget", type=float, default=None, help="time budget in s per training run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.qat:
        args.cv_qat = args.rf1_qat = True
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    js = out / ("results_quick.json" if args.quick else "results.json")
    results = json.loads(js.read_text()) if js.exists() else {}
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    for p in parts:
        if p == "peer":
            results["peer"] = part_peer(args)
        elif p == "rf1":
            results["rf1"] = part_rf1(args, out)
        elif p == "cv":
            results["cv"] = part_cv(args, out)
        elif p == "report":
            part_report(results)
        else:
            raise SystemExit(f"unknown part {p!r}; choose from peer, rf1, cv, report")
        if p != "report":
            # merge with what a concurrent run of other parts may have written meanwhile
            cur = json.loads(js.read_text()) if js.exists() else {}
            cur[p] = results[p]
            js.write_text(json.dumps(cur, indent=1, default=float))
            results = {**cur, **results}
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
