"""ASLR for PyTorch (and Brevitas) optimisers: Algorithm 2 per epoch, Eq 5.10 per step (Khodamoradi 2021, §5.3).

``ASLR(optimizer, lr)`` is a small stateful object in the style of ``torch.optim.lr_scheduler``:

* ``step()`` once per optimiser step draws a fresh learning rate for **every param group** from
  ``U(c - s/2, c + s/2)`` with ``s = 10**floor(log10(c))`` (Eq 5.10).  With one param group per layer
  (:func:`layer_param_groups`) these are the dissertation's per-batch, per-layer learning rates ``c_u``.
* ``observe(metric)`` once per epoch runs one iteration of Algorithm 2 (:class:`aslr.core.ASLRSearch`) on the
  validation metric, moves the centre ``c`` and immediately draws the rates of the next step from the new
  interval.
* randomness comes only from an explicit ``torch.Generator`` (CPU, float64 draws); ``state_dict()`` stores it,
  so a resumed run repeats the identical trajectory, draws included.
* under ``torch.distributed`` (initialised, world size > 1) the generator state is broadcast from rank 0 at
  construction and the metric handed to ``observe`` is averaged over ranks (``sync_metric="mean"``; or
  ``"rank0"`` to use rank 0's value): every rank then draws identical learning rates with no communication
  per step.  Both go through a gloo group of ASLR's own (created collectively at construction) whose
  timeout is ``sync_timeout`` seconds (default 300): ``observe`` called on some ranks only fails with a
  ``RuntimeError`` that says to call it on every rank, instead of blocking until the default group's timeout
  (30 min) or pairing with the model's gradient all-reduce.
* ``tensor_lr=True`` turns every group's ``lr`` into a 0-d float64 tensor that ``step()`` fills in place, the
  form ``torch.compile`` needs to compile ``optimizer.step`` once instead of treating every new float as a
  new constant (the tensor lr recipe of the PyTorch docs).  The optimiser must accept a tensor lr.
* ``preflight=`` the :class:`~aslr.lr_finder.RangeTestResult` of a range test checks the start rate against
  its boundaries (Eq 5.9) before anything is drawn (:func:`aslr.lr_finder.check_start_lr`).
* ``load_state_dict`` refuses a state saved for another optimiser class, start rate or mode.

It does not subclass ``torch.optim.lr_scheduler.LRScheduler`` (whose ``step()`` has a different contract:
it evaluates a closed-form schedule of the epoch counter); it needs ``observe`` fed by the training loop.
"""

from __future__ import annotations

import datetime
import math

from hwreshape.extras import needs_torch  # noqa: F401  # isort: skip
import torch

from aslr.core import ASLRSearch

__all__ = ["ASLR", "layer_param_groups"]

_BLOCK = 256  # steps of U(0, 1) draws generated per generator call


