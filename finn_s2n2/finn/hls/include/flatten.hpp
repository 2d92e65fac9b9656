// Open stand-in written for this project for the `flatten.hpp` of newer finn-hlslib releases, which FINN's
// cppsim templates (finn/templates/npy2stream/npy2apintstream.hpp) include but the finn-hlslib snapshot used
// here predates.  Only what npy2apintstream uses: width_v<T> (bits of an element type) and
// flatten/unflatten between an array of N elements and one packed word, element 0 in the least significant
// bits (FINN's packing: with reverse_inner the first npy element of a word ends up in the top bits).
// Element types ap_int / ap_uint only (FINN's integer nodes); its floating-point nodes need Vitis anyway.
#ifndef S2N2_OPEN_FLATTEN_HPP
#define S2N2_OPEN_FLATTEN_HPP

#include <cstddef>

#include <ap_int.h>

template <typename T>
struct s2n2_elem_width {
    static constexpr unsigned value = T::width;
};

template <typename T>
constexpr unsigned width_v = s2n2_elem_width<T>::value;

template <typename T, std::size_t N>
ap_uint<N * width_v<T> > flatten(T const (&buffer)[N]) {
    constexpr unsigned W = width_v<T>;
    ap_uint<N * W> packed = 0;
    for (std::size_t i = 0; i < N; i++) {
        ap_uint<W> bits;
        bits.range(W - 1, 0) = ap_int_base<W, false>(buffer[i]).range(W - 1, 0);
        packed.range((i + 1) * W - 1, i * W) = bits;
    }
    return packed;
}

template <typename T, std::size_t N, int PW>
void unflatten(T (&buffer)[N], ap_uint<PW> const &packed) {
    constexpr unsigned W = width_v<T>;
    static_assert(N * W <= (unsigned)PW, "unflatten: packed word narrower than the elements");
    for (std::size_t i = 0; i < N; i++) {
        T elem;
        elem.range(W - 1, 0) = packed.range((i + 1) * W - 1, i * W);
        buffer[i] = elem;
    }
}

#endif
