// LIF matrix-vector unit (S2N2) — self-contained HLS C++ for Vitis HLS and g++ C-simulation.
//
// Seed: shared/seeds/002_109d4a7c65ddce44.txt chapter 2, §2.2.3 and Fig 2.7 (lower): the MVTU of FINN
// with PE/SIMD folding where
//   * the accumulator starts from the decayed membrane d*m_{t-1}, d = 1 - 2^-K realised as m - (m >> K),
//   * SIMD lanes load a weight only where the input spike bit is 1 (Eq 2.2),
//   * a comparator produces the output spike (Eq 2.4, m_t > threshold),
//   * a reset selector stores 0 (Eq 2.3, reset "zero") or keeps m_t (reset "subtract", snnTorch Leaky's
//     semantics: the threshold is subtracted after the decay in the NEXT tick, so the neuron state is the
//     membrane plus its 1-bit output of the previous tick: m_t = ovf(d*m_{t-1} + I_t - out_{t-1}*thr)),
//   * the last-tick signal clears membranes (and the last layer's per-label counters, Fig 2.8).
// Fixed per-layer delays (§2.2.2) are applied once at this unit's output as a D-tick delay line.
//
// Bit-exact twin of finn_s2n2/numerics.py (the specification):
//   I_t is accumulated in a CUR_BITS-wide accumulator that cannot overflow, then the overflow policy
//   (saturate or two's-complement wrap) is applied ONCE to decay(m) + I_t; see numerics.py for why.
//
// Written for this project (not derived from finn-hlslib). Only needs ap_int.h and hls_stream.h.
#ifndef S2N2_LIF_MVAU_HPP
#define S2N2_LIF_MVAU_HPP

#include <ap_int.h>
#include <hls_stream.h>

