"""``LIF``: the leaky integrate-and-fire neuron as a QONNX custom op (domain ``finn_s2n2``).

Khodamoradi 2021, ch. 2, Eq 2.3 (membrane with decay d and reset), Eq 2.4 (threshold), §2.2.3 (last-tick reset of
the membrane, per-label output counters), §2.2.2 (fixed per-layer delays).  Arithmetic:
:mod:`finn_s2n2.numerics` (the single definition used by every execution path).

Graph contract (read this if you export graphs with this node)
--------------------------------------------------------------
* ``domain="finn_s2n2"``, ``op_type="LIF"``, one input, one output.
* Input: the integer synaptic current ``I_t`` of Eq 2.2, i.e. the output of a quantized ``MatMul``
  (``(frames, C)``) or ``Conv`` (``(frames, C, H, W)``) whose inputs are binary spikes and whose weights are
  integers (float container, integer values).  The node is element-wise across all non-time axes.
* Time layout (attribute ``tickAxis``):
  ``0`` (default, FINN streaming order) — axis 0 holds ``N * numTicks`` frames, sample-major: frame ``f`` is
  tick ``f % numTicks`` of sample ``f // numTicks``; ``1`` — explicit ``(N, numTicks, ...)``.
* Output: binary spikes of the input shape (``outputMode="spikes"``, FINN DataType BINARY), or spike counts
  per neuron with the time axis removed (``outputMode="counts"``, shape ``(N, ...)``, UINT with
  ``count_bits(numTicks)`` bits) — the last layer's per-label counters of Fig 2.8.
* Attributes (see :data:`finn_s2n2.finn.custom_op.lif_attrs.LIF_NODEATTRS`): ``decay_shift`` k (d = 1 - 2^-k,
  required unless the optional float ``decay`` = 1 - 2^-k is given; any other ``decay`` is rejected),
  ``threshold`` (integer, in the membrane range), ``numTicks`` (required), ``accDataType``
  (membrane type, signed ``INT2..INT32``, default ``INT16``), ``reset`` (``"zero"`` = Eq 2.3 /
  ``"subtract"``), ``overflow`` (``"saturate"`` / ``"wrap"``), ``outputMode``, ``axonalDelay``,
  ``synapticDelay``, ``outputDelay`` (ticks), ``tickAxis``.
* Every sample starts with a zero membrane (the membrane is reset at the last tick of each sample).

``InferLIFLayers`` (:mod:`finn_s2n2.finn.transformation`) turns ``MatMul``/``Conv`` + ``LIF`` into ``LIF_MVAU``.
"""

from __future__ import annotations

import numpy as np
from qonnx.core.datatype import DataType
from qonnx.custom_op.base import CustomOp

from finn_s2n2 import numerics
from finn_s2n2.finn.custom_op.lif_attrs import LIF_NODEATTRS, apply_delay, validate_lif_attrs

#: the QONNX domain of the ``LIF`` node
LIF_DOMAIN = "finn_s2n2"


class LIF(CustomOp):
    """Element-wise LIF neuron over the ticks of each sample (python execution = specification)."""

    def get_nodeattr_types(self):
        return dict(LIF_NODEATTRS)

    def params(self):
        """Validated parameters (raises ValueError naming this node and the bad attribute)."""
        return validate_lif_attrs(self)

    def _out_shape(self, ishape):
        p = self.params()
        ishape = tuple(int(s) for s in ishape)
        if p.output_mode == "spikes":
            return ishape
        if p.tick_axis == 0:
            if ishape[0] % p.num_ticks:
                raise ValueError(
                    f"LIF node '{self.onnx_node.name}': axis 0 ({ishape[0]}) is not a multiple "
                    f"of numTicks={p.num_ticks}"
                )
            return (ishape[0] // p.num_ticks, *ishape[1:])
        return (ishape[0], *ishape[2:])

    def make_shape_compatible_op(self, model):
        from onnx import helper

        node = self.onnx_node
        if self.params().output_mode == "spikes":
            # element-wise: the output has the input's shape, known or not yet
            return helper.make_node("Identity", [node.input[0]], [node.output[0]])
        ishape = model.get_tensor_shape(node.input[0])
        if ishape is None:
            # qonnx hides custom ops one by one; the ones before this node are hidden already, so ONNX shape
            # inference on the current graph yields this node's input shape
            import copy

            import onnx.shape_inference as si
            from qonnx.core.modelwrapper import ModelWrapper

            proto = copy.deepcopy(model.model)
            known = {o.domain for o in proto.opset_import}
            for dom in {n.domain for n in proto.graph.node} - known:
                proto.opset_import.append(helper.make_opsetid(dom, 1))
            ishape = ModelWrapper(si.infer_shapes(proto)).get_tensor_shape(node.input[0])
            if ishape is None:
                raise ValueError(f"LIF node '{node.name}': cannot infer the shape of input '{node.input[0]}'")
        return self.make_const_shape_op(self._out_shape(ishape))

    def infer_node_datatype(self, model):
        p = self.params()
        odt = DataType["BINARY"] if p.output_mode == "spikes" else DataType[f"UINT{p.count_bits}"]
        model.set_tensor_datatype(self.onnx_node.output[0], odt)

    def execute_node(self, context, graph):
        node = self.onnx_node
        p = self.params()
        cur = np.asarray(context[node.input[0]])
        if not np.all(cur == np.round(cur)):
            raise ValueError(
                f"LIF node '{node.name}': input current must hold integers (Eq 2.2 sums of integer "
                f"weights); scale weights/threshold to integers before export"
            )
        shape = cur.shape
        if p.tick_axis == 0:
            if shape[0] % p.num_ticks:
                raise ValueError(
                    f"LIF node '{node.name}': axis 0 ({shape[0]}) is not a multiple of numTicks={p.num_ticks}"
                )
            c3 = cur.reshape(shape[0] // p.num_ticks, p.num_ticks, -1)
        else:
            if cur.ndim < 2 or shape[1] != p.num_ticks:
                raise ValueError(
                    f"LIF node '{node.name}': axis 1 of {shape} must have numTicks={p.num_ticks}"
                )
            c3 = cur.reshape(shape[0], p.num_ticks, -1)
        spikes = numerics.lif_sequence(
            c3.astype(np.int64),
            decay_shift=p.decay_shift,
            threshold=p.threshold,
            acc_bits=p.acc_bits,
            overflow_mode=p.overflow,
            reset_mode=p.reset,
        )
        spikes = apply_delay(spikes, p.delay, tick_axis=1)
        if p.output_mode == "counts":
            out = spikes.sum(axis=1).reshape(self._out_shape(shape))
        else:
            out = spikes.reshape(shape)
        context[node.output[0]] = out.astype(np.float32)

    def verify_node(self):
        try:
            self.params()
            return ["LIF attributes valid"]
        except (ValueError, TypeError) as e:
            return [str(e)]
