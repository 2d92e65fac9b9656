"""Registration of the S2N2 ops with qonnx and FINN (idempotent, cheap at import time).

* ``LIF`` goes into the qonnx registry under the domain ``finn_s2n2`` immediately (qonnx only), together with
  the frame-wise ``Im2Col`` shim (:mod:`finn_s2n2.finn.custom_op.im2col`: qonnx' Im2Col mixes images at
  batch > 1, and FINN's sliding window executes through it).
* ``LIF_MVAU`` / ``LIF_MVAU_hls`` and ``SpikeMaxPool`` / ``SpikeMaxPool_hls`` are registered into FINN's own domains ``finn.custom_op.fpgadataflow``
  and ``finn.custom_op.fpgadataflow.hls`` (qonnx registry *and* FINN's ``custom_op`` dictionaries that
  ``SpecializeLayers`` consults), so FINN's transformations treat them as native HW ops
  (ENVIRONMENT.md: FINN only recognises those exact domains).  Importing finn-plus costs seconds, so when
  it is not imported yet a post-import hook performs this step the moment ``finn.custom_op.fpgadataflow``
  finishes importing (also when qonnx imports it to look up a node).  :func:`register_finn` forces it.

Import order: when ``finn_s2n2.finn.custom_op.lif_mvau`` (or ``lif_mvau_hls``, ``spike_maxpool``) is imported
*before* finn-plus, its own ``import finn...`` fires the hook while the module is still half-initialised;
registration is then deferred, and each of these modules calls :func:`register_finn` again at the end of its body (when its class
exists), which completes it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
import threading

_OP_MODULES = (
    "finn_s2n2.finn.custom_op.lif_mvau",
    "finn_s2n2.finn.custom_op.lif_mvau_hls",
    "finn_s2n2.finn.custom_op.spike_maxpool",
)

_LOCK = threading.RLock()
_QONNX_DONE = False
_FINN_DONE = False
_HOOK = None
_TRIGGER = "finn.custom_op.fpgadataflow"


def register_qonnx() -> None:
    """Put ``LIF`` into the qonnx registry (domain ``finn_s2n2``) and the frame-wise ``Im2Col`` shim into
    ``qonnx.custom_op.general``."""
    global _QONNX_DONE
    with _LOCK:
        if _QONNX_DONE:
            return
        from qonnx.custom_op.registry import add_op_to_domain

        from finn_s2n2.finn.custom_op.im2col import IM2COL_DOMAIN, Im2Col
        from finn_s2n2.finn.custom_op.lif import LIF, LIF_DOMAIN

        add_op_to_domain(LIF_DOMAIN, LIF)
        # qonnx' Im2Col executed frame by frame (FINN's sliding window runs through it; see im2col.py)
        add_op_to_domain(IM2COL_DOMAIN, Im2Col)
        _QONNX_DONE = True


def register_finn() -> None:
    """Register ``LIF_MVAU``/``LIF_MVAU_hls`` and ``SpikeMaxPool``/``SpikeMaxPool_hls`` with FINN (imports
    finn-plus; idempotent)."""
    global _FINN_DONE
    from hwreshape.compat import prepare_finn

    with _LOCK:
        prepare_finn()  # cheap once done; completes a preparation deferred by an import cycle
        if _FINN_DONE:
            return
        import finn.custom_op.fpgadataflow as fd
        import finn.custom_op.fpgadataflow.hls as fd_hls
        from qonnx.custom_op.registry import add_op_to_domain

        try:
            from finn_s2n2.finn.custom_op.lif_mvau import LIF_MVAU
            from finn_s2n2.finn.custom_op.lif_mvau_hls import LIF_MVAU_hls
            from finn_s2n2.finn.custom_op.spike_maxpool import SpikeMaxPool, SpikeMaxPool_hls
        except ImportError:
            if any(_initializing(m) for m in _OP_MODULES):
                return  # one of them is half-imported; it calls register_finn() again at its end
            raise

        for base, impl in ((LIF_MVAU, LIF_MVAU_hls), (SpikeMaxPool, SpikeMaxPool_hls)):
            fd.custom_op[base.__name__] = base
            fd_hls.custom_op[impl.__name__] = impl
            add_op_to_domain("finn.custom_op.fpgadataflow", base)
            add_op_to_domain("finn.custom_op.fpgadataflow.hls", impl)
        _FINN_DONE = True


def _initializing(name: str) -> bool:
    mod = sys.modules.get(name)
    return mod is not None and bool(getattr(getattr(mod, "__spec__", None), "_initializing", False))


class _PostImportHook(importlib.abc.MetaPathFinder):
    """Runs :func:`register_finn` right after ``finn.custom_op.fpgadataflow`` has been executed."""

    def __init__(self):
        self._busy = False

    def find_spec(self, fullname, path, target=None):
        if fullname != _TRIGGER or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._busy = False
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        orig_exec = loader.exec_module

        def exec_module(module, _orig=orig_exec):
            _orig(module)
            _remove_hook()
            register_finn()

        loader.exec_module = exec_module
        return spec


def _remove_hook() -> None:
    global _HOOK
    with _LOCK:
        if _HOOK is not None and _HOOK in sys.meta_path:
            sys.meta_path.remove(_HOOK)
        _HOOK = None


def register() -> None:
    """Register every S2N2 op (idempotent).  FINN ops now if finn-plus is loaded, else on its import."""
    global _HOOK
    register_qonnx()
    with _LOCK:
        if _FINN_DONE:
            return
        if _TRIGGER in sys.modules:
            register_finn()
        elif _HOOK is None:
            _HOOK = _PostImportHook()
            sys.meta_path.insert(0, _HOOK)
