"""ASLR — Adaptive Scheduler for Learning Rate (Khodamoradi 2021, ch. 5: Algorithm 2 and Eq 5.10).

One user hyperparameter (the start learning rate).  After every epoch a simple search (Algorithm 2) moves the
centre rate ``c`` when the validation metric stops improving; every step draws per-layer rates from
``U(c - s/2, c + s/2)``, ``s = 10**floor(log10(c))`` (Eq 5.10).

Importing ``aslr`` is light (no torch / tensorflow).  The hosts live in submodules:

* :mod:`aslr.core` — framework-free :class:`~aslr.core.ASLRSearch` (Algorithm 2), :func:`~aslr.core.step_size`
* :mod:`aslr.torch` — :class:`ASLR` scheduler for torch / Brevitas optimisers, :func:`layer_param_groups`
* :mod:`aslr.keras` — :class:`ASLRCallback` for Keras 3 and tf-keras / QKeras models
* :mod:`aslr.lightning` — :class:`ASLRCallback` for PyTorch Lightning
* :mod:`aslr.lr_finder` — learning-rate range test (wraps torch-lr-finder) suggesting the start value
"""

from aslr.core import ASLRSearch, step_size

__all__ = ["ASLRSearch", "step_size"]
