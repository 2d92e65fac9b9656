// s2n2::SpikeMaxPool — streaming max pooling of binary spikes (own code, finn_s2n2).
//
// Khodamoradi 2021, §2.2.3: max pooling of spikes is the OR of the spikes in each window.  Input: one
// frame (= one tick) of an NHWC spike map, H x W pixels, C channels in C/PE words of PE lanes (lane p of
// word cf = channel cf*PE + p, FINN's packing).  Output: the (H/KH) x (W/KW) pooled map in the same word
// order.  Kernel == stride, no padding; trailing rows/columns that do not fill a window are read and
// dropped (ONNX MaxPool's floor).  One call of the function per frame.  The only memory is one word per
// output column and channel fold, holding the OR of the window row(s) seen so far: (W/KW) * (C/PE) x PE bits
// (FINN's SWU + Pool pair would keep KH-1 image rows plus a window); it is bound to LUTRAM.
#ifndef S2N2_SPIKE_MAXPOOL_HPP
#define S2N2_SPIKE_MAXPOOL_HPP

#include <ap_int.h>
#include <hls_stream.h>

namespace s2n2 {

template <unsigned H, unsigned W, unsigned C, unsigned PE, unsigned KH, unsigned KW>
void SpikeMaxPool(hls::stream<ap_uint<PE> > &in, hls::stream<ap_uint<PE> > &out) {
    static_assert(C % PE == 0, "PE must divide C");
    static_assert(KH >= 1 && KW >= 1 && H >= KH && W >= KW, "the window must fit the image");
    constexpr unsigned CF = C / PE;
    constexpr unsigned OH = H / KH;
    constexpr unsigned OW = W / KW;
    ap_uint<PE> acc[OW * CF];
#pragma HLS BIND_STORAGE variable = acc type = ram_2p impl = lutram
    // position counters instead of divisions: channel fold, column, row, and the offsets inside a window
    unsigned cf = 0, x = 0, y = 0, kx = 0, ky = 0, ox = 0;
    for (unsigned i = 0; i < H * W * CF; i++) {
#pragma HLS PIPELINE II = 1
        const ap_uint<PE> v = in.read();
        if (y < OH * KH && x < OW * KW) {
            const unsigned idx = ox * CF + cf;
            const bool first = (ky == 0) && (kx == 0);
            const ap_uint<PE> a = first ? ap_uint<PE>(v) : ap_uint<PE>(acc[idx] | v);
            if (ky == KH - 1 && kx == KW - 1) {
                out.write(a);
            } else {
                acc[idx] = a;
            }
        }
        if (++cf == CF) {
            cf = 0;
            if (++kx == KW) {
                kx = 0;
                ox++;
            }
            if (++x == W) {
                x = 0;
                kx = 0;
                ox = 0;
                if (++ky == KH) ky = 0;
                y++;
            }
        }
    }
}

}  // namespace s2n2

#endif
