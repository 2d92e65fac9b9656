// Bipolar Morphological (BM) 2D convolution for hls4ml (Vivado / Vitis backends, io_parallel and io_stream).
//
// Limonova et al., "The BM Convolutional Layer":
//     J = sum_{a,b in {+,-}} p^a p^b exp( ln I^a (.) v^b ) + bias
// with "log and exp once per value, addition and maximum inside the window" (Hardware implementation).
//
// This header is the C++ twin of bm_ops/fixedpoint.py (the specification): same tables (written by hls4ml
// as weight arrays, computed once in Python), same integer arithmetic, bit for bit:
//   1. L = (e - in_frac) * 2^FL + log_table[idx]   (e = leading-one position of |x|, idx = next T bits)
//   2. S = L + V (V = round(2^FL * v * log2 e), sentinel = -inf), four running maxima per output
//   3. term = exp_table[g >> (FL - Te)] * 2^(n + FA - FE), n = floor(z / 2^FL), g = z mod 2^FL,
//      right shifts round half up
//   4. acc = T++ - T+- - T-+ + T-- + B  (exact), res = (res_T) acc  (res_T's own rounding/overflow mode)
// Base-2 log/exp are used instead of ln/exp: exp(ln x + v) = 2^(log2 x + v log2 e), log2 e folded into V.
//
// Every parameter is a compile-time constant of CONFIG_T (see bm_conv2d_config); every value has its exact
// width: logs ap_int<log_bits>, signs ap_int<2>, window sums ap_int<sum_bits>, running maxima
// ap_int<sum_bits + 1> (one code for "no valid tap"), exp terms and the accumulator ap_int<accum_bits> (the
// widths are derived in Python so that nothing can overflow).
// ReuseFactor: the n_chan*filt_height*filt_width taps x n_filt filters of one output pixel are processed in
// reuse_factor = reuse_taps * reuse_filt clocks (a pipelined loop, II = 1, with the rest unrolled).
#ifndef NNET_BM_CONV_H_
#define NNET_BM_CONV_H_

#include "ap_fixed.h"
#include "ap_int.h"
#include "hls_stream.h"
#include "nnet_common.h"

