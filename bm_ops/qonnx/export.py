"""Export torch models with BM layers (and Brevitas quantised layers around them) to QONNX.

``to_qonnx(model, example_input, path)`` swaps every ``bm_ops.torch.BMConv2d`` / ``BMLinear`` for the duration
of the export with a module whose ``torch.autograd.Function`` has an ONNX ``symbolic`` emitting the
:mod:`bm_ops.qonnx.custom_op` nodes (``bm_ops::BMConv`` / ``bm_ops::BMMatMul``, weights as initializers, ``-inf``
kept), exports with Brevitas' QONNX manager (TorchScript exporter: Brevitas ``Quant`` nodes for quantisers,
standard ONNX ops for the rest), then runs qonnx's ``cleanup_model`` and saves. The returned graph executes
through ``qonnx.core.onnx_exec.execute_onnx`` and equals the torch model (float32 tolerance: the op's python
execution is the float64 reference :mod:`bm_ops.functional`).
"""

from __future__ import annotations

from hwreshape.extras import needs_torch  # noqa: F401  # isort: skip
from pathlib import Path

__all__ = ["to_qonnx", "execute_qonnx"]


def _fn_classes():
    import torch

    from bm_ops.functional import bm_conv2d, bm_linear

    class BMConvFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, v_pos, v_neg, bias, kernel, stride, padding):
            return bm_conv2d(x, v_pos, v_neg, bias, stride, padding)

        @staticmethod
        def symbolic(g, x, v_pos, v_neg, bias, kernel, stride, padding):
            ph, pw = padding
            ins = [x, v_pos, v_neg] + ([bias] if bias is not None else [])
            out = g.op(
                "bm_ops::BMConv",
                *ins,
                kernel_shape_i=list(kernel),
                strides_i=list(stride),
                pads_i=[ph, pw, ph, pw],
            )
            n, _, h, w = x.type().sizes()
            f = v_pos.type().sizes()[0]
            oh = (h + 2 * ph - kernel[0]) // stride[0] + 1
            ow = (w + 2 * pw - kernel[1]) // stride[1] + 1
            out.setType(x.type().with_sizes([n, f, oh, ow]))
            return out

    class BMMatMulFn(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, v_pos, v_neg, bias):
            return bm_linear(x, v_pos, v_neg, bias)

        @staticmethod
        def symbolic(g, x, v_pos, v_neg, bias):
            ins = [x, v_pos, v_neg] + ([bias] if bias is not None else [])
            out = g.op("bm_ops::BMMatMul", *ins)
            out.setType(x.type().with_sizes([x.type().sizes()[0], v_pos.type().sizes()[0]]))
            return out

    return BMConvFn, BMMatMulFn


class _Patched:
    """Context manager: route BM modules' forward through the exportable autograd functions."""

    def __init__(self, model):
        self.model = model
        self.saved = []

    def __enter__(self):
        from bm_ops.torch import BMConv2d, BMLinear

        conv_fn, mm_fn = _fn_classes()
        for _, m in self.model.named_modules():
            if isinstance(m, (BMConv2d, BMLinear)):
                if isinstance(m, BMConv2d):

                    def fwd(x, m=m):
                        k, s, p = tuple(m.kernel_size), tuple(m.stride), tuple(m.padding)
                        return conv_fn.apply(x, m.v_pos, m.v_neg, m.bias, k, s, p)

                else:

                    def fwd(x, m=m):
                        return mm_fn.apply(x, m.v_pos, m.v_neg, m.bias)

                m.forward = fwd
                self.saved.append(m)
        return self

    def __exit__(self, *exc):
        for m in self.saved:
            del m.forward
        return False


def _check_model(model):
    import torch

    from bm_ops.torch import BMConv2d, BMLinear

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"to_qonnx: model must be a torch.nn.Module, got {type(model).__name__}")
    n_bm = 0
    for name, m in model.named_modules():
        if isinstance(m, BMConv2d):
            n_bm += 1
            for pname in ("v_pos", "v_neg"):
                v = getattr(m, pname).detach()
                if torch.isnan(v).any() or (v == float("inf")).any():
                    raise ValueError(f"to_qonnx: layer '{name}' {pname} contains NaN or +inf")
        elif isinstance(m, BMLinear):
            n_bm += 1
    return n_bm


def to_qonnx(model, example_input, path, cleanup: bool = True):
    """Export ``model`` (torch, BM layers and/or Brevitas layers) to a QONNX file at ``path``.

    Returns the ``qonnx.core.modelwrapper.ModelWrapper`` of the written (cleaned-up) graph.
    """
    import torch
    from brevitas.export import export_qonnx
    from qonnx.core.modelwrapper import ModelWrapper

    import bm_ops.qonnx.custom_op  # noqa: F401  (registers the bm_ops domain)

    _check_model(model)
    if not isinstance(example_input, torch.Tensor):
        raise TypeError(f"to_qonnx: example_input must be a torch.Tensor, got {type(example_input).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        with _Patched(model), torch.no_grad():
            export_qonnx(
                model,
                args=example_input,
                export_path=str(path),
                dynamo=False,
                opset_version=13,
                custom_opsets={"bm_ops": 1},
            )
    finally:
        model.train(was_training)
    mw = ModelWrapper(str(path))
    if cleanup:
        from qonnx.util.cleanup import cleanup_model

        mw = cleanup_model(mw)
        mw.save(str(path))
    return mw


def execute_qonnx(model_or_path, x):
    """Run a QONNX graph with ``qonnx.core.onnx_exec.execute_onnx`` on one input array; returns the output array."""
    import numpy as np
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    import bm_ops.qonnx.custom_op  # noqa: F401

    mw = model_or_path if isinstance(model_or_path, ModelWrapper) else ModelWrapper(str(model_or_path))
    iname = mw.graph.input[0].name
    oname = mw.graph.output[0].name
    out = execute_onnx(mw, {iname: np.asarray(x, dtype=np.float32)})
    return out[oname]
