#include "matmul.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gemm.h"

namespace hyperonnx {
namespace {

// A column tile reads each weight row's codes at a stride of a whole row: the hardware prefetchers lose track of
// such short runs, so the codes are fetched this many rows ahead.
constexpr int64_t kPrefetchRows = 8;

int64_t padded(int64_t n) { return (n + kGemmPad - 1) / kGemmPad * kGemmPad; }

bool column_tile(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                 uint64_t tile, std::string* error) {
  const int64_t K = w.rows(), N = w.cols();
  const int64_t n0 = static_cast<int64_t>(tile) * kFusedTileCols;
  const int64_t nt = std::min(kFusedTileCols, N - n0);
  const int64_t ldt = padded(nt);
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

bool row_slice(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* partial,
               uint64_t slice, uint64_t slices, std::string* error) {
  const int64_t K = w.rows(), N = w.cols();
  const int64_t k_begin = static_cast<int64_t>(static_cast<uint64_t>(K) * slice / slices);
  const int64_t k_end = static_cast<int64_t>(static_cast<uint64_t>(K) * (slice + 1) / slices);
  if (w.has_gemv(M)) {  // straight from registers: no row buffer
    std::memset(partial, 0, static_cast<size_t>(M * N) * sizeof(float));
    w.gemv(blob, len, k_begin, k_end, A, K, M, partial);
    return true;
  }
  const int64_t ldt = padded(N);
  thread_local std::vector<float> rows_buf, scratch;
  rows_buf.assign(static_cast<size_t>(kFusedSliceRows * ldt), 0.0f);  // the padding columns stay zero
  if (k_begin == k_end) {
    std::memset(partial, 0, static_cast<size_t>(M * N) * sizeof(float));
    return true;
  }
  for (int64_t k0 = k_begin; k0 < k_end; k0 += kFusedSliceRows) {
    const int64_t kc = std::min(kFusedSliceRows, k_end - k0);
    for (int64_t r = 0; r < kc; ++r) {
      const uint64_t e0 = static_cast<uint64_t>((k0 + r) * N);
      if (!w.decode(blob, len, e0, e0 + static_cast<uint64_t>(N), rows_buf.data() + r * ldt, &scratch, error)) {
        return false;
      }
    }
    gemm_tile(A + k0, K, rows_buf.data(), ldt, partial, N, M, kc, N, k0 > k_begin, w.isa());
  }
  return true;
}

}  // namespace

FusedPlan fused_plan(int64_t m, int64_t k, int64_t n) {
  FusedPlan plan;
  plan.m = m;
  plan.k = k;
  plan.n = n;
  if (m <= 0 || n <= 0) return plan;  // nothing to compute
  plan.by_rows = m <= kFusedRowsMaxM && k > 0 && n <= kFusedRowsMaxN;
  if (plan.by_rows) {
    // Slices of at least 64 rows: fewer for a short K (each slice's partial costs M·N adds to finish).
    plan.units = std::min<uint64_t>(kFusedMaxSlices, static_cast<uint64_t>((k + 63) / 64));
  } else {
    plan.units = static_cast<uint64_t>((n + kFusedTileCols - 1) / kFusedTileCols);
  }
  return plan;
}

size_t fused_partial_floats(const FusedPlan& plan) {
  return plan.by_rows ? static_cast<size_t>(plan.units * static_cast<uint64_t>(plan.m * plan.n)) : 0;
}

bool fused_matmul_unit(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, float* Y,
                       float* partials, const FusedPlan& plan, uint64_t unit, std::string* error) {
  if (plan.by_rows) {
    float* partial = partials + unit * static_cast<uint64_t>(plan.m * plan.n);
    return row_slice(w, blob, len, A, plan.m, partial, unit, plan.units, error);
  }
  if (plan.k == 0) {  // an empty sum
    const int64_t n0 = static_cast<int64_t>(unit) * kFusedTileCols, nt = std::min(kFusedTileCols, plan.n - n0);
    for (int64_t m = 0; m < plan.m; ++m) std::memset(Y + m * plan.n + n0, 0, static_cast<size_t>(nt) * sizeof(float));
    return true;
  }
  return column_tile(w, blob, len, A, plan.m, Y, unit, error);
}

void fused_matmul_finish(const FusedPlan& plan, const float* partials, float* Y) {
  if (!plan.by_rows) return;
  const size_t size = static_cast<size_t>(plan.m * plan.n);
  std::memcpy(Y, partials, size * sizeof(float));
  for (uint64_t s = 1; s < plan.units; ++s) {
    const float* p = partials + s * size;
    for (size_t i = 0; i < size; ++i) Y[i] += p[i];
  }
}

bool fused_matmul(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                  std::string* error) {
  const FusedPlan plan = fused_plan(M, w.rows(), w.cols());
  std::vector<float> partials(fused_partial_floats(plan));
  for (uint64_t u = 0; u < plan.units; ++u) {
    if (!fused_matmul_unit(w, blob, len, A, Y, partials.data(), plan, u, error)) return false;
  }
  fused_matmul_finish(plan, partials.data(), Y);
  return true;
}

}  // namespace hyperonnx
