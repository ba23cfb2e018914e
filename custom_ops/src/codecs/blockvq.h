// The `blockvq` codec's parameters (docs/format.md, "blockvq"), visible to other backends: the CUDA decoder
// uploads the scales and level sets and runs its own kernel on them.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "../codec.h"

namespace hyperonnx {

// M[j] = f32(2^(-j/16)), j = 0..15, as bit patterns (docs/format.md, "blockvq"; ecsq's block steps use the
// same constants): part of the format.
inline constexpr uint32_t kLogStepBits[16] = {0x3F800000, 0x3F75257D, 0x3F6AC0C7, 0x3F60CCDF, 0x3F5744FD, 0x3F4E248C,
                                              0x3F45672A, 0x3F3D08A4, 0x3F3504F3, 0x3F2D583F, 0x3F25FED7, 0x3F1EF532,
                                              0x3F1837F0, 0x3F11C3D3, 0x3F0B95C2, 0x3F05AAC3};

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

// Whether this x86 CPU (and OS) can run F16C instructions (float32 -> float16 in SIMD); false elsewhere.
bool host_has_f16c();
// float32 -> float16 of n NaN-free values through F16C (vcvtps2ph, round to nearest even: the same bits as
// dtype.h's float_to_half on every NaN-free value, overflow to inf included); call only where host_has_f16c()
// (elsewhere it is float_to_half per value). Used by the entropy-coded codecs (ecsq, grid).
void to_half_f16c(const float* in, size_t n, uint8_t* out);

// The parameters of a blockvq decoder, or null when `d` is another codec's.
const BlockVQParams* blockvq_params(const BlockDecoder* d);

}  // namespace hyperonnx
