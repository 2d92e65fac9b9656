// Test/benchmark harness: runs the exact C++ of nnet_bm_conv.h with a layer description given at run time,
// so that one compiled shared library checks many random layers against bm_ops.fixedpoint (no per-layer build).
// Inputs are raw integers of the input type; outputs are the raw exact accumulators (step 4 before the cast;
// the cast to result_t is checked through hls4ml's own compile()/predict()).
#include "nnet_utils/nnet_bm_conv.h"

extern "C" int bm_conv_rt(const long long *x_raw, int n_images, const long long *gi, const long long *v_pos,
                          const long long *v_neg, const long long *bias, const long long *log_table,
                          const long long *exp_table, long long *acc_out) {
    nnet::bm_geom g;
    g.in_height = (unsigned)gi[0];
    g.in_width = (unsigned)gi[1];
    g.n_chan = (unsigned)gi[2];
    g.filt_height = (unsigned)gi[3];
    g.filt_width = (unsigned)gi[4];
    g.n_filt = (unsigned)gi[5];
    g.stride_height = (unsigned)gi[6];
    g.stride_width = (unsigned)gi[7];
    g.pad_top = (unsigned)gi[8];
    g.pad_left = (unsigned)gi[9];
    g.out_height = (unsigned)gi[10];
    g.out_width = (unsigned)gi[11];
    g.in_bits = (unsigned)gi[12];
    g.in_signed = gi[13] != 0;
    g.in_frac = (int)gi[14];
    g.log_table_bits = (unsigned)gi[15];
    g.log_frac_bits = (unsigned)gi[16];
    g.exp_table_bits = (unsigned)gi[17];
    g.exp_frac_bits = (unsigned)gi[18];
    g.accum_frac_bits = (unsigned)gi[19];
    g.weight_sentinel = gi[20];
    if (g.in_bits < 1 || g.in_bits > 40)
        return 1;
    const unsigned n_in = g.in_height * g.in_width * g.n_chan;
    const unsigned n_out = g.out_height * g.out_width * g.n_filt;
    long long *logx = new long long[n_in];
    signed char *sgn = new signed char[n_in];
    for (int im = 0; im < n_images; im++) {
        for (unsigned i = 0; i < n_in; i++) {
            ap_int<48> xv = x_raw[(long long)im * n_in + i];
            nnet::bm_log_value<ap_int<48>, long long>(xv, log_table, g, logx[i], sgn[i]);
        }
        nnet::bm_conv_2d_acc<long long, long long, long long>(logx, sgn, acc_out + (long long)im * n_out, v_pos, v_neg,
                                                              bias, exp_table, g);
    }
    delete[] logx;
    delete[] sgn;
    return 0;
}
