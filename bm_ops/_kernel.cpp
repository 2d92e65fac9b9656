// Fast BM convolution (forward + sub-gradient backward) for bm_ops.torch.BMConv2d / BMLinear.
//
// Limonova et al., "The BM Convolutional Layer":
//   J = sum_{a,b in {+,-}} p^a p^b exp( max_{c,dk,dm} ( ln I^a + v^b ) ) + b
// The python reference is bm_ops.functional.bm_conv2d; this file must compute the same function, including its
// optional input floor s >= 0 (ln max(I^a, s); the authors' published code uses s = 0.1, the paper s = 0).
//
// Layout (no (batch x positions x filters x C*K*K) tensor is ever built):
//  * pixel lists (PixelLists): for every padded input pixel and sign, the channels whose log input
//    a = ln max(+-x, s) is finite, with that log, in channel order. For s = 0 the signs are disjoint and
//    zeros/padding are absent, so every listed tap updates only the 2F accumulators [v^+ | v^-] of its sign,
//    with one add and one max per lane. Built per thread into a ring of the KH padded rows the current output
//    row reads (in L1/L2; consecutive rows of one image reuse KH - SH of them); AVX-512 builds transpose
//    16 x 16 (channel x pixel) tiles in registers and compact them there.
//  * weights: rows of 2F lanes [v^+ | v^-] (padded with -inf to whole SIMD vectors), ordered (kh, kw, c),
//    64-byte aligned (a vector load straddling two cache lines halves the bandwidth the inner loop needs).
//  * row sweep: per output row, block = (filter chunk of <= 8 vectors, group of tap offsets whose weight rows
//    fit in 32 KiB of L1); per position and sign the block's pixel lists form one field list (one loop exit per
//    field instead of one unpredictable exit per pixel list) run through the accumulators, which live in SIMD
//    registers (GCC vector extensions, two taps per step; the adds issued as fma(w, 1, a), bit-identical, so
//    they run on the multiply-add pipes beside the maxima). Forward with groups of whole kernel rows: the field
//    lists are slices of one row strip built per output row (RowStrip); otherwise they are gathered per position
//    (FieldList).
//  * forward: no arg-max bookkeeping at all. Backward: recomputes the maxima (same code), then the first
//    arg-max tap in (c, kh, kw) order of each maximum (exact equality with the maximum, smallest tap index:
//    the tie rule of torch.max in the reference), and scatters grad * exp(max) (= grad |x| e^v) into dv and
//    grad * (+-e^v) into dx at that tap only -- autograd keeps nothing but x and v.
//  * OpenMP over (image, output row) items. Forward: dynamic schedule in runs of rows of one image (a
//    descheduled thread on a shared machine holds up at most its current run). Backward: two phases of fixed
//    blocks that never share an input row (dx in place), per-thread dv added in thread order: deterministic
//    run to run.
// Built without -ffast-math (the code relies on -inf arithmetic) and without -march=native: bm_ops._kernel
// builds one library per x86-64 ISA level and loads the best one the CPU supports (runtime dispatch).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>
#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

// glibc's libmvec vector exp (same special-value handling as exp/expf: exp(-inf) = 0); declared here because
// <math.h> only declares the SIMD variants under -ffast-math, which this file must not use.
extern "C" {
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
double exp(double);
#pragma omp declare simd notinbranch
float logf(float);
#if defined(__AVX512F__)
__m512 _ZGVeN16v_logf(__m512);  // the 16-lane variant GCC calls for logf in an omp simd loop (AVX-512 builds)
#endif
#pragma omp declare simd notinbranch
double log(double);
}

namespace {

// SIMD vectors of the build's native width (a wider GCC vector type is split by the compiler, and its
// compare-selects then fall back to scalar code with stack spills: 30x slower on an AVX2 build)
#if defined(__AVX512F__)
constexpr int VBYTES = 64;
constexpr int MAX_NB = 8;  // vectors per filter chunk held in registers (32 SIMD registers)
#elif defined(__AVX__)
constexpr int VBYTES = 32;
constexpr int MAX_NB = 4;  // (16 SIMD registers)
#else
constexpr int VBYTES = 16;
constexpr int MAX_NB = 4;
#endif

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float V __attribute__((vector_size(VBYTES)));
  typedef int32_t I __attribute__((vector_size(VBYTES)));
  typedef int32_t Idx;
  static constexpr int W = VBYTES / 4;
};
template <>
struct Vec<double> {
  typedef double V __attribute__((vector_size(VBYTES)));
  typedef int64_t I __attribute__((vector_size(VBYTES)));
  typedef int64_t Idx;
  static constexpr int W = VBYTES / 8;
};

inline void vexp_raw(const float* __restrict a, float* __restrict r, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) r[i] = expf(a[i]);
}
inline void vexp_raw(const double* __restrict a, double* __restrict r, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) r[i] = exp(a[i]);
}
inline void vlogabs_raw(const float* __restrict a, float* __restrict r, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) r[i] = logf(std::fabs(a[i]));
}
inline void vlogabs_raw(const double* __restrict a, double* __restrict r, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) r[i] = log(std::fabs(a[i]));
}
// raw(a) of n values with the lanes equal to `in` replaced by `sub` for the call and their results set to `out`:
// libmvec's vector exp/log send every flagged lane (exp(-inf), log(0)) to the scalar function, which made one
// such lane in a 16-lane vector cost ~5x the vector call and a vector of them ~14x. libmvec computes each lane on
// its own, so the other lanes are bit-identical to raw(a). A read-only scan first: blocks without the value go
// straight to raw.
template <typename T, typename Raw>
inline void vmap_special(const T* __restrict a, T* __restrict r, size_t n, T in, T sub, T out, Raw raw) {
  constexpr size_t B = 256;
  alignas(64) T tmp[B];
  for (size_t i0 = 0; i0 < n; i0 += B) {
    const size_t m = std::min(B, n - i0);
    const T* __restrict ai = a + i0;
    T* __restrict ri = r + i0;
    int any = 0;
#pragma omp simd reduction(| : any)
    for (size_t i = 0; i < m; ++i) any |= ai[i] == in;
    if (!any) {
      raw(ai, ri, m);
      continue;
    }
#pragma omp simd
    for (size_t i = 0; i < m; ++i) tmp[i] = ai[i] == in ? sub : ai[i];
    raw(tmp, ri, m);
#pragma omp simd
    for (size_t i = 0; i < m; ++i) ri[i] = ai[i] == in ? out : ri[i];
  }
}
// exp with the -inf lanes (empty maxima: every input of one sign after a ReLU; -inf weights; the padding lanes
// past 2F) off the special-case path: exp(-inf) = +0 exactly
template <typename T>
inline void vexp(const T* __restrict a, T* __restrict r, size_t n) {
  const T ninf = -std::numeric_limits<T>::infinity();
  vmap_special(a, r, n, ninf, T(0), T(0), [](const T* x, T* y, size_t m) { vexp_raw(x, y, m); });
}
// ln|x| with the zero lanes (half of a ReLU output) off the special-case path: ln 0 = -inf exactly
template <typename T>
inline void vlogabs(const T* __restrict a, T* __restrict r, size_t n) {
  const T ninf = -std::numeric_limits<T>::infinity();
  vmap_special(a, r, n, T(0), T(1), ninf, [](const T* x, T* y, size_t m) { vlogabs_raw(x, y, m); });
}

template <typename T>
struct Geo {
  int N, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW;
  T s;  // input floor (0: the paper's ln 0 = -inf)
  int Hp() const { return H + 2 * PH; }
  int Wp() const { return W + 2 * PW; }
  int taps() const { return C * KH * KW; }
  int F2p() const { return (2 * F + Vec<T>::W - 1) / Vec<T>::W * Vec<T>::W; }
};

