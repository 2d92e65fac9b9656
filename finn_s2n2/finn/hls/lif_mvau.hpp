// LIF matrix-vector unit (S2N2) — self-contained HLS C++ for Vitis HLS and g++ C-simulation.
//
// Khodamoradi 2021, §2.2.3 and Fig 2.7 (lower): the MVTU of FINN
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
// Structure of FINN's MVAU (one flattened II=1 loop over the P x NF x SF folds of a frame, input words
// buffered while the NF neuron folds reuse them, compile-time parameters, one weight memory per PE with the
// SIMD lanes in one word, membranes per PE).  One call of LIF_MVAU processes num_frames frames; a frame is one tick and
// the tick counter, membranes, previous-spike bits, counters and delay line are state of the unit.
//
// Written for this project (not derived from finn-hlslib). Only needs ap_int.h and hls_stream.h.
#ifndef S2N2_LIF_MVAU_HPP
#define S2N2_LIF_MVAU_HPP

#include <ap_int.h>
#include <hls_stream.h>

namespace s2n2 {

// Signed ACC_BITS-wide overflow policy applied to a wide intermediate value.
template <unsigned ACC_BITS, bool SATURATE>
ap_int<ACC_BITS> lif_overflow(ap_int<66> x) {
#pragma HLS INLINE
    const ap_int<66> hi = (ap_int<66>(1) << (ACC_BITS - 1)) - 1;
    const ap_int<66> lo = -(ap_int<66>(1) << (ACC_BITS - 1));
    if (SATURATE) {
        if (x > hi) return ap_int<ACC_BITS>(hi);
        if (x < lo) return ap_int<ACC_BITS>(lo);
    }
    return ap_int<ACC_BITS>(x);  // truncation = two's-complement wrap-around
}

// Shift-subtract leak: m - (m >> K), arithmetic (flooring) shift; never leaves the membrane range.
template <unsigned ACC_BITS, unsigned K>
ap_int<ACC_BITS> lif_decay(ap_int<ACC_BITS> m) {
#pragma HLS INLINE
    const ap_int<ACC_BITS + 1> mm = m;
    const ap_int<ACC_BITS + 1> sh = (K >= ACC_BITS) ? ap_int<ACC_BITS + 1>(m < 0 ? -1 : 0) : ap_int<ACC_BITS + 1>(mm >> K);
    return ap_int<ACC_BITS>(mm - sh);
}

// The LIF matrix-vector unit.
//   MW x MH matrix, SIMD lanes, PE processing elements; T ticks per sample (the last tick clears the state
//   and, with COUNTS, emits the per-neuron counters); P output positions per tick (OH*OW after a sliding
//   window, 1 for dense); decay d = 1 - 2^-K; threshold THR; SATURATE or wrap; RESET_SUB ("subtract") or
//   reset to zero; D ticks of output delay (spikes mode; counts drop the spikes of the last D ticks);
//   OBITS bits per output element; ACC_BITS membrane; CUR_BITS Eq 2.2 current register (no overflow).
//   weights[pe][s][nf * SF + sf] = W[row = sf*SIMD + s][col = nf*PE + pe]
// Stream order: per frame, per position p, per neuron fold nf: SF input words of SIMD spike bits in (read
// once per position, buffered for the other folds) and one output word of PE elements out.
template <unsigned MW, unsigned MH, unsigned SIMD, unsigned PE, unsigned T, unsigned P, unsigned K, long long THR,
          bool SATURATE, bool RESET_SUB, bool COUNTS, unsigned D, unsigned OBITS, unsigned ACC_BITS, unsigned CUR_BITS,
          typename TW>
void LIF_MVAU(hls::stream<ap_uint<SIMD> > &in, hls::stream<ap_uint<PE * OBITS> > &out,
              const TW weights[PE][SIMD][(MH / PE) * (MW / SIMD)], unsigned num_frames) {
    constexpr unsigned SF = MW / SIMD;  // synapse folds
    constexpr unsigned NF = MH / PE;    // neuron folds
    constexpr unsigned NMEM = P * NF;   // membranes per PE
    constexpr unsigned NDL = (D > 0 && !COUNTS) ? D * NMEM : 1;
    static_assert(MW % SIMD == 0 && MH % PE == 0, "SIMD must divide MW and PE must divide MH");
    static_assert(ACC_BITS >= 2 && ACC_BITS <= 32, "membrane of 2..32 bits");
    // one weight memory per PE whose word holds the SIMD lanes (FINN's MVAU weight layout)
#pragma HLS ARRAY_PARTITION variable = weights complete dim = 1
#pragma HLS ARRAY_RESHAPE variable = weights complete dim = 2
    static ap_int<ACC_BITS> mem[PE][NMEM];              // membrane memory (BRAM in the estimates)
    static ap_uint<1> prev[PE][RESET_SUB ? NMEM : 1];   // previous-tick spikes (reset "subtract")
    static ap_uint<32> cnt[PE][COUNTS ? NMEM : 1];      // per-label spike counters (Fig 2.8)
    static ap_uint<1> dline[PE][NDL];                   // output delay line
    static unsigned tick = 0;                           // in-hardware tick counter
    static bool init = false;
#pragma HLS ARRAY_PARTITION variable = mem complete dim = 1
#pragma HLS ARRAY_PARTITION variable = prev complete dim = 1
#pragma HLS ARRAY_PARTITION variable = cnt complete dim = 1
#pragma HLS ARRAY_PARTITION variable = dline complete dim = 1
    if (!init) {
        for (unsigned pe = 0; pe < PE; pe++) {
            for (unsigned i = 0; i < NMEM; i++) mem[pe][i] = 0;
            for (unsigned i = 0; i < (RESET_SUB ? NMEM : 1); i++) prev[pe][i] = 0;
            for (unsigned i = 0; i < (COUNTS ? NMEM : 1); i++) cnt[pe][i] = 0;
            for (unsigned i = 0; i < NDL; i++) dline[pe][i] = 0;
        }
        init = true;
    }
    const ap_int<ACC_BITS> thr = ap_int<ACC_BITS>(THR);
    ap_uint<SIMD> inbuf[SF];  // the MVTU input buffer of Fig 2.6: one position's input vector
    ap_int<CUR_BITS> acc[PE];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 1
    for (unsigned frame = 0; frame < num_frames; frame++) {
        const bool last = (tick == T - 1);  // last-tick control signal
        unsigned sf = 0, nf = 0, p = 0;
        for (unsigned i = 0; i < P * NF * SF; i++) {
#pragma HLS PIPELINE II = 1
            ap_uint<SIMD> word;
            if (nf == 0) {
                word = in.read();
                inbuf[sf] = word;
            } else {
                word = inbuf[sf];
            }
            if (sf == 0) {
                for (unsigned pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
                    acc[pe] = 0;
                }
            }
            // Eq 2.2: the spike bits address the weights; only set lanes add their weight
            for (unsigned pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
                ap_int<CUR_BITS> part = 0;
                for (unsigned s = 0; s < SIMD; s++) {
#pragma HLS UNROLL
                    if (word[s]) part += weights[pe][s][nf * SF + sf];
                }
                acc[pe] += part;
            }
            if (sf == SF - 1) {
                const unsigned idx = p * NF + nf;
                ap_uint<PE * OBITS> oword = 0;
                for (unsigned pe = 0; pe < PE; pe++) {
#pragma HLS UNROLL
                    // accumulator starts from the decayed membrane (Fig 2.7 lower), Eq 2.3; reset "subtract":
                    // the previous tick's spike takes the threshold off after the decay
                    const ap_int<ACC_BITS> m_dec = lif_decay<ACC_BITS, K>(mem[pe][idx]);
                    const ap_int<66> sub = (RESET_SUB && prev[pe][RESET_SUB ? idx : 0] == 1) ? ap_int<66>(THR) : ap_int<66>(0);
                    const ap_int<ACC_BITS> m_t = lif_overflow<ACC_BITS, SATURATE>(ap_int<66>(m_dec) + ap_int<66>(acc[pe]) - sub);
                    const bool spike = m_t > thr;  // comparator, Eq 2.4
                    // reset selector: zero (Eq 2.3) or keep m_t ("subtract" acts next tick); last tick clears
                    mem[pe][idx] = (last || (spike && !RESET_SUB)) ? ap_int<ACC_BITS>(0) : m_t;
                    if (RESET_SUB) prev[pe][RESET_SUB ? idx : 0] = (spike && !last) ? 1 : 0;
                    ap_uint<32> val;
                    if (COUNTS) {
                        const unsigned ci = COUNTS ? idx : 0;
                        // a delay D drops the spikes of the last D ticks from the counters
                        if (spike && tick + D < T) cnt[pe][ci] = cnt[pe][ci] + 1;
                        val = cnt[pe][ci];
                        if (last) cnt[pe][ci] = 0;
                    } else if (D == 0) {
                        val = spike ? 1 : 0;
                    } else {
                        const unsigned slot = (D > 0 && !COUNTS) ? (tick % (D > 0 ? D : 1)) * NMEM + idx : 0;
                        val = (tick >= D) ? ap_uint<32>(dline[pe][slot]) : ap_uint<32>(0);
                        dline[pe][slot] = spike ? 1 : 0;
                    }
                    for (unsigned b = 0; b < OBITS; b++) {
#pragma HLS UNROLL
                        oword[pe * OBITS + b] = val[b];
                    }
                }
                if (!COUNTS || last) out.write(oword);
                sf = 0;
                if (++nf == NF) {
                    nf = 0;
                    p++;
                }
            } else {
                sf++;
            }
        }
        tick = last ? 0u : tick + 1;  // tick counter
    }
}

}  // namespace s2n2

#endif
