"""SkipTrim for Keras 3, tf-keras and QKeras: ResNet builders, Skipper/Trimmer/NonResNet callback + loss, export.

Khodamoradi 2021, ch. 4 (Fig 4.3 a-d, Algorithm 1, Listings 4.1/4.2, Eq 4.3/4.4, Table 4.6) and the NonResNet paper (Weng, Khodamoradi & Kastner)
(NonResNet).  TensorFlow/Keras are imported lazily, inside the functions that need them.

Frameworks: ``framework="keras"`` (Keras 3) or ``"tf_keras"`` (Keras 2; QKeras models, which need
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported — :func:`hwreshape.compat.use_legacy_keras`).  The
default is tf-keras when ``quant`` is given or ``TF_USE_LEGACY_KERAS=1`` is set, Keras 3 otherwise.

* :func:`resnet` builds a CIFAR-style ResNet-n (n = 6k + 2) with per-block skip modes ``long`` (Fig 4.3),
  ``short`` (Listing 4.2, reshape=True: two short skips, one per Conv unit) and ``none`` (Listing 4.1,
  reshape=True); a skip-free block contains no ``Add`` layer, a trimmed block exactly two.
  ``gated=True`` builds the *training* form of a student: every block carries both skip paths multiplied by
  non-trainable 0/1 gates (``y1 = U1(x) + g_s·P(x)``, ``y = U2(y1) + g_s·y1 + g_l·P(x)``) so the callback can
  change a block's mode between epochs inside one ``fit`` (Keras compiles the graph once);
  :meth:`SkipTrim.export` rebuilds the clean graph for hls4ml.
* :class:`Skipper`, :class:`Trimmer`, :class:`NonResNet`: frozen teacher, student initialised from it,
  ``.callback`` (Algorithm 1 per epoch, JSON log, checkpoint) and ``.loss`` (Eq 4.4).
* :func:`export` / :meth:`SkipTrim.export`: clean student, BN folded into the convolutions (Eq 4.3).

Deviations (also in the README section): the teacher logits are computed once per training set
(:meth:`SkipTrim.targets`, packed beside the one-hot labels in ``y``) instead of per batch — identical for a
frozen teacher without data augmentation, and it makes Eq 4.4 a plain Keras loss that works in Keras 3 and
tf-keras.  Downsampling blocks use a 1×1 convolution + BN projection on the skip (He et al. option B); in a
trimmed downsampling block the first short skip carries that projection.  ``<W,I>`` means ap_fixed<W,I>
(sign included): QKeras ``quantized_bits(W, I−1, alpha=1)`` for weights/biases and ``quantized_relu(W, I)``
for activations; BN stays float in the QKeras model (hls4ml quantizes it) and is not folded for QKeras.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from hwreshape.extras import needs_keras  # noqa: F401  # isort: skip
import numpy as np

from hls4ml_skiptrim.training.bnfold import fold_conv_bn
from hls4ml_skiptrim.training.schedule import (
    BETA,
    METHODS,
    JsonLog,
    SkipTrimSchedule,
    blocks_for_depth,
    check_arrangement,
    check_beta,
    parse_quant,
    resolve_skips,
)

_CLASSES: dict[str, dict] = {}


# ----------------------------------------------------------------------------------------------- frameworks
def _framework(quant, framework: str | None) -> str:
    if framework is None:
        legacy = quant is not None or os.environ.get("TF_USE_LEGACY_KERAS") == "1"
        framework = "tf_keras" if legacy else "keras"
    if framework not in ("keras", "tf_keras"):
        raise ValueError(f"framework: expected 'keras' (Keras 3) or 'tf_keras', got {framework!r}")
    if quant is not None and framework != "tf_keras":
        raise ValueError("quant: QKeras models need framework='tf_keras' (QKeras is a tf-keras library)")
    return framework


def _K(framework: str):
    if framework == "tf_keras":
        if os.environ.get("TF_USE_LEGACY_KERAS") != "1":
            from hwreshape.compat import use_legacy_keras

            use_legacy_keras()
        import tf_keras as K
    else:
        import keras as K
    return K


def _classes(framework: str) -> dict:
    """Layer/loss/callback classes bound to one framework (Keras 3 and tf-keras have separate base classes)."""
    if framework in _CLASSES:
        return _CLASSES[framework]
    K = _K(framework)
    import tensorflow as tf

    class SkipGate(K.layers.Layer):
        """Multiplies its input by a non-trainable scalar gate (1 = skip present, 0 = skip removed)."""

        def __init__(self, value: float = 1.0, **kwargs):
            super().__init__(**kwargs)
            self.value = float(value)

        def build(self, input_shape):
            self.gate = self.add_weight(
                name="gate", shape=(), initializer=K.initializers.Constant(self.value), trainable=False
            )
            super().build(input_shape)

        def call(self, inputs):
            return inputs * tf.cast(self.gate, inputs.dtype)

        def get_config(self):
            return {**super().get_config(), "value": self.value}

    class SkipTrimLoss(K.losses.Loss):
        """Eq 4.4: ``(1 − β)·CE(s, l) + β·MSE(t, s)``; ``y_true`` = [one-hot label | teacher logits]."""

        def __init__(self, beta: float = BETA, num_classes: int = 10, name: str = "skiptrim_loss", **kwargs):
            super().__init__(name=name, **kwargs)
            self.beta = check_beta(beta)
            self.num_classes = int(num_classes)

        def call(self, y_true, y_pred):
            c = self.num_classes
            y_true = tf.cast(y_true, y_pred.dtype)
            onehot, teacher = y_true[:, :c], y_true[:, c:]
            ce = tf.nn.softmax_cross_entropy_with_logits(labels=onehot, logits=y_pred)
            mse = tf.reduce_mean(tf.square(teacher - y_pred), axis=-1)
            return (1.0 - self.beta) * ce + self.beta * mse

        def get_config(self):
            return {**super().get_config(), "beta": self.beta, "num_classes": self.num_classes}

    class SkipTrimCallback(K.callbacks.Callback):
        """Algorithm 1 lines 14-17 at each epoch start; JSON log + checkpoint at each epoch end."""

        def __init__(self, skiptrim: SkipTrim, verbose: bool = True):
            super().__init__()
            self.skiptrim = skiptrim
            self.verbose = verbose
            self._new: list[int] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._new = self.skiptrim.begin_epoch(epoch)
            if self._new and self.verbose:
                mode = self.skiptrim.schedule.target_mode
                print(f"[skiptrim] epoch {epoch}: blocks {self._new} -> {mode}", flush=True)

        def on_epoch_end(self, epoch, logs=None):
            self.skiptrim.end_epoch(epoch, logs or {}, self._new)

    class BestEpoch(K.callbacks.Callback):
        """Keep the weights of the best epoch (``monitor``, e.g. ``val_accuracy``) among epochs >= ``start_epoch``
        and restore them when ``fit`` ends (model selection on the validation set)."""

        def __init__(self, monitor: str = "val_accuracy", mode: str = "max", start_epoch: int = 0):
            super().__init__()
            if mode not in ("min", "max"):
                raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
            self.monitor, self.mode, self.start_epoch = monitor, mode, int(start_epoch)
            self.best, self.best_epoch, self._weights = None, None, None

        def on_epoch_end(self, epoch, logs=None):
            v = (logs or {}).get(self.monitor)
            if epoch < self.start_epoch or v is None:
                return
            v = float(v)
            if self.best is None or (v > self.best if self.mode == "max" else v < self.best):
                self.best, self.best_epoch, self._weights = v, int(epoch), self.model.get_weights()

        def on_train_end(self, logs=None):
            if self._weights is not None:
                self.model.set_weights(self._weights)

    def packed_accuracy(num_classes: int):
        def accuracy(y_true, y_pred):
            lab = tf.argmax(y_true[:, :num_classes], axis=-1)
            return tf.cast(tf.equal(lab, tf.argmax(y_pred, axis=-1)), tf.float32)

        return accuracy

    _CLASSES[framework] = {
        "K": K,
        "SkipGate": SkipGate,
        "SkipTrimLoss": SkipTrimLoss,
        "SkipTrimCallback": SkipTrimCallback,
        "packed_accuracy": packed_accuracy,
        "BestEpoch": BestEpoch,
    }
    return _CLASSES[framework]


# ----------------------------------------------------------------------------------------------- builder
def resnet(
    depth: int,
    skips="long",
    quant=None,
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    arrangement: str = "b",
    width: int = 16,
    gated: bool = False,
    fold_bn: bool = False,
    framework: str | None = None,
    name: str | None = None,
):
    """CIFAR-style ResNet-``depth`` (6k+2) with residual blocks of Fig 4.3 ``arrangement`` and per-block skips.

    ``skips``: ``"long"|"short"|"none"`` or one mode per block (3k blocks).  ``quant``: None (float) or
    ``<W,I>`` (QKeras, tf-keras).  ``width``: channels of the first stage (16 in the paper; stages 1×, 2×, 4×).
    ``gated``: training form with 0/1 skip gates (see module doc).  ``fold_bn``: every Conv+BN pair is one
    Conv2D with bias (Eq 4.3; weights come from :func:`export`); arrangements a-c only.
    The model outputs logits; :func:`config_of` returns the build configuration.
    """
    n_blocks = blocks_for_depth(depth)
    modes = resolve_skips(skips, n_blocks)
    check_arrangement(arrangement)
    q = parse_quant(quant)
    fw = _framework(q, framework)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    try:
        input_shape = tuple(int(v) for v in input_shape)
    except (TypeError, ValueError):
        raise TypeError(f"input_shape must be (H, W, C), got {input_shape!r}") from None
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(
            f"input_shape must be (H, W, C) channels-last with positive sizes, got {input_shape}"
        )
    if fold_bn and arrangement == "d":
        raise ValueError("fold_bn: arrangement 'd' puts BN before the convolution (not adjacent, Eq 4.3)")
    if fold_bn and q is not None:
        raise ValueError("fold_bn: not for QKeras models (folding would change the quantized weights)")
    if fold_bn and gated:
        raise ValueError("fold_bn and gated are exclusive (gated is the training form)")
    C = _classes(fw)
    K = C["K"]
    L = K.layers

    if q is not None:
        from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_relu

        w_bits, i_bits = q

        def wq():
            return quantized_bits(w_bits, i_bits - 1, alpha=1)

    def conv(nm, filters, k, stride):
        kw = dict(strides=stride, padding="same", use_bias=fold_bn, kernel_initializer="he_normal", name=nm)
        if q is not None:
            return QConv2D(filters, k, kernel_quantizer=wq(), bias_quantizer=wq(), **kw)
        return L.Conv2D(filters, k, **kw)

    def bn(nm):
        if fold_bn:
            return lambda t: t
        return L.BatchNormalization(momentum=0.9, name=nm)  # torch's default (0.1 in its convention)

    def act(nm):
        if q is not None:
            return QActivation(quantized_relu(w_bits, i_bits), name=nm)
        return L.Activation("relu", name=nm)

    def unit(h, p, u, cout, stride):
        c, b, a = f"{p}conv{u}", f"{p}bn{u}", f"{p}act{u}"
        if arrangement in ("a", "b"):
            h = bn(b)(conv(c, cout, 3, stride)(h))
            return act(a)(h) if (arrangement == "b" or u == 1) else h
        if arrangement == "c":
            return bn(b)(conv(c, cout, 3, stride)(act(a)(h)))
        return conv(c, cout, 3, stride)(act(a)(bn(b)(h)))

    inp = L.Input(shape=input_shape, name="x_in")  # "input" is reserved in hls4ml
    h = conv("stem_conv", width, 3, 1)(inp)
    if arrangement in ("a", "b", "c"):
        h = bn("stem_bn")(h)
    if arrangement in ("a", "b"):
        h = act("stem_act")(h)
    k = n_blocks // 3
    cin, i = width, 0
    for s in range(3):
        cout = width * 2**s
        for j in range(k):
            stride = 2 if (s > 0 and j == 0) else 1
            p, mode = f"block{i}_", modes[i]
            x = h

            def proj(t, p=p, cout=cout, stride=stride, cin=cin):
                if stride == 1 and cin == cout:
                    return t
                return bn(f"{p}proj_bn")(conv(f"{p}proj_conv", cout, 1, stride)(t))

            if gated:
                g_long = C["SkipGate"](1.0 if mode == "long" else 0.0, name=f"{p}gate_long")
                g_s1 = C["SkipGate"](1.0 if mode == "short" else 0.0, name=f"{p}gate_short1")
                g_s2 = C["SkipGate"](1.0 if mode == "short" else 0.0, name=f"{p}gate_short2")
                sx = proj(x)
                y1 = L.Add(name=f"{p}add1")([unit(x, p, 1, cout, stride), g_s1(sx)])
                h = L.Add(name=f"{p}add2")([unit(y1, p, 2, cout, 1), g_s2(y1), g_long(sx)])
            elif mode == "long":
                h = L.Add(name=f"{p}add")([unit(unit(x, p, 1, cout, stride), p, 2, cout, 1), proj(x)])
            elif mode == "short":
                y1 = L.Add(name=f"{p}add1")([unit(x, p, 1, cout, stride), proj(x)])
                h = L.Add(name=f"{p}add2")([unit(y1, p, 2, cout, 1), y1])
            else:
                h = unit(unit(x, p, 1, cout, stride), p, 2, cout, 1)
            if arrangement == "a":
                h = act(f"{p}post_act")(h)
            cin, i = cout, i + 1
    if arrangement == "d":
        h = bn("head_bn")(h)
    if arrangement in ("c", "d"):
        h = act("head_act")(h)
    h = L.GlobalAveragePooling2D(name="pool")(h)
    if q is not None:
        out = QDense(num_classes, kernel_quantizer=wq(), bias_quantizer=wq(), name="fc")(h)
    else:
        out = L.Dense(num_classes, name="fc")(h)
    model = K.Model(inp, out, name=name or f"resnet{depth}_{arrangement}")
    _set_config(
        model,
        {
            "depth": int(depth),
            "skips": list(modes),
            "quant": None if q is None else list(q),
            "input_shape": list(input_shape),
            "num_classes": int(num_classes),
            "arrangement": arrangement,
            "width": int(width),
            "gated": bool(gated),
            "fold_bn": bool(fold_bn),
            "framework": fw,
        },
    )
    return model


def _set_config(model, cfg: dict) -> None:
    # a JSON string: Keras would wrap a dict/list attribute into its own tracking containers
    model._skiptrim_json = json.dumps(cfg)


def config_of(model) -> dict:
    """The build configuration stored by :func:`resnet` (TypeError for other models)."""
    raw = getattr(model, "_skiptrim_json", None)
    cfg = json.loads(raw) if isinstance(raw, str) else None
    if not isinstance(cfg, dict) or "depth" not in cfg:
        raise TypeError(
            f"model {getattr(model, 'name', model)!r} was not built by hls4ml_skiptrim.training.keras.resnet "
            "(no skiptrim_config): build teacher and student with resnet()"
        )
    return dict(cfg)


_ARCH_KEYS = ("depth", "quant", "input_shape", "num_classes", "arrangement", "width", "framework")


def check_compatible(teacher, student) -> None:
    """ValueError naming the first architecture difference between teacher and student (skips may differ)."""
    ct, cs = config_of(teacher), config_of(student)
    for key in _ARCH_KEYS:
        if ct[key] != cs[key]:
            raise ValueError(f"teacher/student architecture mismatch: {key} = {ct[key]!r} vs {cs[key]!r}")


def transfer_weights(src, dst) -> list[str]:
    """Copy weights layer by layer (matched by name) from ``src`` into ``dst``; gates are left alone.

    With ``config_of(dst)['fold_bn']`` each Conv followed by BN in ``src`` is folded (Eq 4.3).
    Raises ValueError when a layer of ``dst`` has no counterpart or a different weight shape.
    Returns the names of the copied layers.
    """
    fold = config_of(dst)["fold_bn"] and not config_of(src)["fold_bn"]
    by_name = {layer.name: layer for layer in src.layers}
    copied = []
    for layer in dst.layers:
        if not layer.weights or "gate" in layer.name:
            continue
        s = by_name.get(layer.name)
        if s is None:
            raise ValueError(f"layer {layer.name!r} of {dst.name!r} has no counterpart in {src.name!r}")
        w = s.get_weights()
        if fold and "conv" in layer.name:
            bn_name = layer.name.replace("conv", "bn")
            bn = by_name.get(bn_name)
            if bn is None:
                raise ValueError(
                    f"fold_bn: conv {layer.name!r} has no following BN {bn_name!r} in {src.name!r}"
                )
            gamma, beta, mean, var = bn.get_weights()
            kern, bias = fold_conv_bn(
                w[0], w[1] if len(w) > 1 else None, gamma, beta, mean, var, float(bn.epsilon), out_axis=-1
            )
            w = [kern, bias]
        want = [tuple(v.shape) for v in layer.get_weights()]
        got = [tuple(np.shape(v)) for v in w]
        if want != got:
            raise ValueError(
                f"layer {layer.name!r}: weight shapes {got} in {src.name!r} but {want} in {dst.name!r}"
            )
        layer.set_weights(w)
        copied.append(layer.name)
    return copied


def set_modes(model, modes) -> None:
    """Set the per-block skip modes of a gated student (assigns its 0/1 gates)."""
    cfg = config_of(model)
    if not cfg["gated"]:
        raise ValueError(
            "set_modes needs a gated student (resnet(..., gated=True)); rebuild for a fixed graph"
        )
    modes = resolve_skips(modes, blocks_for_depth(cfg["depth"]))
    for i, mode in enumerate(modes):
        vals = {
            "long": 1.0 if mode == "long" else 0.0,
            "short1": 1.0 if mode == "short" else 0.0,
            "short2": 1.0 if mode == "short" else 0.0,
        }
        for key, v in vals.items():
            model.get_layer(f"block{i}_gate_{key}").gate.assign(v)
    _set_config(model, {**cfg, "skips": list(modes)})


def export(model, fold_bn: bool | None = None, name: str | None = None):
    """The clean (gate-free) model of a student's current modes, weights copied; BN folded (Eq 4.3) if
    ``fold_bn`` (default: float models of arrangements a-c)."""
    cfg = config_of(model)
    if fold_bn is None:
        fold_bn = cfg["quant"] is None and cfg["arrangement"] != "d"
    clean = resnet(
        cfg["depth"],
        skips=cfg["skips"],
        quant=cfg["quant"],
        input_shape=cfg["input_shape"],
        num_classes=cfg["num_classes"],
        arrangement=cfg["arrangement"],
        width=cfg["width"],
        gated=False,
        fold_bn=fold_bn,
        framework=cfg["framework"],
        name=name or f"{model.name}_export",
    )
    transfer_weights(model, clean)
    return clean


def count_adds(model) -> int:
    """Number of ``Add`` layers (skip additions) in a Keras model."""
    return sum(type(layer).__name__ == "Add" for layer in model.layers)


def to_nhwc(x: np.ndarray) -> np.ndarray:
    """(N, C, H, W) images from :mod:`hwreshape.data` → channels-last (N, H, W, C)."""
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


# ----------------------------------------------------------------------------------------------- distillation
class SkipTrim:
    """Common part of :class:`Skipper`, :class:`Trimmer` and :class:`NonResNet` (Algorithm 1, Eq 4.4).

    ``teacher``: a trained :func:`resnet` model whose blocks all have the method's source mode (``long``;
    ``short`` for NonResNet); it is frozen.  The student is built gated from the teacher's configuration and
    initialised with the teacher's weights (or pass ``student=``, a gated :func:`resnet` of the same
    architecture).  Use ``student.compile(opt, loss=st.loss, metrics=[st.accuracy])`` and
    ``student.fit(x, st.targets(x, y), callbacks=[st.callback, ...])``.
    """

    method = "skipper"

    def __init__(
        self,
        teacher,
        alpha: int | None = None,
        beta: float = BETA,
        blocks_per_step: int | None = None,
        student=None,
        log: str | Path | None = None,
        checkpoint: str | Path | None = None,
        verbose: bool = True,
    ):
        cfg = config_of(teacher)
        self.beta = check_beta(beta)
        src = METHODS[self.method][0]
        if any(m != src for m in cfg["skips"]):
            raise ValueError(
                f"{type(self).__name__}: the teacher must have '{src}' skips in every block, got {cfg['skips']}"
            )
        self.teacher = teacher
        self.teacher.trainable = False
        n_blocks = blocks_for_depth(cfg["depth"])
        self.schedule = SkipTrimSchedule(n_blocks, self.method, alpha, blocks_per_step)
        if student is None:
            student = resnet(
                **{k: cfg[k] for k in _ARCH_KEYS}, skips=src, gated=True, name=f"{teacher.name}_student"
            )
            transfer_weights(teacher, student)
        else:
            check_compatible(teacher, student)
            if not config_of(student)["gated"]:
                raise ValueError("student must be built with resnet(..., gated=True)")
        self.student = student
        set_modes(self.student, self.schedule.modes())
        C = _classes(cfg["framework"])
        self.num_classes = cfg["num_classes"]
        self.loss = C["SkipTrimLoss"](self.beta, self.num_classes)
        self.accuracy = C["packed_accuracy"](self.num_classes)
        self.callback = C["SkipTrimCallback"](self, verbose=verbose)
        self.checkpoint = Path(checkpoint) if checkpoint is not None else None
        self.log = JsonLog(
            log,
            meta={
                "method": self.method,
                **self.schedule.config(),
                "beta": self.beta,
                "teacher": {k: cfg[k] for k in _ARCH_KEYS},
            },
        )

    # Algorithm 1 ---------------------------------------------------------------------------------------
    def begin_epoch(self, epoch: int) -> list[int]:
        new = self.schedule.begin_epoch(int(epoch))
        set_modes(self.student, self.schedule.modes())
        return new

    def end_epoch(self, epoch: int, logs: dict, new: list[int]) -> None:
        metrics = {k: float(v) for k, v in logs.items() if np.ndim(v) == 0}
        self.log.record(epoch=int(epoch), modes=self.schedule.modes(), modified=list(new), **metrics)
        if self.checkpoint is not None:
            self.save(self.checkpoint)

    # data ----------------------------------------------------------------------------------------------
    def targets(self, x, y, batch_size: int = 256) -> np.ndarray:
        """``y`` for ``fit``: [one-hot label | frozen-teacher logits] (float32, (N, 2·C))."""
        y = np.asarray(y).astype(np.int64).reshape(-1)
        if len(y) != len(x):
            raise ValueError(f"x and y lengths differ: {len(x)} vs {len(y)}")
        if y.min() < 0 or y.max() >= self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got [{y.min()}, {y.max()}]")
        t = self.teacher.predict(x, batch_size=batch_size, verbose=0)
        return np.concatenate([np.eye(self.num_classes, dtype=np.float32)[y], t.astype(np.float32)], axis=1)

    # checkpoint ----------------------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Checkpoint: ``path`` (JSON: schedule state) + ``path.weights.h5`` (student weights)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.student.save_weights(str(path) + ".weights.h5")
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps({"schedule": self.schedule.state_dict(), "beta": self.beta}))
        tmp.replace(path)

    def load(self, path: str | Path) -> int:
        """Restore a checkpoint written by :meth:`save`; returns the epoch to resume from (``initial_epoch``)."""
        path = Path(path)
        state = json.loads(path.read_text())
        self.schedule.load_state_dict(state["schedule"])
        self.student.load_weights(str(path) + ".weights.h5")
        set_modes(self.student, self.schedule.modes())
        return self.schedule.epoch + 1

    def export(self, fold_bn: bool | None = None):
        """Clean student (no gates; no Add in pruned blocks, two in trimmed ones), BN folded (Eq 4.3)."""
        return export(self.student, fold_bn=fold_bn)


class Skipper(SkipTrim):
    """Prune one block's skip every ``α`` (= 1) epochs from the input side (Listing 4.1, Algorithm 1)."""

    method = "skipper"


