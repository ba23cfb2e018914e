// The `ecsq` and `tcq` codecs (docs/format.md, "ecsq", "tcq" and "rANS streams"; numpy: hyperonnx/codec/ecsq.py,
// decode_ecsq, hyperonnx/codec/tcq.py, and hyperonnx/codec/rans.py, decode).
//
// Entropy-coded θ: weight i of a segment is float(j_i) * scale[k_(i div B)], the level symbols and the
// per-block scale codes coming out of one interleaved-rANS stream per segment of 2^17·B weights. ecsq:
// j_i = sym_i − 127. tcq: the symbol indexes the half of the level grid that the trellis state allows,
// j_i = 2·(sym_i − 127) + (state & 1), and the level's coset j_i & 3 moves the state on (state 0 at each block). The blob length
// is only known by parsing it (variable_length()); the units are the segments, each decoded on its own (its
// offset found by walking the stream headers before it, O(segments)), so threads decode segments in parallel.
//
// Untrusted blobs: every read is bounds-checked against the blob length before it happens (frequency tables,
// stream headers, words); the frequency tables must sum to 4096 and lie in 0..255 (the q model in 0..254), every
// initial state in [2^16, 2^32), a stream must not run out of words, must end with every state at 2^16 and every
// word read, and nothing may follow the last stream. Memory does not depend on the blob: two 4096-entry slot
// tables, at most 4096 states and 2^17 scale codes per call.
//
// Format version 2 (the rank-1 term, docs/format.md "ecsq"): the blob starts with R + C float16 values u, v (the
// tensor seen as R = shape[0] rows of C); each value gets u[r] · v[c] added: the product of two float16 values is
// exact in float32, then one rounded sum, after the level's product (two separate operations, no FMA). v is
// converted to float32 once per call when C ≤ 2^16 (at most 256 KiB, whatever the blob), else where it is used.
//
// Arithmetic: the rANS state update is exact 32-bit integer arithmetic (a state in [2^16, 2^32) decodes to one
// in [16, 2^32)); each value is one IEEE binary32 product of two exact operands (no FMA can be involved), then
// the shared cast to the output dtype (dtype.h), exactly as numpy's float32 multiply and astype.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../codec.h"
#include "blockvq.h"
#include "rans.h"
#include "segmented.h"
#include "trellis.h"

namespace hyperonnx {
namespace {

using rans::Model;

constexpr int64_t kMaxBlock = 4096;
constexpr uint32_t kZero = 127;  // symbol of level 0
constexpr uint32_t kMaxLevelSymbol = 2 * kZero;
constexpr size_t kChunk = 2048;  // level symbols decoded, then scaled and cast, per step (stays in L1)
constexpr uint64_t kCachedCols = uint64_t{1} << 16;  // rank-1 term: v converted once per call up to this many (256 KiB)

inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// tcq's trellis (trellis.h) indexed by the symbol's low bit: level mod 4 = (2·(sym − 127) + (state & 1)) mod 4
// = 2·((sym + 1) mod 2) + (state & 1), so the next state depends on the state and sym & 1 only.
constexpr TrellisNextByBit kNextBySymbolTable(true);
constexpr const int8_t (&kNextBySymbol)[8][2] = kNextBySymbolTable.v;
static_assert(kNextBySymbol[0][1] == 0 && kNextBySymbol[0][0] == 1, "state 0: level 0 stays, level 2 moves to 1");
constexpr TrellisFourSteps kFourSteps(kNextBySymbolTable);

template <bool TRELLIS>
constexpr const char* codec_name() {
  return TRELLIS ? "tcq" : "ecsq";
}

template <bool TRELLIS>
bool fail(std::string* error, const std::string& message) {
  *error = std::string(codec_name<TRELLIS>()) + " codec: " + message;
  return false;
}

struct Params {
  rans::Segments seg;  // one side symbol (the scale code) per block
  uint64_t rows = 0, cols = 0;  // format 2: the rank-1 term's R × C view; rows = 0: no term
  DType dtype = DType::kFloat;
  float scales[256];
  bool f16c = false;  // float16 output cast with F16C (the CPU has it and no value can be NaN)
};

template <bool TRELLIS>
class EcsqDecoder final : public rans::SegmentedDecoder<EcsqDecoder<TRELLIS>> {
 public:
  explicit EcsqDecoder(const Params& p)
      : rans::SegmentedDecoder<EcsqDecoder<TRELLIS>>(p.seg, 2, "two", 2 * (p.rows + p.cols)), p_(p) {}

