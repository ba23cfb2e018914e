// Y[M, N] = A[M, K] × Wᵀ for a weight W stored [N, K] (Gemm's B with transB = 1, a 1×1 Conv's [M, C] kernel), read
// from θ a tile at a time and free of ONNX Runtime. Same contract as fused/matmul.h: independent units that any
// thread runs in any order, each writing its own columns of Y, so the bits do not depend on the thread count.
//
// The tile decoder transposes: a unit owns 32 output columns (32 rows of W); per step it decodes those rows'
// segments of 512 weights (whole blocks, so blocktcq takes its SIMD path) into a row buffer, transposes them into a
// 512 × 32 tile and hands the tile to the same gemm_tile as HyperMatMul. 32 columns are the AVX-512 micro-kernel's
// width; a 64 KiB tile stays in L2 while every row of A passes over it.
#pragma once

#include <cstdint>
#include <string>

#include "weight.h"

namespace hyperonnx {

constexpr int64_t kFusedNtCols = 32;    // output columns (rows of W) per unit
constexpr int64_t kFusedNtDepth = 512;  // weights of each W row decoded per step

// Units for an N-column output (ceil(N / 32)).
uint64_t fused_nt_units(int64_t n);

// Runs one unit: columns [32·unit, 32·unit + 32) of Y (M × N, row-major; A: M × K row-major, K = w.cols(),
// N = w.rows()). The blob must have passed w.check(). Thread-safe. False with *error on a decode error.
bool fused_matmul_nt_unit(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                          uint64_t unit, std::string* error);

// All of it on the calling thread (tests, tools).
bool fused_matmul_nt(const FusedWeight& w, const uint8_t* blob, size_t len, const float* A, int64_t M, float* Y,
                     std::string* error);

}  // namespace hyperonnx
