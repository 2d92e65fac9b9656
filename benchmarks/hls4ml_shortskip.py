"""Benchmark: fused short-skip layer vs vanilla hls4ml (the peer), side by side in one run.

1. Estimated BRAM18 (``hls4ml_skiptrim.hls4ml.estimate.stream_memory``, io_stream) of the Fig. 4.4 variants of a
   ResNet-8 (3 blocks) and, without ``--quick``, a ResNet-20 (9 blocks) on 32x32x3 inputs with 16 filters:
   long skips (original), no skips (Skipper), short skips vanilla hls4ml (Trimmer), short skips fused
   (Trimmer + this layer) -- with hls4ml's default FIFO depths, with depths after FIFO optimisation
   (occupancy model) and as a design total with weights (Resource strategy), next to Table 4.5
   (Khodamoradi 2021, §4).
2. C-simulation of the short-skip network, fused vs unfused: hls4ml ``compile()`` time, ``predict()`` time
   and bit-exactness.

    .venv/bin/python benchmarks/hls4ml_shortskip.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402


def bram_table(n_blocks, size, filters, reuse=16):
    """Estimated BRAM18 beside Table 4.5: hls4ml's default FIFO depths, depths after FIFO optimisation
    (occupancy model), and the dissertation-style total (optimised streams + weights with the Resource
    strategy at ``reuse``; Table 4.5 counts every BRAM of the design)."""
    from hls4ml_skiptrim.hls4ml.estimate import DISSERTATION_TABLE_4_5
    from hwreshape.examples.shortskip import table_4_5_estimates

    shape = (size, size, 3)
    default = table_4_5_estimates(input_shape=shape, filters=filters, n_blocks=n_blocks)
    opt = table_4_5_estimates(input_shape=shape, filters=filters, n_blocks=n_blocks, fifo_depths="optimized")
    total = table_4_5_estimates(
        input_shape=shape,
        filters=filters,
        n_blocks=n_blocks,
        fifo_depths="optimized",
        include_weights=True,
        Strategy="Resource",
        ReuseFactor=reuse,
    )
    first = next(iter(default))
    paper_ref = DISSERTATION_TABLE_4_5[first]

    def ratio(a, b):
        return f"{a / b:.2f}" if b else "  n/a"

    print(
        f"\nResNet-{2 * n_blocks + 2}-style, {size}x{size}x3, {filters} filters, io_stream, fixed<16,6> "
        "(estimate; nothing synthesised)"
    )
    print(
        f"{'variant':<22} {'FIFOs':>5} {'default':>8} {'ratio':>6} {'optimised':>9} {'ratio':>6} "
        f"{'+weights RF' + str(reuse):>14} {'ratio':>6}   {'Table 4.5':>9} {'ratio':>6}"
    )
    for label in default:
        d, o, t = default[label], opt[label], total[label]
        print(
            f"{label:<22} {d.n_fifos:>5} {d.bram18:>8} {ratio(d.bram18, default[first].bram18):>6} "
            f"{o.bram18:>9} {ratio(o.bram18, opt[first].bram18):>6} "
            f"{t.bram18_total:>14} {ratio(t.bram18_total, total[first].bram18_total):>6}   "
            f"{DISSERTATION_TABLE_4_5[label]:>9} {DISSERTATION_TABLE_4_5[label] / paper_ref:>6.2f}"
        )
    return default, opt, total


def csim(n_blocks, size, filters, n_samples, io_type):
    from hwreshape.examples.shortskip import resnet_variant, to_hls

    # no GAP/Dense head here: hls4ml's global-average-pooling sum overflows a fixed<24,10> accumulator on
    # 16x16 maps, which would hide the comparison of the residual part (identical in both models anyway)
    model = resnet_variant("short", (size, size, 3), filters=filters, n_blocks=n_blocks, head=False)
    x = np.random.default_rng(0).uniform(-1, 1, (n_samples, size, size, 3)).astype("float32")
    rows, ys = {}, {}
    for fuse in (False, True):
        tmp = tempfile.mkdtemp(prefix="ssk_bench_")
        try:
            t0 = time.perf_counter()
            hm = to_hls(model, fuse=fuse, io_type=io_type, output_dir=tmp, precision="fixed<24,10>")
            t_conv = time.perf_counter() - t0
            t0 = time.perf_counter()
            hm.compile()
            t_comp = time.perf_counter() - t0
            hm.predict(x[:1])  # warm-up
            t0 = time.perf_counter()
            ys[fuse] = np.asarray(hm.predict(x)).reshape(n_samples, -1)
            t_pred = time.perf_counter() - t0
            rows[fuse] = (t_conv, t_comp, t_pred)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    y_float = model.predict(x, verbose=0).reshape(n_samples, -1)
    print(
        f"\nC-simulation, short-skip ResNet-{2 * n_blocks + 2}-style {size}x{size}x3, {filters} filters, {io_type}, "
        f"{n_samples} samples"
    )
    print(f"{'':<26} {'hls4ml (peer)':>14} {'fused':>10} {'fused/peer':>11}")
    names = ("convert [s]", "compile [s]", "predict [s]")
    for i, name in enumerate(names):
        print(
            f"{name:<26} {rows[False][i]:>14.2f} {rows[True][i]:>10.2f} {rows[True][i] / rows[False][i]:>11.2f}"
        )
    print(
        f"{'predict [samples/s]':<26} {n_samples / rows[False][2]:>14.1f} {n_samples / rows[True][2]:>10.1f} "
        f"{rows[False][2] / rows[True][2]:>11.2f}"
    )
    print(
        f"bit-exact fused == unfused: {np.array_equal(ys[True], ys[False])};  "
        f"max |csim - keras float| = {np.abs(ys[True] - y_float).max():.5f} (fixed<24,10>)"
    )
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller networks, fewer samples")
    args = ap.parse_args(argv)
    import logging

    logging.getLogger("hls4ml_skiptrim").setLevel(logging.ERROR)  # the fixed<16,6> Add-overflow notes
    if args.quick:
        bram_table(n_blocks=3, size=16, filters=16)
        csim(n_blocks=1, size=8, filters=4, n_samples=32, io_type="io_stream")
    else:
        bram_table(n_blocks=3, size=32, filters=16)
        bram_table(n_blocks=9, size=32, filters=16)
        csim(n_blocks=3, size=16, filters=8, n_samples=64, io_type="io_stream")


if __name__ == "__main__":
    main()
