"""ASLR as a PyTorch Lightning callback (Khodamoradi 2021, §5.3: Algorithm 2 per epoch, Eq 5.10 per optimiser step).

``ASLRCallback(lr, monitor="val_acc", mode="auto", seed=None)`` attaches an :class:`aslr.torch.ASLR` to the
single optimiser returned by ``configure_optimizers`` when training starts:

* ``on_before_optimizer_step``: a fresh draw ``c_u ~ U(c - s/2, c + s/2)`` for every param group, right before
  the step that uses it (so gradient accumulation draws once per optimiser step, not per batch).  Return
  ``torch.optim.SGD(aslr.torch.layer_param_groups(self, ...), lr=...)`` from ``configure_optimizers`` for the
  dissertation's per-layer rates.
* ``on_train_epoch_end``: ``trainer.callback_metrics[monitor]`` goes through Algorithm 2.  In Lightning 2 the
  epoch's validation has run by then.  For a monitor whose name starts with ``"val"`` the epoch is skipped
  when no validation ran in it (``check_val_every_n_epoch > 1``), so a stale value is never counted twice;
  the sanity-check validation never counts.
* under DDP the inner scheduler broadcasts its generator from rank 0 and averages the metric over ranks, so
  every rank draws the same rates.
* ``state_dict`` / ``load_state_dict`` make the callback state part of Lightning checkpoints; a resumed fit
  continues the identical trajectory.  A second ``trainer.fit`` with the same callback continues the search
  (and the draws) where the previous fit left it, on the optimiser the new fit configures.
* the default monitor is the validation error of Algorithm 2: log ``self.log("val_acc", acc)``; ``mode="auto"``
  maximises names containing ``"acc"`` and minimises others (``monitor="val_loss"`` → ``"min"``).
* ``preflight=`` the result of :func:`lr_range_test` (Lightning's own ``Tuner.lr_find``) checks the start rate
  against the range test's boundaries (Eq 5.9) at construction.

Lightning is an optional dependency (``hwreshape[lightning]``): this module imports ``lightning.pytorch``
(falling back to ``pytorch_lightning``) at its own import; ``import aslr`` does not.
"""

from __future__ import annotations

import math

from hwreshape.extras import needs_torch  # noqa: F401  # isort: skip
import torch

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        from pytorch_lightning import Callback
    except ImportError:
        from hwreshape.extras import require

        require("lightning", __name__)  # names pip install 'hwreshape[lightning]'
        raise

from aslr.core import ASLRSearch, resolve_mode
from aslr.torch import ASLR

__all__ = ["ASLRCallback", "lr_range_test"]


class ASLRCallback(Callback):
    """Adaptive Scheduler for Learning Rate for ``lightning.pytorch.Trainer``.

    Parameters
    ----------
    lr: initial centre learning rate ``c`` (finite, > 0).
    monitor: key of ``trainer.callback_metrics`` fed to Algorithm 2 once per epoch (default ``"val_acc"``).
    mode: ``"min"`` (loss), ``"max"`` (accuracy-like) or ``"auto"`` (``"max"`` when the name contains "acc").
    seed: seed of the draws' ``torch.Generator`` (default ``torch.initial_seed()``).
    preflight, preflight_action: a range-test result to check ``lr`` against (``"warn"`` / ``"raise"``).
    """

    def __init__(
        self,
        lr,
        monitor: str = "val_acc",
        mode: str = "auto",
        seed: int | None = None,
        preflight=None,
        preflight_action: str = "warn",
    ) -> None:
        super().__init__()
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"ASLRCallback: monitor must be a non-empty metric name, got {monitor!r}")
        mode = resolve_mode(monitor, mode)
        ASLRSearch(lr, mode=mode)  # validates lr and mode now, not at fit time
        if preflight is not None:
            from aslr.lr_finder import check_start_lr

            check_start_lr(lr, preflight, action=preflight_action)
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f"ASLRCallback: seed must be an int or None, got {type(seed).__name__}")
        self.lr = lr
        self.monitor = monitor
        self.mode = mode
        self.seed = seed
        self.scheduler: ASLR | None = None
        self._pending_state: dict | None = None
        self._val_ran = False

    @property
    def state_key(self) -> str:
        return f"ASLRCallback[monitor={self.monitor}]"

    @property
    def c_history(self) -> list[float]:
        return list(self.scheduler.c_history) if self.scheduler is not None else []

    def on_train_start(self, trainer, pl_module) -> None:
        optimizers = list(trainer.optimizers)
        if len(optimizers) != 1:
            raise ValueError(
                f"ASLRCallback: expected exactly one optimizer, the module configured {len(optimizers)}"
            )
        if getattr(trainer, "lr_scheduler_configs", None):
            raise ValueError(
                "ASLRCallback: configure_optimizers also returned an lr scheduler; ASLR sets the learning rate "
                "itself — return only the optimizer"
            )
        generator = torch.Generator()
        generator.manual_seed(self.seed if self.seed is not None else torch.initial_seed())
        # LightningOptimizer wraps the torch optimizer; param_groups are shared with the wrapped one
        optimizer = getattr(optimizers[0], "optimizer", optimizers[0])
        # a checkpoint being resumed wins; otherwise a previous fit with this callback is continued
        state = self._pending_state
        if state is None and self.scheduler is not None:
            state = self.scheduler.state_dict()
        self.scheduler = ASLR(optimizer, self.lr, mode=self.mode, generator=generator)
        if state is not None:
            self.scheduler.load_state_dict(state)
        self._pending_state = None
        self._val_ran = False

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.scheduler is not None:
            self.scheduler.step()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._val_ran = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.scheduler is None:
            return
        val_ran, self._val_ran = self._val_ran, False
        if self.monitor.startswith("val") and not val_ran:
            return
        metrics = trainer.callback_metrics
        if self.monitor not in metrics:
            raise ValueError(
                f"ASLRCallback: monitor {self.monitor!r} not found in trainer.callback_metrics "
                f"(available: {sorted(metrics)}); log it with self.log({self.monitor!r}, ...)"
            )
        value = metrics[self.monitor]
        value = float(value.detach().item() if isinstance(value, torch.Tensor) else value)
        if not math.isfinite(value):
            raise ValueError(
                f"ASLRCallback: {self.monitor}={value!r} at epoch {trainer.current_epoch} is not finite"
            )
        self.scheduler.observe(value)

    def state_dict(self) -> dict:
        if self.scheduler is not None:
            return {"scheduler": self.scheduler.state_dict()}
        return {"scheduler": self._pending_state} if self._pending_state is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        state = state_dict.get("scheduler")
        if state is None:
            return
        # applied in on_train_start, on the optimizer of the fit being resumed
        self._pending_state = state


