// How 32 weights are decoded without a sequential walk (docs/format.md, "blocktcq", the parity's closed form):
//   θ: four 8-byte loads, each spread to eight bytes by one pdep (BITS-bit fields into byte lanes);
//   parity: the 32 low bits X of θ (one movemask); u = X / (1 + z² + z³) over GF(2)[z] mod z³², which is four
//     steps U ^= U·(z^a + z^b) (the product (1 + x)(1 + x²)(1 + x⁴)(1 + x⁸), x = z² + z³); the state's parity at
//     weight t is u_(t−1), and a block longer than 32 carries u's last three bits into the next 32;
//   f = 2θ + parity per byte; the level's four bytes come from byte-plane tables (pshufb on 16 levels at a time,
//     blended by f's higher bits), are interleaved back into floats and multiplied by the block scale (one
//     rounding, as the format says). An 8-lane gather does the same lookup in one instruction but measured 1.7×
//     slower than the codec's own scalar-load decoder on the AMD EPYC (Zen 4) we develop on
//     (build/.../hyperonnx_fused_bench), and is slow on Intel parts with the gather microcode fix.
#include "tcq_rows.h"

#include <cmath>
#include <cstring>

#include "tcq_neon.h"
#include "tcq_vbmi.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define HX_TCQ_X86 1
#endif

namespace hyperonnx {
namespace {

// The recurrence the format states, one weight at a time, for the check below.
constexpr uint32_t parity_walk(uint32_t x) {
  uint32_t u = 0;
  for (int t = 0; t < 32; ++t) {
    const uint32_t u2 = t >= 2 ? (u >> (t - 2)) & 1u : 0u, u3 = t >= 3 ? (u >> (t - 3)) & 1u : 0u;
    u |= (((x >> t) & 1u) ^ u2 ^ u3) << t;
  }
  return u;
}
// Both maps are linear over GF(2), so equality on the 32 unit vectors proves it for every x.
constexpr bool prefix_matches_walk() {
  for (int t = 0; t < 32; ++t) {
    if (tcq_parity_prefix(1u << t) != parity_walk(1u << t)) return false;
  }
  return true;
}
static_assert(prefix_matches_walk(), "the prefix form must equal the parity recurrence");

#ifdef HX_TCQ_X86
// Byte plane lookup: byte t of the result is byte f_t of the plane's 16·CHUNKS-entry table (tab: CHUNKS 32-byte
// vectors), for f_t < 16·CHUNKS. `low` holds f's low 4 bits (pshufb's index); f's bits 4..7 pick the chunk (blendv
// reads bit 7 of each byte: `sel[i]` holds bit 4 + i of f there).
template <int CHUNKS>
__attribute__((target("avx2"))) inline __m256i plane_lookup(const uint8_t* tab, __m256i low, const __m256i sel[4]) {
  __m256i r[CHUNKS];
  for (int j = 0; j < CHUNKS; ++j) {
    r[j] = _mm256_shuffle_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(tab + 32 * j)), low);
  }
  int n = CHUNKS;
  for (int level = 0; n > 1; ++level, n /= 2) {
    for (int j = 0; j < n / 2; ++j) r[j] = _mm256_blendv_epi8(r[2 * j], r[2 * j + 1], sel[level]);
  }
  return r[0];
}

