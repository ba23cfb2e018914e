// The `blocktcq` codec (docs/format.md, "blocktcq"; numpy: hyperonnx/codec/blocktcq.py, decode_blocktcq).
//
// blockvq's framing (blockvq.h: b-bit codes, then a 10-bit header per block: scale code k and level set c < 4) with
// one θ per weight and tcq's 8-state trellis (trellis.h); f_books holds level set 0, sets 1-3 are computed
// (level_sets below). Within block q, from state 0 at its first weight:
//   f = 2·θ + (state & 1);  value = books[c_q·2L + f] * scale[k_q];  state = NEXT[state][f & 3]
// Every value is one IEEE binary32 product of two exact operands (the build uses -ffp-contract=off; nothing is
// added, so no FMA can be involved), then the cast to the output dtype (dtype.h, or F16C's identical rounding).
//
// The walk is only needed for the state's parity, and that has a closed form (docs/format.md): parity_t =
// u_(t−1) with u_t = (θ_t & 1) ⊕ u_(t−2) ⊕ u_(t−3), u = 0 before the block. Kept in three registers it puts one
// XOR per two weights on the loop's dependency chain, where the table walk puts a load (~5 cycles) per weight on
// it; the static_assert below proves the two equal for every θ sequence. The rest is independent per weight.
//
// Decode paths (bit-identical; the golden and thread tests compare them with the format's walk):
//   fused (x86 SSE2, blocks of a multiple of 16 weights, the default 32 included, finite level sets and scales):
//     per block one header, one broadcast scale and one level set; per 16 weights, their codes unpacked in
//     registers (compile-time shifts), 16 levels gathered, multiplied by the scale four at a time, cast in
//     registers (float16 with F16C when the CPU has it; blockvq's stores, block_simd.h) and stored,
//     non-temporally for large outputs;
//   wide (float32 output, blocks of a multiple of 32 weights, finite attributes, x86 AVX2 + BMI2 and codes of at
//     most 5 bits, AVX-512 VBMI and at most 6, or aarch64 NEON and at most 7): the fused kernels' decode
//     (fused/tcq_rows.h: 0.28 ns a weight on AVX2, 0.09-0.12 on AVX-512 VBMI, fused/tcq_vbmi.cc; this file's paths
//     take 0.45-0.55; NEON: fused/tcq_neon.cc), so call mode's
//     HyperDecode (an embedding table that a Gather reads) and session creation's decode run as fast as
//     HyperMatMul's decode; HYPERONNX_FUSED_ISA=scalar keeps this file's paths, the fused tests' independent
//     reference;
//   generic (any block size, the partial last block, non-finite attributes, other CPUs): codes unpacked 512 at a
//     time (unpack.h), then per weight a level load and a product into a buffer, cast by dtype.h (or F16C).
//
// Untrusted blobs: the shared decoder checks the exact length first; after that nothing can be out of range
// (f < 2L for every b-bit θ, and a 10-bit header holds a level set < 4), so validate() has nothing to add.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../codec.h"
#include "../fused/gemm.h"
#include "../fused/tcq_neon.h"
#include "../fused/tcq_rows.h"
#include "../fused/tcq_vbmi.h"
#include "../unpack.h"
#include "block_simd.h"
#include "blockvq.h"
#include "trellis.h"

