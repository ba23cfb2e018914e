// blocktcq's encoder (hyperonnx/codec/blocktcq.py, _encode_blocks), byte-identical to numpy's.
//
// Per block, as numpy does it across blocks:
//   1. rank the 48 (scale offset, level set) candidates by the proxy error: each weight's cell
//      f32(f32(x · f32(1024 / max(s, 1e-38))) + 2048) clipped to [0, 4096], its table row summed over the block's
//      real weights in float32 in position order (numpy's np.sum over the outer axis adds row after row), times
//      f32(s · s); the TOP (8) least, ties to the lower candidate index (stable argsort), NaN last;
//   2. per shortlisted candidate: v = f32(x / s), each coset's nearest level by the _Nearest lookup grid (or a
//      binary search where the grid is not exact; MergedSearch finds all four at once where that is provably the
//      same), d = f64(f32(level · s) − x)², and the 8-state add-compare-select in float64 (acs.h; the last
//      block's padding costs 0 on every coset);
//   3. the candidate whose best final state costs least (first among equals) is traced back.
// The eight candidates are the eight lanes of the search's vectors: their add-compare-select chains are
// independent, and the differences and squares run eight at a time, as numpy runs them across rows.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "../parallel.h"
#include "acs.h"
#include "encoders.h"

namespace {

using namespace hyperonnx::encoders;

constexpr int kBooks = 4;
constexpr int kOffsets = 12;       // SCALE_OFFSETS = -6..5
constexpr int kFirstOffset = -6;
constexpr int kCandidates = kOffsets * kBooks;
constexpr int kTop = 8;            // TOP_CANDIDATES
constexpr int kProxyCells = 4096;  // PROXY_CELLS (the table has one more row)
constexpr int kGridCells = 8192;   // _Nearest.CELLS
static_assert(kTop == 8, "the Viterbi search keeps one lane per candidate");

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
  int64_t top;          // the last nonzero scale: the ones past it underflow, and no candidate uses them
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

// The four coset searches of one level set at once, where that gives the same levels: each coset's search counts
// its edges below v (searchsorted; the lookup grid's one-step correction counts the same wherever at most the two
// edges it compares can fall among the values that share a grid cell, which `grid_is_exact` checks per cell), so
// one count over the union of the four cosets' edges, `bp`, names all four levels. A row of `levels` per interval.
struct MergedSearch {
  bool ok = false;
  bool single_step = false;      // each grid cell holds at most one breakpoint
  std::vector<float> bp;         // the four cosets' edges, sorted, then +inf
  std::vector<uint16_t> guess;   // per grid cell: #bp below the cell (a start for the exact count)
  std::vector<float> levels;     // (bp.size() + 1) × 4: coset c's nearest level for v in interval i
  std::vector<int16_t> fine;     // the same, as fine-set indices
};

// Whether the lookup-grid search of one coset counts its edges below v exactly for every v (see MergedSearch).
// The values of grid cell c lie in [start_c, start_(c+1)) up to float32 rounding of v + 2 (< 2^-23 in v), so a
// margin of 1e-6 covers them.
bool grid_is_exact(const CosetSearch& s) {
  if (!s.exact) return true;  // a binary search: exact by construction
  const double width = 4.0 / kGridCells, margin = 1e-6;
  const float* e = s.edges + 1;  // the m − 1 real edges
  const int count = s.m - 1;
  for (int c = 0; c < kGridCells; ++c) {
    const int g = s.lut[c];
    const double lo = c == 0 ? -std::numeric_limits<double>::infinity() : -2.0 + c * width - margin;
    const double hi = c == kGridCells - 1 ? std::numeric_limits<double>::infinity() : -2.0 + (c + 1) * width + margin;
    if (g >= 2 && !(e[g - 2] < lo)) return false;
    if (g + 1 < count && !(e[g + 1] > hi)) return false;
  }
  return true;
}

MergedSearch merge_cosets(const Tables& tb, int book) {
  MergedSearch ms;
  for (int c = 0; c < 4; ++c) {
    const CosetSearch& cs = tb.search[book][c];
    if (!grid_is_exact(cs)) return ms;
    ms.bp.insert(ms.bp.end(), cs.edges + 1, cs.edges + cs.m);
  }
  for (float e : ms.bp) {
    if (!std::isfinite(e)) return ms;
  }
  std::sort(ms.bp.begin(), ms.bp.end());
  const size_t k = ms.bp.size();
  ms.levels.resize((k + 1) * 4);
  ms.fine.resize((k + 1) * 4);
  const float* books = tb.books + static_cast<size_t>(book) * tb.fine;
  for (size_t i = 0; i <= k; ++i) {
    for (int c = 0; c < 4; ++c) {
      const CosetSearch& cs = tb.search[book][c];
      // v in interval i: bp[0, i) < v <= bp[i], so coset c's edges below v are those <= bp[i − 1]
      int r = 0;
      if (i > 0) r = static_cast<int>(std::upper_bound(cs.edges + 1, cs.edges + cs.m, ms.bp[i - 1]) - (cs.edges + 1));
      ms.fine[i * 4 + c] = cs.index[r];
      ms.levels[i * 4 + c] = books[cs.index[r]];
    }
  }
  ms.guess.resize(kGridCells);
  ms.single_step = true;
  for (int c = 0; c < kGridCells; ++c) {
    const double lo = -2.0 + c * (4.0 / kGridCells) - 1e-6, hi = -2.0 + (c + 1) * (4.0 / kGridCells) + 1e-6;
    const size_t g = std::lower_bound(ms.bp.begin(), ms.bp.end(), static_cast<float>(lo)) - ms.bp.begin();
    ms.guess[c] = static_cast<uint16_t>(g);
    // A cell's values lie in (lo, hi) (the grid cell's rounding is < 2^-23 in v), above the guess's breakpoints:
    // with at most one more breakpoint up to hi the count is the guess or one more. Cell 0 also takes every v
    // below −2 (it must hold no breakpoint), the last cell every v above 2 (all breakpoints must lie below it).
    bool single;
    if (c == 0) {
      single = k == 0 || static_cast<double>(ms.bp[0]) > hi;
    } else if (c == kGridCells - 1) {
      single = g == k;
    } else {
      single = g + 1 >= k || static_cast<double>(ms.bp[g + 1]) > hi;
    }
    ms.single_step &= single;
  }
  ms.bp.push_back(std::numeric_limits<float>::infinity());  // sentinel: bp[k] < v never holds
  ms.ok = true;
  return ms;
}

// #bp below v, from the cell's guess: one branch-free step where every cell holds at most one breakpoint, else
// walked (exact whatever the guess).
inline size_t merged_interval(const MergedSearch& ms, float v, int32_t cell) {
  size_t i = ms.guess[cell];
  if (ms.single_step) return i + (ms.bp[i] < v ? 1 : 0);
  const size_t k = ms.bp.size() - 1;  // without the sentinel
  while (i < k && ms.bp[i] < v) ++i;
  while (i > 0 && ms.bp[i - 1] >= v) --i;
  return i;
}

// A float32 key as an unsigned integer in numpy's sort order: increasing with the value, −0 equal to +0, every NaN
// after +inf and equal to the others.
inline uint32_t sort_bits(float f) {
  if (f != f) return 0xFFFFFFFFu;
  f = f + 0.0f;  // −0 → +0
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return (u & 0x80000000u) != 0 ? ~u : u | 0x80000000u;
}

struct Scratch {
  std::vector<float> x;        // the block, zero-padded
  std::vector<float> v;        // kTop × block: x / s per candidate
  std::vector<int32_t> cell;   // kTop × block: grid cells of v
  std::vector<int32_t> pcell;  // kOffsets × block: proxy cells
  std::vector<uint8_t> took;   // block × kTop: bit `state` set where the state was entered through branch B
  explicit Scratch(uint32_t block)
      : x(block), v(static_cast<size_t>(kTop) * block), cell(static_cast<size_t>(kTop) * block),
        pcell(static_cast<size_t>(kOffsets) * block), took(static_cast<size_t>(block) * kTop) {}
};

template <class L>
inline __attribute__((always_inline)) int encode_block_t(const Tables& tb, const MergedSearch* merged,
                                                        const float* src, uint32_t n, int64_t k0, uint16_t* digits,
                                                        uint32_t* header, Scratch& sc) {
  const uint32_t width = tb.block;
  float* x = sc.x.data();
  std::memcpy(x, src, n * sizeof(float));
  std::fill(x + n, x + width, 0.0f);

  // 1. Ranking.
  float per_unit[kOffsets], s_off[kOffsets];
  int k_off[kOffsets];
  for (int o = 0; o < kOffsets; ++o) {
    const int64_t k = std::min<int64_t>(tb.top, std::max<int64_t>(0, std::min(k0, tb.top) + kFirstOffset + o));
    k_off[o] = static_cast<int>(k);
    s_off[o] = tb.scales[k];
    per_unit[o] = 1024.0f / std::max(s_off[o], static_cast<float>(1e-38));
  }
  const uint32_t whole = width / 8 * 8;
  for (int o = 0; o < kOffsets; ++o) {
    int32_t* pc = sc.pcell.data() + static_cast<size_t>(o) * width;
    const float pu = per_unit[o];
    for (uint32_t t = 0; t < whole; t += 8) {
      v8sf c;
      std::memcpy(&c, x + t, sizeof(c));
      c = c * pu;
      c = c + 2048.0f;
      c = c != c ? 2048.0f : c;  // 0·∞ under a subnormal scale: a zero weight's cell is the middle one
      c = c < 0.0f ? 0.0f : c;  // clip: max then min, as np.clip (no NaN gets here unnoticed)
      c = c > static_cast<float>(kProxyCells) ? static_cast<float>(kProxyCells) : c;
      const v8si ci = __builtin_convertvector(c, v8si);
      std::memcpy(pc + t, &ci, sizeof(ci));
    }
    for (uint32_t t = whole; t < width; ++t) {
      float c = x[t] * pu;
      c = c + 2048.0f;
      if (c != c) c = 2048.0f;
      c = std::min(std::max(c, 0.0f), static_cast<float>(kProxyCells));
      pc[t] = static_cast<int32_t>(c);
    }
  }
  v4sf acc[kOffsets] = {};
  for (uint32_t t = 0; t < n; ++t) {
    for (int o = 0; o < kOffsets; ++o) {
      v4sf row;
      std::memcpy(&row, tb.proxy + static_cast<size_t>(sc.pcell[static_cast<size_t>(o) * width + t]) * kBooks,
                  sizeof(row));
      acc[o] += row;
    }
  }
  float key[kCandidates];
  for (int o = 0; o < kOffsets; ++o) {
    const float s2 = s_off[o] * s_off[o];
    for (int b = 0; b < kBooks; ++b) key[o * kBooks + b] = acc[o][b] * s2;
  }
  // The kTop least (key, index) pairs, as one integer each: numpy's stable argsort order (NaN last, equal keys by
  // index). Insertion into a sorted list of kTop: after the first few candidates most fail its first comparison.
  uint64_t top[kTop + 1];
  int filled = 0;
  for (int i = 0; i < kCandidates; ++i) {
    const uint64_t u = static_cast<uint64_t>(sort_bits(key[i])) << 8 | static_cast<uint64_t>(i);
    if (filled == kTop && u >= top[kTop - 1]) continue;
    int at = filled < kTop ? filled++ : kTop - 1;
    for (; at > 0 && top[at - 1] > u; --at) top[at] = top[at - 1];
    top[at] = u;
  }
  int order[kTop];
  for (int r = 0; r < kTop; ++r) order[r] = static_cast<int>(top[r] & 0xFF);
  std::sort(order, order + kTop);

  // 2. The Viterbi searches, all candidates side by side.
  float s[kTop];
  int book[kTop], kc[kTop];
  for (int r = 0; r < kTop; ++r) {
    book[r] = order[r] % kBooks;
    kc[r] = k_off[order[r] / kBooks];
    s[r] = tb.scales[kc[r]];
  }
  v8si finite = {};  // 0 while every v is finite
  for (int r = 0; r < kTop; ++r) {
    float* vr = sc.v.data() + static_cast<size_t>(r) * width;
    int32_t* cr = sc.cell.data() + static_cast<size_t>(r) * width;
    const float sr = s[r];
    const float hi = static_cast<float>(2.0 * 0.999999);
    for (uint32_t t = 0; t < whole; t += 8) {
      v8sf v;
      std::memcpy(&v, x + t, sizeof(v));
      v = v / sr;
      finite |= (v - v) != 0.0f;  // ±inf and NaN
      std::memcpy(vr + t, &v, sizeof(v));
      v8sf c = v < -2.0f ? -2.0f : v;  // grid_cell, lane by lane
      c = c > hi ? hi : c;
      c = c + 2.0f;
      c = c * 2048.0f;
      const v8si ci = __builtin_convertvector(c, v8si);
      std::memcpy(cr + t, &ci, sizeof(ci));
    }
    for (uint32_t t = whole; t < width; ++t) {
      const float v = x[t] / sr;
      finite[0] |= (v - v) != 0.0f ? -1 : 0;
      vr[t] = v;
      cr[t] = grid_cell(v);
    }
  }
  for (int i = 0; i < 8; ++i) {
    if (finite[i] != 0) return kHxNeedsReference;
  }
  const v8sf sv = {s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]};
  const double inf = std::numeric_limits<double>::infinity();
  L cost[kStates];
  for (int st = 0; st < kStates; ++st) {
    cost[st] = L::splat(st == 0 ? 0.0 : inf);
  }
  for (uint32_t t = 0; t < width; ++t) {
    L dv[4];
    if (t >= n) {
      for (int c = 0; c < 4; ++c) dv[c] = L::splat(0.0);
    } else if (merged != nullptr) {
      // Each candidate's interval (a row of four coset levels), then per coset the eight candidates' levels as one
      // vector: the differences and squares run eight lanes at a time, as numpy's do across rows.
      const float* row[kTop];
      for (int r = 0; r < kTop; ++r) {
        const MergedSearch& ms = merged[book[r]];
        const size_t at = static_cast<size_t>(r) * width + t;
        row[r] = ms.levels.data() + merged_interval(ms, sc.v[at], sc.cell[at]) * 4;
      }
      for (int c = 0; c < 4; ++c) {
        const v8sf lv = {row[0][c], row[1][c], row[2][c], row[3][c], row[4][c], row[5][c], row[6][c], row[7][c]};
        const v8sf diff = lv * sv - x[t];  // two roundings per lane: the product, then the difference
        dv[c] = L::widen_square(diff);
      }
    } else {
      alignas(64) double d[4][kTop];
      const float xt = x[t];
      for (int r = 0; r < kTop; ++r) {
        const size_t at = static_cast<size_t>(r) * width + t;
        const float* levels = tb.books + static_cast<size_t>(book[r]) * tb.fine;
        for (int c = 0; c < 4; ++c) {
          const CosetSearch& cs = tb.search[book[r]][c];
          const float diff = levels[cs.index[nearest(cs, sc.v[at], sc.cell[at])]] * s[r] - xt;
          d[c][r] = static_cast<double>(diff) * static_cast<double>(diff);
        }
      }
      for (int c = 0; c < 4; ++c) dv[c] = L::load(d[c]);
    }
    acs_step(cost, dv, sc.took.data() + static_cast<size_t>(t) * kTop);
  }

