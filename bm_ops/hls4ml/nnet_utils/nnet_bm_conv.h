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
// io_stream: logs stored in their exact width (log_bits), window sums/maxima in ap_int<sum_bits>, the
// accumulator in ap_int<accum_bits>.  io_parallel and the per-value log/exp helpers (shared with the run-time
// configured test harness) still compute in 64-bit integers.
#ifndef NNET_BM_CONV_H_
#define NNET_BM_CONV_H_

#include "ap_fixed.h"
#include "ap_int.h"
#include "hls_stream.h"

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
    static const unsigned accum_bits = 32;
    static const long long weight_sentinel = -32768;
    static const unsigned reuse_factor = 1;
    static const unsigned log_bits = 20; // exact signed width of a log value L (io_stream line buffer)
    static const unsigned sum_bits = 24; // exact signed width of a window sum L + V (incl. the -inf code)
    typedef ap_int<16> weight_t;
    typedef ap_int<32> bias_t;
    typedef ap_uint<15> log_table_t;
    typedef ap_uint<18> exp_table_t;
    typedef ap_fixed<32, 16> accum_t;
};

// Runtime description of one layer (the templates below fill it from CONFIG_T with compile-time constants;
// the test harness bm_ops/hls4ml/harness.cpp fills it at run time so one binary checks many layers).
struct bm_geom {
    unsigned in_height, in_width, n_chan, filt_height, filt_width, n_filt;
    unsigned stride_height, stride_width, pad_top, pad_left, out_height, out_width;
    unsigned in_bits;
    bool in_signed;
    int in_frac;
    unsigned log_table_bits, log_frac_bits, exp_table_bits, exp_frac_bits, accum_frac_bits;
    long long weight_sentinel;
};

template <typename CONFIG_T> inline bm_geom bm_geom_of() {
    bm_geom g = {CONFIG_T::in_height,      CONFIG_T::in_width,       CONFIG_T::n_chan,        CONFIG_T::filt_height,
                 CONFIG_T::filt_width,     CONFIG_T::n_filt,         CONFIG_T::stride_height, CONFIG_T::stride_width,
                 CONFIG_T::pad_top,        CONFIG_T::pad_left,       CONFIG_T::out_height,    CONFIG_T::out_width,
                 CONFIG_T::in_bits,        CONFIG_T::in_signed,      CONFIG_T::in_frac,       CONFIG_T::log_table_bits,
                 CONFIG_T::log_frac_bits,  CONFIG_T::exp_table_bits, CONFIG_T::exp_frac_bits, CONFIG_T::accum_frac_bits,
                 CONFIG_T::weight_sentinel};
    return g;
}

// raw two's-complement integer of an ap_fixed / ap_ufixed / ap_int value of g.in_bits bits
template <class T> inline long long bm_raw(const T &x, const bm_geom &g) {
    unsigned long long u = x.range(g.in_bits - 1, 0).to_uint64();
    long long r = (long long)u;
    if (g.in_signed && ((u >> (g.in_bits - 1)) & 1ULL)) {
        r -= (long long)(1ULL << g.in_bits);
    }
    return r;
}

// step 1: base-2 log of a magnitude m > 0 with in_frac fraction bits, log_frac_bits fraction bits out
template <class log_table_T> inline long long bm_log2(unsigned long long m, const log_table_T log_table[], const bm_geom &g) {
    int e = 0;
BMLeadingOne:
    for (int b = (int)g.in_bits; b >= 0; b--) {
        if ((m >> b) & 1ULL) {
            e = b;
            break;
        }
    }
    const int T = (int)g.log_table_bits;
    const unsigned long long mask = (1ULL << T) - 1ULL;
    unsigned long long idx = (e >= T) ? ((m >> (e - T)) & mask) : ((m << (T - e)) & mask);
    return (long long)(e - g.in_frac) * (1LL << g.log_frac_bits) + (long long)log_table[idx];
}

// step 3: 2^(z / 2^FL) in the accumulator's raw units (accum_frac_bits fraction bits)
template <class exp_table_T> inline long long bm_exp2(long long z, const exp_table_T exp_table[], const bm_geom &g) {
    const int FL = (int)g.log_frac_bits;
    const int FE = (int)g.exp_frac_bits;
    long long n = z >> FL; // arithmetic shift = floor
    long long frac = z & ((1LL << FL) - 1LL);
    long long E = (long long)exp_table[frac >> (FL - (int)g.exp_table_bits)];
    long long sh = n + (long long)g.accum_frac_bits - (long long)FE;
    if (sh >= 0) {
        return E << sh;
    }
    long long k = -sh;
    if (k >= FE + 2) {
        return 0;
    }
    return (E + (1LL << (k - 1))) >> k;
}

