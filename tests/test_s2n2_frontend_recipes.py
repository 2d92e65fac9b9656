"""S2N2 front-end recipes: training loop with ASLR learns a toy task; buffer comparison reproduces the seed's
Tables 2.3 and 2.8 from our model builders and the printed spike ratios; losses and spike ratios."""

import numpy as np
import pytest
import torch

from finn_s2n2.snn.models import s2n2_cv, s2n2_rf1, spiking_mlp
from finn_s2n2.training.recipes import buffer_comparison, count_loss, evaluate, fit, spike_ratios

torch.set_num_threads(1)


def _toy(n, rng):
    # class 0 drives inputs 0..7, class 1 inputs 8..15 (Bernoulli 0.6), plus 5 % background spikes
    y = rng.integers(0, 2, n)
    p = np.full((n, 16), 0.05)
    p[y == 0, :8] = 0.6
    p[y == 1, 8:] = 0.6
    return p.astype(np.float32), y.astype(np.int64)


@pytest.mark.parametrize("loss", ["smooth_l1", "ce"])
def test_fit_with_aslr_learns_a_toy_task(loss):
    rng = np.random.default_rng(0)
    xtr, ytr = _toy(96, rng)
    xva, yva = _toy(64, rng)
    enc_rng = np.random.default_rng(1)
    enc = lambda p: (enc_rng.random((len(p), 8, 16)) < p[:, None, :]).astype(np.float32)
    torch.manual_seed(0)
    net = spiking_mlp([16, 12, 2])
    res = fit(
        net, xtr, ytr, xva, yva, enc, epochs=4, batch=16, lr=5e-3, loss=loss, progress=False, calibrate=0.1
    )
    assert len(res.history) == 4 and all("c" in h for h in res.history)
    assert res.val_acc >= 0.9
    _, acc, pred = evaluate(net, xva, yva, enc, loss=loss)
    assert acc >= 0.85 and pred.shape == yva.shape


def test_count_loss_targets():
    counts = torch.tensor([[4.0, 0.0], [0.0, 4.0]])
    y = torch.tensor([0, 1])
    good = count_loss(counts, y, 8)  # rates 0.5 / 0.0 vs targets 0.5 / 0.05
    bad = count_loss(counts, torch.tensor([1, 0]), 8)
    assert float(good) < float(bad)
    silent = count_loss(torch.zeros(2, 2), y, 8)
    assert float(silent) > float(good)  # silencing every output is penalised (unlike CE with ties)
    with pytest.raises(ValueError, match="loss"):
        count_loss(counts, y, 8, "mse")


def test_buffer_comparison_reproduces_tables_2_3_and_2_8():
    rf1 = buffer_comparison(s2n2_rf1(), (1, 16, 16), [0.0039, 0.07, 0.08, 0.12], 128)
    assert [r["tick_batching_bits"] for r in rf1] == [1917, 697304, 212337, 27526]
    assert [r["streaming_bits"] for r in rf1] == [25, 400, 128, 11]
    assert [round(r["improvement"]) for r in rf1] == [
        77,
        1743,
        1659,
        2502,
    ]  # seed: x77, x1,744, x1,658, x2,502
    cv = buffer_comparison(s2n2_cv(), (1, 28, 28), [0.007, 0.16, 0.33, 0.41], 500)
    assert [r["tick_batching_bits"] for r in cv] == [52136, 4542720, 10062360, 1889280]
    assert [r["streaming_bits"] for r in cv] == [49, 784, 1176, 10]
    with pytest.raises(ValueError, match="spike ratios"):
        buffer_comparison(s2n2_cv(), (1, 28, 28), [0.1], 500)


def test_spike_ratios_first_layer_is_one_event_per_tick():
    from finn_s2n2.snn.encoding import iq_to_spikes
    from finn_s2n2.training.datasets import synthetic_amc

    iq, _, _ = synthetic_amc(1, snrs=[10], classes=["QPSK", "BPSK"], length=8)
    mean_r, max_r = spike_ratios(s2n2_rf1(width=0.25), torch.from_numpy(iq_to_spikes(iq)))
    assert mean_r[0] == pytest.approx(1 / 256) and max_r[0] == pytest.approx(1 / 256)
    assert len(mean_r) == 4 and all(a <= b for a, b in zip(mean_r, max_r))


