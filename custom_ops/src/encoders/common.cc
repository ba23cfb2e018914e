// Shared steps of the native encoders: block absolute maxima and bit packing (encoders.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../parallel.h"
#include "encoders.h"

namespace {

constexpr int kAbiVersion = 1;

}  // namespace

HX_ENCODER_API int hx_encoders_abi_version() { return kAbiVersion; }

HX_ENCODER_API int hx_block_absmax(const float* x, uint64_t numel, uint32_t block, float* out, int threads) {
  if (x == nullptr || out == nullptr || block == 0) return kHxBadArgument;
  const uint64_t nblocks = (numel + block - 1) / block;
  hyperonnx::parallel_ranges(nblocks, 1, threads, [&](uint64_t q0, uint64_t q1) {
    for (uint64_t q = q0; q < q1; ++q) {
      const uint64_t first = q * block, stop = std::min<uint64_t>(numel, first + block);
      float m = 0.0f;  // |x| >= 0, so 0 is neutral (and the zero padding of the last block adds nothing)
      for (uint64_t i = first; i < stop; ++i) m = std::max(m, std::fabs(x[i]));
      out[q] = m;
    }
  });
  return 0;
}

HX_ENCODER_API int hx_count_u8(const uint8_t* x, uint64_t n, uint64_t* counts) {
  if ((x == nullptr && n != 0) || counts == nullptr) return kHxBadArgument;
  // Four tables, so that runs of one symbol (the level 0 of a quiet tensor) do not serialize on one counter.
  uint64_t part[4][256] = {};
  uint64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ++part[0][x[i]];
    ++part[1][x[i + 1]];
    ++part[2][x[i + 2]];
    ++part[3][x[i + 3]];
  }
  for (; i < n; ++i) ++part[0][x[i]];
  for (int s = 0; s < 256; ++s) counts[s] = part[0][s] + part[1][s] + part[2][s] + part[3][s];
  return 0;
}

HX_ENCODER_API int hx_pack_u16(const uint16_t* codes, uint64_t count, int bits, uint8_t* out, int threads) {
  if (codes == nullptr || out == nullptr || bits < 1 || bits > 16) return kHxBadArgument;
  // Groups of 8 codes fill exactly `bits` bytes, so threads own disjoint bytes.
  const uint64_t groups = (count + 7) / 8;
  const uint64_t bytes = (count * static_cast<uint64_t>(bits) + 7) / 8;
  hyperonnx::parallel_ranges(groups, 1 << 12, threads, [&](uint64_t g0, uint64_t g1) {
    for (uint64_t g = g0; g < g1; ++g) {
      uint64_t acc[2] = {0, 0};  // 8 codes of up to 16 bits: 128 bits
      const uint64_t first = g * 8;
      for (int t = 0; t < 8; ++t) {
        const uint64_t i = first + t;
        const uint64_t v = i < count ? codes[i] : 0;
        const int offset = t * bits;
        if (offset < 64) {
          acc[0] |= v << offset;
          if (offset + bits > 64) acc[1] |= v >> (64 - offset);
        } else {
          acc[1] |= v << (offset - 64);
        }
      }
      uint8_t group[16];
      std::memcpy(group, acc, sizeof(group));  // little-endian: byte j holds bits [8j, 8j + 8)
      const uint64_t at = g * static_cast<uint64_t>(bits);
      const uint64_t n = std::min<uint64_t>(bits, bytes - at);
      std::memcpy(out + at, group, n);
    }
  });
  return 0;
}