namespace hyperonnx {
namespace {

constexpr size_t kChunkCodes = 512;  // codes unpacked, then decoded and cast, per step (all stays in L1)

// The trellis indexed by θ's low bit: f & 3 = 2·(θ & 1) + (state & 1).
constexpr TrellisNextByBit kNextByTheta(false);

// Whether the closed form's u_(t−1) equals the walk's state & 1 at every weight of every block: both machines
// (the walk's 8 states, the recurrence's 3 bits u_(t−1), u_(t−2), u_(t−3)) run side by side from the block start
// over every reachable pair of states and both low bits of θ, a complete check (at most 64 pairs).
constexpr bool parity_recurrence_matches_walk() {
  bool seen[8][8] = {};  // [walk state][u_(t−1) | u_(t−2) << 1 | u_(t−3) << 2]
  seen[0][0] = true;
  for (bool grew = true; grew;) {
    grew = false;
    for (int s = 0; s < 8; ++s) {
      for (int u = 0; u < 8; ++u) {
        if (!seen[s][u]) continue;
        if ((s & 1) != (u & 1)) return false;
        for (int bit = 0; bit < 2; ++bit) {
          const int next_s = kNextByTheta.v[s][bit];
          if (next_s < 0 || next_s > 7) return false;  // a coset the state does not allow
          const int next_u = (bit ^ ((u >> 1) & 1) ^ (u >> 2)) | (u & 3) << 1;
          if (!seen[next_s][next_u]) seen[next_s][next_u] = grew = true;
        }
      }
    }
  }
  return true;
}
static_assert(parity_recurrence_matches_walk(), "the parity recurrence must reproduce the trellis walk's state & 1");

// What the fused kernels read: code and header streams, scales and the fine level sets.
struct FusedArgs {
  const uint8_t* codes;    // the blob (codes first)
  const uint8_t* headers;  // the header stream
  const float* scales;     // 256
  const float* books;      // 4·2L
  uint32_t fine;           // 2L
  uint32_t groups;         // 16-weight groups per block (block / 16)
};

using FusedFn = void (*)(const FusedArgs&, uint64_t q0, uint64_t q1, uint8_t* out);

#if defined(__SSE2__)
using block_simd::store_group;
using block_simd::store_group_f16c;

template <DType T>
constexpr size_t kElemSize = T == DType::kDouble ? 8 : T == DType::kFloat ? 4 : 2;

// The 16 weights of one group (two 8-code groups of BITS bytes each), as four vectors: f = 2θ + parity, the level
// of the block's fine set times the block scale. u1..u3 carry the parity recurrence from group to group.
template <int BITS>
inline void group_products(const uint8_t* src, const float* book, __m128 s, uint32_t& u1, uint32_t& u2, uint32_t& u3,
                           __m128 v[4]) {
  // Each level is loaded as soon as its index is known: few values live at once (no spills).
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) {
    __m128 x[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const int t = 4 * i + j;
      const uint32_t theta = block_code<BITS>(src + (t / 8) * BITS, t % 8);
      x[j] = _mm_load_ss(book + 2 * theta + u1);
      const uint32_t u = (theta & 1u) ^ u2 ^ u3;
      u3 = u2;
      u2 = u1;
      u1 = u;
    }
    const __m128 levels = _mm_movelh_ps(_mm_unpacklo_ps(x[0], x[1]), _mm_unpacklo_ps(x[2], x[3]));
    v[i] = _mm_mul_ps(levels, s);  // level * scale: one rounding each, as numpy's float32 multiply
  }
}

// Blocks [q0, q1), all whole and all of whose codes can be read with 8-byte loads; out: block q0's output.
template <int BITS, DType T, bool STREAM>
void fused_blocks(const FusedArgs& a, uint64_t q0, uint64_t q1, uint8_t* out) {
  const uint8_t* src = a.codes + q0 * a.groups * 2 * BITS;
  for (uint64_t q = q0; q < q1; ++q) {
    const uint32_t h = block_header(a.headers, q);
    const __m128 s = _mm_set1_ps(a.scales[h & 255u]);
    const float* book = a.books + (h >> 8) * a.fine;
    uint32_t u1 = 0, u2 = 0, u3 = 0;
    for (uint32_t g = 0; g < a.groups; ++g, src += 2 * BITS, out += 16 * kElemSize<T>) {
      __m128 v[4];
      group_products<BITS>(src, book, s, u1, u2, u3, v);
      store_group<T, STREAM>(out, v);
    }
  }
  if constexpr (STREAM) _mm_sfence();
}

// float16 output through F16C: its own function, as only it is compiled for F16C, and it runs only where the CPU
// has it.
template <int BITS, bool STREAM>
__attribute__((target("f16c"))) void fused_blocks_f16c(const FusedArgs& a, uint64_t q0, uint64_t q1, uint8_t* out) {
  const uint8_t* src = a.codes + q0 * a.groups * 2 * BITS;
  for (uint64_t q = q0; q < q1; ++q) {
    const uint32_t h = block_header(a.headers, q);
    const __m128 s = _mm_set1_ps(a.scales[h & 255u]);
    const float* book = a.books + (h >> 8) * a.fine;
    uint32_t u1 = 0, u2 = 0, u3 = 0;
    for (uint32_t g = 0; g < a.groups; ++g, src += 2 * BITS, out += 32) {
      __m128 v[4];
      group_products<BITS>(src, book, s, u1, u2, u3, v);
      store_group_f16c<STREAM>(out, v);
    }
  }
  if constexpr (STREAM) _mm_sfence();
}

template <DType T, bool STREAM>
FusedFn fused_for(int b) {
  auto pick = [](auto bits) -> FusedFn {
    constexpr int kBits = decltype(bits)::value;
    if constexpr (T == DType::kFloat16) {
      return &fused_blocks_f16c<kBits, STREAM>;
    } else {
      return &fused_blocks<kBits, T, STREAM>;
    }
  };
  switch (b) {
    case 1: return pick(std::integral_constant<int, 1>{});
    case 2: return pick(std::integral_constant<int, 2>{});
    case 3: return pick(std::integral_constant<int, 3>{});
    case 4: return pick(std::integral_constant<int, 4>{});
    case 5: return pick(std::integral_constant<int, 5>{});
    case 6: return pick(std::integral_constant<int, 6>{});
    case 7: return pick(std::integral_constant<int, 7>{});
    case 8: return pick(std::integral_constant<int, 8>{});
    default: return nullptr;
  }
}

template <bool STREAM>
FusedFn fused_kernel(DType t, int b) {
  switch (t) {
    case DType::kFloat: return fused_for<DType::kFloat, STREAM>(b);
    case DType::kDouble: return fused_for<DType::kDouble, STREAM>(b);
    case DType::kBFloat16: return fused_for<DType::kBFloat16, STREAM>(b);
    case DType::kFloat16: return host_has_f16c() ? fused_for<DType::kFloat16, STREAM>(b) : nullptr;
  }
  return nullptr;
}
#endif  // __SSE2__

class BlockTcqDecoder final : public BlockDecoder {
 public:
  explicit BlockTcqDecoder(BlockVQParams p) : p_(std::move(p)) {
    // F16C's float16 rounding equals dtype.h's on every NaN-free value; finite levels and scales give no NaN.
    bool finite = true;
    for (float v : p_.books) finite &= std::isfinite(v);
    for (float v : p_.scales) finite &= std::isfinite(v);
    f16c_ = p_.dtype == DType::kFloat16 && finite && host_has_f16c();
    // Fused path: whole 16-weight groups per block, values that cast in SIMD exactly (no NaN).
    groups_ = p_.block % 16 == 0 ? p_.block / 16 : 0;
#if defined(__SSE2__)
    if (groups_ && finite) {
      fused_ = fused_kernel<false>(p_.dtype, p_.level_bits);
      fused_stream_ = fused_kernel<true>(p_.dtype, p_.level_bits);
    }
#endif
    // Whole blocks whose codes all lie in 8-byte-readable 8-code groups of the blob (which ends with the headers,
    // so only the last few groups of a tiny tensor can fall short); a block holds 2·groups_ of them.
    const uint64_t safe_groups = fast_blocks(static_cast<size_t>(blob_bytes()), p_.level_bits, 0,
                                             static_cast<size_t>(p_.numel));
    fast_end_ = groups_ ? std::min<uint64_t>(p_.numel / p_.block, safe_groups / (2 * groups_)) : 0;
    // The AVX2 kernel beats this file's paths up to 5 bits only (6 bits: 0.47 against 0.45 ns a weight). aarch64
    // has only the generic path below, which the NEON kernel replaces at every width it takes (tcq_neon.cc).
    const FusedIsa isa = best_isa();
    const bool vbmi = isa == FusedIsa::kAvx512 && tcq_vbmi_available();
    if (p_.dtype == DType::kFloat &&
        ((isa != FusedIsa::kScalar && (vbmi || p_.level_bits <= 5)) || tcq_neon_available())) {
      wide_ = TcqRows::create(p_, vbmi);
    }
  }

