#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HX_GEMM_X86 1
#endif

namespace hyperonnx {
namespace {

constexpr int kNR = 16;  // columns per portable / AVX2 micro-tile: two AVX2 vectors

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

// AVX-512 micro-kernel: MR ≤ 12 rows × 32 columns in 2·MR of the 32 zmm registers. Where the CPU has AVX-512F this
// does twice the work per instruction of the AVX2 kernel, as MLAS's fp32 GEMM does there.
template <int MR>
__attribute__((target("avx512f"))) void micro_avx512(const float* A, int64_t lda, const float* T, int64_t ldt, float* Y,
                                                      int64_t ldy, int64_t kc, int ncols, bool accumulate) {
  __m512 c[MR][2];
  const __mmask16 m0 = ncols >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << ncols) - 1u);
  const __mmask16 m1 = ncols >= 32 ? __mmask16(0xffff)
                       : ncols <= 16 ? __mmask16(0)
                                     : static_cast<__mmask16>((1u << (ncols - 16)) - 1u);
  for (int i = 0; i < MR; ++i) {
    if (accumulate) {
      c[i][0] = _mm512_maskz_loadu_ps(m0, Y + i * ldy);
      c[i][1] = _mm512_maskz_loadu_ps(m1, Y + i * ldy + 16);
    } else {
      c[i][0] = c[i][1] = _mm512_setzero_ps();
    }
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m512 b0 = _mm512_loadu_ps(T + k * ldt), b1 = _mm512_loadu_ps(T + k * ldt + 16);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(A[i * lda + k]);
      c[i][0] = _mm512_fmadd_ps(a, b0, c[i][0]);
      c[i][1] = _mm512_fmadd_ps(a, b1, c[i][1]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    _mm512_mask_storeu_ps(Y + i * ldy, m0, c[i][0]);
    _mm512_mask_storeu_ps(Y + i * ldy + 16, m1, c[i][1]);
  }
}

bool host_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}

bool host_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#endif

using MicroFn = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t, int, bool);

// A kernel family: micro[mr] for mr = 1..MR rows, NR columns each.
struct Kernel {
  int mr, nr;
  MicroFn micro[13];
};

constexpr Kernel kScalar = {6, 16, {nullptr, &micro_scalar<1>, &micro_scalar<2>, &micro_scalar<3>, &micro_scalar<4>,
                                    &micro_scalar<5>, &micro_scalar<6>}};
#ifdef HX_GEMM_X86
constexpr Kernel kAvx2 = {6, 16, {nullptr, &micro_avx2<1>, &micro_avx2<2>, &micro_avx2<3>, &micro_avx2<4>,
                                  &micro_avx2<5>, &micro_avx2<6>}};
constexpr Kernel kAvx512 = {12, 32, {nullptr, &micro_avx512<1>, &micro_avx512<2>, &micro_avx512<3>,
                                     &micro_avx512<4>, &micro_avx512<5>, &micro_avx512<6>, &micro_avx512<7>,
                                     &micro_avx512<8>, &micro_avx512<9>, &micro_avx512<10>, &micro_avx512<11>,
                                     &micro_avx512<12>}};
#endif

}  // namespace

void gemm_tile(const float* A, int64_t lda, const float* T, int64_t ldt, float* Y, int64_t ldy, int64_t M,
               int64_t kc, int64_t nt, bool accumulate, FusedIsa isa) {
  const Kernel* kernel = &kScalar;
#ifdef HX_GEMM_X86
  if (isa == FusedIsa::kAvx2) kernel = &kAvx2;
  if (isa == FusedIsa::kAvx512) kernel = &kAvx512;
#else
  (void)isa;
#endif
  for (int64_t m = 0; m < M; m += kernel->mr) {
    const int mr = static_cast<int>(std::min<int64_t>(kernel->mr, M - m));
    for (int64_t n = 0; n < nt; n += kernel->nr) {
      const int ncols = static_cast<int>(std::min<int64_t>(kernel->nr, nt - n));
      kernel->micro[mr](A + m * lda, lda, T + n, ldt, Y + m * ldy + n, ldy, kc, ncols, accumulate);
    }
  }
}

FusedIsa best_isa() {
  FusedIsa best = FusedIsa::kScalar;
#ifdef HX_GEMM_X86
  static const bool avx2 = host_has_avx2_fma(), avx512 = avx2 && host_has_avx512();
  best = avx512 ? FusedIsa::kAvx512 : avx2 ? FusedIsa::kAvx2 : FusedIsa::kScalar;
#endif
  const char* force = std::getenv("HYPERONNX_FUSED_ISA");
  if (force != nullptr && std::strcmp(force, "scalar") == 0) return FusedIsa::kScalar;
  if (force != nullptr && std::strcmp(force, "avx2") == 0 && best == FusedIsa::kAvx512) return FusedIsa::kAvx2;
  return best;
}

const char* isa_name(FusedIsa isa) {
  switch (isa) {
    case FusedIsa::kScalar: return "scalar";
    case FusedIsa::kAvx2: return "avx2";
    case FusedIsa::kAvx512: return "avx512";
  }
  return "?";
}

}  // namespace hyperonnx
