"""The S2N2 HLS C++ (``lif_mvau.hpp``) and the g++ helpers that compile it for C-simulation.

The header needs only ``ap_int.h``/``hls_stream.h``, taken from the hls4ml wheel
(``hwreshape.compat.ap_types_include``).  Every parameter of ``s2n2::LIF_MVAU`` is a template argument, as
HLS synthesises it.  Two kinds of executables use it:

* per FINN node (``LIF_MVAU_hls.compile_singlenode_code``): one instance, one call per frame (tick);
* :func:`run_harness`: one generated source with one template instance per test configuration, compiled
  once per batch of configurations (cached by source hash), to check many random configurations against
  the python execution.

:func:`syntax_check` runs ``g++ -fsyntax-only -Wall`` on FINN-generated code against finn-hlslib.
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
#: open stand-ins for Vitis-only headers (``ap_axi_sdata.h``: finn-hlslib needs only ``qdma_axis``)
OPEN_INCLUDE = HLS_DIR / "include"
#: ``ap_int.h`` wrapper in :data:`OPEN_INCLUDE` that gives the open ap_int types Vitis' ``sign_flag``
#: (finn-hlslib's LabelSelect reads it) and forwards to hls4ml's ``ap_int.h`` (``#include_next``)
SIGN_FLAG_SHIM = OPEN_INCLUDE / "ap_int.h"


CXX = os.environ.get("CXX", "g++")


def include_flags() -> list[str]:
    """``-I`` flags for the ap_types headers and this folder."""
    from hwreshape.compat import ap_types_include

    return [f"-I{ap_types_include()}", f"-I{HLS_DIR}"]


def finn_include_flags(code_dir: str | Path | None = None) -> list[str]:
    """Flags for FINN's own generated HLS code: ``ap_types`` and finn-hlslib as system headers (their own
    warnings are not ours), the open ``ap_axi_sdata.h`` and the ``sign_flag`` wrapper of ``ap_int.h``
    (:data:`SIGN_FLAG_SHIM`; :data:`OPEN_INCLUDE` comes first), this folder and ``code_dir``."""
    from hwreshape.compat import ap_types_include, finn_hlslib_dir

    flags = [
        f"-isystem{OPEN_INCLUDE}",
        f"-isystem{ap_types_include()}",
        f"-isystem{finn_hlslib_dir()}",
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


def compile_finn_hls_node(inst) -> Path:
    """Compile the cppsim code that FINN's ``code_generation_cppsim`` wrote for one of FINN's *own* HLS nodes
    (e.g. ``LabelSelect_hls``, ``TLastMarker_hls``, ``StreamingDataWidthConverter_hls``) with g++ and open
    headers instead of FINN's ``compile_singlenode_code`` (which links Vitis' csim libraries): FINN's
    ``npy2apintstream``/cnpy templates, finn-hlslib, ``ap_types`` and this project's shims
    (:func:`finn_include_flags`).  Sets the node's ``executable_path``; FINN's own ``execute_node`` then runs
    it (``exec_mode="cppsim"``).  RuntimeError with g++'s log (naming the node) when it does not compile."""
    import finn

    code_dir = Path(inst.get_nodeattr("code_gen_dir_cppsim"))
    sources = sorted(code_dir.glob("*.cpp"))
    if not sources:
        raise RuntimeError(
            f"{inst.onnx_node.op_type} node '{inst.onnx_node.name}': no generated code in '{code_dir}'"
        )
    npy2stream = Path(finn.__file__).resolve().parent / "templates" / "npy2stream"
    exe = code_dir / "node_model"
    cmd = [CXX, "-std=c++17", "-O1", "-w", f"-I{npy2stream}", *finn_include_flags(code_dir)]
    cmd += [*map(str, sources), str(npy2stream / "cnpy.cpp"), "-lz", "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(
            f"{inst.onnx_node.op_type} node '{inst.onnx_node.name}': g++ failed ({' '.join(cmd)}):\n"
            f"{res.stderr[-4000:]}"
        )
    inst.set_nodeattr("executable_path", str(exe))
    return exe