  uint64_t blob_bytes() const override { return p_.code_bytes + p_.header_bytes; }
  std::string blob_layout() const override {
    return std::to_string(p_.count) + " codes of " + std::to_string(p_.level_bits) + " bits + " +
           std::to_string(p_.nblocks) + " block headers of 10 bits";
  }
  uint64_t units() const override { return p_.nblocks; }
  // Nothing beyond the length can be wrong (see the top of the file).
  bool validate(const uint8_t*, size_t, std::string*) const override { return true; }

  bool decode(const uint8_t* blob, size_t len, uint64_t u0, uint64_t u1, void* out, bool stream,
              std::string*) const override {
    auto* dst = static_cast<uint8_t*>(out);
    const uint64_t wide_stop = wide_ ? std::min(u1, p_.numel / p_.block) : 0;  // whole blocks only
    if (u0 < wide_stop) {
      wide_->run(blob, len, u0, wide_stop, reinterpret_cast<float*>(dst + u0 * p_.block * sizeof(float)));
      u0 = wide_stop;
    }
    const uint64_t fast_stop = std::min(u1, fast_end_);
    if (fused_ && u0 < fast_stop) {
      const FusedArgs a{blob, blob + p_.code_bytes, p_.scales.data(), p_.books.data(), 2 * p_.levels, groups_};
      (stream ? fused_stream_ : fused_)(a, u0, fast_stop, dst + u0 * p_.block * dtype_size(p_.dtype));
      u0 = fast_stop;
    }
    if (u0 >= u1) return true;
    switch (p_.dtype) {
      case DType::kFloat: run<DType::kFloat>(blob, u0, u1, dst); break;
      case DType::kDouble: run<DType::kDouble>(blob, u0, u1, dst); break;
      case DType::kFloat16: run<DType::kFloat16>(blob, u0, u1, dst); break;
      case DType::kBFloat16: run<DType::kBFloat16>(blob, u0, u1, dst); break;
    }
    return true;
  }