// 32 weights of one block at out: codes at src (4·BITS bytes; 8 more readable), u's carry from the block's earlier
// weights (bits 0-2: u_(−3), u_(−2), u_(−1)); returns the carry for the next 32.
template <int BITS>
__attribute__((target("avx2,bmi2"))) inline uint32_t tcq32(const uint8_t* src, const uint8_t* tab, __m256 scale,
                                                           uint32_t carry, float* out) {
  constexpr int kChunks = BITS <= 3 ? 1 : 1 << (BITS - 3);
  constexpr uint64_t kMask = 0x0101010101010101ull * ((1u << BITS) - 1u);
  uint64_t w[4];
  for (int i = 0; i < 4; ++i) {
    uint64_t v;
    std::memcpy(&v, src + i * BITS, 8);
    w[i] = _pdep_u64(v, kMask);
  }
  const __m256i theta = _mm256_set_epi64x(static_cast<int64_t>(w[3]), static_cast<int64_t>(w[2]),
                                          static_cast<int64_t>(w[1]), static_cast<int64_t>(w[0]));
  const uint32_t x = static_cast<uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(theta, 7)));
  const uint32_t c0 = carry & 1u, c1 = (carry >> 1) & 1u, c2 = carry >> 2;
  const uint32_t u = tcq_parity_prefix(x ^ (c0 ^ c1) ^ ((c1 ^ c2) << 1) ^ (c2 << 2));
  const uint32_t parity = (u << 1) | c2;
  // Byte t of the parity mask: bit t of `parity`, as 0 or 0xff.
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int32_t>(parity)),
      _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ull));
  const __m256i odd = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  const __m256i f = _mm256_sub_epi8(_mm256_add_epi8(theta, theta), odd);  // 2θ + parity < 2^(BITS+1) ≤ 256
  // Bits 4, 5, 6 of each byte of f moved to bit 7 (16-bit shifts: a byte's bit 7 only receives its own bits).
  const __m256i sel[4] = {_mm256_slli_epi16(f, 3), _mm256_slli_epi16(f, 2), _mm256_slli_epi16(f, 1), f};
  const __m256i low = _mm256_and_si256(f, _mm256_set1_epi8(15));  // pshufb would zero the byte where bit 7 is set
  __m256i b[4];
  for (int p = 0; p < 4; ++p) b[p] = plane_lookup<kChunks>(tab + p * kChunks * 32, low, sel);
  // Bytes to floats: per 128-bit lane, v0 holds weights 0-3 (lane 1: 16-19), v1 4-7, v2 8-11, v3 12-15.
  const __m256i lo01 = _mm256_unpacklo_epi8(b[0], b[1]), hi01 = _mm256_unpackhi_epi8(b[0], b[1]);
  const __m256i lo23 = _mm256_unpacklo_epi8(b[2], b[3]), hi23 = _mm256_unpackhi_epi8(b[2], b[3]);
  const __m256 v0 = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(lo01, lo23)), scale);
  const __m256 v1 = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(lo01, lo23)), scale);
  const __m256 v2 = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpacklo_epi16(hi01, hi23)), scale);
  const __m256 v3 = _mm256_mul_ps(_mm256_castsi256_ps(_mm256_unpackhi_epi16(hi01, hi23)), scale);
  _mm256_storeu_ps(out, _mm256_permute2f128_ps(v0, v1, 0x20));
  _mm256_storeu_ps(out + 8, _mm256_permute2f128_ps(v2, v3, 0x20));
  _mm256_storeu_ps(out + 16, _mm256_permute2f128_ps(v0, v1, 0x31));
  _mm256_storeu_ps(out + 24, _mm256_permute2f128_ps(v2, v3, 0x31));
  return u >> 29;
}

template <int BITS>
__attribute__((target("avx2,bmi2"))) void tcq_run_avx2(const TcqRows& rows, const uint8_t* blob, size_t len,
                                                       uint64_t q0, uint64_t q1, float* out) {
  const BlockVQParams& p = rows.params();
  const uint8_t* headers = blob + p.code_bytes;
  const size_t set_bytes = static_cast<size_t>(4 * rows.chunks() * 32);
  const uint64_t chunks = p.block / 32;
  for (uint64_t q = q0; q < q1; ++q) {
    const uint32_t h = block_header(headers, q);
    const __m256 scale = _mm256_set1_ps(p.scales[h & 255u]);
    const uint8_t* tab = rows.planes() + (h >> 8) * set_bytes;
    uint32_t carry = 0;
    for (uint64_t j = 0; j < chunks; ++j, out += 32) {
      const uint64_t at = (q * chunks + j) * 4 * BITS;  // 32 codes = 4·BITS bytes
      if (at + 3 * BITS + 8 <= len) {
        carry = tcq32<BITS>(blob + at, tab, scale, carry, out);
      } else {  // the blob's last bytes: copy, so the 8-byte loads stay inside it
        uint8_t tail[4 * BITS + 8] = {};
        std::memcpy(tail, blob + at, 4 * BITS);
        carry = tcq32<BITS>(tail, tab, scale, carry, out);
      }
    }
  }
}

