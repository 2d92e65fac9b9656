// Fast BM convolution (forward + sub-gradient backward) for bm_ops.torch.BMConv2d / BMLinear.
//
// Limonova et al., "The BM Convolutional Layer":
//   J = sum_{a,b in {+,-}} p^a p^b exp( max_{c,dk,dm} ( ln I^a + v^b ) ) + b
// The python reference is bm_ops.functional.bm_conv2d; this file must compute the same function, including its
// optional input floor s >= 0 (ln max(I^a, s); the authors' published code uses s = 0.1, the paper s = 0).
//
// Layout (no (batch x positions x filters x C*K*K) tensor is ever built):
//  * pixel lists (PixelLists): for every padded input pixel and sign, the channels whose log input
//    a = ln max(+-x, s) is finite, with that log, in channel order -- built once per call. For s = 0 the signs
//    are disjoint and zeros/padding are absent, so every listed tap updates only the 2F accumulators
//    [v^+ | v^-] of its sign, with one add and one max per lane.
//  * weights: rows of 2F lanes [v^+ | v^-] (padded with -inf to whole SIMD vectors), ordered (kh, kw, c).
//  * row sweep: per output row, block = (filter chunk of <= 8 vectors, kh, kw, channel block) so the block's
//    weight rows stay in L1 while every position of the row runs its pixel list through them; the
//    accumulators of a (position, sign, chunk) live in SIMD registers (GCC vector extensions) during a list.
//  * forward: no arg-max bookkeeping at all. Backward: recomputes the maxima (same code), then the first
//    arg-max tap in (c, kh, kw) order of each maximum (exact equality with the maximum, smallest tap index:
//    the tie rule of torch.max in the reference), and scatters grad * exp(max) (= grad |x| e^v) into dv and
//    grad * (+-e^v) into dx at that tap only -- autograd keeps nothing but x and v.
//  * OpenMP over (image, output row) items, dynamic schedule (a descheduled thread on a shared machine does
//    not hold the others up); the backward accumulates dx and dv per thread.
// Built without -ffast-math (the code relies on -inf arithmetic) and without -march=native: bm_ops._kernel
// builds one library per x86-64 ISA level and loads the best one the CPU supports (runtime dispatch).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>
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
#pragma omp declare simd notinbranch
double log(double);
}

namespace {

template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float V __attribute__((vector_size(64)));
  typedef int32_t I __attribute__((vector_size(64)));
  typedef int32_t Idx;
  static constexpr int W = 16;
};
template <>
struct Vec<double> {
  typedef double V __attribute__((vector_size(64)));
  typedef int64_t I __attribute__((vector_size(64)));
  typedef int64_t Idx;
  static constexpr int W = 8;
};

constexpr int MAX_NB = 8;  // vectors per filter chunk held in registers

inline void vexp(const float* __restrict a, float* __restrict r, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) r[i] = expf(a[i]);
}
inline void vexp(const double* __restrict a, double* __restrict r, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) r[i] = exp(a[i]);
}
inline void vlogabs(const float* __restrict a, float* __restrict r, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) r[i] = logf(std::fabs(a[i]));
}
inline void vlogabs(const double* __restrict a, double* __restrict r, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) r[i] = log(std::fabs(a[i]));
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

// one tap list: log inputs A[k] whose weights start at v + K[k]
template <typename T>
struct Seg {
  const T* A;
  const int32_t* K;
  int cnt;
  const T* v;
};

