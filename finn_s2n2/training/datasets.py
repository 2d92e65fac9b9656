"""Radio data for the S2N2 automatic-modulation-classification networks (Khodamoradi 2021, §2.3 "Datasets").

The dissertation trains S2N2_rf1 on RadioML.2016 (11 modulations, 20 SNR levels from −20 dB to 18 dB in 2 dB steps,
128 complex I/Q samples per example).  RadioML cannot be downloaded in this environment, so
:func:`synthetic_amc` **generates a synthetic stand-in** with the same classes, example length and SNR grid.
It is *not* RadioML: by default the channel is simpler (``channel="awgn"``: a single AWGN + phase +
carrier-offset + timing model); ``channel="radioml"`` adds RadioML.2016's other impairments — Rician multipath
fading and a sample-rate offset — so it is closer, but still not comparable with the dissertation's 91.7 %
(Khodamoradi 2021, §2.3, Table 2.2).  Users who have the real files load them with :func:`load_radioml2016`.

Signal model per example (complex baseband, ``sps`` samples per symbol, RadioML.2016 used 8):

* PSK / QAM / PAM (8PSK, BPSK, QPSK, QAM16, QAM64, PAM4): random symbols, unit average energy, upsampled and
  shaped with a root-raised-cosine pulse (roll-off ``rolloff``).
* CPFSK: continuous-phase binary FSK, modulation index h = 0.5, rectangular frequency pulse.
* GFSK: the same with a Gaussian frequency pulse (BT = 0.35).
* AM-DSB: ``1 + a·m(t)`` (double sideband with carrier), AM-SSB: ``m(t) + j·H{m}(t)`` (upper sideband),
  WBFM: phase = 2π·f_dev·∑m (wide-band FM); ``m(t)`` is a band-limited random "voice" signal
  (a sum of a few random tones below 0.05 cycles/sample).
* Channel: random timing offset (window drawn from a longer burst), uniform random phase, carrier frequency
  offset uniform in ±``max_cfo`` cycles/sample (default 0.002: at most a quarter turn over 128 samples; a
  larger offset smears every PSK constellation into a ring within one example), unit average power, complex
  AWGN at the example's SNR.
* ``channel="radioml"`` additionally: a **sample-rate offset** (the burst is resampled by linear interpolation at
  a ratio ``1 + ε``, ε uniform in ±``max_sro``, default 0.5 %), then **Rician multipath fading**: a
  line-of-sight tap plus ``taps − 1`` (default 3) Rayleigh taps at delays 1, 2, … samples with an exponential
  power profile (decay ``delay_spread`` per sample), Rician K-factor uniform in [1, 10] (linear), the channel
  normalised to unit power; both drawn once per example (block fading over 128 samples).

**SNR convention.**  ``snr_convention="power"`` (default): the complex noise has power ``10^(−SNR/10)``
relative to the unit-power signal — the SNR in dB is the true ratio.  RadioML.2016's generator instead
passes ``10^(−SNR/10)`` to GNU Radio's channel model as the noise **amplitude** (voltage), i.e. noise power
``10^(−SNR/5)``: its labelled SNR is half the true SNR in dB.  ``snr_convention="radioml"`` reproduces
that (noise standard deviation ``10^(−SNR/10)``).

Everything is drawn from one ``numpy.random.Generator(seed)``: the same arguments give the same arrays.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

#: RadioML.2016 class names, in the order of the labels this module returns (§2.3).
CLASSES: tuple[str, ...] = (
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
#: RadioML.2016 SNR grid in dB (−20 … 18, step 2).
SNRS: tuple[int, ...] = tuple(range(-20, 20, 2))


def _rrc(sps: int, span: int, beta: float) -> np.ndarray:
    """Root-raised-cosine impulse response, ``span`` symbols long, unit energy."""
    t = np.arange(-span * sps / 2, span * sps / 2 + 1) / sps
    h = np.empty_like(t)
    for i, ti in enumerate(t):
        if abs(ti) < 1e-12:
            h[i] = 1.0 - beta + 4 * beta / np.pi
        elif beta > 0 and abs(abs(ti) - 1 / (4 * beta)) < 1e-9:
            h[i] = (beta / np.sqrt(2)) * (
                (1 + 2 / np.pi) * np.sin(np.pi / (4 * beta)) + (1 - 2 / np.pi) * np.cos(np.pi / (4 * beta))
            )
        else:
            num = np.sin(np.pi * ti * (1 - beta)) + 4 * beta * ti * np.cos(np.pi * ti * (1 + beta))
            den = np.pi * ti * (1 - (4 * beta * ti) ** 2)
            h[i] = num / den
    return h / np.sqrt(np.sum(h**2))


def _gauss_pulse(sps: int, bt: float, span: int = 3) -> np.ndarray:
    """Gaussian frequency pulse (GFSK) normalised to unit area per symbol."""
    t = np.arange(-span * sps / 2, span * sps / 2 + 1) / sps
    sigma = np.sqrt(np.log(2)) / (2 * np.pi * bt)
    g = np.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum() * sps


def _constellation(name: str) -> np.ndarray:
    if name == "BPSK":
        c = np.array([1, -1], dtype=complex)
    elif name == "QPSK":
        c = np.exp(1j * (np.pi / 4 + np.pi / 2 * np.arange(4)))
    elif name == "8PSK":
        c = np.exp(1j * (np.pi / 4 * np.arange(8)))
    elif name == "PAM4":
        c = np.array([-3, -1, 1, 3], dtype=complex)
    elif name in ("QAM16", "QAM64"):
        m = 4 if name == "QAM16" else 8
        lv = np.arange(-(m - 1), m, 2)
        c = (lv[:, None] + 1j * lv[None, :]).ravel()
    else:  # pragma: no cover - internal misuse
        raise ValueError(f"no constellation for {name}")
    return c / np.sqrt(np.mean(np.abs(c) ** 2))


def _message(rng: np.random.Generator, n: int, count: int) -> np.ndarray:
    """Band-limited random analog message, shape (count, n), roughly unit peak."""
    t = np.arange(n)
    k = 4
    f = rng.uniform(0.002, 0.05, size=(count, k, 1))
    ph = rng.uniform(0, 2 * np.pi, size=(count, k, 1))
    a = rng.uniform(0.2, 1.0, size=(count, k, 1))
    m = np.sum(a * np.sin(2 * np.pi * f * t + ph), axis=1)
    return m / np.maximum(np.max(np.abs(m), axis=1, keepdims=True), 1e-9)


def _modulate(
    name: str, rng: np.random.Generator, count: int, n: int, sps: int, rolloff: float
) -> np.ndarray:
    """``count`` clean complex bursts of ``n`` samples of modulation ``name``."""
    if name in ("BPSK", "QPSK", "8PSK", "PAM4", "QAM16", "QAM64"):
        c = _constellation(name)
        nsym = n // sps + 1
        sym = c[rng.integers(0, len(c), size=(count, nsym))]
        up = np.zeros((count, nsym * sps), dtype=complex)
        up[:, ::sps] = sym
        h = _rrc(sps, 8, rolloff)
        out = np.stack([np.convolve(u, h, mode="same") for u in up])
        return out[:, :n]
    if name in ("CPFSK", "GFSK"):
        nsym = n // sps + 1
        bits = rng.integers(0, 2, size=(count, nsym)) * 2 - 1
        freq = np.repeat(bits, sps, axis=1).astype(float)
        if name == "GFSK":
            g = _gauss_pulse(sps, 0.35) / sps
            freq = np.stack([np.convolve(f, g, mode="same") for f in freq])
        h_index = 0.5
        phase = np.pi * h_index * np.cumsum(freq, axis=1) / sps
        return np.exp(1j * phase)[:, :n]
    m = _message(rng, n, count)
    if name == "AM-DSB":
        return (1.0 + 0.5 * m).astype(complex)
    if name == "AM-SSB":
        from scipy.signal import hilbert

        return hilbert(m, axis=1)
    if name == "WBFM":
        f_dev = 0.08
        return np.exp(1j * 2 * np.pi * f_dev * np.cumsum(m, axis=1))
    raise ValueError(f"synthetic_amc: unknown modulation {name!r}; expected one of {CLASSES}")


def _radioml_channel(
    sig: np.ndarray, rng: np.random.Generator, n: int, max_sro: float, taps: int, delay_spread: float
) -> np.ndarray:
    """Sample-rate offset (linear interpolation at ratio 1 + ε) then Rician block fading; ``n`` samples out."""
    count, m = sig.shape
    eps = rng.uniform(-max_sro, max_sro, size=count)
    t_out = np.arange(m)[None, :] * (1.0 + eps[:, None])
    t_out = np.minimum(t_out, m - 1)
    src = np.arange(m)
    res = np.stack([np.interp(t, src, s.real) + 1j * np.interp(t, src, s.imag) for t, s in zip(t_out, sig)])
    k = rng.uniform(1.0, 10.0, size=(count, 1))  # Rician K-factor (linear)
    prof = np.exp(-np.arange(1, taps) / delay_spread)[None, :] if taps > 1 else np.zeros((1, 0))
    prof = prof / max(prof.sum(), 1e-12)
    scatter = (
        rng.standard_normal((count, taps - 1)) + 1j * rng.standard_normal((count, taps - 1))
    ) / np.sqrt(2)
    h = np.concatenate(
        [
            np.sqrt(k / (k + 1)) * np.exp(1j * rng.uniform(0, 2 * np.pi, (count, 1))),
            np.sqrt(1 / (k + 1) * prof) * scatter,
        ],
        axis=1,
    )
    h = h / np.sqrt(np.sum(np.abs(h) ** 2, axis=1, keepdims=True))
    out = np.stack([np.convolve(r, hh)[:m] for r, hh in zip(res, h)])
    return out[:, m - n :]


def synthetic_amc(
    n_per_class_snr: int = 16,
    *,
    snrs: tuple[int, ...] | list[int] | None = None,
    classes: tuple[str, ...] | list[str] | None = None,
    length: int = 128,
    sps: int = 8,
    rolloff: float = 0.35,
    max_cfo: float = 0.002,
    seed: int = 0,
    channel: str = "awgn",
    snr_convention: str = "power",
    max_sro: float = 0.005,
    taps: int = 4,
    delay_spread: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic RadioML.2016-like AMC set (see module docstring; *not* RadioML).

    Returns ``(iq, labels, snr)``: ``iq`` float32 of shape (N, 2, length) (row 0 = I, row 1 = Q), ``labels``
    int64 indices into :data:`CLASSES` (or into ``classes`` when given), ``snr`` int64 dB per example.
    N = ``n_per_class_snr`` × #classes × #SNRs, ordered class-major then SNR; shuffle before training.
    """
    snrs = tuple(SNRS if snrs is None else snrs)
    classes = tuple(CLASSES if classes is None else classes)
    if not isinstance(n_per_class_snr, int | np.integer) or n_per_class_snr < 1:
        raise ValueError(f"synthetic_amc: n_per_class_snr must be a positive int, got {n_per_class_snr!r}")
    if length < 8 or sps < 2:
        raise ValueError(f"synthetic_amc: need length >= 8 and sps >= 2, got length={length}, sps={sps}")
    for c in classes:
        if c not in CLASSES:
            raise ValueError(f"synthetic_amc: unknown modulation {c!r}; expected names from {CLASSES}")
    if channel not in ("awgn", "radioml"):
        raise ValueError(f"synthetic_amc: channel must be 'awgn' or 'radioml', got {channel!r}")
    if snr_convention not in ("power", "radioml"):
        raise ValueError(
            f"synthetic_amc: snr_convention must be 'power' or 'radioml', got {snr_convention!r}"
        )
    if not 0 <= max_sro < 0.1 or not 1 <= taps <= 16 or not delay_spread > 0:
        raise ValueError(
            f"synthetic_amc: need 0 <= max_sro < 0.1, 1 <= taps <= 16, delay_spread > 0; got "
            f"{max_sro}, {taps}, {delay_spread}"
        )
    rng = np.random.default_rng(seed)
    count = n_per_class_snr * len(snrs)
    xs, ys, ss = [], [], []
    burst = length + 4 * sps
    for label, name in enumerate(classes):
        sig = _modulate(name, rng, count, burst + (2 * taps if channel == "radioml" else 0), sps, rolloff)
        if channel == "radioml":
            sig = _radioml_channel(sig, rng, burst, max_sro, taps, delay_spread)
        start = rng.integers(0, burst - length + 1, size=count)
        sig = np.stack([s[o : o + length] for s, o in zip(sig, start)])
        t = np.arange(length)
        phase = rng.uniform(0, 2 * np.pi, size=(count, 1))
        cfo = rng.uniform(-max_cfo, max_cfo, size=(count, 1))
        sig = sig * np.exp(1j * (phase + 2 * np.pi * cfo * t))
        sig = sig / np.sqrt(np.mean(np.abs(sig) ** 2, axis=1, keepdims=True) + 1e-12)
        snr = np.repeat(np.asarray(snrs, dtype=np.int64), n_per_class_snr)
        nvar = 10.0 ** (-snr / 10.0) if snr_convention == "power" else 10.0 ** (-snr / 5.0)
        noise = (rng.standard_normal((count, length)) + 1j * rng.standard_normal((count, length))) * np.sqrt(
            nvar[:, None] / 2
        )
        sig = sig + noise
        xs.append(np.stack([sig.real, sig.imag], axis=1).astype(np.float32))
        ys.append(np.full(count, label, dtype=np.int64))
        ss.append(snr)
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ss)


