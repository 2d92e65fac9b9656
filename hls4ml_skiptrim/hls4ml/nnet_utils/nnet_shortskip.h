// Fused Conv2D (+BN) + ReLU + short-skip Add for hls4ml (hwreshape / hls4ml_skiptrim).
//
// Khodamoradi 2021, ch. 4, Listing 4.3 (green block of Fig. 4.4.d):
//     conv+BN loop:  acc = apply_filters(input, weights)
//     output loop:   res = input; if (acc > 0) res += acc; output = res
//
// The post-op chain keeps the casts of the unfused hls4ml layers so that C-simulation is bit-exact with the
// unfused model:  conv_out_t (dense output) -> [bn_out_t = product(x, scale) + bias] -> act_out_t (ReLU)
// -> res_T (= act + skip, the Add output type).
//
// io_stream: the skip operand is the centre tap of the convolution's own sliding window (odd kernel,
// stride 1, same padding, n_chan == n_filt), so the skip path needs neither a Clone nor a full-tensor FIFO.
// The line buffer / window shifting is hls4ml's (nnet::shift_line_buffer, nnet::kernel_shift_1d).
#ifndef NNET_SHORTSKIP_H_
#define NNET_SHORTSKIP_H_

#include "ap_shift_reg.h"
#include "hls_stream.h"
#include "nnet_common.h"
#include "nnet_conv2d.h"
#include "nnet_conv2d_stream.h"
#include "nnet_conv_stream.h"
#include "nnet_mult.h"