// max-plus of tap lists into NB register vectors (no arg-max): res[b] = max(res[b], max_{q,k} A_q[k] + (v_q + K_q[k])[b])
template <typename T, int NB, bool CH>
__attribute__((always_inline)) inline void maxplus(const Seg<T>* __restrict segs, int nseg, int F2p,
                                                   T* __restrict res) {
  typedef typename Vec<T>::V V;
  constexpr int W = Vec<T>::W;
  V acc[NB];
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) std::memcpy(&acc[b], res + b * W, sizeof(V));
  for (int q = 0; q < nseg; ++q) {
    const T* __restrict A = segs[q].A;
    const int32_t* __restrict K = segs[q].K;
    const T* __restrict v = segs[q].v;
    const int cnt = segs[q].cnt;
    int k = 0;
    for (; k + 1 < cnt; k += 2) {  // two taps per step: one dependent max per lane and step
      const T a0 = A[k], a1 = A[k + 1];
      const T* v0 = v + (CH ? (size_t)K[k] * F2p : (size_t)K[k]);
      const T* v1 = v + (CH ? (size_t)K[k + 1] * F2p : (size_t)K[k + 1]);
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) {
        V w0, w1;
        std::memcpy(&w0, v0 + b * W, sizeof(V));
        std::memcpy(&w1, v1 + b * W, sizeof(V));
        const V s0 = w0 + a0, s1 = w1 + a1;
        const V sm = s1 > s0 ? s1 : s0;
        acc[b] = sm > acc[b] ? sm : acc[b];
      }
    }
    if (k < cnt) {
      const T a0 = A[k];
      const T* v0 = v + (CH ? (size_t)K[k] * F2p : (size_t)K[k]);
#pragma GCC unroll 8
      for (int b = 0; b < NB; ++b) {
        V w0;
        std::memcpy(&w0, v0 + b * W, sizeof(V));
        const V s0 = w0 + a0;
        acc[b] = s0 > acc[b] ? s0 : acc[b];
      }
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) std::memcpy(res + b * W, &acc[b], sizeof(V));
}

// arg-max of known maxima M (the backward's second pass): among the listed taps whose A[k] + v equals M (the
// same float add as in the maxima pass, so equality is exact), keep the smallest K[k] * khw_n + khw, i.e. the tap
// index t in (c, kh, kw) order (K holds channels): ties resolve to the first tap in tap order whatever order the
// lists come in (as torch.max in the reference).
template <typename T, int NB>
__attribute__((always_inline)) inline void maxplus_arg(const T* __restrict A, const int32_t* __restrict K, int cnt,
                                                       const T* __restrict v, int F2p, int khw_n, int khw,
                                                       const T* __restrict M, typename Vec<T>::Idx* __restrict arg) {
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
    const I t = I{} + (typename Vec<T>::Idx)(K[k] * khw_n + khw);
    const T* v0 = v + (size_t)K[k] * F2p;
#pragma GCC unroll 8
    for (int b = 0; b < NB; ++b) {
      V w0;
      std::memcpy(&w0, v0 + b * W, sizeof(V));
      const V s = w0 + a0;
      const I lower = t < idx[b] ? t : idx[b];
      idx[b] = (s == mx[b]) ? lower : idx[b];
    }
  }
#pragma GCC unroll 8
  for (int b = 0; b < NB; ++b) std::memcpy(arg + b * W, &idx[b], sizeof(I));
}

// CH: the lists hold channels (row = K[k] * F2p) instead of row offsets
template <typename T, bool CH>
void maxplus_n(int nb, const Seg<T>* segs, int nseg, int F2p, T* res) {
  switch (nb) {
    case 1: maxplus<T, 1, CH>(segs, nseg, F2p, res); break;
    case 2: maxplus<T, 2, CH>(segs, nseg, F2p, res); break;
    case 3: maxplus<T, 3, CH>(segs, nseg, F2p, res); break;
    case 4: maxplus<T, 4, CH>(segs, nseg, F2p, res); break;
    case 5: maxplus<T, 5, CH>(segs, nseg, F2p, res); break;
    case 6: maxplus<T, 6, CH>(segs, nseg, F2p, res); break;
    case 7: maxplus<T, 7, CH>(segs, nseg, F2p, res); break;
    default: maxplus<T, 8, CH>(segs, nseg, F2p, res); break;
  }
}