namespace nnet {

struct bm_conv2d_config {
    // geometry (channels_last)
    static const unsigned in_height = 8;
    static const unsigned in_width = 8;
    static const unsigned n_chan = 1;
    static const unsigned filt_height = 3;
    static const unsigned filt_width = 3;
    static const unsigned n_filt = 1;
    static const unsigned stride_height = 1;
    static const unsigned stride_width = 1;
    static const unsigned pad_top = 0;
    static const unsigned pad_left = 0;
    static const unsigned out_height = 6;
    static const unsigned out_width = 6;
    // input fixed-point format
    static const unsigned in_bits = 16;
    static const bool in_signed = true;
    static const int in_frac = 10;
    // approximation parameters
    static const unsigned log_table_bits = 10;
    static const unsigned log_frac_bits = 14;
    static const unsigned exp_table_bits = 10;
    static const unsigned exp_frac_bits = 16;
    static const unsigned accum_frac_bits = 16;
    // exact widths (bm_ops.fixedpoint): log-domain weights (incl. the -inf code), logs, window sums, accumulator
    static const unsigned weight_bits = 16;
    static const unsigned log_bits = 20;
    static const unsigned sum_bits = 24;
    static const unsigned accum_bits = 32;
    // ReuseFactor = reuse_taps * reuse_filt (reuse_taps divides the taps, reuse_filt divides n_filt)
    static const unsigned reuse_factor = 1;
    static const unsigned reuse_taps = 1;
    static const unsigned reuse_filt = 1;
    // io_stream line buffer in pixels (bm_ops.hls4ml.config.line_buffer_size)
    static const unsigned lb_size = 20;
    typedef ap_int<16> weight_t;
    typedef ap_int<32> bias_t;
    typedef ap_uint<15> log_table_t;
    typedef ap_uint<18> exp_table_t;
    typedef ap_fixed<32, 16> accum_t;
};

// number of bits of the unsigned integer N (N >= 1)
template <unsigned N> struct bm_ubits {
    static const unsigned value = 1 + bm_ubits<N / 2>::value;
};
template <> struct bm_ubits<0> {
    static const unsigned value = 0;
};

// the exact types and derived constants of one layer
template <typename CONFIG_T> struct bm_types {
    static const unsigned taps = CONFIG_T::n_chan * CONFIG_T::filt_height * CONFIG_T::filt_width;
    static const unsigned taps_per_clock = taps / CONFIG_T::reuse_taps;
    static const unsigned filt_per_clock = CONFIG_T::n_filt / CONFIG_T::reuse_filt;
    // leading-one position e in [0, in_bits - 1]
    static const unsigned lead_bits = bm_ubits<CONFIG_T::in_bits - 1>::value > 0 ? bm_ubits<CONFIG_T::in_bits - 1>::value : 1;
    // n = floor(z / 2^FL) of a window sum z
    static const unsigned n_bits =
        CONFIG_T::sum_bits > CONFIG_T::log_frac_bits ? CONFIG_T::sum_bits - CONFIG_T::log_frac_bits : 1;
    // n + FA - FE (|FA - FE| <= 40 fits in 7 signed bits)
    static const unsigned shift_bits = (n_bits > 7 ? n_bits : 7) + 1;
    typedef ap_int<CONFIG_T::log_bits> log_t;
    typedef ap_int<2> sgn_t;
    typedef ap_int<CONFIG_T::sum_bits> sum_t;
    // a window sum or "no valid tap": one bit wider, the empty code -2^sum_bits is below every real sum
    typedef ap_int<CONFIG_T::sum_bits + 1> max_t;
    typedef ap_int<CONFIG_T::accum_bits> acc_t;
    typedef ap_int<CONFIG_T::weight_bits> weight_code_t;
};

// the -inf code of the log-domain weights: -2^(weight_bits-1)
template <typename CONFIG_T> inline typename bm_types<CONFIG_T>::weight_code_t bm_sentinel() {
    #pragma HLS INLINE
    typename bm_types<CONFIG_T>::weight_code_t s = 0;
    s[CONFIG_T::weight_bits - 1] = 1;
    return s;
}

// step 1: sign and base-2 log of one input value (one log per value); lx = 0 for x = 0 (ln 0 = -inf: sgn = 0)
template <class data_T, typename CONFIG_T>
void bm_log_value(const data_T &x, const typename CONFIG_T::log_table_t log_table[1 << CONFIG_T::log_table_bits],
                  typename bm_types<CONFIG_T>::log_t &lx, typename bm_types<CONFIG_T>::sgn_t &sgn) {
    #pragma HLS INLINE
    typedef bm_types<CONFIG_T> B;
    const unsigned W = CONFIG_T::in_bits;
    const unsigned T = CONFIG_T::log_table_bits;
    const ap_uint<W> bits = x.range(W - 1, 0);
    ap_int<W + 1> v;
    if (CONFIG_T::in_signed) {
        v = ap_int<W>(bits);
    } else {
        v = bits;
    }
    const ap_uint<W> m = (v < 0) ? ap_uint<W>(-v) : ap_uint<W>(v); // |min| = 2^(W-1) fits in W unsigned bits
    sgn = (v > 0) ? 1 : ((v < 0) ? -1 : 0);
    ap_uint<B::lead_bits> e = 0;
BMLeadingOne:
    for (unsigned b = 1; b < W; b++) {
        #pragma HLS UNROLL
        if (m[b])
            e = b;
    }
    ap_uint<W + T> ext = m;
    ext <<= T;
    const ap_uint<T> idx = ext >> e; // the T bits right below the leading one
    typename B::log_t l = e;
    l -= CONFIG_T::in_frac;
    l <<= CONFIG_T::log_frac_bits;
    l += log_table[idx];
    lx = (m == 0) ? typename B::log_t(0) : l;
}

// step 3: 2^(z / 2^FL) in the accumulator's raw units (accum_frac_bits fraction bits), round half up
template <typename CONFIG_T>
typename bm_types<CONFIG_T>::acc_t bm_exp2(const typename bm_types<CONFIG_T>::sum_t &z,
                                           const typename CONFIG_T::exp_table_t exp_table[1 << CONFIG_T::exp_table_bits]) {
    #pragma HLS INLINE
    typedef bm_types<CONFIG_T> B;
    const unsigned FL = CONFIG_T::log_frac_bits;
    const unsigned FE = CONFIG_T::exp_frac_bits;
    const ap_int<B::n_bits> n = z >> FL; // arithmetic shift = floor
    const ap_uint<FL> g = z;             // z mod 2^FL
    const ap_uint<CONFIG_T::exp_table_bits> j = g >> (FL - CONFIG_T::exp_table_bits);
    const ap_uint<FE + 2> E = exp_table[j]; // in [2^FE, 2^(FE+1)]
    ap_int<B::shift_bits> sh = n;
    sh += (int)CONFIG_T::accum_frac_bits - (int)FE;
    typename B::acc_t t = 0;
    if (sh >= 0) {
        t = E;
        t <<= sh.to_uint(); // fits in accum_bits by construction
    } else {
        const ap_uint<B::shift_bits> k = -sh;
        if (k < FE + 2) {
            ap_uint<FE + 3> r = 1;
            r <<= (k - 1).to_uint();
            r += E;
            r >>= k.to_uint();
            t = r;
        }
    }
    return t;
}

// the "no valid tap" code of a running maximum (ln 0 = -inf): below every real window sum
template <typename CONFIG_T> inline typename bm_types<CONFIG_T>::max_t bm_empty() {
    #pragma HLS INLINE
    typename bm_types<CONFIG_T>::max_t e = 0;
    e[CONFIG_T::sum_bits] = 1;
    return e;
}

// step 2 for one tap and one filter: the window sums L + V+ and L + V- as candidates of the four quadrant maxima
// (0 = (x+, v+), 1 = (x+, v-), 2 = (x-, v+), 3 = (x-, v-)); a zero input (or padding) or a -inf weight gives
// the empty code instead
template <typename CONFIG_T>
void bm_tap(const typename bm_types<CONFIG_T>::sgn_t &s, const typename bm_types<CONFIG_T>::log_t &lx,
            const typename CONFIG_T::weight_t &vp, const typename CONFIG_T::weight_t &vn,
            typename bm_types<CONFIG_T>::max_t &c0, typename bm_types<CONFIG_T>::max_t &c1,
            typename bm_types<CONFIG_T>::max_t &c2, typename bm_types<CONFIG_T>::max_t &c3) {
    #pragma HLS INLINE
    typedef typename bm_types<CONFIG_T>::sum_t sum_t;
    typedef typename bm_types<CONFIG_T>::max_t max_t;
    const sum_t sp = lx + vp;
    const sum_t sn = lx + vn;
    const bool p_ok = vp != bm_sentinel<CONFIG_T>();
    const bool n_ok = vn != bm_sentinel<CONFIG_T>();
    const max_t empty = bm_empty<CONFIG_T>();
    c0 = (s > 0 && p_ok) ? max_t(sp) : empty;
    c1 = (s > 0 && n_ok) ? max_t(sn) : empty;
    c2 = (s < 0 && p_ok) ? max_t(sp) : empty;
    c3 = (s < 0 && n_ok) ? max_t(sn) : empty;
}

// step 4 (cast): exact accumulator -> accum_t -> res_T (res_T's rounding / overflow mode)
template <class res_T, typename CONFIG_T> res_T bm_cast_result(const typename bm_types<CONFIG_T>::acc_t &acc) {
    #pragma HLS INLINE
    typename CONFIG_T::accum_t a;
    a.range(CONFIG_T::accum_bits - 1, 0) = acc.range(CONFIG_T::accum_bits - 1, 0);
    return (res_T)a;
}

// steps 2-4 for one output pixel from its window (logs / signs, tap order (c, kh, kw) as the weights):
// the taps x filters tap operations in reuse_factor clocks, then four exps per filter, then the cast
template <typename CONFIG_T, class res_T>
void bm_window(const typename bm_types<CONFIG_T>::log_t win_log[bm_types<CONFIG_T>::taps],
               const typename bm_types<CONFIG_T>::sgn_t win_sgn[bm_types<CONFIG_T>::taps],
               const typename CONFIG_T::weight_t v_pos[CONFIG_T::n_filt * bm_types<CONFIG_T>::taps],
               const typename CONFIG_T::weight_t v_neg[CONFIG_T::n_filt * bm_types<CONFIG_T>::taps],
               const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt],
               const typename CONFIG_T::exp_table_t exp_table[1 << CONFIG_T::exp_table_bits], res_T out[CONFIG_T::n_filt]) {
    typedef bm_types<CONFIG_T> B;
    typedef typename B::max_t max_t;
    max_t mx[CONFIG_T::n_filt][4];
    #pragma HLS ARRAY_PARTITION variable = mx complete dim = 0
BMInit:
    for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
        #pragma HLS UNROLL
        for (unsigned q = 0; q < 4; q++) {
            #pragma HLS UNROLL
            mx[f][q] = bm_empty<CONFIG_T>();
        }
    }
    nnet::Op_max<max_t> op_max;
