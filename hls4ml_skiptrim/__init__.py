"""hls4ml_skiptrim: SkipTrim for hls4ml -- the fused Conv+BN+ReLU+ShortSkip layer and its stream-memory estimator.

``import hls4ml`` registers the fused layer (entry point ``hls4ml.backends`` ->
:func:`hls4ml_skiptrim.hls4ml.plugin.register`); :func:`register` does the same explicitly and is idempotent.
Registration is inert: a conversion is changed only when its config says
``hls_config['Model']['ShortSkipFusion'] = True`` (see :mod:`hls4ml_skiptrim.hls4ml.config`).
This module stays light: hls4ml is imported only inside :func:`register`.
"""

from __future__ import annotations


def register() -> bool:
    """Register the fused short-skip layer with hls4ml (Vivado and Vitis backends; inert until enabled); idempotent."""
    import hls4ml  # noqa: F401  (the entry point may already have registered everything)

    from hls4ml_skiptrim.hls4ml.plugin import register as _register

    return _register()


__all__ = ["register"]
