"""bm_ops.cost: seed Table 2 reproduced (12 rows, gates and latency, <= 2 %), network totals."""

import pytest
import torch
from torch import nn

from bm_ops.cost import OPS, TABLE2, conv_costs, conv_ratios, network_costs, network_totals, op_counts
from bm_ops.torch import convert_layers


def test_table1_values():
    assert {k: (v.gates, v.latency) for k, v in OPS.items()} == {
        "add": (16048, 3),
        "max": (1464, 2),
        "mul": (35345, 4),
        "log": (154179, 35),
        "exp": (256965, 21),
    }


@pytest.mark.parametrize(("cfg", "expected"), sorted(TABLE2.items()))
def test_table2_row_within_2_percent(cfg, expected):
    gate, lat = conv_ratios(*cfg)
    assert abs(gate / expected[0] - 1) <= 0.02, (cfg, gate, expected)
    assert abs(lat / expected[1] - 1) <= 0.02, (cfg, lat, expected)


def test_table2_has_the_seed_rows():
    assert len(TABLE2) == 12
    assert {k[2] for k in TABLE2} == {1, 3}


def test_counting_model_pieces():
    c = op_counts(4, 3, 3)
    assert c["standard"] == {"mul": 108, "add": 108}
    assert c["bm"] == {"add": 108 + 8, "max": 108, "log": 3, "exp": 4}
    cc = conv_costs(4, 3, 3)
    assert cc["gates_standard"] == 108 * (35345 + 16048)
    assert cc["latency_bm"] == 35 + 27 * 5 + 21 + 6
    # ratios grow with the layer size towards (mul+add)/(add+max) and (4+3)/(3+2)
    big = conv_ratios(4096, 4096, 3)
    assert big[0] == pytest.approx((35345 + 16048) / (16048 + 1464), rel=1e-3)
    assert big[1] == pytest.approx(7 / 5, rel=1e-3)
    with pytest.raises(ValueError, match="filters"):
        conv_ratios(0, 3, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        conv_ratios(3, 3, (3, 3, 3))


def test_network_costs_fig1_style():
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2),
        nn.Flatten(),
        nn.Linear(32 * 7 * 7, 10),
    )
    rows = network_costs(model, (1, 1, 16, 16))
    assert [r["name"] for r in rows] == ["0", "2", "4"]
    assert [r["kind"] for r in rows] == ["standard"] * 3
    assert rows[0]["positions"] == 256 and rows[1]["positions"] == 49 and rows[2]["positions"] == 1
    assert rows[1]["gate_ratio"] == pytest.approx(conv_ratios(32, 16, 3)[0])
    assert rows[0]["ops_standard"]["mul"] == 16 * 9 * 256
    convert_layers(model, names=["2"])
    rows2 = network_costs(model, (1, 1, 16, 16))
    assert [r["kind"] for r in rows2] == ["standard", "bm", "standard"]
    assert rows2[1]["gates"] == rows2[1]["gates_bm"] < rows2[1]["gates_standard"]
    tot = network_totals(model, (1, 1, 16, 16))
    assert tot["layers"] == 3
    assert tot["gates_standard"] == sum(r["gates_standard"] for r in rows2)
    assert tot["gates_bm"] < tot["gates_as_is"] < tot["gates_standard"]
    assert model.training  # mode restored
    assert torch.is_grad_enabled()
