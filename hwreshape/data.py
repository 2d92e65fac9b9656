"""Small offline data sets shared by tests, demos, recipes and benchmarks (written once, used everywhere).

* :func:`load_mnist_10k` reads the official MNIST 10k test split (``t10k-*-ubyte.gz``) from
  ``../shared/data/mnist`` (or a given folder); it is the data of the benchmarks and recipes.
* :func:`load_digits` wraps ``sklearn.datasets.load_digits`` (1,797 8×8 digits shipped with scikit-learn):
  the data of tests, which must pass on a fresh clone without ``../shared``.
* :func:`load_mnist_or_digits` returns MNIST when present, digits otherwise (with the name of what it used).

All loaders return float32 images in [0, 1] with shape (N, 1, H, W) and int64 labels.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np


def shared_dir() -> Path | None:
    """The ``shared/`` folder beside the repository (MNIST 10k split etc.), or None when absent."""
    env = os.environ.get("HWRESHAPE_SHARED")
    candidates = [Path(env)] if env else []
    here = Path(__file__).resolve().parent.parent
    candidates += [here.parent / "shared", Path.cwd().parent / "shared"]
    for c in candidates:
        if (c / "data").is_dir():
            return c
    return None


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    ndim = magic & 0xFF
    if (magic >> 8) != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} values for shape {dims}, found {arr.size}")
    return arr.reshape(dims)


def mnist_dir(root: str | Path | None = None) -> Path | None:
    """The folder holding ``t10k-images-idx3-ubyte.gz``: ``root`` if given, else ``shared/data/mnist``."""
    if root is not None:
        return Path(root)
    shared = shared_dir()
    if shared is not None and (shared / "data" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        return shared / "data" / "mnist"
    return None


def load_mnist_10k(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The MNIST 10k split as ``(images (10000, 1, 28, 28) float32 in [0, 1], labels (10000,) int64)``."""
    folder = mnist_dir(root)
    if folder is None:
        raise FileNotFoundError(
            "MNIST 10k split not found: pass root= or place shared/data/mnist beside the repo"
        )
    img = folder / "t10k-images-idx3-ubyte.gz"
    lab = folder / "t10k-labels-idx1-ubyte.gz"
    for p in (img, lab):
        if not p.is_file():
            raise FileNotFoundError(f"missing MNIST file {p}")
    x = _read_idx(img).astype(np.float32)[:, None] / 255.0
    y = _read_idx(lab).astype(np.int64)
    return x, y


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits as ``(images (1797, 1, 8, 8) float32 in [0, 1], labels int64)``."""
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    return x, d.target.astype(np.int64)


def load_mnist_or_digits(root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """MNIST 10k when available, otherwise sklearn digits; the third value names the data set used."""
    try:
        x, y = load_mnist_10k(root)
        return x, y, "mnist10k"
    except FileNotFoundError:
        x, y = load_digits()
        return x, y, "digits"


def split(x: np.ndarray, y: np.ndarray, n_train: int, seed: int = 0):
    """A seeded shuffle split: ``(x_train, y_train, x_test, y_test)`` with ``n_train`` training examples."""
    if not 0 < n_train < len(x):
        raise ValueError(f"n_train must be in (0, {len(x)}), got {n_train}")
    idx = np.random.default_rng(seed).permutation(len(x))
    tr, te = idx[:n_train], idx[n_train:]
    return x[tr], y[tr], x[te], y[te]
