"""aslr.torch.ASLR: Eq 5.10 draws (mean c, support [c - s/2, c + s/2]), per-layer groups, Algorithm 2 wiring,
resume with identical trajectory (draws included), bad input, training a Brevitas layer."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aslr.core import ASLRSearch
from aslr.torch import ASLR, layer_param_groups

torch.set_num_threads(1)


def _mlp(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)
    )


@settings(max_examples=12)
@given(
    mantissa=st.integers(1, 999),
    exponent=st.integers(-6, 0),
    n_groups=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
)
def test_eq_5_10_draws_have_mean_c_and_support_c_pm_s_half(mantissa, exponent, n_groups, seed):
    lr = float(f"{mantissa}e{exponent}")
    ref = ASLRSearch(lr)
    c, s = ref.c, ref.s
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(n_groups)]
    opt = torch.optim.SGD([{"params": [p]} for p in params], lr=1.0)
    sched = ASLR(opt, lr, generator=torch.Generator().manual_seed(seed))
    n_steps = 4000 // n_groups + 200
    draws = []
    for _ in range(n_steps):
        sched.step()
        lrs = sched.get_last_lr()
        assert lrs == [g["lr"] for g in opt.param_groups]
        draws.append(lrs)
    d = np.asarray(draws)
    lo, hi = c - s / 2, c + s / 2
    tol = 1e-12 * c
    assert d.min() >= lo - tol and d.max() <= hi + tol
    # the draws fill the whole interval, not a sub-interval
    assert d.min() < lo + 0.02 * s and d.max() > hi - 0.02 * s
    # mean c: standard error of the mean of U(lo, hi) is s / sqrt(12 n); allow 5 standard errors
    se = s / math.sqrt(12 * d.size)
    assert abs(d.mean() - c) < 5 * se
    # per-layer: groups get independent draws, not one shared value
    if n_groups > 1:
        assert not np.all(d[:, 0] == d[:, 1])


def test_observe_runs_algorithm_2_and_redraws_in_new_interval():
    model = _mlp()
    opt = torch.optim.SGD(layer_param_groups(model), lr=0.5)
    sched = ASLR(opt, 0.05, generator=torch.Generator().manual_seed(1))
    ref = ASLRSearch(0.05)
    for cost in [0.9, 0.8, 0.85, 0.86, 0.87, 0.5]:
        sched.step()
        assert sched.observe(torch.tensor(cost)) == ref.observe(cost)
        lo, hi = ref.bounds
        assert all(lo <= lr <= hi for lr in sched.get_last_lr())  # the next step already uses the new c
    assert sched.c_history == [0.05, 0.05, 0.05, 0.06, 0.05, 0.04, 0.04]


def test_layer_param_groups_one_group_per_parameter_owning_module():
    model = _mlp()
    shared = torch.nn.Linear(3, 3)
    model.add_module("tied_a", shared)
    model.add_module("tied_b", shared)  # the same module twice: its parameters must appear once
    groups = layer_param_groups(model, momentum=0.9, weight_decay=1e-4)
    names = [g["name"] for g in groups]
    assert names == ["0", "2", "4", "tied_a"]
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 1e-4 for g in groups)
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    opt = torch.optim.SGD(groups, lr=0.1)  # torch accepts the extra "name" key
    assert len(opt.param_groups) == 4 and opt.param_groups[0]["name"] == "0"


def test_layer_param_groups_bad_input():
    with pytest.raises(TypeError, match="torch.nn.Module"):
        layer_param_groups([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(ValueError, match="no parameters"):
        layer_param_groups(torch.nn.ReLU())
    with pytest.raises(ValueError, match="params"):
        layer_param_groups(_mlp(), params=[])


def _train(model, opt, sched, x, y, epochs, steps, val):
    """A tiny loop: `steps` SGD steps per epoch, then observe the loss on `val`."""
    for _ in range(epochs):
        for i in range(steps):
            xb, yb = x[i::steps], y[i::steps]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            sched.observe(torch.nn.functional.cross_entropy(model(val[0]), val[1]))


def test_resume_from_state_dict_gives_identical_trajectory_and_draws():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(96, 6, generator=g), torch.randint(0, 3, (96,), generator=g)
    val = (torch.randn(32, 6, generator=g), torch.randint(0, 3, (32,), generator=g))

    def fresh():
        model = _mlp(3)
        opt = torch.optim.SGD(layer_param_groups(model, momentum=0.9), lr=1.0)
        return model, opt, ASLR(opt, 0.5, generator=torch.Generator().manual_seed(7))

    m1, o1, s1 = fresh()
    _train(m1, o1, s1, x, y, epochs=6, steps=4, val=val)

    m2, o2, s2 = fresh()
    _train(m2, o2, s2, x, y, epochs=3, steps=4, val=val)
    ckpt = {"model": m2.state_dict(), "opt": o2.state_dict(), "sched": s2.state_dict()}
    ckpt = {
        k: {kk: (vv.clone() if torch.is_tensor(vv) else vv) for kk, vv in v.items()} for k, v in ckpt.items()
    }
    m3, o3, s3 = fresh()
    s3.generator.manual_seed(12345)  # must be overwritten by the checkpoint
    m3.load_state_dict(ckpt["model"])
    o3.load_state_dict(ckpt["opt"])
    s3.load_state_dict(ckpt["sched"])
    assert s3.get_last_lr() == s2.get_last_lr()
    _train(m3, o3, s3, x, y, epochs=3, steps=4, val=val)

    assert s3.c_history == s1.c_history
    assert s3.get_last_lr() == s1.get_last_lr()
    assert s3.num_steps == s1.num_steps == 24
    for p1, p3 in zip(m1.parameters(), m3.parameters()):
        assert torch.equal(p1, p3)


def test_default_generator_follows_torch_manual_seed():
    torch.manual_seed(5)
    a = ASLR(torch.optim.SGD(_mlp().parameters(), lr=1.0), 0.01)
    torch.manual_seed(5)
    b = ASLR(torch.optim.SGD(_mlp().parameters(), lr=1.0), 0.01)
    for _ in range(5):
        a.step(), b.step()
        assert a.get_last_lr() == b.get_last_lr()


def test_bad_input_raises_clear_errors():
    opt = torch.optim.SGD(_mlp().parameters(), lr=0.1)
    for bad in (0.0, -0.01, math.nan, math.inf):
        with pytest.raises(ValueError, match="lr"):
            ASLR(opt, bad)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        ASLR(object(), 0.1)
    opt_empty = torch.optim.SGD(_mlp().parameters(), lr=0.1)
    opt_empty.param_groups.clear()
    with pytest.raises(ValueError, match="no param groups"):
        ASLR(opt_empty, 0.1)
    with pytest.raises(TypeError, match="generator"):
        ASLR(opt, 0.1, generator=np.random.default_rng(0))
    with pytest.raises(ValueError, match="sync_metric"):
        ASLR(opt, 0.1, sync_metric="max")
    sched = ASLR(opt, 0.1)
    with pytest.raises(ValueError, match="without any step"):
        sched.observe(0.5)  # no step since construction
    sched.step()
    sched.observe(0.5)
    with pytest.raises(ValueError, match="without any step"):
        sched.observe(0.4)  # observe twice without a step
    sched.step()
    for bad in (math.nan, math.inf, torch.tensor(float("nan"))):
        with pytest.raises(ValueError, match="finite"):
            sched.observe(bad)
    with pytest.raises(ValueError, match="scalar"):
        sched.observe(torch.ones(3))
    with pytest.raises(TypeError, match="metric"):
        sched.observe("low")
    opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))]})
    with pytest.raises(ValueError, match="param groups"):
        sched.step()


def test_tensor_lr_of_capturable_optimizer_is_updated_in_place():
    model = _mlp()
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    sched = ASLR(opt, 0.003, generator=torch.Generator().manual_seed(0))
    assert isinstance(opt.param_groups[0]["lr"], torch.Tensor)
    assert opt.param_groups[0]["lr"].item() == pytest.approx(sched.get_last_lr()[0])


def test_brevitas_quantized_layers_train_with_per_layer_rates():
    from brevitas.nn import QuantLinear, QuantReLU

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        QuantLinear(6, 16, bias=True, weight_bit_width=4),
        QuantReLU(bit_width=4),
        QuantLinear(16, 3, bias=True, weight_bit_width=4),
    )
    groups = layer_param_groups(model, momentum=0.9)
    assert len(groups) >= 2  # both quantized linears (plus any learned quantizer scales) get their own rate
    opt = torch.optim.SGD(groups, lr=1.0)
    sched = ASLR(opt, 0.05, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(128, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    losses = []
    for _ in range(6):
        for i in range(4):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[i::4]), y[i::4])
            loss.backward()
            opt.step()
            sched.step()
        with torch.no_grad():
            losses.append(torch.nn.functional.cross_entropy(model(x), y).item())
        sched.observe(losses[-1])
    assert losses[-1] < losses[0]
    assert len(set(sched.get_last_lr())) == len(groups)


@pytest.mark.parametrize("at", [0, 1, 255, 256, 257, 600])
def test_resume_at_any_point_of_the_draw_blocks(at):
    def fresh():
        opt = torch.optim.SGD(layer_param_groups(_mlp()), lr=1.0)
        return ASLR(opt, 0.07, generator=torch.Generator().manual_seed(11))

    a = fresh()
    ref = [a.get_last_lr()]
    for i in range(800):
        a.step()
        if i == 400:
            a.observe(1.0)
        ref.append(a.get_last_lr())
    b = fresh()
    for i in range(at):
        b.step()
        if i == 400:
            b.observe(1.0)
    state = b.state_dict()
    c = fresh()
    c.load_state_dict(state)
    got = [c.get_last_lr()]
    for i in range(at, 800):
        c.step()
        if i == 400:
            c.observe(1.0)
        got.append(c.get_last_lr())
    assert got == ref[at:]


def _count_graphs(tensor_lr: bool, steps: int = 12) -> tuple[int, list[torch.Tensor]]:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(layer_param_groups(net, momentum=0.9), lr=0.1)
    sched = ASLR(opt, 0.05, generator=torch.Generator().manual_seed(0), tensor_lr=tensor_lr)
    x = torch.randn(steps, 2, 4, generator=torch.Generator().manual_seed(1))
    net(x[0]).sum().backward()
    opt.step()  # the first (state-creating) step eagerly, then the compiled one
    sched.step()
    step = torch.compile(opt.step, backend="aot_eager")
    for i in range(1, steps):
        opt.zero_grad()
        net(x[i]).sum().backward()
        step()
        sched.step()
    graphs = int(counters["stats"]["unique_graphs"])
    torch._dynamo.reset()
    return graphs, [p.detach().clone() for p in net.parameters()]


def test_tensor_lr_lets_a_compiled_optimizer_step_compile_once():
    # a float lr is a constant of the traced step: every new ASLR draw recompiles until dynamo's limit
    graphs_float, params_float = _count_graphs(False)
    graphs_tensor, params_tensor = _count_graphs(True)
    assert graphs_tensor == 1 < graphs_float
    # same draws, same updates (the compiled graph reads the same float64 value the float path uses)
    for a, b in zip(params_float, params_tensor):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_tensor_lr_eager_is_bit_identical_to_float_lr():
    runs = []
    for tensor_lr in (False, True):
        torch.manual_seed(0)
        net = torch.nn.Linear(5, 3)
        opt = torch.optim.SGD(layer_param_groups(net, momentum=0.9), lr=0.1)
        sched = ASLR(opt, 0.05, generator=torch.Generator().manual_seed(0), tensor_lr=tensor_lr)
        if tensor_lr:
            assert all(
                isinstance(g["lr"], torch.Tensor) and g["lr"].dtype == torch.float64 for g in opt.param_groups
            )
        g = torch.Generator().manual_seed(2)
        for _ in range(6):
            opt.zero_grad()
            net(torch.randn(4, 5, generator=g)).square().mean().backward()
            opt.step()
            sched.step()
        sched.observe(0.5)
        runs.append(
            ([float(gr["lr"]) for gr in opt.param_groups], [p.detach().clone() for p in net.parameters()])
        )
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))
    with pytest.raises(TypeError, match="tensor_lr"):
        ASLR(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.1), 0.05, tensor_lr="yes")


def test_load_state_dict_refuses_another_optimizer_class_start_lr_or_mode():
    net = torch.nn.Linear(3, 2)
    sgd = torch.optim.SGD(net.parameters(), lr=0.1)
    sched = ASLR(sgd, 0.05)
    net(torch.ones(1, 3)).sum().backward()
    sgd.step()
    sched.step()
    sched.observe(0.4)
    state = sched.state_dict()
    with pytest.raises(ValueError, match=r"saved for a torch\.optim\.sgd\.SGD optimizer.*Adam"):
        ASLR(torch.optim.Adam(net.parameters(), lr=0.1), 0.05).load_state_dict(state)
    with pytest.raises(ValueError, match="started at lr=0.05"):
        ASLR(torch.optim.SGD(net.parameters(), lr=0.1), 0.5).load_state_dict(state)
    with pytest.raises(ValueError, match="mode"):
        ASLR(torch.optim.SGD(net.parameters(), lr=0.1), 0.05, mode="max").load_state_dict(state)
    ok = ASLR(torch.optim.SGD(net.parameters(), lr=0.1), 0.05)
    ok.load_state_dict(state)
    assert ok.c_history == sched.c_history


def test_tensor_lr_refused_before_touching_an_optimizer_that_rejects_it():
    net = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(net.parameters(), lr=0.01, foreach=True)
    with pytest.raises(ValueError, match=r"tensor_lr=True with Adam\(foreach=True\)"):
        ASLR(opt, 0.001, tensor_lr=True)
    assert opt.param_groups[0]["lr"] == 0.01  # untouched
    ok = torch.optim.Adam(net.parameters(), lr=0.01, foreach=False)
    sched = ASLR(ok, 0.001, tensor_lr=True, generator=torch.Generator().manual_seed(0))
    net(torch.ones(1, 3)).sum().backward()
    ok.step()  # torch accepts the tensor lr here
    sched.step()
    lo, hi = ASLRSearch(0.001).bounds
    assert lo <= float(ok.param_groups[0]["lr"]) <= hi