def _dist_world() -> tuple[bool, int]:
    """(is a multi-process torch.distributed group active, rank)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return True, dist.get_rank()
    return False, 0


def _write_lrs(groups, lrs) -> None:
    for group, lr in zip(groups, lrs):
        current = group.get("lr")
        if isinstance(current, torch.Tensor):  # capturable / fused optimisers keep lr as a tensor
            current.fill_(lr)
        else:
            group["lr"] = lr


class ASLR:
    """Adaptive Scheduler for Learning Rate (Khodamoradi 2021, Algorithm 2 + Eq 5.10) for a torch optimiser.

    Parameters
    ----------
    optimizer:
        a ``torch.optim.Optimizer`` (any object with non-empty ``param_groups``); its group learning rates are
        overwritten at construction, at every ``step()`` and at every ``observe()``.
    lr:
        the initial centre learning rate ``c`` (the single hyperparameter; finite, > 0).
    mode:
        ``"min"`` for a loss-like metric, ``"max"`` for an accuracy-like metric.
    generator:
        the ``torch.Generator`` (CPU) the draws come from; default: a new one seeded with
        ``torch.initial_seed()`` (does not consume the global RNG).
    sync_metric:
        under ``torch.distributed``: ``"mean"`` (all-reduce average of the ranks' metrics) or ``"rank0"``.
    sync_timeout:
        under ``torch.distributed``: seconds ``observe`` waits for the other ranks before it raises.
    tensor_lr:
        store each group's ``lr`` as a 0-d float64 tensor filled in place (for ``torch.compile(opt.step)``).
    preflight, preflight_action:
        a range-test result to check ``lr`` against (``"warn"`` or ``"raise"`` when outside), or None.

    Typical loop::

        sched = ASLR(opt, lr=0.05)
        for epoch in range(E):
            for x, y in train:
                loss_fn(model(x), y).backward(); opt.step(); opt.zero_grad(); sched.step()
            sched.observe(validation_loss())
    """

    def __init__(
        self,
        optimizer,
        lr,
        *,
        mode: str = "min",
        generator: torch.Generator | None = None,
        sync_metric: str = "mean",
        sync_timeout: float = 300.0,
        tensor_lr: bool = False,
        preflight=None,
        preflight_action: str = "warn",
    ) -> None:
        groups = getattr(optimizer, "param_groups", None)
        if groups is None:
            raise TypeError(
                f"ASLR: optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if len(groups) == 0:
            raise ValueError("ASLR: the optimizer has no param groups (nothing to schedule)")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"ASLR: generator must be a torch.Generator, got {type(generator).__name__}")
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"ASLR: generator must live on the CPU, got device {generator.device}")
        if sync_metric not in ("mean", "rank0"):
            raise ValueError(f"ASLR: sync_metric must be 'mean' or 'rank0', got {sync_metric!r}")
        if isinstance(sync_timeout, bool) or not (
            isinstance(sync_timeout, int | float) and math.isfinite(sync_timeout) and sync_timeout > 0
        ):
            raise ValueError(
                f"ASLR: sync_timeout must be a finite number of seconds > 0, got {sync_timeout!r}"
            )
        if not isinstance(tensor_lr, bool):
            raise TypeError(f"ASLR: tensor_lr must be True or False, got {tensor_lr!r}")
        self.optimizer = optimizer
        self.search = ASLRSearch(lr, mode=mode)
        if preflight is not None:
            from aslr.lr_finder import check_start_lr

            check_start_lr(lr, preflight, action=preflight_action)
        self.sync_metric = sync_metric
        self.sync_timeout = float(sync_timeout)
        if tensor_lr:
            self._make_tensor_lrs()
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(torch.initial_seed())
        self.generator = generator
        self._group = None
        distributed, _ = _dist_world()
        if distributed:
            import torch.distributed as dist

            # ASLR's own gloo group: its collectives never pair with the model's gradient all-reduce, and its
            # timeout turns an observe() called on some ranks only into a prompt error
            self._group = dist.new_group(
                backend="gloo", timeout=datetime.timedelta(seconds=self.sync_timeout)
            )
            self._broadcast_generator()
        self.num_steps = 0
        self._steps_since_observe = 0
        self._block: list[list[float]] | None = None
        self._block_pos = 0
        self._block_state = None
        self.c_history: list[float] = [self.search.c]
        self._refresh_interval()
        self._draw()

    def _make_tensor_lrs(self) -> None:
        # torch's Adam/AdamW reject a tensor lr with foreach=True unless capturable or fused: refuse before
        # touching the optimiser (torch would only fail at the first step)
        groups = self.optimizer.param_groups
        if type(self.optimizer).__name__ in ("Adam", "AdamW") and any(
            g.get("foreach") and not (g.get("fused") or g.get("capturable")) for g in groups
        ):
            raise ValueError(
                f"ASLR: tensor_lr=True with {type(self.optimizer).__name__}(foreach=True) is not supported by "
                "torch; pass capturable=True or fused=True, or foreach=False"
            )
        for group in groups:
            if not isinstance(group.get("lr"), torch.Tensor):
                group["lr"] = torch.tensor(float(group.get("lr", self.search.c)), dtype=torch.float64)

    # -- Eq 5.10 ------------------------------------------------------------------------------------------
    def _refresh_interval(self) -> None:
        self._s = self.search.s
        self._low = self.search.bounds[0]

    def _next_uniforms(self) -> list[float]:
        # U(0, 1) rows are drawn in blocks of _BLOCK steps (one generator call per block keeps step() at a few
        # microseconds); the generator state *before* the block plus the position in it is the resumable state.
        if self._block is None or self._block_pos >= len(self._block):
            self._block_state = self.generator.get_state()
            n = len(self.optimizer.param_groups)
            self._block = torch.rand((_BLOCK, n), generator=self.generator, dtype=torch.float64).tolist()
            self._block_pos = 0
        row = self._block[self._block_pos]
        self._block_pos += 1
        return row

    def _draw(self) -> None:
        low, s = self._low, self._s
        lrs = [low + s * u for u in self._next_uniforms()]
        _write_lrs(self.optimizer.param_groups, lrs)
        self._last_lr = lrs

    def step(self) -> None:
        """Draw new per-group learning rates ``c_u ~ U(c - s/2, c + s/2)`` (call after every optimiser step)."""
        if len(self.optimizer.param_groups) != len(self._last_lr):
            raise ValueError(
                f"ASLR.step: the optimizer now has {len(self.optimizer.param_groups)} param groups, "
                f"it had {len(self._last_lr)} (create the scheduler after add_param_group)"
            )
        self._draw()
        self.num_steps += 1
        self._steps_since_observe += 1

    # -- Algorithm 2 ----------------------------------------------------------------------------------------
    def _sync(self, value: float) -> float:
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64)
        try:
            if self.sync_metric == "mean":
                dist.all_reduce(t, op=dist.ReduceOp.SUM, group=self._group)
                t /= dist.get_world_size()
            else:
                dist.broadcast(t, src=0, group=self._group)
        except RuntimeError as exc:  # gloo timeout / peer gone (DistBackendError is a RuntimeError)
            raise RuntimeError(
                f"ASLR.observe on rank {dist.get_rank()}: the other ranks did not join the metric "
                f"{'all-reduce' if self.sync_metric == 'mean' else 'broadcast'} within sync_timeout="
                f"{self.sync_timeout:g} s. Under torch.distributed observe() must be called on every rank, once "
                f"per epoch (with sync_metric='rank0' the other ranks may pass any number). Cause: {exc}"
            ) from exc
        return float(t.item())

    def _broadcast_generator(self) -> None:
        import torch.distributed as dist

        state = self.generator.get_state()
        dist.broadcast(state, src=0, group=self._group)
        self.generator.set_state(state)

    def observe(self, metric) -> float:
        """Feed this epoch's validation metric (float or 0-d tensor); returns the new centre rate ``c``."""
        if self._steps_since_observe == 0:
            raise ValueError(
                "ASLR.observe: called without any step() since the last observe() (or since construction); "
                "call observe once per epoch, after that epoch's training steps"
            )
        if isinstance(metric, torch.Tensor):
            if metric.numel() != 1:
                raise ValueError(
                    f"ASLR.observe: metric must be a scalar, got a tensor of shape {tuple(metric.shape)}"
                )
            metric = metric.detach().item()
        try:
            value = float(metric)
        except (TypeError, ValueError):
            raise TypeError(
                f"ASLR.observe: metric must be a real number, got {type(metric).__name__}"
            ) from None
        distributed, _ = _dist_world()
        if distributed:
            value = self._sync(value)
        if not math.isfinite(value):
            raise ValueError(f"ASLR.observe: metric must be finite, got {value!r}")
        c = self.search.observe(value)
        self.c_history.append(c)
        self._steps_since_observe = 0
        self._refresh_interval()
        self._draw()
        return c

    # -- the LRScheduler-like surface -----------------------------------------------------------------------
    @property
    def c(self) -> float:
        """The current centre learning rate."""
        return self.search.c

    @property
    def s(self) -> float:
        """The current step size / width of the draw interval."""
        return self._s

    def get_last_lr(self) -> list[float]:
        """The learning rates last written into the param groups (one per group)."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        return {
            "search": self.search.state_dict(),
            # generator state before the current block of draws + rows used from it (see _next_uniforms)
            "generator": (
                self._block_state if self._block is not None else self.generator.get_state()
            ).clone(),
            "block_pos": self._block_pos if self._block is not None else 0,
            "last_lr": list(self._last_lr),
            "num_steps": self.num_steps,
            "steps_since_observe": self._steps_since_observe,
            "c_history": list(self.c_history),
            "sync_metric": self.sync_metric,
            "optimizer_class": f"{type(self.optimizer).__module__}.{type(self.optimizer).__qualname__}",
        }

    def load_state_dict(self, state: dict) -> None:
        missing = {"search", "generator", "last_lr", "num_steps", "steps_since_observe"} - set(state)
        if missing:
            raise ValueError(f"ASLR.load_state_dict: missing keys {sorted(missing)}")
        mine = f"{type(self.optimizer).__module__}.{type(self.optimizer).__qualname__}"
        if "optimizer_class" in state and state["optimizer_class"] != mine:
            raise ValueError(
                f"ASLR.load_state_dict: the state was saved for a {state['optimizer_class']} optimizer, this "
                f"scheduler drives a {mine}"
            )
        if len(state["last_lr"]) != len(self.optimizer.param_groups):
            raise ValueError(
                f"ASLR.load_state_dict: state has {len(state['last_lr'])} learning rates, "
                f"the optimizer has {len(self.optimizer.param_groups)} param groups"
            )
        self.search.load_state_dict(state["search"])
        self.generator.set_state(state["generator"].clone())
        self._block, self._block_pos, self._block_state = None, 0, None
        pos = int(state.get("block_pos", 0))
        if not 0 <= pos <= _BLOCK:
            raise ValueError(f"ASLR.load_state_dict: block_pos must be in [0, {_BLOCK}], got {pos}")
        if pos > 0:  # regenerate the block the checkpoint was in and skip the rows already used
            self._next_uniforms()
            self._block_pos = pos
        self.num_steps = int(state["num_steps"])
        self._steps_since_observe = int(state["steps_since_observe"])
        self.c_history = list(state.get("c_history", [self.search.c]))
        self.sync_metric = state.get("sync_metric", self.sync_metric)
        self._refresh_interval()
        self._last_lr = [float(v) for v in state["last_lr"]]
        _write_lrs(self.optimizer.param_groups, self._last_lr)

    def __repr__(self) -> str:
        return f"ASLR(c={self.c:g}, s={self._s:g}, groups={len(self._last_lr)}, steps={self.num_steps})"


def layer_param_groups(model: torch.nn.Module, **opt_kwargs) -> list[dict]:
    """One param group per layer (module that directly owns parameters): the dissertation's per-layer rates.

    Each group is ``{"params": [...], "name": <module path>, **opt_kwargs}``; a parameter shared by several
    modules goes to the first owner only.  Pass the result to any torch optimiser::

        opt = torch.optim.SGD(layer_param_groups(model, momentum=0.9), lr=0.1)
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"layer_param_groups: model must be a torch.nn.Module, got {type(model).__name__}")
    for key in ("params", "name"):
        if key in opt_kwargs:
            raise ValueError(f"layer_param_groups: '{key}' is set per group, do not pass it as an option")
    groups: list[dict] = []
    seen: set[int] = set()
    for name, module in model.named_modules():
        params = []
        for p in module.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                params.append(p)
        if params:
            groups.append({"params": params, "name": name or type(model).__name__, **opt_kwargs})
    if not groups:
        raise ValueError(f"layer_param_groups: {type(model).__name__} has no parameters")
    return groups
