"""QONNX custom ops ``BMConv`` and ``BMMatMul`` in the ``bm_ops`` domain (qonnx 1.0 registry).

Limonova et al., *The BM Convolutional Layer* (``BMConv``) and the BM neuron ``y_BM`` (``BMMatMul``)
— without the activation ``sigma``, like ONNX ``Conv``/``MatMul``. ``execute_node`` *is* the reference
:func:`bm_ops.functional.bm_conv2d` / :func:`bm_ops.functional.bm_linear` (float64 math, float32 result), so a
graph executes through ``qonnx.core.onnx_exec.execute_onnx``; onnxruntime does not know the ops.

Node interface (both ops): inputs ``x, v_pos, v_neg[, bias]`` (``v_pos``/``v_neg`` may hold ``-inf`` = absent
tap). ``BMConv``: ``x`` NCHW, ``v_*`` ``(F, C, Kh, Kw)``, attributes ``kernel_shape`` (ints), ``strides`` (ints,
default 1), ``pads`` (ONNX order ``[top, left, bottom, right]``, zero padding = ``ln 0``), ``group`` and
``dilations`` accepted only at their defaults (clear error otherwise). ``BMMatMul``: ``x`` ``(N, in)``, ``v_*``
``(out, in)``.

Importing this module registers the ops: ``add_op_to_domain("bm_ops", ...)`` plus a domain alias
``bm_ops -> bm_ops.qonnx.custom_op`` so ``getCustomOp`` finds them by discovery as well.
"""

from __future__ import annotations

import numpy as np
import onnx.helper as helper
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp
from qonnx.custom_op.registry import add_domain_alias, add_op_to_domain

from bm_ops.functional import bm_conv2d, bm_linear

__all__ = ["BMConv", "BMMatMul", "DOMAIN"]

DOMAIN = "bm_ops"


def _inputs(node, context, n_min, where):
    names = [i for i in node.input if i]
    if len(names) < n_min or len(names) > 4:
        raise ValueError(
            f"{where} node '{node.name}': expected inputs x, v_pos, v_neg[, bias], got {list(node.input)}"
        )
    arrs = [np.asarray(context[n]) for n in names]
    return arrs + [None] * (4 - len(arrs))


class BMConv(CustomOp):
    """BM 2D convolution node (see module docstring)."""

    def get_nodeattr_types(self):
        return {
            "kernel_shape": ("ints", True, []),
            "strides": ("ints", False, [1, 1]),
            "pads": ("ints", False, [0, 0, 0, 0]),
            "dilations": ("ints", False, [1, 1]),
            "group": ("i", False, 1),
        }

    def _geometry(self):
        where = f"BMConv node '{self.onnx_node.name}'"
        k = list(self.get_nodeattr("kernel_shape"))
        s = list(self.get_nodeattr("strides"))
        p = list(self.get_nodeattr("pads"))
        d = list(self.get_nodeattr("dilations"))
        g = int(self.get_nodeattr("group"))
        if len(k) != 2 or len(s) != 2 or len(p) != 4:
            raise ValueError(
                f"{where}: kernel_shape/strides must have 2 values and pads 4, got {k}, {s}, {p}"
            )
        if g != 1:
            raise ValueError(f"{where}: group={g} is not supported (BM convolution has one group)")
        if d != [1, 1]:
            raise ValueError(f"{where}: dilations={d} are not supported")
        if min(s) < 1 or min(p) < 0:
            raise ValueError(f"{where}: invalid strides {s} or pads {p}")
        return k, s, p

    def make_shape_compatible_op(self, model):
        node = self.onnx_node
        k, s, p = self._geometry()
        return helper.make_node(
            "Conv", [node.input[0], node.input[1]], [node.output[0]], kernel_shape=k, strides=s, pads=p
        )

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])

    def execute_node(self, context, graph):
        node = self.onnx_node
        k, s, p = self._geometry()
        x, vp, vn, b = _inputs(node, context, 3, "BMConv")
        if tuple(vp.shape[2:]) != tuple(k):
            raise ValueError(f"BMConv node '{node.name}': kernel_shape {k} != weight shape {vp.shape}")
        top, left, bottom, right = p
        if top != bottom or left != right:  # zero padding == ln 0 taps: pad explicitly, then no padding
            x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
            pad = 0
        else:
            pad = (top, left)
        y = bm_conv2d(x.astype(np.float64), vp, vn, b, stride=(s[0], s[1]), padding=pad)
        context[node.output[0]] = y.astype(np.float32)

    def verify_node(self):
        info = []
        try:
            self._geometry()
            info.append("BMConv attributes OK")
        except ValueError as e:
            info.append(str(e))
        return info


class BMMatMul(CustomOp):
    """BM dense layer node: ``x (N, in)``, ``v_pos``/``v_neg`` ``(out, in)``."""

    def get_nodeattr_types(self):
        return {}

    def make_shape_compatible_op(self, model):
        node = self.onnx_node
        # Gemm(x, v_pos^T): (N, in) x (out, in)^T -> (N, out), without needing x's shape yet
        return helper.make_node("Gemm", [node.input[0], node.input[1]], [node.output[0]], transB=1)

    def infer_node_datatype(self, model):
        model.set_tensor_datatype(self.onnx_node.output[0], DataType["FLOAT32"])

    def execute_node(self, context, graph):
        node = self.onnx_node
        x, vp, vn, b = _inputs(node, context, 3, "BMMatMul")
        context[node.output[0]] = bm_linear(x.astype(np.float64), vp, vn, b).astype(np.float32)

    def verify_node(self):
        return ["BMMatMul has no attributes"]


def register() -> None:
    """(Re-)register the ops in the ``bm_ops`` domain; idempotent, done at import."""
    add_domain_alias(DOMAIN, __name__)
    add_op_to_domain(DOMAIN, BMConv)
    add_op_to_domain(DOMAIN, BMMatMul)


register()
