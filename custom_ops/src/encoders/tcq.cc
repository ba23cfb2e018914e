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

// floor(v) of each lane, exactly, for |v| < 2^51 (a chunk without a clipped weight: |y| ≤ 250): v + 1.5·2^52 lies
// where doubles are whole numbers, so subtracting 1.5·2^52 again leaves rint(v) (ties to even); one less where that
// is above v. Generic vector operations only: the same on SSE2, AVX2, AVX-512 and NEON. A −0 from std::floor may
// come out +0 here; every use squares an absolute difference of it, so the distances are the same.
template <class V, class I>
inline __attribute__((always_inline)) void floor_lanes(V& v) {  // in place: no vector return (-Wpsabi)
  const V shift = V{} + 6755399441055744.0;  // 1.5 · 2^52
  const V one = V{} + 1.0;
  const V n = (v + shift) - shift;
  v = n - reinterpret_cast<V>(reinterpret_cast<I>(one) & (n > v));
}

// rint(v) in place (ties to even, as std::nearbyint in the default rounding mode) for |v| < 2^51.
template <class V>
inline __attribute__((always_inline)) void rint_lanes(V& v) {
  const V shift = V{} + 6755399441055744.0;
  v = (v + shift) - shift;
}

// The circular form of _coset_distances for eight lanes at once: the scalar loop's operations, lane by lane.
template <class L>
inline __attribute__((always_inline)) void circular_distances(const L& v, L d[4]) {
  using vpd = typename L::vpd;
  using vpi = typename L::vpi;
  for (int k = 0; k < L::kParts; ++k) {
    const vpd y = v.p[k];
    vpd m = y * 0.25;
    floor_lanes<vpd, vpi>(m);
    m = m * -4.0;
    m = m + y;
    for (int c = 0; c < 4; ++c) {
      vpd e = m - static_cast<double>(c);
      e = reinterpret_cast<vpd>(reinterpret_cast<vpi>(e) & std::numeric_limits<int64_t>::max());  // fabs
      const vpd spare = 4.0 - e;
      const vpi use = spare < e;
      e = reinterpret_cast<vpd>((reinterpret_cast<vpi>(spare) & use) | (reinterpret_cast<vpi>(e) & ~use));
      d[c].p[k] = e * e;
    }
  }
}

