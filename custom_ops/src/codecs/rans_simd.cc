// The AVX-512 and AVX2 loops of the rANS stream reader (rans_simd.h). Built for any x86-64 (function target
// attributes, no -march) and picked at run time (rans.cc); empty elsewhere.
#include "rans_simd.h"

#include <algorithm>

#include "rans.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HX_RANS_X86 1
#endif

namespace hyperonnx {
namespace rans {

#ifdef HX_RANS_X86

// GCC 12's AVX-512 headers pass an undefined vector as the unused merge operand of unmasked intrinsics, which
// -W(maybe-)uninitialized reports once they are inlined here: a false positive (clang has neither warning).
#pragma GCC diagnostic push
#ifndef __clang__
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#define HX_RANS_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,popcnt")))
#define HX_RANS_AVX2 __attribute__((target("avx2,popcnt")))

namespace {

// One AVX-512 step over the lanes in `m` (consecutive from lane, as many symbols from out): the scalar loop's
// arithmetic lane by lane. Masked-off lanes load nothing, store nothing and take no word; the words loaded are
// the next popcount(m) ones, in bounds by the caller's guarantee (read + symbols left <= words). FULL: all 16
// lanes, unmasked loads and stores.
template <bool FULL>
HX_RANS_AVX512 inline __attribute__((always_inline)) void step16(const uint32_t* slot, uint32_t* st,
                                                                  const uint8_t* w, uint64_t* rd, __mmask16 m,
                                                                  uint8_t* out) {
  const __m512i low12 = _mm512_set1_epi32(static_cast<int>(kProbScale - 1));
  const __m512i x = FULL ? _mm512_loadu_si512(st) : _mm512_maskz_loadu_epi32(m, st);
  const __m512i idx = _mm512_and_si512(x, low12);
  const __m512i e = FULL ? _mm512_i32gather_epi32(idx, slot, 4)
                         : _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, slot, 4);
  const __m512i freq = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(e, 8), low12), _mm512_set1_epi32(1));
  __m512i y = _mm512_add_epi32(_mm512_mullo_epi32(freq, _mm512_srli_epi32(x, kProbBits)), _mm512_srli_epi32(e, 20));
  const __mmask16 need = FULL ? _mm512_cmplt_epu32_mask(y, _mm512_set1_epi32(static_cast<int>(kStateLow)))
                              : _mm512_mask_cmplt_epu32_mask(m, y, _mm512_set1_epi32(static_cast<int>(kStateLow)));
  const __m256i raw = FULL ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2 * *rd))
                           : _mm256_maskz_loadu_epi16(m, w + 2 * *rd);
  // Word j of the read position goes to the j-th lane that needs one (vpexpandd), in lane order as the scalar
  // loop reads them.
  const __m512i words = _mm512_maskz_expand_epi32(need, _mm512_cvtepu16_epi32(raw));
  y = _mm512_or_si512(_mm512_mask_slli_epi32(y, need, y, 16), words);
  const __m128i symbols = _mm512_cvtepi32_epi8(e);
  if (FULL) {
    _mm512_storeu_si512(st, y);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), symbols);
  } else {
    _mm512_mask_storeu_epi32(st, m, y);
    _mm_mask_storeu_epi8(out, m, symbols);
  }
  *rd += static_cast<uint64_t>(__builtin_popcount(static_cast<unsigned>(need)));
}

// Per 8-bit need mask, the source word of each lane that needs one (its rank among them), one byte a lane: AVX2
// has no expand, so a permute by this table does it.
struct ExpandTable {
  uint64_t index[256];
};
constexpr ExpandTable make_expand_table() {
  ExpandTable t{};
  for (uint32_t k = 0; k < 256; ++k) {
    uint64_t v = 0, rank = 0;
    for (uint32_t j = 0; j < 8; ++j) {
      if (k >> j & 1u) v |= rank++ << (8 * j);
    }
    t.index[k] = v;
  }
  return t;
}
constexpr ExpandTable kExpand = make_expand_table();

}  // namespace

