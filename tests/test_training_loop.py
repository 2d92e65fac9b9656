"""hwreshape.training.fit_epochs: the one epoch loop behind the torch recipes of every plugin."""

import pytest
import torch
from torch import nn

from hwreshape.training import fit_epochs


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 4, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def _parts(model, x, y):
    def batches(epoch):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        return [perm[i : i + 32] for i in range(0, len(x), 32)]

    def loss(idx):
        return nn.functional.cross_entropy(model(x[idx]), y[idx]), len(idx)

    def validate():
        with torch.no_grad():
            out = model(x)
        return {
            "val_loss": float(nn.functional.cross_entropy(out, y)),
            "val_acc": float((out.argmax(1) == y).float().mean()),
        }

    return batches, loss, validate


def test_trains_records_and_observes_the_monitor():
    from aslr.torch import ASLR, layer_param_groups

    torch.manual_seed(0)
    x, y = _problem()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.Adam(layer_param_groups(model), lr=0.05)
    sched = ASLR(opt, 0.05, generator=torch.Generator().manual_seed(1))
    observed = []
    orig = sched.observe
    sched.observe = lambda v: observed.append(v) or orig(v)
    recs = fit_epochs(model, opt, *_parts(model, x, y), epochs=6, scheduler=sched, monitor="val_loss")
    assert [r["epoch"] for r in recs] == list(range(6))
    assert observed == [r["val_loss"] for r in recs]
    assert recs[-1]["val_acc"] > 0.9 and recs[-1]["loss"] < recs[0]["loss"]
    assert set(recs[0]) >= {"epoch", "loss", "val_loss", "val_acc", "lr", "seconds"}


def test_select_best_restores_the_best_epoch_and_marks_it():
    torch.manual_seed(0)
    x, y = _problem()
    model = nn.Sequential(nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    snapshots = []
    recs = fit_epochs(
        model,
        opt,
        *_parts(model, x, y),
        epochs=5,
        select_best="val_loss",
        mode="min",
        on_epoch_end=lambda e, r: snapshots.append({k: v.clone() for k, v in model.state_dict().items()}),
    )
    best = min(range(5), key=lambda i: (recs[i]["val_loss"], i))
    assert [i for i, r in enumerate(recs) if r.get("selected")] == [best]
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshots[best][k])


def test_resume_hooks_and_early_stop():
    x, y = _problem()
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    recs = fit_epochs(
        model,
        opt,
        *_parts(model, x, y),
        epochs=10,
        start_epoch=3,
        on_epoch_start=lambda e: {"stage": f"s{e}"},
        on_epoch_end=lambda e, r: e == 4,
    )
    assert [(r["epoch"], r["stage"]) for r in recs] == [(3, "s3"), (4, "s4")]


def test_bad_input_is_named():
    x, y = _problem()
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches, loss, validate = _parts(model, x, y)
    with pytest.raises(KeyError, match="lacks the monitor 'val_error'"):
        fit_epochs(model, opt, batches, loss, validate, 1, monitor="val_error")
    with pytest.raises(FloatingPointError, match="non-finite training loss at epoch 0"):
        fit_epochs(
            model, opt, batches, lambda b: (torch.tensor(float("nan"), requires_grad=True), 1), validate, 1
        )
    with pytest.raises(ValueError, match="mode must be 'max' or 'min'"):
        fit_epochs(model, opt, batches, loss, validate, 1, mode="up")
    with pytest.raises(TypeError, match="scheduler must have a step"):
        fit_epochs(model, opt, batches, loss, validate, 1, scheduler=object())
