"""Demo stage ``hls4ml short-skip fusion`` and the ResNet-style networks of Khodamoradi 2021, Fig. 4.4 / Table 4.5.

Khodamoradi 2021, ch. 4.  :func:`resnet_variant` builds the Keras networks
the dissertation synthesises in Table 4.5:

* ``long``   -- Fig. 4.4.a, "ReLU before addition" with the original (long) skip:
  ``y = relu(BN(conv1(x))); y = relu(BN(conv2(y))); x = y + x``
* ``noskip`` -- Fig. 4.4.b, the same without the skip (*Skipper*, Listing 4.1 ``reshape=True``)
* ``short``  -- Fig. 4.4.c/d, the *Trimmer* split (Listing 4.2 ``reshape=True``):
  ``x1 = relu(BN(conv1(x))) + x; x = relu(BN(conv2(x1))) + x1`` -- converted with ``ShortSkipFusion=False``
  it is Fig. 4.4.c (vanilla hls4ml), with the fusion pass it is Fig. 4.4.d.

Weights are random (seeded): the BRAM estimate and the bit-exactness check do not depend on training (the
trained students come from the SkipTrim recipes, ``hwreshape.examples.skiptrim_recipes``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

VARIANTS = ("long", "noskip", "short")
#: (variant, ShortSkipFusion) for the four networks of Fig. 4.4 a-d.
FIG_4_4 = {
    "long skip (4.4.a)": ("long", True),
    "no skip (4.4.b)": ("noskip", True),
    "short skip (4.4.c)": ("short", False),
    "fused short (4.4.d)": ("short", True),
}


def resnet_variant(
    variant: str, input_shape=(32, 32, 3), filters=16, n_blocks=3, n_classes=10, seed=0, head=True
):
    """Keras 3 ResNet-style network (stem + ``n_blocks`` residual blocks + GAP/Dense head) in one variant."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (H, W, C) channels_last, got {input_shape!r}")
    keras.utils.set_random_seed(seed)
    L = keras.layers

    def cbr(x, name):
        x = L.Conv2D(filters, 3, padding="same", name=f"{name}_conv")(x)
        x = L.BatchNormalization(name=f"{name}_bn")(x)
        return L.Activation("relu", name=f"{name}_relu")(x)

    inp = keras.Input(input_shape, name="x")
    x = cbr(inp, "stem")
    for b in range(n_blocks):
        if variant == "long":
            y = cbr(cbr(x, f"b{b}a"), f"b{b}b")
            x = L.Add(name=f"b{b}_add")([y, x])
        elif variant == "noskip":
            x = cbr(cbr(x, f"b{b}a"), f"b{b}b")
        else:
            x1 = L.Add(name=f"b{b}a_add")([cbr(x, f"b{b}a"), x])
            x = L.Add(name=f"b{b}b_add")([cbr(x1, f"b{b}b"), x1])
    if head:
        x = L.GlobalAveragePooling2D(name="gap")(x)
        x = L.Dense(n_classes, name="fc")(x)
    model = keras.Model(inp, x, name=f"resnet_{variant}")
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # non-trivial BN statistics so that folding matters
        if isinstance(layer, L.BatchNormalization):
            n = layer.weights[0].shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.uniform(-0.2, 0.2, n),
                    rng.uniform(-0.2, 0.2, n),
                    rng.uniform(0.5, 1.5, n),
                ]
            )
    return model


def to_hls(
    model, fuse=True, io_type="io_stream", backend="Vivado", output_dir=None, precision="fixed<16,6>", **cfg
):
    """Convert a Keras 3 model with hls4ml (``ShortSkipFusion`` switched by ``fuse``)."""
    import hls4ml

    import hls4ml_skiptrim

    hls4ml_skiptrim.register()
    hls_config = hls4ml.utils.config_from_keras_model(
        model, granularity="model", backend=backend, default_precision=precision
    )
    hls_config["Model"]["ShortSkipFusion"] = bool(fuse)
    hls_config["Model"].update(cfg)
    output_dir = output_dir or tempfile.mkdtemp(prefix="ssk_")
    return hls4ml.converters.convert_from_keras_model(
        model, hls_config=hls_config, output_dir=output_dir, io_type=io_type, backend=backend
    )


