// Fast BM convolution (forward + sub-gradient backward) for bm_ops.torch.BMConv2d.
//
// Seed 000_5bd4b4fcc7d8a338, "The BM Convolutional Layer":
//   J = sum_{a,b in {+,-}} p^a p^b exp( max_{c,dk,dm} ( ln I^a + v^b ) ) + b
// The python reference is bm_ops.functional.bm_conv2d; this file must compute the same function.
//
// Layout tricks (no (batch x positions x filters x C*K*K) tensor is ever built):
//  * x^+ and x^- are disjoint: a tap with x > 0 can only raise the two alpha=+ maxima, a tap with x < 0 only
//    the alpha=- ones, a zero (or padding) tap none. So each tap updates ONE accumulator set of 2F lanes
//    (beta = +, - concatenated), selected by the sign of x, with ln|x| as the log-domain input.
//  * v^+ and v^- are stored tap-major, (C, KH, KW, 2F), so the 2F lanes of one tap are contiguous.
//  * the arg-max tap of each of the 4F maxima is stored (int32, -1 when the max is -inf) for the backward,
//    which scatters grad * exp(max) into dv and grad * (+-exp(v)) into dx at that tap only.
// Ties resolve to the first tap in (c, kh, kw) order (strict >), like torch.max in the reference.
// Built with plain g++ -O3 -march=native -fopenmp (no -ffast-math: the code relies on -inf arithmetic).

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

// glibc's libmvec vector exp (same special-value handling as exp/expf: exp(-inf) = 0, overflow = inf); declared
// here because <math.h> only declares the SIMD variants under -ffast-math, which this file must not use.
extern "C" {
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
double exp(double);
}

namespace {

inline void vexp(const float* __restrict a, float* __restrict r, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) r[i] = expf(a[i]);
}
inline void vexp(const double* __restrict a, double* __restrict r, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) r[i] = exp(a[i]);
}

template <typename T>
void prep_log_abs(const T* __restrict x, int n_elems, T* __restrict la, uint8_t* __restrict neg) {
  const T ninf = -std::numeric_limits<T>::infinity();
  for (int e = 0; e < n_elems; ++e) {
    T v = x[e];
    la[e] = v != T(0) ? std::log(std::fabs(v)) : ninf;
    neg[e] = v < T(0) ? 1 : 0;
  }
}

// One image: padded log-abs plane (C, Hp, Wp) with -inf padding, and its sign plane.
template <typename T>
void fill_padded(const T* __restrict xn, int C, int H, int W, int PH, int PW, T* __restrict la,
                 uint8_t* __restrict neg) {
  const int Hp = H + 2 * PH, Wp = W + 2 * PW;
  const T ninf = -std::numeric_limits<T>::infinity();
  for (int e = 0; e < C * Hp * Wp; ++e) {
    la[e] = ninf;
    neg[e] = 0;
  }
  for (int c = 0; c < C; ++c)
    for (int y = 0; y < H; ++y)
      prep_log_abs(xn + ((size_t)c * H + y) * W, W, la + ((size_t)c * Hp + y + PH) * Wp + PW,
                   neg + ((size_t)c * Hp + y + PH) * Wp + PW);
}

constexpr int LANES = 16;  // lane block: fixed trip count so g++ unrolls/vectorizes without runtime checks

