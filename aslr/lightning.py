"""ASLR as a PyTorch Lightning callback (seed 002, Algorithm 2 per epoch, Eq 5.10 per optimiser step).

``ASLRCallback(lr, monitor="val_loss", mode="min", seed=None)`` attaches an :class:`aslr.torch.ASLR` to the
single optimiser returned by ``configure_optimizers`` when training starts:

* ``on_before_optimizer_step``: a fresh draw ``c_u ~ U(c - s/2, c + s/2)`` for every param group, right before
  the step that uses it (so gradient accumulation draws once per optimiser step, not per batch).  Return
  ``torch.optim.SGD(aslr.torch.layer_param_groups(self, ...), lr=...)`` from ``configure_optimizers`` for the
  seed's per-layer rates.
* ``on_train_epoch_end``: ``trainer.callback_metrics[monitor]`` goes through Algorithm 2.  In Lightning 2 the
  epoch's validation has run by then.  For a monitor whose name starts with ``"val"`` the epoch is skipped
  when no validation ran in it (``check_val_every_n_epoch > 1``), so a stale value is never counted twice;
  the sanity-check validation never counts.
* under DDP the inner scheduler broadcasts its generator from rank 0 and averages the metric over ranks, so
  every rank draws the same rates.
* ``state_dict`` / ``load_state_dict`` make the callback state part of Lightning checkpoints; a resumed fit
  continues the identical trajectory.

Lightning is an optional dependency (``hwreshape[peers]``): this module imports ``lightning.pytorch``
(falling back to ``pytorch_lightning``) at its own import; ``import aslr`` does not.
"""

from __future__ import annotations

import math

import torch

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - depends on what is installed
    try:
        from pytorch_lightning import Callback
    except ImportError as exc:
        raise ImportError("aslr.lightning needs lightning: pip install 'hwreshape[peers]'") from exc

from aslr.core import ASLRSearch
from aslr.torch import ASLR

__all__ = ["ASLRCallback"]


class ASLRCallback(Callback):
    """Adaptive Scheduler for Learning Rate for ``lightning.pytorch.Trainer``.

    Parameters
    ----------
    lr: initial centre learning rate ``c`` (finite, > 0).
    monitor: key of ``trainer.callback_metrics`` fed to Algorithm 2 once per epoch.
    mode: ``"min"`` (loss) or ``"max"`` (accuracy-like).
    seed: seed of the draws' ``torch.Generator`` (default ``torch.initial_seed()``).
    """

    def __init__(self, lr, monitor: str = "val_loss", mode: str = "min", seed: int | None = None) -> None:
        super().__init__()
        ASLRSearch(lr, mode=mode)  # validates lr and mode now, not at fit time
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"ASLRCallback: monitor must be a non-empty metric name, got {monitor!r}")
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
        self.scheduler = ASLR(optimizer, self.lr, mode=self.mode, generator=generator)
        if self._pending_state is not None:
            self.scheduler.load_state_dict(self._pending_state)
            self._pending_state = None

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
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)
        else:
            self._pending_state = state
