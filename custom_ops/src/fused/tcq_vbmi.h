// blocktcq's AVX-512 VBMI kernels (codes of 1..6 bits), 64 weights a step: the decode behind TcqRows::run, and a
// GEMV that multiplies the decoded weights straight from registers (TcqRows::gemv), so at M ≤ 4 no decoded row is
// ever written to memory. Null where the CPU lacks AVX-512 VBMI (or off x86).
#pragma once

#include "tcq_rows.h"

namespace hyperonnx {

bool tcq_vbmi_available();
TcqRows::RunFn tcq_vbmi_run(int bits);
// The GEMV for batch m (1..kTcqGemvMaxM), else null.
TcqRows::GemvFn tcq_vbmi_gemv(int bits, int m);
// The transposed product for batch m (1..kTcqGemvMaxM), TcqRows::dot, else null.
TcqRows::GemvFn tcq_vbmi_dot(int bits, int m);

}  // namespace hyperonnx
