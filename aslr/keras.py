"""ASLR as a Keras callback, for Keras 3 models **and** tf-keras / QKeras models (seed 002, Algorithm 2, Eq 5.10).

``ASLRCallback(lr, monitor="val_loss", mode="min", seed=None)`` is one class for both frameworks: it does not
inherit from either framework's ``Callback`` but implements the callback protocol both ``fit`` loops call
(Keras 3 ``CallbackList`` and tf-keras ``CallbackList``, including tf-keras' ``_implements_*_batch_hooks``),
and detects the framework of the model it is attached to.  Importing this module imports neither Keras nor
TensorFlow (so the QKeras rule "set ``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported" stays the
user's to follow); the host is touched only once ``fit`` attaches a model.

What happens at every training batch (``on_train_batch_begin``):

* **SGD-family optimisers** (``SGD`` of Keras 3, tf-keras, tf-keras legacy, with or without momentum /
  Nesterov): per-layer rates.  For every layer of ``model.layers`` that owns trainable weights a rate
  ``c_u ~ U(c - s/2, c + s/2)`` is drawn (Eq 5.10); the optimiser's ``learning_rate`` holds the centre ``c``
  and the gradient of each weight is multiplied by ``c_u / c`` before the update (the callback wraps the
  optimiser's ``apply`` (Keras 3) / ``apply_gradients`` (tf-keras) for the duration of ``fit`` and restores it
  afterwards).  For SGD, ``w -= lr*g`` and Keras' momentum ``v = m*v - lr*g`` are linear in ``lr*g``, so this
  is exactly a per-layer learning rate ``c_u`` for that step.  Weights not owned by a top-level layer (a
  nested model counts as one layer) form one extra group.  Gradient clipping configured on the optimiser
  (``clipnorm``, ``clipvalue``, ``global_clipnorm``) then acts on the scaled gradients.
* **adaptive optimisers** (Adam, AdamW, RMSprop, Adagrad, Adadelta, Nadam, Lion, ...): one rate per batch,
  ``c_u ~ U(c - s/2, c + s/2)``, is written into the optimiser's ``learning_rate`` and used by **all**
  layers.  Per-layer rates are not applied because Keras optimisers take a single learning rate and the
  only per-variable door, scaling the gradient, cancels in the ``m / sqrt(v)`` normalisation of these
  optimisers.  Passing ``per_layer=True`` with such an optimiser raises ``ValueError``.

After every epoch (``on_epoch_end``) ``logs[monitor]`` goes through Algorithm 2 (:class:`aslr.core.ASLRSearch`)
and the centre used during the epoch is added to the logs as ``aslr_c`` (visible in ``History``).
Randomness: ``numpy.random.default_rng(seed)``; ``state_dict()`` / ``load_state_dict()`` hold the search state
and the generator state.  With ``steps_per_execution > 1`` Keras calls the batch hooks once per execution,
so one draw covers that many steps.
"""

from __future__ import annotations

import math

import numpy as np

from aslr.core import ASLRSearch

__all__ = ["ASLRCallback", "detect_framework", "is_sgd_family"]


def detect_framework(model) -> str:
    """``"tf_keras"`` for tf-keras / QKeras models, ``"keras3"`` for Keras 3 models; TypeError otherwise."""
    modules = [c.__module__ for c in type(model).__mro__]
    if any(m == "tf_keras" or m.startswith("tf_keras.") for m in modules):
        return "tf_keras"
    if any(m == "keras" or m.startswith("keras.") for m in modules):
        return "keras3"
    raise TypeError(
        f"ASLRCallback: expected a Keras 3 or tf-keras (QKeras) model, got {type(model).__module__}."
        f"{type(model).__name__}"
    )


def is_sgd_family(optimizer) -> bool:
    """True for (subclasses of) Keras 3 / tf-keras / tf-keras legacy ``SGD``."""
    return any(c.__name__ == "SGD" for c in type(optimizer).__mro__)


