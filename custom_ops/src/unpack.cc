#include "unpack.h"

#include <cstring>
#include <utility>

namespace hyperonnx {
namespace {

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

template <int BITS>
void unpack_blocks(const uint8_t* block, size_t nblocks, uint32_t* out) {
  for (size_t b = 0; b < nblocks; ++b, block += BITS, out += 8) {
    for (int t = 0; t < 8; ++t) out[t] = block_code<BITS>(block, t);
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
  const uint64_t first_block = first / 8;
  const size_t fast = fast_blocks(blob_len, bits, first, n);
  kBlocks[bits](blob + first_block * static_cast<uint64_t>(bits), fast, out);
  for (uint64_t i = uint64_t{fast} * 8; i < n; ++i) out[i] = code_at(blob, bits, first + i);
}

}  // namespace hyperonnx
