// Y[M, N] = A[M, K] × Wᵀ for a weight W stored [N, K] (Gemm's B with transB = 1, a 1×1 Conv's [M, C] kernel), read
// from θ a tile at a time and free of ONNX Runtime. Same contract as fused/matmul.h: independent units that any
// thread runs in any order, each writing its own columns of Y, so the bits do not depend on the thread count.
//
// The tile decoder transposes: a unit owns a run of output columns (rows of W), decodes a segment of each of those
// rows into a row buffer, transposes the segments (8 × 8 AVX blocks where the CPU has AVX2) into a tile of K-rows ×
// columns and hands the tile to the same gemm_tile as HyperMatMul. Two shapes, as HyperMatMul's (fused/matmul.h):
//   M ≤ 8 (the decode is the work): 32 columns a unit (the AVX-512 micro-kernel's width), segments of 1024 weights
//     with the codes 4 rows ahead prefetched;
//   M > 8 (the multiply is the work): 128 columns a unit, segments of 256 weights, so every row of A passes over a
//     128 KiB tile and A is re-read N / 128 times rather than N / 32.
// Against HyperMatMul on the same weight (hyperonnx_fused_bench-style thread CPU time, 4096², blocktcq 5 bits,
// AVX-512): 0.34 against 0.24 ns a weight at M = 1, 1.14 against 0.91 at M = 64; the difference is the transpose.
// At M ≤ 3 on the VBMI kernel, rows of W of whole blocks skip both the row buffer and the transpose: each output is
// a dot product of A's rows with the decoded row, straight from registers (FusedWeight::gemv_nt; HyperGemm 4096²ᵀ
// at M = 1: 2.13× → 1.28× fp32, benchmarks/fused_ops.py --clock cpu).
#pragma once

#include <cstdint>
#include <string>

#include "weight.h"

namespace hyperonnx {

constexpr int64_t kFusedNtCols = 32;        // output columns (rows of W) per unit, M ≤ kFusedRowsMaxM
constexpr int64_t kFusedNtWideCols = 128;   // the same, M > kFusedRowsMaxM
constexpr int64_t kFusedNtDepth = 1024;     // weights of each W row decoded per step, M ≤ kFusedRowsMaxM
constexpr int64_t kFusedNtWideDepth = 256;  // the same, M > kFusedRowsMaxM
constexpr int64_t kFusedNtChunk = 512;      // K-rows per transposed tile
constexpr int64_t kFusedNtPrefetchRows = 4; // codes fetched this many W rows ahead (the segments are a row apart)

struct FusedNtPlan {
  int64_t cols = kFusedNtCols;  // output columns per unit
  uint64_t units = 0;
  int64_t m = 0;
};

FusedNtPlan fused_nt_plan(int64_t m, int64_t n);

// Runs one unit: columns [plan.cols·unit, …) of Y (M × N, row-major; A: M × K row-major, K = w.cols(), N = w.rows()).
// The blob must have passed w.check(). Thread-safe. False with *error on a decode error.
bool fused_matmul_nt_unit(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, float* Y,
                          const FusedNtPlan& plan, uint64_t unit, std::string* error);

// All of it on the calling thread (tests, tools).
bool fused_matmul_nt(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                     std::string* error);

}  // namespace hyperonnx
