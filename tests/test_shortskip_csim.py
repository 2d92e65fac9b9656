"""Fused short-skip layer: C-simulation of the fused model == C-simulation of the unfused model, bit for bit.

Random chains of 1-2 blocks ``Conv2D -> [BN] -> ReLU -> Add(conv input)`` (seed ch. 4, Listing 4.2/4.3) with
random H, W, C, odd kernels (square and rectangular), random per-layer fixed-point precisions (including
narrow Add types that wrap), strategies and reuse factors, for io_parallel / io_stream and Vivado / Vitis.
One hls4ml compile holds every block of an example twice -- a fused branch and an identical branch with
per-layer ``ShortSkipFusion=False`` -- so each compile checks several configurations fused vs unfused.
"""

from __future__ import annotations

import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import hls4ml
import keras
import numpy as np
import pytest
from hls4ml.model.layers import Activation, ParametrizedActivation
from hypothesis import given, settings
from hypothesis import strategies as st

#: Keras 3 spellings of the ReLU: ``Activation('relu')``, ``ReLU()`` (hls4ml 1.3 parses it as a
#: ``ThresholdedReLU`` with threshold 0) and ``Conv2D(activation='relu')`` (hls4ml splits it into ``<conv>_relu``)
RELU_SPELLINGS = ("Activation", "ReLU", "conv")

IO_BACKENDS = [
    ("io_parallel", "Vivado"),
    ("io_stream", "Vivado"),
    ("io_parallel", "Vitis"),
    ("io_stream", "Vitis"),
]


def _fixed(draw, wmin=6, wmax=18, imin=1, imax=8, signed=True):
    w = draw(st.integers(wmin, wmax))
    i = draw(st.integers(imin, min(imax, w)))
    return f"{'' if signed else 'u'}fixed<{w},{i}>"


@st.composite
def block_chains(draw):
    """A random chain: shape, per-block kernel/BN and per-layer precisions, strategy, reuse factor."""
    h = draw(st.integers(3, 6))
    w = draw(st.integers(3, 6))
    c = draw(st.integers(1, 4))
    n_blocks = draw(st.integers(1, 2))
    kernels = [(1, 1), (3, 3), (1, 3), (3, 1)]
    if min(h, w) >= 5:
        kernels.append((5, 5))
    blocks = []
    for _ in range(n_blocks):
        blocks.append(
            {
                "kernel": draw(st.sampled_from(kernels)),
                "bn": draw(st.booleans()),
                "weight": _fixed(draw, 4, 12, 1, 4),
                "bias": _fixed(draw, 4, 12, 1, 4),
                # explicit conv result keeps BN as its own layer (hls4ml folds BN only into 'auto' outputs)
                "conv_result": draw(st.sampled_from(["auto", None])) or _fixed(draw, 10, 24, 4, 10),
                "bn_scale": _fixed(draw, 6, 12, 1, 3),
                "bn_bias": _fixed(draw, 6, 12, 1, 3),
                "bn_result": _fixed(draw, 8, 20, 3, 8),
                "relu_result": _fixed(draw, 6, 18, 2, 8, signed=draw(st.booleans())),
                "add_result": draw(st.sampled_from(["auto", None])) or _fixed(draw, 6, 20, 2, 9),
                "strategy": draw(st.sampled_from(["Latency", "Resource"])),
                # Keras spellings of the ReLU and both operand orders of the Add
                "relu": draw(st.sampled_from(list(RELU_SPELLINGS))),
                "skip_first": draw(st.booleans()),
                "rf_pick": draw(st.integers(0, 10**6)),
            }
        )
    return {
        "h": h,
        "w": w,
        "c": c,
        "input": _fixed(draw, 6, 16, 2, 6),
        "blocks": blocks,
        "seed": draw(st.integers(0, 2**31 - 1)),
    }


