"""Throughput of the O(N) DVS background-activity filter (seed 002 §3.2) vs tonic and dv-processing.

All three filters run on the same synthetic stream (moving bars + Poisson BA noise, 1.5 Hz per pixel by
default, on a DAVIS346-sized sensor, µs timestamps) in one process:

* ours: ``finn_s2n2.dvs.denoise.order_n_filter`` (numba; validation + filter + recovery + output array),
  and ``baseline_filter`` for reference;
* tonic 1.7 ``tonic.functional.denoise_numpy`` (pure python loop, 4-neighbourhood);
* dv-processing ``dv.noise.BackgroundActivityNoiseFilter`` (C++; ``accept`` + ``generateEvents``).  Its
  input ``dv.EventStore`` is built before timing (its native format, as the structured array is ours).

Ours and dv-processing are timed as the best of ``--repeat`` runs, interleaved round-robin (the machine may
be shared; the best run is the least disturbed one); tonic once (in ``--quick`` mode on a prefix of the
stream).  Prints Mev/s and the ratios ours / peer.

    .venv/bin/python benchmarks/dvs_filter_speed.py [--quick] [--events N] [--repeat R] [--dt US]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from finn_s2n2.dvs import denoise  # noqa: E402
from finn_s2n2.dvs.scenes import make_scene  # noqa: E402

W, H = 346, 260


def make_stream(n_events: int, noise_hz: float = 1.5, seed: int = 0) -> np.ndarray:
    """Moving bars + Poisson BA noise of ``noise_hz`` per pixel: a 1 s scene repeated (shifted by 1 s each
    time) until the stream holds at least ``n_events`` events."""
    base, _ = make_scene("bars", W, H, 1_000_000, noise_hz=noise_hz, seed=seed, speed_px_s=300.0)
    reps = max(1, -(-n_events // base.size))
    ev = np.concatenate([base] * reps)
    ev["t"] += np.repeat(np.arange(reps, dtype=np.int64) * 1_000_000, base.size)
    return ev


def best_interleaved(fns: dict, repeat: int) -> dict:
    """Best-of-``repeat`` time of each callable, the callables interleaved round-robin so that a busy machine
    slows them alike; returns ``{name: (seconds, last output)}``."""
    times = {k: [] for k in fns}
    outs = {}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            outs[k] = fn()
            times[k].append(time.perf_counter() - t0)
    return {k: (min(v), outs[k]) for k, v in times.items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small stream, fewer repeats")
    ap.add_argument("--events", type=int, default=None, help="approximate stream size")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--dt", type=float, default=2000.0, help="temporal window in µs (default 2000)")
    ap.add_argument("--noise-hz", type=float, default=1.5, help="BA noise per pixel (default 1.5 Hz, 60 °C)")
    args = ap.parse_args(argv)
    n_target = args.events or (600_000 if args.quick else 3_000_000)
    repeat = args.repeat or (5 if args.quick else 15)
    dt = args.dt

    ev = make_stream(n_target, args.noise_hz)
    n = ev.size
    print(
        f"stream: {n} events (moving bars + {args.noise_hz:g} Hz/pixel BA noise), {W}x{H}, "
        f"{ev['t'][-1] / 1e6:.2f} s, dt = {dt:g} µs, best of {repeat}"
    )

    # warm-up (numba compile / cache load) outside the timing
    denoise.order_n_filter(ev[:1000], W, H, dt)
    denoise.baseline_filter(ev[:1000], W, H, dt)

    import dv_processing as dv

    store = dv.EventStore()
    for t, x, y, p in zip(ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist(), ev["p"].tolist()):
        store.push_back(t, x, y, bool(p))

    def run_dv():
        f = dv.noise.BackgroundActivityNoiseFilter(
            (W, H), backgroundActivityDuration=datetime.timedelta(microseconds=dt)
        )
        f.accept(store)
        return f.generateEvents()

    res = best_interleaved(
        {
            "ours": lambda: denoise.order_n_filter(ev, W, H, dt),
            "dv": run_dv,
            "base": lambda: denoise.baseline_filter(ev, W, H, dt),
        },
        repeat,
    )
    rows = [
        ("ours order_n_filter (O(N) + recovery)", n, res["ours"][0], res["ours"][1].size),
        ("ours baseline_filter (per-pixel)", n, res["base"][0], res["base"][1].size),
        ("dv-processing BackgroundActivityNoiseFilter", n, res["dv"][0], res["dv"][1].size()),
    ]

    import tonic.functional as tf

    n_tonic = min(n, 200_000) if args.quick else n
    t0 = time.perf_counter()
    out = tf.denoise_numpy(ev[:n_tonic], filter_time=dt)
    t_tonic = time.perf_counter() - t0
    label = f"tonic denoise_numpy (first {n_tonic} events)" if n_tonic < n else "tonic denoise_numpy"
    rows.append((label, n_tonic, t_tonic, out.size))

    rate = {name: cnt / t / 1e6 for name, cnt, t, _ in rows}
    ours = rate[rows[0][0]]
    print(f"\n{'filter':<48} {'events':>9} {'time s':>8} {'Mev/s':>8} {'passed':>8} {'ours/this':>10}")
    for name, cnt, t, passed in rows:
        print(f"{name:<48} {cnt:>9} {t:>8.4f} {rate[name]:>8.2f} {passed:>8} {ours / rate[name]:>9.2f}x")
    r_dv = ours / rate[rows[2][0]]
    r_tonic = ours / rate[rows[3][0]]
    print(
        f"\nO(N) filter vs dv-processing: {r_dv:.2f}x (target >= 1.0x)  vs tonic: {r_tonic:.0f}x (target >= 100x)"
    )
    return {"ours_mev_s": ours, "ratio_dv": r_dv, "ratio_tonic": r_tonic}


if __name__ == "__main__":
    main()