namespace nnet {

struct shortskip_config {
    // conv_config: the hls4ml conv2d_config of the convolution part
    static const bool use_bn = false;
    static const unsigned n_filt = 1;
    static const unsigned n_scale_bias = 1;
    static const unsigned skip_row = 0; // centre tap row inside the window
    static const unsigned skip_col = 0; // centre tap column inside the window
    static const bool vitis_style = false; // Vitis: per-strategy loops with unconditional pipeline pragmas
};

// One output element of the fused chain (ReLU before addition, Listing 4.2/4.3).
template <class conv_T, class skip_T, class res_T, typename CONFIG_T>
inline res_T shortskip_post(conv_T acc, skip_T skip, typename CONFIG_T::scale_t scale, typename CONFIG_T::bn_bias_t bias) {
    #pragma HLS INLINE
    typename CONFIG_T::act_out_t act;
    if (CONFIG_T::use_bn) {
        typename CONFIG_T::bn_out_t bn =
            CONFIG_T::template bn_product<conv_T, typename CONFIG_T::scale_t>::product(acc, scale) + bias;
        if (bn > 0)
            act = bn;
        else
            act = 0;
    } else {
        if (acc > 0)
            act = acc;
        else
            act = 0;
    }
    res_T res = act + skip;
    return res;
}

// ---------------------------------------------------------------------------------------------------------
// io_parallel: hls4ml's conv_2d_cl into the conv output type, then the fused output loop.  The skip operand
// is the (unpadded) input pixel at the output position (stride 1, same padding).
// ---------------------------------------------------------------------------------------------------------
template <class data_T, class res_T, typename CONFIG_T>
void shortskip_conv_2d_cl(
    data_T data[CONFIG_T::conv_config::in_height * CONFIG_T::conv_config::in_width * CONFIG_T::conv_config::n_chan],
    res_T res[CONFIG_T::conv_config::out_height * CONFIG_T::conv_config::out_width * CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::conv_config::weight_t weights[CONFIG_T::conv_config::filt_height * CONFIG_T::conv_config::filt_width *
                                                    CONFIG_T::conv_config::n_chan * CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::conv_config::bias_t biases[CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::scale_t scale[CONFIG_T::n_scale_bias], typename CONFIG_T::bn_bias_t bias[CONFIG_T::n_scale_bias]) {
    #pragma HLS INLINE region
    typedef typename CONFIG_T::conv_config conv_cfg;
    static_assert(conv_cfg::n_chan == conv_cfg::n_filt, "short skip needs n_chan == n_filt");
    static_assert(conv_cfg::in_height == conv_cfg::out_height && conv_cfg::in_width == conv_cfg::out_width,
                  "short skip needs stride 1 and same padding");

    typename CONFIG_T::conv_out_t conv_out[conv_cfg::out_height * conv_cfg::out_width * conv_cfg::n_filt];
    #pragma HLS ARRAY_PARTITION variable = conv_out complete dim = 0

    nnet::conv_2d_cl<data_T, typename CONFIG_T::conv_out_t, conv_cfg>(data, conv_out, weights, biases);

ShortSkipOutput:
    for (unsigned i = 0; i < conv_cfg::out_height * conv_cfg::out_width * conv_cfg::n_filt; i++) {
        #pragma HLS UNROLL
        const unsigned c = i % conv_cfg::n_filt;
        const unsigned sb = CONFIG_T::use_bn ? c : 0;
        res[i] = shortskip_post<typename CONFIG_T::conv_out_t, data_T, res_T, CONFIG_T>(conv_out[i], data[i], scale[sb],
                                                                                       bias[sb]);
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void shortskip_conv_2d_cl(
    data_T data[CONFIG_T::conv_config::in_height * CONFIG_T::conv_config::in_width * CONFIG_T::conv_config::n_chan],
    res_T res[CONFIG_T::conv_config::out_height * CONFIG_T::conv_config::out_width * CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::conv_config::weight_t weights[CONFIG_T::conv_config::filt_height * CONFIG_T::conv_config::filt_width *
                                                    CONFIG_T::conv_config::n_chan * CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::conv_config::bias_t biases[CONFIG_T::conv_config::n_filt]) {
    #pragma HLS INLINE region
    typename CONFIG_T::scale_t scale[CONFIG_T::n_scale_bias];
    typename CONFIG_T::bn_bias_t bias[CONFIG_T::n_scale_bias];
    for (unsigned i = 0; i < CONFIG_T::n_scale_bias; i++) {
        scale[i] = 1;
        bias[i] = 0;
    }
    shortskip_conv_2d_cl<data_T, res_T, CONFIG_T>(data, res, weights, biases, scale, bias);
}

// ---------------------------------------------------------------------------------------------------------
// io_stream: hls4ml's line buffer over the (already zero-padded) input stream; the output loop reads the
// skip value from the centre tap of the window the convolution already holds.
// ---------------------------------------------------------------------------------------------------------
template <class data_T, class res_T, typename CONFIG_T>
void shortskip_emit(typename data_T::value_type *kernel_data, hls::stream<res_T> &res_stream,
                    typename CONFIG_T::conv_config::weight_t *weights, typename CONFIG_T::conv_config::bias_t *biases,
                    typename CONFIG_T::scale_t *scale, typename CONFIG_T::bn_bias_t *bias) {
    #pragma HLS INLINE
    typedef typename CONFIG_T::conv_config conv_cfg;
    typename CONFIG_T::conv_out_t acc[conv_cfg::n_filt];
    #pragma HLS ARRAY_PARTITION variable = acc complete dim = 0

    // conv (+ folded BN) loop: acc = apply_filters(input, weights)
    conv_cfg::mult_config::template kernel<typename data_T::value_type, typename CONFIG_T::conv_out_t,
                                           typename conv_cfg::mult_config>::dense(kernel_data, acc, weights, biases);

    // output loop: res = input (centre tap); if (acc > 0) res += acc
    res_T res_pack;
    PRAGMA_DATA_PACK(res_pack)
    const unsigned centre = (CONFIG_T::skip_row * conv_cfg::filt_width + CONFIG_T::skip_col) * conv_cfg::n_chan;
ShortSkipPack:
    for (unsigned c = 0; c < conv_cfg::n_filt; c++) {
        #pragma HLS UNROLL
        const unsigned sb = CONFIG_T::use_bn ? c : 0;
        res_pack[c] = shortskip_post<typename CONFIG_T::conv_out_t, typename data_T::value_type,
                                     typename res_T::value_type, CONFIG_T>(acc[c], kernel_data[centre + c], scale[sb],
                                                                           bias[sb]);
    }
    res_stream.write(res_pack);
}

template <class data_T, class res_T, typename CONFIG_T>
void shortskip_compute_2d(const data_T &in_elem,
                          ap_shift_reg<typename data_T::value_type, CONFIG_T::conv_config::in_width>
                              line_buffer[MAX(CONFIG_T::conv_config::filt_height - 1, 1)][CONFIG_T::conv_config::n_chan],
                          hls::stream<res_T> &res_stream, typename CONFIG_T::conv_config::weight_t *weights,
                          typename CONFIG_T::conv_config::bias_t *biases, typename CONFIG_T::scale_t *scale,
                          typename CONFIG_T::bn_bias_t *bias) {
    #pragma HLS INLINE OFF
    typedef typename CONFIG_T::conv_config conv_cfg;
    const static int lShiftX = conv_cfg::filt_width - 1;
    const static int lShiftY = conv_cfg::filt_height - 1;
    static int pX = 0;
    static int pY = 0;

    static typename data_T::value_type kernel_data[conv_cfg::filt_height * conv_cfg::filt_width * conv_cfg::n_chan];
    #pragma HLS ARRAY_PARTITION variable = kernel_data complete

    nnet::shift_line_buffer<data_T, conv_cfg>(in_elem, line_buffer, kernel_data);

    // stride 1: every position with a full window produces one output pixel
    if (pY > lShiftY - 1 && pX > lShiftX - 1) {
        shortskip_emit<data_T, res_T, CONFIG_T>(kernel_data, res_stream, weights, biases, scale, bias);
    }

    if (pX + 1 == (int)conv_cfg::in_width) {
        pX = 0;
        pY = (pY + 1 == (int)conv_cfg::in_height) ? 0 : pY + 1;
    } else {
        pX = pX + 1;
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void shortskip_compute_1d(const data_T &in_elem, hls::stream<res_T> &res_stream,
                          typename CONFIG_T::conv_config::weight_t *weights, typename CONFIG_T::conv_config::bias_t *biases,
                          typename CONFIG_T::scale_t *scale, typename CONFIG_T::bn_bias_t *bias) {
    #pragma HLS INLINE OFF
    typedef typename CONFIG_T::conv_config conv_cfg;
    const static int lShiftX = conv_cfg::filt_width - 1;
    static int pX = 0;

    static typename data_T::value_type kernel_data[conv_cfg::filt_width * conv_cfg::n_chan];
    #pragma HLS ARRAY_PARTITION variable = kernel_data complete

    nnet::kernel_shift_1d<data_T, conv_cfg>(in_elem, kernel_data);

    if (pX > lShiftX - 1) {
        shortskip_emit<data_T, res_T, CONFIG_T>(kernel_data, res_stream, weights, biases, scale, bias);
    }
    pX = (pX + 1 == (int)conv_cfg::in_width) ? 0 : pX + 1;
}

// Vivado HLS (as hls4ml's templates/vivado conv_2d_buffer_cl): pipeline pragma under the strategy test
template <class data_T, class res_T, typename CONFIG_T>
void shortskip_stream_vivado(hls::stream<data_T> &data, hls::stream<res_T> &res,
    typename CONFIG_T::conv_config::weight_t weights[CONFIG_T::conv_config::filt_height * CONFIG_T::conv_config::filt_width *
                                                    CONFIG_T::conv_config::n_chan * CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::conv_config::bias_t biases[CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::scale_t scale[CONFIG_T::n_scale_bias], typename CONFIG_T::bn_bias_t bias[CONFIG_T::n_scale_bias]) {
    typedef typename CONFIG_T::conv_config conv_cfg;
    static ap_shift_reg<typename data_T::value_type, conv_cfg::in_width> line_buffer[MAX(conv_cfg::filt_height - 1, 1)]
                                                                                   [conv_cfg::n_chan];
    #pragma HLS ARRAY_PARTITION variable = line_buffer complete dim = 2

ShortSkipReadHeight:
    for (unsigned i_ih = 0; i_ih < conv_cfg::in_height; i_ih++) {
    ShortSkipReadWidth:
        for (unsigned i_iw = 0; i_iw < conv_cfg::in_width; i_iw++) {
            #pragma HLS LOOP_FLATTEN
            if (conv_cfg::strategy == nnet::latency) {
                #pragma HLS PIPELINE II = conv_cfg::reuse_factor
            }
            if (conv_cfg::filt_height > 1) {
                shortskip_compute_2d<data_T, res_T, CONFIG_T>(data.read(), line_buffer, res, weights, biases, scale, bias);
            } else {
                shortskip_compute_1d<data_T, res_T, CONFIG_T>(data.read(), res, weights, biases, scale, bias);
            }
        }
    }
}

// Vitis HLS, latency strategy (as hls4ml's templates/vitis conv_2d_buffer_latency_cl)
template <class data_T, class res_T, typename CONFIG_T>
void shortskip_stream_latency(hls::stream<data_T> &data, hls::stream<res_T> &res,
    typename CONFIG_T::conv_config::weight_t weights[CONFIG_T::conv_config::filt_height * CONFIG_T::conv_config::filt_width *
                                                    CONFIG_T::conv_config::n_chan * CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::conv_config::bias_t biases[CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::scale_t scale[CONFIG_T::n_scale_bias], typename CONFIG_T::bn_bias_t bias[CONFIG_T::n_scale_bias]) {
    typedef typename CONFIG_T::conv_config conv_cfg;
    static ap_shift_reg<typename data_T::value_type, conv_cfg::in_width> line_buffer[MAX(conv_cfg::filt_height - 1, 1)]
                                                                                   [conv_cfg::n_chan];
    #pragma HLS ARRAY_PARTITION variable = line_buffer complete dim = 2

ShortSkipReadHeight:
    for (unsigned i_ih = 0; i_ih < conv_cfg::in_height; i_ih++) {
    ShortSkipReadWidth:
        for (unsigned i_iw = 0; i_iw < conv_cfg::in_width; i_iw++) {
            #pragma HLS LOOP_FLATTEN
            #pragma HLS PIPELINE II = conv_cfg::reuse_factor
            if (conv_cfg::filt_height > 1) {
                shortskip_compute_2d<data_T, res_T, CONFIG_T>(data.read(), line_buffer, res, weights, biases, scale, bias);
            } else {
                shortskip_compute_1d<data_T, res_T, CONFIG_T>(data.read(), res, weights, biases, scale, bias);
            }
        }
    }
}

// Vitis HLS, resource strategy (as hls4ml's templates/vitis conv_2d_buffer_resource_cl)
template <class data_T, class res_T, typename CONFIG_T>
void shortskip_stream_resource(hls::stream<data_T> &data, hls::stream<res_T> &res,
    typename CONFIG_T::conv_config::weight_t weights[CONFIG_T::conv_config::filt_height * CONFIG_T::conv_config::filt_width *
                                                    CONFIG_T::conv_config::n_chan * CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::conv_config::bias_t biases[CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::scale_t scale[CONFIG_T::n_scale_bias], typename CONFIG_T::bn_bias_t bias[CONFIG_T::n_scale_bias]) {
    typedef typename CONFIG_T::conv_config conv_cfg;
    static ap_shift_reg<typename data_T::value_type, conv_cfg::in_width> line_buffer[MAX(conv_cfg::filt_height - 1, 1)]
                                                                                   [conv_cfg::n_chan];
    #pragma HLS ARRAY_PARTITION variable = line_buffer complete dim = 2

ShortSkipReadHeight:
    for (unsigned i_ih = 0; i_ih < conv_cfg::in_height; i_ih++) {
    ShortSkipReadWidth:
        for (unsigned i_iw = 0; i_iw < conv_cfg::in_width; i_iw++) {
            #pragma HLS LOOP_FLATTEN
            if (conv_cfg::filt_height > 1) {
                shortskip_compute_2d<data_T, res_T, CONFIG_T>(data.read(), line_buffer, res, weights, biases, scale, bias);
            } else {
                shortskip_compute_1d<data_T, res_T, CONFIG_T>(data.read(), res, weights, biases, scale, bias);
            }
        }
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void shortskip_conv_2d_cl(
    hls::stream<data_T> &data, hls::stream<res_T> &res,
    typename CONFIG_T::conv_config::weight_t weights[CONFIG_T::conv_config::filt_height * CONFIG_T::conv_config::filt_width *
                                                    CONFIG_T::conv_config::n_chan * CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::conv_config::bias_t biases[CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::scale_t scale[CONFIG_T::n_scale_bias], typename CONFIG_T::bn_bias_t bias[CONFIG_T::n_scale_bias]) {
    typedef typename CONFIG_T::conv_config conv_cfg;
    static_assert(conv_cfg::n_chan == conv_cfg::n_filt, "short skip needs n_chan == n_filt");
    static_assert(conv_cfg::stride_height == 1 && conv_cfg::stride_width == 1, "short skip needs stride 1");
    static_assert(conv_cfg::pad_top == 0 && conv_cfg::pad_bottom == 0 && conv_cfg::pad_left == 0 && conv_cfg::pad_right == 0,
                  "io_stream: padding is done by the ZeroPadding2D layer before the fused layer");
    static_assert(data_T::size == conv_cfg::n_chan && res_T::size == conv_cfg::n_filt, "one pixel per stream word");

    if (CONFIG_T::vitis_style) {
        // Vitis HLS: no pragma inside a conditional -- one function per strategy, as hls4ml's templates/vitis
        if (conv_cfg::strategy == nnet::latency) {
            shortskip_stream_latency<data_T, res_T, CONFIG_T>(data, res, weights, biases, scale, bias);
        } else {
            shortskip_stream_resource<data_T, res_T, CONFIG_T>(data, res, weights, biases, scale, bias);
        }
    } else {
        shortskip_stream_vivado<data_T, res_T, CONFIG_T>(data, res, weights, biases, scale, bias);
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void shortskip_conv_2d_cl(
    hls::stream<data_T> &data, hls::stream<res_T> &res,
    typename CONFIG_T::conv_config::weight_t weights[CONFIG_T::conv_config::filt_height * CONFIG_T::conv_config::filt_width *
                                                    CONFIG_T::conv_config::n_chan * CONFIG_T::conv_config::n_filt],
    typename CONFIG_T::conv_config::bias_t biases[CONFIG_T::conv_config::n_filt]) {
    typename CONFIG_T::scale_t scale[CONFIG_T::n_scale_bias];
    typename CONFIG_T::bn_bias_t bias[CONFIG_T::n_scale_bias];
    for (unsigned i = 0; i < CONFIG_T::n_scale_bias; i++) {
        scale[i] = 1;
        bias[i] = 0;
    }
    shortskip_conv_2d_cl<data_T, res_T, CONFIG_T>(data, res, weights, biases, scale, bias);
}

} // namespace nnet

#endif