def build_chain(spec):
    """Two identical branches over one input: ``f_*`` (fused) and ``u_*`` (ShortSkipFusion=False per layer).

    Both branches share weights and per-layer precisions, so one compile yields the fused and the unfused
    C-simulation of the same network side by side.
    """
    rng = np.random.default_rng(spec["seed"])
    inp = keras.Input((spec["h"], spec["w"], spec["c"]), name="x")
    outs = []
    for br in ("f", "u"):
        x = inp
        for i, b in enumerate(spec["blocks"]):
            conv_act = "relu" if b["relu"] == "conv" else None
            y = keras.layers.Conv2D(
                spec["c"], b["kernel"], padding="same", activation=conv_act, name=f"{br}_c{i}"
            )(x)
            if b["bn"] and b["relu"] != "conv":
                y = keras.layers.BatchNormalization(name=f"{br}_bn{i}")(y)
            if b["relu"] == "ReLU":
                y = keras.layers.ReLU(name=f"{br}_r{i}")(y)
            elif b["relu"] == "Activation":
                y = keras.layers.Activation("relu", name=f"{br}_r{i}")(y)
            x = keras.layers.Add(name=f"{br}_a{i}")([x, y] if b["skip_first"] else [y, x])
        outs.append(x)
    model = keras.Model(inp, outs)
    for layer in model.layers:
        if not layer.weights or not layer.name.startswith("f_"):
            continue
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.weights[0].shape[0]
            wts = [
                rng.uniform(0.5, 1.5, n),
                rng.uniform(-0.5, 0.5, n),
                rng.uniform(-0.5, 0.5, n),
                rng.uniform(0.5, 2, n),
            ]
        else:
            wts = [rng.normal(0, 0.5, wt.shape).astype("float32") for wt in layer.weights]
        layer.set_weights(wts)
        model.get_layer("u_" + layer.name[2:]).set_weights(wts)
    return model


def chain_config(model, spec, backend, io_type):
    cfg = hls4ml.utils.config_from_keras_model(model, granularity="name", backend=backend)
    cfg["Model"]["ShortSkipFusion"] = True  # opt-in (the u_* branch is switched off per layer below)
    cfg["LayerName"]["x"]["Precision"]["result"] = spec["input"]
    be = hls4ml.backends.get_backend(backend)
    for br in ("f", "u"):
        for i, b in enumerate(spec["blocks"]):
            conv = cfg["LayerName"][f"{br}_c{i}"]
            conv["Precision"].update(weight=b["weight"], bias=b["bias"], result=b["conv_result"])
            conv["Strategy"] = b["strategy"]
            kh, kw = b["kernel"]
            n_in = kh * kw * spec["c"]
            valid = be.get_valid_reuse_factors(n_in, spec["c"])
            if io_type == "io_parallel" and b["strategy"] == "Resource":
                # hls4ml's own conv_2d_resource_cl asserts RF <= kh*kw*C (nnet_conv2d_resource.h): the unfused
                # model aborts there too, so such configurations are outside what hls4ml supports
                valid = [rf for rf in valid if rf <= n_in]
            conv["ReuseFactor"] = valid[b["rf_pick"] % len(valid)]
            if b["bn"] and b["relu"] != "conv":
                cfg["LayerName"][f"{br}_bn{i}"]["Precision"].update(
                    scale=b["bn_scale"], bias=b["bn_bias"], result=b["bn_result"]
                )
            relu_name = f"{br}_c{i}_relu" if b["relu"] == "conv" else f"{br}_r{i}"
            cfg["LayerName"][relu_name]["Precision"]["result"] = b["relu_result"]
            cfg["LayerName"][f"{br}_a{i}"]["Precision"]["result"] = b["add_result"]
            if br == "u":
                conv["ShortSkipFusion"] = False
    return cfg


