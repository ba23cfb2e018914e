// The `ecsq` codec (docs/format.md, "ecsq" and "rANS streams"; numpy: hyperonnx/codec/ecsq.py, decode_ecsq, and
// hyperonnx/codec/rans.py, decode).
//
// Entropy-coded θ: weight i of a segment is float(sym_i − 127) * scale[k_(i div B)], the level symbols and the
// per-block scale codes coming out of one interleaved-rANS stream per segment of 2^17·B weights. The blob length
// is only known by parsing it (variable_length()); the units are the segments, each decoded on its own (its
// offset found by walking the stream headers before it, O(segments)), so threads decode segments in parallel.
//
// Untrusted blobs: every read is bounds-checked against the blob length before it happens (frequency tables,
// stream headers, words); the frequency tables must sum to 4096 and lie in 0..255 (the q model in 0..254), every
// initial state in [2^16, 2^32), a stream must not run out of words, must end with every state at 2^16 and every
// word read, and nothing may follow the last stream. Memory does not depend on the blob: two 4096-entry slot
// tables, at most 4096 states and 2^17 scale codes per call.
//
// Arithmetic: the rANS state update is exact 32-bit integer arithmetic (a state in [2^16, 2^32) decodes to one
// in [16, 2^32)); each value is one IEEE binary32 product of two exact operands (no FMA can be involved), then
// the shared cast to the output dtype (dtype.h), exactly as numpy's float32 multiply and astype.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "../codec.h"
#include "blockvq.h"

namespace hyperonnx {
namespace {

constexpr uint32_t kProbBits = 12;
constexpr uint32_t kProbScale = 1u << kProbBits;
constexpr uint32_t kStateLow = 1u << 16;
constexpr uint64_t kSegmentBlocks = uint64_t{1} << 17;
constexpr int64_t kMaxBlock = 4096;
constexpr uint32_t kZero = 127;  // symbol of level 0
constexpr uint32_t kMaxLevelSymbol = 2 * kZero;
constexpr size_t kChunk = 2048;  // level symbols decoded, then scaled and cast, per step (stays in L1)

inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline uint32_t u16_at(const uint8_t* p) { return static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8; }
inline uint32_t u32_at(const uint8_t* p) { return u16_at(p) | u16_at(p + 2) << 16; }

// Coder states for a stream of `count` symbols: min(4096, max(8, ceil(count / 1024))) (part of the format).
inline uint32_t lanes_for(uint64_t count) {
  const uint64_t w = (count + 1023) / 1024;
  return static_cast<uint32_t>(std::min<uint64_t>(4096, std::max<uint64_t>(8, w)));
}

#if defined(__SSE2__)
// float32 -> float16 of n NaN-free values through F16C (vcvtps2ph, round to nearest even: the same bits as
// dtype.h's float_to_half on every NaN-free value, overflow to inf included); only called where the CPU has it.
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
#endif

bool fail(std::string* error, const std::string& message) {
  *error = "ecsq codec: " + message;
  return false;
}

// One alphabet's decoding table: per slot s (0..4095) the symbol (bits 0..7), freq − 1 (bits 8..19) and
// s − cum (bits 20..31) of the symbol whose [cum, cum + freq) holds s.
struct Model {
  uint32_t lo = 0, n = 0;
  uint32_t slot[kProbScale];
};

// Parses a frequency table at blob[*pos, len) into *m and moves *pos past it.
bool parse_model(const uint8_t* blob, size_t len, size_t* pos, const char* what, Model* m, std::string* error) {
  const std::string name = std::string(what) + " model: ";
  if (len - *pos < 4) return fail(error, name + "truncated frequency table");
  const uint32_t lo = u16_at(blob + *pos), n = u16_at(blob + *pos + 2);
  if (n == 0 || len - *pos - 4 < 2 * static_cast<size_t>(n)) return fail(error, name + "truncated or empty frequency table");
  if (lo >= 256 || n > 256 - lo) {
    return fail(error, name + "alphabet [" + std::to_string(lo) + ", " + std::to_string(lo + n) + ") outside 0..255");
  }
  const uint8_t* f = blob + *pos + 4;
  uint32_t sum = 0;
  for (uint32_t j = 0; j < n; ++j) sum += u16_at(f + 2 * j);  // <= 256 * 65535: no overflow
  if (sum != kProbScale) {
    return fail(error, name + "frequencies sum to " + std::to_string(sum) + ", not " + std::to_string(kProbScale));
  }
  m->lo = lo;
  m->n = n;
  uint32_t cum = 0;
  for (uint32_t j = 0; j < n; ++j) {
    const uint32_t freq = u16_at(f + 2 * j);
    for (uint32_t t = 0; t < freq; ++t) m->slot[cum + t] = (lo + j) | (freq - 1) << 8 | t << 20;
    cum += freq;
  }
  *pos += 4 + 2 * static_cast<size_t>(n);
  return true;
}

struct Params {
  uint64_t numel = 0;
  uint64_t block = 1;
  uint64_t seg_elems = 0;  // 2^17 · B
  uint64_t segments = 0;
  DType dtype = DType::kFloat;
  float scales[256];
  bool f16c = false;  // float16 output cast with F16C (the CPU has it and no value can be NaN)
};

class EcsqDecoder final : public BlockDecoder {
 public:
  explicit EcsqDecoder(const Params& p) : p_(p) {
    // The least blob: two one-symbol tables, then per segment its states, its word count and no words.
    min_bytes_ = 12;
    if (p_.segments) {
      const uint64_t full = p_.segments - 1;
      min_bytes_ += full * (4 * uint64_t{lanes_for(symbols(0))} + 4) + 4 * uint64_t{lanes_for(symbols(full))} + 4;
    }
  }