def cache_dir() -> Path:
    d = Path(os.environ.get("S2N2_CACHE_DIR") or Path(tempfile.gettempdir()) / "finn_s2n2_cache")
    d.mkdir(parents=True, exist_ok=True)
    return d


def pe_partition_weights(w: np.ndarray, simd: int, pe: int) -> np.ndarray:
    """Reorder W (MW, MH) into the layout of ``s2n2::LIF_MVAU``'s weights, flattened:
    ``[pe][simd][nf * SF + sf]`` = W[row = sf*SIMD + s, col = nf*PE + pe]."""
    mw, mh = w.shape
    sf, nf = mw // simd, mh // pe
    return np.asarray(w).reshape(sf, simd, nf, pe).transpose(3, 1, 2, 0).reshape(-1)


_CASE_KEYS = (
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
)


def weight_bits(w) -> int:
    """Bits of the smallest signed integer type that holds every weight (at least 2)."""
    lo, hi = int(np.min(w, initial=0)), int(np.max(w, initial=0))
    bits = 2
    while not (-(1 << (bits - 1)) <= lo and hi <= (1 << (bits - 1)) - 1):
        bits += 1
    return bits


_CASE_FUNC = """
static void run_{i}(const std::vector<int32_t> &wr, const std::vector<uint8_t> &x, unsigned frames,
                    std::vector<int32_t> &res) {{
    static ap_int<{wb}> w[{pe}][{simd}][{nw}];
    for (unsigned k = 0; k < {pe} * {simd} * {nw}; k++) w[k / ({simd} * {nw})][(k / {nw}) % {simd}][k % {nw}] = wr[k];
    hls::stream<ap_uint<{simd}> > in;
    hls::stream<ap_uint<{pe} * {obits}> > out;
    for (size_t v = 0; v < (size_t)frames * {p}; v++)
        for (unsigned sf = 0; sf < {mw} / {simd}; sf++) {{
            ap_uint<{simd}> word = 0;
            for (unsigned s = 0; s < {simd}; s++) word[s] = x[v * {mw} + sf * {simd} + s] & 1;
            in.write(word);
        }}
    s2n2::LIF_MVAU<{targs}>(in, out, w, frames);
    if (!in.empty()) std::exit(10);
    while (!out.empty()) {{
        ap_uint<{pe} * {obits}> word = out.read();
        for (unsigned q = 0; q < {pe}; q++) {{
            unsigned v = 0;
            for (unsigned b = 0; b < {obits}; b++) v |= (unsigned)word[q * {obits} + b] << b;
            res.push_back((int32_t)v);
        }}
    }}
}}
"""

_MAIN = """
int main(int argc, char **argv) {{
    if (argc != 3) return 2;
    FILE *f = std::fopen(argv[1], "rb");
    if (!f) return 3;
    int64_t ncases = 0;
    if (std::fread(&ncases, 8, 1, f) != 1 || ncases != {n}) return 4;
    std::vector<int32_t> res;
    for (int64_t i = 0; i < ncases; i++) {{
        int64_t h[{nh}];
        if (std::fread(h, 8, {nh}, f) != {nh}) return 5;
        const unsigned frames = (unsigned)h[{nh} - 1];
        std::vector<int32_t> wr((size_t)h[1] * h[2]);
        if (std::fread(wr.data(), 4, wr.size(), f) != wr.size()) return 6;
        std::vector<uint8_t> x((size_t)frames * h[6] * h[1]);
        if (!x.empty() && std::fread(x.data(), 1, x.size(), f) != x.size()) return 7;
        switch (i) {{
{calls}
        }}
    }}
    std::fclose(f);
    FILE *o = std::fopen(argv[2], "wb");
    if (!o) return 9;
    if (!res.empty()) std::fwrite(res.data(), 4, res.size(), o);
    std::fclose(o);
    return 0;
}}
"""