class ASLRCallback:
    """Adaptive Scheduler for Learning Rate for ``model.fit`` (Keras 3 and tf-keras / QKeras).

    Parameters
    ----------
    lr:
        initial centre learning rate ``c`` (the single hyperparameter; finite, > 0).  It replaces the
        optimiser's learning rate at the start of ``fit``.
    monitor:
        the key of the epoch logs fed to Algorithm 2 (default ``"val_loss"``; pass validation data to ``fit``).
    mode:
        ``"min"`` for losses, ``"max"`` for accuracy-like metrics.
    seed:
        seed of the ``numpy.random.Generator`` the per-batch draws come from.
    per_layer:
        ``None`` (default): per-layer draws for SGD-family optimisers, one draw per batch otherwise;
        ``False``: one draw per batch for every optimiser; ``True``: require per-layer draws (SGD family only).
    """

    # tf-keras CallbackList protocol
    _supports_tf_logs = False
    _chief_worker_only = None

    def __init__(
        self,
        lr,
        monitor: str = "val_loss",
        mode: str = "min",
        seed: int | None = None,
        per_layer: bool | None = None,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"ASLRCallback: monitor must be a non-empty log key string, got {monitor!r}")
        if per_layer not in (None, True, False):
            raise TypeError(f"ASLRCallback: per_layer must be None, True or False, got {per_layer!r}")
        self.search = ASLRSearch(lr, mode=mode)
        self.monitor = monitor
        self.per_layer = per_layer
        self.rng = np.random.default_rng(seed)
        self.model = None
        self.params: dict = {}
        self.framework: str | None = None
        self.c_history: list[float] = [self.search.c]
        self.last_lr: list[float] = []
        self._per_layer_active = False
        self._factors = None
        self._var_group: dict[int, int] = {}
        self._group_names: list[str] = []
        self._wrapped: tuple[str, object] | None = None

    # -- protocol plumbing ----------------------------------------------------------------------------------
    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params) -> None:
        self.params = params

    def _implements_train_batch_hooks(self) -> bool:
        return True

    def _implements_test_batch_hooks(self) -> bool:
        return False

    def _implements_predict_batch_hooks(self) -> bool:
        return False

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_batch_begin(self, batch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass

    # -- learning-rate plumbing -------------------------------------------------------------------------------
    @property
    def c(self) -> float:
        return self.search.c

    @property
    def group_names(self) -> list[str]:
        """Names of the per-layer groups (empty unless per-layer draws are active)."""
        return list(self._group_names)

    def _optimizer(self):
        opt = getattr(self.model, "optimizer", None)
        if opt is None:
            raise ValueError("ASLRCallback: the model has no optimizer (compile the model before fit)")
        inner = getattr(opt, "inner_optimizer", None)  # LossScaleOptimizer
        return opt, (inner if inner is not None else opt)

    def _set_lr(self, value: float) -> None:
        opt, _ = self._optimizer()
        lr = opt.learning_rate
        if hasattr(lr, "assign"):
            lr.assign(value)
        else:
            opt.learning_rate = value

    def _build_groups(self) -> None:
        layers = list(getattr(self.model, "layers", []))
        var_group: dict[int, int] = {}
        names: list[str] = []
        for layer in layers:
            ws = [w for w in layer.trainable_weights if id(w) not in var_group]
            if ws:
                for w in ws:
                    var_group[id(w)] = len(names)
                names.append(layer.name)
        rest = [w for w in self.model.trainable_weights if id(w) not in var_group]
        if rest:
            for w in rest:
                var_group[id(w)] = len(names)
            names.append("<other>")
        if not names:
            raise ValueError("ASLRCallback: the model has no trainable weights")
        self._var_group = var_group
        self._group_names = names

    def _install_scaling(self, opt) -> None:
        n = len(self._group_names)
        var_group = self._var_group
        if self.framework == "keras3":
            import keras

            factors = keras.Variable(np.ones(n, dtype="float32"), trainable=False, name="aslr_layer_factors")

            def scale(g, v):
                if g is None or id(v) not in var_group:
                    return g
                return g * keras.ops.cast(factors[var_group[id(v)]], g.dtype)

            original = opt.apply

            def apply(grads, trainable_variables=None):
                vs = trainable_variables if trainable_variables is not None else opt._trainable_variables
                vs = list(vs)
                grads = [scale(g, v) for g, v in zip(grads, vs)]
                return original(grads, trainable_variables)

            opt.apply = apply
            self._wrapped = ("apply", original)
        else:
            import tensorflow as tf

            factors = tf.Variable(np.ones(n, dtype="float32"), trainable=False, name="aslr_layer_factors")

            def scale(g, v):
                if g is None or id(v) not in var_group:
                    return g
                f = factors[var_group[id(v)]]
                if isinstance(g, tf.IndexedSlices):
                    return tf.IndexedSlices(g.values * tf.cast(f, g.values.dtype), g.indices, g.dense_shape)
                return g * tf.cast(f, g.dtype)

            original = opt.apply_gradients

            def apply_gradients(grads_and_vars, *args, **kwargs):
                pairs = [(scale(g, v), v) for g, v in grads_and_vars]
                return original(pairs, *args, **kwargs)

            opt.apply_gradients = apply_gradients
            self._wrapped = ("apply_gradients", original)
        self._factors = factors

    def _uninstall_scaling(self) -> None:
        if self._wrapped is not None:
            opt, _ = self._optimizer()
            name, _original = self._wrapped
            # the wrapper was set as an instance attribute: deleting it re-exposes the class method
            if name in vars(opt):
                delattr(opt, name)
            self._wrapped = None
            self._factors = None
            # the traced train function has the wrapper baked in: make fit trace a clean one next time
            self.model.train_function = None

    # -- fit hooks --------------------------------------------------------------------------------------------
    def on_train_begin(self, logs=None):
        if self.model is None:
            raise ValueError("ASLRCallback: no model attached (use it through model.fit(callbacks=[...]))")
        self.framework = detect_framework(self.model)
        opt, inner = self._optimizer()
        raw = getattr(opt, "_learning_rate", None)
        if raw is None:
            raw = getattr(opt, "_hyper", {}).get("learning_rate")  # tf-keras legacy optimizers
        if raw is not None and not hasattr(raw, "assign") and callable(raw):
            raise ValueError(
                "ASLRCallback: the optimizer's learning_rate is a LearningRateSchedule; ASLR sets the learning "
                "rate itself — compile with a constant learning rate"
            )
        sgd = is_sgd_family(inner)
        if self.per_layer is True and not sgd:
            raise ValueError(
                f"ASLRCallback: per_layer=True needs an SGD-family optimizer, got {type(inner).__name__} "
                "(adaptive optimizers normalise the gradient, so per-layer rates cannot be applied; "
                "use per_layer=None/False for one draw per batch)"
            )
        self._per_layer_active = sgd and self.per_layer is not False
        self._set_lr(self.search.c)
        if self._per_layer_active:
            self._build_groups()
            self._install_scaling(opt)
            # a train function traced before this fit would not see the wrapper
            self.model.make_train_function(force=True)

    def on_train_batch_begin(self, batch, logs=None):
        c = self.search.c
        s = self.search.s
        low = self.search.bounds[0]
        if self._per_layer_active:
            draws = low + s * self.rng.random(len(self._group_names))
            self._factors.assign((draws / c).astype("float32"))
        else:
            draws = low + s * self.rng.random(1)
            self._set_lr(float(draws[0]))
        self.last_lr = draws.tolist()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        if self.monitor not in logs:
            raise ValueError(
                f"ASLRCallback: monitor {self.monitor!r} is not in the epoch logs (available: {sorted(logs)}); "
                "pass validation data to fit or choose another monitor"
            )
        value = float(logs[self.monitor])
        if not math.isfinite(value):
            raise ValueError(f"ASLRCallback: {self.monitor}={value!r} at epoch {epoch} is not finite")
        used = self.search.c
        c = self.search.observe(value)
        self.c_history.append(c)
        logs["aslr_c"] = used
        if self._per_layer_active:
            self._set_lr(c)

    def on_train_end(self, logs=None):
        self._uninstall_scaling()

    # -- persistence ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "search": self.search.state_dict(),
            "rng": self.rng.bit_generator.state,
            "c_history": list(self.c_history),
            "monitor": self.monitor,
        }

    def load_state_dict(self, state: dict) -> None:
        missing = {"search", "rng"} - set(state)
        if missing:
            raise ValueError(f"ASLRCallback.load_state_dict: missing keys {sorted(missing)}")
        self.search.load_state_dict(state["search"])
        self.rng.bit_generator.state = state["rng"]
        self.c_history = list(state.get("c_history", [self.search.c]))
