"""bm_ops.training.recipes: layer-wise conversion from the input side with fine-tuning (seed, Training of BM Network)."""

import csv
import json
import math

import pytest
import torch
from torch import nn

from bm_ops.torch import BMConv2d
from bm_ops.training.recipes import (
    as_loader,
    convert_and_finetune,
    evaluate,
    execution_order,
    param_groups,
    recalibrate_bn,
    train_epochs,
)
from hwreshape.data import load_digits, split


class Net(nn.Module):
    # registration order (head, conv2, conv1) differs from execution order (conv1, conv2, head)
    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8 * 4 * 4, 10)
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.conv1(x))
        x = torch.relu(self.conv2(x))
        return self.head(x.flatten(1))


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()
    xtr, ytr, xte, yte = split(x, y, 800, seed=0)
    return (torch.tensor(xtr), torch.tensor(ytr)), (torch.tensor(xte[:300]), torch.tensor(yte[:300]))


def test_execution_order_is_forward_order():
    assert execution_order(Net(), torch.zeros(1, 1, 8, 8)) == ["conv1", "conv2", "head"]
    assert execution_order(Net(), torch.zeros(1, 1, 8, 8), include_linear=False) == ["conv1", "conv2"]


@pytest.mark.slow
def test_convert_and_finetune_on_digits(digits, tmp_path):
    torch.manual_seed(0)
    train, val = digits
    model = Net()
    from bm_ops.training.recipes import as_loader

    tl, vl = as_loader(train, 32, shuffle=True), as_loader(val, 256)
    recs = train_epochs(model, tl, vl, 4, lr=3e-3, scheduler="none")
    acc_float = recs[-1]["val_acc"]
    assert acc_float > 0.9
    model, log = convert_and_finetune(
        model,
        train,
        val,
        epochs_per_step=2,
        batch_size=32,
        lr=1e-3,
        log_path=tmp_path / "log.csv",
        progress=False,
    )
    # the seed converts the convolutions (include_linear=False is the default), input side first
    assert [r["layer"] for r in log] == ["", "conv1", "conv2"]
    assert [r["step"] for r in log] == [0, 1, 2]
    assert log[0]["acc_converted"] == pytest.approx(acc_float)
    assert (
        isinstance(model.conv1, BMConv2d)
        and isinstance(model.conv2, BMConv2d)
        and isinstance(model.head, nn.Linear)
    )
    acc_bm, _ = evaluate(model, as_loader(val, 256))
    assert acc_bm == pytest.approx(log[-1]["acc_finetuned"])
    assert acc_bm > 0.7, log
    # converting conv2 costs accuracy (max of products instead of their sum); fine-tuning wins it back
    assert log[2]["acc_finetuned"] > log[2]["acc_converted"] + 0.05, log
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert len(rows) == 3 and rows[1]["layer"] == "conv1"
    # -inf log-weights stay -inf (no weight decay on v), nothing became NaN/+inf
    for m in (model.conv1, model.conv2):
        for v in (m.v_pos, m.v_neg):
            assert not torch.isnan(v).any() and not (v == math.inf).any()


def test_aslr_scheduler_and_json_log(digits, tmp_path):
    import aslr.torch  # noqa: F401  (same repository; scheduler="aslr" requires it)

    train, val = digits
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10))
    model, log = convert_and_finetune(
        model,
        (train[0][:256], train[1][:256]),
        val,
        names=["0"],
        epochs_per_step=1,
        scheduler="aslr",
        weight_decay=1e-3,
        log_path=tmp_path / "log.json",
        progress=False,
    )
    assert isinstance(model[0], BMConv2d) and isinstance(model[3], nn.Linear)
    data = json.loads((tmp_path / "log.json").read_text())
    assert [r["layer"] for r in data] == ["", "0"]
    assert not torch.isnan(model[0].v_pos).any() and not (model[0].v_pos == math.inf).any()


def test_param_groups_exclude_log_weights_from_decay():
    m = nn.Sequential(BMConv2d(1, 2, 3), nn.Conv2d(2, 2, 1))
    groups = param_groups(m, weight_decay=0.1)
    bm_ids = {id(m[0].v_pos), id(m[0].v_neg)}
    assert {id(p) for p in groups[1]["params"]} == bm_ids and groups[1]["weight_decay"] == 0.0
    assert bm_ids.isdisjoint({id(p) for p in groups[0]["params"]}) and groups[0]["weight_decay"] == 0.1


def test_recipe_bad_input(digits):
    train, val = digits
    with pytest.raises(ValueError, match="no submodule"):
        convert_and_finetune(Net(), train, val, names=["conv9"], progress=False)
    with pytest.raises(TypeError, match="DataLoader"):
        convert_and_finetune(Net(), "data", val, progress=False)
    with pytest.raises(ValueError, match="samples"):
        convert_and_finetune(Net(), (train[0], train[1][:10]), val, progress=False)
    with pytest.raises(ValueError, match="scheduler"):
        convert_and_finetune(Net(), train, val, scheduler="cosine", progress=False)
    with pytest.raises(ValueError, match="final_epochs"):
        convert_and_finetune(Net(), train, val, final_epochs=-1, progress=False)
    with pytest.raises(ValueError, match="final_lr"):
        convert_and_finetune(Net(), train, val, final_epochs=1, final_lr=float("nan"), progress=False)
    with pytest.raises(ValueError, match="max_batches"):
        recalibrate_bn(nn.Sequential(nn.BatchNorm2d(1)), as_loader(train, 32), max_batches=0)


