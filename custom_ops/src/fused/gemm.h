// The multiply half of the fused kernels: Y (+)= A × T for a decoded weight tile T held in L1/L2, with runtime
// dispatch (AVX2 + FMA where the CPU has them, portable C++ elsewhere). Accumulation order differs from MLAS; the
// ops promise outputs within 1e-5 relative of decompress + the standard op (tests/ops/test_fused.py).
#pragma once

#include <cstdint>

namespace hyperonnx {

// T's row padding: the widest micro-kernel's columns (AVX-512: two 16-float vectors).
constexpr int64_t kGemmPad = 32;

// The fused kernels' instruction sets: portable C++, x86 AVX2 + FMA (+ BMI2 for blocktcq's decode), AVX-512F.
enum class FusedIsa { kScalar, kAvx2, kAvx512 };

// The best this CPU runs, lowered by HYPERONNX_FUSED_ISA=scalar|avx2 in the environment (read on each call: the tests
// compare every kernel on one machine).
FusedIsa best_isa();
const char* isa_name(FusedIsa isa);
// Y[m, n] (+)= Σ_k A[m, k] · T[k, n] for m < M, k < kc, n < nt. Row strides lda, ldt, ldy (elements); T's rows are
// padded with zeros up to a multiple of 32 columns (ldt ≥ that; kGemmPad). accumulate: add to Y, else overwrite it.
// isa: which kernel (at most best_isa()).
void gemm_tile(const float* A, int64_t lda, const float* T, int64_t ldt, float* Y, int64_t ldy, int64_t M,
               int64_t kc, int64_t nt, bool accumulate, FusedIsa isa);

}  // namespace hyperonnx