template <typename T>
void maxplus_arg_n(int nb, const T* A, const int32_t* K, int cnt, const T* v, int F2p, int khw_n, int khw, const T* M,
                   typename Vec<T>::Idx* arg) {
  switch (nb) {
    case 1: maxplus_arg<T, 1>(A, K, cnt, v, F2p, khw_n, khw, M, arg); break;
    case 2: maxplus_arg<T, 2>(A, K, cnt, v, F2p, khw_n, khw, M, arg); break;
    case 3: maxplus_arg<T, 3>(A, K, cnt, v, F2p, khw_n, khw, M, arg); break;
    case 4: maxplus_arg<T, 4>(A, K, cnt, v, F2p, khw_n, khw, M, arg); break;
    case 5: maxplus_arg<T, 5>(A, K, cnt, v, F2p, khw_n, khw, M, arg); break;
    case 6: maxplus_arg<T, 6>(A, K, cnt, v, F2p, khw_n, khw, M, arg); break;
    case 7: maxplus_arg<T, 7>(A, K, cnt, v, F2p, khw_n, khw, M, arg); break;
    default: maxplus_arg<T, 8>(A, K, cnt, v, F2p, khw_n, khw, M, arg); break;
  }
}

int clamp_threads(int nthreads, long items) {
  int nt = nthreads < 1 ? 1 : nthreads;
  if (nt > items) nt = (int)std::max(1L, items);
  return nt;
}

// Per padded pixel (n, y, u) and sign: the channels whose log input is finite, in channel order, with that log
// (a = ln max(+-x, s)); B holds where each channel block starts in a pixel's list. Built once per call, so every
// receptive field is a concatenation of KH * KW such lists (no per-position compaction).
// grow-only buffer reused across calls of one calling thread (no page faults for every call's big lists)
template <typename U>
U* workspace(std::vector<U>& buf, size_t n) {
  if (buf.size() < n) buf.resize(n);
  return buf.data();
}

template <typename T>
struct PixelLists {
  int C, cb, nblk;
  size_t NP;
  T* A;
  int32_t *K, *B;
  const T* a(int sg, size_t pix) const { return A + ((size_t)sg * NP + pix) * C; }
  const int32_t* k(int sg, size_t pix) const { return K + ((size_t)sg * NP + pix) * C; }
  const int32_t* b(int sg, size_t pix) const { return B + ((size_t)sg * NP + pix) * (nblk + 1); }

  PixelLists(const Geo<T>& g, int cb_) : C(g.C), cb(cb_) {
    nblk = (C + cb - 1) / cb;
    NP = (size_t)g.N * g.Hp() * g.Wp();
    static thread_local std::vector<T> a_buf;
    static thread_local std::vector<int32_t> k_buf, b_buf;
    A = workspace(a_buf, 2 * NP * C);
    K = workspace(k_buf, 2 * NP * C);
    B = workspace(b_buf, 2 * NP * (nblk + 1));
  }

