"""Runtime-configured C++ harness of ``nnet_bm_conv.h`` (compiled once per header version, cached by hash).

Used by the equivalence tests to check many random layers bit for bit against :mod:`bm_ops.fixedpoint`
without one hls4ml build per layer: :func:`run_accum` executes exactly the header's log/add/max/exp code and
returns the raw accumulators (step 4 before the cast to ``result_t``; the cast itself is exercised through
hls4ml ``compile()``/``predict()``).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bm_ops.fixedpoint import BMFixedLayer

__all__ = ["build", "run_accum"]

_HERE = Path(__file__).resolve().parent
_lib = None


def build() -> ctypes.CDLL:
    """Compile (or reuse) the harness shared library; cached under the temp dir keyed by the sources' hash."""
    global _lib
    if _lib is not None:
        return _lib
    from hwreshape.compat import ap_types_include

    src = _HERE / "harness.cpp"
    hdr = _HERE / "nnet_utils" / "nnet_bm_conv.h"
    key = hashlib.sha1(src.read_bytes() + hdr.read_bytes()).hexdigest()[:16]
    out_dir = Path(tempfile.gettempdir()) / f"bm_ops_harness_{os.getuid()}"
    out_dir.mkdir(parents=True, exist_ok=True)
    so = out_dir / f"bm_harness_{key}.so"
    if not so.exists():
        tmp = so.with_suffix(f".{os.getpid()}.tmp")
        cmd = [
            "g++",
            "-O2",
            "-std=c++14",
            "-shared",
            "-fPIC",
            f"-I{_HERE}",
            f"-I{ap_types_include()}",
            str(src),
            "-o",
            str(tmp),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"bm harness build failed:\n{r.stderr[-4000:]}")
        os.replace(tmp, so)
    lib = ctypes.CDLL(str(so))
    p = ctypes.POINTER(ctypes.c_longlong)
    lib.bm_conv_rt.argtypes = [p, ctypes.c_int, p, p, p, p, p, p, p]
    lib.bm_conv_rt.restype = ctypes.c_int
    _lib = lib
    return lib


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(ctypes.c_longlong))


def run_accum(x_raw: np.ndarray, layer: BMFixedLayer, stride=(1, 1), pads=(0, 0, 0, 0)) -> np.ndarray:
    """Raw accumulators ``(N, F, OH, OW)`` computed by the C++ header for raw NCHW inputs ``x_raw``.

    ``pads`` = (top, bottom, left, right).
    """
    lib = build()
    x_raw = np.asarray(x_raw, dtype=np.int64)
    n, c, h, w = x_raw.shape
    f, c2, kh, kw = layer.shape
    if c != c2:
        raise ValueError(f"run_accum: x has {c} channels, layer expects {c2}")
    sh, sw = stride
    pt, pb, pl, pr = pads
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    it, cfg = layer.input_t, layer.cfg
    gi = np.array(
        [
            h,
            w,
            c,
            kh,
            kw,
            f,
            sh,
            sw,
            pt,
            pl,
            oh,
            ow,
            it.width,
            int(it.signed),
            it.frac,
            cfg.log_table_bits,
            cfg.log_frac_bits,
            cfg.exp_table_bits,
            cfg.exp_frac_bits,
            cfg.accum_frac_bits,
            layer.sentinel,
        ],
        dtype=np.int64,
    )
    xs = np.ascontiguousarray(x_raw.transpose(0, 2, 3, 1))  # channels_last
    vp = np.ascontiguousarray(layer.v_pos, dtype=np.int64)
    vn = np.ascontiguousarray(layer.v_neg, dtype=np.int64)
    b = np.ascontiguousarray(layer.bias, dtype=np.int64)
    lt = np.ascontiguousarray(layer.log_t, dtype=np.int64)
    et = np.ascontiguousarray(layer.exp_t, dtype=np.int64)
    out = np.zeros((n, oh, ow, f), dtype=np.int64)
    rc = lib.bm_conv_rt(_ptr(xs), n, _ptr(gi), _ptr(vp), _ptr(vn), _ptr(b), _ptr(lt), _ptr(et), _ptr(out))
    if rc != 0:
        raise ValueError(f"run_accum: harness rejected the layer (rc={rc})")
    return out.transpose(0, 3, 1, 2)
