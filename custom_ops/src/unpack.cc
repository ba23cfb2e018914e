#include "unpack.h"

#include <cstring>
#include <utility>

namespace hyperonnx {
namespace {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the fast unpack reads little-endian words");

// One code, reading only bytes that belong to it (safe at the end of the blob).
inline uint32_t code_at(const uint8_t* blob, int bits, uint64_t i) {
  const uint64_t bit = i * static_cast<uint64_t>(bits);
  const uint8_t* p = blob + (bit >> 3);
  const unsigned shift = static_cast<unsigned>(bit & 7u);
  const unsigned nbytes = (shift + static_cast<unsigned>(bits) + 7u) / 8u;
  uint64_t v = 0;
  for (unsigned j = 0; j < nbytes; ++j) v |= static_cast<uint64_t>(p[j]) << (8u * j);
  return static_cast<uint32_t>((v >> shift) & ((uint64_t{1} << bits) - 1u));
}

// Eight codes of BITS bits occupy exactly BITS bytes, so within a block every shift is a compile-time
// constant. Each code is read with one unaligned 8-byte load; the caller ensures 8 readable bytes.
template <int BITS>
void unpack_blocks(const uint8_t* block, size_t nblocks, uint32_t* out) {
  constexpr uint64_t kMask = (uint64_t{1} << BITS) - 1u;
  for (size_t b = 0; b < nblocks; ++b, block += BITS, out += 8) {
    for (int t = 0; t < 8; ++t) {
      uint64_t v;
      std::memcpy(&v, block + (t * BITS) / 8, sizeof v);
      out[t] = static_cast<uint32_t>((v >> ((t * BITS) % 8)) & kMask);
    }
  }
}

using BlockFn = void (*)(const uint8_t*, size_t, uint32_t*);

template <int... B>
struct BlockTable {
  static constexpr BlockFn fns[] = {nullptr, &unpack_blocks<B + 1>...};  // indexed by bits, 1..32
};

template <int... B>
constexpr const BlockFn* block_table(std::integer_sequence<int, B...>) {
  return BlockTable<B...>::fns;
}

}  // namespace

void unpack_codes(const uint8_t* blob, size_t blob_len, int bits, uint64_t first, size_t n, uint32_t* out) {
  static const BlockFn* const kBlocks = block_table(std::make_integer_sequence<int, 32>{});
  // Whole blocks whose 8-byte loads stay inside the blob: block b starts at byte b*bits and its last load
  // starts at most at byte b*bits + bits - 1, so it needs b*bits + bits + 7 <= blob_len.
  const uint64_t first_block = first / 8;
  uint64_t fast_blocks = 0;
  const uint64_t want_blocks = n / 8;
  if (blob_len >= static_cast<size_t>(bits) + 7u) {
    const uint64_t safe_end = (blob_len - static_cast<size_t>(bits) - 7u) / static_cast<uint64_t>(bits) + 1;  // blocks b < safe_end are safe
    if (safe_end > first_block) fast_blocks = safe_end - first_block;
    if (fast_blocks > want_blocks) fast_blocks = want_blocks;
  }
  kBlocks[bits](blob + first_block * static_cast<uint64_t>(bits), static_cast<size_t>(fast_blocks), out);
  for (uint64_t i = fast_blocks * 8; i < n; ++i) out[i] = code_at(blob, bits, first + i);
}

}  // namespace hyperonnx
