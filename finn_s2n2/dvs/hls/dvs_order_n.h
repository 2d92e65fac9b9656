// O(N) background-activity filter for DVS event streams -- HLS C++ (Khodamoradi 2021, chapter 3, Sec. 3.2).
//
// Streaming: one event per call of order_n_filter(); it emits 0..7 events (up to six recovered past events,
// then the event itself).  AXI-Stream framing: an input event with last = 1 ends a packet; the last event
// emitted for that packet carries TLAST.  To know which emitted event is the last one, the filter holds one
// emitted event back in its state (a one-word output register) and writes it when the next one is emitted
// or when the packet ends (then with last = 1).  A packet that emits nothing emits no TLAST.  Memories: two 32-bit cells per row and per column
// (Fig 3.4.a): a timestamp cell and an info cell  bk << 31 | p << 30 | pos  (bookkeeping bit, polarity,
// 30-bit other-axis position).  The layout constants are the ones of finn_s2n2/dvs/memory.py; the
// python execution (finn_s2n2/dvs/denoise.py, _order_n_kernel) is the specification and the tests
// compare this C-simulation with it event for event, in emission order.
//
// Row/column memories are padded by one empty line on each side (index = coordinate + 1) so that the
// neighbourhood y-1..y+1 / x-1..x+1 needs no clipping; an empty cell holds pos = POS_EMPTY and bk = 1.
// Timestamps are 32-bit; the window test is the modular difference (t - t_cell) mod 2^32 < dt: a 32-bit
// sensor counter that wraps is handled, and a cell older than 2^32 ticks aliases to a young one.  The python
// execution models exactly this with timestamp_bits=32 (tests: C-sim == python on streams spanning > 2^32).
#ifndef HWRESHAPE_DVS_ORDER_N_H_
#define HWRESHAPE_DVS_ORDER_N_H_

#include "ap_int.h"
#include "hls_stream.h"

