// The interleaved rANS encoder's shared pieces: the format's constants, the exact division, one symbol onto one
// lane, and the phases of hx_rans_encode. rans.cc holds the portable walk and the entry points, rans_avx512.cc the
// walk that codes 16 lanes of a step at once.
#pragma once

#include <algorithm>
#include <cstdint>

namespace hyperonnx {
namespace encoders {
namespace rans {

constexpr uint32_t kProbBits = 12;
constexpr uint32_t kStateLow = 1u << 16;
constexpr uint64_t kSymbolsPerLane = 4096;

inline uint64_t lanes_for(uint64_t count) {
  const uint64_t lanes = (count + kSymbolsPerLane - 1) / kSymbolsPerLane;
  return std::min<uint64_t>(4096, std::max<uint64_t>(8, lanes));
}

inline uint64_t bound_for(uint64_t total) { return 4 * lanes_for(total) + 4 + 2 * total; }

// m[f] = ceil(2^44 / f) for f in 1..2^12 (m[0] = 0): x / f = (x · m[f]) >> 44 for every 32-bit x (rans.cc).
const uint64_t* reciprocals();

// (x · m) >> 44 in 64-bit arithmetic (no 128-bit type, which not every compiler has): with m = h·2^32 + l,
// x·m / 2^44 = (x·h + x·l / 2^32) / 2^12, and the floor of x·l / 2^32 can be taken first (x·h is an integer).
inline uint32_t quotient(uint32_t x, uint64_t m) {
  const uint64_t low = (static_cast<uint64_t>(x) * (m & 0xFFFFFFFFu)) >> 32;
  return static_cast<uint32_t>((static_cast<uint64_t>(x) * (m >> 32) + low) >> 12);
}

// One symbol of frequency f and cumulative frequency c onto the lane whose state is *x; its word, if it sheds
// one, goes just below w (which moves down).
inline void put_symbol(uint32_t* x_in, uint32_t f, uint32_t c, const uint64_t* rcp, uint8_t*& w) {
  uint32_t x = *x_in;
  // Renormalize without a branch: whether a word goes out depends on the state, as good as random, and the
  // branch's mispredictions took about half the walk (8 M symbols: 42 -> 23 ms). The word is always written
  // below the last one and kept only when due (w moves); an unkept one is overwritten by the next.
  const uint32_t out_word = x >= (static_cast<uint64_t>(f) << (32 - kProbBits));
  w[-2] = static_cast<uint8_t>(x);
  w[-1] = static_cast<uint8_t>(x >> 8);
  w -= 2 * out_word;
  x >>= 16 * out_word;
  const uint32_t q = quotient(x, rcp[f]);
  *x_in = (q << kProbBits) + (x - q * f) + c;
}

// hx_rans_encode's symbol arrays: phase p holds positions start[p] .. start[p + 1] − 1 of the sequence, and
// table[256 p + s] is symbol s's (freq | cum << 16) in phase p's model, 0 where it has no frequency.
struct Phases {
  int count;
  const uint8_t* const* symbols;
  const uint64_t* start;
  const uint32_t* table;
};

// The vector walk exists in x86-64 builds by GCC or Clang (compiled for AVX-512 with a target attribute, picked at
// run time: the library itself is built for any x86-64); HX_NO_DISPATCH leaves it out, as the other encoders'
// run-time dispatch (acs.h), which also shows that the portable build stands alone.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(HX_NO_DISPATCH)
#define HX_RANS_AVX512 1
#endif

#ifdef HX_RANS_AVX512
// Whether this CPU has the vector walk (AVX-512 F, BW, VL and VBMI2) and HYPERONNX_ENCODERS_ISA does not cap the
// width below 512 bits (tests use it to check the portable walk's bytes on the same machine).
bool vector_walk_available();

// The walk of rans.cc (every step from the last, each step's lanes from the last), 16 lanes at a time where they
// lie in one phase: state (lanes ≥ 16 of them) and the write pointer *w are updated as the portable walk updates
// them. Returns 0, or kHxNeedsReference for a symbol without frequency.
int walk_avx512(const Phases& phases, uint64_t total, uint64_t lanes, uint32_t* state, uint8_t** w);
#endif

}  // namespace rans
}  // namespace encoders
}  // namespace hyperonnx
