"""Training recipes for the S2N2 networks (Khodamoradi 2021, §2.3 S2N2_rf1 and §2.4 S2N2_cv) with ASLR (chapter 5).

* :func:`train_rf1` — S2N2_rf1 on I/Q constellation events (:func:`finn_s2n2.snn.encoding.iq_to_spikes`,
  4-bit 16×16 plane, one spike per tick) of :func:`finn_s2n2.training.datasets.synthetic_amc` (or real RadioML arrays
  passed in), 90 % / 10 % train/validation split as in the dissertation.
* :func:`train_cv` — S2N2_cv on rate-coded images (:func:`finn_s2n2.snn.encoding.rate_code`), MNIST 10k
  split from ``shared/data/mnist`` or sklearn digits (upsampled to 28×28) when absent.
* :func:`spike_ratios` — mean input spike ratio of every weight layer (Fig 2.12 / 2.16; the dissertation collects them
  over one input, we average over a validation batch and also report the maximum per sample).
* :func:`buffer_comparison` — feeds our measured ratios into :mod:`finn_s2n2.finn.buffers` (Eq 2.5 tick-batching
  bits vs. streaming bits), the Table 2.3 / 2.8 comparison for *our* trained nets.

Loss: smooth-L1 on the output spike rates against target rates (the dissertation's loss for S2N2_rf1, §2.3; target
rates 0.5 / 0.05 are our choice), see :func:`count_loss`; cross-entropy on scaled counts is an option
(the S2N2_cv result in the README was trained with it).
Optimiser: Adam whose per-layer learning rates are driven by :class:`aslr.torch.ASLR` (``step()`` per batch,
``observe(val_loss)`` per epoch), optionally scaled by a cosine anneal (:class:`AnnealedASLR`, ``anneal=``;
the default of :func:`train_cv`: with it the quantization-aware S2N2_cv recipe reaches 97.4–98.1 % on the
MNIST 10k test part for three seeds, plain ASLR 95.7–97.6 %).  Everything is CPU-small and seeded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from finn_s2n2.snn.nn import SpikingNet, TimeDistributed

__all__ = [
    "AnnealedASLR",
    "TrainResult",
    "accuracy_by_group",
    "amc_split",
    "evaluate_quantized",
    "buffer_comparison",
    "evaluate",
    "fit",
    "spike_ratios",
    "train_cv",
    "train_rf1",
]


@dataclass
class TrainResult:
    net: SpikingNet
    history: list[dict] = field(default_factory=list)
    val_acc: float = float("nan")
    extra: dict = field(default_factory=dict)


def count_loss(
    counts: torch.Tensor,
    labels: torch.Tensor,
    ticks: int,
    loss: str = "smooth_l1",
    *,
    logit_scale: float = 20.0,
    correct_rate: float = 0.5,
    incorrect_rate: float = 0.05,
    reduction: str = "mean",
) -> torch.Tensor:
    """Loss on the output spike counts ``(N, classes)`` of ``ticks`` ticks.

    ``"smooth_l1"`` (the dissertation's loss, §2.3): smooth-L1 between the output rates ``counts / ticks`` and target
    rates (``correct_rate`` for the label, ``incorrect_rate`` elsewhere; β = 0.1).  ``"ce"``: cross-entropy on
    ``counts · logit_scale / ticks`` — it lets the net silence every output (all counts 0, a tie), which we
    observed on the AMC data, hence the default."""
    if loss == "smooth_l1":
        tgt = torch.full_like(counts, incorrect_rate)
        tgt[torch.arange(len(labels)), labels] = correct_rate
        per = nn.functional.smooth_l1_loss(counts / ticks, tgt, beta=0.1, reduction="none").sum(dim=1)
        return per.mean() if reduction == "mean" else per.sum()
    if loss == "ce":
        return nn.functional.cross_entropy(counts * (logit_scale / ticks), labels, reduction=reduction)
    raise ValueError(f"loss must be 'smooth_l1' or 'ce', got {loss!r}")


class AnnealedASLR:
    """ASLR (Khodamoradi 2021, §5.3) whose drawn per-layer rates are multiplied by a cosine factor that falls
    from 1 to ``final`` over ``total_steps`` optimiser steps (our addition: ASLR alone keeps the rates at the
    level of its centre ``c`` to the end, and the last epochs of our SNN runs moved the accuracy by ±1 point;
    annealing lets them settle).  ``step()`` / ``observe()`` delegate to ASLR, then rescale the groups."""

    def __init__(self, aslr, total_steps: int, final: float = 0.05):
        if total_steps < 1 or not 0 <= final <= 1:
            raise ValueError(
                f"AnnealedASLR: need total_steps >= 1 and final in [0, 1], got {total_steps}, {final}"
            )
        self.aslr, self.total, self.final, self.k = aslr, int(total_steps), float(final), 0
        self._rescale()

    @property
    def c(self) -> float:
        return self.aslr.c

    def factor(self) -> float:
        frac = min(self.k / self.total, 1.0)
        return self.final + (1 - self.final) * 0.5 * (1 + math.cos(math.pi * frac))

    def _rescale(self) -> None:
        f = self.factor()
        for g, lr in zip(self.aslr.optimizer.param_groups, self.aslr.get_last_lr()):
            g["lr"] = lr * f

    def step(self) -> None:
        self.aslr.step()
        self.k += 1
        self._rescale()

    def observe(self, metric) -> float:
        r = self.aslr.observe(metric)
        self._rescale()
        return r


def _batches(n: int, batch: int, rng: np.random.Generator | None):
    idx = rng.permutation(n) if rng is not None else np.arange(n)
    for i in range(0, n, batch):
        yield idx[i : i + batch]


def evaluate(
    net: SpikingNet,
    data: np.ndarray,
    labels: np.ndarray,
    encode: Callable[[np.ndarray], np.ndarray],
    *,
    batch: int = 64,
    loss: str = "smooth_l1",
) -> tuple[float, float, np.ndarray]:
    """(mean loss, accuracy, predictions) of ``net`` on ``data`` encoded batch by batch with ``encode``.

    Prediction = argmax of the output spike counts (ties → lowest label, as an argmax over counters would)."""
    net.eval()
    preds, losses = [], []
    with torch.no_grad():
        for idx in _batches(len(data), batch, None):
            x = torch.from_numpy(encode(data[idx]))
            counts = net(x)
            t = x.shape[1]
            losses.append(float(count_loss(counts, torch.from_numpy(labels[idx]), t, loss, reduction="sum")))
            preds.append(counts.argmax(dim=1).numpy())
    p = np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)
    return sum(losses) / max(len(data), 1), float(np.mean(p == labels)) if len(p) else float("nan"), p


def fit(
    net: SpikingNet,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    encode: Callable[[np.ndarray], np.ndarray],
    *,
    epochs: int = 3,
    batch: int = 32,
    lr: float = 2e-3,
    loss: str = "smooth_l1",
    seed: int = 0,
    progress: bool = True,
    desc: str = "train",
    time_budget_s: float | None = None,
    calibrate: float | None = 0.05,
    anneal: float | None = None,
) -> TrainResult:
    """Generic S2N2 training loop: Adam + ASLR (per-layer groups), loss :func:`count_loss`, tqdm bars.

    ``calibrate``: target firing rate of :meth:`SpikingNet.calibrate` run on 16 training examples first
    (None = keep the weights as they are).  ``anneal``: None = ASLR's rates as drawn; a float ``f`` in [0, 1]
    = :class:`AnnealedASLR` (cosine factor 1 → ``f`` over all ``epochs``)."""
    from tqdm.auto import tqdm

    from aslr.torch import ASLR, layer_param_groups

    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise ValueError("fit: data and labels must have equal lengths")
    if epochs < 1 or batch < 1:
        raise ValueError(f"fit: epochs and batch must be >= 1, got {epochs}, {batch}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(layer_param_groups(net), lr=lr)
    sched = ASLR(opt, lr, mode="min", generator=gen)
    if anneal is not None:
        sched = AnnealedASLR(sched, epochs * math.ceil(len(x_train) / batch), final=anneal)
    if calibrate is not None:
        net.calibrate(torch.from_numpy(encode(x_train[:16])), target=calibrate)
    from hwreshape.training import fit_epochs

    res = TrainResult(net)
    t0 = time.perf_counter()
    seen = {"n": 0, "correct": 0}

    def batches(ep):
        seen.update(n=0, correct=0)
        bar = list(_batches(len(x_train), batch, rng))
        return tqdm(bar, desc=f"{desc} epoch {ep + 1}/{epochs}", disable=not progress, leave=False)

    def batch_loss(idx):
        x = torch.from_numpy(encode(x_train[idx]))
        y = torch.from_numpy(y_train[idx])
        counts = net(x)
        seen["n"] += len(idx)
        seen["correct"] += int((counts.argmax(1) == y).sum())
        return count_loss(counts, y, x.shape[1], loss), len(idx)

    def validate():
        vloss, vacc, _ = evaluate(net, x_val, y_val, encode, loss=loss)
        return {"val_loss": vloss, "val_acc": vacc}

    def on_epoch_end(ep, r):
        h = dict(
            epoch=ep + 1,
            train_loss=r["loss"],
            train_acc=seen["correct"] / max(seen["n"], 1),
            val_loss=r["val_loss"],
            val_acc=r["val_acc"],
            c=sched.c,
            seconds=time.perf_counter() - t0,
        )
        res.history.append(h)
        res.val_acc = h["val_acc"]
        if progress:
            print(
                f"[{desc}] epoch {ep + 1}: train loss {h['train_loss']:.3f} acc {h['train_acc']:.3f} | "
                f"val loss {h['val_loss']:.3f} acc {h['val_acc']:.3f} | ASLR c={sched.c:.3g} | {h['seconds']:.0f} s",
                flush=True,
            )

    fit_epochs(
        net,
        opt,
        batches,
        batch_loss,
        validate,
        epochs,
        scheduler=sched,
        monitor="val_loss",
        on_epoch_end=on_epoch_end,
        time_budget_s=time_budget_s,
        desc=desc,
    )
    return res


def evaluate_quantized(net: SpikingNet, data, labels, encode, *, batch: int = 64, loss: str = "smooth_l1"):
    """:func:`evaluate` of a copy of ``net`` with every LIF in ``LIF_MVAU`` fixed point — the graph that
    ``to_qonnx`` exports and FINN executes (bit-exact, tested in ``tests/test_s2n2_frontend_export.py``)."""
    import copy

    q = copy.deepcopy(net).set_quantized(True)
    return evaluate(q, data, labels, encode, batch=batch, loss=loss)


def amc_split(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(validation, train) indices of the 10 % / 90 % AMC split (Khodamoradi 2021, §2.3) used by the SNN and
    the baselines alike."""
    perm = np.random.default_rng(seed + 1).permutation(n)
    n_val = max(1, n // 10)
    return perm[:n_val], perm[n_val:]


def accuracy_by_group(pred: np.ndarray, labels: np.ndarray, group: np.ndarray) -> dict[int, float]:
    """Accuracy per value of ``group`` (e.g. SNR in dB)."""
    return {int(g): float(np.mean(pred[group == g] == labels[group == g])) for g in np.unique(group)}


def spike_ratios(net: SpikingNet, x: torch.Tensor) -> tuple[list[float], list[float]]:
    """(mean, max over samples) input spike ratio of each weight layer for spike input ``x`` (Fig 2.12/2.16)."""
    net.eval()
    means, maxs = [], []
    with torch.no_grad():
        per_sample = [net(x[i : i + 1], record=True)[1] for i in range(x.shape[0])]
    arr = np.asarray(per_sample)
    means = arr.mean(axis=0).tolist()
    maxs = arr.max(axis=0).tolist()
    return means, maxs


def buffer_comparison(
    net: SpikingNet, in_shape: tuple[int, ...], ratios: list[float], num_ticks: int
) -> list[dict]:
    """Table 2.3/2.8-style rows for ``net``: tick-batching bits (Eq 2.5) vs streaming bits, computed by
    :func:`finn_s2n2.finn.buffers.layer_buffer` (FINN back-end) from our measured per-layer spike ratios."""
    from finn_s2n2.finn import buffers
    from finn_s2n2.snn.models import layer_input_shapes

    shapes = layer_input_shapes(net, in_shape)
    if len(shapes) != len(ratios):
        raise ValueError(f"buffer_comparison: {len(shapes)} weight layers but {len(ratios)} spike ratios")
    weight_layers = [m.module if isinstance(m, TimeDistributed) else m for m in net]
    weight_layers = [m for m in weight_layers if isinstance(m, nn.Conv2d | nn.Linear)]
    rows = []
    for (name, shape, _), layer, p in zip(shapes, weight_layers, ratios):
        if isinstance(layer, nn.Conv2d):
            r = buffers.layer_buffer(
                name,
                kind="conv",
                num_ticks=num_ticks,
                input_shape=shape,
                spike_ratio=p,
                kernel_size=tuple(layer.kernel_size),
            )
        else:
            r = buffers.layer_buffer(
                name,
                kind="dense",
                num_ticks=num_ticks,
                input_shape=shape,
                spike_ratio=p,
                out_features=layer.out_features,
            )
        rows.append(
            dict(
                layer=name,
                ticks=num_ticks,
                input="x".join(map(str, shape)),
                spike_ratio=p,
                tick_batching_bits=r.tick_batching_bits,
                streaming_bits=r.streaming_bits,
                improvement=r.improvement,
                eq26_encoding_smaller=r.eq26_encoding_smaller,
            )
        )
    return rows


# ------------------------------------------------------------------------------------------------ recipes
def train_rf1(
    *,
    n_per_class_snr: int = 20,
    data: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    width: float = 1.0,
    ticks: int = 128,
    epochs: int = 4,
    batch: int = 32,
    lr: float = 2e-3,
    bits: int = 4,
    quantized: bool = False,
    loss: str = "smooth_l1",
    anneal: float | None = None,
    calibrate: float | None = 0.05,
    slope: float = 10.0,
    decay_shift: int = 3,
    reset: str = "zero",
    seed: int = 0,
    progress: bool = True,
    time_budget_s: float | None = None,
) -> TrainResult:
    """Train S2N2_rf1 on (synthetic) AMC constellation events; returns the net, history, val accuracy overall,
    accuracy per SNR and at SNR ≥ 10 dB in ``extra``."""
    from finn_s2n2.snn.encoding import iq_to_spikes
    from finn_s2n2.snn.models import s2n2_rf1
    from finn_s2n2.training.datasets import synthetic_amc

    iq, y, snr = data if data is not None else synthetic_amc(n_per_class_snr, length=ticks, seed=seed)
    iq = iq[:, :, :ticks]
    val, tr = amc_split(len(iq), seed)
    torch.manual_seed(seed)
    net = s2n2_rf1(
        num_classes=int(y.max()) + 1 if data is not None else 11,
        bits=bits,
        width=width,
        quantized=quantized,
        slope=slope,
        decay_shift=decay_shift,
        reset=reset,
    )
    enc = lambda a: iq_to_spikes(a, bits)
    res = fit(
        net,
        iq[tr],
        y[tr],
        iq[val],
        y[val],
        enc,
        epochs=epochs,
        batch=batch,
        lr=lr,
        seed=seed,
        progress=progress,
        desc="rf1",
        loss=loss,
        anneal=anneal,
        calibrate=calibrate,
        time_budget_s=time_budget_s,
    )
    _, acc, pred = evaluate(net, iq[val], y[val], enc, loss=loss)
    _, q_acc, q_pred = evaluate_quantized(net, iq[val], y[val], enc, loss=loss)
    by_snr = accuracy_by_group(pred, y[val], snr[val])
    hi = snr[val] >= 10
    res.val_acc = acc
    res.extra = dict(
        acc_by_snr=by_snr,
        acc_ge10db=float(np.mean(pred[hi] == y[val][hi])) if hi.any() else float("nan"),
        q_acc=q_acc,
        q_acc_ge10db=float(np.mean(q_pred[hi] == y[val][hi])) if hi.any() else float("nan"),
        q_acc_by_snr=accuracy_by_group(q_pred, y[val], snr[val]),
        val_iq=iq[val],
        val_y=y[val],
        val_snr=snr[val],
        n_train=len(tr),
        n_val=len(val),
        ticks=ticks,
        bits=bits,
    )
    return res


def _digits28() -> tuple[np.ndarray, np.ndarray]:
    from hwreshape.data import load_digits

    x, y = load_digits()
    t = torch.from_numpy(x)
    x28 = (
        nn.functional.interpolate(t, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1).numpy()
    )
    return x28.astype(np.float32), y


def train_cv(
    *,
    mnist_dir=None,
    n_train: int = 9000,
    n_val: int = 1000,
    width: float = 1.0,
    ticks: int = 16,
    max_rate: float = 0.5,
    epochs: int = 3,
    batch: int = 32,
    lr: float = 2e-3,
    quantized: bool = False,
    loss: str = "ce",
    anneal: float | None = 0.05,
    seed: int = 0,
    progress: bool = True,
    time_budget_s: float | None = None,
) -> TrainResult:
    """Train S2N2_cv on rate-coded MNIST-10k (``mnist_dir`` or shared/data/mnist; sklearn digits upsampled
    to 28×28 when absent).  Returns val accuracy on the held-out part of the split."""
    from finn_s2n2.snn.encoding import rate_code
    from finn_s2n2.snn.models import s2n2_cv
    from hwreshape.data import load_mnist_10k, split

    try:
        x, y = load_mnist_10k(mnist_dir)
        source = "mnist-10k"
    except FileNotFoundError:
        x, y = _digits28()
        source = "sklearn-digits-28x28"
    n_train = min(n_train, len(x) - max(1, len(x) // 10))
    xtr, ytr, xva, yva = split(x, y, n_train, seed)
    xva, yva = xva[:n_val], yva[:n_val]
    torch.manual_seed(seed)
    net = s2n2_cv(width=width, quantized=quantized)
    rng = np.random.default_rng(seed + 2)
    enc = lambda a: rate_code(a, ticks, max_rate=max_rate, seed=rng)
    res = fit(
        net,
        xtr,
        ytr,
        xva,
        yva,
        enc,
        epochs=epochs,
        batch=batch,
        lr=lr,
        seed=seed,
        progress=progress,
        desc="cv",
        loss=loss,
        anneal=anneal,
        time_budget_s=time_budget_s,
    )
    eval_rng = np.random.default_rng(seed + 3)  # the same rate-code draw for the float and the quantized net
    enc_eval = lambda a: rate_code(
        a, ticks, max_rate=max_rate, seed=np.random.default_rng(eval_rng.integers(1 << 31))
    )
    state = eval_rng.bit_generator.state
    _, f_acc, _ = evaluate(net, xva, yva, enc_eval, loss=loss)
    eval_rng.bit_generator.state = state
    _, q_acc, _ = evaluate_quantized(net, xva, yva, enc_eval, loss=loss)
    res.val_acc = f_acc
    res.extra = dict(
        source=source,
        n_train=len(xtr),
        n_val=len(xva),
        ticks=ticks,
        max_rate=max_rate,
        val_x=xva,
        val_y=yva,
        q_acc=q_acc,
    )
    return res
