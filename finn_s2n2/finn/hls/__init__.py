"""The S2N2 HLS C++ (``lif_mvau.hpp``) and the g++ helpers that compile it for C-simulation.

No Vivado and no finn-hlslib: the header needs only ``ap_int.h``/``hls_stream.h``, taken from the hls4ml
wheel (``hwreshape.compat.ap_types_include``), see ENVIRONMENT.md "FINN".  Two executables use the header:

* per FINN node (``LIF_MVAU_hls.compile_singlenode_code``): every parameter a template argument, exactly
  what HLS would synthesise;
* one generic harness (``lif_mvau_harness.cpp``, compiled once and cached by source hash) that calls the
  same ``lif_mvau_core`` with the configuration read at run time — used to check hundreds of random
  configurations against the python execution without one compile per configuration.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HLS_DIR = Path(__file__).resolve().parent
HEADER = HLS_DIR / "lif_mvau.hpp"
HARNESS_SRC = HLS_DIR / "lif_mvau_harness.cpp"
#: open stand-ins for Vitis-only headers (``ap_axi_sdata.h``: finn-hlslib needs only ``qdma_axis``)
OPEN_INCLUDE = HLS_DIR / "include"

#: harness limits (its stream word types are ap_uint<64> in, ap_uint<1024> out)
HARNESS_MAX_SIMD = 64
HARNESS_MAX_OUT_BITS = 1024

CXX = os.environ.get("CXX", "g++")


def include_flags() -> list[str]:
    """``-I`` flags for the ap_types headers and this folder."""
    from hwreshape.compat import ap_types_include

    return [f"-I{ap_types_include()}", f"-I{HLS_DIR}"]


def finn_include_flags(code_dir: str | Path | None = None) -> list[str]:
    """Flags for FINN's own generated HLS code: ``ap_types`` and finn-hlslib as system headers (their own
    warnings are not ours), the open ``ap_axi_sdata.h``, this folder and ``code_dir``."""
    from hwreshape.compat import ap_types_include, finn_hlslib_dir

    flags = [
        f"-isystem{ap_types_include()}",
        f"-isystem{finn_hlslib_dir()}",
        f"-isystem{OPEN_INCLUDE}",
        f"-I{HLS_DIR}",
    ]
    if code_dir is not None:
        flags.append(f"-I{code_dir}")
    return flags


def syntax_check(source: str | Path, code_dir: str | Path | None = None) -> str:
    """``g++ -std=c++14 -fsyntax-only -Wall`` of one generated source against finn-hlslib + ap_types.

    HLS pragmas are unknown to g++ and not reported (``-Wno-unknown-pragmas``).  Returns g++'s diagnostics
    (empty when clean); raises RuntimeError with them when g++ fails."""
    source = Path(source)
    cmd = [CXX, "-std=c++14", "-fsyntax-only", "-Wall", "-Wno-unknown-pragmas"]
    cmd += finn_include_flags(code_dir or source.parent) + [str(source)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"g++ -fsyntax-only failed on {source}:\n{res.stderr[-4000:]}")
    return res.stderr


def compile_cpp(sources: list[str | Path], exe: str | Path, opt: str = "-O1") -> Path:
    """Compile ``sources`` into ``exe`` with g++ (C++14, ap_types headers); raise RuntimeError with g++'s log."""
    cmd = [CXX, "-std=c++14", opt, "-w", *include_flags(), *map(str, sources), "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"g++ failed ({' '.join(cmd)}):\n{res.stderr[-4000:]}")
    return Path(exe)


def cache_dir() -> Path:
    d = Path(os.environ.get("S2N2_CACHE_DIR") or Path(tempfile.gettempdir()) / "finn_s2n2_cache")
    d.mkdir(parents=True, exist_ok=True)
    return d


def harness_binary() -> Path:
    """The generic harness executable, compiled once per (header, harness) source hash."""
    h = hashlib.sha256(HEADER.read_bytes() + HARNESS_SRC.read_bytes() + CXX.encode()).hexdigest()[:16]
    exe = cache_dir() / f"lif_mvau_harness_{h}"
    if not exe.exists():
        tmp = exe.with_suffix(f".tmp{os.getpid()}")
        compile_cpp([HARNESS_SRC], tmp)
        os.replace(tmp, exe)
    return exe


def pe_partition_weights(w: np.ndarray, simd: int, pe: int) -> np.ndarray:
    """Reorder W (MW, MH) into the PE-partitioned layout of ``lif_mvau_core``: [pe][nf][sf][simd]."""
    mw, mh = w.shape
    sf, nf = mw // simd, mh // pe
    # W[row = sf*SIMD + s, col = nf*PE + p] -> [p, nf, sf, s]
    return np.asarray(w).reshape(sf, simd, nf, pe).transpose(3, 2, 0, 1).reshape(-1)


def run_harness(cases: list[dict]) -> list[np.ndarray]:
    """Run many configurations through the generic C++ harness in one process.

    Each case: ``acc_bits, MW, MH, SIMD, PE, T, P, K, threshold, saturate, reset_subtract, counts, D, OBITS``,
    ``weights`` (MW, MH) ints and ``x`` (frames, P, MW) bits.  Returns per case the output elements as
    int64 (frames or samples, P, MH) — exactly what the C++ streamed out, unpacked.
    """
    keys = [
        "acc_bits",
        "MW",
        "MH",
        "SIMD",
        "PE",
        "T",
        "P",
        "K",
        "threshold",
        "saturate",
        "reset_subtract",
        "counts",
        "D",
        "OBITS",
    ]
    chunks = [np.array([len(cases)], dtype=np.int64).tobytes()]
    for c in cases:
        x = np.asarray(c["x"], dtype=np.uint8)
        frames = x.shape[0]
        if c["SIMD"] > HARNESS_MAX_SIMD or c["PE"] * c["OBITS"] > HARNESS_MAX_OUT_BITS:
            raise ValueError("configuration exceeds the harness stream widths")
        hdr = np.array([int(c[k]) for k in keys] + [frames], dtype=np.int64)
        w = pe_partition_weights(np.asarray(c["weights"], dtype=np.int64), c["SIMD"], c["PE"]).astype(
            np.int32
        )
        chunks += [hdr.tobytes(), w.tobytes(), x.reshape(-1).tobytes()]
    with tempfile.TemporaryDirectory() as td:
        inp, outp = Path(td) / "in.bin", Path(td) / "out.bin"
        inp.write_bytes(b"".join(chunks))
        res = subprocess.run([str(harness_binary()), str(inp), str(outp)], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"harness failed: {res.stderr[-2000:]}")
        flat = np.fromfile(outp, dtype=np.int32).astype(np.int64)
    outs, pos = [], 0
    for c in cases:
        frames = np.asarray(c["x"]).shape[0]
        rows = frames // c["T"] if c["counts"] else frames
        n = rows * c["P"] * c["MH"]
        outs.append(flat[pos : pos + n].reshape(rows, c["P"], c["MH"]))
        pos += n
    if pos != flat.size:
        raise RuntimeError(f"harness produced {flat.size} values, expected {pos}")
    return outs