  // fill the lists: an orphaned worksharing loop, called by every thread of the caller's parallel region (one
  // fork-join per kernel call instead of two); rstride: K holds c * rstride (the offset of channel c's row)
  void fill(const T* x, const Geo<T>& g, int rstride) {
    const int Hp = g.Hp(), Wp = g.Wp();
    const T ninf = -std::numeric_limits<T>::infinity();
    const T s = g.s;
    const T lfl = s > T(0) ? std::log(s) : ninf;
    const long rows_n = (long)g.N * Hp;
    {
      std::vector<T> la(g.W), rows(2 * (size_t)C * Wp);  // this padded row's logs, (sign, c, u)
#pragma omp for schedule(dynamic, 4)
      for (long it = 0; it < rows_n; ++it) {
        const int n = (int)(it / Hp), y = (int)(it % Hp);
        const size_t p0 = (size_t)it * Wp;  // first pixel of this padded row
        std::fill(rows.begin(), rows.end(), lfl);
        if (y >= g.PH && y < g.PH + g.H) {
          for (int c = 0; c < C; ++c) {
            const T* xr = x + (((size_t)n * C + c) * g.H + (y - g.PH)) * g.W;
            T* __restrict rp = rows.data() + (size_t)c * Wp + g.PW;
            T* __restrict rq = rows.data() + ((size_t)C + c) * Wp + g.PW;
            vlogabs(xr, la.data(), g.W);  // ln|x| (-inf at 0), selected per sign
            for (int u = 0; u < g.W; ++u) {
              rp[u] = xr[u] > s ? la[u] : lfl;
              rq[u] = -xr[u] > s ? la[u] : lfl;
            }
          }
        }
        for (int sg = 0; sg < 2; ++sg) {
          const T* __restrict r = rows.data() + (size_t)sg * C * Wp;
          for (int u = 0; u < Wp; ++u) {
            T* __restrict ab = A + ((size_t)sg * NP + p0 + u) * C;
            int32_t* __restrict kb = K + ((size_t)sg * NP + p0 + u) * C;
            int32_t* __restrict bb = B + ((size_t)sg * NP + p0 + u) * (nblk + 1);
            int cnt = 0;
            for (int blk = 0; blk < nblk; ++blk) {
              bb[blk] = cnt;
              const int c1 = std::min(C, (blk + 1) * cb);
              for (int c = blk * cb; c < c1; ++c) {
                const T a = r[(size_t)c * Wp + u];
                ab[cnt] = a;
                kb[cnt] = c * rstride;  // weight row offset of channel c
                cnt += a != ninf;
              }
            }
            bb[nblk] = cnt;
          }
        }
      }
    }
  }
};

template <typename T>
bool all_finite(const T* x, size_t n) {
  bool ok = true;
#pragma omp simd reduction(&& : ok)
  for (size_t e = 0; e < n; ++e) ok = ok && std::isfinite(x[e]);
  return ok;
}

// log-domain weights, lanes [lo, hi) of each of the taps' rows of 2F: finite or -inf (no NaN, no +inf)
template <typename T>
bool valid_log_weights(const T* vcat, size_t taps, int F2, int lo, int hi) {
  bool ok = true;
  for (size_t t = 0; t < taps; ++t) {
    const T* v = vcat + t * F2;
#pragma omp simd reduction(&& : ok)
    for (int e = lo; e < hi; ++e) ok = ok && (v[e] < std::numeric_limits<T>::infinity());
  }
  return ok;
}

// weight rows ordered (kh, kw, c), each 2F lanes [v+ | v-] padded to F2p with -inf: a tap offset's channels are
// contiguous rows
template <typename T>
std::vector<T> weight_table(const T* vcat, const Geo<T>& g) {
  const int F2 = 2 * g.F, F2p = g.F2p();
  std::vector<T> vk((size_t)g.taps() * F2p, -std::numeric_limits<T>::infinity());
  for (int c = 0, t = 0; c < g.C; ++c)
    for (int kh = 0; kh < g.KH; ++kh)
      for (int kw = 0; kw < g.KW; ++kw, ++t)
        std::memcpy(vk.data() + ((size_t)(kh * g.KW + kw) * g.C + c) * F2p, vcat + (size_t)t * F2, sizeof(T) * F2);
  return vk;
}

// channels per block: the block's weight rows of one tap offset and filter chunk fit in 32 KiB of L1
template <typename T>
int channel_block(const Geo<T>& g) {
  return std::max(1, (int)(32768 / ((size_t)std::min(g.F2p(), MAX_NB * Vec<T>::W) * sizeof(T))));
}

