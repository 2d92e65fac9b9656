"""``hwreshape env``: which host versions this installation runs on, and whether each one actually works.

For every host the installed distribution version is read from its metadata and the host is *imported* in a
child interpreter (TensorFlow/QKeras/finn-plus have import-time side effects, and QKeras needs tf-keras
selected before TensorFlow loads, so each group gets a fresh process).  A host that is missing, or installed
but failing to import, makes :func:`main` exit non-zero with a one-line explanation naming it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata

#: (display name, distribution name, import statement, interpreter group)
HOSTS: list[tuple[str, str, str, str]] = [
    (
        "finn-plus",
        "finn-plus",
        "from hwreshape.compat import prepare_finn; prepare_finn(); import finn.builder.build_dataflow",
        "main",
    ),
    ("qonnx", "qonnx", "import qonnx.core.modelwrapper", "main"),
    ("hls4ml", "hls4ml", "import hls4ml", "main"),
    ("brevitas", "brevitas", "import brevitas.nn", "main"),
    ("torch", "torch", "import torch", "main"),
    ("tensorflow", "tensorflow", "import tensorflow", "main"),
    ("keras", "keras", "import keras", "main"),
    ("nir", "nir", "import nir", "main"),
    ("onnxruntime", "onnxruntime", "import onnxruntime", "main"),
    ("tf-keras", "tf-keras", "import tf_keras", "legacy"),
    ("qkeras", "qkeras", "import qkeras", "legacy"),
]

#: the hwreshape extra that installs each host (``pip install 'hwreshape[<extra>]'``, docs/install.md)
HOST_EXTRA: dict[str, str] = {
    "finn-plus": "finn",
    "qonnx": "qonnx",
    "hls4ml": "hls4ml",
    "brevitas": "torch",
    "torch": "torch",
    "tensorflow": "keras",
    "keras": "keras",
    "nir": "snn",
    "onnxruntime": "qonnx",
    "tf-keras": "qkeras",
    "qkeras": "qkeras",
}

_CHILD = r"""
import json, sys, traceback
res = {}
for name, stmt in json.loads(sys.argv[1]):
    try:
        exec(stmt, {})
        res[name] = None
    except BaseException as e:
        res[name] = (type(e).__name__ + ": " + str(e)).splitlines()[0][:300] if str(e) else type(e).__name__
print("ENVRESULT " + json.dumps(res))
"""


@dataclass
class HostStatus:
    name: str
    version: str | None
    ok: bool
    detail: str = ""
    required: bool = True


def _import_group(pairs: list[tuple[str, str]], legacy: bool, timeout: float = 300) -> dict[str, str | None]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if legacy:
        env["TF_USE_LEGACY_KERAS"] = "1"
    else:
        env.pop("TF_USE_LEGACY_KERAS", None)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(pairs)],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {name: f"import timed out after {timeout:.0f} s" for name, _ in pairs}
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("ENVRESULT ")]
    if not line:
        msg = (proc.stderr.strip().splitlines() or ["interpreter crashed"])[-1][:300]
        return {name: f"import check crashed: {msg}" for name, _ in pairs}
    return json.loads(line[-1][len("ENVRESULT ") :])


def gxx_version() -> str | None:
    gxx = shutil.which("g++")
    if gxx is None:
        return None
    out = subprocess.run([gxx, "--version"], capture_output=True, text=True).stdout.splitlines()
    m = re.search(r"(\d+\.\d+\.\d+)", out[0]) if out else None
    return m.group(1) if m else (out[0] if out else "unknown")


def collect(hosts: list[tuple[str, str, str, str]] | None = None) -> list[HostStatus]:
    """Status of every host plus g++ and the ap_types headers (all required) and Vivado/Vitis (optional)."""
    from hwreshape.compat import ap_types_include, vivado_tools

    hosts = HOSTS if hosts is None else hosts
    versions: dict[str, str | None] = {}
    for name, dist, _, _ in hosts:
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = None
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, _, stmt, group in hosts:
        if versions[name] is not None:
            groups.setdefault(group, []).append((name, stmt))
    errors: dict[str, str | None] = {}
    with ThreadPoolExecutor(max_workers=len(groups) or 1) as pool:
        futures = [pool.submit(_import_group, pairs, group == "legacy") for group, pairs in groups.items()]
        for f in futures:
            errors.update(f.result())
    out = []
    for name, dist, _, _ in hosts:
        if versions[name] is None:
            extra = HOST_EXTRA.get(name)
            hint = f"; pip install 'hwreshape[{extra}]'" if extra else ""
            out.append(HostStatus(name, None, False, f"not installed (distribution '{dist}'{hint})"))
        elif errors.get(name):
            out.append(HostStatus(name, versions[name], False, f"installed but broken: {errors[name]}"))
        else:
            out.append(HostStatus(name, versions[name], True))
    gxx = gxx_version()
    out.append(
        HostStatus("g++", gxx, gxx is not None, "" if gxx else "g++ not on PATH (C-simulation needs it)")
    )
    try:
        out.append(HostStatus("ap_types include", ap_types_include(), True))
    except FileNotFoundError as e:
        out.append(HostStatus("ap_types include", None, False, str(e)))
    for tool, path in vivado_tools().items():
        out.append(
            HostStatus(tool, path, path is not None, "" if path else "absent (not needed)", required=False)
        )
    return out


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    statuses = collect()
    table = Table(title="hwreshape env")
    table.add_column("host")
    table.add_column("version / path", overflow="fold")
    table.add_column("status", overflow="fold")
    for s in statuses:
        status = "ok" if s.ok else (s.detail if not s.required else f"[red]{s.detail}[/red]")
        table.add_row(s.name, s.version or "-", status)
    Console(width=140).print(table)
    bad = [s for s in statuses if s.required and not s.ok]
    if bad:
        print("hwreshape env: " + "; ".join(f"{s.name}: {s.detail}" for s in bad), file=sys.stderr)
        return 1
    return 0
