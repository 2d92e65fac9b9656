"""bm_ops.keras.BMConv2D (Keras 3) computes the same function as the torch reference."""

import keras
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bm_ops.functional import bm_conv2d, to_log_weights
from bm_ops.keras import BMConv2D, from_conv, from_torch
from bm_ops.torch import BMConv2d


@settings(max_examples=12)
@given(
    c=st.integers(1, 3),
    f=st.integers(1, 4),
    k=st.integers(1, 3),
    s=st.integers(1, 2),
    p=st.integers(0, 2),
    hw=st.integers(4, 7),
    seed=st.integers(0, 2**31 - 1),
)
def test_keras_matches_torch(c, f, k, s, p, hw, seed):
    torch.manual_seed(seed)
    layer = BMConv2d(c, f, k, stride=s, padding=p)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, c, hw, hw)
    x[torch.rand_like(x) < 0.3] = 0.0
    want = layer(x).detach().numpy()
    kl = from_torch(layer)
    got = keras.ops.convert_to_numpy(kl(x.permute(0, 2, 3, 1).numpy()))
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_same_padding_and_from_conv(stride):
    rng = np.random.default_rng(0)
    conv = keras.layers.Conv2D(3, 3, strides=stride, padding="same")
    x = rng.normal(size=(2, 7, 7, 2)).astype(np.float32)
    conv(x)
    bm = from_conv(conv)
    got = keras.ops.convert_to_numpy(bm(x))
    # TensorFlow "same": extra padding at the bottom/right; reproduce it explicitly for the reference
    total = max((-(-7 // stride) - 1) * stride + 3 - 7, 0)
    lo, hi = total // 2, total - total // 2
    xp = np.pad(x.transpose(0, 3, 1, 2).astype(np.float64), ((0, 0), (0, 0), (lo, hi), (lo, hi)))
    w = keras.ops.convert_to_numpy(conv.kernel).transpose(3, 2, 0, 1)
    vp, vn = to_log_weights(w)
    want = bm_conv2d(xp, vp, vn, keras.ops.convert_to_numpy(conv.bias), stride=stride)
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, rtol=1e-5, atol=1e-5)


def test_single_tap_conversion_is_exact():
    conv = keras.layers.Conv2D(4, 1)
    x = np.random.default_rng(1).normal(size=(3, 5, 5, 1)).astype(np.float32)
    want = keras.ops.convert_to_numpy(conv(x))
    got = keras.ops.convert_to_numpy(from_conv(conv)(x))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_trainable_in_a_model_with_finite_gradients():
    import tensorflow as tf

    model = keras.Sequential(
        [keras.Input((6, 6, 1)), BMConv2D(4, 3, padding=1), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    x = np.zeros((4, 6, 6, 1), np.float32)
    x[:, 2:4, 2:4] = 1.0
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(model(x) ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    for g in grads:
        assert np.isfinite(keras.ops.convert_to_numpy(g)).all()
    assert BMConv2D.from_config(model.layers[0].get_config()).kernel_size == (3, 3)


def test_keras_bad_input():
    with pytest.raises(ValueError, match="channels_last"):
        BMConv2D(2, 3, data_format="channels_first")
    with pytest.raises(ValueError, match="padding"):
        BMConv2D(2, 3, padding="causal")
    conv = keras.layers.Conv2D(2, 3, dilation_rate=2)
    conv(np.zeros((1, 9, 9, 1), np.float32))
    with pytest.raises(ValueError, match="dilation"):
        from_conv(conv)
    with pytest.raises(ValueError, match="not built"):
        from_conv(keras.layers.Conv2D(2, 3))
    with pytest.raises(TypeError, match="Conv2D"):
        from_conv(keras.layers.Dense(2))
    bm = BMConv2D(2, 3)
    bm(np.zeros((1, 5, 5, 2), np.float32))
    with pytest.raises(ValueError, match="channels"):
        bm(np.zeros((1, 5, 5, 3), np.float32))


def test_dynamic_spatial_dims_and_no_5d_intermediate():
    import tensorflow as tf

    torch.manual_seed(3)
    layer = BMConv2d(2, 3, 3, stride=2, padding=1, input_floor=0.1)
    kl = from_torch(layer)
    assert kl.input_floor == 0.1
    model = keras.Sequential([keras.Input((None, None, 2)), kl])
    fn = tf.function(lambda t: model(t), input_signature=[tf.TensorSpec((None, None, None, 2), tf.float32)])
    ranks = [
        len(o.shape)
        for op in fn.get_concrete_function().graph.get_operations()
        for o in op.outputs
        if o.shape.rank
    ]
    assert max(ranks) <= 4  # nothing like (N, H_out, W_out, C, F)
    for hw in ((5, 7), (8, 6)):
        x = torch.randn(2, 2, *hw)
        want = layer(x).detach().numpy()
        got = fn(tf.constant(x.permute(0, 2, 3, 1).numpy())).numpy()
        np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, rtol=1e-5, atol=1e-5)
    same = keras.Sequential([keras.Input((None, None, 1)), BMConv2D(2, 3, strides=2, padding="same")])
    assert tuple(same(np.ones((1, 7, 5, 1), np.float32)).shape) == (1, 4, 3, 2)
