// The framing shared by `blockvq` and `blocktcq` (docs/format.md, "blockvq", "blocktcq"): fixed-width codes, then
// one 10-bit header (scale code, level set) per block, a 256-entry scale table from f_smax and four level sets.
// The parameters are visible to other backends: the CUDA decoder uploads the scales and level sets and runs its
// own kernels on them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../codec.h"

namespace hyperonnx {

// M[j] = f32(2^(-j/16)), j = 0..15, as bit patterns (docs/format.md, "blockvq"; ecsq's block steps use the
// same constants): part of the format.
inline constexpr uint32_t kLogStepBits[16] = {0x3F800000, 0x3F75257D, 0x3F6AC0C7, 0x3F60CCDF, 0x3F5744FD, 0x3F4E248C,
                                              0x3F45672A, 0x3F3D08A4, 0x3F3504F3, 0x3F2D583F, 0x3F25FED7, 0x3F1EF532,
                                              0x3F1837F0, 0x3F11C3D3, 0x3F0B95C2, 0x3F05AAC3};

// One tensor of either codec. blockvq: pairs of weights, a 2b-bit code per pair, level sets of L values.
// blocktcq: a b-bit θ per weight, fine level sets of 2L values (the trellis picks the even or odd half).
struct BlockVQParams {
  int level_bits = 1;       // b: L = 2^b (blockvq: levels per coordinate, codes of 2b bits; blocktcq: codes of b bits)
  uint32_t levels = 2;      // L
  uint32_t block = 2;       // B: weights per block (blockvq: even, B / 2 pairs)
  uint64_t numel = 0;       // output elements
  uint64_t count = 0;       // codes: ceil(numel / 2) pairs (blockvq), numel (blocktcq)
  uint64_t nblocks = 0;     // ceil(numel / B)
  uint64_t code_bytes = 0;  // ceil(count * code bits / 8): the headers start here
  uint64_t header_bytes = 0;
  DType dtype = DType::kFloat;
  std::array<float, 256> scales{};  // scale[k] = ldexp(smax * M[k mod 16], -(k div 16)), float32
  std::vector<float> books;         // 4 level sets of L (blockvq) or 2L (blocktcq) values, book-major
};

// Header h of a block: scale code h & 255, codebook h >> 8. Ten bits, so the codebook id is always < 4.
constexpr int kBlockVQHeaderBits = 10;
constexpr int kBlockVQBooks = 4;

// Header of block q (10 bits at bit 10q of the header stream). 10q is even, so the header starts at bit 0, 2, 4
// or 6 of its first byte and always ends in the next one: two bytes, both inside the header stream.
inline uint32_t block_header(const uint8_t* headers, uint64_t q) {
  const uint64_t bit = q * kBlockVQHeaderBits;
  const uint8_t* p = headers + (bit >> 3);
  return ((static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8) >> (bit & 7u)) & 0x3ffu;
}

// What tells the codecs of this framing apart in their side information.
struct BlockFraming {
  const char* codec;  // for the messages: "blockvq codec: ..."
  int group;          // weights per code: 2 (blockvq: codes of 2b bits, even blocks) or 1 (blocktcq: b bits)
  int fine;           // level-set values per level: 1 (blockvq: L) or 2 (blocktcq: 2L)
  int stored;         // level sets held in f_books: 4 (blockvq) or 1 (blocktcq computes the other three)
};

// Reads and checks i_block, i_levels, f_smax and f_books against the node's common attributes (levels a power of
// two in 2..256, bits = group·log2(L), the framing's group, block in 2..4096 and a multiple of the group,
// stored·fine·L level values) and fills *p, the scale table and the blob layout included; on failure sets *error ("<codec>
// codec: ...") and returns false.
bool parse_block_params(const BlockFraming& framing, const SideInfo& side, const NodeLayout& layout, BlockVQParams* p,
                        std::string* error);

// Whether this x86 CPU (and OS) can run F16C instructions (float32 -> float16 in SIMD); false elsewhere.
bool host_has_f16c();
// float32 -> float16 of n NaN-free values through F16C (vcvtps2ph, round to nearest even: the same bits as
// dtype.h's float_to_half on every NaN-free value, overflow to inf included); call only where host_has_f16c()
// (elsewhere it is float_to_half per value). Used by the entropy-coded codecs (ecsq, grid).
void to_half_f16c(const float* in, size_t n, uint8_t* out);

// The parameters of a blockvq decoder, or null when `d` is another codec's.
const BlockVQParams* blockvq_params(const BlockDecoder* d);
// The parameters of a blocktcq decoder, or null when `d` is another codec's (codecs/blocktcq.cc).
const BlockVQParams* blocktcq_params(const BlockDecoder* d);

}  // namespace hyperonnx
