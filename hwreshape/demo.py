"""``hwreshape demo``: run the demo stages that the packages register and print a summary table.

A stage is a function ``stage(ctx: DemoContext) -> str | dict`` living in one of the packages. It runs on
embedded defaults (synthetic data, sklearn digits, or the MNIST 10k split when ``../shared`` is present),
writes any plots under ``ctx.out_dir`` and returns a short result (a string, or a dict of printed numbers).
Stages are listed in :data:`STAGES` as ``(name, "module:function")``; each capability adds its own line.
"""

from __future__ import annotations

import importlib
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from hwreshape.data import shared_dir

#: (stage name, "module:function").  Order = execution order.
STAGES: list[tuple[str, str]] = [
    ("environment", "hwreshape.smoke:stage_environment"),
    ("finn-plus estimate build", "hwreshape.smoke:stage_finn_estimate"),
    ("qkeras -> hls4ml c-sim", "hwreshape.smoke:stage_qkeras_hls4ml"),
    ("aslr scheduler", "hwreshape.examples.aslr:stage"),
    ("bm ops (model side)", "hwreshape.examples.bm_model:stage"),
    ("bm ops (qonnx + hls4ml)", "hwreshape.examples.bm_hls4ml:stage"),
    ("s2n2 lif-mvau in finn", "hwreshape.examples.s2n2_finn:stage"),
    ("s2n2 snn front-end", "hwreshape.examples.s2n2_frontend:stage"),
    ("dvs o(n) filter", "hwreshape.examples.dvs_filter:stage"),
    ("hls4ml short-skip fusion", "hwreshape.examples.shortskip:stage"),
    ("skiptrim recipes", "hwreshape.examples.skiptrim_recipes:stage"),
    ("hardware-cost report", "hwreshape.report:demo_stage"),
]


@dataclass
class DemoContext:
    out_dir: Path
    quick: bool = True
    shared: Path | None = field(default_factory=shared_dir)

    @property
    def mnist_dir(self) -> Path | None:
        if self.shared is not None and (self.shared / "data" / "mnist").is_dir():
            return self.shared / "data" / "mnist"
        return None


@dataclass
class StageOutcome:
    name: str
    ok: bool
    result: str
    seconds: float


def _format(result) -> str:
    if isinstance(result, dict):
        return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())
    return str(result)


def _resolve(target: str):
    module, _, func = target.partition(":")
    return getattr(importlib.import_module(module), func)


def select(only: list[str] | None) -> list[tuple[str, str]]:
    """The stages whose name contains one of the words in ``only`` (case-insensitive); all when ``only`` is empty."""
    if not only:
        return list(STAGES)
    return [(n, t) for n, t in STAGES if any(o.lower() in n.lower() for o in only)]


def run(
    out_dir: str | Path = "demo_out", only: list[str] | None = None, quick: bool = True
) -> list[StageOutcome]:
    """Run every registered stage (or those whose name contains one of ``only``); never stops at a failure.

    Each stage announces itself before it starts (stages take seconds to minutes) and runs inside
    :func:`hwreshape.compat.host_io_preserved`, so a host that redirects ``sys.stdout`` or reconfigures
    logging (finn-plus' ``build_dataflow_cfg`` does both) cannot change what later stages print.
    """
    from hwreshape.compat import host_io_preserved

    stages = select(only)
    if not stages:
        raise ValueError(f"no demo stage name contains any of {only}; stages: {[n for n, _ in STAGES]}")
    ctx = DemoContext(out_dir=Path(out_dir), quick=quick)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[StageOutcome] = []
    for i, (name, target) in enumerate(stages, 1):
        print(f"[demo {i}/{len(stages)}] {name} ...", flush=True)
        t0 = time.perf_counter()
        with host_io_preserved():
            try:
                fn = _resolve(target)
                res = _format(fn(ctx))
                ok = True
            except Exception as exc:  # a stage failure is reported, the others still run
                res = f"FAILED: {type(exc).__name__}: {exc}"
                traceback.print_exc()
                ok = False
        outcomes.append(StageOutcome(name, ok, res, time.perf_counter() - t0))
        print(
            f"[demo {i}/{len(stages)}] {name}: {'ok' if ok else 'FAILED'} ({outcomes[-1].seconds:.1f} s)",
            flush=True,
        )
    return outcomes


def print_summary(outcomes: list[StageOutcome]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="hwreshape demo")
    table.add_column("stage")
    table.add_column("status")
    table.add_column("result", overflow="fold")
    table.add_column("time [s]", justify="right")
    for o in outcomes:
        table.add_row(o.name, "ok" if o.ok else "[red]FAILED[/red]", o.result, f"{o.seconds:.1f}")
    Console(width=160).print(table)
