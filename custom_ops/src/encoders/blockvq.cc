// blockvq's encoder (hyperonnx/codec/blockvq.py, _encode_blocks), byte-identical to numpy's.
//
// Per block: for each of the 8 scale offsets s (SCALE_OFFSETS) and, within it, each of the 4 level sets, every
// weight's nearest level of v = f32(x / s) (_Nearest: the lookup grid's guess corrected by one step, or a
// binary search where the grid is not exact), d = f32(f32(level · s) − x), and the candidate's error, the float32
// sum of d · d in position order. The first least error wins; its digits are recomputed and paired into θ.
// Lanes are blocks (blockvq_search.inc), so each lane adds its block's squares in the specified order while the
// vector runs 4, 8 or 16 blocks at once.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../parallel.h"
#include "acs.h"
#include "encoders.h"

#ifdef HX_X86_DISPATCH
#include <immintrin.h>
#endif

namespace {

constexpr int kBooks = 4;
constexpr int kOffsets = 8;  // SCALE_OFFSETS = -2..5
constexpr int kFirstOffset = -2;
constexpr int kGridCells = 8192;  // _Nearest.CELLS

struct VqTables {
  int bits;
  int levels;  // L = 2^bits
  uint32_t block;
  const float* scales;  // 256
  int top;              // the last nonzero scale
  const float* level;   // kBooks × L, each set sorted
  const float* edges;   // kBooks × (L + 1): decision edges padded with ∓inf
  const int32_t* guess;  // kGridCells: the four sets' lookup-grid guesses, set b in bits [8b, 8b + 8)
  bool exact[kBooks];
  bool all_exact;
};

}  // namespace

// The search at each vector width. Lanes are independent and every operation is IEEE, so all widths give the
// same bytes; HYPERONNX_ENCODERS_ISA picks a narrower one (tests).
namespace {
#define HX_NS vq128
#define HX_W 4
#define HX_ISA 0
#include "blockvq_search.h"
#undef HX_NS
#undef HX_W
#undef HX_ISA
}  // namespace

#ifdef HX_X86_DISPATCH
#pragma GCC push_options
#pragma GCC target("avx2")
namespace {
#define HX_NS vq256
#define HX_W 8
#define HX_ISA 256
#include "blockvq_search.h"
#undef HX_NS
#undef HX_W
#undef HX_ISA
}  // namespace
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f")
namespace {
#define HX_NS vq512
#define HX_W 16
#define HX_ISA 512
#include "blockvq_search.h"
#undef HX_NS
#undef HX_W
#undef HX_ISA
}  // namespace
#pragma GCC pop_options
#endif

namespace {

using EncodeGroupFn = int (*)(const VqTables&, const float*, uint64_t, uint64_t, int, const int64_t*, uint16_t*,
                              uint64_t, uint32_t*, float*, int32_t*);

struct Width {
  int lanes;
  EncodeGroupFn fn;
};

Width pick_width() {
  switch (hyperonnx::encoders::vector_bytes()) {
#ifdef HX_X86_DISPATCH
    case 64:
      return {vq512::kW, vq512::encode_group};
    case 32:
      return {vq256::kW, vq256::encode_group};
#endif
    default:
      return {vq128::kW, vq128::encode_group};
  }
}

}  // namespace

HX_ENCODER_API int hx_blockvq_encode(const float* x, uint64_t numel, int bits, uint32_t block, const float* levels,
                                     const float* scales, const float* edges, const int32_t* lut,
                                     const uint8_t* exact, const int64_t* k0, uint16_t* codes, uint32_t* headers,
                                     int threads) {
  if (x == nullptr || levels == nullptr || scales == nullptr || edges == nullptr || lut == nullptr ||
      exact == nullptr || k0 == nullptr || codes == nullptr || headers == nullptr || bits < 1 || bits > 8 ||
      block < 2 || block > 4096 || block % 2 != 0) {
    return kHxBadArgument;
  }
  // Scales past `top` underflow to zero (a tensor near float32's smallest subnormal): candidates stop there.
  int top = -1;  // numpy's count of positive scales, less one (they are non-increasing: the zeros come last)
  for (int i = 0; i < 256; ++i) top += scales[i] > 0.0f ? 1 : 0;
  if (top < 0) return kHxBadArgument;  // smax > 0 makes scale 0 positive
  VqTables tb;
  tb.bits = bits;
  tb.levels = 1 << bits;
  tb.block = block;
  tb.scales = scales;
  tb.top = top;
  tb.level = levels;
  tb.edges = edges;
  tb.all_exact = true;
  std::vector<int32_t> guess(kGridCells, 0);
  for (int b = 0; b < kBooks; ++b) {
    tb.exact[b] = exact[b] != 0;
    tb.all_exact &= tb.exact[b];
    for (int c = 0; tb.exact[b] && c < kGridCells; ++c) {
      const int32_t g = lut[static_cast<size_t>(b) * kGridCells + c];
      if (g < 0 || g >= tb.levels) return kHxBadArgument;
      guess[c] |= g << (8 * b);
    }
  }
  tb.guess = guess.data();
  const uint64_t nblocks = (numel + block - 1) / block;
  const uint64_t count = (numel + 1) / 2;
  const Width width = pick_width();
  const uint64_t groups = (nblocks + width.lanes - 1) / width.lanes;
  std::atomic_int status{0};
  hyperonnx::parallel_ranges(groups, 1, threads, [&](uint64_t g0, uint64_t g1) {
    std::vector<float> xt(static_cast<size_t>(block) * width.lanes);
    std::vector<int32_t> dig(static_cast<size_t>(block) * width.lanes);
    for (uint64_t g = g0; g < g1 && status.load(std::memory_order_relaxed) == 0; ++g) {
      const uint64_t q0 = g * width.lanes;
      const int lanes = static_cast<int>(std::min<uint64_t>(width.lanes, nblocks - q0));
      const int rc = width.fn(tb, x, numel, q0, lanes, k0 + q0, codes, count, headers, xt.data(), dig.data());
      if (rc != 0) status.store(rc);
    }
  });
  return status.load();
}
