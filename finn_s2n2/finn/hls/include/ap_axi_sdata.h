// Minimal open stand-in for Vitis' ap_axi_sdata.h, written for this project: finn-hlslib uses only
// qdma_axis<D, U, TI, TD> (streamtools.h: Qdma2Stream_Batch / Stream2Qdma_Batch) from it.  Enough for g++
// C-simulation and syntax checks of FINN's generated HLS code with hls4ml's open ap_types headers.
#ifndef S2N2_OPEN_AP_AXI_SDATA_H
#define S2N2_OPEN_AP_AXI_SDATA_H

#include <ap_int.h>

template <int D, int U, int TI, int TD>
struct qdma_axis {
    ap_uint<D> data;
    ap_uint<(D + 7) / 8> keep;
    ap_uint<1> last;
    ap_uint<D> get_data() const { return data; }
    ap_uint<(D + 7) / 8> get_keep() const { return keep; }
    ap_uint<1> get_last() const { return last; }
    void set_data(const ap_uint<D> &d) { data = d; }
    void set_keep(const ap_uint<(D + 7) / 8> &k) { keep = k; }
    void set_last(const ap_uint<1> &l) { last = l; }
};

#endif