BMReuseFilt:
    for (unsigned rf = 0; rf < CONFIG_T::reuse_filt; rf++) {
    BMReuseTaps:
        for (unsigned rt = 0; rt < CONFIG_T::reuse_taps; rt++) {
            #pragma HLS PIPELINE II = 1
        BMFiltBlock:
            for (unsigned j = 0; j < B::filt_per_clock; j++) {
                #pragma HLS UNROLL
                const unsigned f = rf * B::filt_per_clock + j;
                max_t cand[4][B::taps_per_clock];
                #pragma HLS ARRAY_PARTITION variable = cand complete dim = 0
            BMTapBlock:
                for (unsigned k = 0; k < B::taps_per_clock; k++) {
                    #pragma HLS UNROLL
                    const unsigned t = rt * B::taps_per_clock + k;
                    bm_tap<CONFIG_T>(win_sgn[t], win_log[t], v_pos[f * B::taps + t], v_neg[f * B::taps + t], cand[0][k],
                                     cand[1][k], cand[2][k], cand[3][k]);
                }
            BMQuadMax:
                for (unsigned q = 0; q < 4; q++) {
                    #pragma HLS UNROLL
                    // balanced max tree over this clock's taps (hls4ml's reduce), then the running maximum
                    const max_t blk = nnet::reduce<max_t, B::taps_per_clock, nnet::Op_max<max_t> >(cand[q], op_max);
                    mx[f][q] = op_max(mx[f][q], blk);
                }
            }
        }
    }
