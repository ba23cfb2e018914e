// HyperMatMul's computation, free of ONNX Runtime: Y[M, N] = A[M, K] × W[K, N] with W read from θ a tile at a time.
// The work is split into independent units that callers run on any threads in any order, then finish:
//   column tiles (M > kFusedRowsMaxM): each decodes its 128 columns of W once, 64 rows at a time (a 32 KiB tile that
//     stays in L2 while every row of A passes over it), and writes its columns of Y;
//   row slices (M ≤ kFusedRowsMaxM, where the decode is the work): each decodes whole rows of its slice of K, 8 at a
//     time, so the codes stream sequentially (hyperonnx_fused_bench, 4096², AVX-512: 0.19 ns a weight for whole
//     rows against 0.40 for 512-column segments a row apart), into its own partial Y; finishing sums the partials
//     in slice order. The slice count depends on K alone, so the bits do not depend on the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "weight.h"

namespace hyperonnx {

constexpr int64_t kFusedTileRows = 64;
constexpr int64_t kFusedTileCols = 128;
constexpr int64_t kFusedRowsMaxM = 8;
constexpr int64_t kFusedRowsMaxN = int64_t{1} << 16;  // wider rows: column tiles (8 rows of scratch stay ≤ 2 MiB)
constexpr int64_t kFusedSliceRows = 8;   // rows decoded per step of a row slice
constexpr uint64_t kFusedMaxSlices = 8;  // at most this many row slices (and partial outputs)

struct FusedPlan {
  bool by_rows = false;  // row slices, else column tiles
  uint64_t units = 0;
  int64_t m = 0, k = 0, n = 0;
};

FusedPlan fused_plan(int64_t m, int64_t k, int64_t n);
// Floats of scratch the plan's units write besides Y (row slices: a partial Y each).
size_t fused_partial_floats(const FusedPlan& plan);

// Runs one unit (A: M × K row-major; Y: M × N; partials: fused_partial_floats(plan) floats). The blob must have
// passed w.check(). Thread-safe (each call uses its thread's scratch). False with *error on a decode error.
bool fused_matmul_unit(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, float* Y,
                       float* partials, const FusedPlan& plan, uint64_t unit, std::string* error);
// After every unit: writes Y from the partials (row slices; nothing for column tiles).
void fused_matmul_finish(const FusedPlan& plan, const float* partials, float* Y);

// All of it on the calling thread (tests, tools).
bool fused_matmul(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                  std::string* error);

}  // namespace hyperonnx
