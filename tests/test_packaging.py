"""Packaging: extras and the missing-extra error, one TensorFlow distribution, wheel and sdist contents.

The co-install with finn-plus 1.6.1 (fresh venv, ``pip check``, FINN tests, non-editable smoke) needs a
multi-GB install and runs as the ``wheel`` stage of ``.ci/run`` (``make test-wheel``), not here.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from hwreshape.extras import EXTRAS, MissingExtraError, missing, require

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
OPTIONAL = PYPROJECT["project"]["optional-dependencies"]

# A real import blocker (a meta-path finder that refuses the named top-level modules), installed in a child
# interpreter before the package under test is imported.
_BLOCKED_CHILD = r"""
import importlib.abc, json, sys
blocked = set(json.loads(sys.argv[1]))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, Blocker())
try:
    exec(sys.argv[2], {})
except ImportError as e:
    print("IMPORTERROR " + json.dumps([type(e).__name__, str(e), getattr(e, "extra", None)]))
else:
    print("IMPORTED")
"""


def _import_blocked(statement: str, blocked: list[str]) -> tuple[str, str, str | None] | None:
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCKED_CHILD, json.dumps(blocked), statement],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    out = [ln for ln in proc.stdout.splitlines() if ln.startswith(("IMPORTERROR ", "IMPORTED"))]
    assert out, f"child crashed: {proc.stderr[-2000:]}"
    if out[-1] == "IMPORTED":
        return None
    return tuple(json.loads(out[-1][len("IMPORTERROR ") :]))


@pytest.mark.parametrize(
    ("statement", "blocked", "extra"),
    [
        ("import finn_s2n2", ["qonnx"], "qonnx"),
        ("import finn_s2n2.snn", ["nir"], "snn"),
        ("import finn_s2n2.training", ["brevitas"], "snn"),
        ("import hls4ml_skiptrim.hls4ml", ["hls4ml"], "hls4ml"),
        ("import bm_ops.qonnx", ["onnxruntime"], "qonnx"),
        ("import bm_ops.training", ["torch", "brevitas"], "torch"),
        ("import bm_ops.torch", ["torch"], "torch"),
        ("import bm_ops.keras", ["keras"], "keras"),
        ("import aslr.torch", ["torch"], "torch"),
        ("import aslr.keras", ["keras"], "keras"),
        ("import aslr.lightning", ["lightning", "pytorch_lightning"], "lightning"),
        ("import finn_s2n2.finn.custom_op.lif_mvau", ["finn"], "finn"),
        ("import finn_s2n2.dvs.denoise", ["numba"], "dvs"),
        ("import bm_ops.hls4ml.convert", ["hls4ml"], "hls4ml"),
        ("import hls4ml_skiptrim.training.torch", ["torch"], "torch"),
        ("import hwreshape.examples.zoo", ["torch"], "torch"),
        (
            "from aslr.lr_finder import lr_range_test; lr_range_test(None, None, None, None)",
            ["torch_lr_finder"],
            "lr-finder",
        ),
    ],
)
def test_missing_extra_is_named_at_import(statement, blocked, extra):
    err = _import_blocked(statement, blocked)
    assert err is not None, f"{statement} succeeded although {blocked} are blocked"
    kind, message, named = err
    assert kind == "MissingExtraError" and named == extra
    assert f"pip install 'hwreshape[{extra}]'" in message
    assert blocked[0] in message  # names the module that is not importable


def test_light_doors_import_without_any_host():
    # the base install: aslr and bm_ops (NumPy reference ops), the hwreshape command's modules
    hosts = ["torch", "brevitas", "keras", "tensorflow", "tf_keras", "qkeras", "hls4ml", "qonnx", "onnx"]
    hosts += ["onnxruntime", "finn", "nir", "numba", "lightning", "fvcore", "matplotlib", "sklearn"]
    stmt = "import aslr, bm_ops, bm_ops.cost, hwreshape.cli, hwreshape.env, hwreshape.extras, hls4ml_skiptrim"
    assert _import_blocked(stmt, hosts) is None


def test_needs_import_line_checks_on_import():
    err = _import_blocked("from hwreshape.extras import needs_lr_finder", ["torch_lr_finder"])
    assert err is not None and err[0] == "MissingExtraError" and err[2] == "lr-finder"
    assert _import_blocked("from hwreshape.extras import needs_torch", ["finn"]) is None
    with pytest.raises(ImportError, match="cannot import name 'needs_nothing'"):
        exec("from hwreshape.extras import needs_nothing", {})


def test_require_api():
    with pytest.raises(ValueError, match=r"unknown hwreshape extra 'tensorflow'; expected one of \["):
        require("tensorflow")
    assert issubclass(MissingExtraError, ImportError)
    err = MissingExtraError("keras", "bm_ops.keras", ["keras"])
    assert str(err) == (
        "bm_ops.keras needs the optional dependencies hwreshape[keras] (not importable: keras); "
        "install them with: pip install 'hwreshape[keras]'"
    )
    assert missing("torch") == []  # this test environment is the full development stack


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(extra: str, seen: set[str] | None = None) -> set[str]:
    """Distribution names an extra pulls in, following ``hwreshape[...]`` self references."""
    seen = set() if seen is None else seen
    names: set[str] = set()
    if extra in seen:
        return names
    seen.add(extra)
    for req in OPTIONAL[extra]:
        m = re.match(r"([A-Za-z0-9_.\-]+)(\[([^\]]+)\])?", req)
        if _norm(m.group(1)) == "hwreshape":
            for sub in m.group(3).split(","):
                names |= _requirement_names(sub.strip(), seen)
        else:
            names.add(_norm(m.group(1)))
    return names


def test_extras_checked_in_code_are_declared_in_pyproject():
    dists = metadata.packages_distributions()
    for extra, modules in EXTRAS.items():
        assert extra in OPTIONAL, f"hwreshape.extras names [{extra}], pyproject.toml does not declare it"
        declared = _requirement_names(extra)
        for mod in modules:
            providers = {_norm(d) for d in dists.get(mod, [])}
            assert providers & declared, (
                f"[{extra}] checks module {mod!r} (from {providers}), not in {declared}"
            )


def test_base_install_is_small_and_one_tensorflow():
    base = {_norm(re.match(r"[A-Za-z0-9_.\-]+", r).group(0)) for r in PYPROJECT["project"]["dependencies"]}
    assert base == {"numpy", "scipy", "rich", "tqdm"}
    every = set().union(*(_requirement_names(e) for e in OPTIONAL))
    assert "tensorflow-cpu" not in every and "tensorflow" in every  # tf-keras requires `tensorflow`
    pins = {
        _norm(ln.split("==")[0]) for ln in (REPO / "constraints.txt").read_text().splitlines() if "==" in ln
    }
    assert "tensorflow" in pins and "tensorflow-cpu" not in pins


def test_installed_environment_has_one_tensorflow():
    installed = {_norm(d.metadata["Name"]) for d in metadata.distributions()}
    tfs = sorted(installed & {"tensorflow", "tensorflow-cpu", "tensorflow-intel", "tf-nightly"})
    assert len(tfs) <= 1, (
        f"several TensorFlow distributions share one site-packages: {tfs} (run `make setup`)"
    )


def _clean_copy(dst: Path) -> Path:
    """The tracked and untracked-but-not-ignored files of the checkout, as a fresh clone would have them."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for raw in filter(None, files):
        src = REPO / raw.decode()
        if src.is_file():
            (dst / raw.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / raw.decode())
    return dst


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    src = _clean_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    code = (
        "import sys; from setuptools import build_meta as b; out = sys.argv[1]; "  # build_sdist rewrites sys.argv
        "print(b.build_sdist(out)); print(b.build_wheel(out))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=src, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = sorted(p.name for p in out.iterdir())
    sdists, wheels = list(out.glob("*.tar.gz")), list(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, (found, proc.stdout[-1500:], proc.stderr[-1500:])
    sdist, wheel = sdists[0], wheels[0]
    return src, sdist, wheel


def _shipped_sources(src: Path) -> set[str]:
    pkgs = ("aslr", "bm_ops", "finn_s2n2", "hls4ml_skiptrim", "hwreshape")
    return {
        p.relative_to(src).as_posix()
        for pkg in pkgs
        for p in (src / pkg).rglob("*")
        if p.suffix in {".py", ".h", ".hpp", ".cpp"} and "__pycache__" not in p.parts
    }


def test_wheel_contents(built):
    src, _, wheel = built
    assert wheel.name == f"hwreshape-{PYPROJECT['project']['version']}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        info = f"hwreshape-{PYPROJECT['project']['version']}.dist-info"
        meta = zf.read(f"{info}/METADATA").decode()
        entry_points = zf.read(f"{info}/entry_points.txt").decode()
        license_text = zf.read(f"{info}/licenses/LICENSE").decode()
    missing_files = _shipped_sources(src) - names
    assert not missing_files, f"not in the wheel: {sorted(missing_files)}"
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "notebooks/", "docs/"))]
    assert license_text.startswith("BSD 3-Clause License")
    assert "License-Expression: BSD-3-Clause" in meta
    assert "hwreshape = hwreshape.cli:main" in entry_points
    assert "[hls4ml.backends]" in entry_points
    assert "hls4ml_skiptrim = hls4ml_skiptrim.hls4ml.plugin:register" in entry_points
    assert "bm_ops = bm_ops.hls4ml:register" in entry_points
    for extra in EXTRAS:
        assert f"Provides-Extra: {extra}" in meta
    assert 'Requires-Dist: finn-plus<1.7,>=1.6.1; extra == "finn"' in meta


