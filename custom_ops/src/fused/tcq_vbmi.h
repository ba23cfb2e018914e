// blocktcq's AVX-512 VBMI kernels (codes of 1..6 bits), 64 weights a step: the decode behind TcqRows::run, and a
// GEMV that multiplies the decoded weights straight from registers (TcqRows::gemv), so at M ≤ 4 no decoded row is
// ever written to memory. Null where the CPU lacks AVX-512 VBMI (or off x86).
#pragma once

#include "tcq_rows.h"

namespace hyperonnx {

bool tcq_vbmi_available();
// The kernels for codes of `bits` bits (1..6): the decode, the GEMV and the transposed product (TcqRows::dot) for
// batches 1..kTcqGemvMaxM; all null for other widths or where tcq_vbmi_available() is false.
TcqKernels tcq_vbmi_kernels(int bits);

}  // namespace hyperonnx
