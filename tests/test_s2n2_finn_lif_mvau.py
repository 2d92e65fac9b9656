"""LIF_MVAU: python exec (spec) == independent NumPy loop over Eq 2.2-2.4 == C++ (cppsim), bad input.

Khodamoradi 2021, Eq 2.2-2.4, §2.2.2, §2.2.3.  The C++ side runs the project's header through (a) generated
harnesses with one template instance per random configuration (2 x 24 per run, one compile per batch) and
(b) FINN's own PrepareCppSim/CompileCppSim on the per-node template instance for a handful of configurations.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import finn_s2n2
from finn_s2n2 import numerics
from finn_s2n2.finn.hls import run_harness


def reference_loop(x, w, *, k, thr, acc_bits, overflow, reset, counts, delay):
    """Independent scalar loop over Eq 2.2 (sum of weights of spiking inputs), Eq 2.3 (decay, reset to zero),
    snnTorch's reset by subtraction (threshold off after the decay, next tick) and Eq 2.4 (threshold);
    fixed-point helpers (overflow, decay) come from numerics.  x: (N, T, P, MW)."""
    n_s, t_n, n_p, mw = x.shape
    mh = w.shape[1]
    spikes = np.zeros((n_s, t_n, n_p, mh), dtype=np.int64)
    for n in range(n_s):
        for p in range(n_p):
            for j in range(mh):
                m = 0  # membrane starts at zero for every sample
                fired = False
                for t in range(t_n):
                    current = 0
                    for i in range(mw):
                        if x[n, t, p, i] == 1:
                            current += int(w[i, j])
                    # reset "subtract" (snnTorch Leaky): the previous spike takes thr off after the decay
                    sub = thr if (reset == "subtract" and fired) else 0
                    m = int(numerics.overflow(int(numerics.decay(m, k)) + current - sub, acc_bits, overflow))
                    fired = m > thr
                    if fired and reset == "zero":
                        m = 0
                    if t + delay < t_n and fired:
                        spikes[n, t + delay, p, j] = 1
    if counts:
        return spikes.sum(axis=1)
    return spikes


@st.composite
def lif_configs(draw):
    simd = draw(st.sampled_from([1, 2, 3, 4, 8]))
    pe = draw(st.sampled_from([1, 2, 4]))
    mw = simd * draw(st.integers(1, 4))
    mh = pe * draw(st.integers(1, 4))
    acc_bits = draw(st.integers(2, 24))
    wbits = draw(st.integers(2, 8))
    lo, hi = numerics.acc_range(acc_bits)
    delay = draw(st.sampled_from([0, 0, 0, 1, 2, 5]))
    thr_lo = 0 if delay else lo
    thr = draw(st.one_of(st.integers(max(thr_lo, -4), min(hi, 20)), st.integers(thr_lo, hi)))
    return dict(
        simd=simd,
        pe=pe,
        mw=mw,
        mh=mh,
        acc_bits=acc_bits,
        wbits=wbits,
        thr=thr,
        delay=delay,
        k=draw(st.integers(1, min(31, acc_bits + 2))),
        ticks=draw(st.integers(1, 8)),
        positions=draw(st.integers(1, 3)),
        batch=draw(st.integers(1, 2)),
        counts=draw(st.booleans()),
        overflow=draw(st.sampled_from(numerics.OVERFLOW_MODES)),
        reset=draw(st.sampled_from(numerics.RESET_MODES)),
        density=draw(st.sampled_from([0.1, 0.5, 0.9])),
        seed=draw(st.integers(0, 2**31 - 1)),
    )


def _draw_data(c):
    rng = np.random.default_rng(c["seed"])
    wlo, whi = -(1 << (c["wbits"] - 1)), (1 << (c["wbits"] - 1)) - 1
    w = rng.integers(wlo, whi + 1, size=(c["mw"], c["mh"]))
    x = (rng.random((c["batch"], c["ticks"], c["positions"], c["mw"])) < c["density"]).astype(np.int64)
    return w, x


def _python_exec(c, w, x):
    from qonnx.core.onnx_exec import execute_onnx

    model = finn_s2n2.make_lif_mvau_model(
        w,
        decay_shift=c["k"],
        threshold=c["thr"],
        num_ticks=c["ticks"],
        pe=c["pe"],
        simd=c["simd"],
        weight_dtype=f"INT{c['wbits']}",
        acc_dtype=f"INT{c['acc_bits']}",
        output_mode="counts" if c["counts"] else "spikes",
        reset=c["reset"],
        overflow=c["overflow"],
        batch=c["batch"],
        num_positions=c["positions"],
        axonal_delay=c["delay"],
    )
    # one frame = one tick: (batch * ticks, [positions,] MW), sample-major
    frames = c["batch"] * c["ticks"]
    mw = w.shape[0]
    xin = x.reshape(frames, c["positions"], mw) if c["positions"] > 1 else x.reshape(frames, mw)
    return model, execute_onnx(model, {"inp": xin.astype(np.float32)})["outp"]


def _case(c, w, x):
    return dict(
        acc_bits=c["acc_bits"],
        MW=c["mw"],
        MH=c["mh"],
        SIMD=c["simd"],
        PE=c["pe"],
        T=c["ticks"],
        P=c["positions"],
        K=c["k"],
        threshold=c["thr"],
        saturate=c["overflow"] == "saturate",
        reset_subtract=c["reset"] == "subtract",
        counts=c["counts"],
        D=c["delay"],
        OBITS=numerics.count_bits(c["ticks"]) if c["counts"] else 1,
        weights=w,
        x=x.reshape(-1, c["positions"], c["mw"]),
    )


# 2 x 24 random configurations per run: each batch is one generated C++ source with one s2n2::LIF_MVAU
# template instance per configuration (all parameters compile-time, as synthesised), compiled once
@pytest.mark.slow
@settings(max_examples=2, deadline=None)
@given(st.lists(lif_configs(), min_size=24, max_size=24))
def test_cppsim_equals_python_exec_equals_numpy_loop(configs):
    data = [_draw_data(c) for c in configs]
    refs = []
    for c, (w, x) in zip(configs, data):
        _, y_py = _python_exec(c, w, x)
        ref = reference_loop(
            x,
            w,
            k=c["k"],
            thr=c["thr"],
            acc_bits=c["acc_bits"],
            overflow=c["overflow"],
            reset=c["reset"],
            counts=c["counts"],
            delay=c["delay"],
        )
        np.testing.assert_array_equal(y_py.reshape(ref.shape), ref)
        refs.append(ref)
    outs = run_harness([_case(c, w, x) for c, (w, x) in zip(configs, data)])
    for c, ref, y_cpp in zip(configs, refs, outs):
        np.testing.assert_array_equal(y_cpp.reshape(ref.shape), ref, err_msg=str(c))


def test_saturation_and_wrap_are_exercised():
    """INT6 membrane, 4 active inputs of weight 7 (I = 28/tick), k = 4, threshold 30 (values derived by hand):
    saturate: 28 | 27+28=55->31 spike | 28 | 31 spike;  wrap: 28 | 55->-9 | -8+28=20 | 19+28=47->-17."""
    w = np.full((4, 2), 7)
    x = np.ones((1, 4, 1, 4), dtype=np.int64)
    expected = {"saturate": [0, 1, 0, 1], "wrap": [0, 0, 0, 0]}
    for ovf in numerics.OVERFLOW_MODES:
        c = dict(
            k=4,
            thr=30,
            acc_bits=6,
            overflow=ovf,
            reset="zero",
            counts=False,
            delay=0,
            ticks=4,
            pe=1,
            simd=2,
            wbits=4,
            batch=1,
            positions=1,
        )
        _, y = _python_exec(c, w, x)
        (y_cpp,) = run_harness(
            [
                dict(
                    acc_bits=6,
                    MW=4,
                    MH=2,
                    SIMD=2,
                    PE=1,
                    T=4,
                    P=1,
                    K=4,
                    threshold=30,
                    saturate=ovf == "saturate",
                    reset_subtract=False,
                    counts=False,
                    D=0,
                    OBITS=1,
                    weights=w,
                    x=x.reshape(-1, 1, 4),
                )
            ]
        )
        np.testing.assert_array_equal(y.reshape(4, 2)[:, 0], expected[ovf])
        np.testing.assert_array_equal(y.reshape(-1), y_cpp.reshape(-1))


def test_seed_decay_is_shift_subtract():
    """Seed §2.3: d = 0.875 <=> m - (m >> 3)."""
    assert numerics.decay_shift_from_factor(0.875) == 3
    assert numerics.decay_factor(3) == 0.875
    m = np.arange(-300, 300)
    np.testing.assert_array_equal(numerics.decay(m, 3), m - np.floor(m / 8).astype(np.int64))
    with pytest.raises(ValueError, match="not a shift-subtract decay"):
        numerics.decay_shift_from_factor(0.8)


def test_membrane_resets_between_samples():
    """Two identical samples in one batch give identical outputs (membrane reset at the last tick)."""
    from qonnx.core.onnx_exec import execute_onnx

    rng = np.random.default_rng(3)
    w = rng.integers(-3, 8, size=(8, 4))
    model = finn_s2n2.make_lif_mvau_model(w, decay_shift=3, threshold=6, num_ticks=5, batch=2)
    one = (rng.random((5, 8)) < 0.5).astype(np.float32)
    y = execute_onnx(model, {"inp": np.concatenate([one, one])})["outp"].reshape(2, 5, 4)
    assert y.sum() > 0
    np.testing.assert_array_equal(y[0], y[1])


def test_finn_cppsim_single_node():
    """FINN's own SetExecMode/PrepareCppSim/CompileCppSim on LIF_MVAU_hls: cppsim == python exec."""
    from finn.transformation.fpgadataflow.compile_cppsim import CompileCppSim
    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim
    from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode
    from qonnx.core.onnx_exec import execute_onnx

    rng = np.random.default_rng(7)
    w = rng.integers(-8, 8, size=(12, 6))
    model = finn_s2n2.make_lif_mvau_model(
        w,
        decay_shift=2,
        threshold=5,
        num_ticks=6,
        pe=3,
        simd=4,
        batch=2,
        acc_dtype="INT8",
        specialize=True,
        axonal_delay=2,
    )
    x = (rng.random((12, 12)) < 0.4).astype(np.float32)
    y_py = execute_onnx(model, {"inp": x})["outp"]
    m2 = model.transform(SetExecMode("cppsim")).transform(PrepareCppSim()).transform(CompileCppSim())
    y_cpp = execute_onnx(m2, {"inp": x})["outp"]
    assert y_py.sum() > 0
    np.testing.assert_array_equal(y_py, y_cpp)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kw",
    [
        dict(output_mode="counts", overflow="wrap", acc_dtype="INT5", pe=2, simd=3),
        dict(output_mode="spikes", reset="subtract", acc_dtype="INT12", pe=1, simd=6, num_positions=3),
        dict(output_mode="counts", reset="subtract", acc_dtype="INT20", pe=6, simd=1, synaptic_delay=1),
    ],
)
def test_finn_cppsim_single_node_configs(kw):
    from finn.transformation.fpgadataflow.compile_cppsim import CompileCppSim
    from finn.transformation.fpgadataflow.prepare_cppsim import PrepareCppSim
    from finn.transformation.fpgadataflow.set_exec_mode import SetExecMode
    from qonnx.core.onnx_exec import execute_onnx

    rng = np.random.default_rng(11)
    w = rng.integers(-16, 16, size=(6, 6))
    model = finn_s2n2.make_lif_mvau_model(
        w, decay_shift=1, threshold=7, num_ticks=7, batch=2, specialize=True, **kw
    )
    shape = [14] + ([kw["num_positions"]] if kw.get("num_positions", 1) > 1 else []) + [6]
    x = (rng.random(shape) < 0.5).astype(np.float32)
    y_py = execute_onnx(model, {"inp": x})["outp"]
    m2 = model.transform(SetExecMode("cppsim")).transform(PrepareCppSim()).transform(CompileCppSim())
    np.testing.assert_array_equal(y_py, execute_onnx(m2, {"inp": x})["outp"])