  uint64_t blob_bytes() const override { return min_bytes_; }
  std::string blob_layout() const override {
    return "two frequency tables + " + std::to_string(p_.segments) + " rANS stream(s) of 2^17 blocks of " +
           std::to_string(p_.block) + " weights";
  }
  bool variable_length() const override { return true; }
  uint64_t units() const override { return p_.segments; }
  uint64_t unit_align() const override { return 1; }

  bool validate(const uint8_t* blob, size_t len, std::string* error) const override {
    return run<false>(blob, len, 0, p_.segments, nullptr, error);
  }
  bool decode(const uint8_t* blob, size_t len, uint64_t u0, uint64_t u1, void* out, bool,
              std::string* error) const override {
    return run<true>(blob, len, u0, u1, static_cast<uint8_t*>(out), error);
  }

 private:
  uint64_t seg_len(uint64_t g) const { return std::min(p_.numel - g * p_.seg_elems, p_.seg_elems); }
  uint64_t seg_blocks(uint64_t g) const { return (seg_len(g) + p_.block - 1) / p_.block; }
  uint64_t symbols(uint64_t g) const { return seg_blocks(g) + seg_len(g); }

  // Moves *pos past segment g's stream; its header and words must lie inside the blob.
  bool skip_stream(const uint8_t* blob, size_t len, uint64_t g, size_t* pos, std::string* error) const {
    const uint64_t head = 4 * uint64_t{lanes_for(symbols(g))} + 4;
    if (len - *pos < head) return fail(error, "segment " + std::to_string(g) + ": truncated stream header");
    const uint64_t nwords = u32_at(blob + *pos + head - 4);
    if (len - *pos - head < 2 * nwords) return fail(error, "segment " + std::to_string(g) + ": truncated stream");
    *pos += static_cast<size_t>(head + 2 * nwords);
    return true;
  }

