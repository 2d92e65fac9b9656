"""Choosing ASLR's start value (Khodamoradi 2021, §5.3, Eq 5.9): boundaries and middle point of a range-test curve,
and the torch-lr-finder wrapper on real (float and Brevitas) models."""

import math

import numpy as np
import pytest
import torch

from aslr.lr_finder import lr_range_test, suggest_start_lr
from aslr.torch import layer_param_groups
from hwreshape.data import load_digits

torch.set_num_threads(1)


def _curve(lrs):
    # falls from 2.3 between 1e-3 and 1e-1 (minimum at 0.1), then diverges
    x = np.log10(lrs)
    return 2.3 - 2.0 / (1 + np.exp(-4 * (x + 2))) + np.where(x > -1, 30 * (x + 1) ** 2, 0.0)


def test_exp_sweep_boundaries_and_geometric_middle():
    lrs = np.logspace(-5, 0, 101)
    r = suggest_start_lr(lrs, _curve(lrs))
    assert r.high == pytest.approx(0.1, rel=0.13)  # grid point at the minimum
    # 10 % of the total fall (2.3 - 0.336 = 1.964): 2 * sigmoid(4(x+2)) = 0.1964 at x = -2.554; grid step 0.05
    assert abs(math.log10(r.low) - (-2 - math.log(2 / 0.1964 - 1) / 4)) <= 0.05
    assert r.suggestion == pytest.approx(math.sqrt(r.low * r.high))
    assert r.low < r.suggestion < r.high


def test_linear_sweep_uses_arithmetic_middle_and_cuts_diverged_tail():
    lrs = np.linspace(0.001, 1.0, 200)
    losses = _curve(lrs)
    losses[150:] = np.inf  # torch-lr-finder stops/explodes after divergence
    r = suggest_start_lr(lrs, losses, step_mode="linear")
    assert r.suggestion == pytest.approx(0.5 * (r.low + r.high))
    assert r.lrs.size == 150


def test_bad_curves_raise():
    lrs = np.logspace(-4, 0, 20)
    with pytest.raises(ValueError, match="never falls"):
        suggest_start_lr(lrs, np.linspace(1, 3, 20))
    with pytest.raises(ValueError, match="increasing"):
        suggest_start_lr(lrs[::-1], _curve(lrs))
    with pytest.raises(ValueError, match="equal length"):
        suggest_start_lr(lrs, _curve(lrs)[:-1])
    with pytest.raises(ValueError, match="at least 3"):
        suggest_start_lr(lrs[:2], _curve(lrs[:2]))
    with pytest.raises(ValueError, match="step_mode"):
        suggest_start_lr(lrs, _curve(lrs), step_mode="log")
    with pytest.raises(ValueError, match="drop"):
        suggest_start_lr(lrs, _curve(lrs), drop=1.5)


@pytest.fixture(scope="module")
def loader():
    x, y = load_digits()
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x[:1024]), torch.from_numpy(y[:1024]))
    return torch.utils.data.DataLoader(
        ds, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )


@pytest.mark.parametrize("quantized", [False, True])
def test_range_test_on_digits_leaves_model_untouched(loader, quantized):
    torch.manual_seed(0)
    if quantized:
        from brevitas.nn import QuantLinear, QuantReLU

        model = torch.nn.Sequential(
            torch.nn.Flatten(),
            QuantLinear(64, 32, bias=True, weight_bit_width=4),
            QuantReLU(bit_width=4),
            QuantLinear(32, 10, bias=True, weight_bit_width=4),
        )
    else:
        model = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        )
    opt = torch.optim.SGD(layer_param_groups(model, momentum=0.9), lr=1e-3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    r = lr_range_test(
        model, opt, torch.nn.CrossEntropyLoss(), loader, start_lr=1e-4, end_lr=10.0, num_iter=60
    )
    assert 1e-4 <= r.low < r.suggestion < r.high <= 10.0
    assert r.losses.min() < r.losses[0]
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)
    assert all(g["lr"] == 1e-3 for g in opt.param_groups) and not opt.state


def test_range_test_bad_input(loader):
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="start_lr"):
        lr_range_test(model, opt, torch.nn.CrossEntropyLoss(), loader, start_lr=0.0)
    with pytest.raises(ValueError, match="must be <"):
        lr_range_test(model, opt, torch.nn.CrossEntropyLoss(), loader, start_lr=1.0, end_lr=0.1)
    with pytest.raises(TypeError, match="optimizer"):
        lr_range_test(model, None, torch.nn.CrossEntropyLoss(), loader)
    other = torch.optim.SGD(torch.nn.Linear(3, 3).parameters(), lr=0.1)
    with pytest.raises(ValueError, match="not parameters of the model"):
        lr_range_test(model, other, torch.nn.CrossEntropyLoss(), loader)
