"""Every ``python`` code block of README.md and docs/*.md runs as written (each in a fresh interpreter).

Blocks tagged ``python`` are executed top to bottom, one process per block, in a temporary working folder
(so files they write do not land in the repository).  Blocks tagged ``bash``/``text``/``console`` are shell
commands or output and are not executed here; the commands they show are covered by their own tests
(``make setup``/``make test`` by CI itself, the CLI by ``tests/test_cli.py``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)


def _blocks():
    for path in DOCS:
        text = path.read_text()
        for m in _FENCE.finditer(text):
            if m.group(1) == "python":
                line = text[: m.start()].count("\n") + 1
                yield pytest.param(path, m.group(2), id=f"{path.relative_to(ROOT)}:{line}")


BLOCKS = list(_blocks())


def test_docs_exist_and_have_examples():
    guides = [p for p in DOCS if p.parent.name == "docs"]
    assert len(guides) >= 8, [p.name for p in guides]
    assert BLOCKS, "no python code block found in README.md or docs/"
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for p in guides:  # every guide is linked from the README
        assert f"docs/{p.name}" in readme, f"README.md does not link docs/{p.name}"


@pytest.mark.slow
@pytest.mark.parametrize("path,code", BLOCKS)
def test_code_block_runs(path, code, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"{path.name} block failed:\n{code}\n--- stderr ---\n{proc.stderr[-4000:]}"
