"""Framework-free SkipTrim core: Algorithm 1 schedule order and resume, Eq 4.4 reference, argument checks."""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hls4ml_skiptrim.training.bnfold import bn_affine, fold_conv_bn
from hls4ml_skiptrim.training.schedule import (
    BETA,
    JsonLog,
    SkipTrimSchedule,
    blocks_for_depth,
    check_alpha,
    check_beta,
    distillation_loss,
    parse_quant,
    resolve_skips,
)


def test_depths_and_blocks():
    assert [blocks_for_depth(d) for d in (8, 20, 32, 44, 56, 110)] == [3, 9, 15, 21, 27, 54]
    for bad in (7, 9, 18, 2):
        with pytest.raises(ValueError, match="6k\\+2"):
            blocks_for_depth(bad)
    with pytest.raises(TypeError):
        blocks_for_depth(20.0)


def test_skipper_order_alpha_1():
    s = SkipTrimSchedule(9, "skipper")
    assert s.alpha == 1 and s.source_mode == "long" and s.target_mode == "none"
    seen = [s.begin_epoch(e) for e in range(11)]
    assert seen[:9] == [[i] for i in range(9)] and seen[9:] == [[], []]
    assert s.modes() == ["none"] * 9 and s.done and s.epochs_to_finish == 9


def test_trimmer_alpha_3_from_input_side():
    s = SkipTrimSchedule(3, "trimmer")
    assert s.alpha == 3
    got = {e: s.begin_epoch(e) for e in range(8)}
    # Algorithm 1 line 14: modify at epochs with i mod alpha == 0, input side first
    assert got == {0: [0], 1: [], 2: [], 3: [1], 4: [], 5: [], 6: [2], 7: []}
    assert s.modes() == ["short"] * 3 and s.epochs_to_finish == 7


def test_nonresnet_three_at_a_time():
    s = SkipTrimSchedule(9, "nonresnet", alpha=2)
    assert s.source_mode == "short" and s.blocks_per_step == 3
    assert s.begin_epoch(0) == [0, 1, 2]
    assert s.begin_epoch(1) == []
    assert s.begin_epoch(2) == [3, 4, 5]
    assert s.modes() == ["none"] * 6 + ["short"] * 3
    assert s.begin_epoch(5) == [6, 7, 8]  # a jump catches up with the schedule


@given(
    n=st.integers(1, 30),
    alpha=st.integers(1, 5),
    bps=st.integers(1, 4),
    stop=st.integers(0, 40),
    total=st.integers(1, 60),
    method=st.sampled_from(["skipper", "trimmer", "nonresnet"]),
)
def test_resume_continues_same_schedule(n, alpha, bps, stop, total, method):
    ref = SkipTrimSchedule(n, method, alpha, bps)
    ref_seq = [ref.begin_epoch(e) for e in range(total)]
    a = SkipTrimSchedule(n, method, alpha, bps)
    first = [a.begin_epoch(e) for e in range(min(stop, total))]
    state = json.loads(json.dumps(a.state_dict()))  # what a checkpoint holds
    b = SkipTrimSchedule(n, method, alpha, bps)
    b.load_state_dict(state)
    rest = [b.begin_epoch(e) for e in range(min(stop, total), total)]
    assert first + rest == ref_seq
    assert b.modes() == ref.modes() and b.history == ref.history
    # every block modified exactly once, in input-side order
    flat = [blk for step in ref_seq for blk in step]
    assert flat == list(range(len(flat)))


def test_bad_state_and_going_back():
    s = SkipTrimSchedule(3, "skipper")
    s.begin_epoch(2)
    with pytest.raises(ValueError, match="only moves forward"):
        s.begin_epoch(1)
    other = SkipTrimSchedule(3, "trimmer")
    with pytest.raises(ValueError, match="method"):
        other.load_state_dict(s.state_dict())
    bad = s.state_dict()
    bad["modified"] = [0]
    with pytest.raises(ValueError, match="inconsistent"):
        SkipTrimSchedule(3, "skipper").load_state_dict(bad)
    with pytest.raises(TypeError):
        SkipTrimSchedule(3).load_state_dict([1])