  const BlockVQParams& params() const { return p_; }

 private:
  // The generic path. Blocks [q0, q1): weights [q0·B, min(numel, q1·B)), in chunks of codes starting at multiples
  // of 8 (the unpacker's whole 8-code groups), so a block may start and end anywhere inside a chunk.
  template <DType T>
  void run(const uint8_t* blob, uint64_t q0, uint64_t q1, uint8_t* out) const {
    const uint64_t block = p_.block;
    const uint64_t e0 = q0 * block, e1 = std::min(q1 * block, p_.numel);
    if (e0 >= e1) return;
    const int b = p_.level_bits;
    const uint32_t fine = 2 * p_.levels;
    const uint8_t* headers = blob + p_.code_bytes;
    const size_t len = static_cast<size_t>(blob_bytes());
    const size_t esize = dtype_size(T);
    uint64_t q = q0, left = block;  // the current block and its weights still to decode
    uint32_t h = block_header(headers, q);
    float s = p_.scales[h & 255u];
    const float* book = p_.books.data() + (h >> 8) * fine;
    uint32_t u1 = 0, u2 = 0, u3 = 0;  // u_(t−1) (the state's parity), u_(t−2), u_(t−3)
    uint32_t codes[kChunkCodes];
    float values[kChunkCodes];
    alignas(8) uint8_t staged[kChunkCodes * 8];
    for (uint64_t c = e0 & ~uint64_t{7}; c < e1; c += kChunkCodes) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkCodes, e1 - c));
      unpack_codes(blob, len, b, c, n, codes);
      const size_t first = c < e0 ? static_cast<size_t>(e0 - c) : 0;
      for (size_t i = first; i < n;) {
        if (left == 0) {
          h = block_header(headers, ++q);
          s = p_.scales[h & 255u];
          book = p_.books.data() + (h >> 8) * fine;
          left = block;
          u1 = u2 = u3 = 0;
        }
        const size_t stop = i + static_cast<size_t>(std::min<uint64_t>(left, n - i));
        left -= stop - i;
        for (; i < stop; ++i) {
          const uint32_t theta = codes[i];
          values[i] = book[2 * theta + u1] * s;  // f = 2θ + (state & 1) < 2L; one rounding
          const uint32_t u = (theta & 1u) ^ u2 ^ u3;
          u3 = u2;
          u2 = u1;
          u1 = u;
        }
      }
      uint8_t* o = out + static_cast<size_t>(c + first) * esize;
      // cast_floats stores whole elements: an output not aligned to its element size (allowed, if rare) is cast in
      // a buffer of our own and copied.
      const bool aligned = reinterpret_cast<uintptr_t>(o) % esize == 0;
      uint8_t* cast_to = aligned ? o : staged;
      if (T == DType::kFloat16 && f16c_) {
        to_half_f16c(values + first, n - first, cast_to);
      } else {
        cast_floats(values + first, n - first, T, cast_to);
      }
      if (!aligned) std::memcpy(o, staged, (n - first) * esize);
    }
  }

  BlockVQParams p_;
  bool f16c_ = false;  // float16 output cast with F16C (the CPU has it and no value can be NaN)
  FusedFn fused_ = nullptr, fused_stream_ = nullptr;
  uint32_t groups_ = 0;    // 16-weight groups per block (0: the block size has no fused path)
  uint64_t fast_end_ = 0;  // blocks [0, fast_end_) may take the fused path
  std::unique_ptr<TcqRows> wide_;  // the fused kernels' decode (reads p_, declared before it), where it applies
};

