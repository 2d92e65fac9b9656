"""Fast BM convolution kernel: JIT-built C++ (``_kernel.cpp``, plain g++ + OpenMP) behind a torch autograd Function.

Same function as :func:`bm_ops.functional.bm_conv2d` (seed 000_5bd4b4fcc7d8a338, *The BM Convolutional Layer*)
without materialising the ``(N, positions, F, C*K*K)`` tensor: see the header comment of ``_kernel.cpp``.

Build: at first use, ``g++ -O3 -march=native -fopenmp -shared`` into a cache folder keyed by the source hash, the
compiler and the CPU flags (``$BM_OPS_CACHE`` or ``~/.cache/hwreshape/bm_ops``), loaded with ``ctypes`` (no torch
headers, so the build takes ~2 s). ``python -m bm_ops._kernel`` builds it ahead of time.
Float32 and float64 tensors are supported (float64 for gradcheck); the compute runs on CPU only.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

_SRC = Path(__file__).with_name("_kernel.cpp")
_LOCK = threading.Lock()
_LIB = None


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def cache_dir() -> Path:
    env = os.environ.get("BM_OPS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hwreshape" / "bm_ops"


def build(force: bool = False) -> Path:
    """Compile ``_kernel.cpp`` (if not cached) and return the shared library path."""
    cxx = os.environ.get("CXX", "g++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"bm_ops fast kernel needs a C++ compiler: {cxx!r} not found (set CXX)")
    flags = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-fPIC", "-shared", "-std=c++17"]
    key = hashlib.sha256(
        _SRC.read_bytes() + " ".join([cxx, *flags, "-lmvec", platform.machine(), _cpu_flags()]).encode()
    ).hexdigest()[:16]
    out = cache_dir() / f"bm_kernel_{key}.so"
    if out.exists() and not force:
        return out
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home (some CI sandboxes): fall back to the temp folder
        out = Path(tempfile.gettempdir()) / "hwreshape_bm_ops" / out.name
        if out.exists() and not force:
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_so = Path(tmp) / out.name
        proc = subprocess.run(
            [cxx, *flags, str(_SRC), "-o", str(tmp_so), "-lmvec"], capture_output=True, text=True
        )
        if proc.returncode != 0:
            raise RuntimeError(f"bm_ops fast kernel build failed:\n{proc.stderr}")
        os.replace(tmp_so, out)  # atomic: concurrent builders never load a half-written file
    return out


def _lib():
    global _LIB
    if _LIB is None:
        with _LOCK:
            if _LIB is None:
                lib = ctypes.CDLL(str(build()))
                P = ctypes.c_void_p
                i = ctypes.c_int
                for name in ("bm_fwd_f32", "bm_fwd_f64"):
                    fn = getattr(lib, name)
                    fn.argtypes = [P, i, i, i, i, P, i, i, i, i, i, i, i, i, i, P, P, P, i]
                    fn.restype = None
                for name in ("bm_bwd_f32", "bm_bwd_f64"):
                    fn = getattr(lib, name)
                    fn.argtypes = [P, i, i, i, i, P, i, i, i, i, i, i, i, i, i, P, P, P, P, i]
                    fn.restype = None
                _LIB = lib
    return _LIB


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr()) if t is not None else None


def _suffix(dtype):
    import torch

    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"bm_ops fast kernel supports float32/float64 tensors, got {dtype}")


def _make_function():
    import torch

    class _BMConv2dFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, v_pos, v_neg, bias, stride, padding):
            sh, sw = stride
            ph, pw = padding
            n, c, h, w = x.shape
            f, _, kh, kw = v_pos.shape
            oh = (h + 2 * ph - kh) // sh + 1
            ow = (w + 2 * pw - kw) // sw + 1
            x_c = x.detach().contiguous()
            # tap-major (C, KH, KW, 2F): the 2F lanes of one tap are contiguous
            vcat = torch.cat([v_pos.detach(), v_neg.detach()], 0).permute(1, 2, 3, 0).contiguous()
            b = bias.detach().contiguous() if bias is not None else None
            out = x.new_empty((n, f, oh, ow))
            need_grad = any(ctx.needs_input_grad[:4])
            idx = torch.empty((n, oh, ow, 4 * f), dtype=torch.int32) if need_grad else None
            getattr(_lib(), "bm_fwd_" + _suffix(x.dtype))(
                _ptr(x_c),
                n,
                c,
                h,
                w,
                _ptr(vcat),
                f,
                kh,
                kw,
                sh,
                sw,
                ph,
                pw,
                oh,
                ow,
                _ptr(b),
                _ptr(out),
                _ptr(idx),
                torch.get_num_threads(),
            )
            if need_grad:
                ctx.save_for_backward(x_c, vcat, idx)
            ctx.conf = (n, c, h, w, f, kh, kw, sh, sw, ph, pw, oh, ow, bias is not None)
            return out

        @staticmethod
        def backward(ctx, gout):
            x_c, vcat, idx = ctx.saved_tensors
            n, c, h, w, f, kh, kw, sh, sw, ph, pw, oh, ow, has_bias = ctx.conf
            g = gout.contiguous()
            gx = torch.zeros_like(x_c)
            gv = torch.zeros_like(vcat)
            getattr(_lib(), "bm_bwd_" + _suffix(x_c.dtype))(
                _ptr(x_c),
                n,
                c,
                h,
                w,
                _ptr(vcat),
                f,
                kh,
                kw,
                sh,
                sw,
                ph,
                pw,
                oh,
                ow,
                _ptr(idx),
                _ptr(g),
                _ptr(gx),
                _ptr(gv),
                torch.get_num_threads(),
            )
            gv = gv.permute(3, 0, 1, 2)  # (2F, C, KH, KW)
            gb = g.sum(dim=(0, 2, 3)) if has_bias and ctx.needs_input_grad[3] else None
            return (
                gx if ctx.needs_input_grad[0] else None,
                gv[:f].contiguous() if ctx.needs_input_grad[1] else None,
                gv[f:].contiguous() if ctx.needs_input_grad[2] else None,
                gb,
                None,
                None,
            )

    return _BMConv2dFn


_FN = None


def bm_conv2d_fast(x, v_pos, v_neg, bias=None, stride=1, padding=0):
    """Fast BM convolution on torch tensors (CPU), differentiable; same contract as ``functional.bm_conv2d``."""
    import torch

    from bm_ops.functional import _check_conv_args

    global _FN
    if not all(isinstance(t, torch.Tensor) for t in (x, v_pos, v_neg)):
        raise TypeError("bm_conv2d_fast: x, v_pos and v_neg must be torch tensors")
    if x.device.type != "cpu":
        raise ValueError(f"bm_conv2d_fast: the compiled kernel runs on CPU, got x on {x.device}")
    if x.dtype != v_pos.dtype or x.dtype != v_neg.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(
            f"bm_conv2d_fast: x, v_pos, v_neg, bias must share a dtype, got x {x.dtype}, v_pos {v_pos.dtype}"
        )
    _suffix(x.dtype)
    if not torch.isfinite(x.detach()).all():
        raise ValueError("bm_conv2d_fast: x contains NaN or inf")
    _, stride, padding, _ = _check_conv_args(x, v_pos, v_neg, bias, stride, padding, where="bm_conv2d_fast")
    if _FN is None:
        _FN = _make_function()
    return _FN.apply(x, v_pos, v_neg, bias, stride, padding)


if __name__ == "__main__":
    print(build())
