// The `blockvq` codec (docs/format.md, "blockvq"; numpy: hyperonnx/codec/blockvq.py, decode_blockvq).
//
// Not a table codec: weight pair p of block q is books[c_q][digit] * scale[k_q], with the block's header (scale
// code k, codebook c) in a 10-bit header stream after the codes. Every value is one IEEE binary32 product (the
// build uses -ffp-contract=off; no FMA can be involved: there is nothing to add), then the cast to the output
// dtype (dtype.h, or the same round-to-nearest-even in SIMD).
//
// Decode paths (all bit-identical; the golden and thread tests compare them):
//   fused (x86 SSE2, blocks of a multiple of 16 weights, the default 32 included): per block one header, one
//     broadcast scale and one codebook; per 8 pairs, 8 codes unpacked in registers (compile-time shifts), each
//     pair's two levels gathered as ONE 8-byte row of a pair table (4·L² rows (levels[θ div L], levels[θ mod L])
//     built once per node) or, for wide codes, as two 4-byte loads of the levels, multiplied by the scale four
//     floats at a time, cast in registers (float16 with F16C when the CPU has it) and stored, non-temporally
//     for large outputs;
//   generic (any block size, the partial last block, NaN-bearing attributes, other CPUs): codes unpacked 512 at
//     a time, then per pair two level loads, two products and the scalar casts of dtype.h.
#include "blockvq.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#if defined(__SSE2__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "../unpack.h"
#include "block_simd.h"

