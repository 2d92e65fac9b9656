"""aslr.keras.ASLRCallback on a Keras 3 model and on a QKeras (tf-keras) model: per-layer draws for SGD are
exactly per-layer learning rates (weight delta = -c_u * gradient), adaptive optimisers get one draw per batch,
Algorithm 2 follows the monitored logs, the optimiser is restored after fit, bad input raises."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # QKeras: before TensorFlow is imported

import keras
import numpy as np
import pytest
import qkeras  # noqa: F401  (declared dependency: a broken install must fail loudly, not skip)
import tensorflow as tf
import tf_keras

from aslr.core import ASLRSearch
from aslr.keras import ASLRCallback, detect_framework, is_sgd_family
from hwreshape.data import load_digits


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits()
    x = x.reshape(len(x), -1).astype("float32")
    return x[:256], y[:256], x[1500:1700], y[1500:1700]


def _keras3_model(seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input((64,)),
            keras.layers.Dense(16, activation="relu", name="d1"),
            keras.layers.Dense(12, activation="relu", name="d2"),
            keras.layers.Dense(10, name="d3"),
        ]
    )


def _qkeras_model(seed=0):
    from qkeras import QActivation, QDense

    tf_keras.utils.set_random_seed(seed)
    q = "quantized_bits(6,0,1)"
    return tf_keras.Sequential(
        [
            tf_keras.Input((64,)),
            QDense(16, kernel_quantizer=q, bias_quantizer=q, name="q1"),
            QActivation("quantized_relu(6)", name="a1"),
            QDense(10, kernel_quantizer=q, bias_quantizer=q, name="q2"),
        ]
    )


FRAMEWORKS = {
    "keras3": (keras, _keras3_model),
    "tf_keras": (tf_keras, _qkeras_model),
}


def _grads(mod, model, x, y):
    loss_fn = mod.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape() as tape:
        loss = loss_fn(y, model(x, training=True))
    return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]


@pytest.mark.parametrize("framework", ["keras3", "tf_keras"])
def test_sgd_per_layer_draws_are_exact_per_layer_learning_rates(framework, digits):
    mod, build = FRAMEWORKS[framework]
    x, y, xv, yv = digits
    model = build()
    model.compile(
        mod.optimizers.SGD(learning_rate=0.3), loss=mod.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    assert detect_framework(model) == framework and is_sgd_family(model.optimizer)
    before = [w.numpy().copy() for w in model.trainable_variables]
    grads = _grads(mod, model, x, y)
    cb = ASLRCallback(0.05, monitor="val_loss", seed=3)
    model.fit(
        x, y, validation_data=(xv, yv), batch_size=len(x), epochs=1, shuffle=False, verbose=0, callbacks=[cb]
    )
    n_layers = len([layer for layer in model.layers if layer.trainable_weights])
    assert len(cb.last_lr) == len(cb.group_names) == n_layers
    lo, hi = ASLRSearch(0.05).bounds
    assert all(lo <= r <= hi for r in cb.last_lr) and len(set(cb.last_lr)) == n_layers
    layer_of = {}
    for i, layer in enumerate([layer for layer in model.layers if layer.trainable_weights]):
        for w in layer.trainable_weights:
            layer_of[id(w)] = i
    for w, w0, g in zip(model.trainable_variables, before, grads):
        rate = cb.last_lr[layer_of[id(w)]]
        np.testing.assert_allclose(w.numpy() - w0, -rate * g, rtol=2e-4, atol=1e-7)
    # the optimiser is restored: a later fit without ASLR is plain SGD at the centre rate c
    assert "apply" not in vars(model.optimizer) and "apply_gradients" not in vars(model.optimizer)
    before = [w.numpy().copy() for w in model.trainable_variables]
    grads = _grads(mod, model, x, y)
    model.fit(x, y, batch_size=len(x), epochs=1, shuffle=False, verbose=0)
    c = float(model.optimizer.learning_rate.numpy())
    assert c == pytest.approx(cb.c, rel=1e-6)
    for w, w0, g in zip(model.trainable_variables, before, grads):
        np.testing.assert_allclose(w.numpy() - w0, -c * g, rtol=2e-4, atol=1e-7)


@pytest.mark.parametrize("framework", ["keras3", "tf_keras"])
def test_training_follows_algorithm_2_on_the_monitored_metric(framework, digits):
    mod, build = FRAMEWORKS[framework]
    x, y, xv, yv = digits
    model = build(1)
    model.compile(
        mod.optimizers.SGD(learning_rate=1.0, momentum=0.9),
        loss=mod.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    cb = ASLRCallback(0.05, monitor="val_accuracy", mode="max", seed=0)
    hist = model.fit(
        x, y, validation_data=(xv, yv), batch_size=32, epochs=6, verbose=0, callbacks=[cb]
    ).history
    ref = ASLRSearch(0.05, mode="max")
    expected = [0.05] + [ref.observe(v) for v in hist["val_accuracy"]]
    assert cb.c_history == expected
    assert hist["aslr_c"] == pytest.approx(expected[:-1])
    assert hist["val_accuracy"][-1] > 0.5  # it trains (10 classes: chance is 0.1)


@pytest.mark.parametrize("framework", ["keras3", "tf_keras"])
def test_adaptive_optimizer_gets_one_draw_per_batch(framework, digits):
    mod, build = FRAMEWORKS[framework]
    x, y, xv, yv = digits
    model = build(2)
    model.compile(
        mod.optimizers.Adam(learning_rate=0.5),
        loss=mod.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    seen = []

    class Spy(mod.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(float(self.model.optimizer.learning_rate.numpy()))

    cb = ASLRCallback(0.003, monitor="val_loss", seed=1)
    model.fit(x, y, validation_data=(xv, yv), batch_size=64, epochs=2, verbose=0, callbacks=[cb, Spy()])
    assert len(seen) == 8 and len(set(seen)) == 8
    assert len(cb.last_lr) == 1 and seen[-1] == pytest.approx(cb.last_lr[0], rel=1e-6)
    lo, hi = ASLRSearch(0.003).bounds
    assert all(lo * (1 - 1e-6) <= v <= hi * (1 + 1e-6) for v in seen)
    with pytest.raises(ValueError, match="SGD-family"):
        model.fit(
            x,
            y,
            validation_data=(xv, yv),
            epochs=1,
            verbose=0,
            callbacks=[ASLRCallback(0.003, per_layer=True)],
        )


def test_resume_state_gives_identical_draws(digits):
    x, y, xv, yv = digits
    a = ASLRCallback(0.02, seed=9)
    b = ASLRCallback(0.02, seed=0)
    a.search.observe(0.5)
    a.rng.random(17)
    b.load_state_dict(a.state_dict())
    assert b.c == a.c and b.search.state_dict() == a.search.state_dict()
    np.testing.assert_array_equal(a.rng.random(5), b.rng.random(5))
    # a state of another start value / mode / monitor is refused
    with pytest.raises(ValueError, match="started at lr=0.02"):
        ASLRCallback(1.0).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="mode"):
        ASLRCallback(0.02, mode="min").load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="monitor"):
        ASLRCallback(0.02, monitor="val_acc").load_state_dict(a.state_dict())


def test_load_state_dict_refuses_another_optimizer_class(digits):
    x, y, xv, yv = digits
    model = _keras3_model()
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(0.1), loss=loss, metrics=["accuracy"])
    a = ASLRCallback(0.05, seed=0)
    model.fit(x, y, validation_data=(xv, yv), epochs=1, verbose=0, callbacks=[a])
    assert a.state_dict()["optimizer_class"].endswith("SGD")
    other = _keras3_model()
    other.compile(keras.optimizers.Adam(0.1), loss=loss, metrics=["accuracy"])
    b = ASLRCallback(0.05)
    b.load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match=r"saved for a .*SGD optimizer.*Adam"):
        other.fit(x, y, validation_data=(xv, yv), epochs=1, verbose=0, callbacks=[b])


def test_bad_input(digits):
    x, y, xv, yv = digits
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="lr"):
            ASLRCallback(bad)
    with pytest.raises(TypeError, match="monitor"):
        ASLRCallback(0.1, monitor="")
    with pytest.raises(TypeError, match="Keras"):
        detect_framework(object())
    model = _keras3_model()
    model.compile(
        keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    with pytest.raises(ValueError, match="'val_accuracy' never appeared"):  # no validation data
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ASLRCallback(0.1)])
    with pytest.raises(ValueError, match="'accuracy' is not in the epoch logs"):  # a non-val monitor: at once
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ASLRCallback(0.1, monitor="accuracy")])
    sched = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    model.compile(
        keras.optimizers.SGD(sched), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    with pytest.raises(ValueError, match="LearningRateSchedule"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[ASLRCallback(0.1)])


def test_default_monitor_is_the_validation_error():
    cb = ASLRCallback(0.05)
    assert cb.monitor == "val_accuracy" and cb.search.mode == "max"  # cost = -accuracy ~ 1 - accuracy
    assert ASLRCallback(0.05, monitor="val_loss").search.mode == "min"
    with pytest.raises(ValueError, match="mode"):
        ASLRCallback(0.05, mode="maximum")


@pytest.mark.parametrize("framework", ["keras3", "tf_keras"])
def test_epochs_without_validation_are_skipped(framework, digits):
    mod, build = FRAMEWORKS[framework]
    x, y, xv, yv = digits
    model = build(3)
    model.compile(
        mod.optimizers.SGD(learning_rate=0.1),
        loss=mod.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    cb = ASLRCallback(0.05, seed=0)
    hist = model.fit(
        x, y, validation_data=(xv, yv), validation_freq=2, batch_size=64, epochs=4, verbose=0, callbacks=[cb]
    ).history
    assert len(hist["val_accuracy"]) == 2  # epochs 2 and 4 only
    ref = ASLRSearch(0.05, mode="max")
    assert cb.c_history == [0.05] + [ref.observe(v) for v in hist["val_accuracy"]]
    assert cb.search.epochs == 2


@pytest.mark.parametrize("framework", ["keras3", "tf_keras"])
def test_another_learning_rate_callback_is_detected(framework, digits):
    mod, build = FRAMEWORKS[framework]
    x, y, xv, yv = digits
    for per_layer in (None, False):
        model = build(4)
        model.compile(
            mod.optimizers.SGD(learning_rate=0.1),
            loss=mod.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
        other = mod.callbacks.LearningRateScheduler(lambda epoch, lr: 0.01)
        cb = ASLRCallback(0.05, seed=0, per_layer=per_layer)
        with pytest.warns(UserWarning, match="another learning-rate callback"):
            model.fit(
                x, y, validation_data=(xv, yv), batch_size=64, epochs=1, verbose=0, callbacks=[other, cb]
            )
    # alone: silent
    model = build(4)
    model.compile(
        mod.optimizers.SGD(learning_rate=0.1),
        loss=mod.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        model.fit(
            x, y, validation_data=(xv, yv), batch_size=64, epochs=1, verbose=0, callbacks=[ASLRCallback(0.05)]
        )


def test_keras3_jax_backend_is_refused(digits, monkeypatch):
    from aslr.keras import check_backend

    with pytest.raises(ValueError, match="JAX backend.*stateless_apply"):
        check_backend("keras3", "jax")
    check_backend("keras3", "tensorflow")
    check_backend("keras3", "torch")
    check_backend("tf_keras", "jax")  # tf-keras always runs on TensorFlow
    # the callback asks the real Keras for its backend at fit time and refuses before touching the optimizer
    model = _keras3_model()
    model.compile(
        keras.optimizers.SGD(0.1), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    cb = ASLRCallback(0.05)
    cb.set_model(model)
    with pytest.raises(ValueError, match="JAX backend"):
        cb.on_train_begin()
    assert "apply" not in vars(model.optimizer)


def test_keras3_jax_backend_is_refused_in_a_real_fit(tmp_path):
    pytest.importorskip(
        "jax", reason="JAX is not installed: the backend detection is tested above without it"
    )
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "jax_fit.py"
    script.write_text(
        textwrap.dedent(
            """
            import numpy as np, keras
            from aslr.keras import ASLRCallback
            m = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
            m.compile(keras.optimizers.SGD(0.1), loss="mse")
            try:
                m.fit(np.ones((8, 4)), np.ones((8, 2)), epochs=1, verbose=0, callbacks=[ASLRCallback(0.05, "loss")])
            except ValueError as e:
                print("REFUSED", e)
            """
        )
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert "REFUSED" in out.stdout and "JAX backend" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("framework", ["keras3", "tf_keras"])
def test_range_test_and_preflight_on_digits(framework, digits):
    from aslr.keras import lr_range_test
    from aslr.lr_finder import StartLRWarning

    mod, build = FRAMEWORKS[framework]
    x, y, xv, yv = digits
    model = build(5)
    model.compile(
        mod.optimizers.SGD(learning_rate=1e-3, momentum=0.9),
        loss=mod.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    before = [w.copy() for w in model.get_weights()]
    r = lr_range_test(model, x, y, batch_size=32, start_lr=1e-4, end_lr=10.0, num_iter=60)
    assert 1e-4 <= r.low < r.suggestion < r.high <= 10.0
    assert r.losses.min() < r.losses[0]
    assert all(
        np.array_equal(a, b) for a, b in zip(before, model.get_weights())
    )  # the caller's model untouched
    assert float(np.asarray(model.optimizer.learning_rate)) == pytest.approx(1e-3)
    with pytest.raises(ValueError, match="above"):
        ASLRCallback(10 * r.high, preflight=r, preflight_action="raise")
    with pytest.warns(StartLRWarning, match="below"):
        ASLRCallback(r.low / 10, preflight=r)
    ASLRCallback(r.suggestion, preflight=r, preflight_action="raise")
    with pytest.raises(ValueError, match="num_iter"):
        lr_range_test(model, x, y, num_iter=2)
    with pytest.raises(ValueError, match="same number"):
        lr_range_test(model, x, y[:10])
