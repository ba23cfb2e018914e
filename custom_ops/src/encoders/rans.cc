// Interleaved rANS encoding (hyperonnx/codec/rans.py, encode), byte-identical to numpy's: the same lanes, the same
// walk from the last step to the first, and the words in the order the decoder reads them (per step, lane order).
#include <cstdint>
#include <cstring>
#include <vector>

#include "encoders.h"
#include "rans_walk.h"

namespace hyperonnx {
namespace encoders {
namespace rans {

// x / f for every 32-bit state x and frequency f in 1..2^12 without a division: q = (x · m) >> 44 with
// m = ceil(2^44 / f) is exact (Granlund-Montgomery: m·f − 2^44 < f <= 2^12, so the error stays below one for
// x < 2^32). The division took about a sixth of the coder's time (8.1 M symbols: 46 -> 38 ms).
struct Reciprocals {
  uint64_t m[(1u << kProbBits) + 1];
  Reciprocals() {
    m[0] = 0;
    for (uint64_t f = 1; f <= (1u << kProbBits); ++f) m[f] = ((uint64_t{1} << 44) + f - 1) / f;
  }
};

const uint64_t* reciprocals() {
  static const Reciprocals table;
  return table.m;
}

}  // namespace rans
}  // namespace encoders
}  // namespace hyperonnx

namespace {

using namespace hyperonnx::encoders::rans;

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// The stream's layout once the walk is done: the final states, the word count, then the words, which the walk left
// at [w, end of the bound); moved to follow the header. Returns the stream's length.
uint64_t finish(uint8_t* out, uint64_t total, const std::vector<uint32_t>& state, const uint8_t* w) {
  const uint8_t* const end = out + bound_for(total);
  uint8_t* p = out;
  for (uint32_t x : state) {
    put_u32(p, x);
    p += 4;
  }
  const uint64_t word_bytes = static_cast<uint64_t>(end - w);
  put_u32(p, static_cast<uint32_t>(word_bytes / 2));
  p += 4;
  std::memmove(p, w, word_bytes);  // the header never reaches the words: the bound leaves room for both
  return static_cast<uint64_t>(p - out) + word_bytes;
}

// The coder over the whole symbol sequence; pair(pos, &f, &c) gives the symbol at pos its frequency and cumulative
// frequency, or false (numpy raises: nothing is written that counts). Writes the stream to out (at least
// hx_rans_bound(total) bytes) and its length to size.
template <class Pair>
int encode_walk(uint64_t total, const Pair& pair, uint8_t* out, uint64_t* size) {
  const uint64_t lanes = lanes_for(total);
  const uint64_t* rcp = reciprocals();
  std::vector<uint32_t> state(lanes, kStateLow);
  // At most one word a symbol: the words are written backwards from the end of out (no buffer beside it), so that
  // they lie in reading order (the walk goes from the last step to the first, each step's lanes from the last to
  // the first: positions in decreasing order), then moved to follow the states and the word count.
  uint8_t* w = out + bound_for(total);
  const uint64_t steps = (total + lanes - 1) / lanes;
  for (uint64_t t = steps; t-- > 0;) {
    const uint64_t first = t * lanes;
    const uint64_t n = std::min(lanes, total - first);
    for (uint64_t i = n; i-- > 0;) {
      uint32_t fi, ci;
      if (!pair(first + i, &fi, &ci)) return kHxNeedsReference;
      put_symbol(&state[i], fi, ci, rcp, w);
    }
  }
  *size = finish(out, total, state, w);
  return 0;
}

bool valid(uint32_t f, uint32_t c) { return f != 0 && f <= (1u << kProbBits) && c < (1u << kProbBits); }

}  // namespace

HX_ENCODER_API uint64_t hx_rans_bound(uint64_t total) { return bound_for(total); }

HX_ENCODER_API int hx_rans_encode(int phases, const uint8_t* const* symbols, const uint64_t* counts,
                                  const uint32_t* freq, const uint32_t* cum, uint8_t* out, uint64_t capacity,
                                  uint64_t* size) {
  if (phases < 1 || symbols == nullptr || counts == nullptr || freq == nullptr || cum == nullptr || out == nullptr ||
      size == nullptr) {
    return kHxBadArgument;
  }
  uint64_t total = 0;
  std::vector<uint64_t> start(phases + 1);
  for (int p = 0; p < phases; ++p) {
    start[p] = total;
    total += counts[p];
  }
  start[phases] = total;
  if (capacity < bound_for(total)) return kHxBadArgument;
  // Per phase and symbol, (freq, cum) in one word, 0 for a symbol without frequency (numpy's error): looked up
  // during the walk rather than spread over the sequence first (that pass and its 4 bytes a symbol cost as much as
  // the coding).
  std::vector<uint32_t> table(256 * static_cast<size_t>(phases));
  for (size_t i = 0; i < table.size(); ++i) table[i] = valid(freq[i], cum[i]) ? freq[i] | (cum[i] << 16) : 0;
#ifdef HX_RANS_AVX512
  const uint64_t lanes = lanes_for(total);
  if (lanes >= 16 && vector_walk_available()) {
    std::vector<uint32_t> state(lanes, kStateLow);
    uint8_t* w = out + bound_for(total);
    const Phases walk{phases, symbols, start.data(), table.data()};
    const int rc = walk_avx512(walk, total, lanes, state.data(), &w);
    if (rc != 0) return rc;
    *size = finish(out, total, state, w);
    return 0;
  }
#endif
  int p = phases - 1;  // the walk's positions decrease: the phase moves back, one boundary at a time
  auto pair = [&](uint64_t pos, uint32_t* f, uint32_t* c) {
    while (pos < start[p]) --p;
    const uint32_t fc = table[256 * static_cast<size_t>(p) + symbols[p][pos - start[p]]];
    *f = fc & 0xFFFF;
    *c = fc >> 16;
    return fc != 0;
  };
  return encode_walk(total, pair, out, size);
}

HX_ENCODER_API int hx_rans_vector_walk() {
#ifdef HX_RANS_AVX512
  return vector_walk_available() ? 1 : 0;
#else
  return 0;
#endif
}

HX_ENCODER_API int hx_rans_encode_pairs(const uint16_t* freq, const uint16_t* cum, uint64_t total, uint8_t* out,
                                        uint64_t capacity, uint64_t* size) {
  if ((total > 0 && (freq == nullptr || cum == nullptr)) || out == nullptr || size == nullptr) return kHxBadArgument;
  if (capacity < bound_for(total)) return kHxBadArgument;
  auto pair = [&](uint64_t pos, uint32_t* f, uint32_t* c) {
    *f = freq[pos];
    *c = cum[pos];
    return valid(*f, *c);
  };
  return encode_walk(total, pair, out, size);
}