# ---------------------------------------------------------------------------------------- bad input
def _infer(model):
    from qonnx.transformation.infer_datatypes import InferDataTypes
    from qonnx.transformation.infer_shapes import InferShapes

    return model.transform(InferShapes()).transform(InferDataTypes())


def _set(model, **attrs):
    from qonnx.custom_op.registry import getCustomOp

    inst = getCustomOp(model.graph.node[0])
    for k, v in attrs.items():
        inst.set_nodeattr(k, v)
    return model


@pytest.fixture
def good_model():
    return finn_s2n2.make_lif_mvau_model(
        np.ones((8, 4)),
        decay_shift=3,
        threshold=3,
        num_ticks=4,
        pe=2,
        simd=4,
        acc_dtype="INT8",
        name="lif_bad",
    )


@pytest.mark.parametrize(
    "attrs, match",
    [
        (dict(PE=3), r"lif_bad.*PE=3 does not divide MH=4"),
        (dict(SIMD=3), r"lif_bad.*SIMD=3 does not divide MW=8"),
        (dict(decay_shift=0), r"lif_bad.*decay_shift is missing"),
        (dict(decay_shift=40), r"lif_bad.*decay_shift must be in \[1, 31\]"),
        (dict(decay_shift=0, decay=0.8), r"lif_bad.*attribute decay=0.8\d* is not a shift-subtract decay"),
        (dict(decay=0.75), r"lif_bad.*decay=0.75 \(shift 2\) contradicts decay_shift=3"),
        (dict(threshold=200), r"lif_bad.*threshold=200 is outside the membrane range \[-128, 127\]"),
        (dict(numTicks=0), r"lif_bad.*numTicks is missing"),
        (dict(accDataType="UINT8"), r"lif_bad.*accDataType must be a signed integer"),
        (dict(inputDataType="INT2"), r"lif_bad.*inputDataType must be BINARY"),
        (dict(outputMode="rates"), r"lif_bad.*outputMode"),
        (dict(axonalDelay=1, threshold=-1), r"lif_bad.*delays .* need threshold >= 0"),
    ],
)
def test_bad_attributes_fail_at_transformation_time(good_model, attrs, match):
    with pytest.raises(ValueError, match=match):
        _infer(_set(good_model, **attrs))