// w + a on the fused multiply-add unit: fma(w, 1, a) rounds w * 1 + a = w + a once, so it is bit-identical to the
// add (-inf included); issued there, the max-plus adds no longer compete with the maxima for the same pipes
template <typename V, typename T>
__attribute__((always_inline)) inline V add_fma(V w, T a) {
#if defined(__AVX512F__)
  if constexpr (sizeof(V) == 64 && sizeof(T) == 4)
    return (V)_mm512_fmadd_ps((__m512)w, _mm512_set1_ps(1.0f), _mm512_set1_ps(a));
  if constexpr (sizeof(V) == 64 && sizeof(T) == 8)
    return (V)_mm512_fmadd_pd((__m512d)w, _mm512_set1_pd(1.0), _mm512_set1_pd(a));
#elif defined(__FMA__)
  if constexpr (sizeof(V) == 32 && sizeof(T) == 4)
    return (V)_mm256_fmadd_ps((__m256)w, _mm256_set1_ps(1.0f), _mm256_set1_ps(a));
  if constexpr (sizeof(V) == 32 && sizeof(T) == 8)
    return (V)_mm256_fmadd_pd((__m256d)w, _mm256_set1_pd(1.0), _mm256_set1_pd(a));
#endif
  return w + a;
}

int clamp_threads(int nthreads, long items) {
  int nt = nthreads < 1 ? 1 : nthreads;
  if (nt > items) nt = (int)std::max(1L, items);
  return nt;
}

// a buffer whose data start on a 64-byte boundary: the weight rows and accumulators are loaded and stored as whole
// 64-byte vectors, which must not straddle cache lines (split loads halve the L1 bandwidth the max-plus needs)
template <typename U>
struct Aligned64 {
  std::vector<U> buf;
  U* p;
  explicit Aligned64(size_t n, U init = U()) : buf(n + 64 / sizeof(U), init) {
    const uintptr_t a = reinterpret_cast<uintptr_t>(buf.data());
    p = buf.data() + ((64 - a % 64) % 64) / sizeof(U);
  }
  U* data() { return p; }
  const U* data() const { return p; }
  U& operator[](size_t e) { return p[e]; }
  const U& operator[](size_t e) const { return p[e]; }
};

constexpr int LIST_ALIGN = 16;  // a list's slot is C rounded up to this (whole 16-lane vector stores and copies)

// Per padded pixel and sign: the channels whose log input a = ln max(+-x, s) is finite, in channel order, with
// that log (or, K, the channel times rstride), and their count. Per thread, a ring of the KH padded rows the
// current output row reads (row y in slot y % KH): consecutive output rows of one image reuse KH - SH of them,
// and the lists stay in L1/L2 (no image-sized buffer, no separate fill pass and barrier).
template <typename T>
struct PixelLists {
  int C, Cs, KH, Wp, Hp, rstride;
  size_t RP;  // pixels per sign in the ring
  Aligned64<T> A;
  Aligned64<int32_t> K;
  std::vector<int32_t> Ncnt;
  std::vector<long> tag;       // (image * Hp + padded row) held by each slot, -1: none
  std::vector<T> la, rows;     // fill scratch: ln|x| of one input row; one padded row's logs, (sign, u, c)
  std::vector<T> lrow;         // (AVX-512 fill) ln|x| of the input row, (c, u)
  const T* a(int sg, size_t pix) const { return A.data() + ((size_t)sg * RP + pix) * Cs; }
  const int32_t* k(int sg, size_t pix) const { return K.data() + ((size_t)sg * RP + pix) * Cs; }
  int n(int sg, size_t pix) const { return Ncnt[(size_t)sg * RP + pix]; }

  static int slot_width(int C) { return (C + LIST_ALIGN - 1) / LIST_ALIGN * LIST_ALIGN; }
  PixelLists(const Geo<T>& g, int rstride_)
      : C(g.C), Cs(slot_width(g.C)), KH(g.KH), Wp(g.Wp()), Hp(g.Hp()), rstride(rstride_),
        RP((size_t)g.KH * g.Wp()), A(2 * RP * Cs), K(2 * RP * Cs), Ncnt(2 * RP), tag(g.KH, -1L), la(g.W),
        rows(2 * (size_t)g.Wp() * Cs), lrow((size_t)g.C * g.W) {}

  // the finite entries of src[0, C) (the logs of one pixel and sign, channel-major) appended to ab/kb with their
  // channel * rstride; returns the count (the generic path; AVX-512 float builds compact in registers)
  int compact(const T* __restrict src, T* __restrict ab, int32_t* __restrict kb) const {
    const T ninf = -std::numeric_limits<T>::infinity();
    int cnt = 0;
    for (int c = 0; c < C; ++c) {
      const T a = src[c];
      ab[cnt] = a;
      kb[cnt] = c * rstride;
      cnt += a != ninf;
    }
    return cnt;
  }

  // the lists of padded row y of image n into its ring slot
  void fill_row(const T* x, const Geo<T>& g, int n, int y) {
    const T s = g.s;
    const T lfl = s > T(0) ? std::log(s) : -std::numeric_limits<T>::infinity();
    const int slot = y % KH;
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4) {
      fill_row_avx512(x, g, n, y, lfl);
      return;
    }
#endif
    std::fill(rows.begin(), rows.end(), lfl);
    if (y >= g.PH && y < g.PH + g.H) {
      for (int c = 0; c < C; ++c) {
        const T* xr = x + (((size_t)n * C + c) * g.H + (y - g.PH)) * g.W;
        T* __restrict rp = rows.data() + (size_t)g.PW * Cs + c;
        T* __restrict rq = rows.data() + ((size_t)Wp + g.PW) * Cs + c;
        vlogabs(xr, la.data(), g.W);  // ln|x| (-inf at 0), selected per sign
        for (int u = 0; u < g.W; ++u) {
          rp[(size_t)u * Cs] = xr[u] > s ? la[u] : lfl;
          rq[(size_t)u * Cs] = -xr[u] > s ? la[u] : lfl;
        }
      }
    }
    for (int sg = 0; sg < 2; ++sg)
      for (int u = 0; u < Wp; ++u) {
        const size_t e = (size_t)sg * RP + (size_t)slot * Wp + u;
        Ncnt[e] = compact(rows.data() + ((size_t)sg * Wp + u) * Cs, A.data() + e * Cs, K.data() + e * Cs);
      }
  }

