"""The paper's training method for BM networks as a recipe: layer-wise conversion from the input side + fine-tuning.

Limonova et al., *Training of BM Network*:

1. train a standard network (done by the caller, or :func:`train_epochs`);
2. for each convolutional layer, replace it by the BM layer with ``v^+ = ln|w|`` (w > 0), ``v^- = ln|w|`` (w < 0);
3. train the network further after the conversion of each layer, with the same method as in 1.

:func:`convert_and_finetune` runs 2–3 in forward-execution order (found with forward hooks on one batch, so the
"input side first" order does not depend on attribute order), evaluates accuracy right after each conversion and
after its fine-tuning, shows a progress bar and writes a CSV/JSON log. When the ``aslr`` package is importable it
drives the learning rate (``aslr.torch.ASLR``: ``step()`` per optimiser step, ``observe(val_loss)`` per epoch);
otherwise the learning rate is constant. ``v_pos``/``v_neg`` are excluded from weight decay (see
``bm_ops.torch``: weight decay would turn ``-inf`` into ``+inf``).
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bm_ops.torch import BMConv2d, BMLinear, convert_layers

__all__ = [
    "convert_and_finetune",
    "train_epochs",
    "evaluate",
    "execution_order",
    "param_groups",
    "as_loader",
    "recalibrate_bn",
]


def as_loader(data, batch_size: int = 64, shuffle: bool = False, seed: int = 0):
    """A ``DataLoader`` as is, or ``(x, y)`` arrays/tensors wrapped in one (seeded shuffling)."""
    if isinstance(data, torch.utils.data.DataLoader):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (torch.as_tensor(np.asarray(t)) if not isinstance(t, torch.Tensor) else t for t in data)
        if len(x) != len(y):
            raise ValueError(f"as_loader: x has {len(x)} samples but y has {len(y)}")
        g = torch.Generator().manual_seed(seed)
        ds = torch.utils.data.TensorDataset(x.float(), y.long())
        return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=g)
    raise TypeError(f"expected a DataLoader or an (x, y) pair, got {type(data).__name__}")


def param_groups(model: nn.Module, weight_decay: float = 0.0) -> list[dict]:
    """Two groups: log-domain BM weights (no weight decay) and everything else (``weight_decay``)."""
    bm, other = [], []
    for m in model.modules():
        for name, p in m.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (bm if isinstance(m, (BMConv2d, BMLinear)) and name in ("v_pos", "v_neg") else other).append(p)
    groups = [{"params": other, "weight_decay": weight_decay}]
    if bm:
        groups.append({"params": bm, "weight_decay": 0.0})
    return groups


@torch.no_grad()
def evaluate(model: nn.Module, loader, loss_fn=None) -> tuple[float, float]:
    """``(accuracy, mean loss)`` of a classifier over ``loader`` in eval mode."""
    loss_fn = loss_fn or nn.CrossEntropyLoss(reduction="sum")
    was = model.training
    model.eval()
    correct = total = 0
    loss = 0.0
    for x, y in loader:
        out = model(x)
        loss += float(loss_fn(out, y))
        correct += int((out.argmax(1) == y).sum())
        total += len(y)
    model.train(was)
    if total == 0:
        raise ValueError("evaluate: empty loader")
    return correct / total, loss / total


def _make_scheduler(opt, lr, scheduler, seed):
    if scheduler == "none":
        return None
    try:
        from aslr.torch import ASLR
    except ImportError:
        if scheduler == "aslr":
            raise
        return None
    return ASLR(opt, lr, mode="min", generator=torch.Generator().manual_seed(seed))


def train_epochs(
    model: nn.Module,
    train,
    val,
    epochs: int,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    scheduler: str = "auto",
    seed: int = 0,
    progress=None,
    desc: str = "train",
    restore_best: bool = False,
) -> list[dict]:
    """Adam training for ``epochs`` epochs (ASLR per step/epoch when available); returns per-epoch records.

    ``restore_best``: end with the weights (and BatchNorm statistics) of the epoch with the best validation
    accuracy, the first one if tied (checkpoint selection); its record gets ``"selected": True``.
    """
    if scheduler not in ("auto", "aslr", "none"):
        raise ValueError(f"scheduler must be 'auto', 'aslr' or 'none', got {scheduler!r}")
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    from hwreshape.training import fit_epochs

    opt = torch.optim.Adam(param_groups(model, weight_decay), lr=lr)
    sched = _make_scheduler(opt, lr, scheduler, seed)
    loss_fn = nn.CrossEntropyLoss()
    torch.manual_seed(seed)

    def batches(_epoch):
        for batch in train:
            yield batch
            if progress is not None:
                progress.update(1)

    def validate():
        acc, vloss = evaluate(model, val)
        return {"val_acc": acc, "val_loss": vloss}

    return fit_epochs(
        model,
        opt,
        batches,
        lambda b: (loss_fn(model(b[0]), b[1]), len(b[1])),
        validate,
        epochs,
        scheduler=sched,
        monitor="val_loss",
        select_best="val_acc" if restore_best else None,
        mode="max",
        on_epoch_start=lambda _epoch: {"phase": desc},
        desc=desc,
    )


@torch.no_grad()
def recalibrate_bn(model: nn.Module, loader, max_batches: int | None = 50) -> int:
    """Re-estimate the running mean/variance of every BatchNorm layer on ``loader`` (no parameter changes).

    A converted BM layer computes a different function from the convolution it replaces (a maximum of products
    instead of their sum), so the statistics the following BatchNorm layers collected on the float network no
    longer describe their inputs. Resetting them and averaging over ``max_batches`` training batches (cumulative
    average, ``momentum=None``, train-mode forward passes without gradients) gives fine-tuning a calibrated start.
    This step is ours, not the paper's (the paper goes straight to fine-tuning, during which BatchNorm re-adapts
    with its running-average momentum). Returns the number of BatchNorm layers recalibrated.
    """
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"recalibrate_bn: max_batches must be >= 1 or None, got {max_batches}")
    bns = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not bns:
        return 0
    momenta = [m.momentum for m in bns]
    was = model.training
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    try:
        for i, (x, _) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            model(x)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.train(was)
    return len(bns)


def execution_order(model: nn.Module, example: torch.Tensor, include_linear: bool = True) -> list[str]:
    """Names of ``nn.Conv2d`` (and ``nn.Linear``) submodules in the order a forward pass first calls them."""
    kinds = (nn.Conv2d, nn.Linear) if include_linear else (nn.Conv2d,)
    order: list[str] = []
    hooks = []
    for name, m in model.named_modules():
        if name and isinstance(m, kinds):
            hooks.append(
                m.register_forward_hook(
                    lambda mod, i, o, name=name: order.append(name) if name not in order else None
                )
            )
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return order


def convert_and_finetune(
    model: nn.Module,
    train,
    val,
    *,
    names=None,
    include_linear: bool = False,
    epochs_per_step: int = 1,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    scheduler: str = "auto",
    batch_size: int = 64,
    seed: int = 0,
    log_path: str | Path | None = None,
    progress: bool = True,
    backend: str = "auto",
    bn_recalibration: bool = True,
    final_epochs: int = 0,
    final_lr: float | None = None,
    restore_best: bool = False,
    weight_floor: float | None = None,
    input_floor: float = 0.0,
) -> tuple[nn.Module, list[dict]]:
    """Steps 2–3 of Limonova et al.: convert layer by layer from the input side, fine-tuning after each conversion.

    Args:
        model: a trained float model (modified in place).
        train, val: ``DataLoader`` or ``(x, y)`` pairs.
        names: layers to convert (default: every ``nn.Conv2d``, plus ``nn.Linear`` if ``include_linear``), in
            forward-execution order.
        epochs_per_step: fine-tuning epochs after each conversion (the paper's step 3).
        scheduler: ``"auto"`` (ASLR when ``aslr`` imports, else constant), ``"aslr"`` or ``"none"``.
        log_path: ``.csv`` or ``.json`` file for the per-step log (both written when the suffix is neither).
        bn_recalibration: re-estimate BatchNorm statistics right after each conversion (:func:`recalibrate_bn`,
            our addition to the paper's method; no effect on models without BatchNorm).
        final_epochs: after the last conversion, fine-tune the whole (fully converted) network this many more
            epochs (the paper's step 3 continued: "additional training of the network"), at ``final_lr``
            (default ``lr``).
        restore_best: the closing fine-tuning ends with the weights of its epoch with the best accuracy on
            ``val`` (checkpoint selection; then ``val`` must not be the data you report on).
        weight_floor, input_floor: the authors' training semantics (their published code, not the paper), off by
            default: ``weight_floor=1e-6`` converts with ``v^± = ln max(±w, 1e-6)`` (every log-weight finite, so
            a weight can change sign or leave zero during fine-tuning; the paper's ``-inf`` taps never get a
            gradient) and ``input_floor=0.1`` computes ``ln max(x^a, 0.1)`` in every converted layer
            (``bm_ops.functional.AUTHORS_WEIGHT_FLOOR`` / ``AUTHORS_INPUT_FLOOR``).

    Returns ``(model, log)``: one record per step with ``step``, ``layer``, ``acc_converted`` (right after the
    conversion, before anything else), ``acc_recalibrated`` (after the BatchNorm recalibration; equal to
    ``acc_converted`` when it is off), ``acc_finetuned``, ``val_loss``, ``seconds``; step 0 is the float model,
    and with ``final_epochs > 0`` a last record with ``layer="(final)"`` holds the closing fine-tuning.
    """
    if scheduler not in ("auto", "aslr", "none"):
        raise ValueError(f"scheduler must be 'auto', 'aslr' or 'none', got {scheduler!r}")
    if epochs_per_step < 0:
        raise ValueError(f"epochs_per_step must be >= 0, got {epochs_per_step}")
    if final_epochs < 0:
        raise ValueError(f"final_epochs must be >= 0, got {final_epochs}")
    if final_lr is not None and not (final_lr > 0 and np.isfinite(final_lr)):
        raise ValueError(f"final_lr must be a finite number > 0, got {final_lr!r}")
    train = as_loader(train, batch_size, shuffle=True, seed=seed)
    val = as_loader(val, 256)
    example = next(iter(val))[0][:2]
    order = execution_order(model, example, include_linear=True)
    kinds = (nn.Conv2d, nn.Linear) if include_linear else (nn.Conv2d,)
    mods = dict(model.named_modules())
    if names is None:
        names = [n for n in order if isinstance(mods[n], kinds)]
    else:
        unknown = [n for n in names if n not in mods]
        if unknown:
            raise ValueError(f"convert_and_finetune: no submodule named {unknown}")
        names = sorted(names, key=lambda n: order.index(n) if n in order else len(order))
    acc0, loss0 = evaluate(model, val)
    log = [
        {
            "step": 0,
            "layer": "",
            "acc_converted": acc0,
            "acc_recalibrated": acc0,
            "acc_finetuned": acc0,
            "val_loss": loss0,
            "seconds": 0.0,
        }
    ]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=(len(names) * epochs_per_step + final_epochs) * len(train),
            desc="bm convert+finetune",
            leave=False,
        )
    try:
        for k, name in enumerate(names, start=1):
            t0 = time.perf_counter()
            convert_layers(model, [name], backend=backend, weight_floor=weight_floor, input_floor=input_floor)
            acc_c, _ = evaluate(model, val)
            acc_r = acc_c
            if bn_recalibration and recalibrate_bn(model, train):
                acc_r, _ = evaluate(model, val)
            recs = train_epochs(
                model,
                train,
                val,
                epochs_per_step,
                lr=lr,
                weight_decay=weight_decay,
                scheduler=scheduler,
                seed=seed + k,
                progress=bar,
                desc=f"finetune {name}",
            )
            acc_f, loss_f = (recs[-1]["val_acc"], recs[-1]["val_loss"]) if recs else evaluate(model, val)
            log.append(
                {
                    "step": k,
                    "layer": name,
                    "acc_converted": acc_c,
                    "acc_recalibrated": acc_r,
                    "acc_finetuned": acc_f,
                    "val_loss": loss_f,
                    "seconds": time.perf_counter() - t0,
                }
            )
            if bar is not None:
                bar.set_postfix(layer=name, acc=f"{acc_f:.4f}")
        if final_epochs:
            t0 = time.perf_counter()
            acc_c, _ = evaluate(model, val)
            recs = train_epochs(
                model,
                train,
                val,
                final_epochs,
                lr=final_lr or lr,
                weight_decay=weight_decay,
                scheduler=scheduler,
                seed=seed + len(names) + 1,
                progress=bar,
                desc="finetune (final)",
                restore_best=restore_best,
            )
            last = next((r for r in recs if r.get("selected")), recs[-1])
            log.append(
                {
                    "step": len(names) + 1,
                    "layer": "(final)",
                    "acc_converted": acc_c,
                    "acc_recalibrated": acc_c,
                    "acc_finetuned": last["val_acc"],
                    "val_loss": last["val_loss"],
                    "seconds": time.perf_counter() - t0,
                }
            )
    finally:
        if bar is not None:
            bar.close()
    if log_path is not None:
        write_log(log, log_path)
    return model, log


def write_log(log: list[dict], path: str | Path) -> None:
    """Write the step log as CSV (``.csv``), JSON (``.json``) or both (any other suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix in (".json", ""):
        path.with_suffix(".json").write_text(json.dumps(log, indent=1))
    if suffix in (".csv", ""):
        with open(path.with_suffix(".csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(log[0]))
            w.writeheader()
            w.writerows(log)
    if suffix not in (".json", ".csv", ""):
        path.with_suffix(path.suffix + ".json").write_text(json.dumps(log, indent=1))
        with open(path.with_suffix(path.suffix + ".csv"), "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(log[0]))
            w.writeheader()
            w.writerows(log)