  // Units [u0, u1): parse the tables, find segment u0's stream, decode (WRITE) or just check each stream; the
  // call holding the last segment also rejects trailing bytes.
  template <bool WRITE>
  bool run(const uint8_t* blob, size_t len, uint64_t u0, uint64_t u1, uint8_t* out, std::string* error) const {
    auto models = std::make_unique<Model[]>(2);  // 32 KiB: off the stack
    Model& km = models[0];
    Model& qm = models[1];
    size_t pos = 0;
    if (!parse_model(blob, len, &pos, "k", &km, error) || !parse_model(blob, len, &pos, "q", &qm, error)) return false;
    if (qm.lo + qm.n > kMaxLevelSymbol + 1) return fail(error, "level alphabet beyond ±127");
    for (uint64_t g = 0; g < u0; ++g) {
      if (!skip_stream(blob, len, g, &pos, error)) return false;
    }
    std::unique_ptr<uint8_t[]> ks(new uint8_t[static_cast<size_t>(std::min(kSegmentBlocks, seg_blocks(0)))]);
    for (uint64_t g = u0; g < u1; ++g) {
      if (!stream<WRITE>(blob, len, g, km, qm, ks.get(), out, &pos, error)) return false;
    }
    if (u1 == p_.segments && pos != len) {
      return fail(error, std::to_string(len - pos) + " unexpected byte(s) after the last stream");
    }
    return true;
  }

  // Decodes segment g's stream at blob[*pos, len) and moves *pos past it.
  template <bool WRITE>
  bool stream(const uint8_t* blob, size_t len, uint64_t g, const Model& km, const Model& qm, uint8_t* ks,
              uint8_t* out, size_t* pos, std::string* error) const {
    const std::string seg = "segment " + std::to_string(g) + ": ";
    const uint64_t nb = seg_blocks(g), nq = seg_len(g);
    const uint32_t lanes = lanes_for(nb + nq);
    const uint8_t* start = blob + *pos;
    if (!skip_stream(blob, len, g, pos, error)) return false;
    uint32_t state[4096];
    for (uint32_t l = 0; l < lanes; ++l) {
      state[l] = u32_at(start + 4 * l);
      if (state[l] < kStateLow) return fail(error, seg + "corrupt stream (state out of range)");
    }
    const uint64_t nwords = u32_at(start + 4 * lanes);
    const uint8_t* words = start + 4 * lanes + 4;
    Lanes c{state, lanes, 0, words, nwords, 0};
    if (!c.decode(km, nb, ks)) return fail(error, seg + "corrupt stream (ran out of words)");
    const size_t esize = dtype_size(p_.dtype);
    uint8_t* dst = WRITE ? out + static_cast<size_t>(g * p_.seg_elems) * esize : nullptr;
    uint8_t syms[kChunk];
    float values[kChunk];
    for (uint64_t i = 0; i < nq; i += kChunk) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, nq - i));
      if (!c.decode(qm, n, syms)) return fail(error, seg + "corrupt stream (ran out of words)");
      if (WRITE) {
        uint64_t b = i / p_.block, left = p_.block - i % p_.block;
        float s = p_.scales[ks[b]];
        for (size_t t = 0; t < n; ++t) {
          if (left == 0) {
            s = p_.scales[ks[++b]];
            left = p_.block;
          }
          --left;
          values[t] = static_cast<float>(static_cast<int32_t>(syms[t]) - static_cast<int32_t>(kZero)) * s;
        }
        if (p_.f16c) {
#if defined(__SSE2__)
          to_half_f16c(values, n, dst + static_cast<size_t>(i) * 2);
#endif
        } else {
          cast_floats(values, n, p_.dtype, dst + static_cast<size_t>(i) * esize);
        }
      }
    }
    if (c.read != nwords) return fail(error, seg + "corrupt stream (final state check failed)");
    for (uint32_t l = 0; l < lanes; ++l) {
      if (state[l] != kStateLow) return fail(error, seg + "corrupt stream (final state check failed)");
    }
    return true;
  }

  // The coder: `lanes` states sharing one word stream; symbol i of the stream is on lane i mod lanes. Words are
  // read in symbol order, which is the format's order (a step's lanes in increasing order, each reading at most
  // one word, and no lane's decode depending on another's words).
  struct Lanes {
    uint32_t* state;
    uint32_t lanes, lane;
    const uint8_t* words;
    uint64_t nwords, read;

    // Decodes n symbols with model m into out; false when the words run out. Works on local copies of the
    // coder's fields (out is a byte pointer: stores through it could alias them and force reloads).
    bool decode(const Model& m, uint64_t n, uint8_t* out) {
      const uint32_t* slot = m.slot;
      uint32_t* const st = state;
      const uint8_t* const w = words;
      const uint32_t nl = lanes;
      uint32_t ln = lane;
      uint64_t rd = read;
      uint64_t i = 0;
      // Fast part: every symbol reads at most one word, so while read + (symbols left) <= nwords no check is
      // needed and the refill can be branch-free (the word load is always in bounds).
      const uint64_t safe = nwords - rd >= n ? n : nwords - rd;
      for (; i < safe; ++i) {
        uint32_t x = st[ln];
        const uint32_t e = slot[x & (kProbScale - 1)];
        x = ((e >> 8 & 0xfffu) + 1) * (x >> kProbBits) + (e >> 20);
        const uint32_t word = u16_at(w + 2 * rd);
        const bool need = x < kStateLow;
        x = need ? (x << 16 | word) : x;
        rd += need;
        st[ln] = x;
        out[i] = static_cast<uint8_t>(e);
        ln = ln + 1 == nl ? 0 : ln + 1;
      }
      bool ok = true;
      for (; i < n; ++i) {
        uint32_t x = st[ln];
        const uint32_t e = slot[x & (kProbScale - 1)];
        x = ((e >> 8 & 0xfffu) + 1) * (x >> kProbBits) + (e >> 20);
        if (x < kStateLow) {
          if (rd == nwords) {
            ok = false;
            break;
          }
          x = x << 16 | u16_at(w + 2 * rd);
          ++rd;
        }
        st[ln] = x;
        out[i] = static_cast<uint8_t>(e);
        ln = ln + 1 == nl ? 0 : ln + 1;
      }
      lane = ln;
      read = rd;
      return ok;
    }
  };

  Params p_;
  uint64_t min_bytes_ = 0;
};