template <typename T, bool TRACK>
void forward(const T* x, int N, int C, int H, int W, const T* vcat, int F, int KH, int KW, int SH, int SW, int PH,
             int PW, int OH, int OW, const T* bias, T* out, int32_t* idx, int nthreads) {
  const int Hp = H + 2 * PH, Wp = W + 2 * PW;
  const int F2 = 2 * F, F4 = 4 * F;
  const int F2p = (F2 + LANES - 1) / LANES * LANES;  // lanes of one sign, padded with -inf weights
  const int F4p = 2 * F2p;
  const int plane = C * Hp * Wp;
  const int taps = C * KH * KW;
  const T ninf = -std::numeric_limits<T>::infinity();
  std::vector<T> vp((size_t)taps * F2p, ninf);
  for (int t = 0; t < taps; ++t) std::memcpy(vp.data() + (size_t)t * F2p, vcat + (size_t)t * F2, sizeof(T) * F2);
#pragma omp parallel num_threads(nthreads)
  {
    std::vector<T> la(plane);
    std::vector<uint8_t> neg(plane);
    // accumulators of one output row: (OW, [x>0 | x<0], F2p) maxima and arg-max taps, kept in memory but
    // updated position after position, so consecutive updates never wait on each other.
    std::vector<T> acc((size_t)OW * F4p);
    std::vector<int32_t> arg(TRACK ? (size_t)OW * F4p : 1);
    std::vector<T> res((size_t)OW * F4p);
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      fill_padded(x + (size_t)n * C * H * W, C, H, W, PH, PW, la.data(), neg.data());
      for (int i = 0; i < OH; ++i) {
        for (size_t e = 0; e < (size_t)OW * F4p; ++e) acc[e] = ninf;
        if (TRACK)
          for (size_t e = 0; e < (size_t)OW * F4p; ++e) arg[e] = -1;
        int t = 0;
        for (int c = 0; c < C; ++c) {
          for (int kh = 0; kh < KH; ++kh) {
            const size_t row = ((size_t)c * Hp + i * SH + kh) * Wp;
            for (int kw = 0; kw < KW; ++kw, ++t) {
              const T* v = vp.data() + (size_t)t * F2p;
              for (int j = 0; j < OW; ++j) {
                const size_t q = row + (size_t)j * SW + kw;
                const T a = la[q];
                if (a == ninf) continue;  // zero or padding tap: ln 0 = -inf never raises a max
                const size_t off = (size_t)j * F4p + (neg[q] ? F2p : 0);
                for (int f0 = 0; f0 < F2p; f0 += LANES) {
                  T* __restrict As = acc.data() + off + f0;
                  const T* __restrict vb = v + f0;
                  if (TRACK) {
                    int32_t* __restrict Is = arg.data() + off + f0;
#pragma omp simd
                    for (int u = 0; u < LANES; ++u) {
                      // written as unconditional stores of selects (no masked stores: slow on AMD)
                      const T s = a + vb[u];
                      const T cur = As[u];
                      const int32_t ci = Is[u];
                      const int32_t mask = -static_cast<int32_t>(s > cur);
                      As[u] = s > cur ? s : cur;
                      Is[u] = ci ^ ((ci ^ t) & mask);
                    }
                  } else {
#pragma omp simd
                    for (int u = 0; u < LANES; ++u) {
                      const T s = a + vb[u];
                      As[u] = s > As[u] ? s : As[u];
                    }
                  }
                }
              }
            }
          }
        }
        vexp(acc.data(), res.data(), (size_t)OW * F4p);
        for (int j = 0; j < OW; ++j) {
          const T* R = res.data() + (size_t)j * F4p;
          // per position: [x>0: v+ (F), v- (F), pad][x<0: v+ (F), v- (F), pad]; p^a p^b = +, -, -, +
          for (int f = 0; f < F; ++f) {
            T y = R[f] - R[F + f] - R[F2p + f] + R[F2p + F + f];
            if (bias) y += bias[f];
            out[(((size_t)n * F + f) * OH + i) * OW + j] = y;
          }
          if (TRACK) {
            int32_t* dst = idx + (((size_t)n * OH + i) * OW + j) * F4;
            std::memcpy(dst, arg.data() + (size_t)j * F4p, sizeof(int32_t) * F2);
            std::memcpy(dst + F2, arg.data() + (size_t)j * F4p + F2p, sizeof(int32_t) * F2);
          }
        }
      }
    }
  }
}