def lr_range_test(
    trainer,
    model,
    train_dataloaders=None,
    *,
    datamodule=None,
    start_lr: float = 1e-5,
    end_lr: float = 1.0,
    num_iter: int = 100,
    step_mode: str = "exp",
    early_stop_threshold: float | None = 4.0,
    drop: float = 0.1,
):
    """Learning-rate range test (Eq 5.9) with Lightning's own ``Tuner(trainer).lr_find``.

    Lightning sweeps the learning rate of the module's optimiser over ``num_iter`` steps (its callbacks replaced
    by its own for the duration) and restores the module afterwards; the smoothed loss curve goes to
    :func:`aslr.lr_finder.suggest_start_lr`.  Use a trainer without an lr scheduler; the returned
    :class:`~aslr.lr_finder.RangeTestResult` can be passed as ``ASLRCallback(lr, preflight=result)``.
    """
    from lightning.pytorch.tuner import Tuner

    from aslr.lr_finder import suggest_start_lr

    if step_mode not in ("exp", "linear"):
        raise ValueError(f"lr_range_test: step_mode must be 'exp' or 'linear', got {step_mode!r}")
    for name, v in (("start_lr", start_lr), ("end_lr", end_lr)):
        if isinstance(v, bool) or not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"lr_range_test: {name} must be a finite number > 0, got {v!r}")
    if not start_lr < end_lr:
        raise ValueError(f"lr_range_test: start_lr ({start_lr}) must be < end_lr ({end_lr})")
    if not (isinstance(num_iter, int) and num_iter >= 3):
        raise ValueError(f"lr_range_test: num_iter must be an int >= 3, got {num_iter!r}")
    step0 = trainer.global_step
    finder = Tuner(trainer).lr_find(
        model,
        train_dataloaders=train_dataloaders,
        datamodule=datamodule,
        min_lr=start_lr,
        max_lr=end_lr,
        num_training=num_iter,
        mode="exponential" if step_mode == "exp" else "linear",
        early_stop_threshold=early_stop_threshold,
        update_attr=False,
    )
    losses = _unbias(finder.results["loss"], step0)
    return suggest_start_lr(finder.results["lr"], losses, step_mode=step_mode, drop=drop)


def _unbias(smoothed, step0: int, beta: float = 0.98):
    """Lightning's range-test curve with the EMA bias correction it intends.

    Lightning (2.x ``_LRCallback``) keeps ``avg = beta*avg + (1-beta)*loss`` from ``avg = 0`` and logs
    ``avg / (1 - beta**(global_step + 1))`` with ``global_step`` already counting the step just taken (and not
    restarting at 0 on a trainer that has trained before), so its first points are biased low by up to a factor
    2 and a short sweep looks like a rising loss.  Here ``avg`` is recovered and divided by
    ``1 - beta**(k + 1)``, ``k`` = the index of the point in this sweep: the standard bias-corrected EMA.
    """
    import numpy as np

    smoothed = np.asarray(smoothed, dtype=np.float64)
    k = np.arange(len(smoothed))
    avg = smoothed * (1.0 - beta ** (step0 + k + 2))
    return avg / (1.0 - beta ** (k + 1))
