"""The recipe CLI ``python -m hls4ml_skiptrim.training.recipes {teacher,skipper,trimmer,nonresnet}`` end to end on
sklearn digits: teacher → students (Algorithm 1 order in log.json, final block modes of Listings 4.1/4.2 and
Weng, Khodamoradi & Kastner), resume continuing the identical schedule, the Keras door, and bad input naming the argument."""

import json

import pytest
import torch

from hls4ml_skiptrim.training import torch as stt
from hls4ml_skiptrim.training.recipes.__main__ import main

DIGITS = ["--data", "digits", "--n-train", "400", "--no-progress", "--seed", "0"]


def _run(tmp_path, name, *args):
    out = tmp_path / name
    assert main([args[0], *DIGITS, *args[1:], "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    return out, result


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("teachers")
    long_, res = _run(tmp, "long", "teacher", "--depth", "8", "--width", "8", "--epochs", "1")
    assert res["skips"] == ["long"] * 3 and 0.0 <= res["test_accuracy"] <= 1.0
    short, res = _run(
        tmp, "short", "teacher", "--depth", "20", "--width", "8", "--skips", "short", "--epochs", "1"
    )
    assert res["skips"] == ["short"] * 9
    return long_, short


def _log(out):
    return json.loads((out / "log.json").read_text())


def test_skipper_and_trimmer_runs(tmp_path, teachers):
    long_, _ = teachers
    out, res = _run(tmp_path, "skipper", "skipper", "--teacher", str(long_), "--tail", "1")
    assert res["skips"] == ["none"] * 3  # Listing 4.1: every skip dropped
    ep = _log(out)["epochs"]
    assert [e["modified"] for e in ep] == [[0], [1], [2], []]  # α = 1, from the input side
    assert ep[0]["modes"] == ["none", "long", "long"]
    saved = torch.load(out / "model.pt", weights_only=False)
    model = stt.ResNet(saved["config"])
    model.load_state_dict(saved["state"])
    assert model.modes == ["none"] * 3

    out, res = _run(tmp_path, "trimmer", "trimmer", "--teacher", str(long_), "--tail", "0")
    assert res["skips"] == ["short"] * 3  # Listing 4.2: two short skips per block
    ep = _log(out)["epochs"]
    assert [e["modified"] for e in ep] == [[0], [], [], [1], [], [], [2]]  # every α = 3 epochs


def test_nonresnet_removes_three_short_skips_per_step(tmp_path, teachers):
    _, short = teachers
    out, res = _run(tmp_path, "nonres", "nonresnet", "--teacher", str(short), "--alpha", "1", "--tail", "0")
    assert res["skips"] == ["none"] * 9
    assert [e["modified"] for e in _log(out)["epochs"]] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_resume_continues_the_same_schedule(tmp_path, teachers):
    long_, _ = teachers
    _, full = _run(tmp_path, "full", "skipper", "--teacher", str(long_), "--epochs", "4")
    out, part = _run(tmp_path, "cut", "skipper", "--teacher", str(long_), "--epochs", "2")
    assert part["skips"] == ["none", "none", "long"]
    out, resumed = _run(tmp_path, "cut", "skipper", "--teacher", str(long_), "--epochs", "4", "--resume")
    assert [e["epoch"] for e in _log(out)["epochs"]] == [0, 1, 2, 3]
    assert resumed["skips"] == full["skips"] == ["none"] * 3
    assert resumed["test_accuracy"] == full["test_accuracy"]


def test_keras_door(tmp_path):
    t, res = _run(
        tmp_path, "kt", "teacher", "--framework", "keras", "--depth", "8", "--width", "8", "--epochs", "1"
    )
    assert res["skips"] == ["long"] * 3 and (t / "model.weights.h5").is_file()
    _, res = _run(tmp_path, "ks", "skipper", "--framework", "keras", "--teacher", str(t), "--tail", "1")
    assert res["skips"] == ["none"] * 3 and 0.0 <= res["test_accuracy"] <= 1.0


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--alpha", "0"], "alpha must be >= 1"),
        (["--beta", "1.5"], r"beta must be in \[0, 1\]"),
        (["--val-fraction", "0"], "--val-fraction must be in"),
    ],
)
def test_bad_student_arguments(tmp_path, teachers, extra, match):
    long_, _ = teachers
    with pytest.raises(ValueError, match=match):
        main(["skipper", *DIGITS, "--teacher", str(long_), *extra, "--out", str(tmp_path / "x")])


def test_bad_teacher_folder_is_named(tmp_path, teachers):
    long_, _ = teachers
    with pytest.raises(
        ValueError, match=r"--teacher .*nothing.*expected the --out folder of a `teacher` run"
    ):
        main(["skipper", *DIGITS, "--teacher", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="holds a torch teacher: pass --framework torch"):
        main(
            [
                "skipper",
                *DIGITS,
                "--framework",
                "keras",
                "--teacher",
                str(long_),
                "--out",
                str(tmp_path / "y"),
            ]
        )
    with pytest.raises(ValueError, match="NonResNet: the teacher must have 'short' skips"):
        main(["nonresnet", *DIGITS, "--teacher", str(long_), "--out", str(tmp_path / "z")])