namespace hyperonnx {
namespace {

constexpr int64_t kMaxBlock = 4096;
constexpr size_t kChunkCodes = 512;
// Pair tables up to this code width (4·L² rows of 8 bytes: 128 KiB at b = 6); wider codes gather the two
// levels separately from the 4·L floats of the level sets (always in L1). Chosen by measurement (docs/ops.md).
constexpr int kMaxPairTableBits = 6;

static_assert((((1u << kBlockVQHeaderBits) - 1u) >> 8) < kBlockVQBooks,
              "a 10-bit header cannot hold a codebook id >= 4: the format's check is implied by the layout");

inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

template <DType T>
struct Out;
template <>
struct Out<DType::kFloat> {
  static constexpr size_t kSize = 4;
  static void put(uint8_t* out, uint64_t e, float v) { std::memcpy(out + e * 4, &v, 4); }
};
template <>
struct Out<DType::kDouble> {
  static constexpr size_t kSize = 8;
  static void put(uint8_t* out, uint64_t e, float v) {
    const double d = static_cast<double>(v);  // exact
    std::memcpy(out + e * 8, &d, 8);
  }
};
template <>
struct Out<DType::kFloat16> {
  static constexpr size_t kSize = 2;
  static void put(uint8_t* out, uint64_t e, float v) {
    const uint16_t h = float_to_half(v);
    std::memcpy(out + e * 2, &h, 2);
  }
};
template <>
struct Out<DType::kBFloat16> {
  static constexpr size_t kSize = 2;
  static void put(uint8_t* out, uint64_t e, float v) {
    const uint16_t h = float_to_bfloat16(v);
    std::memcpy(out + e * 2, &h, 2);
  }
};

// What the fused kernels read: code and header streams, scales, and either the pair table or the level sets.
struct FusedArgs {
  const uint8_t* codes;    // the blob (codes first)
  const uint8_t* headers;  // the header stream
  const float* scales;     // 256
  const uint8_t* rows;     // pair table: 4·L² rows of 8 bytes (null: gather levels from `books`)
  const float* books;      // 4·L
  uint32_t groups;         // 8-pair groups per block (block / 16)
};

using FusedFn = void (*)(const FusedArgs&, uint64_t q0, uint64_t q1, uint8_t* out);

#if defined(__SSE2__)
using block_simd::store_group;
using block_simd::store_group_f16c;

// The 8 pairs of one group, as four vectors of two pairs each: levels times the block scale.
template <int BITS, bool PAIRS>
inline void group_products(const uint8_t* src, const uint8_t* rows, const float* book, __m128 s, __m128 v[4]) {
  constexpr int kB = BITS / 2;
  constexpr uint32_t kMask = (1u << kB) - 1u;
  uint32_t c[8];
#pragma GCC unroll 8
  for (int t = 0; t < 8; ++t) c[t] = block_code<BITS>(src, t);
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    __m128 levels;
    if constexpr (PAIRS) {
      const __m128d lo = _mm_load_sd(reinterpret_cast<const double*>(rows + size_t{c[2 * i]} * 8));
      levels = _mm_castpd_ps(_mm_loadh_pd(lo, reinterpret_cast<const double*>(rows + size_t{c[2 * i + 1]} * 8)));
    } else {
      const __m128 a = _mm_unpacklo_ps(_mm_load_ss(book + (c[2 * i] >> kB)), _mm_load_ss(book + (c[2 * i] & kMask)));
      const __m128 b =
          _mm_unpacklo_ps(_mm_load_ss(book + (c[2 * i + 1] >> kB)), _mm_load_ss(book + (c[2 * i + 1] & kMask)));
      levels = _mm_movelh_ps(a, b);
    }
    v[i] = _mm_mul_ps(levels, s);  // level * scale: one rounding each, as numpy's float32 multiply
  }
}

// Blocks [q0, q1), all whole and all of whose codes can be read with 8-byte loads; out: block q0's output.
template <int BITS, DType T, bool STREAM, bool PAIRS>
void fused_blocks(const FusedArgs& a, uint64_t q0, uint64_t q1, uint8_t* out) {
  constexpr size_t kGroupOut = 16 * Out<T>::kSize;
  constexpr uint64_t kBookRows = uint64_t{1} << BITS;  // L²
  const uint8_t* src = a.codes + q0 * a.groups * BITS;
  for (uint64_t q = q0; q < q1; ++q) {
    const uint32_t h = block_header(a.headers, q);
    const __m128 s = _mm_set1_ps(a.scales[h & 255u]);
    const uint8_t* rows = PAIRS ? a.rows + (h >> 8) * kBookRows * 8 : nullptr;
    const float* book = a.books + (h >> 8) * (uint32_t{1} << (BITS / 2));
    for (uint32_t g = 0; g < a.groups; ++g, src += BITS, out += kGroupOut) {
      __m128 v[4];
      group_products<BITS, PAIRS>(src, rows, book, s, v);
      store_group<T, STREAM>(out, v);
    }
  }
  if constexpr (STREAM) _mm_sfence();
}

// float16 output through F16C (vcvtps2ph, round to nearest even: the same bits as float_to_half on every
// NaN-free value). Its own function: only it is compiled for F16C, and it runs only where the CPU has it.
template <int BITS, bool STREAM, bool PAIRS>
__attribute__((target("f16c"))) void fused_blocks_f16c(const FusedArgs& a, uint64_t q0, uint64_t q1, uint8_t* out) {
  constexpr uint64_t kBookRows = uint64_t{1} << BITS;
  const uint8_t* src = a.codes + q0 * a.groups * BITS;
  for (uint64_t q = q0; q < q1; ++q) {
    const uint32_t h = block_header(a.headers, q);
    const __m128 s = _mm_set1_ps(a.scales[h & 255u]);
    const uint8_t* rows = PAIRS ? a.rows + (h >> 8) * kBookRows * 8 : nullptr;
    const float* book = a.books + (h >> 8) * (uint32_t{1} << (BITS / 2));
    for (uint32_t g = 0; g < a.groups; ++g, src += BITS, out += 32) {
      __m128 v[4];
      group_products<BITS, PAIRS>(src, rows, book, s, v);
      store_group_f16c<STREAM>(out, v);
    }
  }
  if constexpr (STREAM) _mm_sfence();
}

// F16C present and its VEX encoding enabled by the OS (XMM and YMM state saved): cpuid + xgetbv, which GCC and
// clang both accept (clang's __builtin_cpu_supports does not know "f16c").
bool cpu_has_f16c() {
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    const bool osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
    if (!(osxsave && avx && f16c)) return false;
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 6u) == 6u;
  }();
  return has;
}

