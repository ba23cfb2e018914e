#include "matmul_nt.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"

namespace hyperonnx {

uint64_t fused_nt_units(int64_t n) { return n <= 0 ? 0 : static_cast<uint64_t>((n + kFusedNtCols - 1) / kFusedNtCols); }

bool fused_matmul_nt_unit(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                          uint64_t unit, std::string* error) {
  static_assert(kFusedNtCols <= kGemmPad, "a unit's columns fit one padded tile row");
  const int64_t N = w.rows(), K = w.cols();
  const int64_t n0 = static_cast<int64_t>(unit) * kFusedNtCols;
  const int64_t nt = std::min(kFusedNtCols, N - n0);
  if (K == 0) {  // an empty sum
    for (int64_t m = 0; m < M; ++m) std::memset(Y + m * N + n0, 0, static_cast<size_t>(nt) * sizeof(float));
    return true;
  }
  thread_local std::vector<float> rows_buf, tile_buf, scratch;
  rows_buf.resize(static_cast<size_t>(kFusedNtCols * kFusedNtDepth));
  tile_buf.assign(static_cast<size_t>(kFusedNtDepth * kGemmPad), 0.0f);  // the padding columns stay zero
  for (int64_t k0 = 0; k0 < K; k0 += kFusedNtDepth) {
    const int64_t kc = std::min(kFusedNtDepth, K - k0);
    for (int64_t r = 0; r < nt; ++r) {
      const uint64_t e0 = static_cast<uint64_t>((n0 + r) * K + k0);
      if (!w.decode(blob, len, e0, e0 + static_cast<uint64_t>(kc), rows_buf.data() + r * kFusedNtDepth, &scratch,
                    error)) {
        return false;
      }
    }
    // Transpose in 8-row strips, so each strip's source rows stay in L1 while their columns are written.
    for (int64_t k = 0; k < kc; k += 8) {
      const int64_t kend = std::min(k + 8, kc);
      for (int64_t r = 0; r < nt; ++r) {
        const float* src = rows_buf.data() + r * kFusedNtDepth;
        for (int64_t j = k; j < kend; ++j) tile_buf[static_cast<size_t>(j * kGemmPad + r)] = src[j];
      }
    }
    gemm_tile(A + k0, K, tile_buf.data(), kGemmPad, Y + n0, N, M, kc, nt, k0 > 0, w.isa());
  }
  return true;
}

bool fused_matmul_nt(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                     std::string* error) {
  const uint64_t units = fused_nt_units(w.rows());
  for (uint64_t u = 0; u < units; ++u) {
    if (!fused_matmul_nt_unit(w, blob, len, A, M, Y, u, error)) return false;
  }
  return true;
}

}  // namespace hyperonnx
