"""Optional dependencies ("extras") of the ``hwreshape`` distribution and the check that names a missing one.

The base install (``pip install hwreshape``) is NumPy, SciPy, rich and tqdm: enough for ``aslr`` (the
framework-free Algorithm 2), ``bm_ops`` (NumPy reference ops, cost model) and the ``hwreshape`` command.  Every
host door is an extra; :data:`EXTRAS` maps each extra to the top-level modules whose presence proves it is
installed.  A module that needs an extra calls :func:`require` before its first host import::

    from hwreshape.extras import require

    require("torch", __name__)  # ImportError naming ``pip install 'hwreshape[torch]'`` when torch is absent
    import torch

or, as a single import line placed before the host import (the import *is* the check)::

    from hwreshape.extras import needs_torch  # noqa: F401  # isort: skip

The check uses :func:`importlib.util.find_spec` only: nothing is imported, so it costs microseconds and keeps
light packages light.  It is a subclass of :class:`ImportError`, so ``except ImportError`` keeps working.
This module imports only the standard library.
"""

from __future__ import annotations

import importlib.util
import sys

__all__ = ["EXTRAS", "MissingExtraError", "missing", "require"]

#: extra name -> top-level modules that must be importable for that door (the distributions are declared
#: under the same extra name in ``pyproject.toml``; ``tests/test_packaging.py`` checks the two agree).
EXTRAS: dict[str, tuple[str, ...]] = {
    "torch": ("torch", "brevitas"),
    "keras": ("keras",),
    "qkeras": ("keras", "tf_keras", "qkeras"),
    "hls4ml": ("hls4ml",),
    "qonnx": ("qonnx", "onnx", "onnxruntime"),
    "finn": ("finn", "qonnx", "onnx", "torch", "brevitas"),
    "snn": ("torch", "brevitas", "qonnx", "nir"),
    "dvs": ("numba", "qonnx"),
    "lightning": ("lightning", "torch"),
    "lr-finder": ("torch", "torch_lr_finder"),
    "report": ("torch", "fvcore", "matplotlib"),
}


class MissingExtraError(ImportError):
    """A module needs an optional dependency group of hwreshape that is not installed."""

    def __init__(self, extra: str, module: str | None, absent: list[str]):
        self.extra = extra
        self.absent = absent
        who = module or "this feature"
        super().__init__(
            f"{who} needs the optional dependencies hwreshape[{extra}] "
            f"(not importable: {', '.join(absent)}); install them with: pip install 'hwreshape[{extra}]'",
            name=absent[0] if absent else None,
        )


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # an import blocker on sys.meta_path, or a module set to None
        return False


def missing(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (empty when the extra is installed)."""
    try:
        modules = EXTRAS[extra]
    except KeyError:
        raise ValueError(f"unknown hwreshape extra {extra!r}; expected one of {sorted(EXTRAS)}") from None
    return [m for m in modules if not _importable(m)]


def require(extra: str, module: str | None = None) -> None:
    """Raise :class:`MissingExtraError` naming ``hwreshape[extra]`` unless every module of the extra is present.

    ``module`` is the dotted name of the caller (``__name__``), used in the message.
    """
    absent = missing(extra)
    if absent:
        raise MissingExtraError(extra, module, absent)


def __getattr__(name: str):
    # ``from hwreshape.extras import needs_torch`` performs require("torch") as part of the import statement
    # (``needs_lr_finder`` -> extra ``lr-finder``)
    extra = name[len("needs_") :].replace("_", "-") if name.startswith("needs_") else None
    if extra in EXTRAS:
        require(extra, _caller_module())
        return True
    raise AttributeError(f"module 'hwreshape.extras' has no attribute {name!r}")


def _caller_module() -> str | None:
    frame = sys._getframe(2)
    while frame is not None:
        mod = frame.f_globals.get("__name__")
        if mod and not mod.startswith(("importlib", "hwreshape.extras")):
            return mod
        frame = frame.f_back
    return None