template <DType T, bool STREAM, bool PAIRS>
FusedFn fused_for(int b) {
  auto pick = [](auto bits) -> FusedFn {
    constexpr int kBits = decltype(bits)::value;
    if constexpr (T == DType::kFloat16) {
      return &fused_blocks_f16c<kBits, STREAM, PAIRS>;
    } else {
      return &fused_blocks<kBits, T, STREAM, PAIRS>;
    }
  };
  switch (b) {
    case 1: return pick(std::integral_constant<int, 2>{});
    case 2: return pick(std::integral_constant<int, 4>{});
    case 3: return pick(std::integral_constant<int, 6>{});
    case 4: return pick(std::integral_constant<int, 8>{});
    case 5: return pick(std::integral_constant<int, 10>{});
    case 6: return pick(std::integral_constant<int, 12>{});
    case 7: return pick(std::integral_constant<int, 14>{});
    case 8: return pick(std::integral_constant<int, 16>{});
    default: return nullptr;
  }
}

template <bool STREAM, bool PAIRS>
FusedFn fused_kernel(DType t, int b) {
  switch (t) {
    case DType::kFloat: return fused_for<DType::kFloat, STREAM, PAIRS>(b);
    case DType::kDouble: return fused_for<DType::kDouble, STREAM, PAIRS>(b);
    case DType::kBFloat16: return fused_for<DType::kBFloat16, STREAM, PAIRS>(b);
    case DType::kFloat16: return cpu_has_f16c() ? fused_for<DType::kFloat16, STREAM, PAIRS>(b) : nullptr;
  }
  return nullptr;
}
#endif  // __SSE2__

class BlockVQDecoder final : public BlockDecoder {
 public:
  explicit BlockVQDecoder(BlockVQParams p) : p_(std::move(p)) {
    const uint64_t pairs_per_block = p_.block / 2;
    const uint32_t L = p_.levels;
    // Fused path: whole 8-pair groups per block, values that cast in SIMD exactly (no NaN: the SIMD float16 and
    // bfloat16 casts do not reproduce NaN payloads; float32 and double need no such care but share the rule).
    bool nan_free = true;
    for (float v : p_.books) nan_free &= !std::isnan(v) && !std::isinf(v);
    for (float v : p_.scales) nan_free &= !std::isnan(v) && !std::isinf(v);
    const bool pairs_table = p_.level_bits <= kMaxPairTableBits;
#if defined(__SSE2__)
    if (pairs_per_block % 8 == 0 && nan_free) {
      fused_ = pairs_table ? fused_kernel<false, true>(p_.dtype, p_.level_bits)
                           : fused_kernel<false, false>(p_.dtype, p_.level_bits);
      fused_stream_ = pairs_table ? fused_kernel<true, true>(p_.dtype, p_.level_bits)
                                  : fused_kernel<true, false>(p_.dtype, p_.level_bits);
    }
#endif
    if (fused_ && pairs_table) {
      const uint64_t rows = uint64_t{kBlockVQBooks} * L * L;
      pairs_.resize(static_cast<size_t>(rows * 2));
      for (uint64_t r = 0; r < rows; ++r) {
        const uint64_t book = r / (uint64_t{L} * L), theta = r % (uint64_t{L} * L);
        pairs_[2 * r] = p_.books[book * L + theta / L];
        pairs_[2 * r + 1] = p_.books[book * L + theta % L];
      }
    }
    groups_ = static_cast<uint32_t>(pairs_per_block / 8);
    // Whole blocks whose codes all lie in 8-byte-readable 8-code groups of the blob (which ends with the
    // headers, so only the last few groups of a tiny tensor can fall short).
    const uint64_t full_blocks = p_.numel / p_.block;
    const uint64_t safe_groups = fast_blocks(static_cast<size_t>(blob_bytes()), 2 * p_.level_bits, 0,
                                             static_cast<size_t>(p_.count));
    fast_end_ = groups_ ? std::min<uint64_t>(full_blocks, safe_groups / groups_) : 0;
  }