#if defined(__AVX512F__)
  // 16 x 16 float transpose in registers: r[c] (row c, columns 0..15) -> r[u] (column u, rows 0..15)
  static inline void transpose16(__m512* r) {
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
      const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
      const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
      r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
      r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
      r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
      r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int k = 0; k < 4; ++k) {
      t[k] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88);
      t[k + 4] = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xdd);
      t[k + 8] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88);
      t[k + 12] = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xdd);
    }
    for (int k = 0; k < 4; ++k) {
      r[k] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0x88);
      r[k + 4] = _mm512_shuffle_f32x4(t[k + 4], t[k + 12], 0x88);
      r[k + 8] = _mm512_shuffle_f32x4(t[k], t[k + 8], 0xdd);
      r[k + 12] = _mm512_shuffle_f32x4(t[k + 4], t[k + 12], 0xdd);
    }
  }

  // the same lists for float with AVX-512: ln|x| per channel row as above (same values), the per-sign selection
  // along the row, then 16 x 16 (channel x pixel) tiles transposed in registers and compacted per pixel
  void fill_row_avx512(const T* x, const Geo<T>& g, int n, int y, T lfl) {
    const float s = (float)g.s;
    const int slot = y % KH, H = g.H, W = g.W;
    const bool inrow = y >= g.PH && y < g.PH + H;
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512 vs = _mm512_set1_ps(s), vms = _mm512_set1_ps(-s), vlfl = _mm512_set1_ps((float)lfl);
    const __m512 vninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
    float* A0 = (float*)A.data();
    // padding pixels (and whole padding rows): every channel at ln s (listed when s > 0), in channel order
    for (int u = 0; u < Wp; ++u) {
      if (inrow && u >= g.PW && u < g.PW + W) continue;
      for (int sg = 0; sg < 2; ++sg) {
        const size_t e = (size_t)sg * RP + (size_t)slot * Wp + u;
        int cnt = 0;
        if (lfl != -std::numeric_limits<T>::infinity())
          for (int c = 0; c < C; ++c, ++cnt) {
            A0[e * Cs + c] = (float)lfl;
            K.data()[e * Cs + c] = c * rstride;
          }
        Ncnt[e] = cnt;
      }
    }
    if (!inrow) return;
    const float* xrow = (const float*)x + ((size_t)n * C * H + (y - g.PH)) * W;  // channel c: + c * H * W
    float* lr = (float*)lrow.data();
    // ln|x| per channel row, libmvec's 16-lane logf called directly (the lanes vlogabs_raw computes, so the same
    // values) with the zeros set to 1 first and to -inf after (off libmvec's scalar special-case path, see vlogabs)
    const __m512 vone = _mm512_set1_ps(1.0f);
    for (int c = 0; c < C; ++c) {
      const float* xr = xrow + (size_t)c * H * W;
      float* lo = lr + (size_t)c * W;
      for (int u0 = 0; u0 < W; u0 += 16) {
        const bool full = W - u0 >= 16;  // (plain loads and stores where they can be: AMD does not forward a
                                         // masked store to the transposes' loads that follow)
        const __mmask16 um = (__mmask16)(full ? 0xFFFF : (1u << (W - u0)) - 1);
        const __m512 ax = _mm512_abs_ps(full ? _mm512_loadu_ps(xr + u0) : _mm512_maskz_loadu_ps(um, xr + u0));
        const __mmask16 z = _mm512_cmp_ps_mask(ax, _mm512_setzero_ps(), _CMP_EQ_OQ);
        const __m512 l = _mm512_mask_blend_ps(z, _ZGVeN16v_logf(_mm512_mask_blend_ps(z, ax, vone)), vninf);
        if (full)
          _mm512_storeu_ps(lo + u0, l);
        else
          _mm512_mask_storeu_ps(lo + u0, um, l);
      }
    }
    for (int u0 = 0; u0 < W; u0 += 16) {
      const int un = std::min(16, W - u0);
      const __mmask16 um = (__mmask16)(un == 16 ? 0xFFFF : (1u << un) - 1);
      int n0[16] = {0}, n1[16] = {0};
      for (int c0 = 0; c0 < C; c0 += 16) {
        const int cn = std::min(16, C - c0);
        __m512 rp[16], rn[16];
        for (int c = 0; c < 16; ++c) {
          if (c < cn) {
            const __m512 xv = _mm512_maskz_loadu_ps(um, xrow + (size_t)(c0 + c) * H * W + u0);
            const __m512 lv = _mm512_maskz_loadu_ps(um, lr + (size_t)(c0 + c) * W + u0);
            rp[c] = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(vs, xv, _CMP_LT_OQ), vlfl, lv);   // x > s
            rn[c] = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(xv, vms, _CMP_LT_OQ), vlfl, lv);  // -x > s
          } else {
            rp[c] = rn[c] = vninf;
          }
        }
        transpose16(rp);
        transpose16(rn);
        const __mmask16 in = (__mmask16)(cn == 16 ? 0xFFFF : (1u << cn) - 1);
        const __m512i kv = _mm512_mullo_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(c0)), _mm512_set1_epi32(rstride));
        for (int k = 0; k < un; ++k) {
          const size_t e0 = (size_t)slot * Wp + g.PW + u0 + k, e1 = RP + e0;
          const __mmask16 mp = _mm512_mask_cmp_ps_mask(in, rp[k], vninf, _CMP_NEQ_OQ);
          const __mmask16 mn = _mm512_mask_cmp_ps_mask(in, rn[k], vninf, _CMP_NEQ_OQ);
          _mm512_storeu_ps(A0 + e0 * Cs + n0[k], _mm512_maskz_compress_ps(mp, rp[k]));
          _mm512_storeu_si512((void*)(K.data() + e0 * Cs + n0[k]), _mm512_maskz_compress_epi32(mp, kv));
          _mm512_storeu_ps(A0 + e1 * Cs + n1[k], _mm512_maskz_compress_ps(mn, rn[k]));
          _mm512_storeu_si512((void*)(K.data() + e1 * Cs + n1[k]), _mm512_maskz_compress_epi32(mn, kv));
          n0[k] += __builtin_popcount((unsigned)mp);
          n1[k] += __builtin_popcount((unsigned)mn);
        }
      }
      for (int k = 0; k < un; ++k) {
        const size_t e0 = (size_t)slot * Wp + g.PW + u0 + k;
        Ncnt[e0] = n0[k];
        Ncnt[RP + e0] = n1[k];
      }
    }
  }
#endif

  // make the ring hold the padded rows i * SH + [0, KH) of image n; pofs[kh * KW + kw]: ring pixel of tap offset
  // (kh, kw) for the row's first position (position j adds j * SW)
  void rows_for(const T* x, const Geo<T>& g, int n, int i, size_t* pofs) {
    for (int kh = 0; kh < KH; ++kh) {
      const int y = i * g.SH + kh;
      const long key = (long)n * Hp + y;
      if (tag[y % KH] != key) {
        fill_row(x, g, n, y);
        tag[y % KH] = key;
      }
      for (int kw = 0; kw < g.KW; ++kw) pofs[kh * g.KW + kw] = (size_t)(y % KH) * Wp + kw;
    }
  }
};

// One receptive field's taps of one sign as a single list (the KH * KW pixel lists of the field's tap offsets
// [k0, k1) concatenated, so the max-plus loop below has one exit per field and sign instead of one per pixel, an
// unpredictable branch each): log input a, weight row offset (c * F2p + khw * kstride) and, with tm, the tap index
// t = c * khw_n + khw (the reference's (c, kh, kw) order). Padded with one -inf tap to an even count.
template <typename T>
struct FieldList {
  std::vector<T> a;
  std::vector<int32_t> k, t;
  int cnt = 0;
  FieldList(int taps_max, int Cs, bool with_t)
      : a(taps_max + Cs + 2), k(taps_max + Cs + 2), t(with_t ? taps_max + Cs + 2 : 0) {}

  // MUL: the pixel lists hold channels (the backward), else weight row offsets c * F2p (the forward)
  template <bool MUL>
  void gather(const PixelLists<T>& L, int sg, size_t pix0, const size_t* pofs, int k0, int k1, int F2p, int kstride,
              int khw_n) {
    const int Cs = L.Cs;
    T* __restrict am = a.data();
    int32_t* __restrict km = k.data();
    int32_t* __restrict tm = t.data();
    int n = 0;
    for (int khw = k0; khw < k1; ++khw) {
      const size_t pix = pix0 + pofs[khw];
      const T* __restrict A = L.a(sg, pix);
      const int32_t* __restrict K = L.k(sg, pix);
      const int cnt = L.n(sg, pix);
      const int32_t koff = khw * kstride;
      // whole slots (Cs entries, a fixed trip count): entries past cnt are overwritten by the next pixel's
#pragma omp simd
      for (int e = 0; e < Cs; ++e) {
        am[n + e] = A[e];
        km[n + e] = (MUL ? K[e] * F2p : K[e]) + koff;
      }
      if (MUL) {
#pragma omp simd
        for (int e = 0; e < Cs; ++e) tm[n + e] = K[e] * khw_n + khw;
      }
      n += cnt;
    }
    am[n] = -std::numeric_limits<T>::infinity();  // -inf + v = -inf: changes no maximum
    km[n] = 0;
    if (MUL) tm[n] = 0;
    cnt = (n + 1) & ~1;
  }
};

