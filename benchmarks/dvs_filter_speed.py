"""Throughput of the O(N) DVS background-activity filter (Khodamoradi 2021, §3.2) against its peers, like for like.

Contenders, each on its native input prepared outside the timing, same window ``dt`` (µs):

* ``ours O(N)``            — ``finn_s2n2.dvs.denoise.order_n_filter`` (numba; validation + filter + recovery +
  output array, time order), one call over the stream;
* ``ours O(N) =KNoise``    — the same kernel configured as dv-processing's ``KNoiseFilter`` computes
  (``recover=False, same_polarity=True``, window ``dt + 1`` µs: KNoiseFilter's window is inclusive) — its output
  equals KNoiseFilter's event for event (checked here and in ``tests/test_dvs_peers.py``);
* ``ours O(N) 10ms-stream``— ``finn_s2n2.dvs.stream.OrderNFilter`` fed 10 ms packets (emission order);
* ``dv KNoiseFilter``      — ``dv.noise.KNoiseFilter`` (C++; the O(N) row/column algorithm without past-event
  recovery): ``accept`` + ``generateEvents`` on a prebuilt ``dv.EventStore``;
* ``ours baseline``        — ``baseline_filter`` (per pixel, numba);
* ``dv BackgroundActivity``— ``dv.noise.BackgroundActivityNoiseFilter`` (C++, per pixel);
* ``tonic numba port``     — tonic's ``denoise_numpy`` algorithm compiled with numba
  (``finn_s2n2.dvs.peers.tonic_denoise_numba``, same output as tonic);
* ``tonic as shipped``     — ``tonic.functional.denoise_numpy`` (a Python loop), on the first
  ``--tonic-events`` events of each stream (its rate does not depend on the length).

Streams: moving bars + Poisson BA noise (``--noise-hz`` per pixel) at 346×260, 640×480 and 1280×720, about
``--events`` events each, and the shared DAVIS346 recording (``../shared/data/dvs/emlb-demo-01.aedat4``, when
present) as one stream.  Each contender runs ``--runs`` times per stream; the order of the contenders is
reversed every other run (alternated), all in this one process.  Time is CPU time of the process
(``time.process_time``: the kernels are single-threaded; a peer's helper threads would be counted).  Printed:
median ns/event and Mev/s with the spread (min–max) over the runs, passed events, and the ratios
``KNoiseFilter time / ours`` for the like-for-like configuration (``=KNoise``) and for the dissertation's filter
with recovery (median of the per-run ratios, and its min–max).  The load average is printed:
on a shared machine every number moves with it.

    .venv/bin/python benchmarks/dvs_filter_speed.py [--quick] [--events N] [--runs R] [--dt US] [--stages]

``--stages`` prints instead where the O(N) filter's time goes (validation, the six-cell search, recovery by
marking or by bk bookkeeping, emission order, output compaction) on every stream, and the streaming filter
fed 1, 10 and 33 ms packets of the last stream (the real clip when present; emission and time order) against
one call.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from finn_s2n2.dvs import denoise, peers  # noqa: E402
from finn_s2n2.dvs.scenes import make_scene  # noqa: E402
from finn_s2n2.dvs.stream import OrderNFilter  # noqa: E402

RESOLUTIONS = ((346, 260), (640, 480), (1280, 720))
CLIP = ROOT / ".." / "shared" / "data" / "dvs" / "emlb-demo-01.aedat4"


def synthetic_stream(width, height, n_events, noise_hz=1.5, seed=0) -> np.ndarray:
    """Moving bars + Poisson BA noise: a 1 s scene repeated (shifted by 1 s) until ``n_events`` are reached."""
    base, _ = make_scene("bars", width, height, 1_000_000, noise_hz=noise_hz, seed=seed, speed_px_s=300.0)
    base["t"] += (
        1_000_000  # start after KNoiseFilter's zeroed memory has aged out (see tests/test_dvs_peers.py)
    )
    reps = max(1, -(-n_events // base.size))
    ev = np.concatenate([base] * reps)
    ev["t"] += np.repeat(np.arange(reps, dtype=np.int64) * 1_000_000, base.size)
    return ev[:n_events]


def contenders(ev, width, height, dt, store, n_tonic):
    import tonic.functional as tf

    packets = np.split(ev, np.searchsorted(ev["t"], np.arange(ev["t"][0] + 10_000, ev["t"][-1] + 1, 10_000)))

    def stream():
        f = OrderNFilter(width, height, dt)
        out = [f(p) for p in packets]
        return sum(o.size for o in out) + f.flush().size

    head = ev[:n_tonic]
    return {
        "ours O(N)": (ev.size, lambda: denoise.order_n_filter(ev, width, height, dt).size),
        "ours O(N) =KNoise": (
            ev.size,
            lambda: denoise.order_n_filter(ev, width, height, dt + 1, recover=False, same_polarity=True).size,
        ),
        "ours O(N) 10ms-stream": (ev.size, stream),
        "dv KNoiseFilter": (
            ev.size,
            lambda: peers.dv_filter("KNoiseFilter", store, width, height, dt).size(),
        ),
        "ours baseline": (ev.size, lambda: denoise.baseline_filter(ev, width, height, dt).size),
        "dv BackgroundActivity": (
            ev.size,
            lambda: peers.dv_filter("BackgroundActivityNoiseFilter", store, width, height, dt).size(),
        ),
        "tonic numba port": (ev.size, lambda: peers.tonic_denoise_numba(ev, dt).size),
        "tonic as shipped": (head.size, lambda: tf.denoise_numpy(head, filter_time=dt).size),
    }


def bench(fns: dict, runs: int) -> dict:
    """``runs`` CPU-time measurements of each callable, the order reversed every other run, after one untimed
    call of each (numba compiles or loads each kernel variant on its first call)."""
    names = list(fns)
    times = {k: [] for k in names}
    passed = {}
    for k in names:
        fns[k][1]()
    for r in range(runs):
        for k in names if r % 2 == 0 else names[::-1]:
            n, fn = fns[k]
            t0 = time.process_time()
            passed[k] = fn()
            times[k].append(time.process_time() - t0)
    return {k: (fns[k][0], np.array(times[k]), passed[k]) for k in names}


def report(title, res, peer="dv KNoiseFilter"):
    print(f"\n{title}")
    print(f"{'contender':<24} {'events':>9} {'ns/event':>9} {'(min-max)':>15} {'Mev/s':>7} {'passed':>8}")
    for k, (n, t, p) in res.items():
        ns = t * 1e9 / n
        print(
            f"{k:<24} {n:>9} {np.median(ns):>9.1f} {f'({ns.min():.1f}-{ns.max():.1f})':>15} "
            f"{n / np.median(t) / 1e6:>7.2f} {p:>8}"
        )
    out = {}
    for ref in ("ours O(N) =KNoise", "ours O(N)"):
        r = res[peer][1] / res[ref][1]  # per-run ratios, same run
        print(
            f"ratio {peer} time / {ref} time: median {np.median(r):.2f}x (min {r.min():.2f}, max {r.max():.2f})"
        )
        out[ref] = (float(np.median(r)), float(r.min()), float(r.max()))
    if res["ours O(N) =KNoise"][2] != res[peer][2]:
        print(f"WARNING: ours =KNoise passed {res['ours O(N) =KNoise'][2]} events, {peer} {res[peer][2]}")
    return out


def stages(ev, width, height, dt, runs: int) -> dict:
    """Where the time of ``order_n_filter`` goes (CPU ns/event, median of ``runs``, order alternated): the
    validation, the kernel without recovery (the six-cell search), with recovery by marking (one call, time
    order) and by bk bookkeeping (streams, emission order), the output compaction, the whole call."""
    ev = denoise.check_events(ev)
    kdt = denoise.kernel_dt(dt, "i")
    prev = np.int64(-(2**63))
    n = ev.shape[0]
    status = np.ones(n, np.uint8)
    out = np.empty(n + 1, ev.dtype)

    def kernel(norec=None, mark=False, emit=False):
        def fn():
            K, T = denoise.order_n_state(width, height, "i")
            st = np.zeros(n, np.uint8)
            denoise._order_n_kernel(
                ev, 0, width, height, kdt, None, prev, None, None, None, norec, K, T, st,
                np.empty(n + 1, np.int64) if emit else None, np.zeros(n, np.uint8) if mark else None, None,
            )  # fmt: skip

        return fn

    fns = {
        "validation (check_events)": lambda: denoise.check_events(ev),
        "kernel, no recovery (search)": kernel(norec=True),
        "kernel, recovery by marking": kernel(mark=True),
        "kernel, bk bookkeeping": kernel(),
        "kernel, bk + emission order": kernel(emit=True),
        "compaction (all events)": lambda: denoise._compact(ev, status, out),
        "order_n_filter (one call)": lambda: denoise.order_n_filter(ev, width, height, dt),
    }
    return bench({k: (n, f) for k, f in fns.items()}, runs)


def packet_sizes(ev, width, height, dt, runs: int, sizes_us=(1_000, 10_000, 33_000)) -> dict:
    """``OrderNFilter`` fed packets of ``sizes_us`` µs (emission and time order), against one call
    (CPU ns/event)."""
    fns = {"one call (order_n_filter)": (ev.size, lambda: denoise.order_n_filter(ev, width, height, dt).size)}
    for us in sizes_us:
        pk = np.split(ev, np.searchsorted(ev["t"], np.arange(ev["t"][0] + us, ev["t"][-1] + 1, us)))
        for order in ("emission", "time"):

            def run(pk=pk, order=order):
                f = OrderNFilter(width, height, dt, order=order)
                return sum(f(p).size for p in pk) + f.flush().size

            fns[f"{us / 1000:g} ms packets ({len(pk)}), {order}"] = (ev.size, run)
    return bench(fns, runs)


def print_plain(title, res):
    print(f"\n{title}")
    for k, (n, t, _) in res.items():
        ns = t * 1e9 / n
        print(f"  {k:<36} {np.median(ns):>6.2f} ns/event  ({ns.min():.2f}-{ns.max():.2f})")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="300k events per stream, 5 runs")
    ap.add_argument("--events", type=int, default=None, help="events per synthetic stream (default 2M)")
    ap.add_argument("--runs", type=int, default=None, help="runs per contender (default 7, >= 5)")
    ap.add_argument("--dt", type=float, default=2000.0, help="temporal window in µs (default 2000)")
    ap.add_argument("--noise-hz", type=float, default=1.5, help="BA noise per pixel (default 1.5 Hz, 60 °C)")
    ap.add_argument("--tonic-events", type=int, default=30_000, help="events given to tonic as shipped")
    ap.add_argument(
        "--stages",
        action="store_true",
        help="instead: where the O(N) filter's time goes, and streaming with 1/10/33 ms packets of the clip",
    )
    args = ap.parse_args(argv)
    n_events = args.events or (300_000 if args.quick else 2_000_000)
    runs = args.runs or (5 if args.quick else 7)
    dt = args.dt
    print(f"load average before: {os.getloadavg()} on {os.cpu_count()} CPUs; dt = {dt:g} µs, {runs} runs")

    streams = []
    for w, h in RESOLUTIONS:
        streams.append(
            (
                f"bars + {args.noise_hz:g} Hz noise, {w}x{h}",
                synthetic_stream(w, h, n_events, args.noise_hz),
                w,
                h,
            )
        )
    if CLIP.exists():
        from finn_s2n2.dvs.io import read_aedat4

        ev, (w, h) = read_aedat4(CLIP)
        streams.append((f"real DAVIS346 clip (E-MLB demo-01), {w}x{h}", ev, w, h))
    else:
        print(f"(real clip not found at {CLIP}: skipped)")

    # compile / load the numba kernels outside the timing
    warm = streams[0][1][:2000]
    denoise.order_n_filter(warm, 346, 260, dt)
    denoise.baseline_filter(warm, 346, 260, dt)
    peers.tonic_denoise_numba(warm, dt)
    OrderNFilter(346, 260, dt)(warm)

    if args.stages:
        for title, ev, w, h in streams:
            print_plain(f"{title}: {ev.size} events, O(N) stages", stages(ev, w, h, dt, runs))
        title, ev, w, h = streams[-1]
        print_plain(f"{title}: packets", packet_sizes(ev, w, h, dt, runs))
        print(f"\nload average after: {os.getloadavg()}")
        return None

    summary = {}
    for title, ev, w, h in streams:
        store = peers.to_dv_store(ev)
        res = bench(contenders(ev, w, h, dt, store, args.tonic_events), runs)
        summary[title] = report(f"{title}: {ev.size} events, {(ev['t'][-1] - ev['t'][0]) / 1e6:.2f} s", res)
    print(f"\nload average after: {os.getloadavg()}")
    print("KNoiseFilter time / ours (median of per-run ratios; target >= 1.5x):")
    for title, rows in summary.items():
        for ref, (med, lo, hi) in rows.items():
            print(f"  {title:<46} {ref:<18} {med:.2f}x  (runs {lo:.2f}-{hi:.2f})")
    return summary


if __name__ == "__main__":
    main()
