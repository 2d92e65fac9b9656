"""Build an hls4ml model of a single BM conv layer straight from its weights (no Keras/torch model needed).

Used by the equivalence tests and the demo: ``InputLayer -> BMConv2D`` through hls4ml's own
``ModelGraph.from_layer_list`` (the same door the Keras 3 converter uses), so the generated project, the
optimizer flows, the templates and ``compile()``/``predict()`` are exactly those of a converted model.
"""

from __future__ import annotations

from bm_ops.fixedpoint import BMFixedConfig, FixedType

__all__ = ["bm_layer_model"]


def bm_layer_model(
    v_pos,
    v_neg,
    bias,
    in_hwc: tuple[int, int, int],
    input_t: FixedType,
    result_t: FixedType,
    stride=(1, 1),
    pads=(0, 0, 0, 0),
    cfg: BMFixedConfig | None = None,
    io_type: str = "io_parallel",
    backend: str = "Vivado",
    output_dir: str = "bm_hls_prj",
    name: str = "bm0",
    reuse_factor: int = 1,
):
    """hls4ml ``ModelGraph`` of one BM conv layer (channels_last input ``in_hwc``, pads = top, bottom, left, right).

    ``reuse_factor`` is the layer's hls4ml ``ReuseFactor`` (see :mod:`bm_ops.hls4ml.config`).
    """
    from hls4ml.converters import create_config
    from hls4ml.model import ModelGraph

    from bm_ops.hls4ml import register
    from bm_ops.hls4ml.frontends import layer_dict_from_arrays

    register()
    if io_type not in ("io_parallel", "io_stream"):
        raise ValueError(f"bm_layer_model: io_type must be 'io_parallel' or 'io_stream', got {io_type!r}")
    cfg = cfg or BMFixedConfig()
    layer = layer_dict_from_arrays(name, v_pos, v_neg, bias, in_hwc, stride, pads)
    layer["inputs"] = ["x_in"]
    layer_cfg = {
        "Precision": {"result": _prec(result_t)},
        "LogTableBits": cfg.log_table_bits,
        "LogFracBits": cfg.log_frac_bits,
        "ExpTableBits": cfg.exp_table_bits,
        "ExpFracBits": cfg.exp_frac_bits,
        "AccumFracBits": cfg.accum_frac_bits,
        "ReuseFactor": reuse_factor,
    }
    if cfg.weight_bits is not None:
        layer_cfg["WeightBits"] = cfg.weight_bits
    config = create_config(output_dir=str(output_dir), project_name="bmprj", backend=backend, io_type=io_type)
    config["HLSConfig"] = {
        "Model": {"Precision": _prec(input_t), "ReuseFactor": 1, "Strategy": "Latency", "BitExact": False},
        "LayerName": {"x_in": {"Precision": {"result": _prec(input_t)}}, name: layer_cfg},
    }
    layers = [{"name": "x_in", "class_name": "InputLayer", "input_shape": list(in_hwc)}, layer]
    return ModelGraph.from_layer_list(config, layers, ["x_in"], [name])


def _prec(t: FixedType) -> str:
    base = "fixed" if t.signed else "ufixed"
    if t.rounding == "TRN" and t.saturation == "WRAP":
        return f"{base}<{t.width},{t.integer}>"
    return f"{base}<{t.width},{t.integer},{t.rounding},{t.saturation}>"