BMExp:
    for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
        #pragma HLS PIPELINE II = 2
        // four exp-table reads per filter: two clocks on a dual-port ROM
        typename B::acc_t acc = bias[f];
    BMExpQuad:
        for (unsigned q = 0; q < 4; q++) {
            #pragma HLS UNROLL
            if (mx[f][q] != bm_empty<CONFIG_T>()) {
                const typename B::acc_t t = bm_exp2<CONFIG_T>(typename B::sum_t(mx[f][q]), exp_table);
                if (q == 0 || q == 3)
                    acc += t;
                else
                    acc -= t;
            }
        }
        out[f] = bm_cast_result<res_T, CONFIG_T>(acc);
    }
}

// window of output (oh, ow) from the logs / signs of the whole frame (io_parallel)
template <typename CONFIG_T>
void bm_gather_frame(const typename bm_types<CONFIG_T>::log_t logx[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                     const typename bm_types<CONFIG_T>::sgn_t sgn[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                     unsigned oh, unsigned ow, typename bm_types<CONFIG_T>::log_t win_log[bm_types<CONFIG_T>::taps],
                     typename bm_types<CONFIG_T>::sgn_t win_sgn[bm_types<CONFIG_T>::taps]) {
    #pragma HLS INLINE
BMGatherChan:
    for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
        #pragma HLS UNROLL
    BMGatherKh:
        for (unsigned kh = 0; kh < CONFIG_T::filt_height; kh++) {
            #pragma HLS UNROLL
        BMGatherKw:
            for (unsigned kw = 0; kw < CONFIG_T::filt_width; kw++) {
                #pragma HLS UNROLL
                const unsigned t = (c * CONFIG_T::filt_height + kh) * CONFIG_T::filt_width + kw;
                const int ih = (int)(oh * CONFIG_T::stride_height + kh) - (int)CONFIG_T::pad_top;
                const int iw = (int)(ow * CONFIG_T::stride_width + kw) - (int)CONFIG_T::pad_left;
                if (ih >= 0 && ih < (int)CONFIG_T::in_height && iw >= 0 && iw < (int)CONFIG_T::in_width) {
                    const unsigned i = ((unsigned)ih * CONFIG_T::in_width + (unsigned)iw) * CONFIG_T::n_chan + c;
                    win_log[t] = logx[i];
                    win_sgn[t] = sgn[i];
                } else {
                    win_log[t] = 0;
                    win_sgn[t] = 0; // zero padding: ln 0
                }
            }
        }
    }
}

// io_parallel entry point: data / res are channels_last arrays.  Logs once per value (one clock each, one
// shared log table), then per output pixel: gather its window, reuse_factor clocks of add/max, the exps.
template <class data_T, class res_T, typename CONFIG_T>
void bm_conv_2d_cl(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                   res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt],
                   const typename CONFIG_T::weight_t v_pos[CONFIG_T::n_filt * CONFIG_T::n_chan *
                                                          CONFIG_T::filt_height * CONFIG_T::filt_width],
                   const typename CONFIG_T::weight_t v_neg[CONFIG_T::n_filt * CONFIG_T::n_chan *
                                                          CONFIG_T::filt_height * CONFIG_T::filt_width],
                   const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt],
                   const typename CONFIG_T::log_table_t log_table[1 << CONFIG_T::log_table_bits],
                   const typename CONFIG_T::exp_table_t exp_table[1 << CONFIG_T::exp_table_bits]) {
    typedef bm_types<CONFIG_T> B;
    const unsigned n_in = CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan;
    typename B::log_t logx[n_in];
    typename B::sgn_t sgn[n_in];
    #pragma HLS ARRAY_PARTITION variable = logx complete dim = 0
    #pragma HLS ARRAY_PARTITION variable = sgn complete dim = 0
BMLog:
    for (unsigned i = 0; i < n_in; i++) {
        #pragma HLS PIPELINE II = 1
        bm_log_value<data_T, CONFIG_T>(data[i], log_table, logx[i], sgn[i]);
    }
BMOutRow:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    BMOutCol:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            typename B::log_t win_log[B::taps];
            typename B::sgn_t win_sgn[B::taps];
            res_T out[CONFIG_T::n_filt];
            #pragma HLS ARRAY_PARTITION variable = win_log complete dim = 0
            #pragma HLS ARRAY_PARTITION variable = win_sgn complete dim = 0
            #pragma HLS ARRAY_PARTITION variable = out complete dim = 0
            bm_gather_frame<CONFIG_T>(logx, sgn, oh, ow, win_log, win_sgn);
            bm_window<CONFIG_T, res_T>(win_log, win_sgn, v_pos, v_neg, bias, exp_table, out);
        BMWrite:
            for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
                #pragma HLS UNROLL
                res[(oh * CONFIG_T::out_width + ow) * CONFIG_T::n_filt + f] = out[f];
            }
        }
    }
}

