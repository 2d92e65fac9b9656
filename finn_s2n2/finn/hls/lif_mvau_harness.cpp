// Generic run-time-configured harness around s2n2::lif_mvau_core (lif_mvau.hpp) for randomized
// C-simulation tests: one binary, many configurations.  Input file: int64 case count, then per case an
// int64 header [acc_bits MW MH SIMD PE T P K thr sat rsub counts D OBITS frames], int32 weights
// (PE-partitioned, MW*MH), uint8 spikes (frames*P*MW).  Output file: int32 output elements, per case
// in stream order (frame-or-sample, p, nf, pe) = (.., p, neuron).
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "lif_mvau.hpp"

typedef ap_uint<64> TI;
typedef ap_uint<1024> TO;
typedef ap_int<32> TW;

template <unsigned ACC>
static void run_case(const s2n2::LifCfg &c, const std::vector<TW> &w, const std::vector<uint8_t> &x, unsigned frames,
                     std::vector<int32_t> &res) {
    std::vector<ap_int<ACC> > mem(c.P * c.MH, 0);
    std::vector<ap_uint<1> > prev(c.P * c.MH, 0);
    std::vector<ap_uint<32> > cnt(c.P * c.MH, 0);
    std::vector<ap_uint<1> > dline(c.D * c.P * c.MH + 1, 0);
    std::vector<TI> buf(c.MW / c.SIMD);
    hls::stream<TI> in;
    hls::stream<TO> out;
    unsigned tick = 0;
    for (unsigned v = 0; v < frames * c.P; v++)
        for (unsigned sf = 0; sf < c.MW / c.SIMD; sf++) {
            TI word = 0;
            for (unsigned s = 0; s < c.SIMD; s++) word[s] = x[(size_t)v * c.MW + sf * c.SIMD + s] & 1;
            in.write(word);
        }
    s2n2::lif_mvau_core<ACC, 48, TI, TO, TW>(in, out, w.data(), mem.data(), prev.data(), cnt.data(), dline.data(), buf.data(), c,
                                             frames, tick);
    while (!in.empty()) in.read();
    while (!out.empty()) {
        TO word = out.read();
        for (unsigned pe = 0; pe < c.PE; pe++) {
            unsigned v = 0;
            for (unsigned b = 0; b < c.OBITS; b++) v |= (unsigned)word[pe * c.OBITS + b] << b;
            res.push_back((int32_t)v);
        }
    }
}

template <unsigned ACC>
static bool dispatch(unsigned acc, const s2n2::LifCfg &c, const std::vector<TW> &w, const std::vector<uint8_t> &x,
                     unsigned frames, std::vector<int32_t> &res) {
    if (acc == ACC) {
        run_case<ACC>(c, w, x, frames, res);
        return true;
    }
    return dispatch<ACC + 1>(acc, c, w, x, frames, res);
}
template <>
bool dispatch<33>(unsigned, const s2n2::LifCfg &, const std::vector<TW> &, const std::vector<uint8_t> &, unsigned,
                  std::vector<int32_t> &) {
    return false;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s in.bin out.bin\n", argv[0]);
        return 2;
    }
    FILE *f = std::fopen(argv[1], "rb");
    if (!f) return 3;
    int64_t ncases = 0;
    if (std::fread(&ncases, 8, 1, f) != 1) return 4;
    std::vector<int32_t> res;
    for (int64_t i = 0; i < ncases; i++) {
        int64_t h[15];
        if (std::fread(h, 8, 15, f) != 15) return 5;
        s2n2::LifCfg c;
        unsigned acc = (unsigned)h[0];
        c.MW = h[1]; c.MH = h[2]; c.SIMD = h[3]; c.PE = h[4]; c.T = h[5]; c.P = h[6]; c.K = h[7];
        c.threshold = h[8]; c.saturate = h[9]; c.reset_subtract = h[10]; c.counts = h[11]; c.D = h[12];
        c.OBITS = h[13];
        unsigned frames = (unsigned)h[14];
        std::vector<int32_t> wr((size_t)c.MW * c.MH);
        if (std::fread(wr.data(), 4, wr.size(), f) != wr.size()) return 6;
        std::vector<TW> w(wr.begin(), wr.end());
        std::vector<uint8_t> x((size_t)frames * c.P * c.MW);
        if (!x.empty() && std::fread(x.data(), 1, x.size(), f) != x.size()) return 7;
        if (!dispatch<2>(acc, c, w, x, frames, res)) {
            std::fprintf(stderr, "unsupported acc_bits %u\n", acc);
            return 8;
        }
    }
    std::fclose(f);
    FILE *o = std::fopen(argv[2], "wb");
    if (!o) return 9;
    if (!res.empty()) std::fwrite(res.data(), 4, res.size(), o);
    std::fclose(o);
    return 0;
}
