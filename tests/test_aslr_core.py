"""ASLRSearch against Algorithm 2 of Khodamoradi 2021 (section 5.3): hand-made cost sequences step by step, an exact
rational transcription of the pseudo-code as oracle, Eq 5.10 step sizes, bad input, persistence."""

import math
import subprocess
import sys
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aslr.core import ASLRSearch, step_size


def _state(a: ASLRSearch):
    return (a.c, a.min_cost, a.search_direction, a.search_range, a.search_steps)


def test_import_is_light():
    # aslr.keras touches Keras only once fit attaches a model (keeps the QKeras import-order rule the user's)
    code = (
        "import sys, aslr, aslr.core, aslr.keras; "
        "print(any(m in sys.modules for m in ('torch', 'tensorflow', 'keras', 'tf_keras', 'finn')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"


def test_improvement_and_plateau_sequence_step_by_step():
    # hand-computed with Algorithm 2: c=0.05 -> s=0.01
    a = ASLRSearch(0.05)
    costs = [0.9, 0.8, 0.85, 0.7, 0.75, 0.76, 0.77, 0.6]
    expected = [
        (0.05, 0.9, 1, 1, 0),  # improvement (first epoch)
        (0.05, 0.8, 1, 1, 0),  # improvement
        (0.06, 0.8, -1, 2, 0),  # worse: c += s; steps == range(1) -> range 2, flip
        (0.06, 0.7, 1, 1, 0),  # improvement: reset search
        (0.07, 0.7, -1, 2, 0),  # worse: +s, flip
        (0.06, 0.7, -1, 2, 1),  # worse: -s
        (0.05, 0.7, 1, 3, 0),  # worse: -s, steps == range(2) -> range 3, flip
        (0.05, 0.6, 1, 1, 0),  # improvement
    ]
    for cost, exp in zip(costs, expected):
        c = a.observe(cost)
        assert c == exp[0]
        assert _state(a) == exp


def test_equal_cost_is_an_improvement_as_in_the_seed():
    # Algorithm 2 tests `min_cost < cost`: an exact plateau resets the search instead of moving c
    a = ASLRSearch(0.2)
    for _ in range(5):
        assert a.observe(0.4) == 0.2
    assert _state(a) == (0.2, 0.4, 1, 1, 0)


def test_zero_crossing_rule_step_by_step():
    a = ASLRSearch(0.1)
    costs = [0.5] + [0.6 + 0.05 * k for k in range(10)]
    expected_c = [0.1, 0.2, 0.1, 0.09, 0.1, 0.2, 0.3, 0.2, 0.1, 0.09, 0.08]
    expected_dir = [1, -1, -1, 1, 1, 1, -1, -1, -1, -1, 1]
    expected_range = [1, 2, 2, 3, 3, 3, 4, 4, 4, 4, 5]
    got = [(a.observe(cost), a.search_direction, a.search_range) for cost in costs]
    assert got == list(zip(expected_c, expected_dir, expected_range))


def test_long_search_from_0p3_is_exact_not_float_drift():
    # naive floats give 0.1 + 2e-17 after 0.5 - 4*0.1 and then a learning rate of 2.8e-17 instead of the
    # zero-crossing rule's 0.09
    a = ASLRSearch(0.3)
    traj = [a.observe(0.5)] + [a.observe(0.6) for _ in range(27)]
    expected = [
        0.3,
        0.4,
        0.3,
        0.2,
        0.3,
        0.4,
        0.5,
        0.4,
        0.3,
        0.2,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
        0.5,
        0.4,
        0.3,
        0.2,
        0.1,
        0.09,
        0.1,
        0.2,
        0.3,
        0.4,
        0.5,
        0.6,
    ]
    assert traj == expected


def test_mode_max_negates_the_metric():
    a, b = ASLRSearch(0.05, mode="max"), ASLRSearch(0.05, mode="min")
    accs = [0.5, 0.7, 0.65, 0.64, 0.8, 0.79]
    assert [a.observe(x) for x in accs] == [b.observe(1 - x) for x in accs]


def test_initial_min_cost_deviation_only_matters_above_one():
    # seed: min_cost starts at 1, so a first validation loss of 2.3 already moves c; ours counts it as progress
    a = ASLRSearch(0.05)
    assert a.observe(2.3) == 0.05 and a.min_cost == 2.3
    assert _oracle([2.3], Fraction(5, 100))[0] == Fraction(6, 100)


@pytest.mark.parametrize(
    "c, s",
    [
        (0.05, 0.01),
        (0.06, 0.01),
        (0.1, 0.1),
        (0.0999999, 0.01),
        (1.0, 1.0),
        (9.99, 1.0),
        (10, 10.0),
        (1e-3, 1e-3),
        (3e-7, 1e-7),
        (250.0, 100.0),
    ],
)
def test_step_size_is_exact_power_of_ten(c, s):
    assert step_size(c) == s


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, -1, math.nan, math.inf, -math.inf])
def test_bad_lr_raises_value_error(bad):
    with pytest.raises(ValueError, match="lr"):
        ASLRSearch(bad)
    with pytest.raises(ValueError):
        step_size(bad)


