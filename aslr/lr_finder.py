"""Choosing ASLR's one hyperparameter: a learning-rate range test (Khodamoradi 2021, §5.3, "Estimating the
Starting Value", Eq 5.9).

The dissertation: "run the training for a few epochs while increasing the learning rate ... By checking [the result]
against the learning rate, one can observe the boundaries for a reasonable starting value. Then the user can
select a value between those boundaries, for example, the middle point."

:func:`lr_range_test` wraps the range test of ``torch-lr-finder`` (``torch_lr_finder.LRFinder``, an optional
dependency: ``pip install 'hwreshape[lr-finder]'``): it sweeps the learning rate over ``num_iter`` mini-batches, records the smoothed
training loss on a deep copy of the model (the caller's model and optimiser stay untouched), and hands the curve to :func:`suggest_start_lr`.

:func:`suggest_start_lr` turns a curve into the boundaries of Eq 5.9 and their middle point:

* ``high`` (the Armijo side, ``lambda_max``): the learning rate at the minimum of the smoothed loss; above it
  the loss rises again or diverges.
* ``low`` (the curvature side, ``lambda_min``): the first learning rate at which the loss has fallen by
  ``drop`` (default 10 %) of the total fall ``loss[0] - min(loss)``; below it the rate is too small to make
  progress.
* ``suggestion``: the middle point of ``[low, high]`` — geometric (``sqrt(low*high)``) for an exponential
  sweep, arithmetic for a linear one (the dissertation sweeps linearly; an exponential sweep covers decades with
  fewer batches, and its natural middle is the middle on its own log axis).

These two boundary rules are ours: the dissertation leaves "observe the boundaries" to the user's eye.

:func:`check_start_lr` is the opt-in **pre-flight check**: Algorithm 2 is kept exact, so a start rate far outside
the range (e.g. 10x above ``high``) is not repaired by the search (its first steps go *up*).  Every door accepts
the range test's result and checks the start value against it before training: ``aslr.torch.ASLR(...,
preflight=result)``, ``aslr.keras.ASLRCallback(..., preflight=result)``, ``aslr.lightning.ASLRCallback(...,
preflight=result)``; ``preflight_action="warn"`` (default: :class:`StartLRWarning`) or ``"raise"``
(``ValueError``).  The curve comes from :func:`lr_range_test` (torch, torch-lr-finder),
:func:`aslr.keras.lr_range_test` (Keras 3 / tf-keras, the model's own ``train_on_batch``) or
:func:`aslr.lightning.lr_range_test` (Lightning's own ``Tuner.lr_find``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = [
    "RangeTestResult",
    "StartLRWarning",
    "check_start_lr",
    "lr_range_test",
    "suggest_start_lr",
]


class StartLRWarning(UserWarning):
    """The ASLR start rate lies outside the boundaries of the learning-rate range test (Eq 5.9)."""


@dataclass
class RangeTestResult:
    """A range-test curve and the boundaries of a reasonable starting value (Eq 5.9)."""

    lrs: np.ndarray
    losses: np.ndarray
    low: float
    high: float
    suggestion: float
    step_mode: str

    def plot(self, ax=None):
        """Loss against learning rate with the boundaries and the suggestion marked; returns the axes."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(self.lrs, self.losses, lw=1.5)
        if self.step_mode == "exp":
            ax.set_xscale("log")
        ax.axvspan(self.low, self.high, color="tab:green", alpha=0.15, label="reasonable range")
        ax.axvline(self.suggestion, color="tab:red", ls="--", label=f"start lr {self.suggestion:.3g}")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("smoothed training loss")
        ax.legend(fontsize=8)
        return ax


def check_start_lr(lr, result: RangeTestResult, *, action: str = "warn") -> bool:
    """Pre-flight check: is ``lr`` inside ``[result.low, result.high]``?  Returns True when it is.

    Outside: ``action="warn"`` issues a :class:`StartLRWarning`, ``action="raise"`` raises ``ValueError``; both
    name the range and the suggested middle point.  ``lr`` must be finite and > 0.
    """
    from aslr.core import to_decimal

    if not isinstance(result, RangeTestResult):
        raise TypeError(
            f"ASLR pre-flight: expected the RangeTestResult of a range test (aslr.lr_finder.lr_range_test, "
            f"aslr.keras.lr_range_test, aslr.lightning.lr_range_test), got {type(result).__name__}"
        )
    if action not in ("warn", "raise"):
        raise ValueError(f"ASLR pre-flight: preflight_action must be 'warn' or 'raise', got {action!r}")
    value = float(to_decimal(lr))
    if result.low <= value <= result.high:
        return True
    side = "above" if value > result.high else "below"
    msg = (
        f"ASLR pre-flight: start lr={value:g} is {side} the range test's reasonable range "
        f"[{result.low:.3g}, {result.high:.3g}] (Eq 5.9); Algorithm 2 is not designed to recover from a start "
        f"outside it — start at e.g. the middle point {result.suggestion:.3g}"
    )
    if action == "raise":
        raise ValueError(msg)
    warnings.warn(msg, StartLRWarning, stacklevel=3)
    return False


