"""hls4ml config and function-call templates of the ``BMConv2D`` layer (Vivado and Vitis backends).

The config struct carries the geometry, the input format and the approximation parameters of
:mod:`bm_ops.fixedpoint`; the function call passes the integer weight arrays and the log/exp tables.
"""

from __future__ import annotations

from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate

from bm_ops.fixedpoint import log_bits
from bm_ops.hls4ml.layer import BMConv2D

__all__ = ["BMConv2DConfigTemplate", "BMConv2DFunctionTemplate", "INCLUDE"]

INCLUDE = ["nnet_utils/nnet_bm_conv.h"]

bm_conv2d_config_template = """struct config{index} : nnet::bm_conv2d_config {{
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
    static const unsigned accum_bits = {accum_bits};
    static const long long weight_sentinel = {weight_sentinel}LL;
    static const unsigned reuse_factor = {reuse};
    static const unsigned log_bits = {log_bits};
    static const unsigned sum_bits = {sum_bits};
    typedef {weight_type} weight_t;
    typedef {bias_type} bias_t;
    typedef {log_table_type} log_table_t;
    typedef {exp_table_type} exp_table_t;
    typedef {accum_t.name} accum_t;
}};\n"""

bm_conv2d_function_template = "nnet::bm_conv_2d_cl<{input_t}, {output_t}, {config}>({input}, {output}, {vp}, {vn}, {b}, {logt}, {expt});"


class BMConv2DConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(BMConv2D)
        self.template = bm_conv2d_config_template

    def format(self, node):
        q = node.check_unchanged()
        params = self._default_config_params(node)
        if params.get("reuse") is None:
            params["reuse"] = 1
        params["in_bits"] = q.input_t.width
        params["in_signed"] = "true" if q.input_t.signed else "false"
        params["in_frac"] = q.input_t.frac
        c = q.cfg
        params.update(
            log_table_bits=c.log_table_bits,
            log_frac_bits=c.log_frac_bits,
            exp_table_bits=c.exp_table_bits,
            exp_frac_bits=c.exp_frac_bits,
            accum_frac_bits=c.accum_frac_bits,
            accum_bits=q.accum_bits,
            weight_sentinel=q.sentinel,
            log_bits=log_bits(q.input_t, c),
            sum_bits=q.sum_bits,
        )
        params["weight_type"] = node.get_weights("v_pos").type.name
        params["bias_type"] = node.get_weights("bias").type.name
        params["log_table_type"] = node.get_weights("log_table").type.name
        params["exp_table_type"] = node.get_weights("exp_table").type.name
        if node.model.config.get_config_value("IOType") == "io_stream":
            inp = node.get_input_variable()
            if int(inp.shape[-1]) != int(node.get_attr("n_chan")):
                raise ValueError(
                    f"BMConv2D layer '{node.name}': io_stream input must pack all {node.get_attr('n_chan')} "
                    f"channels per word, got shape {inp.shape}"
                )
        return self.template.format(**params)


class BMConv2DFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(BMConv2D, include_header=INCLUDE)
        self.template = bm_conv2d_function_template

    def format(self, node):
        params = self._default_function_params(node)
        params["vp"] = node.get_weights("v_pos").name
        params["vn"] = node.get_weights("v_neg").name
        params["b"] = node.get_weights("bias").name
        params["logt"] = node.get_weights("log_table").name
        params["expt"] = node.get_weights("exp_table").name
        return self.template.format(**params)


# finish a registration deferred while this module was half-imported (see bm_ops.hls4ml.register)
from bm_ops.hls4ml import resume as _resume  # noqa: E402

_resume()
