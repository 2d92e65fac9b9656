"""hls4ml IR layer ``BMConv2D``: a BM convolution quantised by :mod:`bm_ops.fixedpoint`.

Limonova et al., *The BM Convolutional Layer* (``J = sum p^a p^b exp(ln I^a (.) v^b) + b``).
The float log-domain weights ``v_pos_data``/``v_neg_data`` ``(F, C, Kh, Kw)`` and ``bias_data`` given by a
frontend handler are converted once, by :meth:`BMConv2D.quantize` (the ``bm_quantize`` pass, which runs right
after hls4ml's precision inference has fixed the input type) with :func:`bm_ops.fixedpoint.quantize_bm_layer`; the resulting integer arrays (weights, bias, log/exp tables) become hls4ml weight variables,
so the C++ (``nnet_bm_conv.h``) uses exactly the numbers the Python reference uses.

Layer configuration keys (``hls_config['LayerName'][name]``): ``LogTableBits``, ``LogFracBits``,
``ExpTableBits``, ``ExpFracBits``, ``AccumFracBits``, ``WeightBits`` (see :class:`BMFixedConfig`), and hls4ml's
``ReuseFactor`` (clocks per output pixel for the add/max of its taps x filters; validated as for hls4ml's
``Conv2D``, see :mod:`bm_ops.hls4ml.config`). A ``result`` precision of ``auto`` becomes the exact accumulator type.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from hls4ml.model.attributes import Attribute, ConfigurableAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.optimizer import OptimizerPass
from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType, NamedType

from bm_ops.fixedpoint import BMFixedConfig, FixedType, quantize_bm_layer
from bm_ops.hls4ml.config import bias_bits

__all__ = ["BMConv2D", "BMQuantize", "BMReuseFactor", "BMFixedState"]

_GEOMETRY = (
    "in_height",
    "in_width",
    "out_height",
    "out_width",
    "n_chan",
    "n_filt",
    "filt_height",
    "filt_width",
    "stride_height",
    "stride_width",
    "pad_top",
    "pad_bottom",
    "pad_left",
    "pad_right",
)

_DEFAULTS = BMFixedConfig()


@dataclasses.dataclass(frozen=True)
class BMFixedState:
    """What the C++ config needs from :class:`bm_ops.fixedpoint.BMFixedLayer` (the integer arrays are weights)."""

    cfg: BMFixedConfig
    input_t: FixedType
    result_t: FixedType
    weight_bits: int
    sum_bits: int
    accum_bits: int

    @property
    def sentinel(self) -> int:
        return -(1 << (self.weight_bits - 1))


class BMQuantize(OptimizerPass):
    """Quantise each :class:`BMConv2D` once its input precision is known (placed before ``infer_precision_types``
    in hls4ml's ``convert`` flow: hls4ml restarts the flow after each inferred result type, so this pass sees the
    BM layer as soon as its input type is fixed, before the generic inference would default its result)."""

    def match(self, node):
        if not isinstance(node, BMConv2D) or node.is_quantized():
            return False
        inp = node.get_input_variable()
        return inp is not None and type(inp.type.precision).__name__ != "UnspecifiedPrecisionType"

    def transform(self, model, node):
        node.quantize()
        return True


class BMReuseFactor(OptimizerPass):
    """Validate the ReuseFactor of each :class:`BMConv2D` (appended to ``vivado:init_layers``, the flow Vivado
    and Vitis share, so it runs after hls4ml's ``init_base_layer`` has read ``ReuseFactor`` from the config)."""

    def match(self, node):
        return isinstance(node, BMConv2D)

    def transform(self, model, node):
        node.validate_reuse_factor()
        return False


class BMConv2D(Layer):
    """BM 2D convolution (zero padding, no groups/dilation); computes channels_last in C++."""

    _expected_attributes = [Attribute(a) for a in _GEOMETRY] + [
        ConfigurableAttribute("log_table_bits", default=_DEFAULTS.log_table_bits),
        ConfigurableAttribute("log_frac_bits", default=_DEFAULTS.log_frac_bits),
        ConfigurableAttribute("exp_table_bits", default=_DEFAULTS.exp_table_bits),
        ConfigurableAttribute("exp_frac_bits", default=_DEFAULTS.exp_frac_bits),
        ConfigurableAttribute("accum_frac_bits", default=_DEFAULTS.accum_frac_bits),
        ConfigurableAttribute("reuse_factor", default=1),
    ]

    def _where(self) -> str:
        return f"BMConv2D layer '{self.name}'"

    def fixed_config(self) -> BMFixedConfig:
        wb = self.get_attr("weight_bits")
        return BMFixedConfig(
            log_table_bits=int(self.get_attr("log_table_bits", _DEFAULTS.log_table_bits)),
            log_frac_bits=int(self.get_attr("log_frac_bits", _DEFAULTS.log_frac_bits)),
            exp_table_bits=int(self.get_attr("exp_table_bits", _DEFAULTS.exp_table_bits)),
            exp_frac_bits=int(self.get_attr("exp_frac_bits", _DEFAULTS.exp_frac_bits)),
            accum_frac_bits=int(self.get_attr("accum_frac_bits", _DEFAULTS.accum_frac_bits)),
            weight_bits=None if wb is None else int(wb),
        )

    def initialize(self):
        where = self._where()
        backend = self.model.config.backend.name
        if backend not in ("Vivado", "Vitis"):
            raise ValueError(
                f"{where}: the BM hls4ml layer has C++ for the Vivado and Vitis backends only, not {backend!r}; "
                "convert with backend='Vivado' or backend='Vitis'"
            )
        for a in _GEOMETRY:
            if self.get_attr(a) is None:
                raise ValueError(f"{where}: missing attribute '{a}'")
        if self.get_attr("data_format", "channels_last") == "channels_last":
            shape = [self.attributes["out_height"], self.attributes["out_width"], self.attributes["n_filt"]]
        else:
            shape = [self.attributes["n_filt"], self.attributes["out_height"], self.attributes["out_width"]]
        self.add_output_variable(shape)

    def validate_reuse_factor(self) -> None:
        """ReuseFactor as hls4ml validates a ``Conv2D``'s: an invalid value is replaced by the closest valid one
        (hls4ml's ``set_closest_reuse_factor``, which prints a warning naming the layer); a non-positive or
        non-integer value raises. The valid set is :func:`bm_ops.hls4ml.config.valid_reuse_factors`."""
        rf = self.get_attr("reuse_factor", 1)
        if isinstance(rf, bool) or not isinstance(rf, (int, np.integer)) or int(rf) < 1:
            raise ValueError(f"{self._where()}: ReuseFactor must be a positive int, got {rf!r}")
        self.set_attr("reuse_factor", int(rf))
        n_in = (
            int(self.get_attr("n_chan"))
            * int(self.get_attr("filt_height"))
            * int(self.get_attr("filt_width"))
        )
        self.model.config.backend.set_closest_reuse_factor(self, n_in, int(self.get_attr("n_filt")))

    def is_quantized(self) -> bool:
        return self.get_attr("bm_state") is not None

    def quantize(self) -> None:
        """Quantise the float weights against the (now known) input precision (``bm_quantize`` pass).

        Runs after hls4ml's precision inference has fixed the input type, so every config granularity and
        ``auto`` precision works; an ``auto`` result becomes the exact accumulator type.
        """
        where = self._where()
        input_t = FixedType.from_hls(self.get_input_variable().type.precision, where=f"{where} input")
        out_var = self.get_output_variable()
        auto_result = type(out_var.type.precision).__name__ == "UnspecifiedPrecisionType"
        provisional = FixedType(32, 16) if auto_result else FixedType.from_hls(out_var.type.precision, where)
        q = quantize_bm_layer(
            self.get_attr("v_pos_data"),
            self.get_attr("v_neg_data"),
            self.get_attr("bias_data"),
            input_t,
            provisional,
            self.fixed_config(),
            where=where,
        )
        accum_prec = FixedPrecisionType(q.accum_bits, q.accum_bits - q.cfg.accum_frac_bits, True)
        if auto_result:
            out_var.type.precision = accum_prec
            q.result_t = q.accum_t
        # plain JSON-able state (hls4ml's serialize_model writes attributes as JSON)
        self.set_attr(
            "bm_state",
            {
                "input_t": dataclasses.asdict(q.input_t),
                "result_t": dataclasses.asdict(q.result_t),
                "cfg": dataclasses.asdict(q.cfg),
                "weight_bits": int(q.weight_bits),
                "sum_bits": int(q.sum_bits),
                "accum_bits": int(q.accum_bits),
            },
        )
        self.set_attr("weight_bits", q.weight_bits)
        self.set_attr("sum_bits", q.sum_bits)
        self.set_attr("accum_bits", q.accum_bits)

        self.add_weights_variable(
            name="v_pos",
            var_name="vp{index}",
            precision=IntegerPrecisionType(q.weight_bits, True),
            data=q.v_pos,
        )
        self.add_weights_variable(
            name="v_neg",
            var_name="vn{index}",
            precision=IntegerPrecisionType(q.weight_bits, True),
            data=q.v_neg,
        )
        self.add_weights_variable(
            name="bias",
            var_name="b{index}",
            precision=IntegerPrecisionType(bias_bits(q.bias), True),
            data=q.bias,
        )
        self.add_weights_variable(
            name="log_table",
            var_name="logt{index}",
            precision=IntegerPrecisionType(q.cfg.log_frac_bits + 1, False),
            data=q.log_t,
        )
        self.add_weights_variable(
            name="exp_table",
            var_name="expt{index}",
            precision=IntegerPrecisionType(q.cfg.exp_frac_bits + 2, False),
            data=q.exp_t,
        )
        self.set_attr("accum_t", NamedType(f"layer{self.index}_bm_accum_t", accum_prec))

    def fixed_state(self) -> BMFixedState:
        """The formats the weights were quantised for (from the serialisable ``bm_state`` attribute)."""
        st = self.get_attr("bm_state")
        if st is None:
            raise ValueError(
                f"{self._where()}: not quantised -- its input precision was never determined (give the layer "
                "feeding it an explicit fixed-point precision)"
            )
        return BMFixedState(
            cfg=BMFixedConfig(**st["cfg"]),
            input_t=FixedType(**st["input_t"]),
            result_t=FixedType(**st["result_t"]),
            weight_bits=int(st["weight_bits"]),
            sum_bits=int(st["sum_bits"]),
            accum_bits=int(st["accum_bits"]),
        )

    def check_unchanged(self):
        """Raise if an optimizer pass changed the input/result precision after the weights were quantised."""
        q = self.fixed_state()
        where = self._where()
        now_in = FixedType.from_hls(self.get_input_variable().type.precision, where=f"{where} input")
        if now_in != q.input_t:
            raise ValueError(
                f"{where}: input precision changed from {q.input_t.cpp()} to {now_in.cpp()} after conversion; "
                "set the precision of the layer feeding the BM layer explicitly"
            )
        now_res = FixedType.from_hls(self.get_output_variable().type.precision, where=f"{where} result")
        if now_res != q.result_t:
            raise ValueError(
                f"{where}: result precision changed from {q.result_t.cpp()} to {now_res.cpp()} after conversion"
            )
        if self.get_attr("data_format", "channels_last") != "channels_last":
            raise ValueError(
                f"{where}: the C++ layer is channels_last only; convert PyTorch models with "
                "channels_last_conversion='full' (or 'internal')"
            )
        return q


# finish a registration deferred while this module was half-imported (see bm_ops.hls4ml.register)
from bm_ops.hls4ml import resume as _resume  # noqa: E402

_resume()
