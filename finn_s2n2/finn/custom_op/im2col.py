"""qonnx' ``Im2Col`` executed frame by frame: the compat shim that lets plain ``execute_onnx`` run S2N2 conv
graphs on ``N x numTicks`` frames.

The cause.  FINN's ``ConvolutionInputGenerator`` (and its RTL specialisation in FINN's "cppsim" mode) executes
through qonnx' ``Im2Col``.  qonnx 1.0.0's ``Im2Col.execute_node`` is correct for one image only: its column
matrix is built as ``(N, C*kh*kw, OH*OW)``, transposed to ``(C*kh*kw, OH*OW, N)`` and flattened, but then
reshaped as ``(N, C, kh, kw, OH, OW)`` — for ``N > 1`` the batch index ends up interleaved with the columns,
so every output window mixes frames.  FINN graphs carry one image, so FINN never meets it; an S2N2 sample
is ``numTicks`` frames on axis 0 (one frame = one tick), so every S2N2 conv graph does, even at one sample.

The shim.  :class:`Im2Col` is a subclass registered under the same name in the same qonnx domain
(``qonnx.custom_op.general``) when ``finn_s2n2`` is imported.  For one image it *is* qonnx' execution; for
``N > 1`` images it runs qonnx' own execution once per image and stacks the results, so the arithmetic stays
qonnx' (no second im2col).  Attributes, shape inference and every other method are qonnx'.  Nothing under
site-packages is modified; code that does not import ``finn_s2n2`` keeps qonnx' behaviour.
"""

from __future__ import annotations

import numpy as np
from qonnx.custom_op.general.im2col import Im2Col as QonnxIm2Col

#: the qonnx domain the shim is registered in (FINN's ConvolutionInputGenerator looks Im2Col up there)
IM2COL_DOMAIN = "qonnx.custom_op.general"


class Im2Col(QonnxIm2Col):
    """qonnx' ``Im2Col``, executed once per image of axis 0 (see the module docstring)."""

    def execute_node(self, context, graph):
        node = self.onnx_node
        x = np.asarray(context[node.input[0]])
        if x.ndim != 4 or x.shape[0] <= 1:
            return super().execute_node(context, graph)
        outs = []
        for f in range(x.shape[0]):
            sub = {node.input[0]: x[f : f + 1]}
            super().execute_node(sub, graph)
            outs.append(np.asarray(sub[node.output[0]]))
        context[node.output[0]] = np.concatenate(outs, axis=0)
