"""``hwreshape demo`` stage for the O(N) DVS background-activity filter (Khodamoradi 2021, chapter 3).

Runs on synthetic data (and on the shared DAVIS346 recording when ``../shared`` is present): Table 3.1 memory
model, a Monte-Carlo check of Eq 3.14 and Eq 3.10, the signal-kept vs noise-kept curves of the four filters on
a moving-dots scene (PNG), the past-event-recovery gain on the laser-spot scene (dissertation: +180 %), the
O(N) filter's throughput, and the HLS C-simulation against the python execution on a random stream.
"""

from __future__ import annotations

import time

import numpy as np


def stage(ctx) -> dict:
    from finn_s2n2.dvs import denoise, evaluate, memory
    from finn_s2n2.dvs import noise_model as nm
    from finn_s2n2.dvs.scenes import make_scene

    quick = bool(getattr(ctx, "quick", True))
    out_dir = ctx.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    res: dict = {}

    # Table 3.1: BRAM of the O(N) filter at 1280 x 1280 (dissertation: 2.19 %) vs the baseline at 128 x 128
    rows = {r["side"]: r for r in memory.table_3_1()}
    res["order_n_bram_pct_1280"] = round(rows[1280]["order_n_percent"], 2)
    res["baseline_bram_pct_128"] = round(rows[128]["baseline_percent"], 2)

    # Monte-Carlo vs analytic (fixed seeds)
    side, t = 1024, 1000.0
    fn = evaluate.mc_false_negative_order_n(
        1.0 / (t * 1e-6 * (side - 3)), t, side=side, n_pairs=1000 if quick else 3000
    )
    res["fn_order_n_mc"] = round(fn["estimate"], 4)
    res["fn_order_n_eq3_14"] = round(fn["analytic"], 4)
    liu = evaluate.mc_false_negative_liu(4, n_pairs=2000)
    res["fn_liu_s4_mc"] = round(liu["estimate"], 4)
    res["fn_liu_s4_eq3_10"] = round(liu["analytic"], 4)
    res["fn_ratio_liu_s2_vs_order_n_128_room"] = round(
        nm.p_false_negative_liu(2) / nm.p_false_negative_order_n(nm.ROOM_TEMPERATURE_RATE_HZ, 1e-3, 128), 1
    )

    # ROC-style curves on a moving-dots scene at 60 °C noise
    ev, sig = make_scene("dots", 128, 128, 500_000 if quick else 2_000_000, nm.RATE_60C_HZ, seed=1)
    dts = [250, 500, 1000, 2000, 5000, 10000]
    table = evaluate.roc_table(ev, sig, 128, 128, dts, s=2)
    evaluate.plot_roc(table, out_dir / "dvs_filter_roc.png", title="moving dots + 1.5 Hz BA noise, 128x128")
    r1 = {(r["filter"], r["dt"]): r for r in table}
    res["dots_order_n_signal_kept_dt1ms"] = round(r1[("order_n", 1000)]["signal_kept"], 3)
    res["dots_order_n_noise_kept_dt1ms"] = round(r1[("order_n", 1000)]["noise_kept"], 4)
    res["dots_baseline_signal_kept_dt1ms"] = round(r1[("baseline", 1000)]["signal_kept"], 3)

    # past-event recovery on the laser-spot scene (Khodamoradi 2021 §3.4.6: +180 %)
    ev, sig = make_scene(
        "spot", 128, 128, 500_000 if quick else 2_000_000, nm.ROOM_TEMPERATURE_RATE_HZ, seed=2, fire_prob=0.25
    )
    g = evaluate.recovery_gain(ev, sig, 128, 128, 1000)
    res["spot_recovery_gain_pct"] = round(g["gain_percent"], 1)
    res["dissertation_recovery_gain_pct"] = g["dissertation_gain_percent"]

    # throughput of the O(N) filter (numba) on a noise-heavy stream
    ev, _ = make_scene("bars", 346, 260, 1_000_000, 2.0 if quick else 10.0, seed=3)
    denoise.order_n_filter(ev[:100], 346, 260, 2000)
    t0 = time.perf_counter()
    out = denoise.order_n_filter(ev, 346, 260, 2000)
    res["order_n_mev_per_s"] = round(ev.size / (time.perf_counter() - t0) / 1e6, 1)
    res["order_n_pass_fraction"] = round(out.size / ev.size, 3)

    # the stateful filter fed 10 ms packets gives exactly the one-call result
    from finn_s2n2.dvs.io import split_by_time
    from finn_s2n2.dvs.stream import OrderNFilter

    f = OrderNFilter(346, 260, 2000, order="time")
    parts = [f(p) for p in split_by_time(ev, 10_000)] + [f.flush()]
    res["stream_10ms_equals_one_call"] = bool(np.array_equal(np.concatenate(parts), out))

    # the shared DAVIS346 recording, when present: what the filters do on real data
    from pathlib import Path

    clip = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dvs" / "emlb-demo-01.aedat4"
    if clip.exists():
        from finn_s2n2.dvs.io import read_aedat4

        real, (w, h) = read_aedat4(clip)
        rep = evaluate.real_data_report(real, w, h, 2000.0)
        res["real_clip_o_n_loss_vs_baseline"] = round(rep["o_n_arrival_loss_vs_baseline"], 3)
        res["real_clip_eq_3_14_at_ba_rate"] = round(rep["eq_3_14_at_ba_rate"], 3)
        res["real_clip_generalised_model"] = round(rep["generalised_model_mean"], 3)

    # HLS C-simulation == python execution
    from finn_s2n2.dvs import hls

    rng = np.random.default_rng(4)
    n = 20000
    rs = np.zeros(n, denoise.EVENT_DTYPE)
    rs["x"], rs["y"] = rng.integers(0, 64, n), rng.integers(0, 48, n)
    rs["t"], rs["p"] = np.sort(rng.integers(0, 20 * n, n)), rng.integers(0, 2, n)
    a = hls.csim_order_n(rs, 64, 48, 300)
    b = denoise.order_n_filter(rs, 64, 48, 300, order="emission")
    same = a.size == b.size and all(np.array_equal(a[f], b[f].astype(a[f].dtype)) for f in "xytp")
    res["hls_csim_equal"] = bool(same)
    res["hls_csim_events"] = int(a.size)
    return res
