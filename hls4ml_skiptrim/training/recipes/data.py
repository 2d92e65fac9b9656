"""Data for the recipes: the MNIST 10k split / sklearn digits (:mod:`hwreshape.data`), and CIFAR-10/100 and
SVHN for users who have those files locally (nothing is downloaded).

All loaders return ``(x float32 (N, C, H, W) in [0, 1], y int64 (N,))``.
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


def load(name: str, data_dir=None, n_train: int | None = None, seed: int = 0):
    """``(x_train, y_train, x_test, y_test, num_classes)`` for ``mnist`` (10k split), ``digits``, ``cifar10``,
    ``cifar100`` or ``svhn``."""
    from hwreshape.data import load_digits, load_mnist_10k, split

    if name in ("mnist", "digits"):
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
    raise ValueError(f"unknown data set {name!r}: expected mnist, digits, cifar10, cifar100 or svhn")