@pytest.mark.parametrize("bad", ["0.1", None, True, [0.1]])
def test_non_numeric_lr_raises_type_error(bad):
    with pytest.raises(TypeError, match="lr"):
        ASLRSearch(bad)


def test_bad_metric_and_mode():
    a = ASLRSearch(0.1)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="finite"):
            a.observe(bad)
    with pytest.raises(TypeError, match="metric"):
        a.observe("0.3")
    with pytest.raises(ValueError, match="mode"):
        ASLRSearch(0.1, mode="maximize")
    assert a.epochs == 0  # rejected metrics leave the state untouched


def test_state_dict_round_trip_continues_identically():
    a = ASLRSearch(0.03)
    costs = [0.9, 0.95, 0.97, 0.5, 0.6, 0.7, 0.8, 0.9, 0.91]
    for cost in costs[:4]:
        a.observe(cost)
    b = ASLRSearch(0.03)
    b.load_state_dict(a.state_dict())
    assert [a.observe(x) for x in costs[4:]] == [b.observe(x) for x in costs[4:]]
    # a state of another start value or mode is refused, naming both values
    with pytest.raises(ValueError, match=r"started at lr=0\.03.*starts at lr=1\.0"):
        ASLRSearch(1.0).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="mode='min'.*mode='max'"):
        ASLRSearch(0.03, mode="max").load_state_dict(a.state_dict())
    legacy = {k: v for k, v in a.state_dict().items() if k != "start_lr"}  # states saved before start_lr
    ASLRSearch(0.03).load_state_dict(legacy)
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict({"c": "0.1"})
    bad = a.state_dict() | {"c": "-1"}
    with pytest.raises(ValueError, match="c must be"):
        b.load_state_dict(bad)


# --- the oracle: Algorithm 2 transcribed literally, exact rationals, seed's min_cost = 1 ------------------
def _step(c: Fraction) -> Fraction:
    e = 0
    while Fraction(10) ** (e + 1) <= c:
        e += 1
    while Fraction(10) ** e > c:
        e -= 1
    return Fraction(10) ** e


def _oracle(costs, c: Fraction) -> list[Fraction]:
    min_cost, search_direction, search_range, search_steps = Fraction(1), 1, 1, 0
    out = []
    for cost in costs:
        cost = Fraction(cost)
        if min_cost < cost:
            s = _step(c)
            if c + search_direction * s == 0:
                c = Fraction(9, 10) * c
            else:
                c = c + search_direction * s
            search_steps += 1
            if search_steps == search_range:
                search_range += 1
                search_steps = 0
                search_direction = -search_direction
        else:
            min_cost = cost
            search_direction, search_range, search_steps = 1, 1, 0
        out.append(c)
    return out


@given(
    mantissa=st.integers(1, 999),
    exponent=st.integers(-6, 1),
    costs=st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=60),
)
def test_trajectory_equals_algorithm_2_for_costs_up_to_one(mantissa, exponent, costs):
    lr = float(f"{mantissa}e{exponent}")
    a = ASLRSearch(lr)
    ours = [a.observe(x) for x in costs]
    exact = _oracle(costs, Fraction(f"{mantissa}e{exponent}"))
    assert ours == [float(c) for c in exact]
    assert all(c > 0 for c in ours)


@given(
    mantissa=st.integers(1, 99),
    exponent=st.integers(-4, 0),
    costs=st.lists(st.sampled_from([0.1, 0.2, 0.3, 0.3, 0.4, 0.9, 1.0]), min_size=1, max_size=80),
)
def test_plateau_heavy_sequences_match_oracle(mantissa, exponent, costs):
    # few distinct values -> many equal costs and long searches through decades and the zero rule
    a = ASLRSearch(float(f"{mantissa}e{exponent}"))
    assert [a.observe(x) for x in costs] == [
        float(c) for c in _oracle(costs, Fraction(f"{mantissa}e{exponent}"))
    ]


def test_descent_from_ten_times_too_high_takes_more_epochs_than_a_run():
    # The structural limit behind the benchmark's "10x too high" cell: from c = 0.5, even with the validation
    # cost getting worse after *every* epoch (no reset), Algorithm 2 scans a widening band (first step up,
    # steps of 0.1 above 0.1) and first reaches a rate <= 0.3 / 0.2 / 0.1 / 0.05 after 11 / 22 / 37 / 172
    # observations. Any improvement on the way resets the scan. Checked against the exact oracle as well.
    costs = [0.5] + [0.5 + 1e-3 * k for k in range(1, 200)]
    a = ASLRSearch(0.5)
    ours = [a.observe(x) for x in costs]
    exact = [float(c) for c in _oracle(costs, Fraction("0.5"))]
    assert ours == exact

    def first(th):
        return next(i + 1 for i, c in enumerate(ours) if c <= th)

    assert [first(th) for th in (0.3, 0.2, 0.1, 0.05)] == [11, 22, 37, 172]
    assert (min(ours[:30]), max(ours[:30])) == (0.2, 0.9)  # a 30-epoch run stays in [0.2, 0.9]
