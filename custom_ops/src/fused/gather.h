// HyperGather's computation, free of ONNX Runtime: out[i, :] = W[rows[i], :] for a weight W [V, D] (an embedding
// table) read from θ, decoding only the requested rows. blocktcq and blockvq blocks are independent runs of the
// row-major weight (docs/format.md), so a row is decoded from the blocks that cover it alone: whole blocks when D
// is a multiple of the block (blocktcq's SIMD path), else at most one partial block at either end, through scratch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "weight.h"

namespace hyperonnx {

// Reads indices [i0, i1) of an int32 or int64 index tensor (`is64`), ONNX's negative-index rule applied (−V ≤ idx
// < V); false with *error naming the first index out of range and its position.
bool fused_gather_rows(const void* indices, bool is64, size_t i0, size_t i1, int64_t vocab, int64_t* rows,
                       std::string* error);

// Writes out[(i − i0)·D ...] = W[rows[i], :] for i in [i0, i1). The blob must have passed w.check() and the rows
// be in range (fused_gather_rows). Thread-safe. False with *error on a decode error.
bool fused_gather(const FusedWeight& w, const uint8_t* blob, size_t len, const int64_t* rows, size_t i0, size_t i1,
                  float* out, std::string* error);

}  // namespace hyperonnx