def table_4_5_estimates(
    input_shape=(32, 32, 3),
    filters=16,
    n_blocks=3,
    io_type="io_stream",
    backend="Vivado",
    fifo_depths="default",
    include_weights=False,
    **cfg,
):
    """``{Fig. 4.4 label: StreamMemory}`` for the four networks (conversion only, no compile).

    ``fifo_depths``/``include_weights`` as in :func:`~hls4ml_skiptrim.hls4ml.estimate.stream_memory`; ``cfg``
    goes to ``hls_config['Model']`` (e.g. ``Strategy='Resource', ReuseFactor=16``).
    """
    from hls4ml_skiptrim.hls4ml.estimate import stream_memory

    out = {}
    for label, (variant, fuse) in FIG_4_4.items():
        model = resnet_variant(variant, input_shape, filters, n_blocks)
        tmp = tempfile.mkdtemp(prefix="ssk_est_")
        try:
            out[label] = stream_memory(
                to_hls(model, fuse=fuse, io_type=io_type, backend=backend, output_dir=tmp, **cfg),
                fifo_depths=fifo_depths,
                include_weights=include_weights,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def stage(ctx):
    """Estimate Table 4.5 for a ResNet-style net; C-sim a small short-skip net fused vs unfused (bit-exact)."""
    import logging

    # one precision everywhere: every skip Add *could* overflow; those wrap notes are expected here
    log = logging.getLogger("hls4ml_skiptrim")
    old_level = log.level
    log.setLevel(logging.ERROR)
    try:
        return _stage(ctx)
    finally:
        log.setLevel(old_level)


def _stage(ctx):
    import numpy as np

    from hls4ml_skiptrim.hls4ml.estimate import DISSERTATION_TABLE_4_5, compare

    size = 16 if ctx.quick else 32
    est = table_4_5_estimates(input_shape=(size, size, 3), filters=16, n_blocks=3)
    print(compare(est))
    long_ = est["long skip (4.4.a)"].bram18
    result = {f"bram18_{k.split(' (')[0].replace(' ', '_')}": v.bram18 for k, v in est.items()}
    result["fused/long"] = round(est["fused short (4.4.d)"].bram18 / long_, 3)
    result["noskip/long"] = round(est["no skip (4.4.b)"].bram18 / long_, 3)
    result["Table 4.5 fused/long"] = round(
        DISSERTATION_TABLE_4_5["fused short (4.4.d)"] / DISSERTATION_TABLE_4_5["long skip (4.4.a)"], 3
    )
    # hls4ml's FIFO-depth optimisation (occupancy model): only FIFOs that wait for a parallel path stay deep
    opt = table_4_5_estimates(input_shape=(size, size, 3), filters=16, n_blocks=3, fifo_depths="optimized")
    for k, v in opt.items():
        result[f"bram18_opt_{k.split(' (')[0].replace(' ', '_')}"] = v.bram18

    # bit-exact C-simulation: small Trimmer network, fused vs vanilla hls4ml
    small = resnet_variant("short", (8, 8, 4), filters=4, n_blocks=1, head=False)
    x = np.random.default_rng(1).uniform(-2, 2, (16, 8, 8, 4)).astype("float32")
    ys, times = {}, {}
    for fuse in (True, False):
        tmp = tempfile.mkdtemp(prefix="ssk_demo_")
        try:
            hm = to_hls(small, fuse=fuse, output_dir=tmp, precision="fixed<24,10>")
            t0 = time.perf_counter()
            hm.compile()
            times[fuse] = time.perf_counter() - t0
            ys[fuse] = np.asarray(hm.predict(x)).reshape(len(x), -1)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    y_float = small.predict(x, verbose=0).reshape(len(x), -1)
    result["csim_bit_exact"] = bool(np.array_equal(ys[True], ys[False]))
    result["max|csim-keras|"] = float(np.abs(ys[True] - y_float).max())

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = list(est)
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
        ax[0].bar(
            range(4),
            [est[k].bram18 / long_ for k in labels],
            color=["grey", "tab:blue", "tab:red", "tab:green"],
        )
        ax[0].set_title(f"estimate (hls4ml io_stream, {size}x{size}x16, 3 blocks)")
        ax[1].bar(
            range(4),
            [DISSERTATION_TABLE_4_5[k] / DISSERTATION_TABLE_4_5[labels[0]] for k in labels],
            color="lightgrey",
        )
        ax[1].set_title("Khodamoradi 2021, Table 4.5 (Vivado, U250)")
        for a in ax:
            a.set_xticks(range(4), [k.split(" (")[0] for k in labels], rotation=15)
            a.set_ylabel("BRAM18 / long skip")
        fig.tight_layout()
        ctx.out_dir.mkdir(parents=True, exist_ok=True)
        fig.savefig(ctx.out_dir / "shortskip_bram.png", dpi=100)
        plt.close(fig)
    except ImportError:  # pragma: no cover - matplotlib is a declared dependency
        pass
    return result