  // 3. The best candidate and its path.
  int best = 0, best_state = 0;
  double best_err = 0.0;
  for (int r = 0; r < kTop; ++r) {
    int fs = 0;
    for (int st = 1; st < kStates; ++st) {
      if (cost[st].lane(r) < cost[fs].lane(r)) fs = st;
    }
    if (r == 0 || cost[fs].lane(r) < best_err) {
      best = r;
      best_state = fs;
      best_err = cost[fs].lane(r);
    }
  }
  const float* vb = sc.v.data() + static_cast<size_t>(best) * width;
  const int32_t* cb = sc.cell.data() + static_cast<size_t>(best) * width;
  int state = best_state;
  for (uint32_t t = width; t-- > 0;) {
    const int branch = (sc.took[static_cast<size_t>(t) * kTop + best] >> state) & 1;
    int coset;
    acs_back(state, branch, coset);
    if (t < n) {
      int f;
      if (merged != nullptr) {
        const MergedSearch& ms = merged[book[best]];
        f = ms.fine[merged_interval(ms, vb[t], cb[t]) * 4 + coset];
      } else {
        const CosetSearch& cs = tb.search[book[best]][coset];
        f = cs.index[nearest(cs, vb[t], cb[t])];
      }
      digits[t] = static_cast<uint16_t>(f >> 1);
    }
  }
  *header = static_cast<uint32_t>(kc[best]) | static_cast<uint32_t>(book[best]) << 8;
  return 0;
}


