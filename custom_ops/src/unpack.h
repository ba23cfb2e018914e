// LSB-first fixed-width code unpacking (docs/format.md, "Codes"; numpy: hyperonnx/codec/bitpack.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace hyperonnx {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the fast unpack reads little-endian words");

// Unpacks codes [first, first + n) of a blob holding codes of `bits` (1..32) bits into out.
// The caller guarantees that the blob holds all of those codes (blob_len >= ceil((first + n) * bits / 8)).
// `first` must be a multiple of 8 so the fast path works on whole 8-code blocks of `bits` bytes.
void unpack_codes(const uint8_t* blob, size_t blob_len, int bits, uint64_t first, size_t n, uint32_t* out);

// How many whole 8-code blocks, starting at code `first` (a multiple of 8) and covering at most n codes, can be
// read with block_code (8-byte loads) without reading past the blob's end.
inline size_t fast_blocks(size_t blob_len, int bits, uint64_t first, size_t n) {
  // Block b starts at byte b*bits and its last load starts at most at byte b*bits + bits - 1, so it needs
  // b*bits + bits + 7 <= blob_len.
  const uint64_t b = static_cast<uint64_t>(bits);
  if (blob_len < b + 7u) return 0;
  const uint64_t safe_end = (blob_len - b - 7u) / b + 1;  // blocks < safe_end are safe
  const uint64_t first_block = first / 8;
  if (safe_end <= first_block) return 0;
  const uint64_t fast = safe_end - first_block;
  return static_cast<size_t>(fast < n / 8 ? fast : n / 8);
}

// Code t (0..7) of an 8-code block: eight BITS-bit codes occupy exactly BITS bytes, so the byte offset and the
// shift are compile-time constants and one unaligned 8-byte load holds the whole code (BITS <= 32 plus a shift
// of at most 7). The caller ensures 8 readable bytes (fast_blocks).
template <int BITS>
inline uint32_t block_code(const uint8_t* block, int t) {
  constexpr uint64_t kMask = (uint64_t{1} << BITS) - 1u;
  uint64_t v;
  std::memcpy(&v, block + (t * BITS) / 8, sizeof v);
  return static_cast<uint32_t>((v >> ((t * BITS) % 8)) & kMask);
}

}  // namespace hyperonnx
