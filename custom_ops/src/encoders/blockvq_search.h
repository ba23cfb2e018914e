// blockvq's block search at one vector width, included by blockvq.cc once per width (no include guard), inside a
// namespace HX_NS, with HX_W lanes and HX_ISA (512: AVX-512 permutes and gathers, 256: AVX2 gathers, 0: plain C++).
// Lane r of every vector is one block; each block's candidate errors then add up along the lane in position
// order, as the specification does (hyperonnx/codec/blockvq.py, _encode_blocks).
namespace HX_NS {

constexpr int kW = HX_W;
typedef float vf __attribute__((vector_size(4 * HX_W)));
typedef int32_t vi __attribute__((vector_size(4 * HX_W)));

inline vf load(const float* p) {
  vf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline vf splat(float f) {
  vf v;
  for (int r = 0; r < kW; ++r) v[r] = f;
  return v;
}

// table[i] in every lane
inline vf gather(const float* table, vi i) {
#if HX_ISA == 512
  return reinterpret_cast<vf>(
      _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, reinterpret_cast<__m512i>(i), table, 4));
#elif HX_ISA == 256
  return reinterpret_cast<vf>(_mm256_i32gather_ps(table, reinterpret_cast<__m256i>(i), 4));
#else
  vf out;
  for (int r = 0; r < kW; ++r) out[r] = table[i[r]];
  return out;
#endif
}

inline vi gather(const int32_t* table, vi i) {
#if HX_ISA == 512
  return reinterpret_cast<vi>(_mm512_mask_i32gather_epi32(_mm512_setzero_si512(), 0xFFFF,
                                                          reinterpret_cast<__m512i>(i), table, 4));
#elif HX_ISA == 256
  return reinterpret_cast<vi>(_mm256_i32gather_epi32(table, reinterpret_cast<__m256i>(i), 4));
#else
  vi out;
  for (int r = 0; r < kW; ++r) out[r] = table[i[r]];
  return out;
#endif
}

// _Nearest.cells: f32((clip(v, −2, f32(2·0.999999)) + 2) · 2048) truncated, lane by lane (v is finite).
inline vi grid_cell(vf v) {
  const float hi = static_cast<float>(2.0 * 0.999999);
  vf c = v < -2.0f ? splat(-2.0f) : v;
  c = c > hi ? splat(hi) : c;
  c = c + 2.0f;
  c = c * 2048.0f;
  return __builtin_convertvector(c, vi);
}

// One level set's tables as this width reads them: from memory (gathers), or, with AVX-512 or AVX2 and at most
// 32 levels, from registers (one AVX-512 permute per lookup; with AVX2, up to four permutes of 8 entries and three
// blends). The search's hot loop does twelve lookups per vector: from registers it ran 3.6x faster with AVX-512,
// and 1.5x with AVX2, than with gathers (2 M weights at 5 bits; HYPERONNX_ENCODERS_ISA picks the width).
struct Table {
  const float* mem;
#if HX_ISA == 512
  __m512 lo, hi;
#elif HX_ISA == 256
  __m256 r[4];
#endif
};

inline Table table(const float* src, int n) {
  Table t{};
  t.mem = src;
#if HX_ISA == 512 || HX_ISA == 256
  float regs[32] = {};
  std::memcpy(regs, src, static_cast<size_t>(std::min(n, 32)) * sizeof(float));
#endif
#if HX_ISA == 512
  t.lo = _mm512_loadu_ps(regs);
  t.hi = _mm512_loadu_ps(regs + 16);
#elif HX_ISA == 256
  for (int k = 0; k < 4; ++k) t.r[k] = _mm256_loadu_ps(regs + 8 * k);
#else
  (void)n;
#endif
  return t;
}

template <bool kRegs>
inline vf look(const Table& t, vi i) {
#if HX_ISA == 512
  if (kRegs) return reinterpret_cast<vf>(_mm512_permutex2var_ps(t.lo, reinterpret_cast<__m512i>(i), t.hi));
#elif HX_ISA == 256
  if (kRegs) {  // entry i: register i >> 3, lane i & 7; blendv picks by the sign bit, so bits 3 and 4 move there
    const __m256i idx = reinterpret_cast<__m256i>(i);
    const __m256 bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
    const __m256 bit4 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 27));
    const __m256 low = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t.r[0], idx),
                                        _mm256_permutevar8x32_ps(t.r[1], idx), bit3);
    const __m256 high = _mm256_blendv_ps(_mm256_permutevar8x32_ps(t.r[2], idx),
                                         _mm256_permutevar8x32_ps(t.r[3], idx), bit3);
    return reinterpret_cast<vf>(_mm256_blendv_ps(low, high, bit4));
  }
#endif
  return gather(t.mem, i);
}

struct Book {
  Table lo, hi, level;  // edges[g], edges[g + 1] (the padded edges), levels[i]
  bool exact;
  int levels;
};

// The index of the level nearest v (_Nearest.__call__): the lookup grid's guess g corrected by one step, or, where
// the grid is not exact, the count of decision edges below v (np.searchsorted), by bisection.
template <bool kRegs>
inline vi nearest(const Book& b, vf v, vi g) {
  if (b.exact) {
    const vi up = v > look<kRegs>(b.hi, g), down = v <= look<kRegs>(b.lo, g);
    return g - up + down;  // true is −1
  }
  vi pos = {};  // hi[j] = edges[j + 1] is real edge j: pos counts those below v
  for (int step = b.levels / 2; step >= 1; step /= 2) pos += (v > look<kRegs>(b.hi, pos + step - 1)) & step;
  return pos;
}