def test_non_binary_input_tensor_is_rejected(good_model):
    from qonnx.core.datatype import DataType

    good_model.set_tensor_datatype("inp", DataType["INT4"])
    with pytest.raises(ValueError, match=r"lif_bad.*datatype INT4.*BINARY"):
        _infer(good_model)


def test_bad_weights_and_inputs():
    with pytest.raises(ValueError, match="integers"):
        finn_s2n2.make_lif_mvau_model(np.full((4, 2), 0.5), decay_shift=3, threshold=1, num_ticks=2)
    with pytest.raises(ValueError, match=r"weights must be integers inside INT2"):
        finn_s2n2.make_lif_mvau_model(
            np.full((4, 2), 5), decay_shift=3, threshold=1, num_ticks=2, weight_dtype="INT2"
        )
    from qonnx.core.onnx_exec import execute_onnx

    model = finn_s2n2.make_lif_mvau_model(np.ones((4, 2)), decay_shift=3, threshold=1, num_ticks=2)
    with pytest.raises(ValueError, match="binary spikes"):
        execute_onnx(model, {"inp": np.full((2, 4), 2.0, dtype=np.float32)})


def test_numerics_argument_errors():
    with pytest.raises(TypeError, match="decay_shift must be an int"):
        numerics.check_decay_shift(2.5)
    with pytest.raises(ValueError, match="acc_bits must be in"):
        numerics.check_acc_bits(64)
    with pytest.raises(ValueError, match="overflow mode"):
        numerics.overflow(np.array([1]), 8, "clip")
    with pytest.raises(ValueError, match="reset mode"):
        numerics.reset(np.array([1]), np.array([1]), 0, 8, "hold")


