"""ASLR as a Keras callback, for Keras 3 models **and** tf-keras / QKeras models (Khodamoradi 2021, §5.3,
Algorithm 2, Eq 5.10).

``ASLRCallback(lr, monitor="val_accuracy", mode="auto", seed=None)`` is one class for both frameworks: it does not
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
and the centre used during the epoch is added to the logs as ``aslr_c`` (visible in ``History``).  The default
monitor is the **validation error**, Algorithm 2's cost: ``monitor="val_accuracy"`` with ``mode="auto"`` →
``"max"`` (cost = −accuracy, the same decisions as 1 − accuracy); compile with ``metrics=["accuracy"]``.
Epochs without validation (``fit(validation_freq=k)``) are skipped for ``val*`` monitors; if such a monitor
never appears during a ``fit`` the callback raises at the end of it.

Host edges: another callback that moves the optimiser's learning rate (``LearningRateScheduler``,
``ReduceLROnPlateau``, ...) is detected (the rate read back differs from the one ASLR wrote): a ``UserWarning``,
and ASLR's value is restored.  On the Keras 3 **JAX** backend ``fit`` does not call the optimiser's ``apply``
(it uses ``stateless_apply`` on a state snapshot taken at the first batch of each epoch), so neither the
per-layer scaling nor per-batch writes of ``learning_rate`` would reach the update: ``on_train_begin`` raises.
Randomness: ``numpy.random.default_rng(seed)``; ``state_dict()`` / ``load_state_dict()`` hold the search state
and the generator state.  With ``steps_per_execution > 1`` Keras calls the batch hooks once per execution,
so one draw covers that many steps.
"""

from __future__ import annotations

import math
import warnings

from hwreshape.extras import needs_keras  # noqa: F401  # isort: skip
import numpy as np

from aslr.core import ASLRSearch, resolve_mode

__all__ = ["ASLRCallback", "check_backend", "detect_framework", "is_sgd_family", "lr_range_test"]


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


