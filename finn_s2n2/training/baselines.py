"""Non-spiking baselines that read the same I/Q events as S2N2_rf1 (Khodamoradi 2021, §2.3), so the spiking
net is always judged against simple readers of its own input:

* **rate histogram** — a small 2-D CNN on the *time-summed* constellation plane (spike counts per (Q, I) cell
  / ticks): the rate information only, no temporal order;
* **event sequence** — a small 1-D CNN on the sequence of event coordinates (the (I, Q) cell of the one spike
  of every tick, scaled to [0, 1]): the same information the SNN gets, in order.

Both are read off the spike tensor of :func:`finn_s2n2.snn.encoding.iq_to_spikes` (one quantiser, written
once) and trained with Adam + cross-entropy on the split that :func:`finn_s2n2.training.recipes.amc_split`
gives the SNN.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

__all__ = [
    "BASELINES",
    "baseline_features",
    "event_sequence",
    "make_baseline",
    "rate_histogram",
    "train_baseline",
]

BASELINES = ("rate_histogram", "event_sequence")


def rate_histogram(spikes: np.ndarray) -> np.ndarray:
    """``(N, T, C, H, W)`` spikes → ``(N, C, H, W)`` float32 spike rate per cell × H·W (the time-summed
    constellation, scaled so that one spike per tick spread evenly gives 1 per cell: a well-conditioned CNN input)."""
    s = np.asarray(spikes)
    if s.ndim != 5:
        raise ValueError(f"rate_histogram: spikes must be (N, T, C, H, W), got shape {s.shape}")
    return (s.sum(axis=1) * (s.shape[3] * s.shape[4] / s.shape[1])).astype(np.float32)


def event_sequence(spikes: np.ndarray) -> np.ndarray:
    """``(N, T, 1, L, L)`` one-spike-per-tick planes → ``(N, 2, T)`` float32 (I, Q) cell coordinates / (L − 1)."""
    s = np.asarray(spikes)
    if s.ndim != 5 or s.shape[2] != 1:
        raise ValueError(f"event_sequence: spikes must be (N, T, 1, L, L), got shape {s.shape}")
    n, t, _, h, w = s.shape
    if not np.all(s.reshape(n, t, -1).sum(-1) == 1):
        raise ValueError("event_sequence: every tick must hold exactly one spike (iq_to_spikes planes)")
    idx = s.reshape(n, t, h * w).argmax(-1)
    q, i = idx // w, idx % w
    return (np.stack([i, q], axis=1) / max(w - 1, 1)).astype(np.float32)


def baseline_features(iq: np.ndarray, bits: int = 4, chunk: int = 256) -> dict[str, np.ndarray]:
    """Both baseline inputs of I/Q examples ``(N, 2, T)``, encoded with ``iq_to_spikes(iq, bits)`` in chunks
    (the full spike tensor of a data set would not fit in memory)."""
    from finn_s2n2.snn.encoding import iq_to_spikes

    parts: dict[str, list[np.ndarray]] = {k: [] for k in BASELINES}
    for i in range(0, len(iq), chunk):
        s = iq_to_spikes(iq[i : i + chunk], bits)
        parts["rate_histogram"].append(rate_histogram(s))
        parts["event_sequence"].append(event_sequence(s))
    return {k: np.concatenate(v) for k, v in parts.items()}


def make_baseline(kind: str, num_classes: int, side: int = 16) -> nn.Module:
    """The baseline network for ``kind`` (one of :data:`BASELINES`)."""
    if kind == "rate_histogram":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (side // 4) ** 2, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )
    if kind == "event_sequence":
        return nn.Sequential(
            nn.Conv1d(2, 32, 7, padding=3),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(32, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(64, num_classes),
        )
    raise ValueError(f"make_baseline: kind must be one of {BASELINES}, got {kind!r}")


def train_baseline(
    kind: str,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    *,
    epochs: int = 20,
    batch: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
) -> tuple[np.ndarray, dict]:
    """Train baseline ``kind`` on its features (:func:`baseline_features`); returns (validation predictions,
    info).  Adam + cosine learning-rate schedule, cross-entropy, seeded."""
    if kind not in BASELINES:
        raise ValueError(f"train_baseline: kind must be one of {BASELINES}, got {kind!r}")
    xtr = torch.from_numpy(np.asarray(x_train, dtype=np.float32))
    xva = torch.from_numpy(np.asarray(x_val, dtype=np.float32))
    ytr = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
    torch.manual_seed(seed)
    net = make_baseline(kind, int(ytr.max()) + 1, side=xtr.shape[-1])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.process_time()
    for _ in range(epochs):
        net.train()
        for idx in torch.randperm(len(xtr), generator=gen).split(batch):
            loss = nn.functional.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    net.eval()
    with torch.no_grad():
        pred = net(xva).argmax(1).numpy()
    return pred, dict(
        kind=kind,
        epochs=epochs,
        cpu_s=time.process_time() - t0,
        params=sum(p.numel() for p in net.parameters()),
    )
