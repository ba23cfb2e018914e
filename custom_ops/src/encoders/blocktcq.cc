// blocktcq's encoder (hyperonnx/codec/blocktcq.py, _encode_blocks), byte-identical to numpy's.
//
// Per block, as numpy does it across blocks:
//   1. rank the 48 (scale offset, level set) candidates by the proxy error: each weight's cell
//      f32(f32(x · f32(1024 / max(s, 1e-38))) + 2048) clipped to [0, 4096], its table row summed over the block's
//      real weights in float32 in position order (numpy's np.sum over the outer axis adds row after row), times
//      f32(s · s); the TOP (8) least, ties to the lower candidate index (stable argsort), NaN last;
//   2. per shortlisted candidate, in candidate order: v = f32(x / s), each coset's nearest level by the
//      _Nearest lookup grid (or a binary search where the grid is not exact), d = f64(f32(level · s) − x)², and
//      the 8-state add-compare-select in float64 (the last block's padding costs 0 on every coset);
//   3. the candidate whose best final state costs least (first among equals) is traced back.
// Candidates are interleaved position by position: their add-compare-select chains are independent, so the CPU
// overlaps them (one candidate at a time is bound by the latency of its add → min chain).
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "../parallel.h"
#include "encoders.h"

namespace {

constexpr int kBooks = 4;
constexpr int kOffsets = 12;       // SCALE_OFFSETS = -6..5
constexpr int kFirstOffset = -6;
constexpr int kCandidates = kOffsets * kBooks;
constexpr int kTop = 8;            // TOP_CANDIDATES
constexpr int kProxyCells = 4096;  // PROXY_CELLS (the table has one more row)
constexpr int kGridCells = 8192;   // _Nearest.CELLS
constexpr int kStates = 8;

struct CosetSearch {
  const float* edges;     // m + 1, padded with ∓inf
  const int16_t* index;   // m: position in the sorted coset → fine index
  const int32_t* lut;     // kGridCells
  int m;
  bool exact;
};

struct Tables {
  int fine;  // 2L
  uint32_t block;
  const float* books;   // kBooks × fine
  const float* scales;  // 256
  const float* proxy;   // (kProxyCells + 1) × kBooks
  CosetSearch search[kBooks][4];
};

// _Nearest.cells: f32((clip(v, −2, f32(2·0.999999)) + 2) · 2048) truncated; v is finite here.
inline int32_t grid_cell(float v) {
  const float hi = static_cast<float>(2.0 * 0.999999);
  float c = std::min(std::max(v, -2.0f), hi);
  c = c + 2.0f;
  c = c * 2048.0f;
  return static_cast<int32_t>(c);
}

// The position of v's nearest level in the sorted coset (_Nearest.__call__).
inline int nearest(const CosetSearch& s, float v, int32_t cell) {
  if (!s.exact) {
    return static_cast<int>(std::lower_bound(s.edges + 1, s.edges + s.m, v) - (s.edges + 1));
  }
  const int g = s.lut[cell];
  return g + (v > s.edges[g + 1] ? 1 : 0) - (v <= s.edges[g] ? 1 : 0);
}

// numpy's sort order for float32 keys: NaN after every number.
inline bool key_less(float a, float b) { return a < b || (std::isnan(b) && !std::isnan(a)); }

struct Scratch {
  std::vector<float> x;        // the block, zero-padded
  std::vector<uint8_t> took;   // per position, per state: bit r set when candidate r entered through branch B
  explicit Scratch(uint32_t block) : x(block), took(static_cast<size_t>(block) * kStates) {}
};

int encode_block(const Tables& tb, const float* src, uint32_t n, int64_t k0, uint16_t* digits, uint32_t* header,
                 Scratch& sc) {
  const uint32_t width = tb.block;
  float* x = sc.x.data();
  std::memcpy(x, src, n * sizeof(float));
  std::fill(x + n, x + width, 0.0f);

  // 1. Ranking.
  float per_unit[kOffsets], s_off[kOffsets];
  int k_off[kOffsets];
  for (int o = 0; o < kOffsets; ++o) {
    const int64_t k = std::min<int64_t>(255, std::max<int64_t>(0, k0 + kFirstOffset + o));
    k_off[o] = static_cast<int>(k);
    s_off[o] = tb.scales[k];
    per_unit[o] = 1024.0f / std::max(s_off[o], static_cast<float>(1e-38));
  }
  float acc[kOffsets][kBooks] = {};
  for (uint32_t t = 0; t < width; ++t) {
    const float xt = x[t];
    for (int o = 0; o < kOffsets; ++o) {
      float c = xt * per_unit[o];
      c = c + 2048.0f;
      if (std::isnan(c)) return kHxNeedsReference;  // numpy indexes with a NaN cell and raises
      c = std::min(std::max(c, 0.0f), static_cast<float>(kProxyCells));
      if (t < n) {
        const float* row = tb.proxy + static_cast<size_t>(static_cast<int32_t>(c)) * kBooks;
        for (int b = 0; b < kBooks; ++b) acc[o][b] += row[b];
      }
    }
  }
  float key[kCandidates];
  for (int o = 0; o < kOffsets; ++o) {
    const float s2 = s_off[o] * s_off[o];
    for (int b = 0; b < kBooks; ++b) key[o * kBooks + b] = acc[o][b] * s2;
  }
  int order[kCandidates];
  for (int i = 0; i < kCandidates; ++i) order[i] = i;
  std::nth_element(order, order + kTop, order + kCandidates, [&](int a, int b) {
    if (key_less(key[a], key[b])) return true;
    if (key_less(key[b], key[a])) return false;
    return a < b;
  });
  std::sort(order, order + kTop);

  // 2. The Viterbi searches, all candidates side by side.
  float s[kTop];
  int book[kTop], kc[kTop];
  for (int r = 0; r < kTop; ++r) {
    book[r] = order[r] % kBooks;
    kc[r] = k_off[order[r] / kBooks];
    s[r] = tb.scales[kc[r]];
  }
  const double inf = std::numeric_limits<double>::infinity();
  double cost[kStates][kTop], next[kStates][kTop];
  for (int st = 0; st < kStates; ++st) {
    for (int r = 0; r < kTop; ++r) cost[st][r] = st == 0 ? 0.0 : inf;
  }
  for (uint32_t t = 0; t < width; ++t) {
    double d[4][kTop];
    for (int r = 0; r < kTop; ++r) {
      const float v = x[t] / s[r];
      if (!std::isfinite(v)) return kHxNeedsReference;
      if (t >= n) {
        for (int c = 0; c < 4; ++c) d[c][r] = 0.0;
        continue;
      }
      const int32_t cell = grid_cell(v);
      const float* levels = tb.books + static_cast<size_t>(book[r]) * tb.fine;
      for (int c = 0; c < 4; ++c) {
        const CosetSearch& cs = tb.search[book[r]][c];
        const int f = cs.index[nearest(cs, v, cell)];
        const float diff = levels[f] * s[r] - x[t];
        d[c][r] = static_cast<double>(diff) * static_cast<double>(diff);
      }
    }
    uint8_t* took = sc.took.data() + static_cast<size_t>(t) * kStates;
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 2; ++j) {
        const int ca = j == 0 ? i : i ^ 2, cb = ca ^ 2;
        uint8_t bits = 0;
        for (int r = 0; r < kTop; ++r) {
          const double a = cost[i][r] + d[ca][r];
          const double b = cost[i + 4][r] + d[cb][r];
          bits |= static_cast<uint8_t>((b < a ? 1 : 0) << r);
          next[2 * i + j][r] = b < a ? b : a;
        }
        took[2 * i + j] = bits;
      }
    }
    std::memcpy(cost, next, sizeof(cost));
  }

  // 3. The best candidate and its path.
  int best = 0, best_state = 0;
  double best_err = 0.0;
  for (int r = 0; r < kTop; ++r) {
    int fs = 0;
    for (int st = 1; st < kStates; ++st) {
      if (cost[st][r] < cost[fs][r]) fs = st;
    }
    if (r == 0 || cost[fs][r] < best_err) {
      best = r;
      best_state = fs;
      best_err = cost[fs][r];
    }
  }
  const float sb = s[best];
  int state = best_state;
  for (uint32_t t = width; t-- > 0;) {
    const int branch = (sc.took[static_cast<size_t>(t) * kStates + state] >> best) & 1;
    const int i = state >> 1, j = state & 1;
    const int ca = j == 0 ? i : i ^ 2;
    const int coset = branch ? ca ^ 2 : ca;
    if (t < n) {
      const float v = x[t] / sb;
      const CosetSearch& cs = tb.search[book[best]][coset];
      digits[t] = static_cast<uint16_t>(cs.index[nearest(cs, v, grid_cell(v))] >> 1);
    }
    state = branch ? i + 4 : i;
  }
  *header = static_cast<uint32_t>(kc[best]) | static_cast<uint32_t>(book[best]) << 8;
  return 0;
}

}  // namespace

