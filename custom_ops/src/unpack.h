// LSB-first fixed-width code unpacking (docs/format.md, "Codes"; numpy: hyperonnx/codec/bitpack.py).
#pragma once

#include <cstddef>
#include <cstdint>

namespace hyperonnx {

// Unpacks codes [first, first + n) of a blob holding codes of `bits` (1..32) bits into out.
// The caller guarantees that the blob holds all of those codes (blob_len >= ceil((first + n) * bits / 8)).
// `first` must be a multiple of 8 so the fast path works on whole 8-code blocks of `bits` bytes.
void unpack_codes(const uint8_t* blob, size_t blob_len, int bits, uint64_t first, size_t n, uint32_t* out);

}  // namespace hyperonnx
