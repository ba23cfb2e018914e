// blocktcq's aarch64 NEON kernels (codes of 1..7 bits, blocks of a multiple of 32 weights), 32 weights a step: the
// decode behind TcqRows::run, and for M ≤ kTcqGemvMaxM the GEMV and the transposed product that multiply the
// decoded weights straight from registers (TcqRows::gemv, TcqRows::dot). NEON is part of every aarch64 CPU, so the
// choice is the build's architecture plus HYPERONNX_FUSED_ISA=scalar, which turns them off (the tests' reference).
// Null / false off (little-endian) aarch64.
#pragma once

#include "tcq_rows.h"

namespace hyperonnx {

// Whether the NEON kernels run here: an aarch64 build, and HYPERONNX_FUSED_ISA is not "scalar" (read on each call,
// like best_isa(): the tests compare both kernels in one process).
bool tcq_neon_available();
// The kernels for codes of `bits` bits (1..7): the decode, the GEMV and the transposed product for batches
// 1..kTcqGemvMaxM; all null for other widths or where tcq_neon_available() is false.
TcqKernels tcq_neon_kernels(int bits);

}  // namespace hyperonnx