def suggest_start_lr(lrs, losses, *, step_mode: str = "exp", drop: float = 0.1) -> RangeTestResult:
    """Boundaries ``[low, high]`` of a reasonable start rate on a range-test curve and their middle point.

    ``lrs`` must be positive and increasing, ``losses`` finite where used (a trailing diverged tail with
    ``inf``/``nan`` is cut off).  Raises ``ValueError`` when the curve never falls (no reasonable range).
    """
    if step_mode not in ("exp", "linear"):
        raise ValueError(f"suggest_start_lr: step_mode must be 'exp' or 'linear', got {step_mode!r}")
    if not 0.0 < drop < 1.0:
        raise ValueError(f"suggest_start_lr: drop must be in (0, 1), got {drop!r}")
    lrs = np.asarray(lrs, dtype=np.float64)
    losses = np.asarray(losses, dtype=np.float64)
    if lrs.ndim != 1 or lrs.shape != losses.shape:
        raise ValueError(
            f"suggest_start_lr: lrs and losses must be 1-D of equal length, got {lrs.shape}, {losses.shape}"
        )
    finite = np.isfinite(losses)
    if not finite.all():
        first_bad = int(np.argmin(finite))
        lrs, losses = lrs[:first_bad], losses[:first_bad]
    if lrs.size < 3:
        raise ValueError(f"suggest_start_lr: need at least 3 finite points on the curve, got {lrs.size}")
    if not (np.all(lrs > 0) and np.all(np.diff(lrs) > 0) and np.all(np.isfinite(lrs))):
        raise ValueError("suggest_start_lr: learning rates must be finite, positive and strictly increasing")
    i_min = int(np.argmin(losses))
    fall = losses[0] - losses[i_min]
    if i_min == 0 or not fall > 0:
        raise ValueError(
            "suggest_start_lr: the loss never falls below its starting value — start the sweep at a smaller "
            "learning rate or check the model/data"
        )
    below = np.nonzero(losses[: i_min + 1] <= losses[0] - drop * fall)[0]
    i_low = int(below[0])
    low, high = float(lrs[i_low]), float(lrs[i_min])
    suggestion = math.sqrt(low * high) if step_mode == "exp" else 0.5 * (low + high)
    return RangeTestResult(
        lrs=lrs, losses=losses, low=low, high=high, suggestion=suggestion, step_mode=step_mode
    )


def lr_range_test(
    model,
    optimizer,
    criterion,
    train_loader,
    *,
    start_lr: float = 1e-5,
    end_lr: float = 1.0,
    num_iter: int = 100,
    step_mode: str = "exp",
    smooth_f: float = 0.05,
    diverge_th: float = 5.0,
    drop: float = 0.1,
    device=None,
) -> RangeTestResult:
    """Run torch-lr-finder's range test and return :func:`suggest_start_lr` of its curve.

    The test trains a deep copy: the model and the optimiser passed in are left as they were.  ``train_loader`` is a
    ``torch.utils.data.DataLoader`` yielding ``(inputs, labels)``; it is cycled if shorter than ``num_iter``.
    """
    from hwreshape.extras import require

    require("lr-finder", "aslr.lr_finder.lr_range_test")  # torch + torch-lr-finder, named if missing
    from torch_lr_finder import LRFinder

    for name, v in (("start_lr", start_lr), ("end_lr", end_lr)):
        if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"lr_range_test: {name} must be a finite number > 0, got {v!r}")
    if not start_lr < end_lr:
        raise ValueError(f"lr_range_test: start_lr ({start_lr}) must be < end_lr ({end_lr})")
    if not (isinstance(num_iter, int) and num_iter >= 3):
        raise ValueError(f"lr_range_test: num_iter must be an int >= 3, got {num_iter!r}")
    if step_mode not in ("exp", "linear"):
        raise ValueError(f"lr_range_test: step_mode must be 'exp' or 'linear', got {step_mode!r}")
    model_copy, optimizer_copy = _clone(model, optimizer)
    finder = LRFinder(model_copy, optimizer_copy, criterion, device=device)
    finder.range_test(
        train_loader,
        start_lr=start_lr,
        end_lr=end_lr,
        num_iter=num_iter,
        step_mode=step_mode,
        smooth_f=smooth_f,
        diverge_th=diverge_th,
    )
    return suggest_start_lr(finder.history["lr"], finder.history["loss"], step_mode=step_mode, drop=drop)


def _clone(model, optimizer):
    """A deep copy of the model and a fresh optimiser of the same class and groups over the copy.

    The range test runs on the copy, so the caller's model and optimiser are never touched.  (torch-lr-finder's
    own ``reset()`` reloads a ``state_dict`` saved before the test, which fails for Brevitas models whose
    activation scales are created lazily from runtime statistics during the first training steps.)
    """
    import copy

    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"lr_range_test: model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"lr_range_test: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    mapping = {}
    model_copy = copy.deepcopy(model)
    for (_, p1), (_, p2) in zip(
        model.named_parameters(remove_duplicate=False), model_copy.named_parameters(remove_duplicate=False)
    ):
        mapping[id(p1)] = p2
    groups = []
    for g in optimizer.param_groups:
        missing = [p for p in g["params"] if id(p) not in mapping]
        if missing:
            raise ValueError(
                "lr_range_test: the optimizer holds parameters that are not parameters of the model"
            )
        groups.append(
            {**{k: v for k, v in g.items() if k != "params"}, "params": [mapping[id(p)] for p in g["params"]]}
        )
    return model_copy, type(optimizer)(groups, **optimizer.defaults)