// Eight blocks (lanes; rows past `rows` are zeros and dropped) from state 0 to their best paths' symbols. Groups
// without a clipped chunk (nearly all) run the distances, the walk back and the levels eight lanes at a time;
// a group with one keeps the scalar form of both, which is exact at any magnitude.
template <class L>
inline __attribute__((always_inline)) void search_group_t(const float* x, uint32_t width, const float* steps,
                                                          const uint8_t* clipped, int rows, uint8_t* out,
                                                          std::vector<double>& y, std::vector<uint8_t>& took) {
  for (int r = 0; r < 8; ++r) {
    const double step = r < rows ? static_cast<double>(steps[r]) : 1.0;
    for (uint32_t t = 0; t < width; ++t) {
      y[static_cast<size_t>(t) * 8 + r] =
          r < rows ? static_cast<double>(x[static_cast<size_t>(r) * width + t]) / step : 0.0;
    }
  }
  bool any_clipped = false;
  for (int r = 0; r < rows; ++r) any_clipped |= clipped[r] != 0;
  const double inf = std::numeric_limits<double>::infinity();
  L cost[kStates];
  for (int st = 0; st < kStates; ++st) {
    cost[st] = L::splat(st == 0 ? 0.0 : inf);
  }
  for (uint32_t t = 0; t < width; ++t) {
    const double* yt = y.data() + static_cast<size_t>(t) * 8;
    L dv[4];
    if (!any_clipped) {
      circular_distances(L::load(yt), dv);
    } else {
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
      for (int c = 0; c < 4; ++c) dv[c] = L::load(d[c]);
    }
    acs_step(cost, dv, took.data() + static_cast<size_t>(t) * 8);
  }
  // Each lane's least-cost final state (the first among equals), then the walk back, the lanes side by side: each
  // lane's walk is a chain of dependent loads, and eight chains interleave.
  int state[8] = {};
  for (int r = 0; r < 8; ++r) {
    for (int st = 1; st < kStates; ++st) {
      if (cost[st].lane(r) < cost[state[r]].lane(r)) state[r] = st;
    }
  }
  uint8_t* cosets = took.data();  // the walk reads took[t] before it overwrites it with the cosets at t
  for (uint32_t t = width; t-- > 0;) {
    uint8_t* at = took.data() + static_cast<size_t>(t) * 8;
    for (int r = 0; r < 8; ++r) {
      const int branch = (at[r] >> state[r]) & 1;
      int coset;
      acs_back(state[r], branch, coset);
      at[r] = static_cast<uint8_t>(coset);
    }
  }
  if (!any_clipped) {  // j = 4·rint((y − c)/4) + c, inside the level range; symbol floor(j / 2) + 127
    using vpd = typename L::vpd;
    using vpi = typename L::vpi;
    alignas(64) double lo[8], hi[8], cd[8];
    for (uint32_t t = 0; t < width; ++t) {
      const uint8_t* ct = cosets + static_cast<size_t>(t) * 8;
      for (int r = 0; r < 8; ++r) {
        cd[r] = ct[r];
        lo[r] = kLevelLo[ct[r]];
        hi[r] = kLevelHi[ct[r]];
      }
      const L c = L::load(cd), l = L::load(lo), h = L::load(hi), v = L::load(y.data() + static_cast<size_t>(t) * 8);
      alignas(64) double jd[8];
      for (int k = 0; k < L::kParts; ++k) {
        vpd j = (v.p[k] - c.p[k]) / 4.0;
        rint_lanes(j);
        j = 4.0 * j + c.p[k];
        const vpi below = j < l.p[k], above = j > h.p[k];  // std::min(std::max(j, lo), hi)
        j = reinterpret_cast<vpd>((reinterpret_cast<vpi>(l.p[k]) & below) | (reinterpret_cast<vpi>(j) & ~below));
        j = reinterpret_cast<vpd>((reinterpret_cast<vpi>(h.p[k]) & above) | (reinterpret_cast<vpi>(j) & ~above));
        std::memcpy(jd + k * L::kPartLanes, &j, sizeof(j));
      }
      for (int r = 0; r < rows; ++r) {
        out[static_cast<size_t>(r) * width + t] = static_cast<uint8_t>((static_cast<int>(jd[r]) >> 1) + kZero);
      }
    }
    return;
  }
  for (int r = 0; r < rows; ++r) {
    for (uint32_t t = 0; t < width; ++t) {
      const size_t at = static_cast<size_t>(t) * 8 + r;
      const int j = static_cast<int>(nearest_level(y[at], cosets[at]));
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
  // Per block, from its largest |x| alone: x / step rounds monotonically in |x|, so the largest |y| is
  // |f64(max |x|) / f64(step)|, and every y is finite exactly when every x is and that one is. The maximum is
  // taken on the bits (|x| as an unsigned integer orders like the value, NaN above inf): no branch, no division
  // a weight (measured a third of the search's time as a division a weight).
  bool finite = true;
  for (uint64_t q = 0; q < nblocks; ++q) {
    const float* b = blocks + q * width;
    uint32_t top = 0;
    for (uint32_t t = 0; t < width; ++t) {
      uint32_t bits;
      std::memcpy(&bits, b + t, sizeof(bits));
      top = std::max(top, bits & 0x7FFFFFFFu);
    }
    float absmax;
    std::memcpy(&absmax, &top, sizeof(absmax));
    const double v = std::fabs(static_cast<double>(absmax) / static_cast<double>(steps[q]));
    finite &= top < 0x7F800000u && v - v == 0.0;
    if (v > 250) chunk_clipped[q / rows_per] = 1;
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
