"""DVS background-activity filters (Khodamoradi 2021, ch. 3): the O(N) row/column filter, the per-pixel
baselines, their stateful packet-by-packet versions (:mod:`.stream`), readers for real recordings (:mod:`.io`),
benchmark peers (:mod:`.peers`), memory and error models, synthetic scenes and the HLS C++ version.

Submodules are imported on use; this file stays free of imports so that each one loads on its own.
"""