// the blocked max-plus sweep of output row (n, i): block = (filter chunk, kh, kw, channel block), whose weight
// rows stay in L1 while the row's positions run through it; fn(nb, A, K, cnt, v, khw, offset into the row's
// (OW, 2, F2p) buffers) is called per non-empty (block, position, sign) list
template <typename T, typename Fn>
void row_sweep(const Geo<T>& g, const PixelLists<T>& L, const T* vk, int n, int i, const char* live, Fn&& fn) {
  constexpr int W = Vec<T>::W;
  const int F2p = g.F2p(), nb_total = F2p / W, KW = g.KW, C = g.C, Wp = g.Wp();
  for (int c0 = 0; c0 < nb_total; c0 += MAX_NB) {
    const int nb = std::min(MAX_NB, nb_total - c0);
    for (int kh = 0; kh < g.KH; ++kh)
      for (int kw = 0; kw < KW; ++kw) {
        const T* vb = vk + (size_t)(kh * KW + kw) * C * F2p + c0 * W;
        const size_t prow = ((size_t)n * g.Hp() + (size_t)i * g.SH + kh) * Wp + kw;
        for (int blk = 0; blk < L.nblk; ++blk)
          for (int j = 0; j < g.OW; ++j) {
            if (live && !live[j]) continue;
            const size_t pix = prow + (size_t)j * g.SW;
            for (int sg = 0; sg < 2; ++sg) {
              const int32_t* bs = L.b(sg, pix);
              const int lo = bs[blk], hi = bs[blk + 1];
              if (hi > lo)
                fn(nb, L.a(sg, pix) + lo, L.k(sg, pix) + lo, hi - lo, vb, kh * KW + kw,
                   (size_t)j * 2 * F2p + (sg ? F2p : 0) + c0 * W);
            }
          }
      }
  }
}

template <typename T>
void forward(const T* x, const Geo<T>& g, const T* vcat, const T* bias, T* out, int nthreads) {
  const long items = (long)g.N * g.OH;
  const int nt = clamp_threads(nthreads, items);
  const int F = g.F, F2p = g.F2p(), F4p = 2 * F2p, OW = g.OW;
  const T ninf = -std::numeric_limits<T>::infinity();
  const std::vector<T> vk = weight_table(vcat, g);
  PixelLists<T> L(g, channel_block(g));
#pragma omp parallel num_threads(nt)
  {
    L.fill(x, g, F2p);
    std::vector<T> M((size_t)OW * F4p), R((size_t)OW * F4p);
#pragma omp for schedule(dynamic, 1)
    for (long it = 0; it < items; ++it) {
      const int n = (int)(it / g.OH), i = (int)(it % g.OH);
      std::fill(M.begin(), M.end(), ninf);
      row_sweep(g, L, vk.data(), n, i, nullptr,
                [&](int nb, const T* A, const int32_t* K, int cnt, const T* v, int, size_t o) {
                  const Seg<T> seg{A, K, cnt, v};
                  maxplus_n<T, false>(nb, &seg, 1, F2p, M.data() + o);
                });
      vexp(M.data(), R.data(), (size_t)OW * F4p);
      // per position: [x+: v+ (F), v- (F), pad][x-: v+ (F), v- (F), pad]; p^a p^b = +, -, -, +
      for (int f = 0; f < F; ++f) {
        T* o = out + (((size_t)n * F + f) * g.OH + i) * OW;
        const T b = bias ? bias[f] : T(0);
        for (int j = 0; j < OW; ++j) {
          const T* r = R.data() + (size_t)j * F4p;
          o[j] = r[f] - r[F + f] - r[F2p + f] + r[F2p + F + f] + b;
        }
      }
    }
  }
}

