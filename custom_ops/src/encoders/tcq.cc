// tcq's level search (hyperonnx/codec/tcq.py, viterbi), byte-identical to numpy's: per block, in float64,
// y = f64(x) / f64(step); each coset's squared distance, by the circular form (y − 4·floor(y/4) against the coset)
// or, in a chunk of rows holding a |y| > 250, by the clipped nearest level; the 8-state search (acs.h) from
// state 0; the path of the least-cost final state (the first among equals); j = clip(4·rint((y − c)/4) + c) on it.
// The chunks are numpy's (CHUNK_WEIGHTS / B rows from the call's first block): its circular-or-clipped choice is
// made per chunk, and the two forms can differ in the last bit.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../parallel.h"
#include "acs.h"
#include "encoders.h"

namespace {

using namespace hyperonnx::encoders;

constexpr uint64_t kChunkWeights = 1 << 18;  // tcq.CHUNK_WEIGHTS
constexpr double kLevelLo[4] = {-252, -251, -254, -253};
constexpr double kLevelHi[4] = {252, 253, 254, 255};
constexpr int kZero = 127;

// _nearest: the level of coset c nearest y, inside the level range.
inline double nearest_level(double y, int c) {
  const double j = 4.0 * std::nearbyint((y - c) / 4.0) + c;
  return std::min(std::max(j, kLevelLo[c]), kLevelHi[c]);
}

// Eight blocks (lanes; rows past `rows` are zeros and dropped) from state 0 to their best paths' symbols.
template <class L>
inline __attribute__((always_inline)) void search_group_t(const float* x, uint32_t width, const float* steps,
                                                          const uint8_t* clipped, int rows, uint8_t* out,
                                                          std::vector<double>& y, std::vector<uint8_t>& took) {
  for (int r = 0; r < 8; ++r) {
    for (uint32_t t = 0; t < width; ++t) {
      y[static_cast<size_t>(t) * 8 + r] =
          r < rows ? static_cast<double>(x[static_cast<size_t>(r) * width + t]) / static_cast<double>(steps[r]) : 0.0;
    }
  }
  const double inf = std::numeric_limits<double>::infinity();
  L cost[kStates];
  for (int st = 0; st < kStates; ++st) {
    cost[st] = L::splat(st == 0 ? 0.0 : inf);
  }
  for (uint32_t t = 0; t < width; ++t) {
    const double* yt = y.data() + static_cast<size_t>(t) * 8;
    alignas(64) double d[4][8];
    for (int r = 0; r < 8; ++r) {
      const double v = yt[r];
      if (r < rows && clipped[r]) {
        for (int c = 0; c < 4; ++c) {
          const double e = v - nearest_level(v, c);
          d[c][r] = e * e;
        }
      } else {  // _coset_distances' circular form: r = −4·floor(y/4) + y, then min(|r − c|, 4 − |r − c|)
        double m = std::floor(v * 0.25);
        m = m * -4.0;
        m = m + v;
        for (int c = 0; c < 4; ++c) {
          double e = std::fabs(m - c);
          const double spare = 4.0 - e;
          e = spare < e ? spare : e;
          d[c][r] = e * e;
        }
      }
    }
    L dv[4];
    for (int c = 0; c < 4; ++c) dv[c] = L::load(d[c]);
    acs_step(cost, dv, took.data() + static_cast<size_t>(t) * 8);
  }
  for (int r = 0; r < rows; ++r) {
    int state = 0;
    for (int st = 1; st < kStates; ++st) {
      if (cost[st].lane(r) < cost[state].lane(r)) state = st;
    }
    for (uint32_t t = width; t-- > 0;) {
      const int branch = (took[static_cast<size_t>(t) * 8 + r] >> state) & 1;
      int coset;
      acs_back(state, branch, coset);
      const int j = static_cast<int>(nearest_level(y[static_cast<size_t>(t) * 8 + r], coset));
      out[static_cast<size_t>(r) * width + t] = static_cast<uint8_t>((j >> 1) + kZero);  // floor(j / 2) + 127
    }
  }
}


#define HX_GROUP_ARGS                                                                                      \
  const float *x, uint32_t width, const float *steps, const uint8_t *clipped, int rows, uint8_t *out,     \
      std::vector<double> &y, std::vector<uint8_t> &took
using SearchGroupFn = void (*)(HX_GROUP_ARGS);
void search_group_128(HX_GROUP_ARGS) { search_group_t<Lanes<16>>(x, width, steps, clipped, rows, out, y, took); }
#ifdef HX_X86_DISPATCH
__attribute__((target("avx2"))) void search_group_256(HX_GROUP_ARGS) {
  search_group_t<Lanes<32>>(x, width, steps, clipped, rows, out, y, took);
}
__attribute__((target("avx512f"))) void search_group_512(HX_GROUP_ARGS) {
  search_group_t<Lanes<64>>(x, width, steps, clipped, rows, out, y, took);
}
#endif
#undef HX_GROUP_ARGS

SearchGroupFn pick_search_group() {
  switch (vector_bytes()) {
#ifdef HX_X86_DISPATCH
    case 64:
      return search_group_512;
    case 32:
      return search_group_256;
#endif
    default:
      return search_group_128;
  }
}

}  // namespace

HX_ENCODER_API int hx_tcq_levels(const float* blocks, uint64_t nblocks, uint32_t width, const float* steps,
                                 uint8_t* out, int threads) {
  if (blocks == nullptr || steps == nullptr || out == nullptr || width == 0) return kHxBadArgument;
  const uint64_t rows_per = std::max<uint64_t>(1, kChunkWeights / width);
  // numpy's per-chunk choice of the distance form: any |y| > 250 in the chunk.
  const uint64_t chunks = (nblocks + rows_per - 1) / rows_per;
  std::vector<uint8_t> chunk_clipped(chunks, 0);
  bool finite = true;
  for (uint64_t q = 0; q < nblocks; ++q) {
    const double step = steps[q];
    for (uint32_t t = 0; t < width; ++t) {
      const double v = static_cast<double>(blocks[q * width + t]) / step;
      finite &= v - v == 0.0;
      if (std::fabs(v) > 250) chunk_clipped[q / rows_per] = 1;
    }
  }
  if (!finite) return kHxNeedsReference;  // numpy's int16 cast of a NaN or inf level
  const uint64_t groups = (nblocks + 7) / 8;
  const SearchGroupFn search_group = pick_search_group();
  hyperonnx::parallel_ranges(groups, 1, threads, [&](uint64_t g0, uint64_t g1) {
    std::vector<double> y(static_cast<size_t>(width) * 8);
    std::vector<uint8_t> took(static_cast<size_t>(width) * 8);
    for (uint64_t g = g0; g < g1; ++g) {
      const uint64_t q = g * 8;
      const int rows = static_cast<int>(std::min<uint64_t>(8, nblocks - q));
      uint8_t clipped[8] = {};
      for (int r = 0; r < rows; ++r) clipped[r] = chunk_clipped[(q + r) / rows_per];
      search_group(blocks + q * width, width, steps + q, clipped, rows, out + q * width, y, took);
    }
  });
  return 0;
}
