"""hls4ml config and function-call templates of the ``BMConv2D`` layer (Vivado and Vitis backends).

The config struct carries the geometry, the input format and the approximation parameters of
:mod:`bm_ops.fixedpoint`; the function call passes the integer weight arrays and the log/exp tables.
"""

from __future__ import annotations

from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate

from bm_ops.hls4ml.config import STRUCT_KEYS, config_struct
from bm_ops.hls4ml.layer import BMConv2D

__all__ = ["BMConv2DConfigTemplate", "BMConv2DFunctionTemplate", "INCLUDE"]

INCLUDE = ["nnet_utils/nnet_bm_conv.h"]

bm_conv2d_function_template = "nnet::bm_conv_2d_cl<{input_t}, {output_t}, {config}>({input}, {output}, {vp}, {vn}, {b}, {logt}, {expt});"


class BMConv2DConfigTemplate(LayerConfigTemplate):
    def __init__(self):
        super().__init__(BMConv2D)

    def format(self, node):
        q = node.check_unchanged()
        if node.model.config.get_config_value("IOType") == "io_stream":
            inp = node.get_input_variable()
            if int(inp.shape[-1]) != int(node.get_attr("n_chan")):
                raise ValueError(
                    f"BMConv2D layer '{node.name}': io_stream input must pack all {node.get_attr('n_chan')} "
                    f"channels per word, got shape {inp.shape}"
                )
        types = {
            "weight_t": node.get_weights("v_pos").type.name,
            "bias_t": node.get_weights("bias").type.name,
            "log_table_t": node.get_weights("log_table").type.name,
            "exp_table_t": node.get_weights("exp_table").type.name,
            "accum_t": node.get_attr("accum_t").name,
        }
        return config_struct(
            f"config{node.index}",
            {k: node.get_attr(k) for k in STRUCT_KEYS},
            q.input_t,
            q.cfg,
            q.weight_bits,
            q.sum_bits,
            q.accum_bits,
            node.get_attr("reuse_factor", 1),
            types,
            where=f"BMConv2D layer '{node.name}'",
        )


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