class Trimmer(SkipTrim):
    """Split one block's long skip into two short skips every ``α`` (= 3) epochs (Listing 4.2)."""

    method = "trimmer"


class NonResNet(SkipTrim):
    """NonResNet (Weng, Khodamoradi & Kastner): ShortResNet teacher (short skips), remove the skips of 3 blocks every ``α`` epochs."""

    method = "nonresnet"


# ----------------------------------------------------------------------------------------------- training
def lr_callback(lr: float, scheduler: str = "aslr", seed: int | None = None):
    """The recipes' LR schedule: ASLR (``aslr.keras.ASLRCallback``, the default) or ``"constant"``."""
    if scheduler == "constant":
        return None
    if scheduler != "aslr":
        raise ValueError(f"scheduler: expected 'aslr' or 'constant', got {scheduler!r}")
    try:
        from aslr.keras import ASLRCallback
    except ImportError as exc:  # aslr is another package of this distribution, written in parallel
        warnings.warn(f"aslr.keras unavailable ({exc}); using a constant learning rate", stacklevel=2)
        return None
    return ASLRCallback(lr, monitor="val_loss", mode="min", seed=seed)


def compile_teacher(model, lr: float = 1e-3):
    K = _K(config_of(model)["framework"])
    model.compile(
        optimizer=K.optimizers.Adam(lr),
        loss=K.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def fit_teacher(
    model,
    x,
    y,
    x_val,
    y_val,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    scheduler: str = "aslr",
    seed: int | None = None,
    verbose: int = 1,
    select_from: int | None = None,
):
    """Train a model with cross-entropy on logits (the teacher, or a no-distillation student).

    ``select_from``: None (keep the last epoch's weights) or an epoch index: the weights of the epoch with the
    best ``val_accuracy`` among epochs >= ``select_from`` are restored at the end (:func:`best_epoch`).
    """
    compile_teacher(model, lr)
    cbs = [c for c in [lr_callback(lr, scheduler, seed)] if c is not None]
    if select_from is not None:
        cbs.append(best_epoch(model, select_from))
    return model.fit(
        x,
        y,
        validation_data=(x_val, y_val),
        epochs=epochs,
        batch_size=batch_size,
        callbacks=cbs,
        verbose=verbose,
    )


def fit_student(
    st: SkipTrim,
    x,
    y,
    x_val,
    y_val,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    scheduler: str = "aslr",
    seed: int | None = None,
    initial_epoch: int = 0,
    verbose: int = 1,
    select_from: int | None = None,
):
    """Run Algorithm 1 with Eq 4.4 for ``epochs`` epochs (resumes at ``initial_epoch``).

    ``select_from``: as in :func:`fit_teacher`; ``"finished"`` = the first epoch at which every block has its
    target mode (``st.schedule.epochs_to_finish − 1``), so only fully modified students are selected.
    """
    K = _K(config_of(st.student)["framework"])
    st.student.compile(optimizer=K.optimizers.Adam(lr), loss=st.loss, metrics=[st.accuracy])
    cbs = [st.callback] + [c for c in [lr_callback(lr, scheduler, seed)] if c is not None]
    if select_from == "finished":
        select_from = st.schedule.epochs_to_finish - 1
    if select_from is not None:
        cbs.append(best_epoch(st.student, select_from))
    return st.student.fit(
        x,
        st.targets(x, y),
        validation_data=(x_val, st.targets(x_val, y_val)),
        epochs=epochs,
        initial_epoch=initial_epoch,
        batch_size=batch_size,
        callbacks=cbs,
        verbose=verbose,
    )


def best_epoch(model, start_epoch: int = 0, monitor: str = "val_accuracy", mode: str = "max"):
    """Callback restoring, at the end of ``fit``, the weights of the best-``monitor`` epoch >= ``start_epoch``."""
    return _classes(config_of(model)["framework"])["BestEpoch"](monitor, mode, start_epoch)


def accuracy(model, x, y, batch_size: int = 256) -> float:
    """Top-1 accuracy of a logits model."""
    pred = np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)
    return float(np.mean(pred == np.asarray(y)))
