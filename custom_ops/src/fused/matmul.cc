#include "matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"

namespace hyperonnx {
namespace {

// A tile reads each weight row's codes at a stride of a whole row: the hardware prefetchers lose track of such
// short runs, so the codes are fetched this many rows ahead.
constexpr int64_t kPrefetchRows = 8;

}  // namespace

bool fused_matmul_tile(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                       uint64_t tile, std::string* error) {
  const int64_t K = w.rows(), N = w.cols();
  const int64_t cols = fused_tile_cols(M);
  const int64_t n0 = static_cast<int64_t>(tile) * cols;
  const int64_t nt = std::min(cols, N - n0);
  if (nt <= 0 || M <= 0) return true;
  if (K == 0) {  // an empty sum
    for (int64_t m = 0; m < M; ++m) std::memset(Y + m * N + n0, 0, static_cast<size_t>(nt) * sizeof(float));
    return true;
  }
  const int64_t ldt = (nt + kGemmPad - 1) / kGemmPad * kGemmPad;
  thread_local std::vector<float> tile_buf, scratch;
  tile_buf.assign(static_cast<size_t>(kFusedTileRows * ldt), 0.0f);  // the padding columns stay zero
  for (int64_t k0 = 0; k0 < K; k0 += kFusedTileRows) {
    const int64_t kc = std::min(kFusedTileRows, K - k0);
    for (int64_t r = 0; r < kc; ++r) {
      const uint64_t e0 = static_cast<uint64_t>((k0 + r) * N + n0);
      if (k0 + r + kPrefetchRows < K) {
        w.prefetch(blob, len, e0 + static_cast<uint64_t>(kPrefetchRows * N), static_cast<uint64_t>(nt));
      }
      if (!w.decode(blob, len, e0, e0 + static_cast<uint64_t>(nt), tile_buf.data() + r * ldt, &scratch, error)) {
        return false;
      }
    }
    gemm_tile(A + k0, K, tile_buf.data(), ldt, Y + n0, N, M, kc, nt, k0 > 0, w.isa());
  }
  return true;
}

}  // namespace hyperonnx
