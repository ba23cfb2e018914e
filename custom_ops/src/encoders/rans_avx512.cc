// The rANS walk 16 lanes at a time (AVX-512 F, BW, VL, VBMI2), byte-identical to the portable walk (rans.cc): the
// 16 lanes of one step that a vector holds are independent (each has its own state), and the words they shed go
// out in lane order just below the write pointer, which is where the portable walk, taking them from the last lane
// to the first and writing downwards, leaves them. Per vector: the 16 symbols widened, their (freq | cum << 16) and
// reciprocal looked up in the phase's tables, the renormalization mask, the shed words compressed and stored below
// the pointer, the exact division by 64-bit products on even and odd lanes, the state update.
#include "rans_walk.h"

#ifdef HX_RANS_AVX512

#include <immintrin.h>

#include <cstdlib>
#include <vector>

#include "encoders.h"

namespace hyperonnx {
namespace encoders {
namespace rans {

// GCC 12's AVX-512 headers pass an undefined vector as the unused merge operand of unmasked intrinsics, which
// -W(maybe-)uninitialized reports once they are inlined here: a false positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#define HX_RANS_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt")))

bool vector_walk_available() {
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512vbmi2")) {
    return false;
  }
  if (const char* cap = std::getenv("HYPERONNX_ENCODERS_ISA")) {
    const long bits = std::strtol(cap, nullptr, 10);
    if (bits >= 128 && bits < 512) return false;
  }
  return true;
}

namespace {

// The division: q0 = (x · r) >> 32 with r = min(floor(2^32 / f), 2^32 − 1) is q or q − 1 for q = floor(x / f)
// and any 32-bit x (x·r / 2^32 lies in (x/f − 1, x/f]: r > 2^32/f − 1 and x < 2^32), so one step
// (r = x − q0·f >= f) makes it exact: the portable walk's quotient, with one 32-bit table instead of two. Two
// lookups a vector instead of three let the register tables reach 128 symbols (tcq's and ecsq's level alphabets of
// heavy-tailed tensors span 70-90 symbols; Gaussian ones about 40).
inline uint32_t reciprocal32(uint32_t f) {
  return f <= 1 ? 0xFFFFFFFFu : static_cast<uint32_t>((uint64_t{1} << 32) / f);
}

// A phase's tables per symbol: (freq | cum << 16), 0 without frequency, and the reciprocal of its frequency.
// Those of a phase whose symbols with frequency all lie within 64 or 128 values are held in registers and looked
// up by permutes; wider ones are gathered. Gathers were about half the walk's time (perf: the gathered
// (freq, cum) held up everything after it).
struct PhaseTables {
  int window = 0;      // 64 or 128: the symbols lie in [window_lo, window_lo + window); 0: gathered
  int window_lo = 0;
  uint32_t fc[256], rcp[256];
};

struct Looked {
  __m512i fc, rcp;
};

// Gathers from the 256-entry tables.
struct Gathered {
  const PhaseTables* t;
  HX_RANS_TARGET inline Looked operator()(__m512i s) const {
    return {_mm512_i32gather_epi32(s, t->fc, 4), _mm512_i32gather_epi32(s, t->rcp, 4)};
  }
};

// Permutes of the window's entries (kWindow / 16 registers a table): two-table permutes of 32 entries, the higher
// index bits choosing among them; a symbol outside the window has no frequency.
template <int kWindow>
struct Windowed {
  static constexpr int kRegs = kWindow / 16;
  __m512i base, fc[kRegs], rcp[kRegs];
  HX_RANS_TARGET explicit Windowed(const PhaseTables& t) {
    base = _mm512_set1_epi32(t.window_lo);
    for (int k = 0; k < kRegs; ++k) {
      fc[k] = _mm512_loadu_si512(t.fc + t.window_lo + 16 * k);
      rcp[k] = _mm512_loadu_si512(t.rcp + t.window_lo + 16 * k);
    }
  }
  HX_RANS_TARGET static inline __m512i look(const __m512i* v, __m512i i, __mmask16 bit5, __mmask16 bit6) {
    const __m512i low = _mm512_mask_blend_epi32(bit5, _mm512_permutex2var_epi32(v[0], i, v[1]),
                                                _mm512_permutex2var_epi32(v[2], i, v[3]));
    if (kWindow == 64) return low;
    const __m512i high = _mm512_mask_blend_epi32(bit5, _mm512_permutex2var_epi32(v[4], i, v[5]),
                                                 _mm512_permutex2var_epi32(v[6], i, v[7]));
    return _mm512_mask_blend_epi32(bit6, low, high);
  }
  HX_RANS_TARGET inline Looked operator()(__m512i s) const {
    const __m512i i = _mm512_sub_epi32(s, base);
    const __mmask16 inside = _mm512_cmplt_epu32_mask(i, _mm512_set1_epi32(kWindow));
    const __mmask16 bit5 = _mm512_test_epi32_mask(i, _mm512_set1_epi32(32));
    const __mmask16 bit6 = _mm512_test_epi32_mask(i, _mm512_set1_epi32(64));
    return {_mm512_maskz_mov_epi32(inside, look(fc, i, bit5, bit6)), look(rcp, i, bit5, bit6)};
  }
};

// Lanes [b, b + 16) of one step, whose symbols sym[0..15] are all in one phase (lookup: its tables). Returns
// false for a symbol without frequency (nothing that counts is written then).
template <class Lookup>
HX_RANS_TARGET inline bool put_vector(const uint8_t* sym, const Lookup& lookup, uint32_t* state, uint8_t*& w) {
  const __m512i s = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(sym)));
  const Looked e = lookup(s);
  if (_mm512_testn_epi32_mask(e.fc, e.fc) != 0) return false;
  const __m512i f = _mm512_and_si512(e.fc, _mm512_set1_epi32(0xFFFF));
  const __m512i c = _mm512_srli_epi32(e.fc, 16);
  __m512i x = _mm512_loadu_si512(state);
  // x >= f · 2^20, as x >> 20 >= f: f · 2^20 reaches 2^32 for f = 4096 (a one-symbol alphabet, never a word).
  const __mmask16 shed = _mm512_cmpge_epu32_mask(_mm512_srli_epi32(x, 32 - kProbBits), f);
  const int k = __builtin_popcount(shed);
  const __m256i words = _mm256_maskz_compress_epi16(shed, _mm512_cvtepi32_epi16(x));
  w -= 2 * k;
  _mm256_mask_storeu_epi16(w, static_cast<__mmask16>((1u << k) - 1), words);
  x = _mm512_mask_srli_epi32(x, shed, x, 16);
  // q0 = (x · r) >> 32: the high words of even lanes' 64-bit products, and of odd lanes' (already in place).
  const __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(x, e.rcp), 32);
  const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(e.rcp, 32));
  __m512i q = _mm512_mask_blend_epi32(0xAAAA, even, odd);
  __m512i r = _mm512_sub_epi32(x, _mm512_mullo_epi32(q, f));
  const __mmask16 short_by_one = _mm512_cmpge_epu32_mask(r, f);
  q = _mm512_mask_add_epi32(q, short_by_one, q, _mm512_set1_epi32(1));
  r = _mm512_mask_sub_epi32(r, short_by_one, r, f);
  x = _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(q, kProbBits), r), c);
  _mm512_storeu_si512(state, x);
  return true;
}