template <typename T>
void backward(const T* x, const Geo<T>& g, const T* vcat, const T* gout, T* gx, T* gv, int nthreads) {
  typedef typename Vec<T>::Idx Idx;
  const long items = (long)g.N * g.OH;
  const int nt = clamp_threads(nthreads, items);
  const int F = g.F, F2 = 2 * F, F2p = g.F2p(), F4p = 2 * F2p, OW = g.OW, KW = g.KW, KH = g.KH, C = g.C;
  const int taps = g.taps();
  const T ninf = -std::numeric_limits<T>::infinity();
  const std::vector<T> vk = weight_table(vcat, g);
  PixelLists<T> L(g, channel_block(g));
  const size_t vsize = (size_t)taps * F2, xsize = (size_t)g.N * C * g.H * g.W;
  std::vector<T> ev(vsize);
  vexp(vcat, ev.data(), vsize);
  std::vector<int32_t> tc(taps), tkh(taps), tkw(taps);  // tap -> (c, kh, kw) without divisions
  std::vector<long> toff(taps);                          // tap -> offset from the field's top-left pixel
  for (int c = 0, t = 0; c < C; ++c)
    for (int kh = 0; kh < KH; ++kh)
      for (int kw = 0; kw < KW; ++kw, ++t) {
        tc[t] = c;
        tkh[t] = kh;
        tkw[t] = kw;
        toff[t] = ((long)c * g.H + kh) * g.W + kw;
      }
  std::vector<T> gv_local((size_t)nt * vsize, T(0));
  std::vector<T> gx_local(nt > 1 ? (size_t)nt * xsize : 0, T(0));
  const T s = g.s;
#pragma omp parallel num_threads(nt)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    L.fill(x, g, 1);  // K = channel
    T* __restrict gvl = gv_local.data() + (size_t)tid * vsize;
    T* __restrict gxl = nt > 1 ? gx_local.data() + (size_t)tid * xsize : gx;
    std::vector<T> M((size_t)OW * F4p), R((size_t)OW * F4p), gl((size_t)OW * F4p);
    std::vector<Idx> ARG((size_t)OW * F4p);
    std::vector<char> live(OW);
#pragma omp for schedule(dynamic, 1)
    for (long it = 0; it < items; ++it) {
      const int n = (int)(it / g.OH), i = (int)(it % g.OH);
      bool any_row = false;
      for (int j = 0; j < OW; ++j) {
        T* gj = gl.data() + (size_t)j * F4p;
        bool any = false;
        for (int f = 0; f < F; ++f) {
          const T gg = gout[(((size_t)n * F + f) * g.OH + i) * OW + j];
          any |= gg != T(0);
          gj[f] = gg;             // x+, v+ : +
          gj[F + f] = -gg;        // x+, v- : -
          gj[F2p + f] = -gg;      // x-, v+ : -
          gj[F2p + F + f] = gg;   // x-, v- : +
        }
        live[j] = any;
        any_row |= any;
      }
      if (!any_row) continue;
      // pass 1: the maxima (as the forward); pass 2: their first arg-max tap t
      std::fill(M.begin(), M.end(), ninf);
      row_sweep(g, L, vk.data(), n, i, live.data(),
                [&](int nb, const T* A, const int32_t* K, int cnt, const T* v, int, size_t o) {
                  const Seg<T> seg{A, K, cnt, v};
                  maxplus_n<T, true>(nb, &seg, 1, F2p, M.data() + o);
                });
      std::fill(ARG.begin(), ARG.end(), std::numeric_limits<Idx>::max());
      row_sweep(g, L, vk.data(), n, i, live.data(),
                [&](int nb, const T* A, const int32_t* K, int cnt, const T* v, int khw, size_t o) {
                  maxplus_arg_n<T>(nb, A, K, cnt, v, F2p, KH * KW, khw, M.data() + o, ARG.data() + o);
                });
      // scatter: term = exp(M) = max(|x|, s) e^v at the arg-max tap t: d/dv = grad exp(M); d/dx = grad sign(x) e^v
      // where |x| > s (for s = 0 every listed tap: inside the image, x != 0); a floored or padding tap has none
      vexp(M.data(), R.data(), (size_t)OW * F4p);
      const T* xn = x + (size_t)n * C * g.H * g.W;
      T* gxn = gxl + (size_t)n * C * g.H * g.W;
      for (int j = 0; j < OW; ++j) {
        if (!live[j]) continue;
        const int y0 = i * g.SH - g.PH, x0 = j * g.SW - g.PW;
        const long base = (long)y0 * g.W + x0;
        for (int sg = 0; sg < 2; ++sg) {
          const size_t o = (size_t)j * F4p + (sg ? F2p : 0);
          const Idx* __restrict arg = ARG.data() + o;
          const T* __restrict mx = M.data() + o;
          const T* __restrict ex = R.data() + o;
          const T* __restrict gls = gl.data() + o;
          const T sgn = sg ? T(-1) : T(1);
          for (int lane = 0; lane < F2; ++lane) {
            const T gg = gls[lane];
            if (mx[lane] == ninf || gg == T(0)) continue;  // all taps -inf: term 0, gradient 0
            const long t = (long)arg[lane];
            gvl[(size_t)t * F2 + lane] += gg * ex[lane];
            if (s == T(0)) {
              gxn[base + toff[t]] += sgn * gg * ev[(size_t)t * F2 + lane];
            } else {
              const int yy = y0 + tkh[t], xx = x0 + tkw[t];
              if (yy >= 0 && yy < g.H && xx >= 0 && xx < g.W) {
                const size_t xi = ((size_t)tc[t] * g.H + yy) * g.W + xx;
                if (sgn * xn[xi] > s) gxn[xi] += sgn * gg * ev[(size_t)t * F2 + lane];
              }
            }
          }
        }
      }
    }
    if (nt > 1) {
#pragma omp barrier
#pragma omp for schedule(dynamic, 4096)
      for (long e = 0; e < (long)xsize; ++e) {
        T acc = gx[e];
        for (int k = 0; k < nt; ++k) acc += gx_local[(size_t)k * xsize + e];
        gx[e] = acc;
      }
    }
  }
  for (int k = 0; k < nt; ++k)
    for (size_t e = 0; e < vsize; ++e) gv[e] += gv_local[(size_t)k * vsize + e];
}