 private:
  friend class rans::SegmentedDecoder<EcsqDecoder<TRELLIS>>;

  // Units [u0, u1): parse the tables, then decode (WRITE) or just check each segment's stream (rans.h).
  template <bool WRITE>
  bool run(const uint8_t* blob, size_t len, uint64_t u0, uint64_t u1, uint8_t* out, std::string* error) const {
    auto models = std::make_unique<Model[]>(2);  // 32 KiB: off the stack
    Model& km = models[0];
    Model& qm = models[1];
    size_t pos = 0;
    std::string e;
    const uint8_t* term = nullptr;
    std::vector<float> vcols;  // the term's v as float32, when C is small enough to keep
    if (p_.rows) {
      const uint64_t halves = p_.rows + p_.cols;
      if (len < 2 * halves) return fail<TRELLIS>(error, "blob shorter than its rank-1 term");
      for (uint64_t h = 0; h < halves; ++h) {
        if ((half_bits(blob, h) & 0x7c00u) == 0x7c00u) {
          return fail<TRELLIS>(error, "rank-1 term holds a non-finite value");
        }
      }
      term = blob;
      pos = static_cast<size_t>(2 * halves);
      if (WRITE && p_.cols <= kCachedCols) {
        vcols.resize(static_cast<size_t>(p_.cols));
        for (uint64_t c = 0; c < p_.cols; ++c) vcols[c] = half_to_float(half_bits(blob, p_.rows + c));
      }
    }
    if (!rans::parse_model(blob, len, &pos, "k", &km, &e) || !rans::parse_model(blob, len, &pos, "q", &qm, &e)) {
      return fail<TRELLIS>(error, e);
    }
    if (qm.lo + qm.n > kMaxLevelSymbol + 1) return fail<TRELLIS>(error, "level alphabet beyond ±127");
    const size_t nb_max = static_cast<size_t>(std::min(rans::Segments::kBlocks, p_.seg.blocks(0)));
    std::unique_ptr<uint8_t[]> ks(new uint8_t[nb_max]);
    auto coder = std::make_unique<rans::Stream>();  // 16 KiB of states: off the stack
    auto segment = [&](uint64_t g, rans::Stream& c, std::string* message) {
      return stream<WRITE>(g, km, qm, ks.get(), term, vcols.empty() ? nullptr : vcols.data(), c, out, message);
    };
    if (!rans::for_segments(p_.seg, blob, len, pos, u0, u1, coder.get(), segment, &e)) return fail<TRELLIS>(error, e);
    return true;
  }