  uint64_t blob_bytes() const override { return p_.code_bytes + p_.header_bytes; }
  std::string blob_layout() const override {
    return std::to_string(p_.count) + " codes of " + std::to_string(2 * p_.level_bits) + " bits + " +
           std::to_string(p_.nblocks) + " block headers of 10 bits";
  }
  uint64_t units() const override { return p_.nblocks; }
  // Nothing beyond the length can be wrong: every 2b-bit code is a valid pair θ < L², and every 10-bit header a
  // valid (scale code < 256, codebook < 4) (see the static_assert above).
  bool validate(const uint8_t*, size_t, std::string*) const override { return true; }

  bool decode(const uint8_t* blob, size_t, uint64_t u0, uint64_t u1, void* out, bool stream,
              std::string*) const override {
    auto* dst = static_cast<uint8_t*>(out);
    const uint64_t fast_stop = std::min(u1, fast_end_);
    if (fused_ && u0 < fast_stop) {
      FusedArgs a{blob, blob + p_.code_bytes, p_.scales.data(), pairs_.empty() ? nullptr : reinterpret_cast<const uint8_t*>(pairs_.data()),
                  p_.books.data(), groups_};
      (stream ? fused_stream_ : fused_)(a, u0, fast_stop, dst + u0 * p_.block * dtype_size(p_.dtype));
      u0 = fast_stop;
    }
    if (u0 < u1) {
      switch (p_.dtype) {
        case DType::kFloat: generic<DType::kFloat>(blob, u0, u1, dst); break;
        case DType::kDouble: generic<DType::kDouble>(blob, u0, u1, dst); break;
        case DType::kFloat16: generic<DType::kFloat16>(blob, u0, u1, dst); break;
        case DType::kBFloat16: generic<DType::kBFloat16>(blob, u0, u1, dst); break;
      }
    }
    return true;
  }

  const BlockVQParams& params() const { return p_; }

 private:
  // Any block size, the partial last block and pair; one element at a time through dtype.h's casts.
  template <DType T>
  void generic(const uint8_t* blob, uint64_t q0, uint64_t q1, uint8_t* out) const {
    const uint64_t pb = p_.block / 2;
    const uint64_t p0 = q0 * pb, p1 = std::min(q1 * pb, p_.count);
    if (p0 >= p1) return;
    const int b = p_.level_bits, bits = 2 * b;
    const uint32_t mask = p_.levels - 1u;
    const uint8_t* headers = blob + p_.code_bytes;
    const size_t len = static_cast<size_t>(blob_bytes());
    uint64_t q = q0, left = pb;
    uint32_t h = block_header(headers, q);
    float s = p_.scales[h & 255u];
    const float* book = p_.books.data() + (h >> 8) * p_.levels;
    uint32_t codes[kChunkCodes];
    for (uint64_t c = p0 & ~uint64_t{7}; c < p1; c += kChunkCodes) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkCodes, p1 - c));
      unpack_codes(blob, len, bits, c, n, codes);
      for (size_t i = c < p0 ? static_cast<size_t>(p0 - c) : 0; i < n; ++i) {
        if (left == 0) {
          h = block_header(headers, ++q);
          s = p_.scales[h & 255u];
          book = p_.books.data() + (h >> 8) * p_.levels;
          left = pb;
        }
        --left;
        const uint32_t theta = codes[i];
        const float v0 = book[theta >> b] * s;  // one rounding each
        const float v1 = book[theta & mask] * s;
        const uint64_t e = 2 * (c + i);
        Out<T>::put(out, e, v0);
        if (e + 1 < p_.numel) Out<T>::put(out, e + 1, v1);  // the last pair of an odd-sized tensor has one
      }
    }
  }

  BlockVQParams p_;
  std::vector<float> pairs_;  // pair table (fused path, b <= kMaxPairTableBits): 4·L² rows of 2 floats
  FusedFn fused_ = nullptr, fused_stream_ = nullptr;
  uint32_t groups_ = 0;
  uint64_t fast_end_ = 0;  // blocks [0, fast_end_) may take the fused path
};

std::unique_ptr<BlockDecoder> create(const SideInfo& side, const NodeLayout& layout, std::string* error) {
  BlockVQParams p;
  if (!parse_block_params({"blockvq", 2, 1, kBlockVQBooks}, side, layout, &p, error)) return nullptr;
  return std::make_unique<BlockVQDecoder>(std::move(p));
}

}  // namespace