// The vectors [lo, hi) of one step (lo, hi multiples of 16), from the last, in one phase: lane b's symbol is
// sym[b + offset] (offset = the step's first position − the phase's, mod 2^64: negative where the phase starts
// within the step, past lo).
template <class Lookup>
HX_RANS_TARGET bool put_vectors(const uint8_t* sym, uint64_t offset, const Lookup& lookup, uint64_t lo,
                                uint64_t hi, uint32_t* state, uint8_t*& w) {
  for (uint64_t b = hi; b > lo;) {
    b -= 16;
    if (!put_vector(sym + (b + offset), lookup, state + b, w)) return false;
  }
  return true;
}

HX_RANS_TARGET bool put_vectors(const uint8_t* sym, uint64_t offset, const PhaseTables& t, uint64_t lo,
                                uint64_t hi, uint32_t* state, uint8_t*& w) {
  if (t.window == 64) return put_vectors(sym, offset, Windowed<64>(t), lo, hi, state, w);
  if (t.window == 128) return put_vectors(sym, offset, Windowed<128>(t), lo, hi, state, w);
  return put_vectors(sym, offset, Gathered{&t}, lo, hi, state, w);
}

}  // namespace

HX_RANS_TARGET int walk_avx512(const Phases& phases, uint64_t total, uint64_t lanes, uint32_t* state,
                               uint8_t** w_io) {
  const uint64_t* rcp = reciprocals();
  std::vector<PhaseTables> tables(phases.count);
  for (int p = 0; p < phases.count; ++p) {
    PhaseTables& t = tables[p];
    int first = -1, last = -1;
    for (int s = 0; s < 256; ++s) {
      t.fc[s] = phases.table[256 * static_cast<size_t>(p) + s];
      t.rcp[s] = reciprocal32(t.fc[s] & 0xFFFF);
      if (t.fc[s] != 0) {
        if (first < 0) first = s;
        last = s;
      }
    }
    // The window starts at the first symbol with frequency, or earlier so that its entries stay in the table.
    for (int window : {64, 128}) {
      if (first >= 0 && last - first < window) {
        t.window = window;
        t.window_lo = std::min(first, 256 - window);
        break;
      }
    }
  }
  const uint64_t* start = phases.start;
  uint8_t* w = *w_io;
  int p = phases.count - 1;  // positions decrease: the phase moves back, one boundary at a time
  auto put_one = [&](uint64_t pos, uint64_t lane) {
    while (pos < start[p]) --p;
    const uint32_t fc = tables[p].fc[phases.symbols[p][pos - start[p]]];
    if (fc == 0) return false;
    put_symbol(&state[lane], fc & 0xFFFF, fc >> 16, rcp, w);
    return true;
  };
  const uint64_t steps = (total + lanes - 1) / lanes;
  for (uint64_t t = steps; t-- > 0;) {
    const uint64_t first = t * lanes;
    const uint64_t n = std::min(lanes, total - first);
    const uint64_t whole = n & ~uint64_t{15};
    // The lanes above the last whole vector (lane counts off a multiple of 16, a short last step) one at a time.
    for (uint64_t i = n; i-- > whole;) {
      if (!put_one(first + i, i)) return kHxNeedsReference;
    }
    for (uint64_t b = whole; b > 0;) {
      while (first + b - 1 < start[p]) --p;  // the phase of the next vector's last position
      if (first + b - 16 < start[p]) {  // a vector across a phase boundary
        for (uint64_t i = b; i-- > b - 16;) {
          if (!put_one(first + i, i)) return kHxNeedsReference;
        }
        b -= 16;
        continue;
      }
      // The vectors down to the phase's first position, or lane 0.
      const uint64_t lo = start[p] <= first ? 0 : (start[p] - first + 15) & ~uint64_t{15};
      if (!put_vectors(phases.symbols[p], first - start[p], tables[p], lo, b, state, w)) return kHxNeedsReference;
      b = lo;
    }
  }
  *w_io = w;
  return 0;
}

#pragma GCC diagnostic pop

}  // namespace rans
}  // namespace encoders
}  // namespace hyperonnx

#endif  // HX_RANS_AVX512
