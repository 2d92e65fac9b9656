"""Framework-free ASLR search: Algorithm 2 of Khodamoradi 2021 (§5.3) and the step size of Eq 5.10.

After every epoch the scheduler receives the validation cost. While the cost improves (``cost <= min_cost``)
the centre learning rate ``c`` is kept; when it does not (``min_cost < cost``) ``c`` moves by the step size
``s = 10**floor(log10(c))`` in ``search_direction``; each time ``search_steps`` reaches ``search_range`` the
range grows by one and the direction flips, so the search scans a widening band around ``c``
(Fig 5.3). If a step would land exactly on zero (``c + search_direction*s == 0``) ``c`` becomes ``0.9*c``.

State names follow Algorithm 2: ``min_cost``, ``search_direction``, ``search_range``, ``search_steps`` and ``c``.

Deviations from the dissertation (also listed in docs/aslr.md):

* **initial ``min_cost``**: the dissertation starts with ``min_cost = 1`` because it monitors a validation *error*
  (a rate in [0, 1]).  With a validation *loss* (cross-entropy starts near ``ln(10) = 2.3``) that initial value
  makes every epoch whose loss is still above 1 count as "no improvement", so the search would start moving
  ``c`` while the network is in fact improving.  We start with ``min_cost = +inf``: the first observation is
  always an improvement.  For a first cost ``<= 1`` both choices take the same branch and leave
  ``min_cost`` equal to that cost, so for costs ``<= 1`` the trajectory equals the dissertation's exactly.
* **exact decimal arithmetic**: the dissertation's algorithm is stated over the reals.  In binary floating point
  ``0.3 - 0.1 - 0.1 - 0.1`` is ``2.8e-17``, not 0, so a naive implementation misses the zero-crossing rule
  and lands on a learning rate of ``1e-17``; ``floor(log10(0.1 - 1e-17))`` may also pick the wrong decade.
  ``c`` is therefore held as a :class:`decimal.Decimal` built from the shortest decimal representation of
  the user's ``lr`` (``repr``), steps are exact powers of ten, and ``0.9*c`` is exact; the float handed to the
  optimiser is the nearest double of that exact value.  This reproduces the dissertation's real-number trajectory.
* **mode="max"**: for accuracy-like metrics the cost is ``-metric`` (the dissertation only defines costs).
* **bad input**: ``lr <= 0`` or a non-finite ``lr`` / cost raises ``ValueError`` (the public reference
  implementation loops forever computing the step size of ``lr <= 0``).

Plateaus: Algorithm 2 tests ``min_cost < cost``, so a cost *equal* to ``min_cost`` counts as an improvement
(it resets the search).  We keep that exactly.
"""

from __future__ import annotations

import decimal
import math
from numbers import Real

__all__ = ["ASLRSearch", "resolve_mode", "step_size", "to_decimal"]

_CTX = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN)
_NINE_TENTHS = decimal.Decimal("0.9")


def _check_lr(lr, name: str = "lr") -> None:
    if isinstance(lr, bool) or not isinstance(lr, Real | decimal.Decimal):
        raise TypeError(f"ASLR: {name} must be a real number, got {type(lr).__name__} ({lr!r})")
    if not math.isfinite(float(lr)):
        raise ValueError(f"ASLR: {name} must be finite, got {lr!r}")
    if not float(lr) > 0:
        raise ValueError(f"ASLR: {name} must be > 0, got {lr!r} (Algorithm 2 needs a positive start value)")


def to_decimal(lr) -> decimal.Decimal:
    """``lr`` as an exact decimal: floats through their shortest round-trip representation (``repr``)."""
    _check_lr(lr)
    if isinstance(lr, decimal.Decimal):
        return lr
    if isinstance(lr, int):
        return decimal.Decimal(lr)
    return decimal.Decimal(repr(float(lr)))


def resolve_mode(monitor: str, mode: str) -> str:
    """``mode`` checked; ``"auto"`` becomes ``"max"`` for accuracy-like names (containing ``"acc"``), else ``"min"``.

    The same rule as Keras' own ``ModelCheckpoint(mode="auto")``: ``val_accuracy`` / ``val_acc`` are maximised
    (cost = validation error up to a constant), ``val_loss`` / ``val_err`` are minimised.
    """
    if mode not in ("min", "max", "auto"):
        raise ValueError(f"ASLR: mode must be 'min', 'max' or 'auto', got {mode!r}")
    if mode != "auto":
        return mode
    return "max" if "acc" in monitor.lower() else "min"


def _step_size_decimal(c: decimal.Decimal) -> decimal.Decimal:
    # adjusted() is the exponent of the most significant digit: exactly floor(log10(c)) for c > 0.
    return decimal.Decimal(1).scaleb(c.adjusted(), _CTX)


def step_size(c) -> float:
    """``s = 10**floor(log10(c))`` (Eq 5.10), computed exactly in decimal; ``c`` must be finite and > 0."""
    _check_lr(c, "c")
    return float(_step_size_decimal(to_decimal(c)))