def check_backend(framework: str, backend: str | None) -> None:
    """Raise for a Keras 3 backend whose ``fit`` bypasses the optimiser hooks ASLR relies on (JAX)."""
    if framework == "keras3" and backend == "jax":
        raise ValueError(
            "ASLRCallback: the Keras 3 JAX backend trains through optimizer.stateless_apply on a state snapshot "
            "taken at the start of each epoch, so per-layer gradient scaling and per-batch learning-rate writes "
            "would be silently dropped; use the TensorFlow or torch backend (KERAS_BACKEND), or aslr.torch"
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
        the key of the epoch logs fed to Algorithm 2 (default ``"val_accuracy"``, i.e. the validation error
        of Algorithm 2; compile with ``metrics=["accuracy"]`` and pass validation data to ``fit``).
    mode:
        ``"min"`` for losses, ``"max"`` for accuracy-like metrics, ``"auto"`` (default): ``"max"`` when the
        monitor's name contains ``"acc"``.
    seed:
        seed of the ``numpy.random.Generator`` the per-batch draws come from.
    per_layer:
        ``None`` (default): per-layer draws for SGD-family optimisers, one draw per batch otherwise;
        ``False``: one draw per batch for every optimiser; ``True``: require per-layer draws (SGD family only).
    preflight, preflight_action:
        the :class:`~aslr.lr_finder.RangeTestResult` of a range test (e.g. :func:`lr_range_test`): ``lr`` is
        checked against its boundaries at construction (``"warn"`` or ``"raise"`` when outside).
    """

    # tf-keras CallbackList protocol
    _supports_tf_logs = False
    _chief_worker_only = None

    def __init__(
        self,
        lr,
        monitor: str = "val_accuracy",
        mode: str = "auto",
        seed: int | None = None,
        per_layer: bool | None = None,
        preflight=None,
        preflight_action: str = "warn",
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"ASLRCallback: monitor must be a non-empty log key string, got {monitor!r}")
        if per_layer not in (None, True, False):
            raise TypeError(f"ASLRCallback: per_layer must be None, True or False, got {per_layer!r}")
        self.search = ASLRSearch(lr, mode=resolve_mode(monitor, mode))
        if preflight is not None:
            from aslr.lr_finder import check_start_lr

            check_start_lr(lr, preflight, action=preflight_action)
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
        self._written_lr: float | None = None
        self._warned_other = False
        self._observed_this_fit = 0
        self._optimizer_class: str | None = (
            None  # from a loaded state: checked when fit attaches the optimiser
        )

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

    def _read_lr(self) -> float:
        opt, _ = self._optimizer()
        lr = opt.learning_rate
        return float(lr.numpy() if hasattr(lr, "numpy") else lr)

    def _set_lr(self, value: float) -> None:
        opt, _ = self._optimizer()
        lr = opt.learning_rate
        if hasattr(lr, "assign"):
            lr.assign(value)
        else:
            opt.learning_rate = value
        self._written_lr = self._read_lr()  # as stored (float32)

    def _check_not_moved(self, where: str) -> None:
        """Warn (once per fit) when something else changed the learning rate since ASLR last wrote it."""
        if self._written_lr is None:
            return
        now = self._read_lr()
        if now != self._written_lr and not self._warned_other:
            self._warned_other = True
            warnings.warn(
                f"ASLRCallback: the optimizer's learning_rate changed from {self._written_lr:g} to {now:g} "
                f"outside ASLR (seen at {where}); another learning-rate callback (LearningRateScheduler, "
                "ReduceLROnPlateau, ...) is active — ASLR sets the learning rate itself, remove the other one",
                UserWarning,
                stacklevel=2,
            )

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
        if self.framework == "keras3":
            import keras

            check_backend(self.framework, keras.backend.backend())
        opt, inner = self._optimizer()
        cls = f"{type(inner).__module__}.{type(inner).__qualname__}"
        if self._optimizer_class is not None and self._optimizer_class != cls:
            raise ValueError(
                f"ASLRCallback: the loaded state was saved for a {self._optimizer_class} optimizer, the model is "
                f"compiled with a {cls}"
            )
        self._optimizer_class = cls
        self._warned_other = False
        self._observed_this_fit = 0
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
        self._check_not_moved(f"batch {batch}")
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
        self._check_not_moved(f"the end of epoch {epoch}")
        if self.monitor not in logs:
            if self.monitor.startswith("val"):
                return  # no validation this epoch (fit(validation_freq=k)); raise in on_train_end if never
            raise ValueError(
                f"ASLRCallback: monitor {self.monitor!r} is not in the epoch logs (available: {sorted(logs)}); "
                "pass validation data to fit or choose another monitor"
            )
        value = float(logs[self.monitor])
        if not math.isfinite(value):
            raise ValueError(f"ASLRCallback: {self.monitor}={value!r} at epoch {epoch} is not finite")
        used = self.search.c
        c = self.search.observe(value)
        self._observed_this_fit += 1
        self.c_history.append(c)
        logs["aslr_c"] = used
        if self._per_layer_active:
            self._set_lr(c)

    def on_train_end(self, logs=None):
        self._uninstall_scaling()
        self._written_lr = None
        epochs = self.params.get("epochs") if isinstance(self.params, dict) else None
        if self._observed_this_fit == 0 and epochs:
            raise ValueError(
                f"ASLRCallback: monitor {self.monitor!r} never appeared in the epoch logs during fit; pass "
                "validation data to fit (and validation_freq <= epochs), compile with the metric "
                "(metrics=['accuracy'] for the default 'val_accuracy'), or choose another monitor"
            )

    # -- persistence ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "search": self.search.state_dict(),
            "rng": self.rng.bit_generator.state,
            "c_history": list(self.c_history),
            "monitor": self.monitor,
            "optimizer_class": self._optimizer_class,
        }

    def load_state_dict(self, state: dict) -> None:
        missing = {"search", "rng"} - set(state)
        if missing:
            raise ValueError(f"ASLRCallback.load_state_dict: missing keys {sorted(missing)}")
        if state.get("monitor", self.monitor) != self.monitor:
            raise ValueError(
                f"ASLRCallback.load_state_dict: the state was saved with monitor={state['monitor']!r}, this "
                f"callback monitors {self.monitor!r}"
            )
        saved_cls = state.get("optimizer_class")
        if saved_cls is not None and self._optimizer_class is not None and saved_cls != self._optimizer_class:
            raise ValueError(
                f"ASLRCallback.load_state_dict: the state was saved for a {saved_cls} optimizer, this callback "
                f"drives a {self._optimizer_class}"
            )
        self.search.load_state_dict(state["search"])
        self.rng.bit_generator.state = state["rng"]
        self.c_history = list(state.get("c_history", [self.search.c]))
        if saved_cls is not None:
            self._optimizer_class = saved_cls


def lr_range_test(
    model,
    x,
    y,
    *,
    batch_size: int = 32,
    start_lr: float = 1e-5,
    end_lr: float = 1.0,
    num_iter: int = 100,
    step_mode: str = "exp",
    smooth_f: float = 0.05,
    diverge_th: float = 5.0,
    drop: float = 0.1,
    seed: int = 0,
):
    """Learning-rate range test (Eq 5.9) for a compiled Keras 3 or tf-keras / QKeras model.

    A clone of ``model`` (same weights, a fresh optimiser from the model's optimiser config, the model's loss) is
    trained for ``num_iter`` mini-batches of ``(x, y)`` (cycled, shuffled by ``seed``) with ``train_on_batch``
    while the learning rate rises from ``start_lr`` to ``end_lr`` (exponentially or linearly); the loss is
    smoothed as ``avg = smooth_f*loss + (1 - smooth_f)*avg`` and the sweep stops once it exceeds ``diverge_th``
    times its best value.  The caller's model and optimiser are left untouched.  Returns
    :func:`aslr.lr_finder.suggest_start_lr` of the curve (a :class:`~aslr.lr_finder.RangeTestResult`).
    """
    from aslr.lr_finder import suggest_start_lr

    framework = detect_framework(model)
    for name, v in (("start_lr", start_lr), ("end_lr", end_lr)):
        if isinstance(v, bool) or not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
            raise ValueError(f"lr_range_test: {name} must be a finite number > 0, got {v!r}")
    if not start_lr < end_lr:
        raise ValueError(f"lr_range_test: start_lr ({start_lr}) must be < end_lr ({end_lr})")
    if not (isinstance(num_iter, int) and num_iter >= 3):
        raise ValueError(f"lr_range_test: num_iter must be an int >= 3, got {num_iter!r}")
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"lr_range_test: batch_size must be an int >= 1, got {batch_size!r}")
    if step_mode not in ("exp", "linear"):
        raise ValueError(f"lr_range_test: step_mode must be 'exp' or 'linear', got {step_mode!r}")
    if getattr(model, "optimizer", None) is None or getattr(model, "loss", None) is None:
        raise ValueError("lr_range_test: compile the model (optimizer and loss) before the range test")
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or len(x) < batch_size:
        raise ValueError(
            f"lr_range_test: x and y must hold the same number (>= batch_size={batch_size}) of samples, "
            f"got {len(x)} and {len(y)}"
        )
    if framework == "keras3":
        import keras as host
    else:
        import tf_keras as host
    clone = host.models.clone_model(model)
    clone.set_weights(model.get_weights())
    opt = type(model.optimizer).from_config(model.optimizer.get_config())
    clone.compile(optimizer=opt, loss=model.loss)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    n_batches = len(x) // batch_size
    if step_mode == "exp":
        lrs = start_lr * (end_lr / start_lr) ** (np.arange(num_iter) / (num_iter - 1))
    else:
        lrs = start_lr + (end_lr - start_lr) * np.arange(num_iter) / (num_iter - 1)
    used, losses = [], []
    avg, best = None, math.inf
    for i, lr in enumerate(lrs):
        b = i % n_batches
        if b == 0 and i > 0:
            order = rng.permutation(len(x))
        idx = order[b * batch_size : (b + 1) * batch_size]
        opt.learning_rate = float(lr)
        out = clone.train_on_batch(x[idx], y[idx])
        loss = float(np.asarray(out[0] if isinstance(out, list | tuple) else out))
        avg = loss if avg is None else smooth_f * loss + (1.0 - smooth_f) * avg
        used.append(float(lr))
        losses.append(avg)
        if not math.isfinite(avg) or avg > diverge_th * best:
            break
        best = min(best, avg)
    return suggest_start_lr(used, losses, step_mode="exp" if step_mode == "exp" else "linear", drop=drop)
