"""Fast BM convolution: a C++ kernel (``_kernel.cpp``, plain g++ + OpenMP, loaded with ``ctypes``) registered as
the PyTorch custom op ``torch.ops.bm_ops.conv2d`` (``torch.library``: CPU kernel, fake/meta kernel, autograd).

Same function as :func:`bm_ops.functional.bm_conv2d` (Limonova et al., *The BM Convolutional Layer*) without
materialising the ``(N, positions, F, C*K*K)`` tensor: see the header comment of ``_kernel.cpp``.

* ``bm_ops::conv2d`` — forward, no arg-max bookkeeping (the same code serves inference and training);
  ``bm_ops::conv2d_backward`` — recomputes the arg-max taps and scatters the sub-gradients, so autograd keeps
  only ``x``, ``v_pos`` and ``v_neg`` (no ``(N, OH, OW, 4F)`` index tensor). Both have fake kernels, so
  ``torch.compile(fullgraph=True)``, ``torch.export`` and meta tensors trace through them; differentiating the
  backward again raises a clear error (the BM function is piecewise linear in ``v`` and ``x``: its second
  derivative is zero almost everywhere and not implemented).
* Build: one library per x86-64 ISA level (``-march=x86-64``, ``x86-64-v3``, ``x86-64-v4``; never ``native``) in
  a cache folder keyed by the source hash and the flags (``$BM_OPS_CACHE`` or ``~/.cache/hwreshape/bm_ops``).
  The CPU's level is read from ``/proc/cpuinfo`` at load time and the best available library is loaded (runtime
  dispatch), so a cache shared by different CPUs never runs an illegal instruction. ``python -m bm_ops._kernel``
  builds every level ahead of time (``make setup`` does); a prebuilt library is used without a compiler.
* No library and no compiler (``$CXX`` or ``g++`` not found) or a failed build: one ``RuntimeWarning`` and the
  torch reference (:func:`bm_ops.functional.bm_conv2d`, plain autograd) computes instead, same results, slower
  (under ``torch.compile`` the op itself falls back to it).

Float32 and float64 tensors are supported (float64 for gradcheck); the compiled kernel runs on CPU only.
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
import warnings
from pathlib import Path

__all__ = ["bm_conv2d_fast", "build", "build_all", "kernel_available", "cache_dir", "cpu_level"]

_SRC = Path(__file__).with_name("_kernel.cpp")
_LOCK = threading.Lock()
_LIB = None
_LIB_ERROR: str | None = None
_WARNED = False
_BASE_FLAGS = ["-O3", "-fopenmp", "-fno-math-errno", "-fPIC", "-shared", "-std=c++17"]
_X86_LEVELS = {
    4: ["-march=x86-64-v4", "-mtune=generic", "-mprefer-vector-width=512"],
    3: ["-march=x86-64-v3", "-mtune=generic"],
    1: ["-march=x86-64", "-mtune=generic"],
}
# /proc/cpuinfo flags each level needs (the x86-64 psABI levels, as far as the kernel's code generation goes)
_LEVEL_FLAGS = {
    4: {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma", "bmi2"},
    3: {"avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm", "xsave"},
}


def _is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def cpu_level() -> int:
    """The x86-64 ISA level of this CPU (4, 3 or 1; 0 on other architectures) from ``/proc/cpuinfo``."""
    if not _is_x86():
        return 0
    try:
        flags: set[str] = set()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        return 1
    for level in (4, 3):
        if _LEVEL_FLAGS[level] <= flags:
            return level
    return 1


def _levels() -> dict[int, list[str]]:
    return _X86_LEVELS if _is_x86() else {0: []}


def cache_dir() -> Path:
    env = os.environ.get("BM_OPS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hwreshape" / "bm_ops"


def _lib_name(level: int) -> str:
    flags = _BASE_FLAGS + _levels()[level]
    key = hashlib.sha256(_SRC.read_bytes() + " ".join([*flags, "-lmvec", platform.machine()]).encode())
    return f"bm_kernel_{key.hexdigest()[:16]}_l{level}.so"


def _candidates(level: int) -> list[Path]:
    name = _lib_name(level)
    return [cache_dir() / name, Path(tempfile.gettempdir()) / "hwreshape_bm_ops" / name]


def _compiler() -> str | None:
    return shutil.which(os.environ.get("CXX", "g++"))


def build(force: bool = False, level: int | None = None) -> Path:
    """The library for ``level`` (default: this CPU's), compiled into the cache unless there already."""
    levels = _levels()
    level = (cpu_level() if _is_x86() else 0) if level is None else level
    if level not in levels:
        raise ValueError(f"build: level must be one of {sorted(levels)}, got {level!r}")
    if not force:
        for p in _candidates(level):
            if p.exists():
                return p
    cxx = _compiler()
    if cxx is None:
        raise RuntimeError(
            f"bm_ops fast kernel needs a C++ compiler: {os.environ.get('CXX', 'g++')!r} not found (set CXX) "
            f"and no prebuilt {_lib_name(level)} in {cache_dir()}"
        )
    out = _candidates(level)[0]
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home (some CI sandboxes): fall back to the temp folder
        out = _candidates(level)[1]
        out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tmp_so = Path(tmp) / out.name
        cmd = [cxx, *_BASE_FLAGS, *levels[level], str(_SRC), "-o", str(tmp_so), "-lmvec"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"bm_ops fast kernel build failed ({' '.join(cmd)}):\n{proc.stderr}")
        os.replace(tmp_so, out)  # atomic: concurrent builders never load a half-written file
    return out


def build_all(force: bool = False) -> list[Path]:
    """Every ISA level's library (a cache shared by machines with different CPUs serves each of them)."""
    return [build(force, level) for level in sorted(_levels(), reverse=True)]


def _load(path: Path):
    lib = ctypes.CDLL(str(path))
    P, i, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
    if lib.bm_kernel_abi_version() != 3:
        raise RuntimeError(f"{path}: kernel ABI {lib.bm_kernel_abi_version()}, expected 3")
    for suf in ("f32", "f64"):
        fwd = getattr(lib, "bm_fwd_" + suf)  # weights as the tap-major table of _vcat
        fwd.argtypes = [P, i, i, i, i, P, *([i] * 9), P, d, P, i]
        fwd.restype = ctypes.c_int
        fwd = getattr(lib, "bm_fwd_pn_" + suf)  # v_pos, v_neg as they are
        fwd.argtypes = [P, i, i, i, i, P, P, *([i] * 9), P, d, P, i]
        fwd.restype = ctypes.c_int
        bwd = getattr(lib, "bm_bwd_pn_" + suf)
        bwd.argtypes = [P, i, i, i, i, P, P, *([i] * 9), d, P, P, P, P, i]
        bwd.restype = None
    return lib


def _find_library() -> Path:
    """Best library this CPU can run: a cached one of the highest level, else build this CPU's level."""
    top = cpu_level()
    usable = [lv for lv in sorted(_levels(), reverse=True) if lv <= top]
    for lv in usable:
        for p in _candidates(lv):
            if p.exists() and (lv == top or _compiler() is None):
                return p
    return build(level=top)


def _lib():
    """The loaded kernel library, or ``None`` (with one warning per process) when it cannot be had."""
    global _LIB, _LIB_ERROR, _WARNED
    if _LIB is None and _LIB_ERROR is None:
        with _LOCK:
            if _LIB is None and _LIB_ERROR is None:
                try:
                    _LIB = _load(_find_library())
                except (RuntimeError, OSError) as e:
                    _LIB_ERROR = str(e)
    if _LIB is None and not _WARNED:
        _WARNED = True
        warnings.warn(
            f"bm_ops: compiled BM kernel unavailable, using the (slower) torch reference: {_LIB_ERROR}",
            RuntimeWarning,
            stacklevel=3,
        )
    return _LIB


def kernel_available() -> bool:
    """Whether the compiled kernel is loaded (building or loading it on first call; warns once if not)."""
    return _lib() is not None


def _suffix(dtype):
    import torch

    if dtype == torch.float32:
        return "f32"
    if dtype == torch.float64:
        return "f64"
    raise TypeError(f"bm_ops fast kernel supports float32/float64 tensors, got {dtype}")


def _ptr(t):
    return ctypes.c_void_p(t.data_ptr()) if t is not None else None


def _geometry(x, v, sh, sw, ph, pw):
    n, c, h, w = x.shape
    f, _, kh, kw = v.shape
    return n, c, h, w, f, kh, kw, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


_BAD_INPUT = {
    1: "x contains NaN or inf",
    2: "v_pos contains NaN or +inf; log-domain weights must be finite or -inf",
    3: "bias contains NaN or inf",
    4: "v_neg contains NaN or +inf; log-domain weights must be finite or -inf",
}


def _check_values(v_pos, v_neg, bias):  # for the reference path; the kernel checks in C (no extra torch ops)
    import torch

    for name, v in (("v_pos", v_pos), ("v_neg", v_neg)):
        if bool(torch.isnan(v).any()) or bool((v == float("inf")).any()):
            raise ValueError(
                f"bm_ops::conv2d: {name} contains NaN or +inf; log-domain weights must be finite or -inf"
            )
    if bias is not None and not torch.isfinite(bias).all():
        raise ValueError("bm_ops::conv2d: bias contains NaN or inf")


def _vcat(v_pos, v_neg):
    """The tap-major weight table ``(C, KH, KW, 2F)`` of ``bm_fwd_<dtype>`` (the op passes ``v_pos``/``v_neg`` as
    they are to ``bm_fwd_pn_<dtype>``: no torch work, so torch's own thread pool stays idle while the kernel's
    threads run)."""
    import torch

    return torch.cat([v_pos, v_neg], 0).permute(1, 2, 3, 0).contiguous()


def _reference(x, v_pos, v_neg, bias, sh, sw, ph, pw, s):
    from bm_ops.functional import _torch_bm_conv2d

    return _torch_bm_conv2d(x, v_pos, v_neg, bias, (sh, sw), (ph, pw), s)


def _reference_grads(grad, x, v_pos, v_neg, sh, sw, ph, pw, s):
    """Gradients of the torch reference by plain autograd. Run in a helper thread: an op's implementation runs
    below the autograd dispatch key, which is thread-local state, so autograd is only available elsewhere."""
    import torch

    out = {}

    def work():
        with torch.enable_grad():
            xs, ps, ns = (t.detach().requires_grad_() for t in (x, v_pos, v_neg))
            y = _reference(xs, ps, ns, None, sh, sw, ph, pw, s)
            out["g"] = torch.autograd.grad(y, (xs, ps, ns), grad)

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return tuple(g.clone() for g in out["g"])


_OPS = None


def _register_ops():
    """Define ``bm_ops::conv2d`` and ``bm_ops::conv2d_backward`` (once per process)."""
    global _OPS
    if _OPS is not None:
        return _OPS
    import torch

    args = "Tensor x, Tensor v_pos, Tensor v_neg, {}int sh, int sw, int ph, int pw, float input_floor"

    @torch.library.custom_op(
        "bm_ops::conv2d", mutates_args=(), schema=f"({args.format('Tensor? bias, ')}) -> Tensor"
    )
    def conv2d(x, v_pos, v_neg, bias, sh, sw, ph, pw, input_floor):
        lib = _lib()
        if lib is None:
            _check_values(v_pos, v_neg, bias)
            with torch.no_grad():
                return _reference(x, v_pos, v_neg, bias, sh, sw, ph, pw, input_floor).contiguous()
        n, c, h, w, f, kh, kw, oh, ow = _geometry(x, v_pos, sh, sw, ph, pw)
        x_c, vp, vn = x.contiguous(), v_pos.contiguous(), v_neg.contiguous()
        b = bias.contiguous() if bias is not None else None
        out = x.new_empty((n, f, oh, ow))
        bad = getattr(lib, "bm_fwd_pn_" + _suffix(x.dtype))(
            _ptr(x_c), n, c, h, w, _ptr(vp), _ptr(vn), f, kh, kw, sh, sw, ph, pw, oh, ow, _ptr(b),
            float(input_floor), _ptr(out), torch.get_num_threads(),
        )  # fmt: skip
        if bad:
            raise ValueError(f"bm_ops::conv2d: {_BAD_INPUT[bad]}")
        return out

    @conv2d.register_fake
    def _(x, v_pos, v_neg, bias, sh, sw, ph, pw, input_floor):
        n, _, h, w = x.shape
        f, _, kh, kw = v_pos.shape
        return x.new_empty((n, f, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1))

    @torch.library.custom_op(
        "bm_ops::conv2d_backward",
        mutates_args=(),
        schema=f"(Tensor grad, {args.format('')}) -> (Tensor, Tensor, Tensor)",
    )
    def conv2d_backward(grad, x, v_pos, v_neg, sh, sw, ph, pw, input_floor):
        lib = _lib()
        if lib is None:  # only reached under torch.compile (eager falls back before the op)
            return _reference_grads(grad, x, v_pos, v_neg, sh, sw, ph, pw, input_floor)
        n, c, h, w, f, kh, kw, oh, ow = _geometry(x, v_pos, sh, sw, ph, pw)
        x_c, vp, vn = x.contiguous(), v_pos.contiguous(), v_neg.contiguous()
        g = grad.contiguous()
        # written in full by the kernel (no torch fill: torch's thread pool stays idle while the kernel runs)
        gx, gp, gn = torch.empty_like(x_c), torch.empty_like(vp), torch.empty_like(vn)
        getattr(lib, "bm_bwd_pn_" + _suffix(x.dtype))(
            _ptr(x_c), n, c, h, w, _ptr(vp), _ptr(vn), f, kh, kw, sh, sw, ph, pw, oh, ow, float(input_floor),
            _ptr(g), _ptr(gx), _ptr(gp), _ptr(gn), torch.get_num_threads(),
        )  # fmt: skip
        return gx, gp, gn

    @conv2d_backward.register_fake
    def _(grad, x, v_pos, v_neg, sh, sw, ph, pw, input_floor):
        return torch.empty_like(x), torch.empty_like(v_pos), torch.empty_like(v_neg)

    def setup_context(ctx, inputs, output):
        x, v_pos, v_neg, bias, sh, sw, ph, pw, s = inputs
        ctx.save_for_backward(x, v_pos, v_neg)  # nothing else: the backward recomputes the arg-max taps
        ctx.conf = (sh, sw, ph, pw, s, bias is not None)

    def backward(ctx, grad):
        x, v_pos, v_neg = ctx.saved_tensors
        sh, sw, ph, pw, s, has_bias = ctx.conf
        need = ctx.needs_input_grad
        gx = gp = gn = None
        if any(need[:3]):
            gx, gp, gn = torch.ops.bm_ops.conv2d_backward(grad, x, v_pos, v_neg, sh, sw, ph, pw, s)
        gb = grad.sum(dim=(0, 2, 3)) if has_bias and need[3] else None
        return (
            gx if need[0] else None,
            gp if need[1] else None,
            gn if need[2] else None,
            gb,
            None,
            None,
            None,
            None,
            None,
        )

    conv2d.register_autograd(backward, setup_context=setup_context)

    def no_double_backward(ctx, *grads):
        raise RuntimeError(
            "bm_ops::conv2d: double backward (a gradient of the BM convolution's gradient, e.g. "
            "create_graph=True followed by a second backward) is not supported: the BM function is piecewise "
            "linear in x and exp(v) per arg-max tap; use backend='reference' for plain autograd"
        )

    conv2d_backward.register_autograd(no_double_backward, setup_context=lambda ctx, inputs, output: None)
    _OPS = conv2d
    return conv2d


def bm_conv2d_fast(x, v_pos, v_neg, bias=None, stride=1, padding=0, *, input_floor=0.0):
    """Fast BM convolution on torch tensors (CPU or meta), differentiable; same contract as
    ``functional.bm_conv2d``. Runs ``torch.ops.bm_ops.conv2d``; works under ``torch.compile`` and ``torch.export``
    (shape checks here, value checks inside the op)."""
    import torch

    from bm_ops.functional import _check_conv_args, _check_floor

    if not all(isinstance(t, torch.Tensor) for t in (x, v_pos, v_neg)):
        raise TypeError("bm_conv2d_fast: x, v_pos and v_neg must be torch tensors")
    if x.device.type not in ("cpu", "meta"):
        raise ValueError(f"bm_conv2d_fast: the compiled kernel runs on CPU, got x on {x.device}")
    if x.dtype != v_pos.dtype or x.dtype != v_neg.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(
            f"bm_conv2d_fast: x, v_pos, v_neg, bias must share a dtype, got x {x.dtype}, v_pos {v_pos.dtype}"
        )
    _suffix(x.dtype)
    s = _check_floor(input_floor, "bm_conv2d_fast: input_floor")
    _, (sh, sw), (ph, pw), _ = _check_conv_args(
        x, v_pos, v_neg, bias, stride, padding, where="bm_conv2d_fast", values=False
    )
    if x.device.type == "cpu" and not torch.compiler.is_compiling() and not kernel_available():
        return _reference(x, v_pos, v_neg, bias, sh, sw, ph, pw, s)  # plain autograd (warned once)
    return _register_ops()(x, v_pos, v_neg, bias, sh, sw, ph, pw, s)


if __name__ == "__main__":
    for p in build_all():
        print(p)