// max-plus of a field list into NB register vectors (no arg-max): res[b] = max(res[b], max_k a[k] + (vb + k[k])[b])
// (MUL: K holds channels, the row offset is K[k] * mul; the lists of a single pixel, used as they are)
// (koff: subtracted from every K, the row strip's position offset; the weight rows addressed stay in the table)
template <typename T, int NB, bool MUL>
__attribute__((always_inline)) inline void field_max(const T* __restrict A, const int32_t* __restrict K, int cnt,
                                                     int mul, const T* __restrict vb, T* __restrict res,
                                                     int32_t koff = 0) {
  typedef typename Vec<T>::V V;
  constexpr int W = Vec<T>::W;
  V acc[NB];
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) std::memcpy(&acc[b], res + b * W, sizeof(V));
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4 && !MUL) {
    // float lists (AVX-512): each step reads its two row offsets and its two logs as one 8-byte load each
    // (two loads fewer per step, the logs broadcast from the register: about 5 % of the loop)
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int k = 0; k + 1 < cnt; k += 2) {
      uint64_t kk;
      std::memcpy(&kk, K + k, sizeof(kk));
      const __m128 aa = _mm_castpd_ps(_mm_load_sd((const double*)(A + k)));
      const __m512 a0 = _mm512_broadcastss_ps(aa), a1 = _mm512_broadcastss_ps(_mm_movehdup_ps(aa));
      const T* v0 = vb + ((int32_t)(uint32_t)kk - koff);
      const T* v1 = vb + ((int32_t)(uint32_t)(kk >> 32) - koff);
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) {
        const __m512 w0 = _mm512_loadu_ps(v0 + b * W), w1 = _mm512_loadu_ps(v1 + b * W);
        const __m512 s0 = _mm512_fmadd_ps(w0, one, a0), s1 = _mm512_fmadd_ps(w1, one, a1);
        const V sm = (V)_mm512_max_ps(s1, s0);
        acc[b] = sm > acc[b] ? sm : acc[b];
      }
    }
  } else
#endif
  for (int k = 0; k + 1 < cnt; k += 2) {  // two taps per step: one dependent max per lane and step
    const T a0 = A[k], a1 = A[k + 1];
    const T* v0 = vb + (MUL ? K[k] * mul : K[k] - koff);
    const T* v1 = vb + (MUL ? K[k + 1] * mul : K[k + 1] - koff);
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) {
      V w0, w1;
      std::memcpy(&w0, v0 + b * W, sizeof(V));
      std::memcpy(&w1, v1 + b * W, sizeof(V));
      const V s0 = add_fma(w0, a0), s1 = add_fma(w1, a1);
      const V sm = s1 > s0 ? s1 : s0;
      acc[b] = sm > acc[b] ? sm : acc[b];
    }
  }
  if (cnt & 1) {  // (a pixel's own list; field lists are padded to an even count)
    const int k = cnt - 1;
    const T a0 = A[k];
    const T* v0 = vb + (MUL ? K[k] * mul : K[k] - koff);
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) {
      V w0;
      std::memcpy(&w0, v0 + b * W, sizeof(V));
      const V s0 = add_fma(w0, a0);
      acc[b] = s0 > acc[b] ? s0 : acc[b];
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) std::memcpy(res + b * W, &acc[b], sizeof(V));
}

// The forward's row strip (stride 1 or more), for tap groups of whole kernel rows: per sign and group of kernel rows
// [kh0, kh1), the pixel lists of the padded columns u < U = (OW - 1) * SW + KW the output row reads, column by
// column and within a column the group's kernel rows in order, each entry (a, c * F2p + (kh * KW + u) * kstride).
// Position j's field list of the group is then the contiguous slice of the columns [j * SW, j * SW + KW), and with
// koff = j * SW * kstride subtracted every entry addresses its tap's weight row c * F2p + (kh * KW + kw) * kstride
// (kw = u - j * SW): each pixel list is copied once per output row instead of KW times per position (the
// per-position gather was a fifth of the forward at 16 channels).
template <typename T>
struct RowStrip {
  int U, KH, KW, rows, ngroups;  // rows: kernel rows per group
  std::vector<T> a[2];
  std::vector<int32_t> k[2], t[2];  // t (the backward): tap index c * KH * KW + kh * KW + u
  std::vector<int> start[2];  // start[sg][grp * (U + 1) + u]: first entry of column u; u = U: the group's end
  RowStrip(const Geo<T>& g, int Cs, int rows_, bool with_t)
      : U((g.OW - 1) * g.SW + g.KW), KH(g.KH), KW(g.KW), rows(rows_), ngroups((g.KH + rows_ - 1) / rows_) {
    for (int sg = 0; sg < 2; ++sg) {
      a[sg].resize((size_t)U * KH * Cs + Cs);
      k[sg].resize((size_t)U * KH * Cs + Cs);
      if (with_t) t[sg].resize((size_t)U * KH * Cs + Cs);
      start[sg].resize((size_t)ngroups * (U + 1));
    }
  }
  // the field list of group gi, sign sg at the position whose first column is u0: the columns [u0, u0 + KW)
  struct Slice {
    const T* a;
    const int32_t* k;
    const int32_t* t;  // (tap indices: strips built for the backward)
    int cnt;
  };
  Slice slice(int sg, int gi, int u0) const {
    const int* sti = start[sg].data() + (size_t)gi * (U + 1);
    const int e0 = sti[u0];
    return {a[sg].data() + e0, k[sg].data() + e0, t[sg].empty() ? nullptr : t[sg].data() + e0, sti[u0 + KW] - e0};
  }
  // kernel rows per group when at least one whole kernel row of weight rows fits the tap group (else 0: the
  // forward gathers per position), and the largest entry fits in int32
  static int group_rows(const Geo<T>& g, int kstride, int grp) {
    const long U = (long)(g.OW - 1) * g.SW + g.KW;
    if (g.KH * g.KW == 1 || grp < g.KW) return 0;
    if (((long)(g.KH - 1) * g.KW + U) * (long)kstride + (long)g.C * g.F2p() > (long)INT32_MAX) return 0;
    return std::min(g.KH, grp / g.KW);
  }
  // pofs[kh * KW]: ring pixel of padded column 0 in kernel row kh (as PixelLists::rows_for sets it)
  // CHL: the pixel lists hold channels (the backward's, with tap indices), else weight row offsets c * F2p
  template <bool CHL>
  void build(const PixelLists<T>& L, const size_t* pofs, int kstride, int F2p) {
    const int Cs = L.Cs, khw_n = KH * KW;
    for (int sg = 0; sg < 2; ++sg) {
      T* __restrict am = a[sg].data();
      int32_t* __restrict km = k[sg].data();
      int32_t* __restrict tm = t[sg].data();
      int n = 0;
      for (int gi = 0; gi < ngroups; ++gi) {
        int* st = start[sg].data() + (size_t)gi * (U + 1);
        const int kh1 = std::min(KH, (gi + 1) * rows);
        for (int u = 0; u < U; ++u) {
          st[u] = n;
          for (int kh = gi * rows; kh < kh1; ++kh) {
            const size_t pix = pofs[kh * KW] + u;
            const T* __restrict A = L.a(sg, pix);
            const int32_t* __restrict K = L.k(sg, pix);
            const int32_t off = (kh * KW + u) * kstride, toff = kh * KW + u;
            // whole slots (a fixed trip count): entries past the count are overwritten by the next pixel's
            // (the slot copy of FieldList::gather; one shared inline helper made the 16-channel forward 8 % slower;
            // copying only the 16-entry blocks the count needs, a variable trip count, made 32 channels 4 % slower)
#pragma omp simd
            for (int e = 0; e < Cs; ++e) {
              am[n + e] = A[e];
              km[n + e] = (CHL ? K[e] * F2p : K[e]) + off;
            }
            if (CHL) {
#pragma omp simd
              for (int e = 0; e < Cs; ++e) tm[n + e] = K[e] * khw_n + toff;
            }
            n += L.n(sg, pix);
          }
        }
        st[U] = n;
      }
    }
  }
};

