"""Membrane fixed-point arithmetic of the S2N2 LIF neuron — written once, used everywhere.

Khodamoradi 2021, ch. 2: Eq 2.2 (spike-addressed input current), Eq 2.3
(LIF membrane with reset), Eq 2.4 (threshold comparator) and §2.2.3 / "Synthesis Results" (decay d = 0.875
realised as ``m - (m >> 3)``, i.e. one shift and one subtraction).

Everything here is the *specification* that the python execution of the ``LIF`` / ``LIF_MVAU`` ops, the HLS
C++ (``finn_s2n2/finn/hls/lif_mvau.hpp``), the estimators and the tests share.  The SNN front-end's quantized
torch LIF imports these functions too, so the per-tick functions (``decay``, ``overflow``,
``membrane_update``, ``fire``, ``reset``, ``lif_step``) are written generically: they accept NumPy integer
arrays, Python ints, or integer ``torch`` tensors (only ``>>``, ``-``, ``+``, ``*``, comparisons, ``%`` and
``.clip`` are used, which behave identically — floor semantics — in NumPy and torch).  ``lif_sequence``
(whole samples) is NumPy only: the same arithmetic with in-place ufuncs, checked against ``lif_step`` in the
tests.  ``spike_current`` uses a float64 matrix product, exact while ``|I_t| < 2**53``.

Number format
-------------
The membrane ``m`` is a **signed integer of ``acc_bits`` bits** (two's complement, FINN ``INT<acc_bits>``),
counted in units of one weight LSB.  Weights are integers (FINN ``INT<w>``), the threshold is an integer in
the membrane range.  A fixed-point membrane with ``F`` fractional bits is obtained by scaling weights and
threshold by ``2**F`` before export (``w_int = round(w / scale)``, ``threshold_int = floor(T / scale)``);
the arithmetic below is then exact.

One tick (for every neuron independently); the state of a neuron is its stored membrane ``m`` and, for
``reset == "subtract"``, the 1-bit output ``out_{t-1}`` of the previous tick::

    I_t      = sum_{i in S_t} w_i                         # Eq 2.2, exact (wide accumulator, no overflow)
    m_dec    = m_{t-1} - (m_{t-1} >> k)                   # decay d = 1 - 2**-k, arithmetic shift (floor)
    sub_t    = out_{t-1} * threshold  if reset == "subtract" else 0
    m_t      = overflow(m_dec + I_t - sub_t)              # saturate (default) or wrap to acc_bits, ONCE
    out_t    = 1 if m_t > threshold else 0                # Eq 2.4 (strict '>')
    m_stored = 0    if out_t and reset == "zero"          # Eq 2.3: (1 - out_t) * ...
             = m_t  otherwise                             # ("subtract": the threshold comes off NEXT tick)
    at the last tick of a sample (t == numTicks - 1): m_stored = 0, out = 0   # "last tick" control, §2.2.3

Reset modes (``RESET_MODES``):

* ``"zero"`` — Eq 2.3: ``m_t = (1 - out_{t-1}) * d * m_{t-1} + I_t``.  This is also exactly snnTorch's
  ``Leaky(reset_mechanism="zero")`` (default ``reset_delay=True``): it zeroes the stored membrane where the
  previous tick fired, then computes ``beta * mem + input``.
* ``"subtract"`` — snnTorch's ``Leaky(reset_mechanism="subtract")`` (its default):
  ``m_t = d * m_{t-1} + I_t - out_{t-1} * threshold``, i.e. the threshold is subtracted AFTER the decay, in
  the tick after the spike (snnTorch computes ``reset = (mem > threshold)`` from the stored membrane at the
  start of a tick).  Checked spike for spike against ``snntorch.Leaky`` in
  ``tests/test_s2n2_frontend_snntorch.py``.  (Until this revision the project subtracted the threshold
  before the decay, at the spike tick; that variant is gone.)

Decisions (documented deviations / precisions of the seed):

* The dissertation initialises the hardware accumulator with the decayed membrane and adds weights lane by lane;
  the dissertation does not say what happens on overflow.  We accumulate ``I_t`` in an accumulator wide enough to
  never overflow (``w_bits + ceil(log2(MW)) + 1`` bits) and apply the overflow policy **once per tick** to
  ``m_dec + I_t``.  This makes the result independent of the PE/SIMD folding order (with per-addition
  saturation it would depend on the lane order).  ``overflow="wrap"`` is two's-complement wrap-around
  (equivalent to wrapping after every addition).
* ``decay(m) = m - (m >> k)`` uses an arithmetic (flooring) shift, so negative membranes decay towards
  zero in steps of ``floor(m / 2**k)`` (e.g. ``-1 -> 0``, ``-9 -> -7`` for k = 3).  ``decay`` can never
  leave the membrane range.
* The membrane is reset to zero at the last tick of every sample (the public S2N2 code never resets it
  between samples; the thesis says the last-tick signal "can be used to reset membrane potentials").
* The per-label counters of the last layer (``outputMode="counts"``) count output spikes over the
  ``numTicks`` ticks of one sample and are emitted and cleared at the last tick (§2.2.3, Fig 2.8).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "OVERFLOW_MODES",
    "RESET_MODES",
    "acc_range",
    "check_acc_bits",
    "check_decay_shift",
    "check_threshold",
    "count_bits",
    "current_bits",
    "decay",
    "decay_factor",
    "decay_shift_from_factor",
    "fire",
    "lif_sequence",
    "lif_step",
    "membrane_update",
    "overflow",
    "reset",
    "reset_subtrahend",
    "spike_current",
]

#: Overflow policies of the membrane (applied once per tick to ``decay(m) + I``).
OVERFLOW_MODES = ("saturate", "wrap")
#: Reset mechanisms after a spike: ``"zero"`` is Eq 2.3 (= snnTorch ``reset_mechanism="zero"``);
#: ``"subtract"`` is snnTorch's reset by subtraction (threshold removed after the decay, one tick later).
RESET_MODES = ("zero", "subtract")


# ----------------------------------------------------------------------------------------------- checks
def check_acc_bits(acc_bits, what: str = "acc_bits") -> int:
    """Validate a membrane width: an integer in [2, 32] (the C++ uses ``ap_int<acc_bits>``)."""
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)):
        raise TypeError(f"{what} must be an int (membrane bit width), got {type(acc_bits).__name__}")
    if not 2 <= int(acc_bits) <= 32:
        raise ValueError(f"{what} must be in [2, 32] bits (signed membrane), got {acc_bits}")
    return int(acc_bits)


def check_decay_shift(decay_shift, what: str = "decay_shift") -> int:
    """Validate the shift k of d = 1 - 2**-k: an integer in [1, 31] (k = 3 gives the dissertation's d = 0.875)."""
    if isinstance(decay_shift, bool) or not isinstance(decay_shift, (int, np.integer)):
        raise TypeError(f"{what} must be an int shift k (d = 1 - 2**-k), got {type(decay_shift).__name__}")
    if not 1 <= int(decay_shift) <= 31:
        raise ValueError(f"{what} must be in [1, 31] (d = 1 - 2**-k), got {decay_shift}")
    return int(decay_shift)


def check_threshold(threshold, acc_bits: int, what: str = "threshold") -> int:
    """Validate an integer threshold that lies inside the signed ``acc_bits`` membrane range."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)):
        if isinstance(threshold, (float, np.floating)) and float(threshold).is_integer():
            threshold = int(threshold)
        else:
            raise TypeError(f"{what} must be an integer (membrane units), got {threshold!r}")
    lo, hi = acc_range(acc_bits)
    if not lo <= int(threshold) <= hi:
        raise ValueError(f"{what}={threshold} is outside the membrane range [{lo}, {hi}] of INT{acc_bits}")
    return int(threshold)


# ----------------------------------------------------------------------------------------------- ranges
def acc_range(acc_bits: int) -> tuple[int, int]:
    """Inclusive range ``(lo, hi)`` of a signed two's-complement integer of ``acc_bits`` bits."""
    return -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1


def current_bits(mw: int, weight_bits: int) -> int:
    """Bits of a signed accumulator that holds any Eq 2.2 current ``I_t`` of ``mw`` ``INT<weight_bits>``
    weights without overflow: ``weight_bits + ceil(log2(mw)) + 1`` (the +1 is slack for the sign)."""
    return int(weight_bits) + max(1, math.ceil(math.log2(max(int(mw), 2)))) + 1


def count_bits(num_ticks: int) -> int:
    """Bits of an unsigned per-label spike counter that counts up to ``num_ticks`` spikes."""
    return max(1, int(num_ticks).bit_length())


def decay_factor(decay_shift: int) -> float:
    """The leak d of Eq 2.3 realised by ``decay_shift`` k: ``d = 1 - 2**-k`` (k = 3 -> 0.875)."""
    return 1.0 - 2.0 ** (-int(decay_shift))


def decay_shift_from_factor(d: float, what: str = "decay") -> int:
    """Inverse of :func:`decay_factor`; raises ValueError if ``d`` is not exactly ``1 - 2**-k`` (k >= 1)."""
    d = float(d)
    if not 0.0 < d < 1.0:
        raise ValueError(f"{what}={d} must lie in (0, 1) (Eq 2.3)")
    k = -math.log2(1.0 - d)
    if not abs(k - round(k)) < 1e-9 or round(k) < 1:
        raise ValueError(
            f"{what}={d} is not a shift-subtract decay: it must equal 1 - 2**-k for an integer k >= 1 "
            f"(e.g. 0.5, 0.75, 0.875, 0.9375)"
        )
    return int(round(k))


# ----------------------------------------------------------------------------------------------- ops
def _as_int(x):
    """Python ints / lists become int64 NumPy arrays; NumPy arrays and torch tensors pass through."""
    if isinstance(x, (int, np.integer, list, tuple)):
        return np.asarray(x, dtype=np.int64)
    return x


def overflow(x, acc_bits: int, mode: str = "saturate"):
    """Bring ``x`` into the signed ``acc_bits`` range: clip (``"saturate"``) or two's-complement wrap."""
    x = _as_int(x)
    lo, hi = acc_range(acc_bits)
    if mode == "saturate":
        return x.clip(lo, hi)
    if mode == "wrap":
        return (x - lo) % (1 << acc_bits) + lo
    raise ValueError(f"overflow mode must be one of {OVERFLOW_MODES}, got {mode!r}")


def decay(m, decay_shift: int):
    """Shift-subtract leak ``d * m`` with d = 1 - 2**-k: ``m - (m >> k)`` (arithmetic shift, floor)."""
    m = _as_int(m)
    return m - (m >> int(decay_shift))


def spike_current(spikes, weights):
    """Eq 2.2: ``I_t = sum_{i in S_t} w_i`` for a binary spike tensor ``(..., MW)`` and weights ``(MW, MH)``.

    Exact integer result (int64) of shape ``(..., MH)``.  Only positions with a 1 contribute.
    """
    s = np.asarray(spikes)
    w = np.asarray(weights, dtype=np.int64)
    # a float64 matmul is exact here (|I| < 2**53) and uses BLAS; int64 matmul in NumPy does not.
    out = s.astype(np.float64) @ w.astype(np.float64)
    return out.astype(np.int64)


def membrane_update(
    m_stored, current, decay_shift: int, acc_bits: int, overflow_mode: str = "saturate", subtrahend=0
):
    """Eq 2.3 without the zero-reset term: ``m_t = overflow(decay(m_{t-1}) + I_t - subtrahend)``.

    ``subtrahend`` is :func:`reset_subtrahend` of the previous tick (``out_{t-1} * threshold`` for
    ``reset="subtract"``, 0 otherwise); the overflow policy is applied once to the whole sum."""
    return overflow(decay(m_stored, decay_shift) + current - subtrahend, acc_bits, overflow_mode)


def fire(m, threshold: int):
    """Eq 2.4: spike (1) where ``m > threshold`` else 0, as an integer array/tensor."""
    return (m > threshold) * 1


def reset(m, out, threshold: int, acc_bits: int, reset_mode: str = "zero", overflow_mode: str = "saturate"):
    """The reset selector of Fig 2.7: the membrane value stored back after the comparator.

    ``reset_mode="zero"`` is Eq 2.3 (``(1 - out_t) * m_t``).  ``"subtract"`` stores ``m_t`` unchanged: the
    threshold is subtracted after the decay in the next tick (:func:`reset_subtrahend`,
    :func:`membrane_update`), as snnTorch's ``Leaky`` does.  ``threshold``, ``acc_bits`` and
    ``overflow_mode`` are accepted for a uniform signature (the stored value never needs an overflow).
    """
    if reset_mode == "zero":
        return m * (1 - out)
    if reset_mode == "subtract":
        return m
    raise ValueError(f"reset mode must be one of {RESET_MODES}, got {reset_mode!r}")


def reset_subtrahend(out, threshold: int, reset_mode: str = "zero"):
    """What the next tick subtracts after its decay: ``out_t * threshold`` for ``"subtract"``, else 0."""
    if reset_mode == "subtract":
        return out * threshold
    if reset_mode == "zero":
        return out * 0
    raise ValueError(f"reset mode must be one of {RESET_MODES}, got {reset_mode!r}")


def lif_step(
    m_stored,
    current,
    *,
    decay_shift: int,
    threshold: int,
    acc_bits: int,
    overflow_mode: str = "saturate",
    reset_mode: str = "zero",
    prev_out=0,
):
    """One tick of the LIF neuron: returns ``(out_t, m_stored_next)`` (no last-tick reset here).

    The neuron state is ``(m_stored, prev_out)``: pass the ``out_t`` returned by one tick as ``prev_out`` of
    the next (it matters for ``reset_mode="subtract"`` only; 0 at the start of a sample)."""
    sub = reset_subtrahend(_as_int(prev_out), threshold, reset_mode)
    m = membrane_update(m_stored, current, decay_shift, acc_bits, overflow_mode, sub)
    out = fire(m, threshold)
    return out, reset(m, out, threshold, acc_bits, reset_mode, overflow_mode)


def lif_sequence(
    currents,
    *,
    decay_shift: int,
    threshold: int,
    acc_bits: int,
    overflow_mode: str = "saturate",
    reset_mode: str = "zero",
    output_mode: str = "spikes",
    tick_axis: int = 1,
):
    """Run the LIF neuron over the ticks of whole samples (NumPy).

    ``currents``: integer array with the ticks of one sample on ``tick_axis`` (default ``(N, T, ...)``);
    every sample starts with a zero membrane (the last-tick reset of the previous sample).
    Returns int64 spikes of the same shape (``output_mode="spikes"``) or the per-neuron spike counts with
    the tick axis removed (``output_mode="counts"``, Fig 2.8 counters).
    """
    cur = np.moveaxis(np.asarray(currents, dtype=np.int64), tick_axis, 0)
    check_decay_shift(decay_shift)
    if overflow_mode not in OVERFLOW_MODES:
        raise ValueError(f"overflow mode must be one of {OVERFLOW_MODES}, got {overflow_mode!r}")
    if reset_mode not in RESET_MODES:
        raise ValueError(f"reset mode must be one of {RESET_MODES}, got {reset_mode!r}")
    if output_mode not in ("spikes", "counts"):
        raise ValueError(f"output_mode must be 'spikes' or 'counts', got {output_mode!r}")
    # Same arithmetic as lif_step (decay, membrane_update, fire, reset), with in-place ufuncs: the tick
    # recurrence cannot be vectorised, so a few ufunc calls per tick keep the python execution fast.
    lo, hi = acc_range(acc_bits)
    m = np.zeros(cur.shape[1:], dtype=np.int64)
    tmp = np.empty_like(m)
    spikes = np.empty(cur.shape, dtype=bool)
    subtract = reset_mode == "subtract"
    for t in range(cur.shape[0]):
        np.right_shift(m, decay_shift, out=tmp)
        np.subtract(m, tmp, out=m)  # decay
        np.add(m, cur[t], out=m)  # + I_t
        if subtract and t > 0:
            np.subtract(m, spikes[t - 1] * np.int64(threshold), out=m)  # - out_{t-1} * thr (after decay)
        if overflow_mode == "saturate":
            np.minimum(m, hi, out=m)  # ufuncs: np.clip's python wrapper costs more than the arithmetic
            np.maximum(m, lo, out=m)
        else:
            np.subtract(m, lo, out=m)
            np.remainder(m, 1 << acc_bits, out=m)
            np.add(m, lo, out=m)
        np.greater(m, threshold, out=spikes[t])  # Eq 2.4
        if not subtract:
            np.putmask(m, spikes[t], 0)  # Eq 2.3 reset selector
    if output_mode == "counts":
        return spikes.sum(axis=0, dtype=np.int64)
    return np.moveaxis(spikes.astype(np.int64), 0, tick_axis)
