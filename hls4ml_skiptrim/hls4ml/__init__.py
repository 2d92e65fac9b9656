"""The hls4ml side of SkipTrim: the fused Conv+BN+ReLU+ShortSkip layer (IR layer, optimizer pass, templates,
C++ header), its plugin registration and the stream-memory estimator (Khodamoradi 2021, ch. 4)."""

from hwreshape.extras import require

require("hls4ml", __name__)