// arg-max of known maxima M (the backward's second pass), same field list (with tap indices): among the taps
// whose a + v equals M (the same float add as in the maxima pass, so equality is exact), keep the smallest tap
// index t: ties resolve to the first tap in (c, kh, kw) order whatever order the list has (as torch.max in the
// reference).
// (MUL: K holds channels, the row offset is K[k] * mul and the tap index K[k] * khw_n + khw; koff, toff: the row
// strip's position offsets, subtracted from every K and tap index)
template <typename T, int NB, bool MUL>
__attribute__((always_inline)) inline void field_arg(const T* __restrict A, const int32_t* __restrict K,
                                                     const int32_t* __restrict TT, int cnt, int mul, int khw_n,
                                                     int khw, const T* __restrict vb, const T* __restrict M,
                                                     typename Vec<T>::Idx* __restrict arg, int32_t koff = 0,
                                                     int32_t toff = 0) {
  typedef typename Vec<T>::V V;
  typedef typename Vec<T>::I I;
  constexpr int W = Vec<T>::W;
  V mx[NB];
  I idx[NB];
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) {
    std::memcpy(&mx[b], M + b * W, sizeof(V));
    std::memcpy(&idx[b], arg + b * W, sizeof(I));
  }
  for (int k = 0; k < cnt; ++k) {
    const T a0 = A[k];
    const I t = I{} + (typename Vec<T>::Idx)(MUL ? K[k] * khw_n + khw : TT[k] - toff);
    const T* v0 = vb + (MUL ? K[k] * mul : K[k] - koff);
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) {
      V w0;
      std::memcpy(&w0, v0 + b * W, sizeof(V));
      const V s = add_fma(w0, a0);
      const I lower = t < idx[b] ? t : idx[b];
      idx[b] = (s == mx[b]) ? lower : idx[b];
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) std::memcpy(arg + b * W, &idx[b], sizeof(I));
}

#define BM_NB_SWITCH(CALL)      \
  switch (nb) {                 \
    case 1: CALL(1); break;     \
    case 2: CALL(2); break;     \
    case 3: CALL(3); break;     \
    case 4: CALL(4); break;     \
    case 5: CALL(5); break;     \
    case 6: CALL(6); break;     \
    case 7: CALL(7); break;     \
    default: CALL(8); break;    \
  }

// a field block (tap offsets [k0, k1), both signs) into res (2, F2p) of the position: with one tap offset the
// pixel lists serve as they are, else they are gathered into fl first; MODE 1: the maxima into res, 2: the arg-max
// taps of the maxima res into arg, 3: both (the block's maxima are complete after it: one block per position)
// CHL: the pixel lists hold channels (the backward: the arg-max pass needs them), else weight row offsets
template <typename T, int MODE, bool CHL>
void field_block(int nb, const PixelLists<T>& L, FieldList<T>& fl, size_t pix0, const size_t* pofs, int k0, int k1,
                 int F2p, int kstride, int khw_n, const T* vb, T* res, typename Vec<T>::Idx* arg) {
  for (int sg = 0; sg < 2; ++sg) {
    T* rs = res + sg * F2p;
    typename Vec<T>::Idx* as = arg ? arg + sg * F2p : nullptr;
    if (k1 - k0 == 1) {
      const size_t pix = pix0 + pofs[k0];
      const int cnt = L.n(sg, pix);
      const T* vk0 = vb + (size_t)k0 * kstride;
#define BM_CALL(NB)                                                                                         \
  if (MODE & 1) field_max<T, NB, CHL>(L.a(sg, pix), L.k(sg, pix), cnt, F2p, vk0, rs);                        \
  if (MODE & 2) field_arg<T, NB, true>(L.a(sg, pix), L.k(sg, pix), nullptr, cnt, F2p, khw_n, k0, vk0, rs, as)
      BM_NB_SWITCH(BM_CALL)
#undef BM_CALL
    } else {
      fl.template gather<CHL>(L, sg, pix0, pofs, k0, k1, F2p, kstride, khw_n);
#define BM_CALL(NB)                                                                                         \
  if (MODE & 1) field_max<T, NB, false>(fl.a.data(), fl.k.data(), fl.cnt, 0, vb, rs);                        \
  if (MODE & 2) field_arg<T, NB, false>(fl.a.data(), fl.k.data(), fl.t.data(), fl.cnt, 0, 0, 0, vb, rs, as)
      BM_NB_SWITCH(BM_CALL)
#undef BM_CALL
    }
  }
}

// the checks read the bit patterns (integer compares: one SIMD pass; std::isfinite per element compiled to a
// scalar compare loop, a few per cent of a 32-channel forward)
template <typename T>
struct Bits;
template <>
struct Bits<float> {
  typedef uint32_t U;
  static constexpr U ABS = 0x7fffffffu, INF = 0x7f800000u;
};
template <>
struct Bits<double> {
  typedef uint64_t U;
  static constexpr U ABS = 0x7fffffffffffffffull, INF = 0x7ff0000000000000ull;
};

// no NaN, no +-inf
template <typename T>
bool all_finite(const T* x, size_t n) {
  typedef typename Bits<T>::U U;
  U bad = 0;
#pragma omp simd reduction(| : bad)
  for (size_t e = 0; e < n; ++e) {
    U u;
    std::memcpy(&u, x + e, sizeof(U));
    bad |= (U)((u & Bits<T>::INF) == Bits<T>::INF);  // exponent all ones: inf or NaN
  }
  return bad == 0;
}

// log-domain weights: finite or -inf (no NaN, no +inf)
template <typename T>
bool valid_log_weights(const T* v, size_t n) {
  typedef typename Bits<T>::U U;
  U bad = 0;
#pragma omp simd reduction(| : bad)
  for (size_t e = 0; e < n; ++e) {
    U u;
    std::memcpy(&u, v + e, sizeof(U));
    bad |= (U)((u & Bits<T>::ABS) > Bits<T>::INF) | (U)(u == Bits<T>::INF);  // NaN | +inf
  }
  return bad == 0;
}

// The weights, one row of 2F lanes [v+ | v-] per tap t = (c, kh, kw), from either the tap-major table vcat
// (taps, 2F) or v_pos / v_neg as torch holds them (F, C, KH, KW).
template <typename T>
struct Weights {
  const T *vcat, *vp, *vn;
  T get(size_t t, int lane, int F, size_t taps) const {
    if (vcat) return vcat[t * 2 * F + lane];
    return lane < F ? vp[(size_t)lane * taps + t] : vn[(size_t)(lane - F) * taps + t];
  }
};