namespace s2n2 {

// Run-time configuration of one LIF_MVAU instance (constant-folded by HLS in the templated wrapper).
struct LifCfg {
    unsigned MW, MH, SIMD, PE;  // matrix width/height, lanes, processing elements
    unsigned T;                 // ticks per sample (last tick resets membranes / counters)
    unsigned P;                 // output positions per tick (OH*OW for a convolution, 1 for dense)
    unsigned K;                 // decay shift: d = 1 - 2^-K
    long long threshold;        // Eq 2.4 threshold, inside the membrane range
    bool saturate;              // true: saturate, false: wrap (two's complement)
    bool reset_subtract;        // false: reset to zero (Eq 2.3), true: subtract threshold next tick
    bool counts;                // false: emit spikes each tick, true: emit counters at the last tick
    unsigned D;                 // total delay (ticks) applied at the output
    unsigned OBITS;             // bits per output element (1 for spikes, count bits for counters)
};

// Signed ACC_BITS-wide overflow policy applied to a wide intermediate value.
template <unsigned ACC_BITS>
ap_int<ACC_BITS> lif_overflow(ap_int<66> x, bool saturate) {
#pragma HLS INLINE
    const ap_int<66> hi = (ap_int<66>(1) << (ACC_BITS - 1)) - 1;
    const ap_int<66> lo = -(ap_int<66>(1) << (ACC_BITS - 1));
    if (saturate) {
        if (x > hi) return ap_int<ACC_BITS>(hi);
        if (x < lo) return ap_int<ACC_BITS>(lo);
    }
    return ap_int<ACC_BITS>(x);  // truncation = two's-complement wrap-around
}

// Shift-subtract leak: m - (m >> K), arithmetic (flooring) shift.
template <unsigned ACC_BITS>
ap_int<ACC_BITS> lif_decay(ap_int<ACC_BITS> m, unsigned K) {
#pragma HLS INLINE
    ap_int<ACC_BITS + 1> mm = m;
    ap_int<ACC_BITS + 1> sh = (K >= ACC_BITS) ? ap_int<ACC_BITS + 1>(m < 0 ? -1 : 0) : ap_int<ACC_BITS + 1>(mm >> K);
    return ap_int<ACC_BITS>(mm - sh);  // never leaves the membrane range
}

// Core of the unit: streams num_frames frames (one frame = one tick) of P input vectors (MW/SIMD words of
// SIMD spike bits each).  `tick` is the in-hardware tick counter (state kept between calls): frame k of a
// call is tick `tick`, the counter wraps after T ticks, and the last tick clears membranes and counters.
//   TI: input word (>= SIMD bits), TO: output word (>= PE*OBITS bits), TW: weight element type.
//   weights[((pe*NF + nf)*SF + sf)*SIMD + s] = W[row = sf*SIMD + s][col = nf*PE + pe]  (PE-partitioned)
//   mem:   membrane memory, P*MH entries, index (p*NF + nf)*PE + pe  (zero at the start)
//   prev:  previous-tick output bits, P*MH entries (reset "subtract"), zero at the start
//   cnt:   per-neuron counters, P*MH entries (counts mode), zero at the start
//   dline: delay line, D*P*MH bits (spikes mode with D > 0)
//   buf:   input buffer of MW/SIMD words (the MVTU input buffer of Fig 2.6)
template <unsigned ACC_BITS, unsigned CUR_BITS, typename TI, typename TO, typename TW>
void lif_mvau_core(hls::stream<TI> &in, hls::stream<TO> &out, const TW *weights, ap_int<ACC_BITS> *mem,
                   ap_uint<1> *prev, ap_uint<32> *cnt, ap_uint<1> *dline, TI *buf, const LifCfg &c, unsigned num_frames,
                   unsigned &tick) {
    const unsigned SF = c.MW / c.SIMD;
    const unsigned NF = c.MH / c.PE;
    const ap_int<ACC_BITS> thr = ap_int<ACC_BITS>(c.threshold);
    for (unsigned frame = 0; frame < num_frames; frame++) {
        const bool last = (tick == c.T - 1);  // last-tick control signal
        for (unsigned p = 0; p < c.P; p++) {
            for (unsigned sf = 0; sf < SF; sf++) {
#pragma HLS PIPELINE II = 1
                buf[sf] = in.read();
            }
            for (unsigned nf = 0; nf < NF; nf++) {
                TO oword = 0;
                for (unsigned pe = 0; pe < c.PE; pe++) {
#pragma HLS UNROLL
                    // Eq 2.2: the spike bits address the weights; only set lanes load and add
                    ap_int<CUR_BITS> cur = 0;
                    for (unsigned sf = 0; sf < SF; sf++) {
                        const TI word = buf[sf];
                        for (unsigned s = 0; s < c.SIMD; s++) {
#pragma HLS UNROLL
                            if (word[s]) cur += weights[((pe * NF + nf) * SF + sf) * c.SIMD + s];
                        }
                    }
                    const unsigned idx = (p * NF + nf) * c.PE + pe;
                    // accumulator initialised with the decayed membrane (Fig 2.7 lower), Eq 2.3
                    const ap_int<ACC_BITS> m_dec = lif_decay<ACC_BITS>(mem[idx], c.K);
                    // reset "subtract": the previous tick's spike takes the threshold off after the decay
                    const ap_int<66> sub = (c.reset_subtract && prev[idx] == 1) ? ap_int<66>(thr) : ap_int<66>(0);
                    const ap_int<ACC_BITS> m_t =
                        lif_overflow<ACC_BITS>(ap_int<66>(m_dec) + ap_int<66>(cur) - sub, c.saturate);
                    const bool spike = m_t > thr;  // comparator, Eq 2.4
                    // reset selector: zero (Eq 2.3) or keep m_t (subtract: applied next tick)
                    const ap_int<ACC_BITS> m_store = (spike && !c.reset_subtract) ? ap_int<ACC_BITS>(0) : m_t;
                    mem[idx] = last ? ap_int<ACC_BITS>(0) : m_store;  // last tick: membrane reset
                    if (c.reset_subtract) prev[idx] = (spike && !last) ? 1 : 0;
                    ap_uint<32> val;
                    if (c.counts) {
                        // counter of label idx; a delay D drops the spikes of the last D ticks
                        if (spike && tick + c.D < c.T) cnt[idx] = cnt[idx] + 1;
                        val = cnt[idx];
                        if (last) cnt[idx] = 0;
                    } else if (c.D == 0) {
                        val = spike ? 1 : 0;
                    } else {
                        const unsigned slot = (tick % c.D) * (c.P * c.MH) + idx;
                        val = (tick >= c.D) ? ap_uint<32>(dline[slot]) : ap_uint<32>(0);
                        dline[slot] = spike ? 1 : 0;
                    }
                    for (unsigned b = 0; b < c.OBITS; b++) {
#pragma HLS UNROLL
                        oword[pe * c.OBITS + b] = val[b];
                    }
                }
                if (!c.counts || last) out.write(oword);
            }
        }
        tick = last ? 0u : tick + 1;  // tick counter
    }
}

// Synthesisable wrapper with every parameter fixed at compile time (one instance per FINN node).
template <unsigned MW, unsigned MH, unsigned SIMD, unsigned PE, unsigned T, unsigned P, unsigned K, long long THR,
          bool SATURATE, bool RESET_SUB, bool COUNTS, unsigned D, unsigned OBITS, unsigned ACC_BITS, unsigned CUR_BITS,
          typename TW>
void LIF_MVAU(hls::stream<ap_uint<SIMD> > &in, hls::stream<ap_uint<PE * OBITS> > &out, const TW *weights,
              unsigned num_frames) {
    static ap_int<ACC_BITS> mem[P * MH];  // membrane memory (BRAM in the estimates)
    static ap_uint<1> prev[RESET_SUB ? P * MH : 1];  // previous-tick spikes (reset "subtract")
    static ap_uint<32> cnt[COUNTS ? P * MH : 1];
    static ap_uint<1> dline[(D > 0 && !COUNTS) ? D * P * MH : 1];
    static unsigned tick = 0;  // in-hardware tick counter: one call = num_frames frames (ticks)
    static bool init = false;
    if (!init) {
        for (unsigned i = 0; i < P * MH; i++) mem[i] = 0;
        for (unsigned i = 0; i < (RESET_SUB ? P * MH : 1); i++) prev[i] = 0;
        for (unsigned i = 0; i < (COUNTS ? P * MH : 1); i++) cnt[i] = 0;
        for (unsigned i = 0; i < ((D > 0 && !COUNTS) ? D * P * MH : 1); i++) dline[i] = 0;
        init = true;
    }
    ap_uint<SIMD> buf[MW / SIMD];
    const LifCfg c = {MW, MH, SIMD, PE, T, P, K, THR, SATURATE, RESET_SUB, COUNTS, D, OBITS};
    lif_mvau_core<ACC_BITS, CUR_BITS, ap_uint<SIMD>, ap_uint<PE * OBITS>, TW>(in, out, weights, mem, prev, cnt, dline, buf, c,
                                                                              num_frames, tick);
}

}  // namespace s2n2

#endif