@pytest.mark.parametrize("alpha", [0, -1])
def test_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha must be >= 1"):
        SkipTrimSchedule(3, "skipper", alpha=alpha)
    with pytest.raises(ValueError, match="alpha"):
        check_alpha(alpha)
    with pytest.raises(TypeError, match="alpha"):
        check_alpha(1.5)


@pytest.mark.parametrize("beta", [-0.1, 1.01, math.nan, math.inf])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="beta must be in \\[0, 1\\]"):
        check_beta(beta)
    with pytest.raises(ValueError, match="beta"):
        distillation_loss(np.zeros((1, 2)), np.zeros((1, 2)), np.zeros(1, int), beta)
    with pytest.raises(TypeError):
        check_beta("x")


def test_bad_method_skips_quant():
    with pytest.raises(ValueError, match="method"):
        SkipTrimSchedule(3, "pruner")
    with pytest.raises(ValueError, match="skips\\[1\\]"):
        resolve_skips(["long", "medium", "none"], 3)
    with pytest.raises(ValueError, match="expected 3"):
        resolve_skips(["long"], 3)
    assert parse_quant("<8,3>") == (8, 3) and parse_quant((16, 4)) == (16, 4) and parse_quant(None) is None
    for bad in ("<8,8>", "<8>", (3, 0)):
        with pytest.raises(ValueError):
            parse_quant(bad)


def test_eq44_closed_form():
    # s = 0 logits: CE = log C; t - s = 1 everywhere: MSE = 1  =>  L = (1-β) log C + β
    C = 10
    s, t, y = np.zeros((4, C)), np.ones((4, C)), np.array([0, 3, 9, 2])
    assert distillation_loss(s, t, y) == pytest.approx((1 - BETA) * math.log(C) + BETA, abs=1e-12)
    # β = 0: plain cross-entropy; β = 1: plain MSE
    s = np.array([[2.0, 0.0, -1.0]])
    ce = -(2.0 - math.log(math.exp(2) + 1 + math.exp(-1)))
    assert distillation_loss(s, s, np.array([0]), 0.0) == pytest.approx(ce, abs=1e-12)
    assert distillation_loss(s, s + np.array([[1.0, 2.0, 3.0]]), np.array([0]), 1.0) == pytest.approx(14 / 3)
    with pytest.raises(ValueError, match="labels"):
        distillation_loss(s, s, np.array([3]))
    with pytest.raises(ValueError, match="student/teacher"):
        distillation_loss(s, np.zeros((1, 4)), np.array([0]))


@given(c=st.integers(1, 6), k=st.integers(1, 3), seed=st.integers(0, 2**16))
def test_bn_fold_eq43(c, k, seed):
    rng = np.random.default_rng(seed)
    kern = rng.normal(size=(c, 2, k, k)).astype(np.float32)  # OIHW
    bias = rng.normal(size=c)
    g, b, m, v = rng.normal(size=c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.1, 2, size=c)
    x = rng.normal(size=(2, k, k))
    conv = np.einsum("oihw,ihw->o", kern.astype(np.float64), x) + bias
    w_bn, b_bn = bn_affine(g, b, m, v, 1e-3)
    want = w_bn * conv + b_bn
    fk, fb = fold_conv_bn(kern, bias, g, b, m, v, 1e-3, out_axis=0)
    got = np.einsum("oihw,ihw->o", fk.astype(np.float64), x) + fb
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="channels"):
        fold_conv_bn(
            kern,
            bias,
            g[:1] if c > 1 else np.ones(2),
            b[:1] if c > 1 else np.ones(2),
            m[:1] if c > 1 else np.ones(2),
            v[:1] if c > 1 else np.ones(2),
            1e-3,
            out_axis=0,
        )


def test_json_log(tmp_path):
    p = tmp_path / "log.json"
    log = JsonLog(p, meta={"method": "skipper"})
    log.record(epoch=0, loss=np.float32(1.5), modified=[0])
    log.record(epoch=1, loss=1.0, modified=[1])
    log.record(epoch=1, loss=0.5, modified=[1])  # a resumed epoch replaces its record
    doc = json.loads(p.read_text())
    assert doc["meta"] == {"method": "skipper"}
    assert [e["epoch"] for e in doc["epochs"]] == [0, 1] and doc["epochs"][1]["loss"] == 0.5
    assert [e["epoch"] for e in JsonLog(p).epochs] == [0, 1]