std::unique_ptr<BlockDecoder> create(const SideInfo& side, const NodeLayout& layout, std::string* error) {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) *error = "ecsq codec: " + what;
    return ok;
  };
  const auto& block_v = side.ints.at("block");
  const auto& scale_v = side.floats.at("scale");
  if (!need(block_v.size() == 1, "i_block must hold one integer") ||
      !need(scale_v.size() == 1, "f_scale must hold one float")) {
    return nullptr;
  }
  const int64_t block = block_v[0];
  const float base = scale_v[0];
  if (!need(block >= 1 && block <= kMaxBlock, "i_block must be in 1..4096, got " + std::to_string(block)) ||
      !need(layout.group == 1, "group must be 1, got " + std::to_string(layout.group)) ||
      !need(layout.bits == 8, "bits must be 8, got " + std::to_string(layout.bits)) ||
      !need(std::isfinite(base), "the base step f_scale is not finite")) {
    return nullptr;
  }
  Params p;
  p.numel = layout.numel;
  p.block = static_cast<uint64_t>(block);
  p.seg_elems = kSegmentBlocks * p.block;
  p.segments = (p.numel + p.seg_elems - 1) / p.seg_elems;
  p.dtype = layout.dtype;
  for (int k = 0; k < 256; ++k) {
    const float b = base * from_bits(kLogStepBits[k & 15]);  // rounded product
    p.scales[k] = std::ldexp(b, 8 - (k >> 4));                // exact power of two (correctly rounded if subnormal)
  }
  // NaN-free: every level is a finite integer, so a value is NaN only for an infinite scale (a huge base).
  bool finite = true;
  for (float v : p.scales) finite &= std::isfinite(v);
  p.f16c = p.dtype == DType::kFloat16 && finite && host_has_f16c();
  return std::make_unique<EcsqDecoder>(p);
}

}  // namespace

const CodecSpec kEcsqCodec = {"ecsq", {"block"}, {"scale"}, nullptr, &create};

}  // namespace hyperonnx
