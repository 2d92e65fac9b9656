"""The C++ configuration struct of one BM conv layer (``nnet::bm_conv2d_config``) and its ReuseFactor split.

One place writes the struct: the hls4ml config template (:mod:`bm_ops.hls4ml.templates`) and the C++ test
harness (:mod:`bm_ops.hls4ml.harness`) both call :func:`config_struct`, so the harness instantiates exactly the
compile-time kernel hls4ml writes.  No hls4ml import here.

**ReuseFactor.** As for hls4ml's ``Conv2D`` (``n_in = n_chan·filt_height·filt_width`` taps, ``n_out = n_filt``),
the tap operations of one output pixel (``n_in·n_out`` add/compare pairs per sign quadrant) are spread over
``reuse_factor`` clocks.  The valid values are hls4ml's (``FPGABackend.get_valid_reuse_factors``): a divisor of
``n_in`` (``reuse_taps = rf``: each clock takes ``n_in / rf`` taps of every filter) or ``n_in·k`` with ``k``
dividing ``n_out`` (``reuse_taps = n_in``, ``reuse_filt = k``: each clock one tap of ``n_out / k`` filters).
"""

from __future__ import annotations

from bm_ops.fixedpoint import BMFixedConfig, FixedType, log_bits

__all__ = [
    "valid_reuse_factors",
    "reuse_split",
    "line_buffer_size",
    "config_struct",
    "bias_bits",
    "STRUCT_KEYS",
]


def bias_bits(bias_raw) -> int:
    """Signed width of the raw integer bias array (the ``bias_t`` weight type, at least 2 bits)."""
    import numpy as np

    b = np.asarray(bias_raw, dtype=np.int64)
    return max(2, int(np.abs(b).max()).bit_length() + 1) if b.size else 2


def valid_reuse_factors(n_in: int, n_out: int) -> list[int]:
    """The ReuseFactors the BM kernel can realise (the same set as hls4ml's for a Conv2D of that size)."""
    small = [rf for rf in range(1, n_in + 1) if n_in % rf == 0]
    large = [n_in * k for k in range(2, n_out + 1) if n_out % k == 0]
    return small + large


