// Open stand-in written for this project for Vitis' hls_vector.h: FINN's cppsim template always includes
// npy2vectorstream.hpp, which names hls::vector<T, N>.  A plain fixed-size array with element access is all
// that header needs; FINN nodes that compute on hls::vector (e.g. Pool_hls with a newer finn-hlslib) are not
// supported by this stand-in.
#ifndef S2N2_OPEN_HLS_VECTOR_H
#define S2N2_OPEN_HLS_VECTOR_H

#include <cstddef>

namespace hls {

template <typename T, std::size_t N>
struct vector {
    T data[N];
    T &operator[](std::size_t i) { return data[i]; }
    const T &operator[](std::size_t i) const { return data[i]; }
    static constexpr std::size_t size() { return N; }
};

}  // namespace hls

#endif