namespace dvs {

static const int BK_BIT = 31;
static const int POL_BIT = 30;
static const int POS_BITS = 30;
static const unsigned POS_EMPTY = (1u << POS_BITS) - 1u;
static const unsigned INFO_EMPTY = (1u << BK_BIT) | POS_EMPTY;

typedef ap_uint<32> cell_t;
typedef ap_uint<32> stamp_t;
typedef ap_uint<POS_BITS> coord_t;

//: most events emitted per input event (six recovered + itself): the output-bound initiation interval
static const int MAX_OUT_PER_EVENT = 7;

struct event_t {
    coord_t x;
    coord_t y;
    stamp_t t;
    ap_uint<1> p;
    ap_uint<1> last;  // input: end of packet; output: TLAST
};

template <unsigned MAX_W, unsigned MAX_H>
struct order_n_state {
    stamp_t row_t[MAX_H + 2];
    cell_t row_info[MAX_H + 2];
    stamp_t col_t[MAX_W + 2];
    cell_t col_info[MAX_W + 2];
    event_t held;  // one-word output register (TLAST needs to know the last emitted event)
    bool has_held;
};

inline cell_t pack_info(ap_uint<1> bk, ap_uint<1> p, coord_t pos) {
    cell_t c = 0;
    c[BK_BIT] = bk;
    c[POL_BIT] = p;
    c.range(POS_BITS - 1, 0) = pos;
    return c;
}
inline coord_t info_pos(cell_t c) { return c.range(POS_BITS - 1, 0); }
inline ap_uint<1> info_bk(cell_t c) { return c[BK_BIT]; }
inline ap_uint<1> info_pol(cell_t c) { return c[POL_BIT]; }

// Eq 3.2 for one stored event: |pos - c| <= 1 and t - t_cell < dt.
inline bool hit(cell_t info, coord_t c, stamp_t t_cell, stamp_t t, stamp_t dt) {
    ap_uint<32> d = ap_uint<32>(info_pos(info)) - ap_uint<32>(c) + 1;  // modular: in {0,1,2} iff |pos-c|<=1
    stamp_t age = t - t_cell;                                           // modular 32-bit difference
    return (d <= 2) && (age < dt);
}

template <unsigned MAX_W, unsigned MAX_H>
void order_n_reset(order_n_state<MAX_W, MAX_H>& s) {
RESET_ROWS:
    for (unsigned r = 0; r < MAX_H + 2; r++) {
#pragma HLS PIPELINE II = 1
        s.row_t[r] = 0;
        s.row_info[r] = INFO_EMPTY;
    }
RESET_COLS:
    for (unsigned c = 0; c < MAX_W + 2; c++) {
#pragma HLS PIPELINE II = 1
        s.col_t[c] = 0;
        s.col_info[c] = INFO_EMPTY;
    }
    s.has_held = false;
}

// Output words: put() writes one event to an output stream; the top overloads it for its AXI-Stream word.
inline void put(hls::stream<event_t>& out, const event_t& e) { out.write(e); }

// Emit e through the one-word output register; returns the number of words written (0 or 1).
template <unsigned MAX_W, unsigned MAX_H, class OUT>
unsigned emit(order_n_state<MAX_W, MAX_H>& s, const event_t& e, OUT& out) {
    unsigned n = 0;
    if (s.has_held) {
        event_t h = s.held;
        h.last = 0;
        put(out, h);
        n = 1;
    }
    s.held = e;
    s.has_held = true;
    return n;
}

// Process one event e; recovered past events and (if it passes) e itself are emitted (through the output
// register); if e.last, the register is flushed with TLAST.  Returns the number of events written (0..8).
template <unsigned MAX_W, unsigned MAX_H, class OUT>
unsigned order_n_filter(const event_t& e, stamp_t dt, order_n_state<MAX_W, MAX_H>& s, OUT& out) {
    const unsigned x = e.x, y = e.y;  // caller guarantees x < width <= MAX_W, y < height <= MAX_H
    bool hr[3], hc[3];
    bool passed = false;
SEARCH:
    for (int k = 0; k < 3; k++) {
#pragma HLS UNROLL
        hr[k] = hit(s.row_info[y + k], e.x, s.row_t[y + k], e.t, dt);
        hc[k] = hit(s.col_info[x + k], e.y, s.col_t[x + k], e.t, dt);
        passed = passed || hr[k] || hc[k];
    }
    unsigned n = 0;
    if (passed) {
    RECOVER_ROWS:  // past-event recovery, scan order rows y-1, y, y+1
        for (int k = 0; k < 3; k++) {
            const unsigned r = y + k;
            cell_t info = s.row_info[r];
            if (!info_bk(info) && hit(info, e.x, s.row_t[r], e.t, dt)) {
                event_t rec;
                rec.x = info_pos(info);
                rec.y = r - 1;
                rec.t = s.row_t[r];
                rec.p = info_pol(info);
                n += emit(s, rec, out);
                s.row_info[r][BK_BIT] = 1;
                const unsigned pc = unsigned(info_pos(info)) + 1;  // same event in its column cell?
                if (info_pos(s.col_info[pc]) == r - 1) s.col_info[pc][BK_BIT] = 1;
            }
        }
    RECOVER_COLS:  // then columns x-1, x, x+1
        for (int k = 0; k < 3; k++) {
            const unsigned c = x + k;
            cell_t info = s.col_info[c];
            if (!info_bk(info) && hit(info, e.y, s.col_t[c], e.t, dt)) {
                event_t rec;
                rec.x = c - 1;
                rec.y = info_pos(info);
                rec.t = s.col_t[c];
                rec.p = info_pol(info);
                n += emit(s, rec, out);
                s.col_info[c][BK_BIT] = 1;
                const unsigned pr = unsigned(info_pos(info)) + 1;
                if (info_pos(s.row_info[pr]) == c - 1) s.row_info[pr][BK_BIT] = 1;
            }
        }
        n += emit(s, e, out);
    }
    // store e in row y and column x (Fig 3.4.b)
    s.row_t[y + 1] = e.t;
    s.row_info[y + 1] = pack_info(passed, e.p, e.x);
    s.col_t[x + 1] = e.t;
    s.col_info[x + 1] = pack_info(passed, e.p, e.y);
    if (e.last && s.has_held) {  // end of packet: the held event is the packet's last output
        event_t h = s.held;
        h.last = 1;
        put(out, h);
        n++;
        s.has_held = false;
    }
    return n;
}

}  // namespace dvs

#endif  // HWRESHAPE_DVS_ORDER_N_H_