bool parse_block_params(const BlockFraming& f, const SideInfo& side, const NodeLayout& layout, BlockVQParams* p,
                        std::string* error) {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) *error = std::string(f.codec) + " codec: " + what;
    return ok;
  };
  const auto& block_v = side.ints.at("block");
  const auto& levels_v = side.ints.at("levels");
  const auto& smax_v = side.floats.at("smax");
  const auto& books = side.floats.at("books");
  if (!need(block_v.size() == 1, "i_block must hold one integer") ||
      !need(levels_v.size() == 1, "i_levels must hold one integer") ||
      !need(smax_v.size() == 1, "f_smax must hold one float")) {
    return false;
  }
  const int64_t block = block_v[0], levels = levels_v[0];
  int b = 0;
  while (b < 9 && (int64_t{1} << b) < levels) ++b;
  // Messages name the rule of this codec's framing: pairs (blockvq) or one code per weight (blocktcq).
  const bool pairs = f.group == 2;
  const std::string bits_rule = pairs ? "bits must be 2*log2(i_levels) = " : "bits must be log2(i_levels) = ";
  const std::string group_rule = pairs ? "group must be 2 (weights are coded in pairs), got "
                                       : "group must be 1 (one code per weight), got ";
  const std::string block_rule =
      pairs ? "i_block must be even and in 2..4096, got " : "i_block must be in 2..4096, got ";
  const int64_t book_values = int64_t{f.stored} * f.fine * levels;
  if (!need(levels >= 2 && levels <= 256 && (int64_t{1} << b) == levels,
            "i_levels must be a power of two in 2..256, got " + std::to_string(levels)) ||
      !need(layout.bits == f.group * b,
            bits_rule + std::to_string(f.group * b) + ", got " + std::to_string(layout.bits)) ||
      !need(layout.group == f.group, group_rule + std::to_string(layout.group)) ||
      !need(block >= 2 && block <= kMaxBlock && block % f.group == 0, block_rule + std::to_string(block)) ||
      !need(books.size() == static_cast<size_t>(book_values),
            "f_books must hold " + std::to_string(f.stored * f.fine) + "*i_levels = " +
                std::to_string(book_values) + " floats, got " + std::to_string(books.size()))) {
    return false;
  }
  p->level_bits = b;
  p->levels = static_cast<uint32_t>(levels);
  p->block = static_cast<uint32_t>(block);
  p->numel = layout.numel;
  p->count = layout.count;
  p->nblocks = (layout.numel + static_cast<uint64_t>(block) - 1) / static_cast<uint64_t>(block);
  p->code_bytes = (p->count * static_cast<uint64_t>(f.group * b) + 7) / 8;
  p->header_bytes = (p->nblocks * kBlockVQHeaderBits + 7) / 8;
  p->dtype = layout.dtype;
  const float smax = smax_v[0];
  for (int k = 0; k < 256; ++k) {
    const float base = smax * from_bits(kLogStepBits[k & 15]);        // rounded product
    p->scales[static_cast<size_t>(k)] = std::ldexp(base, -(k >> 4));  // correctly rounded (subnormal results too)
  }
  p->books = books;
  return true;
}

#if defined(__SSE2__)
__attribute__((target("avx,f16c"))) void to_half_f16c(const float* in, size_t n, uint8_t* out) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2 * i), h);
  }
  for (; i < n; ++i) {
    const uint16_t h = float_to_half(in[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}
#else
void to_half_f16c(const float* in, size_t n, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = float_to_half(in[i]);
    std::memcpy(out + 2 * i, &h, 2);
  }
}
#endif

bool host_has_f16c() {
#if defined(__SSE2__)
  return cpu_has_f16c();
#else
  return false;
#endif
}

const BlockVQParams* blockvq_params(const BlockDecoder* d) {
  const auto* v = dynamic_cast<const BlockVQDecoder*>(d);
  return v ? &v->params() : nullptr;
}

const CodecSpec kBlockVQCodec = {"blockvq", {"block", "levels"}, {"smax", "books"}, nullptr, &create};

}  // namespace hyperonnx