// log + sign of one input value (one log per value)
template <class T, class log_table_T>
inline void bm_log_value(const T &x, const log_table_T log_table[], const bm_geom &g, long long &logx, signed char &sgn) {
    long long r = bm_raw<T>(x, g);
    sgn = (r > 0) ? 1 : ((r < 0) ? -1 : 0);
    unsigned long long m = (unsigned long long)(r < 0 ? -r : r);
    logx = (r == 0) ? 0 : bm_log2<log_table_T>(m, log_table, g);
}

// step 2 for one tap: window sums L + V+ / L + V- into the running maxima of their quadrants
// (0 = (x+, v+), 1 = (x+, v-), 2 = (x-, v+), 3 = (x-, v-)); shared by the io_parallel and io_stream windows
template <class sum_T, class log_T, class weight_T>
inline void bm_tap(int s, const log_T &lx, const weight_T &vp, const weight_T &vn, long long sentinel, sum_T mx[4],
                   bool valid[4]) {
    #pragma HLS INLINE
    const unsigned q0 = (s > 0) ? 0 : 2;
    if ((long long)vp != sentinel) {
        const sum_T sum = lx + vp;
        if (!valid[q0] || sum > mx[q0]) {
            mx[q0] = sum;
            valid[q0] = true;
        }
    }
    if ((long long)vn != sentinel) {
        const sum_T sum = lx + vn;
        if (!valid[q0 + 1] || sum > mx[q0 + 1]) {
            mx[q0 + 1] = sum;
            valid[q0 + 1] = true;
        }
    }
}

// steps 3-4 (exact part): bias + T++ - T+- - T-+ + T--
template <class acc_T, class sum_T, class bias_T, class exp_table_T>
inline acc_T bm_finish(const sum_T mx[4], const bool valid[4], const bias_T &bias, const exp_table_T exp_table[],
                       const bm_geom &g) {
    #pragma HLS INLINE
    acc_T acc = bias;
BMExp:
    for (unsigned q = 0; q < 4; q++) {
        if (!valid[q])
            continue;
        const acc_T t = bm_exp2<exp_table_T>((long long)mx[q], exp_table, g);
        if (q == 0 || q == 3)
            acc += t;
        else
            acc -= t;
    }
    return acc;
}

// steps 2-4 over precomputed logs / signs of a whole channels_last frame -> raw accumulators
template <class weight_T, class bias_T, class exp_table_T>
void bm_conv_2d_acc(const long long logx[], const signed char sgn[], long long acc_out[], const weight_T v_pos[],
                    const weight_T v_neg[], const bias_T bias[], const exp_table_T exp_table[], const bm_geom &g) {
    const unsigned taps = g.n_chan * g.filt_height * g.filt_width;
BMOutRow:
    for (unsigned oh = 0; oh < g.out_height; oh++) {
    BMOutCol:
        for (unsigned ow = 0; ow < g.out_width; ow++) {
        BMFilt:
            for (unsigned f = 0; f < g.n_filt; f++) {
                // quadrants: 0 = (x+, v+), 1 = (x+, v-), 2 = (x-, v+), 3 = (x-, v-)
                long long mx[4] = {0, 0, 0, 0};
                bool valid[4] = {false, false, false, false};
            BMChan:
                for (unsigned c = 0; c < g.n_chan; c++) {
                BMKh:
                    for (unsigned kh = 0; kh < g.filt_height; kh++) {
                        int ih = (int)(oh * g.stride_height + kh) - (int)g.pad_top;
                        if (ih < 0 || ih >= (int)g.in_height)
                            continue;
                    BMKw:
                        for (unsigned kw = 0; kw < g.filt_width; kw++) {
                            int iw = (int)(ow * g.stride_width + kw) - (int)g.pad_left;
                            if (iw < 0 || iw >= (int)g.in_width)
                                continue;
                            unsigned ii = ((unsigned)ih * g.in_width + (unsigned)iw) * g.n_chan + c;
                            signed char s = sgn[ii];
                            if (s == 0)
                                continue; // ln 0 = -inf
                            unsigned wi = f * taps + (c * g.filt_height + kh) * g.filt_width + kw;
                            bm_tap<long long, long long, weight_T>(s, logx[ii], v_pos[wi], v_neg[wi], g.weight_sentinel,
                                                                   mx, valid);
                        }
                    }
                }
                long long acc = bm_finish<long long, long long, bias_T, exp_table_T>(mx, valid, bias[f], exp_table, g);
                acc_out[(oh * g.out_width + ow) * g.n_filt + f] = acc;
            }
        }
    }
}