// io_stream line buffer: the last CONFIG_T::lb_size pixels of the input (all channels), in the log domain.
// An output (oh, ow) needs input pixels from (r_first, c_first) to (r_last, c_last); it is emitted (in row-major
// order) as soon as pixel (r_last, c_last) and every earlier output have been, so lb_size (computed in Python from
// that schedule, bm_ops.hls4ml.config.line_buffer_size) is (filt_height-1) rows + filt_width pixels for an
// interior window -- the same reach as hls4ml's conv line buffer.

// linear index of the last input pixel output (oh, ow) needs (clamped to the image: padding needs no input)
template <typename CONFIG_T> int bm_last_pixel(unsigned oh, unsigned ow) {
    #pragma HLS INLINE
    int r = (int)(oh * CONFIG_T::stride_height + CONFIG_T::filt_height) - 1 - (int)CONFIG_T::pad_top;
    int c = (int)(ow * CONFIG_T::stride_width + CONFIG_T::filt_width) - 1 - (int)CONFIG_T::pad_left;
    r = r < 0 ? 0 : (r > (int)CONFIG_T::in_height - 1 ? (int)CONFIG_T::in_height - 1 : r);
    c = c < 0 ? 0 : (c > (int)CONFIG_T::in_width - 1 ? (int)CONFIG_T::in_width - 1 : c);
    return r * (int)CONFIG_T::in_width + c;
}