#define HX_BLOCK_ARGS                                                                                       \
  const Tables &tb, const MergedSearch *merged, const float *src, uint32_t n, int64_t k0, uint16_t *digits, \
      uint32_t *header, Scratch &sc
using EncodeBlockFn = int (*)(HX_BLOCK_ARGS);
int encode_block_128(HX_BLOCK_ARGS) { return encode_block_t<Lanes<16>>(tb, merged, src, n, k0, digits, header, sc); }
#ifdef HX_X86_DISPATCH
__attribute__((target("avx2"))) int encode_block_256(HX_BLOCK_ARGS) {
  return encode_block_t<Lanes<32>>(tb, merged, src, n, k0, digits, header, sc);
}
__attribute__((target("avx512f"))) int encode_block_512(HX_BLOCK_ARGS) {
  return encode_block_t<Lanes<64>>(tb, merged, src, n, k0, digits, header, sc);
}
#endif
#undef HX_BLOCK_ARGS

EncodeBlockFn pick_encode_block() {
  switch (vector_bytes()) {
#ifdef HX_X86_DISPATCH
    case 64:
      return encode_block_512;
    case 32:
      return encode_block_256;
#endif
    default:
      return encode_block_128;
  }
}

}  // namespace

HX_ENCODER_API int hx_blocktcq_encode(const float* x, uint64_t numel, int bits, uint32_t block,
                                      const float* books, const float* scales, const float* proxy,
                                      const float* edges, const int16_t* index, const int32_t* lut,
                                      const uint8_t* exact, const int64_t* k0, uint16_t* digits, uint32_t* headers,
                                      int threads) {
  if (x == nullptr || books == nullptr || scales == nullptr || proxy == nullptr || edges == nullptr ||
      index == nullptr || lut == nullptr || exact == nullptr || k0 == nullptr || digits == nullptr ||
      headers == nullptr || bits < 1 || bits > 8 || block < 2 || block > 4096) {
    return kHxBadArgument;
  }
  Tables tb;
  tb.fine = 2 << bits;
  tb.block = block;
  tb.books = books;
  tb.scales = scales;
  tb.top = 255;
  while (tb.top > 0 && !(scales[tb.top] > 0.0f)) --tb.top;
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
  MergedSearch merged[kBooks];
  bool all_merged = std::getenv("HYPERONNX_ENCODERS_DIRECT") == nullptr;
  for (int b = 0; b < kBooks; ++b) {
    merged[b] = merge_cosets(tb, b);
    all_merged &= merged[b].ok;
  }
  const uint64_t nblocks = (numel + block - 1) / block;
  std::atomic_int status{0};
  const EncodeBlockFn encode_block = pick_encode_block();
  hyperonnx::parallel_ranges(nblocks, 1, threads, [&](uint64_t q0, uint64_t q1) {
    Scratch sc(block);
    for (uint64_t q = q0; q < q1 && status.load(std::memory_order_relaxed) == 0; ++q) {
      const uint64_t first = q * block;
      const uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(block, numel - first));
      const int rc =
          encode_block(tb, all_merged ? merged : nullptr, x + first, n, k0[q], digits + first, headers + q, sc);
      if (rc != 0) status.store(rc);
    }
  });
  return status.load();
}