template <typename T>
void backward(const T* x, int N, int C, int H, int W, const T* vcat, int F, int KH, int KW, int SH, int SW, int PH,
              int PW, int OH, int OW, const int32_t* idx, const T* gout, T* gx, T* gv, int nthreads) {
  const int F2 = 2 * F, F4 = 4 * F;
  const int T_ = C * KH * KW;
  const size_t vsize = (size_t)T_ * F2;
  std::vector<T> ev(vsize);
  for (size_t e = 0; e < vsize; ++e) ev[e] = std::exp(vcat[e]);
  // tap -> offset in one image relative to the receptive field's top-left corner (no divisions in the loop)
  std::vector<long> toff(T_), tkh(T_), tkw(T_);
  for (int c = 0, t = 0; c < C; ++c)
    for (int kh = 0; kh < KH; ++kh)
      for (int kw = 0; kw < KW; ++kw, ++t) {
        toff[t] = ((long)c * H + kh) * W + kw;
        tkh[t] = kh;
        tkw[t] = kw;
      }
  int nt = nthreads < 1 ? 1 : nthreads;
  if (nt > N) nt = N;
  std::vector<T> gv_local((size_t)nt * vsize, T(0));
#pragma omp parallel num_threads(nt)
  {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    T* __restrict gvl = gv_local.data() + (size_t)tid * vsize;
    std::vector<T> g4(F4);
#pragma omp for schedule(static)
    for (int n = 0; n < N; ++n) {
      const T* xn = x + (size_t)n * C * H * W;
      T* gxn = gx + (size_t)n * C * H * W;
      for (int i = 0; i < OH; ++i) {
        for (int j = 0; j < OW; ++j) {
          const int32_t* I = idx + (((size_t)n * OH + i) * OW + j) * F4;
          const long base = (long)(i * SH - PH) * W + (j * SW - PW);
          bool any = false;
          for (int f = 0; f < F; ++f) {
            const T g = gout[(((size_t)n * F + f) * OH + i) * OW + j];
            any |= g != T(0);
            g4[f] = g;            // x>0, v+ : +
            g4[F + f] = -g;       // x>0, v- : -
            g4[F2 + f] = -g;      // x<0, v+ : -
            g4[F2 + F + f] = g;   // x<0, v- : +
          }
          if (!any) continue;
          for (int q = 0; q < F4; ++q) {
            const int t = I[q];
            if (t < 0) continue;
            const int lane = q < F2 ? q : q - F2;  // lane in the tap's 2F weights (beta)
            const T g = g4[q];
            const size_t xi = (size_t)(base + toff[t]);
            const T e = ev[(size_t)t * F2 + lane];
            const T xv = xn[xi];
            // term = |x| e^v: d/dv = |x| e^v, d/dx = sign(x) e^v (x^+ = x for x > 0, x^- = -x for x < 0)
            gvl[(size_t)t * F2 + lane] += g * std::fabs(xv) * e;
            gxn[xi] += q < F2 ? g * e : -g * e;
          }
        }
      }
    }
  }
  for (int k = 0; k < nt; ++k)
    for (size_t e = 0; e < vsize; ++e) gv[e] += gv_local[(size_t)k * vsize + e];
}

}  // namespace

extern "C" {

// idx == nullptr: inference only, no arg-max tracking

int bm_kernel_abi_version() { return 1; }

void bm_fwd_f32(const float* x, int N, int C, int H, int W, const float* vcat, int F, int KH, int KW, int SH, int SW,
                int PH, int PW, int OH, int OW, const float* bias, float* out, int32_t* idx, int nthreads) {
  if (idx)
    forward<float, true>(x, N, C, H, W, vcat, F, KH, KW, SH, SW, PH, PW, OH, OW, bias, out, idx, nthreads);
  else
    forward<float, false>(x, N, C, H, W, vcat, F, KH, KW, SH, SW, PH, PW, OH, OW, bias, out, idx, nthreads);
}
void bm_fwd_f64(const double* x, int N, int C, int H, int W, const double* vcat, int F, int KH, int KW, int SH,
                int SW, int PH, int PW, int OH, int OW, const double* bias, double* out, int32_t* idx,
                int nthreads) {
  if (idx)
    forward<double, true>(x, N, C, H, W, vcat, F, KH, KW, SH, SW, PH, PW, OH, OW, bias, out, idx, nthreads);
  else
    forward<double, false>(x, N, C, H, W, vcat, F, KH, KW, SH, SW, PH, PW, OH, OW, bias, out, idx, nthreads);
}
void bm_bwd_f32(const float* x, int N, int C, int H, int W, const float* vcat, int F, int KH, int KW, int SH, int SW,
                int PH, int PW, int OH, int OW, const int32_t* idx, const float* gout, float* gx, float* gv,
                int nthreads) {
  backward<float>(x, N, C, H, W, vcat, F, KH, KW, SH, SW, PH, PW, OH, OW, idx, gout, gx, gv, nthreads);
}
void bm_bwd_f64(const double* x, int N, int C, int H, int W, const double* vcat, int F, int KH, int KW, int SH,
                int SW, int PH, int PW, int OH, int OW, const int32_t* idx, const double* gout, double* gx,
                double* gv, int nthreads) {
  backward<double>(x, N, C, H, W, vcat, F, KH, KW, SH, SW, PH, PW, OH, OW, idx, gout, gx, gv, nthreads);
}
}