// window of output (oh, ow) from the line buffer; pixel p_now (the newest) sits in slot s_now, an older pixel p
// in slot s_now - (p_now - p) modulo the buffer size (one subtraction and one conditional add, no divider)
template <typename CONFIG_T>
void bm_gather_lb(const typename bm_types<CONFIG_T>::log_t lb_log[CONFIG_T::lb_size][CONFIG_T::n_chan],
                  const typename bm_types<CONFIG_T>::sgn_t lb_sgn[CONFIG_T::lb_size][CONFIG_T::n_chan], int p_now,
                  int s_now, unsigned oh, unsigned ow, typename bm_types<CONFIG_T>::log_t win_log[bm_types<CONFIG_T>::taps],
                  typename bm_types<CONFIG_T>::sgn_t win_sgn[bm_types<CONFIG_T>::taps]) {
    #pragma HLS INLINE
BMLbKh:
    for (unsigned kh = 0; kh < CONFIG_T::filt_height; kh++) {
        #pragma HLS UNROLL
    BMLbKw:
        for (unsigned kw = 0; kw < CONFIG_T::filt_width; kw++) {
            #pragma HLS UNROLL
            const int ih = (int)(oh * CONFIG_T::stride_height + kh) - (int)CONFIG_T::pad_top;
            const int iw = (int)(ow * CONFIG_T::stride_width + kw) - (int)CONFIG_T::pad_left;
            const bool inside = ih >= 0 && ih < (int)CONFIG_T::in_height && iw >= 0 && iw < (int)CONFIG_T::in_width;
            int slot = s_now - (p_now - (ih * (int)CONFIG_T::in_width + iw));
            if (slot < 0)
                slot += (int)CONFIG_T::lb_size;
        BMLbChan:
            for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                #pragma HLS UNROLL
                const unsigned t = (c * CONFIG_T::filt_height + kh) * CONFIG_T::filt_width + kw;
                if (inside) {
                    win_log[t] = lb_log[slot][c];
                    win_sgn[t] = lb_sgn[slot][c];
                } else {
                    win_log[t] = 0;
                    win_sgn[t] = 0; // zero padding: ln 0
                }
            }
        }
    }
}