// step 4 (cast): exact raw accumulator -> accum_t -> res_T (res_T's rounding / overflow mode)
template <class res_T, typename CONFIG_T> inline res_T bm_cast_result(long long acc) {
    ap_int<CONFIG_T::accum_bits> araw = acc;
    typename CONFIG_T::accum_t a;
    a.range(CONFIG_T::accum_bits - 1, 0) = araw.range(CONFIG_T::accum_bits - 1, 0);
    return (res_T)a;
}

// io_parallel entry point: data / res are channels_last arrays
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
    const bm_geom g = bm_geom_of<CONFIG_T>();
    const unsigned n_in = CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan;
    const unsigned n_out = CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt;
    long long logx[n_in];
    signed char sgn[n_in];
    long long acc[n_out];
BMLog:
    for (unsigned i = 0; i < n_in; i++) {
        bm_log_value<data_T, typename CONFIG_T::log_table_t>(data[i], log_table, g, logx[i], sgn[i]);
    }
    bm_conv_2d_acc<typename CONFIG_T::weight_t, typename CONFIG_T::bias_t, typename CONFIG_T::exp_table_t>(
        logx, sgn, acc, v_pos, v_neg, bias, exp_table, g);
BMCast:
    for (unsigned i = 0; i < n_out; i++) {
        res[i] = bm_cast_result<res_T, CONFIG_T>(acc[i]);
    }
}

// io_stream line buffer: the last bm_lb_size<CONFIG_T>() pixels of the input (all channels), in the log domain.
// An output (oh, ow) needs input pixels from (r_first, c_first) to (r_last, c_last); it is emitted (in row-major
// order) as soon as pixel (r_last, c_last) has arrived, so at most (filt_height-1) rows + filt_width pixels
// are ever needed at once -- the same reach as hls4ml's conv line buffer.
template <typename CONFIG_T> struct bm_lb {
    static const unsigned rows = (CONFIG_T::filt_height - 1 < CONFIG_T::in_height - 1) ? CONFIG_T::filt_height - 1
                                                                                          : CONFIG_T::in_height - 1;
    static const unsigned cols = (CONFIG_T::filt_width < CONFIG_T::in_width) ? CONFIG_T::filt_width : CONFIG_T::in_width;
    static const unsigned size = rows * CONFIG_T::in_width + cols;
};

// accumulator of one output (oh, ow, f) read from the line buffer; same arithmetic as bm_conv_2d_acc, in the
// exact widths: window sums and maxima ap_int<sum_bits>, accumulator ap_int<accum_bits> (no overflow by construction)
template <typename CONFIG_T, class log_T, class sgn_T>
long long bm_window_acc(const log_T lb_log[bm_lb<CONFIG_T>::size][CONFIG_T::n_chan],
                        const sgn_T lb_sgn[bm_lb<CONFIG_T>::size][CONFIG_T::n_chan], unsigned oh, unsigned ow, unsigned f,
                        const typename CONFIG_T::weight_t v_pos[], const typename CONFIG_T::weight_t v_neg[],
                        const typename CONFIG_T::bias_t bias[], const typename CONFIG_T::exp_table_t exp_table[],
                        const bm_geom &g) {
    #pragma HLS INLINE
    const unsigned taps = CONFIG_T::n_chan * CONFIG_T::filt_height * CONFIG_T::filt_width;
    typedef ap_int<CONFIG_T::sum_bits> sum_T;
    typedef ap_int<CONFIG_T::accum_bits> acc_T;
    sum_T mx[4] = {0, 0, 0, 0};
    bool valid[4] = {false, false, false, false};
BMWinChan:
    for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
    BMWinKh:
        for (unsigned kh = 0; kh < CONFIG_T::filt_height; kh++) {
            int ih = (int)(oh * CONFIG_T::stride_height + kh) - (int)CONFIG_T::pad_top;
            if (ih < 0 || ih >= (int)CONFIG_T::in_height)
                continue;
        BMWinKw:
            for (unsigned kw = 0; kw < CONFIG_T::filt_width; kw++) {
                int iw = (int)(ow * CONFIG_T::stride_width + kw) - (int)CONFIG_T::pad_left;
                if (iw < 0 || iw >= (int)CONFIG_T::in_width)
                    continue;
                const unsigned slot = ((unsigned)ih * CONFIG_T::in_width + (unsigned)iw) % bm_lb<CONFIG_T>::size;
                int s = lb_sgn[slot][c].to_int();
                if (s == 0)
                    continue; // ln 0 = -inf
                const sum_T lx = lb_log[slot][c];
                unsigned wi = f * taps + (c * CONFIG_T::filt_height + kh) * CONFIG_T::filt_width + kw;
                bm_tap<sum_T, sum_T, typename CONFIG_T::weight_t>(s, lx, v_pos[wi], v_neg[wi], CONFIG_T::weight_sentinel,
                                                                 mx, valid);
            }
        }
    }
    const acc_T acc = bm_finish<acc_T, sum_T, typename CONFIG_T::bias_t, typename CONFIG_T::exp_table_t>(mx, valid, bias[f],
                                                                                                       exp_table, g);
    return acc.to_int64();
}