def test_baselines_read_the_same_events_and_learn():
    from finn_s2n2.snn.encoding import iq_to_spikes
    from finn_s2n2.training.baselines import baseline_features, event_sequence, rate_histogram, train_baseline
    from finn_s2n2.training.datasets import synthetic_amc
    from finn_s2n2.training.recipes import amc_split

    iq, y, _ = synthetic_amc(60, snrs=[18], classes=["BPSK", "AM-DSB", "CPFSK"], length=32, seed=0)
    s = iq_to_spikes(iq[:5], 4)
    h = rate_histogram(s)
    np.testing.assert_allclose(
        h.mean(axis=(1, 2, 3)), 1.0, rtol=1e-6
    )  # one spike per tick: mean rate x H W = 1
    e = event_sequence(s)
    assert e.shape == (5, 2, 32) and e.min() >= 0 and e.max() <= 1
    # the (I, Q) cell read back from the sequence is where the plane has its spike
    n, t = 2, 7
    i, q = (e[n, :, t] * 15).round().astype(int)
    assert s[n, t, 0, q, i] == 1
    with pytest.raises(ValueError, match="exactly one spike"):
        event_sequence(np.zeros((1, 2, 1, 4, 4)))
    feats = baseline_features(iq, 4, chunk=16)
    val, tr = amc_split(len(iq), 0)
    assert len(set(val) & set(tr)) == 0 and len(val) + len(tr) == len(iq)
    for kind in ("rate_histogram", "event_sequence"):
        pred, info = train_baseline(
            kind, feats[kind][tr], y[tr], feats[kind][val], epochs=20, batch=8, seed=0
        )
        assert np.mean(pred == y[val]) >= 0.6, kind  # 3 clearly separable classes at 18 dB; chance 1/3
        assert info["params"] > 0
    with pytest.raises(ValueError, match="kind must be one of"):
        train_baseline("mlp", feats["rate_histogram"], y, feats["rate_histogram"])


def test_evaluate_quantized_is_the_exported_graph():
    from finn_s2n2.snn.export import execute_qonnx, to_qonnx
    from finn_s2n2.training.recipes import evaluate_quantized

    rng = np.random.default_rng(0)
    x, y = _toy(24, rng)
    enc = lambda p: (np.random.default_rng(3).random((len(p), 8, 16)) < p[:, None, :]).astype(np.float32)
    torch.manual_seed(0)
    net = spiking_mlp([16, 12, 2])
    net.calibrate(torch.from_numpy(enc(x)), target=0.2)
    _, acc, pred = evaluate_quantized(net, x, y, enc)
    assert not any(getattr(m, "quantized", False) for m in net)  # the float net is left as it was
    counts = execute_qonnx(to_qonnx(net, torch.from_numpy(enc(x))), torch.from_numpy(enc(x)))
    np.testing.assert_array_equal(pred, counts.argmax(1))
    assert acc == pytest.approx(float(np.mean(counts.argmax(1) == y)))


def test_annealed_aslr_scales_the_drawn_rates_by_a_cosine():
    from aslr.torch import ASLR
    from finn_s2n2.training.recipes import AnnealedASLR

    lin = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam([{"params": [lin.weight]}, {"params": [lin.bias]}], lr=1e-3)
    sched = AnnealedASLR(
        ASLR(opt, 4e-3, generator=torch.Generator().manual_seed(0)), total_steps=10, final=0.1
    )
    seen = []
    for _ in range(10):
        sched.step()
        drawn = sched.aslr.get_last_lr()
        for g, lr in zip(opt.param_groups, drawn):
            assert 3.5e-3 <= lr <= 4.5e-3  # ASLR's interval c ± s/2 (Eq 5.10) is unchanged
            assert g["lr"] == pytest.approx(lr * sched.factor())
        seen.append(sched.factor())
    assert seen == sorted(seen, reverse=True) and seen[-1] == pytest.approx(0.1)
    sched.observe(1.0)  # Algorithm 2 moves c; the factor still applies
    assert opt.param_groups[0]["lr"] == pytest.approx(sched.aslr.get_last_lr()[0] * 0.1)
    with pytest.raises(ValueError, match="total_steps"):
        AnnealedASLR(sched.aslr, 0)


@pytest.mark.slow
def test_benchmark_quick_path_runs_end_to_end(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "s2n2_train.py"
    spec = importlib.util.spec_from_file_location("s2n2_train_bench", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--parts", "rf1,cv,report", "--out", str(tmp_path), "--no-progress"]) == 0
    res = json.loads((tmp_path / "results_quick.json").read_text())
    assert 0 <= res["rf1"]["q_acc"] <= 1 and set(res["rf1"]["baselines"]) == {
        "rate_histogram",
        "event_sequence",
    }
    assert 0 <= res["cv"]["q_acc"] <= 1 and res["cv"]["q_acc_ci95"][0] <= res["cv"]["q_acc"]
    out = capsys.readouterr().out
    assert "quantized graph (FINN)" in out and "buffer comparison S2N2_rf1" in out
    lo, hi = bench.wilson_ci(0.9, 100)
    assert lo < 0.9 < hi and hi - lo == pytest.approx(0.12, abs=0.01)
