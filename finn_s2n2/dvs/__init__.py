"""DVS background-activity filters (Khodamoradi 2021, ch. 3): the O(N) row/column filter, the per-pixel
baselines, their memory and error models, synthetic scenes and the HLS C++ version.

Submodules are imported on use; this file imports nothing heavy so that each one loads on its own (it only
checks, without importing them, that the ``hwreshape[dvs]`` extra is installed).
"""

from hwreshape.extras import require

require("dvs", __name__)