// Encodes blocks q0 … q0 + lanes − 1 (lanes ≤ kW) of x[0, numel): headers, and θ codes below `count`.
// xt, dig: kW × block scratch. kHxNeedsReference where some x / s would not be finite (the lookups assume it is).
template <bool kRegs>
int encode_group_t(const VqTables& tb, const float* x, uint64_t numel, uint64_t q0, int lanes, const int64_t* k0,
                    uint16_t* codes, uint64_t count, uint32_t* headers, float* xt, int32_t* dig) {
  const uint32_t width = tb.block;
  float absmax[kW];
  for (int r = 0; r < kW; ++r) {  // transposed, zero-padded: position t of block q0 + r at xt[t · kW + r]
    const uint64_t first = (q0 + static_cast<uint64_t>(r)) * width;
    const uint64_t n = r < lanes ? std::min<uint64_t>(width, numel - first) : 0;
    absmax[r] = 0.0f;
    for (uint32_t t = 0; t < width; ++t) {
      const float xv = t < n ? x[first + t] : 0.0f;
      xt[static_cast<size_t>(t) * kW + r] = xv;
      absmax[r] = std::max(absmax[r], std::fabs(xv));
    }
  }
  Book book[kBooks];
  bool any_exact = false;
  for (int b = 0; b < kBooks; ++b) {
    const float* edges = tb.edges + static_cast<size_t>(b) * (tb.levels + 1);
    book[b] = Book{table(edges, tb.levels), table(edges + 1, tb.levels),
                   table(tb.level + static_cast<size_t>(b) * tb.levels, tb.levels), tb.exact[b], tb.levels};
    any_exact |= tb.exact[b];
  }
  vf best = splat(std::numeric_limits<float>::infinity());
  vi best_k = {}, best_book = {};
  for (int o = 0; o < kOffsets; ++o) {
    vi k;
    for (int r = 0; r < kW; ++r) {
      const int64_t code = std::min<int64_t>(tb.top, r < lanes ? k0[r] : 0) + kFirstOffset + o;
      k[r] = static_cast<int32_t>(std::min<int64_t>(tb.top, std::max<int64_t>(0, code)));
    }
    const vf s = gather(tb.scales, k);
    for (int r = 0; r < kW; ++r) {
      if (!std::isfinite(absmax[r] / s[r])) return kHxNeedsReference;  // the largest |v| of this scale
    }
    vf acc[kBooks] = {};
    for (uint32_t t = 0; t < width; ++t) {
      const vf xv = load(xt + static_cast<size_t>(t) * kW);
      const vf v = xv / s;
      const vi g4 = any_exact ? gather(tb.guess, grid_cell(v)) : vi{};
      for (int b = 0; b < kBooks; ++b) {
        const vi idx = nearest<kRegs>(book[b], v, (g4 >> (8 * b)) & 255);
        const vf d = look<kRegs>(book[b].level, idx) * s - xv;  // two roundings: the product, then the difference
        acc[b] += d * d;
      }
    }
    for (int b = 0; b < kBooks; ++b) {  // the first least error wins; a NaN never does
      const vi better = acc[b] < best;
      best = better ? acc[b] : best;
      best_k = better ? k : best_k;
      best_book = better ? vi{} + b : best_book;
    }
  }

  // The winner's digits, each lane with its own level set: the tables side by side in memory.
  const vf s = gather(tb.scales, best_k);
  const vi base = best_book * (tb.levels + 1), shift = best_book * 8;
  vi exact_lane;
  for (int r = 0; r < kW; ++r) exact_lane[r] = tb.exact[best_book[r]] ? -1 : 0;
  for (uint32_t t = 0; t < width; ++t) {
    const vf xv = load(xt + static_cast<size_t>(t) * kW);
    const vf v = xv / s;
    const vi g = (gather(tb.guess, grid_cell(v)) >> shift) & 255;
    const vi up = v > gather(tb.edges, base + g + 1), down = v <= gather(tb.edges, base + g);
    vi idx = g - up + down;
    if (!tb.all_exact) {
      vi pos = {};
      for (int step = tb.levels / 2; step >= 1; step /= 2) pos += (v > gather(tb.edges, base + pos + step)) & step;
      idx = exact_lane ? idx : pos;
    }
    std::memcpy(dig + static_cast<size_t>(t) * kW, &idx, sizeof(idx));
  }
  for (int r = 0; r < lanes; ++r) {
    const uint64_t q = q0 + static_cast<uint64_t>(r);
    headers[q] = static_cast<uint32_t>(best_k[r]) | static_cast<uint32_t>(best_book[r]) << 8;
    const uint64_t c0 = q * width / 2;
    for (uint32_t p = 0; p < width / 2 && c0 + p < count; ++p) {
      const uint32_t hi = static_cast<uint32_t>(dig[static_cast<size_t>(2 * p) * kW + r]);
      const uint32_t lo = static_cast<uint32_t>(dig[static_cast<size_t>(2 * p + 1) * kW + r]);
      codes[c0 + p] = static_cast<uint16_t>(hi << tb.bits | lo);
    }
  }
  return 0;
}

int encode_group(const VqTables& tb, const float* x, uint64_t numel, uint64_t q0, int lanes, const int64_t* k0,
                  uint16_t* codes, uint64_t count, uint32_t* headers, float* xt, int32_t* dig) {
#if HX_ISA == 512 || HX_ISA == 256
  if (tb.levels <= 32) {
    return encode_group_t<true>(tb, x, numel, q0, lanes, k0, codes, count, headers, xt, dig);
  }
#endif
  return encode_group_t<false>(tb, x, numel, q0, lanes, k0, codes, count, headers, xt, dig);
}

}  // namespace HX_NS