  // Decodes segment g from its open stream c; on failure sets *error (no prefix) and returns false.
  template <bool WRITE>
  bool stream(uint64_t g, const Model& km, const Model& qm, uint8_t* ks, const uint8_t* term, const float* vcols,
              rans::Stream& c, uint8_t* out, std::string* error) const {
    const uint64_t nb = p_.seg.blocks(g), nq = p_.seg.len(g), block = p_.seg.block;
    if (!c.decode(km, nb, ks, error)) return false;
    const size_t esize = dtype_size(p_.dtype);
    uint8_t* dst = WRITE ? out + static_cast<size_t>(g * p_.seg.elems) * esize : nullptr;
    uint8_t syms[kChunk];
    float values[kChunk];
    int32_t state = 0;  // tcq's trellis state, carried across chunks within a block
    for (uint64_t i = 0; i < nq; i += kChunk) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, nq - i));
      if (!c.decode(qm, n, syms, error)) return false;
      if (WRITE) {
        uint64_t b = i / block, left = block - i % block;
        float s = p_.scales[ks[b]];
        if (left == block) state = 0;
        for (size_t t = 0; t < n; ++t) {
          if (left == 0) {
            s = p_.scales[ks[++b]];
            left = block;
            state = 0;
          }
          if (TRELLIS && left >= 4 && n - t >= 4) {  // one load on the chain per four steps: 1.9 ns a symbol less
            const uint32_t bits = (syms[t] & 1u) | (syms[t + 1] & 1u) << 1 | (syms[t + 2] & 1u) << 2 |
                                  (syms[t + 3] & 1u) << 3;
            const uint32_t e = kFourSteps.v[state][bits];
            for (size_t u = 0; u < 4; ++u) {
              const int32_t level = 2 * (static_cast<int32_t>(syms[t + u]) - static_cast<int32_t>(kZero)) +
                                    static_cast<int32_t>(e >> (3 + u) & 1u);
              values[t + u] = static_cast<float>(level) * s;
            }
            state = static_cast<int32_t>(e & 7u);
            left -= 4;
            t += 3;
            continue;
          }
          --left;
          int32_t level = static_cast<int32_t>(syms[t]) - static_cast<int32_t>(kZero);
          if (TRELLIS) {
            level = 2 * level + (state & 1);
            state = kNextBySymbol[state][syms[t] & 1];  // = kTrellisNext[state][level mod 4], one load on the chain
          }
          values[t] = static_cast<float>(level) * s;
        }
        if (term) add_term(term, vcols, g * p_.seg.elems + i, values, n);
        if (p_.f16c) {
          to_half_f16c(values, n, dst + static_cast<size_t>(i) * 2);
        } else {
          cast_floats(values, n, p_.dtype, dst + static_cast<size_t>(i) * esize);
        }
      }
    }
    return true;
  }

  static uint32_t half_bits(const uint8_t* blob, uint64_t h) {
    return static_cast<uint32_t>(blob[2 * h]) | static_cast<uint32_t>(blob[2 * h + 1]) << 8;
  }

  // values[t] += u[r] · v[c] for elements first .. first + n − 1 (row-major: r = e div C, c = e mod C); vcols: v
  // as float32, or null to convert v's halves here.
  void add_term(const uint8_t* term, const float* vcols, uint64_t first, float* values, size_t n) const {
    uint64_t r = first / p_.cols, c = first % p_.cols;
    size_t t = 0;
    while (t < n) {
      const float u = half_to_float(half_bits(term, r));
      const size_t run = static_cast<size_t>(std::min<uint64_t>(n - t, p_.cols - c));  // to the row's end
      if (vcols) {
        for (size_t k = 0; k < run; ++k) values[t + k] = values[t + k] + u * vcols[c + k];  // exact product
      } else {
        for (size_t k = 0; k < run; ++k) {
          values[t + k] = values[t + k] + u * half_to_float(half_bits(term, p_.rows + c + k));
        }
      }
      t += run;
      c = 0;
      ++r;
    }
  }

  Params p_;
};

template <bool TRELLIS>
std::unique_ptr<BlockDecoder> create(const SideInfo& side, const NodeLayout& layout, std::string* error) {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) *error = std::string(codec_name<TRELLIS>()) + " codec: " + what;
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
  p.seg = rans::Segments(layout.numel, static_cast<uint64_t>(block), 1);
  if (layout.format == 2) {  // the rank-1 term: the tensor as R = shape[0] rows of C
    if (!need(!layout.shape.empty() && layout.shape[0] > 0, "a rank-1 term needs a non-empty first dimension")) {
      return nullptr;
    }
    p.rows = static_cast<uint64_t>(layout.shape[0]);
    p.cols = layout.numel / p.rows;
  }
  p.dtype = layout.dtype;
  for (int k = 0; k < 256; ++k) {
    const float b = base * from_bits(kLogStepBits[k & 15]);  // rounded product
    p.scales[k] = std::ldexp(b, 8 - (k >> 4));                // exact power of two (correctly rounded if subnormal)
  }
  // NaN-free: every level is a finite integer, so a value is NaN only for an infinite scale (a huge base).
  bool finite = true;
  for (float v : p.scales) finite &= std::isfinite(v);
  p.f16c = p.dtype == DType::kFloat16 && finite && host_has_f16c();
  return std::make_unique<EcsqDecoder<TRELLIS>>(p);
}

}  // namespace

const CodecSpec kEcsqCodec = {"ecsq", {"block"}, {"scale"}, nullptr, &create<false>, 2};
const CodecSpec kTcqCodec = {"tcq", {"block"}, {"scale"}, nullptr, &create<true>, 2};

}  // namespace hyperonnx
