"""SkipTrim schedule, state and loss definition — framework-free (no torch, no TensorFlow imported here).

Implements the parts of Khodamoradi 2021, ch. 4 that do not depend on a training framework:

* **Algorithm 1** (SKIPTRIM METHOD): ``current-skip`` starts at the student's first skip connection from the
  input side; at every epoch ``i`` with ``i mod α == 0`` the current skip is modified (Skipper: pruned,
  Listing 4.1; Trimmer: split into two short skips, Listing 4.2) and ``current-skip`` moves to the next
  block.  :class:`SkipTrimSchedule` is this loop as a small stateful object with ``state_dict`` /
  ``load_state_dict`` so that a resumed run continues the same schedule.
* **NonResNet** (Weng, Khodamoradi & Kastner, Algorithm 1 TEACHER-STUDENT LEARNING): a ShortResNet teacher (every block with
  short skips) and a student whose skips are removed three at a time (``blocks_per_step=3``); each step is
  trained for ``α`` epochs before the next three go.
* **Eq 4.4**: ``L = (1 − β)·G(s − l) + β·H(t − s)`` with ``G`` = cross-entropy of the student against the
  label and ``H`` = mean squared error between teacher and student outputs (Section 4.3.1, "Training
  Parameters"), ``β = 0.35``; ``α = 1`` for Skipper and ``α = 3`` for Trimmer.
  :func:`distillation_loss` is the NumPy reference the torch and Keras losses are tested against.

Interpretation (stated where the dissertation is silent): ``s`` and ``t`` are the networks' *logits* (the models end
in a linear classifier, no softmax); ``G`` applies softmax cross-entropy to the student logits; ``H`` is the
mean over classes of the squared logit difference, averaged over the batch, as in ``torch.nn.functional``'s
``mse_loss``.  A block is one residual block (two convolutions); "the next skip connection from the input
side" is the next block in forward order.  Modifying a block whose mode already equals the target is a no-op.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: β of Eq 4.4 used in every experiment of Khodamoradi 2021 (Section 4.3.1).
BETA = 0.35
#: α of Algorithm 1 for Skipper and Trimmer (Section 4.3.1).
ALPHA_SKIPPER = 1
ALPHA_TRIMMER = 3
#: Skips removed per NonResNet step (Weng, Khodamoradi & Kastner, Algorithm 1 line 4: "without skip connections 1 to i*3").
NONRESNET_STEP = 3

#: Per-block skip modes: ``long`` = original block (Fig 4.3), ``short`` = two short skips (Listing 4.2,
#: reshape=True), ``none`` = skip pruned (Listing 4.1, reshape=True).
SKIP_MODES = ("long", "short", "none")
#: Residual-block arrangements of Fig 4.3: a = original [13] (Conv-BN-ReLU-Conv-BN, add, ReLU),
#: b = ReLU before addition (Conv-BN-ReLU ×2, add), c = ReLU-only pre-activation (ReLU-Conv-BN ×2, add),
#: d = full pre-activation (BN-ReLU-Conv ×2, add).
ARRANGEMENTS = ("a", "b", "c", "d")

#: method -> (teacher mode, student target mode, default α, blocks per step)
METHODS = {
    "skipper": ("long", "none", ALPHA_SKIPPER, 1),
    "trimmer": ("long", "short", ALPHA_TRIMMER, 1),
    "nonresnet": ("short", "none", 1, NONRESNET_STEP),
}


def blocks_for_depth(depth: int) -> int:
    """Residual blocks of a CIFAR-style ResNet-n, n = 6k + 2 (3 stages of k blocks): ``3k``."""
    if isinstance(depth, bool) or not isinstance(depth, int | np.integer):
        raise TypeError(f"depth must be an int (6k+2: 8, 20, 32, 44, 56, 110), got {type(depth).__name__}")
    if depth < 8 or (depth - 2) % 6 != 0:
        raise ValueError(f"depth must be 6k+2 with k >= 1 (8, 20, 32, 44, 56, 110), got {depth}")
    return 3 * ((int(depth) - 2) // 6)


def resolve_skips(skips, n_blocks: int) -> list[str]:
    """Per-block skip modes from ``"long"|"short"|"none"`` (all blocks) or a sequence of ``n_blocks`` modes."""
    if isinstance(skips, str):
        modes = [skips] * n_blocks
    else:
        try:
            modes = list(skips)
        except TypeError:
            raise TypeError(f"skips must be a str or a sequence of str, got {type(skips).__name__}") from None
        if len(modes) != n_blocks:
            raise ValueError(f"skips: expected {n_blocks} per-block modes, got {len(modes)}")
    for i, m in enumerate(modes):
        if m not in SKIP_MODES:
            raise ValueError(f"skips[{i}]: expected one of {SKIP_MODES}, got {m!r}")
    return modes


def check_arrangement(arrangement: str) -> str:
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"arrangement: expected one of {ARRANGEMENTS} (Fig 4.3 a-d), got {arrangement!r}")
    return arrangement


def check_alpha(alpha) -> int:
    """α of Algorithm 1: an integer ≥ 1 (epochs between two skip modifications)."""
    if isinstance(alpha, bool) or not isinstance(alpha, int | np.integer):
        raise TypeError(f"alpha must be an int >= 1 (epochs per modification), got {alpha!r}")
    if alpha < 1:
        raise ValueError(f"alpha must be >= 1 (epochs per modification, Algorithm 1), got {alpha}")
    return int(alpha)


def check_beta(beta) -> float:
    """β of Eq 4.4: a finite number in [0, 1]."""
    try:
        b = float(beta)
    except (TypeError, ValueError):
        raise TypeError(f"beta must be a number in [0, 1], got {beta!r}") from None
    if not math.isfinite(b) or not 0.0 <= b <= 1.0:
        raise ValueError(f"beta must be in [0, 1] (Eq 4.4 weight of the teacher term), got {beta}")
    return b


def parse_quant(quant) -> tuple[int, int] | None:
    """``None`` (float) or a fixed-point format ``<W,I>``: ``(W, I)``, ``"<8,3>"`` or ``"8,3"``.

    ``W`` = total bits including the sign, ``I`` = integer bits including the sign (ap_fixed<W,I>, the
    notation of Table 4.6).  Requires ``1 <= I < W <= 32``.
    """
    if quant is None:
        return None
    if isinstance(quant, str):
        s = quant.strip().strip("<>").replace(" ", "")
        try:
            w, i = (int(v) for v in s.split(","))
        except ValueError:
            raise ValueError(f"quant: expected '<W,I>' such as '<8,3>', got {quant!r}") from None
    else:
        try:
            w, i = (int(v) for v in quant)
        except (TypeError, ValueError):
            raise TypeError(f"quant: expected None, (W, I) or '<W,I>', got {quant!r}") from None
    if not (1 <= i < w <= 32):
        raise ValueError(f"quant <{w},{i}>: need 1 <= I < W <= 32")
    return w, i


def log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


def distillation_loss(student, teacher, labels, beta: float = BETA) -> float:
    """Eq 4.4 on NumPy arrays: ``(1 − β)·CE(student logits, labels) + β·MSE(teacher logits, student logits)``.

    ``student``/``teacher``: (N, C) logits; ``labels``: (N,) integer class ids.  Batch means, float64.
    """
    beta = check_beta(beta)
    s = np.asarray(student, dtype=np.float64)
    t = np.asarray(teacher, dtype=np.float64)
    y = np.asarray(labels)
    if s.ndim != 2 or s.shape != t.shape:
        raise ValueError(f"student/teacher logits must both be (N, C), got {s.shape} and {t.shape}")
    if y.shape != (s.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be (N,) = ({s.shape[0]},) integers, got {y.shape} {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= s.shape[1]):
        raise ValueError(f"labels must lie in [0, {s.shape[1]}), got range [{y.min()}, {y.max()}]")
    ce = -log_softmax(s)[np.arange(len(y)), y].mean()
    mse = np.mean((t - s) ** 2)
    return float((1.0 - beta) * ce + beta * mse)


@dataclass
class SkipTrimSchedule:
    """Algorithm 1 as a stateful object: which blocks of the student are modified at which epoch.

    Parameters
    ----------
    n_blocks: residual blocks in the student (``blocks_for_depth(depth)``).
    method: ``"skipper"`` (long → none), ``"trimmer"`` (long → short), ``"nonresnet"`` (short → none,
        3 blocks per step, Weng, Khodamoradi & Kastner).
    alpha: epochs between modifications (Algorithm 1's α); default per method (1, 3, 1).
    blocks_per_step: blocks modified together; default 1 (3 for NonResNet).

    ``begin_epoch(epoch)`` is called at the start of every epoch (Algorithm 1 lines 14-17) and returns the
    blocks it modified now.  The set of modified blocks after ``begin_epoch(i)`` is a pure function of ``i``:
    blocks ``0 .. (i // α + 1)·blocks_per_step − 1`` (clipped to ``n_blocks``); this is what makes resuming
    exact.  ``state_dict``/``load_state_dict`` checkpoint it; loading a state of a different configuration
    raises ValueError.
    """

    n_blocks: int
    method: str = "skipper"
    alpha: int | None = None
    blocks_per_step: int | None = None
    epoch: int = -1
    modified: list[int] = field(default_factory=list)
    history: list[dict] = field(default_factory=list)

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method: expected one of {tuple(METHODS)}, got {self.method!r}")
        if (
            isinstance(self.n_blocks, bool)
            or not isinstance(self.n_blocks, int | np.integer)
            or self.n_blocks < 1
        ):
            raise ValueError(f"n_blocks must be a positive int, got {self.n_blocks!r}")
        _, _, alpha0, step0 = METHODS[self.method]
        self.alpha = check_alpha(alpha0 if self.alpha is None else self.alpha)
        bps = step0 if self.blocks_per_step is None else self.blocks_per_step
        if isinstance(bps, bool) or not isinstance(bps, int | np.integer) or bps < 1:
            raise ValueError(f"blocks_per_step must be an int >= 1, got {bps!r}")
        self.blocks_per_step = int(bps)

    @property
    def source_mode(self) -> str:
        return METHODS[self.method][0]

    @property
    def target_mode(self) -> str:
        return METHODS[self.method][1]

    @property
    def n_steps(self) -> int:
        return -(-self.n_blocks // self.blocks_per_step)

    @property
    def epochs_to_finish(self) -> int:
        """Epochs until the last block is modified (that epoch included): ``α·(n_steps − 1) + 1``."""
        return self.alpha * (self.n_steps - 1) + 1

    @property
    def done(self) -> bool:
        return len(self.modified) == self.n_blocks

    def expected_modified(self, epoch: int) -> list[int]:
        """Blocks modified once ``begin_epoch(epoch)`` has run (empty for epoch < 0)."""
        if epoch < 0:
            return []
        steps = epoch // self.alpha + 1
        return list(range(min(self.n_blocks, steps * self.blocks_per_step)))

    def modes(self) -> list[str]:
        """Current per-block skip modes of the student."""
        mod = set(self.modified)
        return [self.target_mode if i in mod else self.source_mode for i in range(self.n_blocks)]

    def begin_epoch(self, epoch: int) -> list[int]:
        """Algorithm 1 lines 14-17 for epoch ``epoch``; returns the newly modified block indices."""
        if isinstance(epoch, bool) or not isinstance(epoch, int | np.integer) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        if epoch < self.epoch:
            raise ValueError(
                f"begin_epoch({epoch}) after epoch {self.epoch}: the schedule only moves forward "
                "(load_state_dict of an earlier checkpoint to go back)"
            )
        want = self.expected_modified(int(epoch))
        new = [b for b in want if b not in self.modified]
        self.modified = sorted(set(self.modified) | set(new))
        self.epoch = int(epoch)
        if new:
            self.history.append({"epoch": int(epoch), "blocks": new, "mode": self.target_mode})
        return new

    def config(self) -> dict:
        return {
            "n_blocks": int(self.n_blocks),
            "method": self.method,
            "alpha": int(self.alpha),
            "blocks_per_step": int(self.blocks_per_step),
        }

    def state_dict(self) -> dict:
        return {
            **self.config(),
            "epoch": int(self.epoch),
            "modified": list(self.modified),
            "history": [dict(h) for h in self.history],
        }

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from state_dict(), got {type(state).__name__}")
        for k, v in self.config().items():
            if state.get(k) != v:
                raise ValueError(f"checkpoint {k}={state.get(k)!r} does not match this schedule's {k}={v!r}")
        epoch = int(state["epoch"])
        modified = sorted(int(b) for b in state["modified"])
        if modified != self.expected_modified(epoch):
            raise ValueError(f"checkpoint is inconsistent: epoch {epoch} with modified blocks {modified}")
        self.epoch, self.modified = epoch, modified
        self.history = [dict(h) for h in state.get("history", [])]


def make_schedule(method: str, n_blocks: int, alpha: int | None = None, blocks_per_step: int | None = None):
    return SkipTrimSchedule(n_blocks=n_blocks, method=method, alpha=alpha, blocks_per_step=blocks_per_step)


class JsonLog:
    """Per-epoch metrics and modifications, rewritten as one JSON document after every record."""

    def __init__(self, path: str | Path | None, meta: dict | None = None):
        self.path = Path(path) if path is not None else None
        self.meta = dict(meta or {})
        self.epochs: list[dict] = []
        if self.path is not None and self.path.is_file():
            try:
                old = json.loads(self.path.read_text())
                self.epochs = list(old.get("epochs", []))
            except (OSError, ValueError):
                self.epochs = []

    def record(self, **entry) -> dict:
        entry = {k: (float(v) if isinstance(v, np.floating) else v) for k, v in entry.items()}
        entry.setdefault("time", time.time())
        self.epochs = [e for e in self.epochs if e.get("epoch") != entry.get("epoch")] + [entry]
        self.write()
        return entry

    def write(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text(json.dumps({"meta": self.meta, "epochs": self.epochs}, indent=1))
        tmp.replace(self.path)