class ASLRSearch:
    """Algorithm 2 (Khodamoradi 2021, §5.3): the centre learning rate ``c`` after each epoch's validation cost.

    Parameters
    ----------
    lr:
        the one user-chosen hyperparameter, the initial learning rate ``c`` (finite, > 0).
    mode:
        ``"min"`` (the metric is a cost, e.g. ``val_loss``) or ``"max"`` (accuracy-like; cost = ``-metric``).
    """

    def __init__(self, lr, mode: str = "min") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"ASLR: mode must be 'min' or 'max', got {mode!r}")
        self._c = to_decimal(lr)
        self.start_lr = self._c  # kept in the state: a checkpoint of another start value is refused
        self.mode = mode
        self.min_cost = math.inf  # Algorithm 2: 1 (see module docstring for why +inf)
        self.search_direction = 1
        self.search_range = 1
        self.search_steps = 0
        self.epochs = 0

    # -- the quantities of Eq 5.10 -------------------------------------------------------------------
    @property
    def c(self) -> float:
        """The current centre learning rate (nearest double of the exact decimal value)."""
        return float(self._c)

    @property
    def c_exact(self) -> decimal.Decimal:
        return self._c

    @property
    def s(self) -> float:
        """The current step size ``10**floor(log10(c))`` = the width of the Eq 5.10 draw interval."""
        return float(_step_size_decimal(self._c))

    @property
    def bounds(self) -> tuple[float, float]:
        """The support ``(c - s/2, c + s/2)`` of the per-step draws ``c_u`` (Eq 5.10), exact then rounded."""
        half = _step_size_decimal(self._c) / 2
        return float(_CTX.subtract(self._c, half)), float(_CTX.add(self._c, half))

    # -- Algorithm 2, one epoch ------------------------------------------------------------------------
    def observe(self, cost) -> float:
        """Feed one epoch's validation metric; update and return the centre learning rate ``c``."""
        if isinstance(cost, bool | str | bytes) or not (
            isinstance(cost, Real | decimal.Decimal) or hasattr(cost, "__float__")
        ):
            raise TypeError(
                f"ASLR.observe: metric must be a real number, got {type(cost).__name__} ({cost!r})"
            )
        try:
            cost = float(cost)  # numpy / torch scalars
        except (TypeError, ValueError):
            raise TypeError(
                f"ASLR.observe: metric must be a real scalar, got {type(cost).__name__}"
            ) from None
        if not math.isfinite(cost):
            raise ValueError(
                f"ASLR.observe: metric must be finite, got {cost!r} (the training diverged or the metric is missing)"
            )
        if self.mode == "max":
            cost = -cost
        self.epochs += 1
        if self.min_cost < cost:
            s = _step_size_decimal(self._c)
            moved = _CTX.add(self._c, s * self.search_direction)
            if moved == 0:
                self._c = _CTX.multiply(_NINE_TENTHS, self._c)
            else:
                self._c = moved
            self.search_steps += 1
            if self.search_steps == self.search_range:
                self.search_range += 1
                self.search_steps = 0
                self.search_direction = -self.search_direction
        else:
            self.min_cost = cost
            self.search_direction = 1
            self.search_range = 1
            self.search_steps = 0
        return self.c

    # -- persistence -------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "c": str(self._c),
            "start_lr": str(self.start_lr),
            "mode": self.mode,
            "min_cost": self.min_cost,
            "search_direction": self.search_direction,
            "search_range": self.search_range,
            "search_steps": self.search_steps,
            "epochs": self.epochs,
        }

    def load_state_dict(self, state: dict) -> None:
        missing = {"c", "mode", "min_cost", "search_direction", "search_range", "search_steps"} - set(state)
        if missing:
            raise ValueError(f"ASLRSearch.load_state_dict: missing keys {sorted(missing)}")
        c = decimal.Decimal(str(state["c"]))
        if not c.is_finite() or c <= 0:
            raise ValueError(f"ASLRSearch.load_state_dict: c must be finite and > 0, got {state['c']!r}")
        if state["mode"] not in ("min", "max"):
            raise ValueError(f"ASLRSearch.load_state_dict: bad mode {state['mode']!r}")
        if state["mode"] != self.mode:
            raise ValueError(
                f"ASLRSearch.load_state_dict: the state was saved with mode={state['mode']!r}, this search has "
                f"mode={self.mode!r} (a cost and an accuracy cannot share min_cost)"
            )
        if "start_lr" in state and decimal.Decimal(str(state["start_lr"])) != self.start_lr:
            raise ValueError(
                f"ASLRSearch.load_state_dict: the state was saved by a search started at lr={state['start_lr']}, "
                f"this one starts at lr={self.start_lr} (construct it with the checkpoint's start value)"
            )
        if state["search_direction"] not in (1, -1):
            raise ValueError(
                f"ASLRSearch.load_state_dict: search_direction must be +1/-1, got {state['search_direction']!r}"
            )
        self._c = c
        self.min_cost = float(state["min_cost"])
        self.search_direction = int(state["search_direction"])
        self.search_range = int(state["search_range"])
        self.search_steps = int(state["search_steps"])
        self.epochs = int(state.get("epochs", 0))

    def __repr__(self) -> str:
        return (
            f"ASLRSearch(c={self._c}, s={_step_size_decimal(self._c)}, min_cost={self.min_cost}, "
            f"search_direction={self.search_direction}, search_range={self.search_range}, "
            f"search_steps={self.search_steps})"
        )
