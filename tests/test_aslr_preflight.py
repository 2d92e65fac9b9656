"""The opt-in ASLR pre-flight check (Khodamoradi 2021, §5.3, Eq 5.9): a start rate outside the range test's
boundaries warns (or raises, if asked); inside it is silent.  Unit rules here plus the torch door end to end on a
real range test; the Keras and Lightning doors are tested in their own files (their range tests run on the hosts).
"""

import warnings

import numpy as np
import pytest
import torch

from aslr.lr_finder import RangeTestResult, StartLRWarning, check_start_lr, lr_range_test, suggest_start_lr
from aslr.torch import ASLR, layer_param_groups
from hwreshape.data import load_digits

torch.set_num_threads(1)


def _result(low=0.01, high=0.2):
    lrs = np.geomspace(1e-4, 1.0, 41)
    x = np.log10(lrs)
    # falls between low and high, minimum at high, diverges above
    losses = 2.3 - 2.0 * np.clip((x - np.log10(low)) / (np.log10(high) - np.log10(low)), 0, 1)
    losses = losses + np.where(lrs > high, 10 * (x - np.log10(high)), 0.0)
    return suggest_start_lr(lrs, losses, drop=0.05)


def test_check_start_lr_inside_is_silent_outside_warns_or_raises():
    r = _result()
    assert r.low < r.high
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_start_lr(r.suggestion, r) is True
        assert check_start_lr(r.low, r, action="raise") is True  # the boundaries themselves are inside
        assert check_start_lr(r.high, r, action="raise") is True
    with pytest.warns(StartLRWarning, match=r"above the range test's reasonable range \[.*\]"):
        assert check_start_lr(10 * r.high, r) is False
    with pytest.warns(StartLRWarning, match="below"):
        assert check_start_lr(r.low / 10, r) is False
    with pytest.raises(ValueError, match=r"start lr=.* is above .*middle point"):
        check_start_lr(10 * r.high, r, action="raise")


def test_check_start_lr_bad_input():
    r = _result()
    with pytest.raises(ValueError, match="preflight_action"):
        check_start_lr(0.05, r, action="ignore")
    with pytest.raises(TypeError, match="RangeTestResult"):
        check_start_lr(0.05, (0.01, 0.2))
    with pytest.raises(ValueError, match="lr must be > 0"):
        check_start_lr(-1.0, r)


def test_torch_door_checks_at_construction_before_touching_the_optimizer():
    r = _result()
    net = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(net.parameters(), lr=0.123)
    with pytest.raises(ValueError, match="above"):
        ASLR(opt, 10 * r.high, preflight=r, preflight_action="raise")
    assert opt.param_groups[0]["lr"] == 0.123
    with pytest.warns(StartLRWarning):
        sched = ASLR(opt, r.low / 10, preflight=r)
    assert sched.c == r.low / 10  # a warning only: Algorithm 2 runs unchanged from the given start
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ASLR(opt, r.suggestion, preflight=r, preflight_action="raise")
    with pytest.raises(TypeError, match="RangeTestResult"):
        ASLR(opt, 0.05, preflight={"low": 0.01})


def test_torch_range_test_then_preflight_on_digits():
    x, y = load_digits()
    ds = torch.utils.data.TensorDataset(torch.from_numpy(x[:1024]), torch.from_numpy(y[:1024]))
    loader = torch.utils.data.DataLoader(
        ds, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
    )
    opt = torch.optim.SGD(layer_param_groups(model, momentum=0.9), lr=1e-3)
    r = lr_range_test(
        model, opt, torch.nn.CrossEntropyLoss(), loader, start_lr=1e-4, end_lr=10.0, num_iter=60
    )
    assert isinstance(r, RangeTestResult)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ASLR(opt, r.suggestion, preflight=r, preflight_action="raise")
    with pytest.raises(ValueError, match="above"):
        ASLR(opt, 10 * r.high, preflight=r, preflight_action="raise")
