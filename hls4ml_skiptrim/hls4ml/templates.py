"""Config and function-call templates of :class:`~hls4ml_skiptrim.hls4ml.layers.ShortSkipConv2D` (Vivado and Vitis).

The convolution part reuses hls4ml's own ``Conv2DConfigTemplate`` (same ``config{index}`` and
``config{index}_mult`` structs as an unfused Conv2D, hence the same dense kernel, strategy, reuse factor and
im2col buffer).  ``config{index}_ssk`` adds the post-op types of the unfused chain and the centre-tap
position (Khodamoradi 2021, ch. 4, Listing 4.3).  The C++ lives in ``nnet_utils/nnet_shortskip.h``.
"""

from __future__ import annotations

from hls4ml.backends.backend import get_backend
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.backends.vivado.passes.convolution_templates import (
    Conv2DConfigTemplate,
    conv2d_config_template,
    conv2d_include_list,
    conv_mult_config_template,
)

from hls4ml_skiptrim.hls4ml.layers import ShortSkipConv2D

HEADER = "nnet_shortskip.h"

# Member typedefs name the global precision typedefs with `::`: hls4ml names precisions after layers, so a
# BatchNormalization layer called "bn" has a global `bn_bias_t`, and `typedef bn_bias_t bn_bias_t;` inside the
# struct would be ill-formed ("changes meaning"); the qualified name is not an unqualified class-scope use.
shortskip_config_template = """struct config{index}_ssk : nnet::shortskip_config {{
    typedef config{index} conv_config;
    typedef ::{conv_out_t} conv_out_t;
    typedef ::{bn_out_t} bn_out_t;
    typedef ::{act_out_t} act_out_t;
    typedef ::{scale_t} scale_t;
    typedef ::{bn_bias_t} bn_bias_t;
    static const bool use_bn = {use_bn};
    static const unsigned n_filt = {n_filt};
    static const unsigned n_scale_bias = {n_scale_bias};
    static const unsigned skip_row = {skip_row};
    static const unsigned skip_col = {skip_col};
    static const bool vitis_style = {vitis_style};
    template<class x_T, class y_T>
    using bn_product = nnet::product::{bn_product}<x_T, y_T>;
}};\n"""

shortskip_function_template = "nnet::shortskip_conv_2d_cl<{input_t}, {output_t}, config{index}_ssk>({input}, {output}, {w}, {b}{bn_args});"

shortskip_include_list = [f"nnet_utils/{HEADER}", *conv2d_include_list]


class ShortSkipConv2DConfigTemplate(Conv2DConfigTemplate):
    """``config{index}_mult`` + ``config{index}`` (hls4ml's conv2d template) + ``config{index}_ssk``."""

    def __init__(self):
        LayerConfigTemplate.__init__(self, ShortSkipConv2D)
        self.template = conv2d_config_template
        self.mult_template = conv_mult_config_template

    def format(self, node):
        conv_part = super().format(node)
        use_bn = bool(node.get_attr("use_bn"))
        conv_out_t = node.get_attr("conv_out_t")
        params = {
            "index": node.index,
            "conv_out_t": conv_out_t.name,
            "bn_out_t": node.get_attr("bn_out_t").name,
            "act_out_t": node.get_attr("act_out_t").name,
            "use_bn": "true" if use_bn else "false",
            "n_filt": node.get_attr("n_filt"),
            "n_scale_bias": node.get_attr("n_filt") if use_bn else 1,
            "skip_row": node.get_attr("skip_row"),
            "skip_col": node.get_attr("skip_col"),
            # Vitis: unconditional pipeline pragmas in per-strategy loops (hls4ml's own templates/vitis do this)
            "vitis_style": "true" if node.model.config.backend.name == "Vitis" else "false",
        }
        if use_bn:
            scale = node.get_weights("bn_scale")
            params["scale_t"] = scale.type.name
            params["bn_bias_t"] = node.get_weights("bn_bias").type.name
            params["bn_product"] = get_backend("vivado").product_type(
                conv_out_t.precision, scale.type.precision
            )
        else:
            params["scale_t"] = conv_out_t.name
            params["bn_bias_t"] = conv_out_t.name
            params["bn_product"] = "mult"
        return conv_part + "\n" + shortskip_config_template.format(**params)


class ShortSkipConv2DFunctionTemplate(FunctionCallTemplate):
    def __init__(self):
        super().__init__(ShortSkipConv2D, include_header=shortskip_include_list)
        self.template = shortskip_function_template

    def format(self, node):
        if node.get_attr("data_format", "channels_last") != "channels_last":
            raise ValueError(f"{node.name}: ShortSkipConv2D supports channels_last only")
        params = self._default_function_params(node)
        params["w"] = node.get_weights("weight").name
        params["b"] = node.get_weights("bias").name
        if node.get_attr("use_bn"):
            params["bn_args"] = f", {node.get_weights('bn_scale').name}, {node.get_weights('bn_bias').name}"
        else:
            params["bn_args"] = ""
        return self.template.format(**params)


# finish a registration deferred while this module was half-imported (see plugin.register)
from hls4ml_skiptrim.hls4ml import plugin as _plugin  # noqa: E402

_plugin.resume()
