"""The ``hwreshape`` console script: strict argument parsing, one-line usage errors, ``--version``."""

import subprocess
import sys
from pathlib import Path

import pytest

import hwreshape

HWRESHAPE = Path(sys.executable).parent / "hwreshape"


def _run(*args):
    return subprocess.run([str(HWRESHAPE), *args], capture_output=True, text=True, timeout=300)


def test_version():
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"hwreshape {hwreshape.__version__}"


@pytest.mark.parametrize(
    "args,needle",
    [
        ((), "required: COMMAND"),
        (("bogus",), "invalid choice: 'bogus'"),
        (("demo", "--bogus"), "unrecognized arguments: --bogus"),
        (("demo", "--only", "nomatch"), "no stage name contains nomatch"),
        (("demo", "--only"), "expected at least one argument"),
        (("report", "model.pt", "--input-shape", "1,x"), "expected positive integers separated by commas"),
        (("report", "model.pt", "--input-shape", "1,-3"), "expected positive integers separated by commas"),
        (("report", "missing_model.onnx"), "model file missing_model.onnx not found"),
        (("report",), "the following arguments are required: models"),
    ],
)
def test_bad_usage_exits_nonzero_with_one_line(args, needle):
    proc = _run(*args)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr


def test_help_is_plain_text():
    for args in (("--help",), ("demo", "--help"), ("report", "--help")):
        proc = _run(*args)
        assert proc.returncode == 0, proc.stderr
        assert "``" not in proc.stdout and ":func:" not in proc.stdout, proc.stdout


def test_demo_list_names_every_stage():
    from hwreshape.demo import STAGES

    proc = _run("demo", "--list")
    assert proc.returncode == 0
    for name, target in STAGES:
        assert name in proc.stdout and target in proc.stdout
