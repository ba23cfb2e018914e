// The multiply half of the fused kernels: Y (+)= A × T for a decoded weight tile T held in L1/L2, with runtime
// dispatch (AVX2 + FMA where the CPU has them, portable C++ elsewhere). Accumulation order differs from MLAS; the
// ops promise outputs within 1e-5 relative of decompress + the standard op (tests/test_fused.py).
#pragma once

#include <cstdint>

namespace hyperonnx {

// Y[m, n] (+)= Σ_k A[m, k] · T[k, n] for m < M, k < kc, n < nt. Row strides lda, ldt, ldy (elements); T's rows are
// padded with zeros up to a multiple of 16 columns (ldt ≥ that). accumulate: add to Y, else overwrite it. simd: use
// the CPU's SIMD kernel where it has one (gemm_simd_available()), else the portable one.
void gemm_tile(const float* A, int64_t lda, const float* T, int64_t ldt, float* Y, int64_t ldy, int64_t M,
               int64_t kc, int64_t nt, bool accumulate, bool simd);

// Whether this CPU runs the SIMD kernel (x86 AVX2 + FMA).
bool gemm_simd_available();

}  // namespace hyperonnx