def _harness_source(cases: list[dict]) -> str:
    """C++ with one ``s2n2::LIF_MVAU`` template instance per case and a main that streams each case's input
    (binary file, see :func:`run_harness`) through its instance and writes the unpacked outputs."""
    from finn_s2n2 import numerics

    funcs, calls = [], []
    for i, c in enumerate(cases):
        wb = weight_bits(c["weights"])
        mw, mh, simd, pe = c["MW"], c["MH"], c["SIMD"], c["PE"]
        targs = (
            f"{mw}, {mh}, {simd}, {pe}, {c['T']}, {c['P']}, {c['K']}, {int(c['threshold'])}LL, "
            f"{str(bool(c['saturate'])).lower()}, {str(bool(c['reset_subtract'])).lower()}, "
            f"{str(bool(c['counts'])).lower()}, {c['D']}, {c['OBITS']}, {c['acc_bits']}, "
            f"{numerics.current_bits(mw, wb)}, ap_int<{wb}>"
        )
        nw = (mh // pe) * (mw // simd)
        funcs.append(
            _CASE_FUNC.format(
                i=i, wb=wb, pe=pe, simd=simd, nw=nw, obits=c["OBITS"], p=c["P"], mw=mw, targs=targs
            )
        )
        calls.append(f"            case {i}: run_{i}(wr, x, frames, res); break;")
    head = (
        "// generated by finn_s2n2.finn.hls.run_harness: one s2n2::LIF_MVAU instance per case\n"
        "#include <cstdint>\n#include <cstdio>\n#include <cstdlib>\n#include <vector>\n"
        '#include "lif_mvau.hpp"\n'
    )
    return head + "".join(funcs) + _MAIN.format(n=len(cases), nh=len(_CASE_KEYS) + 1, calls="\n".join(calls))


def harness_binary(cases: list[dict]) -> Path:
    """The harness executable for ``cases``, compiled once per (generated source, header) hash."""
    src = _harness_source(cases)
    h = hashlib.sha256(src.encode() + HEADER.read_bytes() + CXX.encode()).hexdigest()[:16]
    exe = cache_dir() / f"lif_mvau_harness_{h}"
    if not exe.exists():
        cpp = cache_dir() / f"lif_mvau_harness_{h}.cpp"
        cpp.write_text(src)
        tmp = exe.with_suffix(f".tmp{os.getpid()}")
        compile_cpp([cpp], tmp)
        os.replace(tmp, exe)
    return exe


def run_harness(cases: list[dict]) -> list[np.ndarray]:
    """Run many configurations, each through its own ``s2n2::LIF_MVAU`` template instance, in one process.

    Each case: ``acc_bits, MW, MH, SIMD, PE, T, P, K, threshold, saturate, reset_subtract, counts, D, OBITS``,
    ``weights`` (MW, MH) ints and ``x`` (frames, P, MW) bits.  Returns per case the output elements as
    int64 (frames or samples, P, MH) — exactly what the C++ streamed out, unpacked.
    """
    keys = list(_CASE_KEYS)
    chunks = [np.array([len(cases)], dtype=np.int64).tobytes()]
    for c in cases:
        x = np.asarray(c["x"], dtype=np.uint8)
        frames = x.shape[0]
        hdr = np.array([int(c[k]) for k in keys] + [frames], dtype=np.int64)
        w = pe_partition_weights(np.asarray(c["weights"], dtype=np.int64), c["SIMD"], c["PE"]).astype(
            np.int32
        )
        chunks += [hdr.tobytes(), w.tobytes(), x.reshape(-1).tobytes()]
    with tempfile.TemporaryDirectory() as td:
        inp, outp = Path(td) / "in.bin", Path(td) / "out.bin"
        inp.write_bytes(b"".join(chunks))
        res = subprocess.run(
            [str(harness_binary(cases)), str(inp), str(outp)], capture_output=True, text=True
        )
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