# ---------------------------------------------------------------------------------------- registration
def test_import_is_cheap_and_registers_on_finn_import():
    code = (
        "import sys, finn_s2n2\n"
        "assert 'finn' not in sys.modules and 'tensorflow' not in sys.modules, sorted(sys.modules)[:5]\n"
        "from qonnx.custom_op.registry import is_custom_op\n"
        "assert is_custom_op('finn_s2n2', 'LIF')\n"
        "from hwreshape.compat import prepare_finn; prepare_finn()\n"
        "import finn.custom_op.fpgadataflow.hls as h\n"
        "assert 'LIF_MVAU_hls' in h.custom_op\n"
        "assert is_custom_op('finn.custom_op.fpgadataflow', 'LIF_MVAU')\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "ok" in res.stdout


def test_specialize_layers_makes_hls_node():
    from finn.transformation.fpgadataflow.specialize_layers import SpecializeLayers
    from qonnx.core.onnx_exec import execute_onnx

    model = finn_s2n2.make_lif_mvau_model(np.eye(4, 2) * 3, decay_shift=1, threshold=2, num_ticks=3)
    x = np.ones((3, 4), dtype=np.float32)
    y0 = execute_onnx(model, {"inp": x})["outp"]
    m2 = model.transform(SpecializeLayers("xc7z020clg400-1"))
    node = m2.graph.node[0]
    assert (node.op_type, node.domain) == ("LIF_MVAU_hls", "finn.custom_op.fpgadataflow.hls")
    np.testing.assert_array_equal(y0, execute_onnx(m2, {"inp": x})["outp"])


def test_float_decay_attribute_defines_the_shift(good_model):
    from qonnx.custom_op.registry import getCustomOp

    _set(good_model, decay_shift=0, decay=0.875)
    assert getCustomOp(good_model.graph.node[0]).params().decay_shift == 3


def test_numerics_lif_step_is_generic_over_numpy_and_torch():
    """The front-end's torch LIF calls numerics.lif_step on integer tensors: same results as NumPy."""
    import torch

    rng = np.random.default_rng(5)
    m = rng.integers(-128, 128, size=64)
    cur = rng.integers(-100, 100, size=64)
    for ovf in numerics.OVERFLOW_MODES:
        for rst in numerics.RESET_MODES:
            kw = dict(decay_shift=2, threshold=17, acc_bits=8, overflow_mode=ovf, reset_mode=rst)
            out_np, m_np = numerics.lif_step(m, cur, **kw)
            out_t, m_t = numerics.lif_step(torch.tensor(m), torch.tensor(cur), **kw)
            np.testing.assert_array_equal(out_np, out_t.numpy())
            np.testing.assert_array_equal(m_np, m_t.numpy())
            # lif_sequence (in-place NumPy fast path) == repeated lif_step
            seq = rng.integers(-60, 60, size=(1, 6, 5))
            ref, mm, o = [], np.zeros(5, dtype=np.int64), np.zeros(5, dtype=np.int64)
            for t in range(6):
                o, mm = numerics.lif_step(mm, seq[0, t], prev_out=o, **kw)
                ref.append(o)
            np.testing.assert_array_equal(numerics.lif_sequence(seq, **kw)[0], np.stack(ref))


def test_ipgen_top_function_is_valid_cpp(tmp_path):
    """FINN's code_generation_ipgen writes the HLS top function (one frame = one tick per call); it passes
    g++ -fsyntax-only -Wall against finn-hlslib + hls4ml's ap_types with no diagnostics."""
    from qonnx.custom_op.registry import getCustomOp

    from finn_s2n2.finn import hls
    from hwreshape.compat import finn_hlslib_dir

    try:
        finn_hlslib_dir()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    model = finn_s2n2.make_lif_mvau_model(
        np.ones((8, 4)), decay_shift=3, threshold=2, num_ticks=4, pe=2, simd=4, specialize=True
    )
    inst = getCustomOp(model.graph.node[0])
    inst.set_nodeattr("code_gen_dir_ipgen", str(tmp_path))
    inst.code_generation_ipgen(model, "xc7z020clg400-1", 10.0)
    top = (tmp_path / "top_LIF_MVAU_0.cpp").read_text()
    assert "s2n2::LIF_MVAU<8, 4, 4, 2, 4, 1, 3, 2LL" in top and "NUM_FRAMES 1" in top
    assert (tmp_path / "lif_mvau.hpp").is_file() and (tmp_path / "params.h").is_file()
    assert hls.syntax_check(tmp_path / "top_LIF_MVAU_0.cpp") == ""


def test_frames_must_be_whole_samples():
    """One frame = one tick: a frame count that is not a multiple of numTicks is refused by name."""
    from qonnx.core.onnx_exec import execute_onnx

    model = finn_s2n2.make_lif_mvau_model(
        np.ones((4, 2)), decay_shift=3, threshold=1, num_ticks=3, name="lif_t"
    )
    model.set_tensor_shape("inp", [4, 4])
    with pytest.raises(ValueError, match=r"LIF_MVAU node 'lif_t'.*4 frames.*numTicks=3"):
        execute_onnx(model, {"inp": np.ones((4, 4), dtype=np.float32)})


def test_num_input_vectors_must_describe_one_frame(good_model):
    with pytest.raises(ValueError, match=r"lif_bad.*numInputVectors=\[2\] must describe one frame"):
        _infer(_set(good_model, numInputVectors=[2]))


@pytest.mark.slow
def test_import_order_lif_mvau_before_finn():
    """Importing the op module before finn-plus (post-import hook fires while it is half-imported) works."""
    for mod in ("lif_mvau", "lif_mvau_hls"):
        code = (
            f"import finn_s2n2.finn.custom_op.{mod}\n"
            "import finn.custom_op.fpgadataflow as fd, finn.custom_op.fpgadataflow.hls as h\n"
            "assert 'LIF_MVAU' in fd.custom_op and 'LIF_MVAU_hls' in h.custom_op\n"
            "print('ok')\n"
        )
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert res.returncode == 0 and "ok" in res.stdout, res.stderr[-2000:]
