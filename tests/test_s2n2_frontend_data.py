"""S2N2 front-end data: synthetic AMC generator, RadioML loader, I/Q constellation events, image coding."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finn_s2n2.snn.encoding import iq_to_spikes, latency_code, rate_code
from finn_s2n2.training.datasets import CLASSES, SNRS, load_radioml2016, synthetic_amc


def test_synthetic_amc_layout_and_reproducible():
    x, y, s = synthetic_amc(3, seed=5)
    assert x.shape == (3 * 11 * 20, 2, 128) and x.dtype == np.float32
    assert CLASSES == (
        "8PSK",
        "AM-DSB",
        "AM-SSB",
        "BPSK",
        "CPFSK",
        "GFSK",
        "PAM4",
        "QAM16",
        "QAM64",
        "QPSK",
        "WBFM",
    )
    assert SNRS[0] == -20 and SNRS[-1] == 18 and len(SNRS) == 20
    assert np.bincount(y).tolist() == [60] * 11
    assert sorted(set(s.tolist())) == list(SNRS)
    x2, y2, s2 = synthetic_amc(3, seed=5)
    np.testing.assert_array_equal(x, x2)
    x3, _, _ = synthetic_amc(3, seed=6)
    assert not np.array_equal(x, x3)


def test_synthetic_amc_snr_is_the_measured_noise_power():
    # unit signal power + complex AWGN of power 10^(-snr/10): total power = 1 + 10^(-snr/10)
    for snr in (-10, 0, 10):
        x, _, _ = synthetic_amc(40, snrs=[snr], seed=1)
        p = float(np.mean(np.sum(x.astype(np.float64) ** 2, axis=1)))
        assert p == pytest.approx(1 + 10 ** (-snr / 10), rel=0.05)


def test_synthetic_amc_class_signatures_at_high_snr():
    x, y, _ = synthetic_amc(20, snrs=[18], seed=2, max_cfo=0.0)
    z = x[:, 0] + 1j * x[:, 1]
    env = np.abs(z)
    # constant-envelope modulations (CPFSK, GFSK, WBFM) vs. amplitude-modulated QAM16
    for name in ("CPFSK", "GFSK", "WBFM"):
        assert np.mean(np.std(env[y == CLASSES.index(name)], axis=1)) < 0.2
    assert np.mean(np.std(env[y == CLASSES.index("QAM16")], axis=1)) > 0.3
    # PAM4 / BPSK are one-dimensional: after removing the phase the quadrature energy is small
    for name in ("PAM4", "BPSK"):
        zz = z[y == CLASSES.index(name)]
        ang = 0.5 * np.angle(np.sum(zz**2, axis=1, keepdims=True))
        rot = zz * np.exp(-1j * ang)
        assert np.mean(np.abs(rot.imag) ** 2) / np.mean(np.abs(rot) ** 2) < 0.15


def test_synthetic_amc_bad_arguments():
    with pytest.raises(ValueError, match="n_per_class_snr"):
        synthetic_amc(0)
    with pytest.raises(ValueError, match="unknown modulation 'FOO'"):
        synthetic_amc(1, classes=["BPSK", "FOO"])
    with pytest.raises(ValueError, match="length"):
        synthetic_amc(1, length=4)


def test_load_radioml2016_roundtrip(tmp_path):
    rng = np.random.default_rng(0)
    d = {
        ("QPSK", 2): rng.standard_normal((3, 2, 128)).astype(np.float32),
        ("BPSK", -4): rng.standard_normal((2, 2, 128)).astype(np.float32),
    }
    p = tmp_path / "rml.pkl"
    p.write_bytes(pickle.dumps(d))
    x, y, s = load_radioml2016(p)
    assert x.shape == (5, 2, 128)
    assert sorted(zip(y.tolist(), s.tolist())) == sorted(
        [(CLASSES.index("QPSK"), 2)] * 3 + [(CLASSES.index("BPSK"), -4)] * 2
    )
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(pickle.dumps({("OOK", 0): d[("QPSK", 2)]}))
    with pytest.raises(ValueError, match="'OOK'"):
        load_radioml2016(bad)
    with pytest.raises(FileNotFoundError):
        load_radioml2016(tmp_path / "missing.pkl")


@settings(max_examples=30)
@given(n=st.integers(1, 4), length=st.integers(1, 40), bits=st.integers(1, 6), seed=st.integers(0, 1000))
def test_iq_to_spikes_one_spike_per_tick_at_quantized_position(n, length, bits, seed):
    rng = np.random.default_rng(seed)
    iq = rng.standard_normal((n, 2, length)).astype(np.float32)
    sp = iq_to_spikes(iq, bits)
    lv = 1 << bits
    assert sp.shape == (n, length, 1, lv, lv)
    assert set(np.unique(sp)) <= {0.0, 1.0}
    assert np.all(sp.sum(axis=(2, 3, 4)) == 1)
    # independent scalar check of the uniform quantiser at a few positions
    for i in range(n):
        a = np.max(np.abs(iq[i].astype(np.float64)))
        for t in range(0, length, 7):
            qi = min(lv - 1, max(0, int(np.floor((iq[i, 0, t] + a) / (2 * a) * lv))))
            qq = min(lv - 1, max(0, int(np.floor((iq[i, 1, t] + a) / (2 * a) * lv))))
            assert sp[i, t, 0, qq, qi] == 1


def test_iq_to_spikes_seed_spike_ratio_and_scales():
    x, _, _ = synthetic_amc(1, snrs=[10], seed=0)
    sp = iq_to_spikes(x, 4)
    assert sp.mean() == pytest.approx(1 / 256)  # Table 2.3: Conv.1 spike ratio 0.39 %
    assert iq_to_spikes(x[0], 4, scale="rms").shape == (128, 1, 16, 16)
    fixed = iq_to_spikes(np.array([[[0.0, 10.0]], [[0.0, -10.0]]]).reshape(1, 2, 2), 2, scale=1.0)
    assert fixed[0, 0, 0, 2, 2] == 1 and fixed[0, 1, 0, 0, 3] == 1  # 0 -> index 2, clipped +-10 -> edges


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(iq=np.zeros((3, 128))), "shape"),
        (dict(iq=np.zeros((1, 2, 8)), bits=0), "bits"),
        (dict(iq=np.full((1, 2, 8), np.nan)), "NaN"),
        (dict(iq=np.zeros((1, 2, 8)), scale="peak"), "scale"),
        (dict(iq=np.zeros((1, 2, 8)), scale=-1.0), "scale"),
    ],
)
def test_iq_to_spikes_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        iq_to_spikes(**kw)


def test_rate_code_statistics_and_reproducibility():
    img = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 1, 8, 8)
    sp = rate_code(np.repeat(img, 50, axis=0), 40, max_rate=0.5, seed=3)
    assert sp.shape == (50, 40, 1, 8, 8) and set(np.unique(sp)) <= {0.0, 1.0}
    rate = sp.mean(axis=(0, 1))[0]
    np.testing.assert_allclose(rate, 0.5 * img[0, 0], atol=0.04)
    np.testing.assert_array_equal(sp, rate_code(np.repeat(img, 50, axis=0), 40, max_rate=0.5, seed=3))
    assert rate_code(img, 4)[0, :, 0, 0, 0].sum() == 0  # black pixels never fire


def test_latency_code_brighter_fires_earlier_once():
    img = np.array([[[0.1, 0.5, 1.0]]], dtype=np.float32)  # (1, 1, 3)
    sp = latency_code(img, 10, threshold=0.2)
    assert sp.shape == (1, 10, 1, 1, 3)
    assert sp[0, :, 0, 0, 0].sum() == 0
    t_mid, t_hi = np.argmax(sp[0, :, 0, 0, 1]), np.argmax(sp[0, :, 0, 0, 2])
    assert sp[0, :, 0, 0, 1:].sum() == 2 and t_hi == 0 and t_mid > t_hi


@pytest.mark.parametrize("fn", [rate_code, latency_code])
def test_image_coders_bad_input(fn):
    with pytest.raises(ValueError, match="\\[0, 1\\]"):
        fn(np.full((1, 1, 2, 2), 2.0, dtype=np.float32), 4)
    with pytest.raises(TypeError, match="float"):
        fn(np.zeros((1, 1, 2, 2), dtype=np.uint8), 4)
    with pytest.raises(ValueError, match="num_ticks"):
        fn(np.zeros((1, 1, 2, 2), dtype=np.float32), 0)
    with pytest.raises(ValueError, match="shape"):
        fn(np.zeros((2, 2), dtype=np.float32), 3)


def test_synthetic_amc_radioml_channel_and_snr_convention():
    # RadioML.2016 passes 10^(-SNR/10) as the noise AMPLITUDE: noise power 10^(-SNR/5)
    for snr in (-10, 0):
        x, _, _ = synthetic_amc(40, snrs=[snr], seed=1, snr_convention="radioml")
        p = float(np.mean(np.sum(x.astype(np.float64) ** 2, axis=1)))
        assert p == pytest.approx(1 + 10 ** (-snr / 5), rel=0.05)
    # Rician multipath + sample-rate offset: unit channel power, reproducible, and different from plain AWGN
    a, y, s = synthetic_amc(20, snrs=[18], seed=3, channel="radioml")
    b, _, _ = synthetic_amc(20, snrs=[18], seed=3, channel="radioml")
    np.testing.assert_array_equal(a, b)
    assert a.shape == (20 * 11, 2, 128)
    p = float(np.mean(np.sum(a.astype(np.float64) ** 2, axis=1)))
    assert p == pytest.approx(1 + 10**-1.8, rel=0.05)
    # the channel itself: a unit-power FIR with a dominant line-of-sight tap, and a resampling ratio 1 + eps
    from finn_s2n2.training.datasets import _radioml_channel

    m = 64
    delta = np.zeros((200, m), dtype=complex)
    delta[:, 0] = 1.0
    h = _radioml_channel(delta, np.random.default_rng(0), m, 0.0, 4, 0.5)[:, :4]
    np.testing.assert_allclose(np.sum(np.abs(h) ** 2, axis=1), 1.0, rtol=1e-9)
    assert np.mean(np.abs(h[:, 0]) ** 2) > 0.5 and np.all(np.abs(h[:, 1:]) > 0)
    ramp = np.tile(np.arange(m, dtype=complex), (50, 1))
    out = _radioml_channel(ramp, np.random.default_rng(1), m, 0.01, 1, 0.5)
    ratio = np.abs(out[:, 40]) / 40.0  # |LOS| = 1 after normalisation, so |out| = (1 + eps) t
    assert np.all(np.abs(ratio - 1) <= 0.01 + 1e-9) and np.std(ratio) > 0.001
    for kw, match in (
        (dict(channel="rayleigh"), "channel must be"),
        (dict(snr_convention="db"), "snr_convention must be"),
        (dict(channel="radioml", taps=0), "taps"),
    ):
        with pytest.raises(ValueError, match=match):
            synthetic_amc(1, **kw)
