"""Training BM networks: layer-wise conversion from the input side plus fine-tuning (Limonova et al.)."""

from hwreshape.extras import require

require("torch", __name__)
