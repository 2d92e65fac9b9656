"""ASLR for PyTorch (and Brevitas) optimisers: Algorithm 2 per epoch, Eq 5.10 per step (seed 002, section 5.3).

``ASLR(optimizer, lr)`` is a small stateful object in the style of ``torch.optim.lr_scheduler``:

* ``step()`` once per optimiser step draws a fresh learning rate for **every param group** from
  ``U(c - s/2, c + s/2)`` with ``s = 10**floor(log10(c))`` (Eq 5.10).  With one param group per layer
  (:func:`layer_param_groups`) these are the seed's per-batch, per-layer learning rates ``c_u``.
* ``observe(metric)`` once per epoch runs one iteration of Algorithm 2 (:class:`aslr.core.ASLRSearch`) on the
  validation metric, moves the centre ``c`` and immediately draws the rates of the next step from the new
  interval.
* randomness comes only from an explicit ``torch.Generator`` (CPU, float64 draws); ``state_dict()`` stores it,
  so a resumed run repeats the identical trajectory, draws included.
* under ``torch.distributed`` (initialised, world size > 1) the generator state is broadcast from rank 0 at
  construction and the metric handed to ``observe`` is averaged over ranks (``sync_metric="mean"``; or
  ``"rank0"`` to use rank 0's value): every rank then draws identical learning rates with no communication
  per step.

It does not subclass ``torch.optim.lr_scheduler.LRScheduler`` (whose ``step()`` has a different contract:
it evaluates a closed-form schedule of the epoch counter); it needs ``observe`` fed by the training loop.
"""

from __future__ import annotations

import math

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


def _comm_device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _write_lrs(groups, lrs) -> None:
    for group, lr in zip(groups, lrs):
        current = group.get("lr")
        if isinstance(current, torch.Tensor):  # capturable / fused optimisers keep lr as a tensor
            current.fill_(lr)
        else:
            group["lr"] = lr


class ASLR:
    """Adaptive Scheduler for Learning Rate (seed 002, Algorithm 2 + Eq 5.10) for a torch optimiser.

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
        self.optimizer = optimizer
        self.search = ASLRSearch(lr, mode=mode)
        self.sync_metric = sync_metric
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(torch.initial_seed())
        self.generator = generator
        distributed, _ = _dist_world()
        if distributed:
            self._broadcast_generator()
        self.num_steps = 0
        self._steps_since_observe = 0
        self._block: list[list[float]] | None = None
        self._block_pos = 0
        self._block_state = None
        self.c_history: list[float] = [self.search.c]
        self._refresh_interval()
        self._draw()

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

        t = torch.tensor([value], dtype=torch.float64, device=_comm_device())
        if self.sync_metric == "mean":
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
            t /= dist.get_world_size()
        else:
            dist.broadcast(t, src=0)
        return float(t.item())

    def _broadcast_generator(self) -> None:
        import torch.distributed as dist

        state = self.generator.get_state().to(_comm_device())
        dist.broadcast(state, src=0)
        self.generator.set_state(state.cpu())

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
        }

    def load_state_dict(self, state: dict) -> None:
        missing = {"search", "generator", "last_lr", "num_steps", "steps_since_observe"} - set(state)
        if missing:
            raise ValueError(f"ASLR.load_state_dict: missing keys {sorted(missing)}")
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
    """One param group per layer (module that directly owns parameters): the seed's per-layer rates.

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