def load_radioml2016(
    path: str | Path, *, classes: tuple[str, ...] = CLASSES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load a real RadioML.2016 pickle (``RML2016.10a_dict.pkl`` / ``10b``), for users who have it.

    The file is a pickled dict ``{(modulation, snr): float array (n, 2, 128)}`` written by Python 2 (hence
    ``encoding='latin1'``).  Returns ``(iq, labels, snr)`` in the same format as :func:`synthetic_amc`.
    Only the classes in ``classes`` are kept; an unknown key raises ``ValueError`` naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_radioml2016: no file {path}")
    with open(path, "rb") as f:
        data = pickle.load(f, encoding="latin1")
    if not isinstance(data, dict):
        raise ValueError(
            f"load_radioml2016: {path} holds {type(data).__name__}, expected a dict {{(mod, snr): array}}"
        )
    xs, ys, ss = [], [], []
    for key in sorted(
        data, key=lambda k: (str(k[0]), int(k[1])) if isinstance(k, tuple) and len(k) == 2 else ("", 0)
    ):
        if not (isinstance(key, tuple) and len(key) == 2):
            raise ValueError(f"load_radioml2016: key {key!r} in {path} is not (modulation, snr)")
        mod, snr = key
        mod = mod.decode() if isinstance(mod, bytes) else str(mod)
        if mod not in CLASSES:
            raise ValueError(
                f"load_radioml2016: modulation {mod!r} in {path} is not a RadioML.2016 class {CLASSES}"
            )
        if mod not in classes:
            continue
        arr = np.asarray(data[key], dtype=np.float32)
        if arr.ndim != 3 or arr.shape[1] != 2:
            raise ValueError(f"load_radioml2016: entry {key!r} has shape {arr.shape}, expected (n, 2, L)")
        xs.append(arr)
        ys.append(np.full(len(arr), classes.index(mod), dtype=np.int64))
        ss.append(np.full(len(arr), int(snr), dtype=np.int64))
    if not xs:
        raise ValueError(f"load_radioml2016: no examples of {classes} in {path}")
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ss)
