// The `blockvq` codec's parameters (docs/format.md, "blockvq"), visible to other backends: the CUDA decoder
// uploads the scales and level sets and runs its own kernel on them.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "../codec.h"

namespace hyperonnx {

struct BlockVQParams {
  int level_bits = 1;       // b: levels per coordinate L = 2^b, codes of 2b bits
  uint32_t levels = 2;      // L
  uint32_t block = 2;       // B: weights per block (even), B / 2 pairs
  uint64_t numel = 0;       // output elements
  uint64_t count = 0;       // pairs (codes): ceil(numel / 2)
  uint64_t nblocks = 0;     // ceil(numel / B)
  uint64_t code_bytes = 0;  // ceil(count * 2b / 8): the headers start here
  uint64_t header_bytes = 0;
  DType dtype = DType::kFloat;
  std::array<float, 256> scales{};  // scale[k] = ldexp(smax * M[k mod 16], -(k div 16)), float32
  std::vector<float> books;         // 4 level sets of L values, book-major
};

// Header h of a block: scale code h & 255, codebook h >> 8. Ten bits, so the codebook id is always < 4.
constexpr int kBlockVQHeaderBits = 10;
constexpr int kBlockVQBooks = 4;

// The parameters of a blockvq decoder, or null when `d` is another codec's.
const BlockVQParams* blockvq_params(const BlockDecoder* d);

}  // namespace hyperonnx
