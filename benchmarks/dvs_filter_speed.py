"""Throughput of the O(N) DVS background-activity filter (seed 002 §3.2) vs tonic and dv-processing.

All three filters run on the same synthetic stream (moving bars + dots-free Poisson BA noise on a
DAVIS346-sized sensor, µs timestamps) in one process:

* ours: ``finn_s2n2.events.denoise.order_n_filter`` (numba; validation + filter + recovery + output array),
  and ``baseline_filter`` for reference;
* tonic 1.7 ``tonic.functional.denoise_numpy`` (pure python loop, 4-neighbourhood);
* dv-processing ``dv.noise.BackgroundActivityNoiseFilter`` (C++; ``accept`` + ``generateEvents``).  Its
  input ``dv.EventStore`` is built before timing (its native format, as the structured array is ours).

Each is timed as the best of ``--repeat`` runs (tonic: one run; in ``--quick`` mode on a prefix of the
stream when it would take long).  Prints Mev/s and the ratios ours / peer.

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

from finn_s2n2.events import denoise  # noqa: E402
from finn_s2n2.events.scenes import make_scene  # noqa: E402

W, H = 346, 260


def make_stream(n_events: int, seed: int = 0) -> np.ndarray:
    """Moving bars + Poisson noise, about ``n_events`` events (noise rate chosen to reach the count)."""
    duration = 2_000_000
    rate = max(n_events / (W * H * duration * 1e-6), 0.05)
    ev, _ = make_scene("bars", W, H, duration, noise_hz=rate, seed=seed, speed_px_s=300.0)
    return ev


def best(fn, repeat):
    times = []
    out = None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small stream, fewer repeats")
    ap.add_argument("--events", type=int, default=None, help="approximate stream size")
    ap.add_argument("--repeat", type=int, default=None)
    ap.add_argument("--dt", type=float, default=2000.0, help="temporal window in µs (default 2000)")
    args = ap.parse_args(argv)
    n_target = args.events or (500_000 if args.quick else 4_000_000)
    repeat = args.repeat or (3 if args.quick else 7)
    dt = args.dt

    ev = make_stream(n_target)
    n = ev.size
    print(f"stream: {n} events, {W}x{H}, {ev['t'][-1] / 1e6:.2f} s, dt = {dt:g} µs, best of {repeat}")

    # warm-up (numba compile / cache load) outside the timing
    denoise.order_n_filter(ev[:1000], W, H, dt)
    denoise.baseline_filter(ev[:1000], W, H, dt)

    rows = []
    t_ours, out = best(lambda: denoise.order_n_filter(ev, W, H, dt), repeat)
    rows.append(("ours order_n_filter (O(N) + recovery)", n, t_ours, out.size))
    t_base, out = best(lambda: denoise.baseline_filter(ev, W, H, dt), repeat)
    rows.append(("ours baseline_filter (per-pixel)", n, t_base, out.size))

    import dv_processing as dv

    store = dv.EventStore()
    for t, x, y, p in zip(ev["t"].tolist(), ev["x"].tolist(), ev["y"].tolist(), ev["p"].tolist()):
        store.push_back(t, x, y, bool(p))

    def run_dv():
        f = dv.noise.BackgroundActivityNoiseFilter((W, H), backgroundActivityDuration=datetime.timedelta(microseconds=dt))
        f.accept(store)
        return f.generateEvents()

    t_dv, out = best(run_dv, repeat)
    rows.append(("dv-processing BackgroundActivityNoiseFilter", n, t_dv, out.size()))

    import tonic.functional as tf

    n_tonic = min(n, 200_000) if args.quick else n
    t_tonic, out = best(lambda: tf.denoise_numpy(ev[:n_tonic], filter_time=dt), 1)
    rows.append((f"tonic denoise_numpy{' (first %d events)' % n_tonic if n_tonic < n else ''}", n_tonic, t_tonic, out.size))

    rate = {name: cnt / t / 1e6 for name, cnt, t, _ in rows}
    ours = rate[rows[0][0]]
    print(f"\n{'filter':<48} {'events':>9} {'time s':>8} {'Mev/s':>8} {'passed':>8} {'ours/this':>10}")
    for name, cnt, t, passed in rows:
        print(f"{name:<48} {cnt:>9} {t:>8.4f} {rate[name]:>8.2f} {passed:>8} {ours / rate[name]:>9.2f}x")
    r_dv = ours / rate[rows[2][0]]
    r_tonic = ours / rate[rows[3][0]]
    print(f"\nO(N) filter vs dv-processing: {r_dv:.2f}x (target >= 1.0x)  vs tonic: {r_tonic:.0f}x (target >= 100x)")
    return {"ours_mev_s": ours, "ratio_dv": r_dv, "ratio_tonic": r_tonic}


if __name__ == "__main__":
    main()
