"""The cluttered, translated digits generator of the SkipTrim benchmark (recipes.data.cluttered_translated):
deterministic, the label digit intact at its drawn position, clutter cut from other digits, bad input refused.
Runs on sklearn digits (no ../shared needed); the MNIST loader is checked when the 10k split is present."""

import numpy as np
import pytest

from hls4ml_skiptrim.training.recipes.data import (
    CLUTTERED_MNIST,
    cluttered_translated,
    load,
    load_cluttered_mnist,
)
from hwreshape.data import load_digits, mnist_dir


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()
    return x[:200], y[:200]


def test_deterministic_and_seed_dependent(digits):
    x, y = digits
    a, ya = cluttered_translated(x, y, canvas=16, n_clutter=3, fragment=4, seed=5)
    b, yb = cluttered_translated(x, y, canvas=16, n_clutter=3, fragment=4, seed=5)
    c, _ = cluttered_translated(x, y, canvas=16, n_clutter=3, fragment=4, seed=6)
    assert a.shape == (200, 1, 16, 16) and a.dtype == np.float32
    assert np.array_equal(a, b) and np.array_equal(ya, y) and np.array_equal(yb, y)
    assert not np.array_equal(a, c)
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_digit_is_intact_at_its_position_and_positions_are_spread(digits):
    x, y = digits
    out, _, pos = cluttered_translated(
        x, y, canvas=20, n_clutter=4, fragment=4, seed=0, return_positions=True
    )
    for i in range(len(x)):
        r, c = pos[i]
        patch = out[i, 0, r : r + 8, c : c + 8]
        # pasted last with maximum: the digit's pixels are all there (clutter can only add ink around them)
        assert np.all(patch >= x[i, 0])
    assert pos.min() == 0 and pos.max() == 12  # corners over the whole canvas range [0, 20 - 8]
    assert len({tuple(p) for p in pos}) > 50  # translated, not centred


def test_without_clutter_the_canvas_holds_only_the_digit(digits):
    x, y = digits
    out, _, pos = cluttered_translated(x, y, canvas=12, n_clutter=0, seed=1, return_positions=True)
    for i in range(len(x)):
        r, c = pos[i]
        expect = np.zeros((12, 12), np.float32)
        expect[r : r + 8, c : c + 8] = x[i, 0]
        assert np.array_equal(out[i, 0], expect)


def test_clutter_comes_from_other_digits():
    # two images: a blank one and a full one; clutter of image 0 can only come from image 1 (full), and the
    # full image's clutter only from the blank one: so image 0 gets ink, image 1's canvas stays its own digit
    x = np.zeros((2, 1, 6, 6), np.float32)
    x[1] = 1.0
    out, _, pos = cluttered_translated(
        x, np.array([0, 1]), canvas=14, n_clutter=3, fragment=3, seed=2, return_positions=True
    )
    assert out[0].sum() > 0  # fragments of the full digit on the blank digit's canvas
    r, c = pos[1]
    expect = np.zeros((14, 14), np.float32)
    expect[r : r + 6, c : c + 6] = 1.0
    assert np.array_equal(out[1, 0], expect)


def test_bad_input_is_refused_by_name(digits):
    x, y = digits
    with pytest.raises(ValueError, match="canvas"):
        cluttered_translated(x, y, canvas=6)
    with pytest.raises(ValueError, match="fragment"):
        cluttered_translated(x, y, canvas=16, fragment=9)
    with pytest.raises(ValueError, match="n_clutter"):
        cluttered_translated(x, y, canvas=16, n_clutter=-1)
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        cluttered_translated(x[:, 0], y, canvas=16)
    with pytest.raises(ValueError, match="lengths differ"):
        cluttered_translated(x, y[:5], canvas=16)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cluttered_translated(x * 2, y, canvas=16)
    with pytest.raises(ValueError, match="at least 2"):
        cluttered_translated(x[:1], y[:1], canvas=16)
    with pytest.raises(TypeError, match="canvas"):
        cluttered_translated(x, y, canvas=16.0)
    with pytest.raises(ValueError, match="unknown data set"):
        load("cluttered")


@pytest.mark.skipif(mnist_dir() is None, reason="the MNIST 10k split (../shared/data/mnist) is not present")
def test_cluttered_mnist_from_the_10k_split():
    x, y = load_cluttered_mnist()
    side = CLUTTERED_MNIST["canvas"]
    assert x.shape == (10000, 1, side, side) and len(y) == 10000
    x2, _ = load_cluttered_mnist()
    assert np.array_equal(x, x2)
    xtr, ytr, xte, yte, k = load("cluttered-mnist", n_train=8000)
    assert k == 10 and xtr.shape == (8000, 1, side, side) and len(xte) == 2000
