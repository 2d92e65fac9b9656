"""Fixed-point BM convolution: exactly what the generated C++ (``bm_ops/hls4ml/nnet_bm_conv.h``) computes.

Limonova et al., *The BM Convolutional Layer*::

    J = sum_{alpha,beta} p^alpha p^beta exp( ln I^alpha (.) v^beta ) + b

and *Hardware implementation* ("approximations for exponent and logarithm"; Table 1 prices one ``log`` and one
``exp`` per value, addition and maximum inside the window). This module is the single place where the
fixed-point arithmetic is written; the hls4ml layer, the C++ header, the estimates and the tests all use it.

Datapath (all integers; ``raw`` = value · 2^frac):

1. **log at the input, once per input value** (base 2). For the magnitude ``m = |raw(x)| > 0`` with leading-one
   position ``e`` the log is ``L = (e - F_in)·2^FL + LOG_T[idx]``, where ``idx`` are the ``T`` mantissa bits
   right below the leading one and ``LOG_T[i] = round(2^FL · log2(1 + (i + 1/2)/2^T))`` (mid-point table).
   ``x = 0`` (and zero padding) is ``ln 0 = -inf``: the tap is skipped. The sign of ``x`` selects ``alpha``.
2. **add and max inside the window**: ``S = L + V`` with integer log-weights ``V = round(2^FL · v·log2 e)``;
   ``-inf`` weights are stored as the sentinel ``-2^(WV-1)`` and skipped. Four running maxima per output
   (``alpha, beta in {+,-}``), exact integer arithmetic.
3. **exp at the output, once per (output, alpha, beta)**: ``z = max S``, ``n = floor(z / 2^FL)``, ``g = z mod 2^FL``,
   ``E = EXP_T[g >> (FL - Te)]`` with ``EXP_T[j] = round(2^FE · 2^((j + 1/2)/2^Te))``; the term is
   ``E · 2^(n + FA - FE)`` in the accumulator (``FA`` fraction bits), right shifts round half up. An empty max
   (every tap ``-inf``) gives 0.
4. ``acc = T++ - T+- - T-+ + T-- + B`` (bias ``B = round(2^FA · b)``), exact; then ``res = (result_t) acc``
   with ``result_t``'s own rounding/overflow mode (``AP_TRN``/``AP_RND``, ``AP_WRAP``/``AP_SAT``).

Deviation from the paper (documented in docs/bm_hls4ml.md): the paper writes ``ln``/``exp``; the hardware
here uses ``log2``/``2^z`` (leading-one detector + table, shift + table). This is the same function:
``exp(ln x + v) = 2^(log2 x + v·log2 e)``; the constant ``log2 e`` is folded into the stored weights ``V`` at
conversion time. The approximation error is bounded by :meth:`BMFixedLayer.error_bound` (log and exp table
errors and weight rounding, in log2 units, computed from the actual tables) — with the defaults
(``T = Te = 10``, ``FL = 14``, ``FE = 16``; 1024-entry tables) the log2 error is 0.00126 (log table 0.00073,
exp table 0.00050, weight rounding 0.00003), i.e. each exp term has a relative error below 0.088 % (about
10.2 correct bits). With 256-entry tables (``T = Te = 8``, ``FL = 12``) it is 0.35 % (8.2 bits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "FixedType",
    "BMFixedConfig",
    "BMFixedLayer",
    "log_table",
    "exp_table",
    "log2_fixed",
    "exp2_fixed",
    "quantize_bm_layer",
    "bm_conv2d_fixed",
    "bm_conv2d_fixed_float",
    "float_term_sum",
    "float_error_bound",
]

LOG2E = 1.0 / math.log(2.0)
_NEG = np.int64(-(1 << 62))  # "no valid tap yet" inside the python max (never reachable by a real S)


# ----------------------------------------------------------------------------------------------- ap_fixed


@dataclass(frozen=True)
class FixedType:
    """``ap_fixed<width, integer, rounding, saturation>`` (``signed=False``: ``ap_ufixed``), raw = value·2^frac."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    saturation: str = "WRAP"

    def __post_init__(self):
        if not (1 <= self.width <= 62):
            raise ValueError(f"FixedType: width must be in 1..62, got {self.width}")
        if self.rounding not in ("TRN", "RND"):
            raise ValueError(f"FixedType: rounding mode AP_{self.rounding} not supported (AP_TRN or AP_RND)")
        if self.saturation not in ("WRAP", "SAT"):
            raise ValueError(
                f"FixedType: overflow mode AP_{self.saturation} not supported (AP_WRAP or AP_SAT)"
            )

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def min_raw(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max_raw(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def cpp(self) -> str:
        base = "ap_fixed" if self.signed else "ap_ufixed"
        if self.rounding == "TRN" and self.saturation == "WRAP":
            return f"{base}<{self.width},{self.integer}>"
        return f"{base}<{self.width},{self.integer},AP_{self.rounding},AP_{self.saturation}>"

    def cast_raw(self, raw, src_frac: int) -> np.ndarray:
        """ap_fixed assignment from an exact value ``raw·2^-src_frac`` (quantisation then overflow mode)."""
        raw = np.asarray(raw, dtype=np.int64)
        d = src_frac - self.frac
        if d > 0:
            if self.rounding == "RND":  # AP_RND: round half towards +inf
                raw = (raw + (np.int64(1) << np.int64(d - 1))) >> np.int64(d)
            else:  # AP_TRN: floor
                raw = raw >> np.int64(d)
        elif d < 0:
            raw = raw << np.int64(-d)
        if self.saturation == "SAT":
            return np.clip(raw, self.min_raw, self.max_raw)
        mod = np.int64(1) << np.int64(self.width)
        raw = raw & (mod - 1)
        if self.signed:
            raw = np.where(raw > self.max_raw, raw - mod, raw)
        return raw

    def from_float(self, x) -> np.ndarray:
        """Raw integers of float ``x`` (rounding/overflow of this type; exact floats map exactly)."""
        x = np.asarray(x, dtype=np.float64)
        if not np.isfinite(x).all():
            raise ValueError("FixedType.from_float: x contains NaN or inf")
        scaled = x * 2.0**self.frac
        raw = np.floor(scaled + 0.5) if self.rounding == "RND" else np.floor(scaled)
        return self.cast_raw(raw.astype(np.int64), self.frac)

    def to_float(self, raw) -> np.ndarray:
        return np.asarray(raw, dtype=np.float64) * 2.0 ** (-self.frac)

    def representable(self, x) -> bool:
        x = np.asarray(x, dtype=np.float64)
        return bool(np.array_equal(self.to_float(self.from_float(x)), x))

    @classmethod
    def from_hls(cls, precision, where: str = "layer") -> FixedType:
        """From an hls4ml ``FixedPrecisionType``/``IntegerPrecisionType`` (clear error for anything else)."""
        name = type(precision).__name__
        kinds = {k.__name__ for k in type(precision).__mro__}
        if not kinds & {"FixedPrecisionType", "IntegerPrecisionType"}:
            raise ValueError(
                f"{where}: BM layers need a fixed-point (ap_fixed/ap_int) input/result precision, got {name} "
                f"({precision}); set an explicit precision for the layer feeding it"
            )
        rnd = getattr(precision, "rounding_mode", None)
        sat = getattr(precision, "saturation_mode", None)
        rnd = "TRN" if rnd is None else str(rnd).split(".")[-1].replace("AP_", "").upper()
        sat = "WRAP" if sat is None else str(sat).split(".")[-1].replace("AP_", "").upper()
        if rnd not in ("TRN", "RND") or sat not in ("WRAP", "SAT"):
            raise ValueError(
                f"{where}: precision {precision}: only AP_TRN/AP_RND and AP_WRAP/AP_SAT are supported"
            )
        return cls(int(precision.width), int(precision.integer), bool(precision.signed), rnd, sat)


# ----------------------------------------------------------------------------------------------- tables


def log_table(table_bits: int, frac_bits: int) -> np.ndarray:
    """``LOG_T[i] = round(2^FL · log2(1 + (i + 1/2) / 2^T))`` (mid-point of each mantissa bin)."""
    i = np.arange(1 << table_bits, dtype=np.float64)
    return np.floor(np.log2(1.0 + (i + 0.5) / 2.0**table_bits) * 2.0**frac_bits + 0.5).astype(np.int64)


def exp_table(table_bits: int, frac_bits: int) -> np.ndarray:
    """``EXP_T[j] = round(2^FE · 2^((j + 1/2) / 2^Te))`` (values in ``[2^FE, 2^(FE+1)]``)."""
    j = np.arange(1 << table_bits, dtype=np.float64)
    return np.floor(2.0 ** ((j + 0.5) / 2.0**table_bits) * 2.0**frac_bits + 0.5).astype(np.int64)


def _bits_signed(lo: int, hi: int) -> int:
    """Smallest two's-complement width holding every integer in [lo, hi]."""
    w = 1
    while not (-(1 << (w - 1)) <= lo and hi <= (1 << (w - 1)) - 1):
        w += 1
    return w


# ----------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class BMFixedConfig:
    """Approximation parameters of the BM datapath (see the module docstring for the symbols).

    ``log_table_bits`` = T, ``log_frac_bits`` = FL (fraction bits of every log-domain value: input logs, weights,
    window sums), ``exp_table_bits`` = Te, ``exp_frac_bits`` = FE, ``accum_frac_bits`` = FA. ``weight_bits``
    (WV, log-domain weight width incl. the ``-inf`` sentinel) is chosen from the weights when None; an explicit
    value that cannot hold the weights is a ``ValueError`` at conversion.
    """

    log_table_bits: int = 10
    log_frac_bits: int = 14
    exp_table_bits: int = 10
    exp_frac_bits: int = 16
    accum_frac_bits: int = 16
    weight_bits: int | None = None

    def validate(self, where: str = "bm layer") -> None:
        for name in ("log_table_bits", "log_frac_bits", "exp_table_bits", "exp_frac_bits", "accum_frac_bits"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                raise TypeError(f"{where}: {name} must be an int, got {v!r}")
        if not 1 <= self.log_table_bits <= 14:
            raise ValueError(
                f"{where}: log_table_bits must be in 1..14 (table of 2^T entries), got {self.log_table_bits}"
            )
        if not 1 <= self.exp_table_bits <= 14:
            raise ValueError(f"{where}: exp_table_bits must be in 1..14, got {self.exp_table_bits}")
        if not 1 <= self.log_frac_bits <= 24:
            raise ValueError(f"{where}: log_frac_bits must be in 1..24, got {self.log_frac_bits}")
        if self.log_frac_bits < self.exp_table_bits:
            raise ValueError(
                f"{where}: log_frac_bits={self.log_frac_bits} is narrower than exp_table_bits={self.exp_table_bits}: "
                "the exp table is indexed by the top fraction bits of the log-domain sum"
            )
        if self.log_frac_bits < self.log_table_bits - 2:
            raise ValueError(
                f"{where}: log_frac_bits={self.log_frac_bits} too narrow for a log table of "
                f"{self.log_table_bits} index bits (needs >= log_table_bits - 2)"
            )
        if not 2 <= self.exp_frac_bits <= 30:
            raise ValueError(f"{where}: exp_frac_bits must be in 2..30, got {self.exp_frac_bits}")
        if not 0 <= self.accum_frac_bits <= 40:
            raise ValueError(f"{where}: accum_frac_bits must be in 0..40, got {self.accum_frac_bits}")
        if self.weight_bits is not None and not 2 <= int(self.weight_bits) <= 40:
            raise ValueError(f"{where}: weight_bits must be in 2..40, got {self.weight_bits}")


@dataclass
class BMFixedLayer:
    """A BM conv layer quantised for the fixed-point datapath: integer tables and weights plus derived widths.

    ``v_pos``/``v_neg``: int64 ``(F, C, Kh, Kw)``, ``sentinel`` = ``-inf``; ``bias``: int64 ``(F,)`` with FA
    fraction bits. Widths: ``weight_bits`` (WV), ``sum_bits`` (window sums S), ``accum_bits`` (accumulator, no
    overflow possible by construction).
    """

    cfg: BMFixedConfig
    input_t: FixedType
    result_t: FixedType
    v_pos: np.ndarray
    v_neg: np.ndarray
    bias: np.ndarray
    weight_bits: int
    sum_bits: int
    accum_bits: int
    log_t: np.ndarray = field(repr=False, default=None)
    exp_t: np.ndarray = field(repr=False, default=None)

    @property
    def sentinel(self) -> int:
        return -(1 << (self.weight_bits - 1))

    @property
    def accum_t(self) -> FixedType:
        return FixedType(self.accum_bits, self.accum_bits - self.cfg.accum_frac_bits, True)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return tuple(int(s) for s in self.v_pos.shape)

    def error_bound(self) -> dict:
        """Bound of the approximation, from the actual tables.

        ``log2_err``: max |log2 of a computed exp term − exact log2 of the float term| (log table + weight
        rounding + exp-table index truncation + exp table rounding), so each of the four exp terms is within a
        relative factor ``2^±log2_err``; ``abs_err``: additive rounding of each term (2^-(FA+1)) and of the bias.
        The float layer output ``y`` and the fixed output satisfy
        ``|y_fixed − y| ≤ Σ_terms |term|·rel_err + 4·2^-(FA+1) + 2^-(FA+1) + step(result_t)`` where
        ``rel_err = 2^log2_err − 1`` (the last two: bias rounding and the final cast).
        """
        c = self.cfg
        T, FL, Te, FE = c.log_table_bits, c.log_frac_bits, c.exp_table_bits, c.exp_frac_bits
        lo = np.arange(1 << T) / 2.0**T
        hi = (np.arange(1 << T) + 1) / 2.0**T
        tab = self.log_t / 2.0**FL
        log_err = float(np.max(np.maximum(np.abs(tab - np.log2(1 + lo)), np.abs(tab - np.log2(1 + hi)))))
        w_err = 0.5 / 2.0**FL
        # exp: the index keeps the top Te bits of g (truncation) and the table value is a rounded mid-point
        j = np.arange(1 << Te)
        glo = j / 2.0**Te
        ghi = (j + 1) / 2.0**Te - 2.0**-FL
        tv = np.log2(self.exp_t / 2.0**FE)
        exp_err = float(np.max(np.maximum(np.abs(tv - glo), np.abs(tv - ghi))))
        log2_err = log_err + w_err + exp_err
        return {
            "log_table_err": log_err,
            "weight_err": w_err,
            "exp_err": exp_err,
            "log2_err": log2_err,
            "rel_err": 2.0**log2_err - 1.0,
            "abs_err_per_term": 0.5 / 2.0**c.accum_frac_bits,
            "result_step": 2.0 ** (-self.result_t.frac),
        }


def quantize_bm_layer(
    v_pos,
    v_neg,
    bias,
    input_t: FixedType,
    result_t: FixedType,
    cfg: BMFixedConfig | None = None,
    where: str = "bm layer",
) -> BMFixedLayer:
    """Convert float log-domain weights ``(v_pos, v_neg, bias)`` into a :class:`BMFixedLayer`.

    Raises ``ValueError`` naming ``where`` for: NaN/+inf weights, a filter whose ``v_pos`` and ``v_neg`` are all
    ``-inf`` (it can only output its bias), an explicit ``weight_bits`` too narrow for the weights, an input
    type whose log range does not fit, or an accumulator wider than 62 bits.
    """
    cfg = cfg or BMFixedConfig()
    cfg.validate(where)
    vp = np.asarray(v_pos, dtype=np.float64)
    vn = np.asarray(v_neg, dtype=np.float64)
    if vp.ndim != 4 or vp.shape != vn.shape:
        raise ValueError(f"{where}: v_pos/v_neg must both be (F, C, Kh, Kw), got {vp.shape} and {vn.shape}")
    for name, v in (("v_pos", vp), ("v_neg", vn)):
        if np.isnan(v).any() or (v == np.inf).any():
            raise ValueError(
                f"{where}: {name} contains NaN or +inf; log-domain weights must be finite or -inf"
            )
    f = vp.shape[0]
    dead = [i for i in range(f) if not (np.isfinite(vp[i]).any() or np.isfinite(vn[i]).any())]
    if dead:
        raise ValueError(
            f"{where}: filter(s) {dead} have only -inf weights in both v_pos and v_neg (a constant-bias filter); "
            "remove them or give them a finite weight"
        )
    b = np.zeros(f) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
    if b.shape != (f,) or not np.isfinite(b).all():
        raise ValueError(f"{where}: bias must be {f} finite values, got shape {b.shape}")
    if not isinstance(input_t, FixedType) or not isinstance(result_t, FixedType):
        raise TypeError(f"{where}: input_t and result_t must be FixedType")

    FL, FA, FE = cfg.log_frac_bits, cfg.accum_frac_bits, cfg.exp_frac_bits
    fin = np.isfinite
    qp = np.where(fin(vp), np.round(np.where(fin(vp), vp, 0.0) * LOG2E * 2.0**FL), 0.0).astype(np.int64)
    qn = np.where(fin(vn), np.round(np.where(fin(vn), vn, 0.0) * LOG2E * 2.0**FL), 0.0).astype(np.int64)
    finite_vals = np.concatenate([qp[fin(vp)], qn[fin(vn)]])
    vmin, vmax = int(finite_vals.min()), int(finite_vals.max())
    # one code below the finite range is reserved for the -inf sentinel
    need = _bits_signed(vmin - 1, vmax)
    wv = need if cfg.weight_bits is None else int(cfg.weight_bits)
    if wv < need:
        raise ValueError(
            f"{where}: weight_bits={wv} too narrow for the log-domain weights (range [{vmin}, {vmax}] at "
            f"log_frac_bits={FL} needs {need} bits incl. the -inf code)"
        )
    sentinel = -(1 << (wv - 1))
    qp = np.where(fin(vp), qp, sentinel)
    qn = np.where(fin(vn), qn, sentinel)

    # log range of the input magnitudes: e in [0, W-1] (signed: |min| = 2^(W-1))
    e_max = input_t.width - 1
    l_min = -input_t.frac * (1 << FL)
    l_max = (e_max - input_t.frac) * (1 << FL) + (1 << FL)
    s_min, s_max = l_min + vmin, l_max + vmax
    sum_bits = _bits_signed(min(s_min, sentinel), s_max)
    if sum_bits > 40:
        raise ValueError(
            f"{where}: log-domain sums need {sum_bits} bits (> 40): input type or weights too wide"
        )
    # largest exp term in the accumulator: EXP_T <= 2^(FE+1), n <= floor(s_max / 2^FL)
    n_max = s_max >> FL
    term_max = (1 << (FE + 1)) << max(0, n_max + FA - FE)
    b_raw = np.floor(b * 2.0**FA + 0.5).astype(np.int64)
    bmax = int(np.abs(b_raw).max()) if f else 0
    acc_need = _bits_signed(-(2 * term_max + bmax), 2 * term_max + bmax)
    if acc_need > 62:
        raise ValueError(
            f"{where}: the accumulator would need {acc_need} bits (> 62): the input type {input_t.cpp()} and "
            f"weights (max v = {vmax / 2**FL / LOG2E:.3g}) give exp terms up to 2^{n_max}; use a narrower input type"
        )
    if input_t.width > 32:
        raise ValueError(f"{where}: input type {input_t.cpp()} wider than 32 bits is not supported")
    return BMFixedLayer(
        cfg=cfg,
        input_t=input_t,
        result_t=result_t,
        v_pos=qp,
        v_neg=qn,
        bias=b_raw,
        weight_bits=wv,
        sum_bits=sum_bits,
        accum_bits=acc_need,
        log_t=log_table(cfg.log_table_bits, FL),
        exp_t=exp_table(cfg.exp_table_bits, FE),
    )


def log_bits(input_t: FixedType, cfg: BMFixedConfig) -> int:
    """Exact signed width of a log value ``L`` of an ``input_t`` magnitude (the io_stream line-buffer word)."""
    FL = cfg.log_frac_bits
    l_min = -input_t.frac * (1 << FL)
    l_max = (input_t.width - 1 - input_t.frac) * (1 << FL) + (1 << FL)
    return _bits_signed(l_min, l_max)


# ----------------------------------------------------------------------------------------------- datapath


def log2_fixed(mag, in_frac: int, cfg: BMFixedConfig, log_t: np.ndarray | None = None) -> np.ndarray:
    """Step 1: ``L = (e - F_in)·2^FL + LOG_T[idx]`` for magnitudes ``mag > 0`` (int64 array); 0 where mag == 0."""
    mag = np.asarray(mag, dtype=np.int64)
    T, FL = cfg.log_table_bits, cfg.log_frac_bits
    if log_t is None:
        log_t = log_table(T, FL)
    m = np.where(mag > 0, mag, 1)
    e = np.floor(np.log2(m.astype(np.float64))).astype(np.int64)
    # guard against float log2 rounding at exact powers of two (m < 2^53 here)
    e = np.where((np.int64(1) << e) > m, e - 1, e)
    e = np.where((np.int64(1) << (e + 1)) <= m, e + 1, e)
    mask = np.int64((1 << T) - 1)
    idx = np.where(e >= T, m >> np.maximum(e - T, 0), m << np.maximum(T - e, 0)) & mask
    return np.where(mag > 0, ((e - in_frac) << np.int64(FL)) + log_t[idx], 0)


def exp2_fixed(z, cfg: BMFixedConfig, exp_t: np.ndarray | None = None) -> np.ndarray:
    """Step 3: ``E·2^(n + FA − FE)`` (round half up on right shifts) for log-domain sums ``z`` (int64)."""
    z = np.asarray(z, dtype=np.int64)
    FL, Te, FE, FA = cfg.log_frac_bits, cfg.exp_table_bits, cfg.exp_frac_bits, cfg.accum_frac_bits
    if exp_t is None:
        exp_t = exp_table(Te, FE)
    n = z >> np.int64(FL)
    g = z & np.int64((1 << FL) - 1)
    E = exp_t[g >> np.int64(FL - Te)]
    sh = n + (FA - FE)
    k = np.clip(-sh, 1, FE + 2)  # right shift amount (>= FE+2 always gives 0 since E <= 2^(FE+1))
    right = np.where(-sh >= FE + 2, 0, (E + (np.int64(1) << (k - 1))) >> k)
    left = E << np.clip(sh, 0, 62)
    return np.where(sh >= 0, left, right)


def bm_conv2d_fixed(
    x_raw, layer: BMFixedLayer, stride=1, padding=0, return_accum: bool = False
) -> np.ndarray:
    """Fixed-point BM convolution of raw inputs ``x_raw`` (int, NCHW, raw of ``layer.input_t``).

    Returns raw ``result_t`` integers ``(N, F, OH, OW)`` (or the raw accumulator with ``return_accum``).
    Zero padding: ``padding`` is an int / ``(h, w)`` (symmetric, like ``bm_ops.functional.bm_conv2d``) or
    ``(top, bottom, left, right)`` (Keras ``'same'``); padding taps are ``ln 0``.
    """
    from bm_ops.functional import pair

    x_raw = np.asarray(x_raw)
    if x_raw.ndim != 4:
        raise ValueError(f"bm_conv2d_fixed: x_raw must be NCHW, got shape {x_raw.shape}")
    if not np.issubdtype(x_raw.dtype, np.integer):
        raise TypeError(
            f"bm_conv2d_fixed: x_raw must hold raw integers of {layer.input_t.cpp()}, got {x_raw.dtype}"
        )
    x_raw = x_raw.astype(np.int64)
    it = layer.input_t
    if x_raw.size and (x_raw.min() < it.min_raw or x_raw.max() > it.max_raw):
        raise ValueError(f"bm_conv2d_fixed: x_raw outside the raw range of {it.cpp()}")
    f, c, kh, kw = layer.shape
    if x_raw.shape[1] != c:
        raise ValueError(f"bm_conv2d_fixed: x has {x_raw.shape[1]} channels, layer expects {c}")
    sh, sw = pair(stride, "stride")
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        pt, pb, pl, pr = (int(p) for p in padding)
    else:
        ph, pw = pair(padding, "padding")
        pt, pb, pl, pr = ph, ph, pw, pw
    if min(pt, pb, pl, pr) < 0 or sh < 1 or sw < 1:
        raise ValueError(f"bm_conv2d_fixed: invalid stride {(sh, sw)} or padding {(pt, pb, pl, pr)}")
    n, _, h, w = x_raw.shape
    oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"bm_conv2d_fixed: kernel {(kh, kw)} larger than padded input")
    cfg = layer.cfg
    L = log2_fixed(np.abs(x_raw), it.frac, cfg, layer.log_t)
    xp = np.pad(x_raw, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    Lp = np.pad(L, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    taps = c * kh * kw

    def unfold(a):
        cols = np.empty((a.shape[0], c, kh, kw, oh, ow), dtype=np.int64)
        for i in range(kh):
            for j in range(kw):
                cols[:, :, i, j] = a[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
        return cols.reshape(a.shape[0], taps, oh * ow)

    sent = layer.sentinel
    W = {+1: layer.v_pos.reshape(f, taps), -1: layer.v_neg.reshape(f, taps)}
    acc = np.zeros((n, f, oh * ow), dtype=np.int64)
    chunk = max(1, (1 << 23) // max(1, f * taps * oh * ow))
    for n0 in range(0, n, chunk):
        xs = unfold(xp[n0 : n0 + chunk])
        ls = unfold(Lp[n0 : n0 + chunk])
        for pa, sel in ((+1, xs > 0), (-1, xs < 0)):
            la = np.where(sel, ls, _NEG)[:, None, :, :]  # (n, 1, T, L)
            for pb, v in W.items():
                vv = np.where(v == sent, _NEG, v)[None, :, :, None]  # (1, F, T, 1)
                s = np.where((la > _NEG) & (vv > _NEG), la + vv, _NEG).max(axis=2)  # (n, F, L)
                term = np.where(s > _NEG, exp2_fixed(np.where(s > _NEG, s, 0), cfg, layer.exp_t), 0)
                acc[n0 : n0 + chunk] += pa * pb * term
    acc = acc + layer.bias[None, :, None]
    acc = acc.reshape(n, f, oh, ow)
    if return_accum:
        return acc
    return layer.result_t.cast_raw(acc, cfg.accum_frac_bits)


def bm_conv2d_fixed_float(x, layer: BMFixedLayer, stride=1, padding=0) -> np.ndarray:
    """Float convenience wrapper: quantise ``x`` to ``input_t``, run :func:`bm_conv2d_fixed`, return floats."""
    raw = layer.input_t.from_float(x)
    return layer.result_t.to_float(bm_conv2d_fixed(raw, layer, stride, padding))


def float_term_sum(x, v_pos, v_neg, stride=1, padding=0) -> np.ndarray:
    """``sum_{a,b} exp(ln x^a (.) v^b)`` (all four terms with a + sign), float64, via ``bm_ops.functional``.

    The scale that multiplies :meth:`BMFixedLayer.error_bound`'s ``rel_err`` in :func:`float_error_bound`.
    """
    from bm_ops.functional import bm_conv2d, split_sign

    v_pos = np.asarray(v_pos, dtype=np.float64)
    v_neg = np.asarray(v_neg, dtype=np.float64)
    ninf = np.full_like(v_pos, -np.inf)
    total = 0.0
    for xa in split_sign(np.asarray(x, dtype=np.float64)):  # xa >= 0: only its (+, beta) terms are non-zero
        for v in (v_pos, v_neg):
            total = total + bm_conv2d(xa, v, ninf, None, stride, padding)
    return total


def float_error_bound(x, v_pos, v_neg, layer: BMFixedLayer, stride=1, padding=0) -> np.ndarray:
    """Per-output bound of ``|fixed − float|`` for inputs ``x`` exactly representable in ``layer.input_t``.

    ``Σ|terms|·rel_err + 4·2^-(FA+1)`` (exp rounding) ``+ 2^-(FA+1)`` (bias) ``+ step(result_t)`` (final cast),
    valid while the result type does not overflow (see :meth:`BMFixedLayer.error_bound`).
    """
    eb = layer.error_bound()
    return (
        float_term_sum(x, v_pos, v_neg, stride, padding) * eb["rel_err"]
        + 5 * eb["abs_err_per_term"]
        + eb["result_step"]
    )