def test_recalibrate_bn_gives_the_data_statistics(digits):
    """After recalibration a BatchNorm's running stats are the per-batch statistics averaged over the batches."""
    train, _ = digits
    torch.manual_seed(0)
    conv = BMConv2d(1, 3, 3, padding=1)
    model = nn.Sequential(conv, nn.BatchNorm2d(3), nn.ReLU())
    bn = model[1]
    bn.running_mean.fill_(5.0)
    bn.running_var.fill_(7.0)
    bn.momentum = 0.3
    loader = as_loader((train[0][:96], train[1][:96]), 32)
    model.eval()
    assert recalibrate_bn(model, loader, max_batches=2) == 1
    assert not model.training and bn.momentum == 0.3  # mode and momentum restored
    with torch.no_grad():
        feats = [conv(x) for x, _ in list(loader)[:2]]
    mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-6)
    assert int(bn.num_batches_tracked) == 2
    assert recalibrate_bn(nn.Sequential(nn.Conv2d(1, 1, 1)), loader) == 0  # nothing to do without BatchNorm


def test_recipe_recalibration_and_final_epochs_are_logged(digits):
    train, val = digits
    torch.manual_seed(2)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10)
    )
    train_epochs(model, as_loader(train, 32, shuffle=True), as_loader(val, 256), 2, lr=3e-3, scheduler="none")
    model, log = convert_and_finetune(
        model,
        train,
        val,
        epochs_per_step=1,
        final_epochs=3,
        final_lr=5e-4,
        scheduler="none",
        progress=False,
        restore_best=True,
    )
    assert [r["layer"] for r in log] == ["", "0", "(final)"]
    assert [r["step"] for r in log] == [0, 1, 2]
    # the BatchNorm statistics of the float network do not fit the BM layer; recalibrating them helps
    assert log[1]["acc_recalibrated"] > log[1]["acc_converted"], log
    acc, _ = evaluate(model, as_loader(val, 256))
    assert acc == pytest.approx(log[-1]["acc_finetuned"])
    assert log[2]["acc_converted"] == pytest.approx(log[1]["acc_finetuned"])


def test_train_epochs_restore_best_keeps_the_best_validation_epoch(digits):
    train, val = digits
    torch.manual_seed(3)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10)
    )
    tl, vl = as_loader(train, 32, shuffle=True), as_loader(val, 256)
    # Adam at 0.1 overshoots: the last epochs are worse than the best one (seeded)
    recs = train_epochs(model, tl, vl, 6, lr=0.1, scheduler="none", restore_best=True)
    accs = [r["val_acc"] for r in recs]
    best = accs.index(max(accs))
    assert best < len(accs) - 1 and accs[-1] < accs[best], accs
    assert [i for i, r in enumerate(recs) if r.get("selected")] == [best]
    assert evaluate(model, vl)[0] == pytest.approx(accs[best])
    plain = train_epochs(
        nn.Linear(64, 10),
        as_loader((train[0].flatten(1), train[1]), 32),
        as_loader((val[0].flatten(1), val[1]), 256),
        1,
        scheduler="none",
    )
    assert "selected" not in plain[0]


def test_authors_semantics_options_let_signs_change(digits):
    from bm_ops.functional import AUTHORS_INPUT_FLOOR, AUTHORS_WEIGHT_FLOOR

    train, val = digits
    torch.manual_seed(2)
    float_model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 10))
    w = float_model[0].weight.detach().clone()
    model, log = convert_and_finetune(
        float_model,
        (train[0][:256], train[1][:256]),
        val,
        names=["0"],
        epochs_per_step=2,
        lr=3e-2,
        scheduler="none",
        progress=False,
        weight_floor=AUTHORS_WEIGHT_FLOOR,
        input_floor=AUTHORS_INPUT_FLOOR,
    )
    bm = model[0]
    assert isinstance(bm, BMConv2d) and bm.input_floor == AUTHORS_INPUT_FLOOR
    assert torch.isfinite(bm.v_pos).all() and torch.isfinite(bm.v_neg).all()  # no frozen -inf taps
    assert (bm.v_pos.detach() >= math.log(AUTHORS_WEIGHT_FLOOR) - 1).any() and w.shape == bm.v_pos.shape
    assert log[-1]["acc_finetuned"] > 0.5


def test_weight_floor_gives_gradient_where_the_paper_rule_freezes():
    from bm_ops.torch import from_conv

    conv = nn.Conv2d(2, 2, 3, padding=1)
    with torch.no_grad():
        conv.weight[0] = (
            -conv.weight[0].abs() - 0.01
        )  # filter 0: every weight negative, so v+ has no real tap
    x = torch.randn(2, 2, 5, 5)
    grads = {}
    for floor in (None, 1e-6):
        bm = from_conv(conv, weight_floor=floor)
        bm(x).square().sum().backward()
        grads[floor] = bm.v_pos.grad[0]
    assert (grads[None] == 0).all()  # paper: v+ = -inf, frozen
    assert (
        grads[1e-6] != 0
    ).any()  # authors: v+ = ln 1e-6 finite, the arg-max tap learns (the sign can flip)