// the kernel's weight table: rows ordered (kh, kw, c), each 2F lanes [v+ | v-] padded to F2p with -inf, so the
// rows of one tap offset are contiguous (serial, before the parallel region: small, and no thread waits at a
// barrier for a descheduled one on a shared machine)
template <typename T>
void weight_table(const Weights<T>& wsrc, const Geo<T>& g, T* vk) {
  const int F = g.F, F2p = g.F2p(), khw_n = g.KH * g.KW;
  const size_t taps = g.taps();
  const T ninf = -std::numeric_limits<T>::infinity();
  for (long t = 0; t < (long)taps; ++t) {
    const int c = (int)(t / khw_n), khw = (int)(t % khw_n);
    T* row = vk + ((size_t)khw * g.C + c) * F2p;
    for (int lane = 0; lane < 2 * F; ++lane) row[lane] = wsrc.get(t, lane, F, taps);
    for (int lane = 2 * F; lane < F2p; ++lane) row[lane] = ninf;
  }
}

// tap offsets per group: the group's weight rows of one filter chunk fit in about 32 KiB of L1
template <typename T>
int tap_group(const Geo<T>& g) {
  const size_t per_khw = (size_t)g.C * std::min(g.F2p(), MAX_NB * Vec<T>::W) * sizeof(T);
  return (int)std::max<size_t>(1, std::min<size_t>(g.KH * g.KW, 32768 / per_khw));
}

// the max-plus sweep of an output row: block = (filter chunk, group of tap offsets), whose weight rows stay in L1
// while the row's positions run through it; fn(nb, chunk start c0, k0, k1, position's pixel offset in the ring,
// offset into the row's (OW, 2, F2p) buffers) is called per live position and block
template <typename T, typename Fn>
void row_sweep(const Geo<T>& g, const char* live, Fn&& fn) {
  constexpr int W = Vec<T>::W;
  const int F2p = g.F2p(), nb_total = F2p / W, khw_n = g.KH * g.KW;
  const int grp = tap_group(g);
  for (int c0 = 0; c0 < nb_total; c0 += MAX_NB) {
    const int nb = std::min(MAX_NB, nb_total - c0);
    for (int k0 = 0; k0 < khw_n; k0 += grp) {
      const int k1 = std::min(khw_n, k0 + grp);
      for (int j = 0; j < g.OW; ++j) {
        if (live && !live[j]) continue;
        fn(nb, c0, k0, k1, (size_t)j * g.SW, (size_t)j * 2 * F2p + c0 * W);
      }
    }
  }
}

// dynamic schedule chunk: runs of consecutive rows of one image (the ring refills KH - SH rows per row inside a
// run, all KH at its start), small enough for about 4 chunks per thread
inline long row_chunk(long items, int OH, int nt) { return std::max(1L, std::min((long)OH, items / (4L * nt))); }

// the maxima of one group gi of a row strip into M (OW, 2, F2p; m0: the filter chunk's first lane) for every
// position of the output row: per position and sign the slice of the columns [j * SW, j * SW + KW) (out of line:
// one copy of the max-plus loops for both strip kinds; inlined twice, the 16-channel forward ran 6 % slower)
template <typename T>
__attribute__((noinline)) void strip_group_max(int nb, const Geo<T>& g, const RowStrip<T>& st, int gi, const T* vb,
                                               int kstride, T* m0) {
  const int F2p = g.F2p(), F4p = 2 * F2p;
  for (int j = 0; j < g.OW; ++j) {
    const int u0 = j * g.SW;
    const int32_t koff = (int32_t)u0 * kstride;
    for (int sg = 0; sg < 2; ++sg) {
      const typename RowStrip<T>::Slice sl = st.slice(sg, gi, u0);
      T* rs = m0 + (size_t)j * F4p + sg * F2p;
#define BM_CALL(NB) field_max<T, NB, false>(sl.a, sl.k, sl.cnt, 0, vb, rs, koff)
      BM_NB_SWITCH(BM_CALL)
#undef BM_CALL
    }
  }
}

template <typename T>
void forward(const T* x, const Geo<T>& g, const Weights<T>& wsrc, const T* bias, T* out, int nthreads) {
  constexpr int W = Vec<T>::W;
  const long items = (long)g.N * g.OH;
  const int nt = clamp_threads(nthreads, items);
  const int F = g.F, F2p = g.F2p(), F4p = 2 * F2p, OW = g.OW, khw_n = g.KH * g.KW;
  const int kstride = g.C * F2p;
  const T ninf = -std::numeric_limits<T>::infinity();
  Aligned64<T> vk((size_t)g.taps() * F2p);
  const long chunk = row_chunk(items, g.OH, nt);
  // tap groups of whole kernel rows: the row strip replaces the per-position gather
  const int strip_rows = RowStrip<T>::group_rows(g, kstride, tap_group(g));
  weight_table(wsrc, g, vk.data());
#pragma omp parallel num_threads(nt)
  {
    PixelLists<T> L(g, F2p);
    std::vector<size_t> pofs(khw_n);
    Aligned64<T> M((size_t)OW * F4p), R((size_t)OW * F4p);
    std::vector<T> Y((size_t)OW * F);
    FieldList<T> fl(g.taps(), L.Cs, false);
    // groups of one kernel row: one strip per ring row (built when the ring refills that row, so each padded row
    // is copied once instead of once per output row that reads it: a third of the copies at stride 1); its
    // entries carry the column offset u * kstride only, and kernel row kh adds kh * KW * kstride to the table base
    const bool per_ring_row = strip_rows == 1;
    std::unique_ptr<RowStrip<T>> strip(strip_rows && !per_ring_row ? new RowStrip<T>(g, L.Cs, strip_rows, false)
                                                                    : nullptr);
    std::vector<std::unique_ptr<RowStrip<T>>> ring_strip;
    std::vector<long> ring_strip_tag;
    if (per_ring_row) {
      Geo<T> g1 = g;
      g1.KH = 1;  // one kernel row: U = (OW - 1) * SW + KW columns
      for (int r = 0; r < g.KH; ++r) ring_strip.emplace_back(new RowStrip<T>(g1, L.Cs, 1, false));
      ring_strip_tag.assign(g.KH, -1L);
    }
#pragma omp for schedule(dynamic, chunk)
    for (long it = 0; it < items; ++it) {
      const int n = (int)(it / g.OH), i = (int)(it % g.OH);
      L.rows_for(x, g, n, i, pofs.data());
      std::fill(M.data(), M.data() + (size_t)OW * F4p, ninf);
      if (strip_rows) {
        // the sweep of row_sweep with tap groups of whole kernel rows (same blocking: weight rows stay in L1)
        if (per_ring_row) {
          for (int kh = 0; kh < g.KH; ++kh) {
            const int slot = (i * g.SH + kh) % g.KH;
            if (ring_strip_tag[slot] != L.tag[slot]) {
              const size_t p0 = (size_t)slot * L.Wp;  // ring pixel of padded column 0
              ring_strip[slot]->template build<false>(L, &p0, kstride, F2p);
              ring_strip_tag[slot] = L.tag[slot];
            }
          }
        } else {
          strip->template build<false>(L, pofs.data(), kstride, F2p);
        }
        for (int c0 = 0; c0 < F2p / W; c0 += MAX_NB) {
          const int nb = std::min(MAX_NB, F2p / W - c0);
          if (per_ring_row) {
            for (int kh = 0; kh < g.KH; ++kh)
              strip_group_max(nb, g, *ring_strip[(i * g.SH + kh) % g.KH], 0,
                              vk.data() + c0 * W + (size_t)kh * g.KW * kstride, kstride, M.data() + c0 * W);
          } else {
            for (int gi = 0; gi < strip->ngroups; ++gi)
              strip_group_max(nb, g, *strip, gi, vk.data() + c0 * W, kstride, M.data() + c0 * W);
          }
        }
      } else {
        row_sweep(g, nullptr, [&](int nb, int c0, int k0, int k1, size_t pix0, size_t o) {
          field_block<T, 1, false>(nb, L, fl, pix0, pofs.data(), k0, k1, F2p, kstride, khw_n,
                                   vk.data() + c0 * W, M.data() + o, nullptr);
        });
      }
      vexp(M.data(), R.data(), (size_t)OW * F4p);
      // per position: [x+: v+ (F), v- (F), pad][x-: v+ (F), v- (F), pad]; p^a p^b = +, -, -, +
      for (int j = 0; j < OW; ++j) {
        const T* __restrict r = R.data() + (size_t)j * F4p;
        T* __restrict y = Y.data() + (size_t)j * F;
#pragma omp simd
        for (int f = 0; f < F; ++f) y[f] = r[f] - r[F + f] - r[F2p + f] + r[F2p + F + f];
      }
      for (int f = 0; f < F; ++f) {
        T* __restrict o = out + (((size_t)n * F + f) * g.OH + i) * OW;
        const T b = bias ? bias[f] : T(0);
        for (int j = 0; j < OW; ++j) o[j] = Y[(size_t)j * F + f] + b;
      }
    }
  }
}