template <typename T>
Geo<T> geo(int N, int C, int H, int W, int F, int KH, int KW, int SH, int SW, int PH, int PW, int OH, int OW,
           double s) {
  return Geo<T>{N, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW, (T)s};
}

}  // namespace

extern "C" {

// bm_fwd_*: 0 = done; nothing written when 1 = x has NaN/inf, 2 = v_pos has NaN/+inf, 3 = bias has NaN/inf,
// 4 = v_neg has NaN/+inf
int bm_kernel_abi_version() { return 2; }

#define BM_DEFINE(SUF, T)                                                                                      \
  int bm_fwd_##SUF(const T* x, int N, int C, int H, int W, const T* vcat, int F, int KH, int KW, int SH, int SW,  \
                   int PH, int PW, int OH, int OW, const T* bias, double s, T* out, int nthreads) {               \
    if (!all_finite(x, (size_t)N * C * H * W)) return 1;                                                        \
    if (!valid_log_weights(vcat, (size_t)C * KH * KW, 2 * F, 0, F)) return 2;                                    \
    if (!valid_log_weights(vcat, (size_t)C * KH * KW, 2 * F, F, 2 * F)) return 4;                                \
    if (bias && !all_finite(bias, (size_t)F)) return 3;                                                         \
    forward<T>(x, geo<T>(N, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW, s), vcat, bias, out, nthreads);         \
    return 0;                                                                                                  \
  }                                                                                                            \
  void bm_bwd_##SUF(const T* x, int N, int C, int H, int W, const T* vcat, int F, int KH, int KW, int SH, int SW, \
                    int PH, int PW, int OH, int OW, double s, const T* gout, T* gx, T* gv, int nthreads) {       \
    backward<T>(x, geo<T>(N, C, H, W, F, KH, KW, SH, SW, PH, PW, OH, OW, s), vcat, gout, gx, gv, nthreads);     \
  }

BM_DEFINE(f32, float)
BM_DEFINE(f64, double)
}
