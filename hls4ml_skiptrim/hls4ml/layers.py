"""IR layer of the fused short-skip block: Conv2D (+BN) + ReLU + Add(conv input), one hls4ml layer.

Khodamoradi 2021, ch. 4, Listing 4.2 (*Trimmer*: ``out1 = act(BN1(conv1(inp)));
out1 += inp`` -- "ReLU before addition" with a short skip) and Listing 4.3 (the green block of Fig. 4.4.d)::

    conv+BN loop:   acc = apply_filters(input, weights)
    output loop:    res = input            // short skip connection
                    if (acc > 0) res += acc  // ReLU
                    output = res

:class:`ShortSkipConv2D` is a subclass of hls4ml's ``Conv2D`` so that every backend pass written for
convolutions (im2col code generation, resource-strategy weight transposition, BRAM weights, type
transformation) treats it as a convolution.  On top of the convolution it carries the post-ops of the
unfused chain *with the unfused chain's own types*, so the C++ output loop reproduces the unfused hls4ml
model bit for bit:

====================  ==================================================================================
attribute             meaning (unfused layer it comes from)
====================  ==================================================================================
``conv_out_t``        the Conv2D output type (dense accumulator is cast to it)
``use_bn``            a BatchNormalization layer sat between conv and ReLU (not foldable, e.g. QKeras)
``bn_scale``/``bn_bias``  its weights; ``bn_out_t`` its output type (``scale*x + bias`` cast to it)
``act_out_t``         the ReLU output type
result (output var)   the Add output variable itself: ``res = act + skip`` cast to the Add type
``skip_row/col``      centre tap of the sliding window = the skip operand (odd kernel, stride 1, same pad)
====================  ==================================================================================

Deviation from the dissertation: its listing adds the *accumulator* to the skip; hls4ml's unfused chain casts
the accumulator to the conv, BN and ReLU types first.  We keep hls4ml's casts (bit-exactness to the unfused
model is the correctness criterion); with wide enough intermediate types both are the same.
"""

from __future__ import annotations

from fractions import Fraction

from hls4ml.model.attributes import Attribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Conv2D

#: IR class name (templates match on exact class names).
LAYER_NAME = "ShortSkipConv2D"


class ShortSkipConv2D(Conv2D):
    """Fused ``Conv2D -> [BatchNormalization] -> ReLU -> Add(conv input)`` (Khodamoradi 2021, Listing 4.3).

    Built by :class:`hls4ml_skiptrim.hls4ml.passes.FuseShortSkip`; not meant to come out of a converter directly.
    Its attributes are transferred from the matched layers, so ``initialize`` is never re-run on them.
    """

    _expected_attributes = [
        Attribute("use_bn", value_type=bool, default=False),
        Attribute("skip_row", default=0),
        Attribute("skip_col", default=0),
        Attribute("fused_layers", value_type=list, default=[]),
        TypeAttribute("conv_out"),
        TypeAttribute("bn_out"),
        TypeAttribute("act_out"),
        WeightAttribute("bn_scale"),
        WeightAttribute("bn_bias"),
    ]

    def initialize(self):  # pragma: no cover - the fusion pass creates the node with initialize=False
        raise TypeError(
            f"{LAYER_NAME} '{self.name}' is created by the 'fuse_short_skip' optimizer pass from a matched "
            "Conv2D/BatchNormalization/ReLU/Add chain; it cannot be built from a converter layer dict"
        )


def precision_range(precision) -> tuple[Fraction, Fraction, Fraction]:
    """Exact ``(min, max, lsb)`` of an hls4ml fixed/integer precision (``ap_fixed<W,I>`` / ``ap_int<W>``).

    ``ap_fixed<W,I>`` signed covers ``[-2^(I-1), 2^(I-1) - 2^-(W-I)]``, unsigned ``[0, 2^I - 2^-(W-I)]``.
    Used by the overflow check of the skip add and by the tests (written once, here).
    """
    width = getattr(precision, "width", None)
    integer = getattr(precision, "integer", None)
    signed = getattr(precision, "signed", None)
    if width is None or integer is None or signed is None:
        raise TypeError(f"expected a fixed-point or integer precision type, got {precision!r}")
    lsb = Fraction(2) ** (integer - width)
    if signed:
        lo = -(Fraction(2) ** (integer - 1))
        hi = Fraction(2) ** (integer - 1) - lsb
    else:
        lo = Fraction(0)
        hi = Fraction(2) ** integer - lsb
    return lo, hi, lsb


def skip_add_range(skip_precision, act_precision) -> tuple[Fraction, Fraction]:
    """Exact range of ``relu_out + skip`` (ReLU output is clipped at 0 before the add)."""
    s_lo, s_hi, _ = precision_range(skip_precision)
    _, a_hi, _ = precision_range(act_precision)
    return s_lo, s_hi + max(a_hi, Fraction(0))


def add_can_overflow(skip_precision, act_precision, result_precision) -> bool:
    """True when ``relu_out + skip`` can leave the range of the Add result type (it then wraps/saturates)."""
    lo, hi = skip_add_range(skip_precision, act_precision)
    r_lo, r_hi, _ = precision_range(result_precision)
    return lo < r_lo or hi > r_hi


# finish a registration deferred while this module was half-imported (see plugin.register)
from hls4ml_skiptrim.hls4ml import plugin as _plugin  # noqa: E402

_plugin.resume()
