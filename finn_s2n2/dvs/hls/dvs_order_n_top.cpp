// Synthesis top and C-simulation entry points of the O(N) DVS filter (seed 002, Sec. 3.2).
//
// dvs_order_n_top(): the HLS top -- one event per call from an input stream, static row/column memories,
// clear = 1 empties them first.  The extern "C" functions below are the C-simulation test bench, compiled
// once into a shared library with g++ and the ap_types headers of the hls4ml wheel and driven from python
// (finn_s2n2/dvs/hls/__init__.py) with streams chosen at run time.
#include <stdint.h>

#include "dvs_order_n.h"

#ifndef DVS_MAX_W
#define DVS_MAX_W 2048
#endif
#ifndef DVS_MAX_H
#define DVS_MAX_H 2048
#endif

typedef dvs::order_n_state<DVS_MAX_W, DVS_MAX_H> state_t;

void dvs_order_n_top(hls::stream<dvs::event_t>& in, hls::stream<dvs::event_t>& out, dvs::stamp_t dt, ap_uint<1> clear) {
#pragma HLS INTERFACE axis port = in
#pragma HLS INTERFACE axis port = out
#pragma HLS INTERFACE s_axilite port = dt
#pragma HLS INTERFACE s_axilite port = clear
    static state_t s;
    if (clear) dvs::order_n_reset(s);
    dvs::event_t e = in.read();
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
}

// Run the top on n events; write the emitted events (at most 7 n) to o*; return their count,
// or -1 when a coordinate is outside width x height or the sensor exceeds DVS_MAX_W x DVS_MAX_H.
long dvs_order_n_run(long n, const uint32_t* x, const uint32_t* y, const uint32_t* t, const uint8_t* p,
                     uint32_t width, uint32_t height, uint32_t dt, uint32_t* ox, uint32_t* oy, uint32_t* ot,
                     uint8_t* op) {
    if (width > DVS_MAX_W || height > DVS_MAX_H) return -1;
    hls::stream<dvs::event_t> in, out;
    long k = 0;
    for (long i = 0; i < n; i++) {
        if (x[i] >= width || y[i] >= height) return -1;
        dvs::event_t e;
        e.x = x[i];
        e.y = y[i];
        e.t = t[i];
        e.p = p[i] ? 1 : 0;
        in.write(e);
        dvs_order_n_top(in, out, dvs::stamp_t(dt), ap_uint<1>(i == 0 ? 1 : 0));
        while (!out.empty()) {
            dvs::event_t o = out.read();
            ox[k] = o.x;
            oy[k] = o.y;
            ot[k] = o.t;
            op[k] = o.p;
            k++;
        }
    }
    return k;
}
}