// The four fine level sets from the stored first one (docs/format.md, "blocktcq"): sets 1-3 are quotients of exact
// integers (one correctly rounded float division each), so every decoder computes the same bits.
std::vector<float> level_sets(const std::vector<float>& stored) {
  const size_t fine = stored.size();
  const auto n = static_cast<int64_t>(fine) - 1;
  std::vector<float> books(kBlockVQBooks * fine);
  std::copy(stored.begin(), stored.end(), books.begin());
  for (size_t i = 0; i < fine; ++i) {
    const auto k = static_cast<int64_t>(i);
    books[fine + i] = static_cast<float>(2 * k - n) / static_cast<float>(n);
    books[2 * fine + i] = static_cast<float>(5 * n - 6 * k) / static_cast<float>(5 * n);
    books[3 * fine + i] = -books[2 * fine + i];
  }
  return books;
}

std::unique_ptr<BlockDecoder> create(const SideInfo& side, const NodeLayout& layout, std::string* error) {
  BlockVQParams p;
  if (!parse_block_params({"blocktcq", 1, 2, 1}, side, layout, &p, error)) return nullptr;
  p.books = level_sets(p.books);
  return std::make_unique<BlockTcqDecoder>(std::move(p));
}

}  // namespace

const BlockVQParams* blocktcq_params(const BlockDecoder* d) {
  const auto* v = dynamic_cast<const BlockTcqDecoder*>(d);
  return v ? &v->params() : nullptr;
}

const CodecSpec kBlockTcqCodec = {"blocktcq", {"block", "levels"}, {"smax", "books"}, nullptr, &create};

}  // namespace hyperonnx
