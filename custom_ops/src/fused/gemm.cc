#include "gemm.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HX_GEMM_X86 1
#endif

namespace hyperonnx {
namespace {

constexpr int kNR = 16;  // columns per micro-tile: two AVX2 vectors

// Portable micro-kernel: MR rows × 16 columns, accumulators in a local array the compiler keeps in registers or L1.
template <int MR>
void micro_scalar(const float* A, int64_t lda, const float* T, int64_t ldt, float* Y, int64_t ldy, int64_t kc,
                  int ncols, bool accumulate) {
  float c[MR][kNR];
  for (int i = 0; i < MR; ++i) {
    for (int j = 0; j < kNR; ++j) c[i][j] = accumulate && j < ncols ? Y[i * ldy + j] : 0.0f;
  }
  for (int64_t k = 0; k < kc; ++k) {
    const float* t = T + k * ldt;
    for (int i = 0; i < MR; ++i) {
      const float a = A[i * lda + k];
      for (int j = 0; j < kNR; ++j) c[i][j] += a * t[j];
    }
  }
  for (int i = 0; i < MR; ++i) std::memcpy(Y + i * ldy, c[i], static_cast<size_t>(ncols) * sizeof(float));
}

#ifdef HX_GEMM_X86
// AVX2 micro-kernel: MR ≤ 6 rows × 16 columns in 2·MR accumulators (12 at most, plus two weight vectors and a
// broadcast: the 16 registers). Partial column tiles go through a 16-wide buffer.
template <int MR>
__attribute__((target("avx2,fma"))) void micro_avx2(const float* A, int64_t lda, const float* T, int64_t ldt, float* Y,
                                                    int64_t ldy, int64_t kc, int ncols, bool accumulate) {
  __m256 c[MR][2];
  alignas(32) float buf[MR][kNR];
  const bool full = ncols == kNR;
  if (!full && accumulate) {
    for (int i = 0; i < MR; ++i) {
      std::memset(buf[i], 0, sizeof(buf[i]));
      std::memcpy(buf[i], Y + i * ldy, static_cast<size_t>(ncols) * sizeof(float));
    }
  }
  for (int i = 0; i < MR; ++i) {
    if (!accumulate) {
      c[i][0] = c[i][1] = _mm256_setzero_ps();
    } else {
      const float* src = full ? Y + i * ldy : buf[i];
      c[i][0] = _mm256_loadu_ps(src);
      c[i][1] = _mm256_loadu_ps(src + 8);
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_loadu_ps(T + k * ldt), b1 = _mm256_loadu_ps(T + k * ldt + 8);
#pragma GCC unroll 6
    for (int i = 0; i < MR; ++i) {
      const __m256 a = _mm256_broadcast_ss(A + i * lda + k);
      c[i][0] = _mm256_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm256_fmadd_ps(a, b1, c[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* dst = full ? Y + i * ldy : buf[i];
    _mm256_storeu_ps(dst, c[i][0]);
    _mm256_storeu_ps(dst + 8, c[i][1]);
    if (!full) std::memcpy(Y + i * ldy, buf[i], static_cast<size_t>(ncols) * sizeof(float));
  }
}

bool host_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

using MicroFn = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t, int, bool);
constexpr int kMR = 6;
constexpr MicroFn kScalar[kMR + 1] = {nullptr,          &micro_scalar<1>, &micro_scalar<2>, &micro_scalar<3>,
                                      &micro_scalar<4>, &micro_scalar<5>, &micro_scalar<6>};
#ifdef HX_GEMM_X86
constexpr MicroFn kAvx2[kMR + 1] = {nullptr,        &micro_avx2<1>, &micro_avx2<2>, &micro_avx2<3>,
                                    &micro_avx2<4>, &micro_avx2<5>, &micro_avx2<6>};
#endif

}  // namespace

void gemm_tile(const float* A, int64_t lda, const float* T, int64_t ldt, float* Y, int64_t ldy, int64_t M,
               int64_t kc, int64_t nt, bool accumulate, bool simd) {
  const MicroFn* micro = kScalar;
#ifdef HX_GEMM_X86
  if (simd) micro = kAvx2;
#else
  (void)simd;
#endif
  for (int64_t m = 0; m < M; m += kMR) {
    const int mr = static_cast<int>(std::min<int64_t>(kMR, M - m));
    for (int64_t n = 0; n < nt; n += kNR) {
      const int ncols = static_cast<int>(std::min<int64_t>(kNR, nt - n));
      micro[mr](A + m * lda, lda, T + n, ldt, Y + m * ldy + n, ldy, kc, ncols, accumulate);
    }
  }
}

bool gemm_simd_available() {
#ifdef HX_GEMM_X86
  static const bool has = host_has_avx2_fma();
  return has;
#else
  return false;
#endif
}

}  // namespace hyperonnx