// gradients: gx (N, C, H, W) and gp, gn (F, C, KH, KW), all overwritten.
// Deterministic: the items are split into 2 x (team size) fixed contiguous blocks; thread k runs block 2k, then,
// after a barrier, block 2k + 1. Blocks run at the same time are separated by a whole block of at least
// ceil(KH / SH) - 1 rows, so they never touch the same input row: dx is accumulated in place (no per-thread
// copy) in a fixed order; dv per thread, added in thread order.
template <typename T>
void backward(const T* x, const Geo<T>& g, const Weights<T>& wsrc, const T* gout, T* gx, T* gp, T* gn,
              int nthreads) {
  typedef typename Vec<T>::Idx Idx;
  constexpr int W = Vec<T>::W;
  const long items = (long)g.N * g.OH;
  const int nt = clamp_threads(nthreads, items);
  const int F = g.F, F2 = 2 * F, F2p = g.F2p(), F4p = 2 * F2p, OW = g.OW, KW = g.KW, KH = g.KH, C = g.C;
  const int khw_n = KH * KW;
  const size_t taps = g.taps();
  const int kstride = C * F2p;
  const bool one_group = tap_group(g) >= khw_n;
  const int strip_rows = RowStrip<T>::group_rows(g, kstride, tap_group(g));
  const T ninf = -std::numeric_limits<T>::infinity();
  Aligned64<T> vk(taps * F2p);
  const size_t vsize = taps * F2, xsize = (size_t)g.N * C * g.H * g.W;
  std::vector<T> ev(vsize);                              // e^v per (lane, tap): lane-major like gp, gn
  std::vector<int32_t> tkh(taps), tkw(taps), tc(taps);   // tap -> (c, kh, kw) without divisions
  std::vector<long> toff(taps);                          // tap -> offset from the field's top-left pixel
  // per-thread dv partial sums, left uninitialised here: each thread zeroes its own (in parallel, first touch)
  std::unique_ptr<T[]> gv_local(new T[(size_t)nt * vsize]);
  const long lmin = std::max(1, (KH + g.SH - 1) / g.SH - 1);  // block length keeping blocks 2 apart disjoint
  const T s = g.s;
  weight_table(wsrc, g, vk.data());
  for (long t = 0; t < (long)taps; ++t) {
    const int c = (int)(t / khw_n), khw = (int)(t % khw_n);
    tc[t] = c;
    tkh[t] = khw / KW;
    tkw[t] = khw % KW;
    toff[t] = ((long)c * g.H + khw / KW) * g.W + khw % KW;
  }
  {
    std::vector<T> vrow(taps);  // (vexp's arguments must not alias)
    for (int lane = 0; lane < F2; ++lane) {
      for (size_t t = 0; t < taps; ++t) vrow[t] = wsrc.get(t, lane, F, taps);
      vexp(vrow.data(), ev.data() + (size_t)lane * taps, taps);
    }
  }
#pragma omp parallel num_threads(nt)
  {
    int tid = 0, team = 1;
#ifdef _OPENMP
    tid = omp_get_thread_num();
    team = omp_get_num_threads();  // (may be fewer than asked for)
#endif
    PixelLists<T> L(g, 1);  // K = channel
    std::vector<size_t> pofs(khw_n);
    T* __restrict gvl = gv_local.get() + (size_t)tid * vsize;
    std::fill(gvl, gvl + vsize, T(0));
#pragma omp for schedule(static)
    for (long e = 0; e < (long)xsize; ++e) gx[e] = T(0);
    Aligned64<T> M((size_t)OW * F4p), R((size_t)OW * F4p);
    Aligned64<Idx> ARG((size_t)OW * F4p);
    std::vector<char> live(OW);
    FieldList<T> fl(g.taps(), L.Cs, true);
    std::unique_ptr<RowStrip<T>> strip(strip_rows ? new RowStrip<T>(g, L.Cs, strip_rows, true) : nullptr);
    // the two passes over row strip slices (tap groups of whole kernel rows); MODE as in field_block
    auto strip_pass = [&](int mode) {
      RowStrip<T>& st = *strip;
      for (int c0 = 0; c0 < F2p / W; c0 += MAX_NB) {
        const int nb = std::min(MAX_NB, F2p / W - c0);
        const T* vb = vk.data() + c0 * W;
        for (int gi = 0; gi < st.ngroups; ++gi)
          for (int j = 0; j < OW; ++j) {
            if (!live[j]) continue;
            const int u0 = j * g.SW;
            const int32_t koff = (int32_t)u0 * kstride;
            for (int sg = 0; sg < 2; ++sg) {
              const typename RowStrip<T>::Slice sl = st.slice(sg, gi, u0);
              const size_t o = (size_t)j * F4p + sg * F2p + c0 * W;
#define BM_CALL(NB)                                                                                           \
  if (mode & 1) field_max<T, NB, false>(sl.a, sl.k, sl.cnt, 0, vb, M.data() + o, koff);                       \
  if (mode & 2)                                                                                               \
  field_arg<T, NB, false>(sl.a, sl.k, sl.t, sl.cnt, 0, 0, 0, vb, M.data() + o, ARG.data() + o, koff, u0)
              BM_NB_SWITCH(BM_CALL)
#undef BM_CALL
            }
          }
      }
    };
    const long nblk = 2L * team;
    const bool split = items >= nblk * lmin;  // (else thread 0 runs everything)
    auto process = [&](long it) {
      const int n = (int)(it / g.OH), i = (int)(it % g.OH);
      bool any_row = false;
      std::fill(live.begin(), live.end(), 0);
      for (int f = 0; f < F; ++f) {
        const T* __restrict go = gout + (((size_t)n * F + f) * g.OH + i) * OW;
        for (int j = 0; j < OW; ++j) live[j] |= go[j] != T(0);
      }
      for (int j = 0; j < OW; ++j) any_row |= live[j] != 0;
      if (!any_row) return;
      L.rows_for(x, g, n, i, pofs.data());
      // pass 1: the maxima (as the forward); pass 2: their first arg-max tap t
      // (one group of tap offsets: a position's maxima are complete after its own block, so both passes run on
      // the same field list)
      std::fill(M.data(), M.data() + (size_t)OW * F4p, ninf);
      std::fill(ARG.data(), ARG.data() + (size_t)OW * F4p, std::numeric_limits<Idx>::max());
      if (strip_rows) {
        strip->template build<true>(L, pofs.data(), kstride, F2p);
        if (strip->ngroups == 1) {
          strip_pass(3);
        } else {
          strip_pass(1);
          strip_pass(2);
        }
      } else {
      row_sweep(g, live.data(), [&](int nb, int c0, int k0, int k1, size_t pix0, size_t o) {
        if (one_group)
          field_block<T, 3, true>(nb, L, fl, pix0, pofs.data(), k0, k1, F2p, kstride, khw_n, vk.data() + c0 * W,
                            M.data() + o, ARG.data() + o);
        else
          field_block<T, 1, true>(nb, L, fl, pix0, pofs.data(), k0, k1, F2p, kstride, khw_n, vk.data() + c0 * W,
                            M.data() + o, nullptr);
      });
      if (!one_group)
        row_sweep(g, live.data(), [&](int nb, int c0, int k0, int k1, size_t pix0, size_t o) {
          field_block<T, 2, true>(nb, L, fl, pix0, pofs.data(), k0, k1, F2p, kstride, khw_n, vk.data() + c0 * W,
                            M.data() + o, ARG.data() + o);
        });
      }
      // scatter: term = exp(M) = max(|x|, s) e^v at the arg-max tap t: d/dv = grad exp(M); d/dx = grad sign(x) e^v
      // where |x| > s (for s = 0 every listed tap: inside the image, x != 0); a floored or padding tap has none
      vexp(M.data(), R.data(), (size_t)OW * F4p);
      // lane-major over the row's positions, with gv and e^v held lane-major too: a lane's updates walk one row
      // of each (L1-resident), and consecutive gx updates come from different receptive fields, so they rarely
      // wait on each other through memory (position-major, the lanes sharing one arg-max tap -- most of them: the
      // largest |x| of a field tends to win for every filter -- form one long add chain)
      const T* xn = x + (size_t)n * C * g.H * g.W;
      T* gxn = gx + (size_t)n * C * g.H * g.W;
      const int y0 = i * g.SH - g.PH;
      for (int sg = 0; sg < 2; ++sg)
        for (int lane = 0; lane < F2; ++lane) {
          const int f = lane < F ? lane : lane - F;
          const bool flip = (lane >= F) != (sg == 1);  // p^a p^b: x+ v+ +, x+ v- -, x- v+ -, x- v- +
          const T* __restrict go = gout + (((size_t)n * F + f) * g.OH + i) * OW;
          const size_t o0 = (size_t)sg * F2p + lane;
          const T* __restrict ev_l = ev.data() + (size_t)lane * taps;
          T* __restrict gv_l = gvl + (size_t)lane * taps;
          for (int j = 0; j < OW; ++j) {
            const size_t o = o0 + (size_t)j * F4p;
            const T gg = flip ? -go[j] : go[j];
            if (M[o] == ninf || gg == T(0)) continue;  // all taps -inf: term 0, gradient 0 (and dead positions)
            const size_t t = (size_t)ARG[o];
            // term = exp(M) = max(|x|, s) e^v at the arg-max tap t: d/dv = grad exp(M); d/dx = grad sign(x) e^v
            // where |x| > s (for s = 0 every listed tap: inside the image, x != 0); a floored or padding tap has none
            gv_l[t] += gg * R[o];
            const T gxv = (sg ? -gg : gg) * ev_l[t];
            const int x0 = j * g.SW - g.PW;
            if (s == T(0)) {
              gxn[(long)y0 * g.W + x0 + toff[t]] += gxv;
            } else {
              const int yy = y0 + tkh[t], xx = x0 + tkw[t];
              if (yy >= 0 && yy < g.H && xx >= 0 && xx < g.W) {
                const size_t xi = ((size_t)tc[t] * g.H + yy) * g.W + xx;
                if ((sg ? -xn[xi] : xn[xi]) > s) gxn[xi] += gxv;
              }
            }
          }
        }
    };
    for (int phase = 0; phase < 2; ++phase) {
      const long b = 2L * tid + phase;
      const long lo = split ? b * items / nblk : (tid == 0 && phase == 0 ? 0 : items);
      const long hi = split ? (b + 1) * items / nblk : items;
      for (long it = lo; it < hi; ++it) process(it);
#pragma omp barrier
    }
    // dv: the per-thread partial sums added in thread order
#pragma omp for schedule(static)
    for (long e = 0; e < (long)vsize; ++e) {  // (lane, tap): gp's rows, then gn's
      T acc = gv_local[e];
      for (int k = 1; k < team; ++k) acc += gv_local[(size_t)k * vsize + e];
      (e < (long)(F * taps) ? gp[e] : gn[e - (long)(F * taps)]) = acc;
    }
  }
}