// io_stream entry point: one stream word = all channels of one pixel (row-major over the image).
// One log per value as it arrives (one clock each, one shared log table), stored in its exact width
// (ap_int<log_bits> + a 2-bit sign) in the line buffer above (not the frame); each output pixel is computed
// by the same window kernel as io_parallel (reuse_factor clocks of add/max, then the exps).
template <class data_T, class res_T, typename CONFIG_T>
void bm_conv_2d_cl(hls::stream<data_T> &data, hls::stream<res_T> &res,
                   const typename CONFIG_T::weight_t v_pos[CONFIG_T::n_filt * CONFIG_T::n_chan *
                                                          CONFIG_T::filt_height * CONFIG_T::filt_width],
                   const typename CONFIG_T::weight_t v_neg[CONFIG_T::n_filt * CONFIG_T::n_chan *
                                                          CONFIG_T::filt_height * CONFIG_T::filt_width],
                   const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt],
                   const typename CONFIG_T::log_table_t log_table[1 << CONFIG_T::log_table_bits],
                   const typename CONFIG_T::exp_table_t exp_table[1 << CONFIG_T::exp_table_bits]) {
    typedef bm_types<CONFIG_T> B;
    typedef typename res_T::value_type out_T;
    const unsigned n_out = CONFIG_T::out_height * CONFIG_T::out_width;
    typename B::log_t lb_log[CONFIG_T::lb_size][CONFIG_T::n_chan];
    typename B::sgn_t lb_sgn[CONFIG_T::lb_size][CONFIG_T::n_chan];
    #pragma HLS ARRAY_PARTITION variable = lb_log complete dim = 2
    #pragma HLS ARRAY_PARTITION variable = lb_sgn complete dim = 2
    unsigned eh = 0, ew = 0; // next output to emit (row-major)
    int slot = -1;           // line-buffer slot of the newest pixel
BMStreamRow:
    for (unsigned ih = 0; ih < CONFIG_T::in_height; ih++) {
    BMStreamPixel:
        for (unsigned iw = 0; iw < CONFIG_T::in_width; iw++) {
            const int p = (int)(ih * CONFIG_T::in_width + iw);
            slot = (slot + 1 == (int)CONFIG_T::lb_size) ? 0 : slot + 1;
            const data_T word = data.read();
        BMStreamLog:
            for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                #pragma HLS PIPELINE II = 1
                bm_log_value<typename data_T::value_type, CONFIG_T>(word[c], log_table, lb_log[slot][c], lb_sgn[slot][c]);
            }
        BMStreamEmit:
            for (unsigned k = 0; k < n_out; k++) {
                // one output per iteration (usually 0 or 1 per pixel; more after the last row with bottom padding)
                if (eh >= CONFIG_T::out_height || bm_last_pixel<CONFIG_T>(eh, ew) > p)
                    break;
                typename B::log_t win_log[B::taps];
                typename B::sgn_t win_sgn[B::taps];
                out_T out[CONFIG_T::n_filt];
                #pragma HLS ARRAY_PARTITION variable = win_log complete dim = 0
                #pragma HLS ARRAY_PARTITION variable = win_sgn complete dim = 0
                #pragma HLS ARRAY_PARTITION variable = out complete dim = 0
                bm_gather_lb<CONFIG_T>(lb_log, lb_sgn, p, slot, eh, ew, win_log, win_sgn);
                bm_window<CONFIG_T, out_T>(win_log, win_sgn, v_pos, v_neg, bias, exp_table, out);
                res_T word_out;
            BMStreamPack:
                for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
                    #pragma HLS UNROLL
                    word_out[f] = out[f];
                }
                res.write(word_out);
                if (++ew == CONFIG_T::out_width) {
                    ew = 0;
                    eh++;
                }
            }
        }
    }
}

} // namespace nnet

#endif