// linear index of the last input pixel output (oh, ow) needs (clamped to the image: padding needs no input)
template <typename CONFIG_T> inline int bm_last_pixel(unsigned oh, unsigned ow) {
    int r = (int)(oh * CONFIG_T::stride_height + CONFIG_T::filt_height) - 1 - (int)CONFIG_T::pad_top;
    int c = (int)(ow * CONFIG_T::stride_width + CONFIG_T::filt_width) - 1 - (int)CONFIG_T::pad_left;
    r = r < 0 ? 0 : (r > (int)CONFIG_T::in_height - 1 ? (int)CONFIG_T::in_height - 1 : r);
    c = c < 0 ? 0 : (c > (int)CONFIG_T::in_width - 1 ? (int)CONFIG_T::in_width - 1 : c);
    return r * (int)CONFIG_T::in_width + c;
}

// io_stream entry point: one stream word = all channels of one pixel (row-major over the image).
// One log per value as it arrives, stored in its exact width (ap_int<log_bits> + a 2-bit sign) in the line
// buffer above (not the frame).  ReuseFactor sets the initiation interval of the emit loop (one output with
// all n_filt channels per iteration; the pixel loop is not pipelined, so the emit loop is not unrolled).
template <class data_T, class res_T, typename CONFIG_T>
void bm_conv_2d_cl(hls::stream<data_T> &data, hls::stream<res_T> &res,
                   const typename CONFIG_T::weight_t v_pos[CONFIG_T::n_filt * CONFIG_T::n_chan *
                                                          CONFIG_T::filt_height * CONFIG_T::filt_width],
                   const typename CONFIG_T::weight_t v_neg[CONFIG_T::n_filt * CONFIG_T::n_chan *
                                                          CONFIG_T::filt_height * CONFIG_T::filt_width],
                   const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt],
                   const typename CONFIG_T::log_table_t log_table[1 << CONFIG_T::log_table_bits],
                   const typename CONFIG_T::exp_table_t exp_table[1 << CONFIG_T::exp_table_bits]) {
    typedef ap_int<CONFIG_T::log_bits> log_T;
    typedef ap_int<2> sgn_T;
    const bm_geom g = bm_geom_of<CONFIG_T>();
    log_T lb_log[bm_lb<CONFIG_T>::size][CONFIG_T::n_chan];
    sgn_T lb_sgn[bm_lb<CONFIG_T>::size][CONFIG_T::n_chan];
    #pragma HLS ARRAY_PARTITION variable = lb_log complete dim = 2
    #pragma HLS ARRAY_PARTITION variable = lb_sgn complete dim = 2
    unsigned eh = 0, ew = 0; // next output to emit (row-major)
BMStreamRow:
    for (unsigned ih = 0; ih < CONFIG_T::in_height; ih++) {
    BMStreamPixel:
        for (unsigned iw = 0; iw < CONFIG_T::in_width; iw++) {
            const int p = (int)(ih * CONFIG_T::in_width + iw);
            const unsigned slot = (unsigned)p % bm_lb<CONFIG_T>::size;
            data_T word = data.read();
        BMStreamLog:
            for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                #pragma HLS UNROLL
                long long lx;
                signed char sg;
                bm_log_value<typename data_T::value_type, typename CONFIG_T::log_table_t>(word[c], log_table, g, lx, sg);
                lb_log[slot][c] = lx;
                lb_sgn[slot][c] = sg;
            }
        BMStreamEmit:
            for (unsigned k = 0; k < CONFIG_T::out_height * CONFIG_T::out_width; k++) {
                // one output per iteration (usually 0 or 1 per pixel; more after the last row with bottom padding)
                #pragma HLS PIPELINE II = CONFIG_T::reuse_factor
                if (eh >= CONFIG_T::out_height || bm_last_pixel<CONFIG_T>(eh, ew) > p)
                    break;
                res_T out;
            BMStreamFilt:
                for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
                    long long acc = bm_window_acc<CONFIG_T, log_T, sgn_T>(lb_log, lb_sgn, eh, ew, f, v_pos, v_neg, bias,
                                                                         exp_table, g);
                    out[f] = bm_cast_result<typename res_T::value_type, CONFIG_T>(acc);
                }
                res.write(out);
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
