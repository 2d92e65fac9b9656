"""nnet_bm_conv.h is HLS code: compile-time parameters, exact widths, ReuseFactor-controlled unrolling, and the
generated projects pass ``g++ -fsyntax-only -Wall -Wextra`` with no warning located in the header (nothing is
synthesised here: no Vivado / Vitis on this machine)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from bm_ops.fixedpoint import BMFixedConfig, FixedType
from bm_ops.functional import to_log_weights
from bm_ops.hls4ml import HEADER
from bm_ops.hls4ml.config import reuse_split, valid_reuse_factors
from bm_ops.hls4ml.convert import bm_layer_model


def _code() -> str:
    """The header without comments."""
    text = HEADER.read_text()
    return re.sub(r"//[^\n]*", "", text)


def test_header_datapath_has_no_64bit_types_and_no_runtime_struct():
    code = _code()
    for banned in ("long long", "int64", "uint64", "long", "double", "float", "bm_geom", "strategy"):
        assert banned not in code, banned
    # the exact widths of every datapath value come from the config
    for decl in (
        "typedef ap_int<CONFIG_T::log_bits> log_t;",
        "typedef ap_int<CONFIG_T::sum_bits> sum_t;",
        "typedef ap_int<CONFIG_T::sum_bits + 1> max_t;",
        "typedef ap_int<CONFIG_T::accum_bits> acc_t;",
        "typedef ap_int<CONFIG_T::weight_bits> weight_code_t;",
        "const ap_uint<FE + 2> E = exp_table[j];",
    ):
        assert decl in code, decl
    # every loop bound is a compile-time constant of CONFIG_T / bm_types / bm_lb (or a local constant of them)
    bounds = re.findall(r"for \(unsigned \w+ = \d+; \w+ < ([^;]+);", code)
    assert bounds
    local_consts = {"W", "n_in", "n_out", "4"}  # 4 = the sign quadrants (alpha, beta)
    for b in bounds:
        assert b.startswith(("CONFIG_T::", "B::", "bm_types<CONFIG_T>::")) or b in local_consts, b
    # every kernel function is a template over CONFIG_T
    assert "struct bm_conv2d_config" in code and "template <typename CONFIG_T>" in code


def test_valid_reuse_factors_are_hls4ml_conv2d_ones():
    from hls4ml.backends import get_backend

    backend = get_backend("Vivado")
    for n_in, n_out in ((9, 4), (18, 3), (27, 2), (1, 6), (12, 8), (25, 1)):
        assert valid_reuse_factors(n_in, n_out) == backend.get_valid_reuse_factors(n_in, n_out)
        for rf in valid_reuse_factors(n_in, n_out):
            rt, rfl = reuse_split(rf, n_in, n_out)
            assert rt * rfl == rf and n_in % rt == 0 and n_out % rfl == 0


def _model(tmp_path, rf, backend="Vivado", io_type="io_parallel", tag="prj"):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 2, 3, 3))
    w[:, 0, 0, 0] = 1.0
    vp, vn = to_log_weights(w)
    return bm_layer_model(
        vp,
        vn,
        rng.normal(size=4),
        (6, 5, 2),
        FixedType(10, 4),
        FixedType(18, 8),
        (1, 2),
        (1, 1, 0, 1),
        BMFixedConfig(),
        io_type,
        backend,
        str(tmp_path / tag),
        reuse_factor=rf,
    )


def _struct(tmp_path, tag):
    params = (tmp_path / tag / "firmware" / "parameters.h").read_text()
    body = re.search(r"struct config\d+ : nnet::bm_conv2d_config \{(.*?)\n\};", params, re.S).group(1)
    return {k: int(v) for k, v in re.findall(r"static const (?:unsigned|int) (\w+) = (-?\d+);", body)}


def test_reuse_factor_sets_the_unroll_of_the_tap_loop(tmp_path, capsys):
    """18 taps x 4 filters per output pixel: ReuseFactor r -> r clocks (PIPELINE II=1) of 72 / r unrolled
    tap operations; an invalid value is replaced by hls4ml's rule (closest valid, warning naming the layer)."""
    code = _code()
    loop = re.search(
        r"BMReuseFilt:\s*for \(unsigned rf = 0; rf < CONFIG_T::reuse_filt; rf\+\+\) \{\s*BMReuseTaps:\s*"
        r"for \(unsigned rt = 0; rt < CONFIG_T::reuse_taps; rt\+\+\) \{\s*#pragma HLS PIPELINE II = 1\s*"
        r"BMFiltBlock:\s*for \(unsigned j = 0; j < B::filt_per_clock; j\+\+\) \{\s*#pragma HLS UNROLL.*?"
        r"BMTapBlock:\s*for \(unsigned k = 0; k < B::taps_per_clock; k\+\+\) \{\s*#pragma HLS UNROLL",
        code,
        re.S,
    )
    assert loop, "reuse loop structure changed"
    # per clock: a balanced max tree (hls4ml's nnet::reduce) over the clock's taps, then the running maximum
    assert "nnet::reduce<max_t, B::taps_per_clock, nnet::Op_max<max_t> >(cand[q], op_max)" in code
    assert "static const unsigned taps_per_clock = taps / CONFIG_T::reuse_taps;" in code
    assert "static const unsigned filt_per_clock = CONFIG_T::n_filt / CONFIG_T::reuse_filt;" in code
    expected = {1: (1, 1), 6: (6, 1), 18: (18, 1), 36: (18, 2), 72: (18, 4)}
    for rf, (rt, rfl) in expected.items():
        _model(tmp_path, rf, tag=f"rf{rf}").write()
        s = _struct(tmp_path, f"rf{rf}")
        assert (s["reuse_factor"], s["reuse_taps"], s["reuse_filt"]) == (rf, rt, rfl)
        ops_per_clock = (18 // s["reuse_taps"]) * (4 // s["reuse_filt"])
        assert ops_per_clock * rf == 72
    capsys.readouterr()
    _model(tmp_path, 5, tag="rf5").write()
    assert 'Invalid ReuseFactor=5 in layer "bm0"' in capsys.readouterr().out
    assert _struct(tmp_path, "rf5")["reuse_factor"] == 6
    for bad in (0, -3, True):
        with pytest.raises(ValueError, match=r"BMConv2D layer 'bm0': ReuseFactor must be a positive int"):
            _model(tmp_path, bad, tag="bad")
    with pytest.raises(Exception, match=r'attribute "reuse_factor" of layer "bm0"'):  # hls4ml's own check
        _model(tmp_path, 2.5, tag="bad")


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not found")
@pytest.mark.parametrize(
    "backend,io_type",
    [
        ("Vivado", "io_parallel"),
        ("Vitis", "io_stream"),
        pytest.param("Vitis", "io_parallel", marks=pytest.mark.slow),
        pytest.param("Vivado", "io_stream", marks=pytest.mark.slow),
    ],
)
def test_generated_project_passes_gxx_wextra(tmp_path, backend, io_type):
    m = _model(tmp_path, 6, backend, io_type)
    m.write()
    fw = tmp_path / "prj" / "firmware"
    assert (fw / "nnet_utils" / "nnet_bm_conv.h").read_bytes() == HEADER.read_bytes()
    cmd = ["g++", "-std=c++11", "-fsyntax-only", "-Wall", "-Wextra", f"-I{fw}", f"-I{fw / 'ap_types'}"]
    proc = subprocess.run([*cmd, str(fw / "bmprj.cpp")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    # HLS pragmas and loop labels are HLS idioms g++ flags in hls4ml's own headers too; every other warning
    # located in our header fails the test
    ours = [
        ln
        for ln in proc.stderr.splitlines()
        if re.search(r"nnet_bm_conv\.h:\d+:\d+: warning", ln)
        and "-Wunknown-pragmas" not in ln
        and "-Wunused-label" not in ln
    ]
    assert not ours, "\n".join(ours)