def check_bit_exact(spec, io_type, backend):
    model = build_chain(spec)
    cfg = chain_config(model, spec, backend, io_type)
    rng = np.random.default_rng(spec["seed"] + 1)
    x = rng.uniform(-4, 4, (8, spec["h"], spec["w"], spec["c"])).astype("float32")
    tmp = tempfile.mkdtemp(prefix="ssk_csim_")
    n = len(spec["blocks"])
    try:
        hm = hls4ml.converters.convert_from_keras_model(
            model, hls_config=cfg, output_dir=tmp, io_type=io_type, backend=backend
        )
        fused = sorted(layer.name for layer in hm.get_layers() if layer.class_name == "ShortSkipConv2D")
        assert fused == [f"f_c{i}_shortskip" for i in range(n)], hm.shortskip_report
        kinds = [layer.class_name for layer in hm.get_layers()]
        # only the unfused branch keeps its Add and ReLU layers
        assert kinds.count("Merge") == n
        assert sum(isinstance(layer, Activation) for layer in hm.get_layers()) == n
        if any(b["relu"] == "ReLU" for b in spec["blocks"]):  # the Keras 3 ReLU() really took hls4ml's form
            assert any(isinstance(layer, ParametrizedActivation) for layer in hm.get_layers()), kinds
        assert all(hm.shortskip_report[f"u_a{i}"] == "disabled by ShortSkipFusion=False" for i in range(n))
        if io_type == "io_stream":
            # the fused branch needs no Clone copy for its skip operands: only the unfused branch fans out
            clones = [layer for layer in hm.get_layers() if layer.class_name == "Clone"]
            n_copies = sum(len(c.outputs) for c in clones)
            assert n_copies == 3 + 2 * (n - 1), [(c.name, c.outputs) for c in clones]
        hm.compile()
        y_fused, y_plain = (np.asarray(y).reshape(len(x), -1) for y in hm.predict(x))
        np.testing.assert_array_equal(y_fused, y_plain)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("io_type,backend", IO_BACKENDS)
@settings(max_examples=1)
@given(spec=block_chains())
def test_fused_equals_unfused_csim(io_type, backend, spec):
    check_bit_exact(spec, io_type, backend)


def _spelling_chain():
    """One chain with every Keras spelling: Activation + unfolded BN (explicit conv type), ReLU() + BN folded
    into the conv (auto conv type), Conv2D(activation="relu") with the Resource strategy; the skip is the first
    Add operand twice."""
    block = {
        "kernel": (3, 3),
        "weight": "fixed<8,2>",
        "bias": "fixed<8,2>",
        "bn_scale": "fixed<10,2>",
        "bn_bias": "fixed<10,2>",
        "bn_result": "fixed<16,6>",
        "relu_result": "ufixed<12,5>",
        "add_result": "fixed<14,6>",
        "strategy": "Latency",
        "rf_pick": 0,
    }
    blocks = [
        dict(block, relu="Activation", bn=True, conv_result="fixed<18,7>", skip_first=False),
        dict(block, relu="ReLU", bn=True, conv_result="auto", skip_first=True),
        dict(
            block,
            relu="conv",
            bn=False,
            conv_result="auto",
            skip_first=True,
            kernel=(1, 3),
            strategy="Resource",
        ),
    ]
    return {"h": 4, "w": 5, "c": 3, "input": "fixed<12,4>", "blocks": blocks, "seed": 7}


@pytest.mark.parametrize(
    "io_type,backend",
    [pytest.param(*ib, marks=pytest.mark.slow) if ib != ("io_stream", "Vitis") else ib for ib in IO_BACKENDS],
)
def test_every_keras_spelling_bit_exact(io_type, backend):
    """Fusion fires for each spelling (asserted inside) and fused == unfused C-sim, bit for bit."""
    check_bit_exact(_spelling_chain(), io_type, backend)


@pytest.mark.slow
@pytest.mark.parametrize("io_type,backend", IO_BACKENDS)
@settings(max_examples=2)
@given(spec=block_chains())
def test_fused_equals_unfused_csim_sweep(io_type, backend, spec):
    check_bit_exact(spec, io_type, backend)
