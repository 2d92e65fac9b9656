"""The one PyTorch epoch loop that every training recipe of the plugins uses (written once).

:func:`fit_epochs` runs ``epochs`` epochs of mini-batch training — zero grad, loss, finite check, backward,
optimiser step, per-step scheduler step — then validates, lets a scheduler with ``observe()`` (ASLR, or any
object with that method) see the validation cost, and records one dict per epoch.  What differs between the
recipes is passed in, not copied:

* ``batches(epoch)`` yields the epoch's mini-batches (any objects; the data order is the caller's);
* ``loss(batch) -> (loss tensor, batch size)`` — cross-entropy, a spike-count loss, a distillation loss ...;
* ``validate() -> dict`` of validation metrics, at least the ``monitor`` key;
* ``on_epoch_start(epoch)`` / ``on_epoch_end(epoch, record)`` for schedules (SkipTrim's Algorithm 1) and
  checkpoints; ``on_epoch_end`` may return True to stop early;
* ``select_best`` restores the parameters and buffers of the epoch with the best value of that key
  (``mode`` "max" or "min"; the first one when tied) and marks its record ``"selected": True``.

Nothing here imports a plugin; the module only needs torch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["fit_epochs"]


def fit_epochs(
    model,
    optimizer,
    batches: Callable[[int], Iterable[Any]],
    loss: Callable[[Any], tuple[Any, int]],
    validate: Callable[[], dict],
    epochs: int,
    *,
    start_epoch: int = 0,
    scheduler=None,
    monitor: str = "val_loss",
    select_best: str | None = None,
    mode: str = "max",
    on_epoch_start: Callable[[int], dict | None] | None = None,
    on_epoch_end: Callable[[int, dict], bool | None] | None = None,
    time_budget_s: float | None = None,
    progress: bool = False,
    desc: str = "train",
) -> list[dict]:
    """Train ``model`` for epochs ``start_epoch .. epochs-1``; returns the per-epoch records.

    A record holds ``epoch``, ``loss`` (mean training loss), ``seconds``, ``lr`` (the first parameter group's
    rate at the end of the epoch), every key of ``validate()`` and whatever ``on_epoch_start`` returned.
    A non-finite training or monitored validation value raises :class:`FloatingPointError` naming the epoch.
    ``time_budget_s`` ends training after the epoch (or batch) in which the budget is exceeded.
    """
    if epochs < 0 or start_epoch < 0:
        raise ValueError(f"{desc}: epochs and start_epoch must be >= 0, got {epochs}, {start_epoch}")
    if mode not in ("max", "min"):
        raise ValueError(f"{desc}: mode must be 'max' or 'min', got {mode!r}")
    if scheduler is not None and not callable(getattr(scheduler, "step", None)):
        raise TypeError(f"{desc}: scheduler must have a step() method, got {type(scheduler).__name__}")
    records: list[dict] = []
    best = _Best(model, select_best, mode)
    deadline = None if time_budget_s is None else time.perf_counter() + time_budget_s
    for epoch in range(start_epoch, epochs):
        extra = on_epoch_start(epoch) if on_epoch_start is not None else None
        t0 = time.perf_counter()
        bar = _bar(batches(epoch), progress, f"{desc} epoch {epoch + 1}/{epochs}")
        mean_loss, out_of_time = _train_epoch(model, optimizer, scheduler, bar, loss, deadline, desc, epoch)
        metrics = _validate(validate, monitor, desc, epoch)
        if scheduler is not None and callable(getattr(scheduler, "observe", None)):
            scheduler.observe(float(metrics[monitor]))
        record = {
            "epoch": epoch,
            "loss": mean_loss,
            **metrics,
            "lr": float(optimizer.param_groups[0]["lr"]),
            "seconds": time.perf_counter() - t0,
            **(extra or {}),
        }
        best.offer(record, records)
        records.append(record)
        if progress:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, float))
            print(f"[{desc}] epoch {epoch + 1}/{epochs}: loss {mean_loss:.4f}, {shown}", flush=True)
        stop = on_epoch_end(epoch, record) if on_epoch_end is not None else None
        if stop or out_of_time:
            break
    best.restore()
    return records


def _train_epoch(model, optimizer, scheduler, batches, loss, deadline, desc: str, epoch: int):
    """One pass over ``batches``; returns (mean training loss, whether the time budget ran out)."""
    import torch

    model.train()
    total, seen = 0.0, 0
    for batch in batches:
        value, n = loss(batch)
        if not torch.isfinite(value):
            raise FloatingPointError(f"{desc}: non-finite training loss at epoch {epoch}")
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += float(value.detach()) * n
        seen += n
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{total / max(seen, 1):.4f}")
        if deadline is not None and time.perf_counter() > deadline:
            return total / max(seen, 1), True
    return total / max(seen, 1), False


def _validate(validate, monitor: str, desc: str, epoch: int) -> dict:
    metrics = dict(validate())
    if monitor not in metrics:
        raise KeyError(f"{desc}: validate() returned {sorted(metrics)}, which lacks the monitor {monitor!r}")
    if not math.isfinite(float(metrics[monitor])):
        raise FloatingPointError(f"{desc}: epoch {epoch}: {monitor} is {metrics[monitor]}")
    return metrics


class _Best:
    """Keeps the state of the best epoch by ``key`` (first one when tied) and marks its record."""

    def __init__(self, model, key: str | None, mode: str):
        self.model, self.key, self.mode = model, key, mode
        self.value, self.state = None, None

    def offer(self, record: dict, earlier: list[dict]) -> None:
        if self.key is None:
            return
        value = float(record[self.key])
        if self.value is None or (value > self.value if self.mode == "max" else value < self.value):
            self.value = value
            self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            for r in earlier:
                r.pop("selected", None)
            record["selected"] = True

    def restore(self) -> None:
        if self.state is not None:
            self.model.load_state_dict(self.state)


def _bar(iterable, progress: bool, desc: str):
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)
