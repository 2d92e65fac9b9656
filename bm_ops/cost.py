"""Hardware cost model of standard vs BM convolutions (ASIC gate count and latency *estimates*).

Limonova et al., *Hardware implementation*: Table 1 (gates and latency of single-precision add, max,
mul, log, exp from Verilog + Synopsys Design Compiler, 65 nm) and Table 2 (gate and latency ratios
standard/BM of a convolutional layer for 12 (filters, channels, K) configurations), Fig 1 (gates per layer).

The paper publishes the ratios but not its counting. The counting model used here (our reading, chosen as the
simplest one built only from Table 1 operations that reproduces all 12 rows of Table 2 within 2 %, see
``tests/test_bm_cost.py``) is, for one output position of a layer with ``F`` filters, ``C`` input channels and a
``K x K`` kernel (``N = C K^2`` taps per filter):

* standard: ``F N`` multipliers and ``F N`` adders (multiply-accumulate per tap); latency ``N (t_mul + t_add)``
  (taps accumulated sequentially, filters in parallel);
* BM: ``F N`` adders and ``F N`` max units (``ln x + v`` and the running max per tap — after conversion each
  weight is in exactly one of ``v+``/``v-`` and each input in one of ``x+``/``x-``, so one add and one max per
  tap), ``C`` logarithm units (one per input value entering the position), ``F`` exponent units and ``2 F``
  adders (combining the bipolar terms and adding the bias); latency
  ``t_log + N (t_add + t_max) + t_exp + 2 t_add``.

Everything here is an estimate from the paper's tables, not a synthesis result.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["OPS", "OpCost", "conv_costs", "conv_ratios", "network_costs", "network_totals", "TABLE2"]


@dataclass(frozen=True)
class OpCost:
    gates: int
    latency: int  # clock cycles


#: Table 1 (single precision, 65 nm).
OPS: dict[str, OpCost] = {
    "add": OpCost(16048, 3),
    "max": OpCost(1464, 2),
    "mul": OpCost(35345, 4),
    "log": OpCost(154179, 35),
    "exp": OpCost(256965, 21),
}

#: Table 2: (filters, channels, kernel size) -> (gates standard/BM, latency standard/BM).
TABLE2: dict[tuple[int, int, int], tuple[float, float]] = {
    (16, 16, 1): (1.14, 0.80),
    (32, 32, 1): (1.64, 1.02),
    (64, 64, 1): (2.11, 1.18),
    (128, 128, 1): (2.45, 1.28),
    (256, 256, 1): (2.67, 1.34),
    (512, 512, 1): (2.80, 1.37),
    (16, 16, 3): (2.50, 1.29),
    (32, 32, 3): (2.70, 1.34),
    (64, 64, 3): (2.81, 1.37),
    (128, 128, 3): (2.87, 1.39),
    (256, 256, 3): (2.90, 1.39),
    (512, 512, 3): (2.92, 1.40),
}


def _kernel_area(kernel_size) -> int:
    if isinstance(kernel_size, (tuple, list)):
        if len(kernel_size) != 2:
            raise ValueError(f"kernel_size must be an int or a pair, got {kernel_size!r}")
        kh, kw = kernel_size
    else:
        kh = kw = kernel_size
    for v in (kh, kw):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"kernel_size must be positive ints, got {kernel_size!r}")
    return kh * kw


def op_counts(filters: int, channels: int, kernel_size) -> dict[str, dict[str, int]]:
    """Operator counts of one output position: ``{"standard": {op: n}, "bm": {op: n}}`` (see module doc)."""
    for name, v in (("filters", filters), ("channels", channels)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    n = channels * _kernel_area(kernel_size)
    return {
        "standard": {"mul": filters * n, "add": filters * n},
        "bm": {"add": filters * n + 2 * filters, "max": filters * n, "log": channels, "exp": filters},
    }


def _gates(counts: dict[str, int]) -> int:
    return sum(OPS[op].gates * k for op, k in counts.items())


def conv_costs(filters: int, channels: int, kernel_size) -> dict[str, float]:
    """Gates and latency (cycles) of one output position, standard and BM, plus their ratios standard/BM."""
    counts = op_counts(filters, channels, kernel_size)
    n = channels * _kernel_area(kernel_size)
    lat_std = n * (OPS["mul"].latency + OPS["add"].latency)
    lat_bm = (
        OPS["log"].latency
        + n * (OPS["add"].latency + OPS["max"].latency)
        + OPS["exp"].latency
        + 2 * OPS["add"].latency
    )
    g_std, g_bm = _gates(counts["standard"]), _gates(counts["bm"])
    return {
        "gates_standard": g_std,
        "gates_bm": g_bm,
        "latency_standard": lat_std,
        "latency_bm": lat_bm,
        "gate_ratio": g_std / g_bm,
        "latency_ratio": lat_std / lat_bm,
    }


def conv_ratios(filters: int, channels: int, kernel_size) -> tuple[float, float]:
    """``(gate_ratio, latency_ratio)`` standard/BM of a conv layer (Table 2 quantities)."""
    c = conv_costs(filters, channels, kernel_size)
    return c["gate_ratio"], c["latency_ratio"]


def network_costs(model, input_shape) -> list[dict]:
    """Per-layer costs (Fig 1 style) of every conv/linear layer (standard or BM) of a torch ``model``.

    Runs one forward pass on zeros of ``input_shape`` (with batch dim) to get each layer's output size. For each
    layer: ``name``, ``kind`` (``"bm"`` / ``"standard"``), ``filters``, ``channels``, ``kernel``, ``positions``
    (output pixels), ``gates_standard``/``gates_bm`` (one output-position unit, as Table 2), the ratios, and
    ``gates`` = the gates of the layer as it currently is. Layer op totals over all positions are in
    ``ops_standard``/``ops_bm``.
    """
    import torch
    from torch import nn

    from bm_ops.torch import BMConv2d, BMLinear

    kinds = (nn.Conv2d, nn.Linear, BMConv2d, BMLinear)
    rows: list[dict] = []
    hooks = []

    def hook(mod, inp, out, name):
        if isinstance(mod, (nn.Conv2d, BMConv2d)):
            f, c, k = mod.out_channels, mod.in_channels, tuple(mod.kernel_size)
            if isinstance(mod, nn.Conv2d) and mod.groups != 1:
                raise ValueError(f"network_costs: {name} has groups={mod.groups}; only groups=1 is modelled")
            positions = int(out.shape[-1] * out.shape[-2])
        else:
            f, c, k = mod.out_features, mod.in_features, (1, 1)
            positions = int(out[..., 0].numel() // out.shape[0]) if out.ndim > 1 else 1
        cc = conv_costs(f, c, k)
        counts = op_counts(f, c, k)
        bm = isinstance(mod, (BMConv2d, BMLinear))
        rows.append(
            {
                "name": name,
                "kind": "bm" if bm else "standard",
                "filters": f,
                "channels": c,
                "kernel": k,
                "positions": positions,
                **cc,
                "gates": cc["gates_bm"] if bm else cc["gates_standard"],
                "ops_standard": {op: n * positions for op, n in counts["standard"].items()},
                "ops_bm": {op: n * positions for op, n in counts["bm"].items()},
            }
        )

    for name, m in model.named_modules():
        if name and isinstance(m, kinds):
            hooks.append(m.register_forward_hook(lambda mod, i, o, name=name: hook(mod, i, o, name)))
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            p = next(model.parameters(), None)
            model(torch.zeros(tuple(input_shape), dtype=p.dtype if p is not None else torch.float32))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return rows


def network_totals(model, input_shape) -> dict[str, float]:
    """Sum of :func:`network_costs` over the layers: gates standard, BM, as-is, and the overall ratio."""
    rows = network_costs(model, input_shape)
    g_std = sum(r["gates_standard"] for r in rows)
    g_bm = sum(r["gates_bm"] for r in rows)
    return {
        "layers": len(rows),
        "gates_standard": g_std,
        "gates_bm": g_bm,
        "gates_as_is": sum(r["gates"] for r in rows),
        "gate_ratio": g_std / g_bm if g_bm else float("nan"),
    }
