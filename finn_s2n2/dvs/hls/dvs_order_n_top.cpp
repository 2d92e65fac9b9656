// Synthesis top and C-simulation entry points of the O(N) DVS filter (Khodamoradi 2021, Sec. 3.2).
//
// dvs_order_n_top(): the HLS top -- one event per call from an AXI-Stream input, static row/column memories,
// clear = 1 empties them first.  Input and output are AXI-Stream words (axis_word_t: ap_axiu<64,0,0,0> when
// Vitis' ap_axi_sdata.h is available, else a struct with the same members) carrying one event:
//     data[31:0] = t, data[46:32] = x, data[61:47] = y, data[62] = p;  TLAST = end of packet.
// Initiation-interval target: II = 7 (dvs::MAX_OUT_PER_EVENT) -- output-bound, one AXI-Stream word per cycle
// and up to seven words per input event (six recovered events + the event); the three reads and one write of
// each row/column memory per event fit a dual-port BRAM within that interval.  Not synthesised here (no
// Vitis/Vivado HLS on the build machine): the target is a design figure, not a measured one.
//
// The extern "C" functions below are the C-simulation test bench, compiled once into a shared library with
// g++ and the ap_types headers of the hls4ml wheel and driven from python (finn_s2n2/dvs/hls/__init__.py).
#include <stdint.h>

#include "dvs_order_n.h"

#if defined(__has_include)
#if __has_include(<ap_axi_sdata.h>)
#include <ap_axi_sdata.h>
typedef ap_axiu<64, 0, 0, 0> axis_word_t;
#define DVS_HAVE_AXI_SDATA 1
#endif
#endif
#ifndef DVS_HAVE_AXI_SDATA
struct axis_word_t {  // the members of ap_axiu<64, 0, 0, 0> that the filter uses
    ap_uint<64> data;
    ap_uint<8> keep;
    ap_uint<8> strb;
    ap_uint<1> last;
};
#endif

#ifndef DVS_MAX_W
#define DVS_MAX_W 2048
#endif
#ifndef DVS_MAX_H
#define DVS_MAX_H 2048
#endif

static const int WORD_X_LSB = 32, WORD_Y_LSB = 47, WORD_P_BIT = 62, WORD_COORD_BITS = 15;

typedef dvs::order_n_state<DVS_MAX_W, DVS_MAX_H> state_t;

inline axis_word_t pack_word(const dvs::event_t& e) {
    axis_word_t w;
    w.data = 0;
    w.data.range(31, 0) = e.t;
    w.data.range(WORD_X_LSB + WORD_COORD_BITS - 1, WORD_X_LSB) = e.x;
    w.data.range(WORD_Y_LSB + WORD_COORD_BITS - 1, WORD_Y_LSB) = e.y;
    w.data[WORD_P_BIT] = e.p;
    w.keep = 0xFF;
    w.strb = 0xFF;
    w.last = e.last;
    return w;
}

inline dvs::event_t unpack_word(const axis_word_t& w) {
    dvs::event_t e;
    e.t = w.data.range(31, 0);
    e.x = w.data.range(WORD_X_LSB + WORD_COORD_BITS - 1, WORD_X_LSB);
    e.y = w.data.range(WORD_Y_LSB + WORD_COORD_BITS - 1, WORD_Y_LSB);
    e.p = w.data[WORD_P_BIT];
    e.last = w.last;
    return e;
}

// AXI-Stream output of the filter (found by argument-dependent lookup from dvs::emit)
inline void put(hls::stream<axis_word_t>& out, const dvs::event_t& e) { out.write(pack_word(e)); }

void dvs_order_n_top(hls::stream<axis_word_t>& in, hls::stream<axis_word_t>& out, dvs::stamp_t dt, ap_uint<1> clear) {
#pragma HLS INTERFACE axis port = in
#pragma HLS INTERFACE axis port = out
#pragma HLS INTERFACE s_axilite port = dt
#pragma HLS INTERFACE s_axilite port = clear
#pragma HLS INTERFACE ap_ctrl_none port = return
#pragma HLS PIPELINE II = 7
    static state_t s;
    if (clear) dvs::order_n_reset(s);
    dvs::event_t e = unpack_word(in.read());
    dvs::order_n_filter(e, dt, s, out);
}

extern "C" {

// Layout constants, compared by the tests with finn_s2n2/dvs/memory.py.
void dvs_layout(uint32_t* v) {
    v[0] = dvs::BK_BIT;
    v[1] = dvs::POL_BIT;
    v[2] = dvs::POS_BITS;
    v[3] = dvs::POS_EMPTY;
    v[4] = DVS_MAX_W;
    v[5] = DVS_MAX_H;
    v[6] = dvs::MAX_OUT_PER_EVENT;
}

// Run the top on n events (last[i] = 1 ends a packet); write the emitted events (at most 7 n) to o*, their
// TLAST to olast; return their count, or -1 when a coordinate is outside width x height or the sensor exceeds
// DVS_MAX_W x DVS_MAX_H.
long dvs_order_n_run(long n, const uint32_t* x, const uint32_t* y, const uint32_t* t, const uint8_t* p,
                     const uint8_t* last, uint32_t width, uint32_t height, uint32_t dt, uint32_t* ox,
                     uint32_t* oy, uint32_t* ot, uint8_t* op, uint8_t* olast) {
    if (width > DVS_MAX_W || height > DVS_MAX_H) return -1;
    hls::stream<axis_word_t> in, out;
    long k = 0;
    for (long i = 0; i < n; i++) {
        if (x[i] >= width || y[i] >= height) return -1;
        dvs::event_t e;
        e.x = x[i];
        e.y = y[i];
        e.t = t[i];
        e.p = p[i] ? 1 : 0;
        e.last = last[i] ? 1 : 0;
        in.write(pack_word(e));
        dvs_order_n_top(in, out, dvs::stamp_t(dt), ap_uint<1>(i == 0 ? 1 : 0));
        while (!out.empty()) {
            dvs::event_t o = unpack_word(out.read());
            ox[k] = o.x;
            oy[k] = o.y;
            ot[k] = o.t;
            op[k] = o.p;
            olast[k] = o.last;
            k++;
        }
    }
    return k;
}
}
