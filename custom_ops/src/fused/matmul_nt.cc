#include "matmul_nt.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"
#include "matmul.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define HX_NT_X86 1
#endif

namespace hyperonnx {
namespace {

int64_t padded(int64_t n) { return (n + kGemmPad - 1) / kGemmPad * kGemmPad; }

// dst[j·ldd + r] = src[r·lds + j] for r < rows, j < cols, from `r0` and `j0` on (the SIMD path's leftovers).
void transpose_scalar(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd,
                      int64_t r0 = 0, int64_t j0 = 0) {
  // A cache line (16 weights) of every row at a time: the lines stay in L1 while their columns go out.
  for (int64_t j = 0; j < cols; j += 16) {
    const int64_t jend = std::min(j + 16, cols);
    for (int64_t r = 0; r < rows; ++r) {
      if (r < r0 && jend <= j0) continue;  // done by the caller
      for (int64_t c = std::max(j, r < r0 ? j0 : 0); c < jend; ++c) dst[c * ldd + r] = src[r * lds + c];
    }
  }
}

#ifdef HX_NT_X86
// The same in 8 × 8 blocks of AVX registers: the scalar loop stores one float a cycle, which made the transpose cost
// more than the decode (0.23 ns a weight at 4096², M = 1, thread CPU time; 8 × 8 blocks took the op from 0.46 to
// 0.36 ns a weight).
__attribute__((target("avx2"))) void transpose_avx2(const float* src, int64_t lds, int64_t rows, int64_t cols,
                                                    float* dst, int64_t ldd) {
  const int64_t rows8 = rows / 8 * 8, cols8 = cols / 8 * 8;
  for (int64_t r = 0; r < rows8; r += 8) {
    for (int64_t j = 0; j < cols8; j += 8) {
      __m256 x[8];
      for (int i = 0; i < 8; ++i) x[i] = _mm256_loadu_ps(src + (r + i) * lds + j);
      // Pairs of rows interleaved, then quads, then the 128-bit halves: column c of the block ends in out[c].
      __m256 t[8], q[8];
      for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(x[i], x[i + 1]);      // a0 b0 a1 b1 | a4 b4 a5 b5
        t[i + 1] = _mm256_unpackhi_ps(x[i], x[i + 1]);  // a2 b2 a3 b3 | a6 b6 a7 b7
      }
      for (int h = 0; h < 8; h += 4) {
        q[h] = _mm256_shuffle_ps(t[h], t[h + 2], 0x44);      // a0 b0 c0 d0 | a4 b4 c4 d4
        q[h + 1] = _mm256_shuffle_ps(t[h], t[h + 2], 0xEE);  // a1 b1 c1 d1 | a5 …
        q[h + 2] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0x44);
        q[h + 3] = _mm256_shuffle_ps(t[h + 1], t[h + 3], 0xEE);
      }
      for (int c = 0; c < 4; ++c) {
        _mm256_storeu_ps(dst + (j + c) * ldd + r, _mm256_permute2f128_ps(q[c], q[c + 4], 0x20));
        _mm256_storeu_ps(dst + (j + c + 4) * ldd + r, _mm256_permute2f128_ps(q[c], q[c + 4], 0x31));
      }
    }
  }
  transpose_scalar(src, lds, rows, cols, dst, ldd, rows8, cols8);
}
#endif

void transpose(const float* src, int64_t lds, int64_t rows, int64_t cols, float* dst, int64_t ldd, FusedIsa isa) {
#ifdef HX_NT_X86
  if (isa != FusedIsa::kScalar) return transpose_avx2(src, lds, rows, cols, dst, ldd);
#else
  (void)isa;
#endif
  transpose_scalar(src, lds, rows, cols, dst, ldd);
}

}  // namespace

FusedNtPlan fused_nt_plan(int64_t m, int64_t n) {
  FusedNtPlan plan;
  plan.m = m;
  plan.cols = m <= kFusedRowsMaxM ? kFusedNtCols : kFusedNtWideCols;
  plan.units = m <= 0 || n <= 0 ? 0 : static_cast<uint64_t>((n + plan.cols - 1) / plan.cols);
  return plan;
}

bool fused_matmul_nt_unit(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, float* Y,
                          const FusedNtPlan& plan, uint64_t unit, std::string* error) {
  const int64_t N = w.rows(), K = w.cols(), M = plan.m;
  const int64_t n0 = static_cast<int64_t>(unit) * plan.cols;
  const int64_t nt = std::min(plan.cols, N - n0), ldt = padded(nt);
  if (K == 0) {  // an empty sum
    for (int64_t m = 0; m < M; ++m) std::memset(Y + m * N + n0, 0, static_cast<size_t>(nt) * sizeof(float));
    return true;
  }
  if (w.has_gemv_nt(M)) {  // M ≤ 3: dot products straight from registers, no row buffer and no transpose
    w.gemv_nt(blob, len, n0, nt, A, K, M, Y + n0, N);
    return true;
  }
  const int64_t depth = M <= kFusedRowsMaxM ? kFusedNtDepth : kFusedNtWideDepth;
  // The row buffer's stride is kept off a multiple of 4 KiB: segments of 1024 weights 4 KiB apart would all map to
  // one L1 set while the transpose reads a line of each in turn.
  const int64_t ldr = std::min(depth, K) + 16;
  thread_local std::vector<float> rows_buf, tile_buf, scratch;
  rows_buf.resize(static_cast<size_t>(nt * ldr));
  tile_buf.resize(static_cast<size_t>(kFusedNtChunk * ldt));
  if (nt < ldt) std::fill(tile_buf.begin(), tile_buf.end(), 0.0f);  // the padding columns stay zero
  for (int64_t k0 = 0; k0 < K; k0 += depth) {
    const int64_t kc = std::min(depth, K - k0);
    for (int64_t r = 0; r < nt; ++r) {
      const uint64_t e0 = static_cast<uint64_t>((n0 + r) * K + k0);
      if (r + kFusedNtPrefetchRows < nt) {
        w.prefetch(blob, len, e0 + static_cast<uint64_t>(kFusedNtPrefetchRows * K), static_cast<uint64_t>(kc));
      }
      if (!w.decode(blob, len, e0, e0 + static_cast<uint64_t>(kc), rows_buf.data() + r * ldr, &scratch, error)) {
        return false;
      }
    }
    for (int64_t c0 = 0; c0 < kc; c0 += kFusedNtChunk) {
      const int64_t cc = std::min(kFusedNtChunk, kc - c0);
      transpose(rows_buf.data() + c0, ldr, nt, cc, tile_buf.data(), ldt, w.isa());
      gemm_tile(A + k0 + c0, K, tile_buf.data(), ldt, Y + n0, N, M, cc, nt, k0 + c0 > 0, w.isa());
    }
  }
  return true;
}

bool fused_matmul_nt(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                     std::string* error) {
  const FusedNtPlan plan = fused_nt_plan(M, w.rows());
  for (uint64_t u = 0; u < plan.units; ++u) {
    if (!fused_matmul_nt_unit(w, blob, len, A, Y, plan, u, error)) return false;
  }
  return true;
}

}  // namespace hyperonnx