def test_sdist_contents(built):
    src, sdist, _ = built
    root = sdist.name[: -len(".tar.gz")]
    with tarfile.open(sdist) as tf:
        names = {n[len(root) + 1 :] for n in tf.getnames()}
    for need in ("LICENSE", "pyproject.toml", "README.md", "CITATION.cff", "CHANGELOG.md"):
        assert need in names, f"{need} not in the sdist"
    missing_files = _shipped_sources(src) - names
    assert not missing_files, f"not in the sdist: {sorted(missing_files)}"


def test_env_names_the_extra_of_a_missing_host():
    from hwreshape.env import HOST_EXTRA, HOSTS, collect

    assert {name for name, *_ in HOSTS} == set(HOST_EXTRA) and set(HOST_EXTRA.values()) <= set(EXTRAS)
    (status, *_) = collect([("torch", "hwreshape-no-such-distribution", "import json", "main")])
    assert not status.ok
    assert status.detail == (
        "not installed (distribution 'hwreshape-no-such-distribution'; pip install 'hwreshape[torch]')"
    )


def test_ci_entry_point_parses_and_names_a_bad_stage():
    ci = REPO / ".ci" / "run"
    assert subprocess.run(["bash", "-n", str(ci)], capture_output=True).returncode == 0
    proc = subprocess.run(["bash", str(ci), "nope"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown stage 'nope' (expected setup, test, wheel or wheel-smoke)" in proc.stderr
