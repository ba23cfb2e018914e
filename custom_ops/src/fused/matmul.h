// HyperMatMul's computation, free of ONNX Runtime: Y[M, N] = A[M, K] × W[K, N] with W read from θ a tile at a time.
// The work is split into column tiles that are independent (each decodes its own columns of W once and reuses
// them for every row of A), so callers run tiles on any threads in any order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "weight.h"

namespace hyperonnx {

// Columns per tile and weight rows decoded per step: a 64 × 128 float tile is 32 KiB, which stays in L2 while
// every row of A passes over it.
constexpr int64_t kFusedTileCols = 128;
constexpr int64_t kFusedTileRows = 64;

// Column tiles of an N-column output.
inline uint64_t fused_col_tiles(int64_t n) {
  return static_cast<uint64_t>((n + kFusedTileCols - 1) / kFusedTileCols);
}

// Computes Y[:, tile's columns] = A × W[:, tile's columns] (A: M × K row-major, Y: M × N row-major). The blob must
// have passed w.check(). Thread-safe (each call uses its own thread's scratch). False with *error on a decode error.
bool fused_matmul_tile(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                       uint64_t tile, std::string* error);

}  // namespace hyperonnx
