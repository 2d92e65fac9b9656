"""`hwreshape demo` end to end: every registered stage runs on embedded defaults, the summary table is printed,
plots land in the output folder, and the whole demo stays under 10 minutes on 2 cores.  A successful demo prints
no ERROR line, and after the finn-plus stage no line carries FINN's log time stamp (its build redirects
``sys.stdout``; the demo runner restores it)."""

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hwreshape.demo import STAGES

HWRESHAPE = Path(sys.executable).parent / "hwreshape"


@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path):
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(HWRESHAPE), "demo", "--out", str(tmp_path)], capture_output=True, text=True, timeout=1200
    )
    seconds = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    for i, (name, _) in enumerate(STAGES, 1):
        assert f"[demo {i}/{len(STAGES)}] {name}: ok" in out, (
            f"stage {name!r} did not succeed:\n{out[-6000:]}"
        )
    assert "ERROR" not in out, [line for line in out.splitlines() if "ERROR" in line][:5]
    # FINN's build_dataflow time-stamps what is printed while it runs; outside a stage that runs a FINN build
    # (and in the summary table) no line may carry that prefix, i.e. no redirection outlives a build.
    stamp = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\]")
    blocks = re.split(r"^(?=\[demo \d+/\d+\] .* \.\.\.$)", proc.stdout, flags=re.M)
    finn_blocks = [b for b in blocks if "Building dataflow accelerator" in b]
    assert any("finn-plus estimate build ..." in b for b in finn_blocks)
    summary = blocks[-1].split(f"] {STAGES[-1][0]}: ok", 1)[1]
    for block in [b for b in blocks if b not in finn_blocks] + [summary]:
        stamped = [line for line in block.splitlines() if stamp.match(line)]
        assert not stamped, stamped[:5]
    for block in finn_blocks:  # the stage's own closing line is printed after FINN handed stdout back
        closing = [line for line in block.splitlines() if line.startswith("[demo") and line.endswith(" s)")]
        assert closing and not stamp.match(closing[-1])
    assert "hwreshape demo" in proc.stdout  # the summary table's title
    assert len(list(tmp_path.rglob("*.png"))) >= 5
    assert seconds < 600, f"demo took {seconds:.0f} s"