HX_RANS_AVX512 uint64_t decode_avx512(const uint32_t* slot, Cursor* c, uint64_t n, uint8_t* out) {
  uint32_t* const st = c->states;
  const uint8_t* const w = c->words;
  const uint32_t nl = c->lanes;
  uint32_t ln = c->lane;
  uint64_t rd = c->read;
  uint64_t i = 0;
  while (i < n) {
    const uint64_t left = n - i;
    const uint32_t row = nl - ln;  // lanes to the row's end
    if (row >= 16 && left >= 16) {
      // Whole steps until the row or the symbols run short.
      const uint64_t steps = std::min<uint64_t>(row, left) / 16;
      for (uint64_t s = 0; s < steps; ++s) {
        step16<true>(slot, st + ln, w, &rd, 0xffff, out + i);
        ln += 16;
        i += 16;
      }
      if (ln == nl) ln = 0;
      continue;
    }
    // A row's end or the call's last symbols: fewer than 16 lanes, masked.
    const uint32_t k = static_cast<uint32_t>(std::min<uint64_t>({row, left, 16}));
    step16<false>(slot, st + ln, w, &rd, static_cast<__mmask16>((1u << k) - 1), out + i);
    ln += k;
    i += k;
    if (ln == nl) ln = 0;
  }
  c->lane = ln;
  c->read = rd;
  return n;
}

HX_RANS_AVX2 uint64_t decode_avx2(const uint32_t* slot, Cursor* c, uint64_t n, uint8_t* out) {
  uint32_t* const st = c->states;
  const uint8_t* const w = c->words;
  const uint32_t nl = c->lanes;
  uint32_t ln = c->lane;
  uint64_t rd = c->read;
  uint64_t i = 0;
  const __m256i low12 = _mm256_set1_epi32(static_cast<int>(kProbScale - 1));
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i zero = _mm256_setzero_si256();
  // Byte 0 of each 32-bit lane to the low 4 bytes of its 128-bit half, then the halves' words 0 and 4 together.
  const __m256i pick = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 0, 4, 8, 12,
                                        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
  const __m256i halves = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
  while (n - i >= 8) {
    if (nl - ln < 8) {  // a row's end: one symbol at a time, the scalar loop's step
      uint32_t x = st[ln];
      const uint32_t e = slot[x & (kProbScale - 1)];
      x = ((e >> 8 & 0xfffu) + 1) * (x >> kProbBits) + (e >> 20);
      const uint32_t need = x < kStateLow;
      x = x << (need << 4) | (u16_at(w + 2 * rd) & (0u - need));
      rd += need;
      st[ln] = x;
      out[i++] = static_cast<uint8_t>(e);
      ln = ln + 1 == nl ? 0 : ln + 1;
      continue;
    }
    const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(st + ln));
    const __m256i e = _mm256_i32gather_epi32(reinterpret_cast<const int*>(slot), _mm256_and_si256(x, low12), 4);
    const __m256i freq = _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(e, 8), low12), one);
    __m256i y = _mm256_add_epi32(_mm256_mullo_epi32(freq, _mm256_srli_epi32(x, kProbBits)), _mm256_srli_epi32(e, 20));
    const __m256i need = _mm256_cmpeq_epi32(_mm256_srli_epi32(y, 16), zero);
    const uint32_t k = static_cast<uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(need)));
    const __m256i raw = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2 * rd)));
    const __m256i perm = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(kExpand.index[k])));
    const __m256i words = _mm256_and_si256(_mm256_permutevar8x32_epi32(raw, perm), need);
    y = _mm256_blendv_epi8(y, _mm256_or_si256(_mm256_slli_epi32(y, 16), words), need);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(st + ln), y);
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(e, pick), halves);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(bytes));
    rd += static_cast<uint64_t>(__builtin_popcount(k));
    i += 8;
    ln += 8;
    if (ln == nl) ln = 0;
  }
  c->lane = ln;
  c->read = rd;
  return i;
}

bool host_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("popcnt");
}

bool host_has_avx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("popcnt");
}

#pragma GCC diagnostic pop

#else

uint64_t decode_avx512(const uint32_t*, Cursor*, uint64_t, uint8_t*) { return 0; }
uint64_t decode_avx2(const uint32_t*, Cursor*, uint64_t, uint8_t*) { return 0; }
bool host_has_avx512() { return false; }
bool host_has_avx2() { return false; }

#endif

}  // namespace rans
}  // namespace hyperonnx