bool host_has_avx2_bmi2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2");
}
#endif

}  // namespace

TcqRows::TcqRows(const BlockVQParams& p, const TcqKernels& k) : p_(p), run_(k.run) {
  for (int m = 1; m <= kTcqGemvMaxM; ++m) {
    gemv_[m] = k.gemv[m];
    dot_[m] = k.dot[m];
  }
  const uint32_t fine = 2 * p.levels;
  chunks_ = fine <= 16 ? 1 : static_cast<int>(fine / 16);
  planes_.assign(static_cast<size_t>(kBlockVQBooks * 4 * chunks_ * 32), 0);
  for (uint32_t c = 0; c < kBlockVQBooks; ++c) {
    for (uint32_t f = 0; f < fine; ++f) {
      uint32_t bits;
      std::memcpy(&bits, &p.books[c * fine + f], 4);
      for (int b = 0; b < 4; ++b) {
        uint8_t* chunk = &planes_[((c * 4 + b) * chunks_ + f / 16) * 32];
        chunk[f % 16] = chunk[16 + f % 16] = static_cast<uint8_t>(bits >> (8 * b));
      }
    }
  }
  // The VBMI and NEON kernels' tables (tcq_vbmi.cc, tcq_neon.cc): per level set, planes 0-3 of 64 (2L ≤ 64), 128 or
  // 256 entries, in order.
  const uint32_t width = fine <= 64 ? 64 : fine == 128 || fine == 256 ? fine : 0;
  std::vector<uint8_t>& wide = width == 64 ? planes64_ : width == 128 ? planes128_ : planes256_;
  if (width != 0) {
    wide.assign(kBlockVQBooks * 4 * width, 0);
    for (uint32_t c = 0; c < kBlockVQBooks; ++c) {
      for (uint32_t f = 0; f < fine; ++f) {
        uint32_t bits;
        std::memcpy(&bits, &p.books[c * fine + f], 4);
        for (uint32_t b = 0; b < 4; ++b) wide[(c * 4 + b) * width + f] = static_cast<uint8_t>(bits >> (8 * b));
      }
    }
  }
}

std::unique_ptr<TcqRows> TcqRows::create(const BlockVQParams& p, bool allow_vbmi) {
  if (!tcq_rows_available() || p.dtype != DType::kFloat || p.block % 32 != 0) return nullptr;
  // The codec's own fused path also keeps to finite level sets and scales (an encoder writes no others): a NaN's
  // product could depend on the instruction that makes it.
  for (float v : p.books) {
    if (!std::isfinite(v)) return nullptr;
  }
  for (float v : p.scales) {
    if (!std::isfinite(v)) return nullptr;
  }
#ifdef HX_TCQ_X86
  const bool vbmi = allow_vbmi && p.level_bits <= 6 && tcq_vbmi_available();
  TcqKernels k = vbmi ? tcq_vbmi_kernels(p.level_bits) : TcqKernels{};
  if (k.run == nullptr) {
    k.run = for_bits<1, 7>(p.level_bits, [](auto b) -> RunFn { return &tcq_run_avx2<decltype(b)::value>; });
  }
  const char* name = vbmi ? "avx512vbmi" : "avx2";
#else
  (void)allow_vbmi;
  const TcqKernels k = tcq_neon_kernels(p.level_bits);  // null off aarch64
  const char* name = "neon";
#endif
  if (k.run == nullptr) return nullptr;
  std::unique_ptr<TcqRows> rows(new TcqRows(p, k));
  rows->name_ = name;
  return rows;
}

bool tcq_rows_available() {
#ifdef HX_TCQ_X86
  static const bool has = host_has_avx2_bmi2();
  return has;
#else
  return tcq_neon_available();
#endif
}

}  // namespace hyperonnx