def reuse_split(rf, n_in: int, n_out: int, where: str = "BMConv2D layer") -> tuple[int, int]:
    """``(reuse_taps, reuse_filt)`` with ``reuse_taps·reuse_filt == rf``; ``ValueError`` naming ``where`` otherwise."""
    if isinstance(rf, bool) or not isinstance(rf, int) or rf < 1:
        raise ValueError(f"{where}: ReuseFactor must be a positive int, got {rf!r}")
    if n_in % rf == 0:
        return rf, 1
    if rf % n_in == 0 and n_out % (rf // n_in) == 0:
        return n_in, rf // n_in
    valid = ",".join(map(str, valid_reuse_factors(n_in, n_out)))
    raise ValueError(
        f"{where}: ReuseFactor={rf} does not divide the {n_in} taps x {n_out} filters of a window evenly; "
        f"valid ReuseFactor(s): {valid}"
    )


def line_buffer_size(g: dict) -> int:
    """Pixels the io_stream line buffer must hold (``lb_size``), from the exact emission schedule.

    Output ``k`` (row-major) is emitted at pixel ``e_k = max_{j<=k} last_j`` (``last_j``: the last input pixel its
    window touches) and reads pixels from ``first_k`` (the first one it touches) on, so the buffer needs
    ``max_k (e_k - first_k + 1)`` pixels: ``(filt_height-1)·in_width + filt_width`` for an interior window, less
    at padded edges, more when the image is shorter than the kernel (several output rows then read the same
    input rows).
    """
    h, w = int(g["in_height"]), int(g["in_width"])
    need, emit = 1, -1
    for oh in range(int(g["out_height"])):
        r0 = oh * int(g["stride_height"]) - int(g["pad_top"])
        r1 = r0 + int(g["filt_height"]) - 1
        for ow in range(int(g["out_width"])):
            c0 = ow * int(g["stride_width"]) - int(g["pad_left"])
            c1 = c0 + int(g["filt_width"]) - 1
            last = min(max(r1, 0), h - 1) * w + min(max(c1, 0), w - 1)
            emit = max(emit, last)
            if r1 >= 0 and r0 < h and c1 >= 0 and c0 < w:  # the window touches the image
                need = max(need, emit - (max(r0, 0) * w + max(c0, 0)) + 1)
    return need


STRUCT_KEYS = (
    "in_height",
    "in_width",
    "n_chan",
    "filt_height",
    "filt_width",
    "n_filt",
    "stride_height",
    "stride_width",
    "pad_top",
    "pad_left",
    "out_height",
    "out_width",
)

_TEMPLATE = """struct {name} : nnet::bm_conv2d_config {{
    static const unsigned in_height = {in_height};
    static const unsigned in_width = {in_width};
    static const unsigned n_chan = {n_chan};
    static const unsigned filt_height = {filt_height};
    static const unsigned filt_width = {filt_width};
    static const unsigned n_filt = {n_filt};
    static const unsigned stride_height = {stride_height};
    static const unsigned stride_width = {stride_width};
    static const unsigned pad_top = {pad_top};
    static const unsigned pad_left = {pad_left};
    static const unsigned out_height = {out_height};
    static const unsigned out_width = {out_width};
    static const unsigned in_bits = {in_bits};
    static const bool in_signed = {in_signed};
    static const int in_frac = {in_frac};
    static const unsigned log_table_bits = {log_table_bits};
    static const unsigned log_frac_bits = {log_frac_bits};
    static const unsigned exp_table_bits = {exp_table_bits};
    static const unsigned exp_frac_bits = {exp_frac_bits};
    static const unsigned accum_frac_bits = {accum_frac_bits};
    static const unsigned weight_bits = {weight_bits};
    static const unsigned log_bits = {log_bits};
    static const unsigned sum_bits = {sum_bits};
    static const unsigned accum_bits = {accum_bits};
    static const unsigned reuse_factor = {reuse_factor};
    static const unsigned reuse_taps = {reuse_taps};
    static const unsigned reuse_filt = {reuse_filt};
    static const unsigned lb_size = {lb_size};
    typedef {weight_t} weight_t;
    typedef {bias_t} bias_t;
    typedef {log_table_t} log_table_t;
    typedef {exp_table_t} exp_table_t;
    typedef {accum_t} accum_t;
}};
"""


def config_struct(
    name: str,
    geometry: dict,
    input_t: FixedType,
    cfg: BMFixedConfig,
    weight_bits: int,
    sum_bits: int,
    accum_bits: int,
    reuse_factor: int,
    types: dict,
    where: str = "BMConv2D layer",
) -> str:
    """C++ text of ``struct <name> : nnet::bm_conv2d_config`` (every parameter a compile-time constant).

    ``geometry``: the :data:`STRUCT_KEYS`; ``types``: C++ names of ``weight_t``, ``bias_t``, ``log_table_t``,
    ``exp_table_t``, ``accum_t``.
    """
    missing = [k for k in STRUCT_KEYS if k not in geometry]
    if missing:
        raise ValueError(f"{where}: geometry lacks {missing}")
    n_in = int(geometry["n_chan"]) * int(geometry["filt_height"]) * int(geometry["filt_width"])
    rt, rfl = reuse_split(reuse_factor, n_in, int(geometry["n_filt"]), where)
    params = {k: int(geometry[k]) for k in STRUCT_KEYS}
    params.update(
        name=name,
        in_bits=input_t.width,
        in_signed="true" if input_t.signed else "false",
        in_frac=input_t.frac,
        log_table_bits=cfg.log_table_bits,
        log_frac_bits=cfg.log_frac_bits,
        exp_table_bits=cfg.exp_table_bits,
        exp_frac_bits=cfg.exp_frac_bits,
        accum_frac_bits=cfg.accum_frac_bits,
        weight_bits=int(weight_bits),
        log_bits=log_bits(input_t, cfg),
        sum_bits=int(sum_bits),
        accum_bits=int(accum_bits),
        reuse_factor=int(reuse_factor),
        reuse_taps=rt,
        reuse_filt=rfl,
        lb_size=line_buffer_size(params),
    )
    for k in ("weight_t", "bias_t", "log_table_t", "exp_table_t", "accum_t"):
        params[k] = types[k]
    return _TEMPLATE.format(**params)
