"""Data for the recipes: the MNIST 10k split / sklearn digits (:mod:`hwreshape.data`), a cluttered, translated
MNIST built from the 10k split, and CIFAR-10/100 and SVHN for users who have those files locally (nothing is
downloaded).

All loaders return ``(x float32 (N, C, H, W) in [0, 1], y int64 (N,))``.

**Cluttered, translated MNIST** (:func:`cluttered_translated`, ``load("cluttered-mnist")``): a harder task made
from the data we have, since the dissertation's CIFAR-10/100 and SVHN (Khodamoradi 2021, §4.3, Table 4.1) cannot
be had here.  Each digit is pasted at a uniformly random position of a larger dark canvas, and ``n_clutter``
square fragments cut at random from *other* digits of the same set are pasted at random positions first (the
construction of the "cluttered translated MNIST" of Mnih et al. 2014, §4.1, at a smaller scale); pixels combine
by maximum, so the label digit is never dimmed.  The generator is deterministic: one ``numpy`` generator seeded
with ``seed`` draws every position and fragment in a fixed order.  The task is meant to be hard enough that a
deep ResNet trained without its skips loses accuracy (the regime SkipTrim is for); ``benchmarks/skiptrim_cluttered.py``
measures that gap (plain-from-scratch vs teacher).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")


def load_cifar(root, split: str = "train", num_classes: int = 10):
    """CIFAR-10 (``data_batch_1..5``, ``test_batch``) or CIFAR-100 (``train``, ``test``) python pickles."""
    root = Path(root)
    if num_classes not in (10, 100):
        raise ValueError(f"num_classes must be 10 or 100 for CIFAR, got {num_classes}")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if num_classes == 10:
        files = [root / f"data_batch_{i}" for i in range(1, 6)] if split == "train" else [root / "test_batch"]
        key = "labels"
    else:
        files, key = [root / split], "fine_labels"
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(
                f"CIFAR-{num_classes} file {f} not found (python version of the data set)"
            )
    parts = [_unpickle(f) for f in files]
    x = np.concatenate([p["data"] for p in parts]).reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    y = np.concatenate([np.asarray(p[key]) for p in parts]).astype(np.int64)
    return x, y


def load_svhn(root, split: str = "train"):
    """SVHN cropped digits ``{train,test}_32x32.mat`` (label 10 means digit 0)."""
    from scipy.io import loadmat

    path = Path(root) / f"{split}_32x32.mat"
    if not path.is_file():
        raise FileNotFoundError(f"SVHN file {path} not found")
    d = loadmat(path)
    x = d["X"].transpose(3, 2, 0, 1).astype(np.float32) / 255.0
    y = d["y"].reshape(-1).astype(np.int64) % 10
    return x, y


def cluttered_translated(
    x,
    y,
    *,
    canvas: int,
    n_clutter: int = 4,
    fragment: int | None = None,
    seed: int = 0,
    return_positions: bool = False,
):
    """Cluttered, translated digits: ``(x_out float32 (N, 1, canvas, canvas), y)`` (``y`` unchanged).

    ``x``: ``(N, 1, h, w)`` images in [0, 1] (N >= 2); ``canvas`` >= max(h, w); ``fragment`` (default
    ``max(h, w) // 2``, at most min(h, w)) is the side of the ``n_clutter`` fragments cut from other images.
    For every image, in this order, the generator draws: ``n_clutter`` × (source image != i, crop corner,
    paste corner), then the digit's own corner; pastes combine by ``maximum``.  With ``return_positions`` the
    digits' top-left corners ``(N, 2)`` (row, column) are returned as a third value.
    """
    x = np.asarray(x)
    y = np.asarray(y)
    if x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"cluttered_translated: x must be (N, 1, H, W) images, got shape {x.shape}")
    n, _, h, w = x.shape
    if len(y) != n:
        raise ValueError(f"cluttered_translated: x and y lengths differ: {n} vs {len(y)}")
    if n < 2:
        raise ValueError("cluttered_translated: need at least 2 images (clutter comes from other digits)")
    if not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
        raise ValueError("cluttered_translated: x must hold finite values in [0, 1]")
    for name, v in (("canvas", canvas), ("n_clutter", n_clutter), ("seed", seed)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise TypeError(f"cluttered_translated: {name} must be an int, got {type(v).__name__}")
    if canvas < max(h, w):
        raise ValueError(f"cluttered_translated: canvas ({canvas}) must be >= the image size {max(h, w)}")
    if n_clutter < 0:
        raise ValueError(f"cluttered_translated: n_clutter must be >= 0, got {n_clutter}")
    f = max(h, w) // 2 if fragment is None else fragment
    if isinstance(f, bool) or not isinstance(f, int | np.integer) or not 1 <= f <= min(h, w):
        raise ValueError(
            f"cluttered_translated: fragment must be an int in [1, {min(h, w)}], got {fragment!r}"
        )
    rng = np.random.default_rng(seed)
    out = np.zeros((n, 1, canvas, canvas), dtype=np.float32)
    pos = np.zeros((n, 2), dtype=np.int64)
    for i in range(n):
        img = out[i, 0]
        for _ in range(n_clutter):
            j = int(rng.integers(n - 1))
            j += j >= i  # any image but i
            r, c = rng.integers(h - f + 1), rng.integers(w - f + 1)
            pr, pc = rng.integers(canvas - f + 1), rng.integers(canvas - f + 1)
            np.maximum(
                img[pr : pr + f, pc : pc + f],
                x[j, 0, r : r + f, c : c + f],
                out=img[pr : pr + f, pc : pc + f],
            )
        pr, pc = int(rng.integers(canvas - h + 1)), int(rng.integers(canvas - w + 1))
        np.maximum(img[pr : pr + h, pc : pc + w], x[i, 0], out=img[pr : pr + h, pc : pc + w])
        pos[i] = pr, pc
    return (out, y, pos) if return_positions else (out, y)


#: The benchmark's cluttered MNIST: 28x28 digits average-pooled to 14x14 on a 32x32 canvas, 4 fragments of 7x7.
CLUTTERED_MNIST = dict(pool=2, canvas=32, n_clutter=4, fragment=7)


def load_cluttered_mnist(data_dir=None, seed: int = 0, **overrides):
    """The MNIST 10k split made cluttered and translated (:data:`CLUTTERED_MNIST`, keys overridable)."""
    from hwreshape.data import load_mnist_10k

    cfg = {**CLUTTERED_MNIST, **overrides}
    x, y = load_mnist_10k(data_dir)
    p = int(cfg.pop("pool"))
    if p > 1:
        n, c, h, w = x.shape
        x = x[:, :, : h // p * p, : w // p * p].reshape(n, c, h // p, p, w // p, p).mean(axis=(3, 5))
    return cluttered_translated(x, y, seed=seed, **cfg)


def load(name: str, data_dir=None, n_train: int | None = None, seed: int = 0):
    """``(x_train, y_train, x_test, y_test, num_classes)`` for ``mnist`` (10k split), ``cluttered-mnist`` (the
    10k split cluttered and translated), ``digits``, ``cifar10``, ``cifar100`` or ``svhn``."""
    from hwreshape.data import load_digits, load_mnist_10k, split

    if name in ("mnist", "digits", "cluttered-mnist"):
        if name == "cluttered-mnist":
            x, y = load_cluttered_mnist(data_dir)
        else:
            x, y = load_mnist_10k(data_dir) if name == "mnist" else load_digits()
        n = n_train or int(0.8 * len(x))
        return (*split(x, y, n, seed=seed), 10)
    if name in ("cifar10", "cifar100"):
        if data_dir is None:
            raise ValueError(f"--data-dir is required for {name}")
        c = 10 if name == "cifar10" else 100
        return (*load_cifar(data_dir, "train", c), *load_cifar(data_dir, "test", c), c)
    if name == "svhn":
        if data_dir is None:
            raise ValueError("--data-dir is required for svhn")
        return (*load_svhn(data_dir, "train"), *load_svhn(data_dir, "test"), 10)
    raise ValueError(
        f"unknown data set {name!r}: expected mnist, cluttered-mnist, digits, cifar10, cifar100 or svhn"
    )
