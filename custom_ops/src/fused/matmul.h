// HyperMatMul's computation, free of ONNX Runtime: Y[M, N] = A[M, K] × W[K, N] with W read from θ a tile at a time.
// The work is split into column tiles that are independent (each decodes its own columns of W once and reuses
// them for every row of A), so callers run tiles on any threads in any order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "weight.h"

namespace hyperonnx {

// Weight rows decoded per step, and columns per tile: 64 × 128 floats (32 KiB) stay in L2 while every row of A passes
// over them; for a few rows of A (M ≤ kFusedWideM), where decoding is the work, tiles are 512 columns wide so each
// decode call covers 16 blocks of a row (fewer calls and header reads, longer runs for the prefetcher).
constexpr int64_t kFusedTileRows = 64;
constexpr int64_t kFusedTileCols = 128;
constexpr int64_t kFusedWideCols = 512;
constexpr int64_t kFusedWideM = 8;

inline int64_t fused_tile_cols(int64_t m) { return m <= kFusedWideM ? kFusedWideCols : kFusedTileCols; }

// Column tiles of an N-column output at batch M.
inline uint64_t fused_col_tiles(int64_t n, int64_t m) {
  const int64_t cols = fused_tile_cols(m);
  return static_cast<uint64_t>((n + cols - 1) / cols);
}

// Computes Y[:, tile's columns] = A × W[:, tile's columns] (A: M × K row-major, Y: M × N row-major). The blob must
// have passed w.check(). Thread-safe (each call uses its own thread's scratch). False with *error on a decode error.
bool fused_matmul_tile(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                       uint64_t tile, std::string* error);

}  // namespace hyperonnx