template <typename T>
Geo<T> geo(int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW,
           double s) {
  return Geo<T>{N, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW, (T)s};
}

}  // namespace

extern "C" {

// bm_fwd_*: 0 = done; nothing written when 1 = x has NaN/inf, 2 = v_pos has NaN/+inf, 3 = bias has NaN/inf,
// 4 = v_neg has NaN/+inf.
// bm_fwd_<T>: weights as the tap-major table vcat (C*KH*KW, 2F) = [v+ | v-] per tap (kept for direct callers);
// bm_fwd_pn_<T> / bm_bwd_pn_<T>: v_pos, v_neg as torch holds them (F, C, KH, KW), no host-side re-layout.
// bm_bwd_pn_<T> overwrites gx (N, C, H, W), gp and gn (F, C, KH, KW).
int bm_kernel_abi_version() { return 3; }

#define BM_DEFINE(SUF, T)                                                                                      \
  int bm_fwd_##SUF(const T* x, int N, int C, int H, int W, const T* vcat, int F, int KH, int KW, int SH, int SW,  \
                   int PH, int PW, int OH, int OW, const T* bias, double s, T* out, int nthreads) {               \
    const size_t taps = (size_t)C * KH * KW;                                                                   \
    if (!all_finite(x, (size_t)N * C * H * W)) return 1;                                                        \
    for (size_t t = 0; t < taps; ++t) {                                                                        \
      if (!valid_log_weights(vcat + t * 2 * F, (size_t)F)) return 2;                                            \
      if (!valid_log_weights(vcat + t * 2 * F + F, (size_t)F)) return 4;                                        \
    }                                                                                                          \
    if (bias && !all_finite(bias, (size_t)F)) return 3;                                                         \
    forward<T>(x, geo<T>(N, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW, s), Weights<T>{vcat, nullptr, nullptr},  \
               bias, out, nthreads);                                                                           \
    return 0;                                                                                                  \
  }                                                                                                            \
  int bm_fwd_pn_##SUF(const T* x, int N, int C, int H, int W, const T* vp, const T* vn, int F, int KH, int KW,   \
                      int SH, int SW, int PH, int PW, int OH, int OW, const T* bias, double s, T* out,         \
                      int nthreads) {                                                                          \
    const size_t vsize = (size_t)F * C * KH * KW;                                                              \
    if (!all_finite(x, (size_t)N * C * H * W)) return 1;                                                        \
    if (!valid_log_weights(vp, vsize)) return 2;                                                               \
    if (!valid_log_weights(vn, vsize)) return 4;                                                               \
    if (bias && !all_finite(bias, (size_t)F)) return 3;                                                         \
    forward<T>(x, geo<T>(N, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW, s), Weights<T>{nullptr, vp, vn}, bias,   \
               out, nthreads);                                                                                 \
    return 0;                                                                                                  \
  }                                                                                                            \
  void bm_bwd_pn_##SUF(const T* x, int N, int C, int H, int W, const T* vp, const T* vn, int F, int KH, int KW,  \
                       int SH, int SW, int PH, int PW, int OH, int OW, double s, const T* gout, T* gx, T* gp,   \
                       T* gn, int nthreads) {                                                                  \
    backward<T>(x, geo<T>(N, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW, s), Weights<T>{nullptr, vp, vn}, gout,  \
                gx, gp, gn, nthreads);                                                                \
  }

BM_DEFINE(f32, float)
BM_DEFINE(f64, double)
}