HX_ENCODER_API int hx_blocktcq_encode(const float* x, uint64_t numel, int bits, uint32_t block, const float* books,
                                      const float* scales, const float* proxy, const float* edges,
                                      const int16_t* index, const int32_t* lut,
                                      const uint8_t* exact, const int64_t* k0, uint16_t* digits, uint32_t* headers,
                                      int threads) {
  if (x == nullptr || books == nullptr || scales == nullptr || proxy == nullptr || edges == nullptr || index == nullptr || lut == nullptr || exact == nullptr || k0 == nullptr ||
      digits == nullptr || headers == nullptr || bits < 1 || bits > 8 || block < 2 || block > 4096) {
    return kHxBadArgument;
  }
  Tables tb;
  tb.fine = 2 << bits;
  tb.block = block;
  tb.books = books;
  tb.scales = scales;
  tb.proxy = proxy;
  const int m = tb.fine / 4;
  for (int b = 0; b < kBooks; ++b) {
    for (int c = 0; c < 4; ++c) {
      const int bc = b * 4 + c;
      CosetSearch& cs = tb.search[b][c];
      cs.edges = edges + static_cast<size_t>(bc) * (m + 1);
      cs.index = index + static_cast<size_t>(bc) * m;
      cs.lut = lut + static_cast<size_t>(bc) * kGridCells;
      cs.m = m;
      cs.exact = exact[bc] != 0;
      for (int i = 0; i < m; ++i) {
        if (cs.index[i] < 0 || cs.index[i] >= tb.fine) return kHxBadArgument;
      }
      for (int i = 0; cs.exact && i < kGridCells; ++i) {
        if (cs.lut[i] < 0 || cs.lut[i] >= m) return kHxBadArgument;
      }
    }
  }
  const uint64_t nblocks = (numel + block - 1) / block;
  std::atomic_int status{0};
  hyperonnx::parallel_ranges(nblocks, 1, threads, [&](uint64_t q0, uint64_t q1) {
    Scratch sc(block);
    for (uint64_t q = q0; q < q1 && status.load(std::memory_order_relaxed) == 0; ++q) {
      const uint64_t first = q * block;
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(block, numel - first));
      const int rc = encode_block(tb, x + first, n, k0[q], digits + first, headers + q, sc);
      if (rc != 0) status.store(rc);
    }
  });
  return status.load();
}
