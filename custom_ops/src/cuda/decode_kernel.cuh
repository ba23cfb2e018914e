// Bodies of the CUDA HyperDecode kernels and the launch plan, shared by decode_kernel.cu (nvcc) and the
// host emulation test (custom_ops/tests/cuda_emulation_test.cc, g++), which runs these exact bodies over
// every golden case on machines without a GPU. Under nvcc the bodies are device functions; elsewhere
// plain inline functions with __ldg/atomicMin replaced by their single-threaded meaning.
#pragma once

#include <algorithm>
#include <cstdint>

#include "decode_kernel.h"
#include "dtype.h"

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#define HX_DEVICE __device__ __forceinline__
#define HX_LDG(p) __ldg(p)
#define HX_ATOMIC_MIN(p, v) atomicMin((p), (v))
#define HX_FMUL(a, b) __fmul_rn((a), (b))
#else
#define HX_DEVICE inline
#define HX_LDG(p) (*(p))
#define HX_ATOMIC_MIN(p, v) (*(p) = std::min<unsigned long long>(*(p), (v)))
#define HX_FMUL(a, b) ((a) * (b))
#endif

namespace hyperonnx {
namespace cuda {
namespace detail {

HX_DEVICE uint32_t code_mask(uint32_t bits) { return bits >= 32 ? 0xffffffffu : (1u << bits) - 1u; }

// Code i of the blob. kAligned: the blob pointer is 4-byte aligned, so codes whose two covering 32-bit
// words lie inside the blob are read as two word loads (neighbouring threads share words: L1 hits); the
// rest (the last few codes, or any code of an unaligned blob) byte by byte, touching only the bytes the
// code occupies, all of which are inside the blob because its length was checked.
template <bool kAligned>
HX_DEVICE uint32_t load_code(const uint8_t* __restrict__ blob, uint64_t len, uint32_t bits, uint32_t mask,
                             uint64_t i) {
  const uint64_t bit = i * bits;
  const uint64_t byte = bit >> 3;
  if (kAligned) {
    const uint64_t q = byte >> 2;
    if ((q + 2) * 4 <= len) {
      const uint32_t* w = reinterpret_cast<const uint32_t*>(blob);
      const uint64_t v = static_cast<uint64_t>(HX_LDG(w + q)) | (static_cast<uint64_t>(HX_LDG(w + q + 1)) << 32);
      return static_cast<uint32_t>(v >> (bit - q * 32)) & mask;  // shift <= 31, code ends below bit 63
    }
  }
  const uint32_t sh = static_cast<uint32_t>(bit & 7);
  const uint32_t nb = (sh + bits + 7) >> 3;  // <= 5
  uint64_t v = 0;
  for (uint32_t k = 0; k < nb; ++k) v |= static_cast<uint64_t>(HX_LDG(blob + byte + k)) << (8 * k);
  return static_cast<uint32_t>(v >> sh) & mask;
}

HX_DEVICE void report(unsigned long long* bad_index, uint64_t c) {
  if (bad_index) HX_ATOMIC_MIN(bad_index, static_cast<unsigned long long>(c));
}

// Rows [0, rows), items first, first + stride, ...: the whole row as one V (row_bytes == sizeof(V)).
template <typename V, bool kAligned>
HX_DEVICE void rows_body(const DecodeArgs& a, uint64_t rows, uint64_t first, uint64_t stride) {
  const uint32_t bits = static_cast<uint32_t>(a.bits);
  const uint32_t mask = code_mask(bits);
  const V* __restrict__ table = static_cast<const V*>(a.table);
  V* __restrict__ out = static_cast<V*>(a.out);
  for (uint64_t c = first; c < rows; c += stride) {
    const uint32_t code = load_code<kAligned>(a.blob, a.blob_len, bits, mask, c);
    if (code >= a.entries) {  // never read the table with it
      report(a.bad_index, c);
      continue;
    }
    out[c] = HX_LDG(table + code);
  }
}

// Elements [e0, e1), items e0 + first, e0 + first + stride, ...: any row size, and the partial last row.
template <typename T, bool kAligned>
HX_DEVICE void elems_body(const DecodeArgs& a, uint64_t e0, uint64_t e1, uint64_t first, uint64_t stride) {
  const uint32_t bits = static_cast<uint32_t>(a.bits);
  const uint32_t mask = code_mask(bits);
  const uint64_t g = static_cast<uint64_t>(a.group);
  const T* __restrict__ table = static_cast<const T*>(a.table);
  T* __restrict__ out = static_cast<T*>(a.out);
  for (uint64_t e = e0 + first; e < e1; e += stride) {
    const uint64_t c = e / g;
    const uint32_t code = load_code<kAligned>(a.blob, a.blob_len, bits, mask, c);
    if (code >= a.entries) {
      report(a.bad_index, c);
      continue;
    }
    out[e] = HX_LDG(table + static_cast<uint64_t>(code) * g + (e - c * g));
  }
}

template <bool kAligned>
HX_DEVICE void scan_body(const DecodeArgs& a, uint64_t first, uint64_t stride) {
  const uint32_t bits = static_cast<uint32_t>(a.bits);
  const uint32_t mask = code_mask(bits);
  for (uint64_t c = first; c < a.count; c += stride) {
    if (load_code<kAligned>(a.blob, a.blob_len, bits, mask, c) >= a.entries) report(a.bad_index, c);
  }
}

inline bool aligned_to(const void* p, uint64_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; }

// ---- blockvq --------------------------------------------------------------------------------------------
// Output element of ONNX type DT from a float32 value: the host's casts (dtype.h), compiled for the device too.
template <int DT>
struct BvqOut;
template <>
struct BvqOut<1> {
  using E = float;
  static HX_DEVICE E cast(float v) { return v; }
};
template <>
struct BvqOut<11> {
  using E = double;
  static HX_DEVICE E cast(float v) { return static_cast<double>(v); }  // exact
};
// On the device, non-NaN values go through the hardware conversion (cvt.rn.f16.f32 / cvt.rn.bf16.f32: IEEE round
// to nearest even, subnormals kept: the same bits as dtype.h's integer code, 2x faster end to end on an H200);
// NaN keeps dtype.h's encoding (the hardware returns a canonical NaN, numpy and ml_dtypes keep sign and payload).
template <>
struct BvqOut<10> {
  using E = uint16_t;
  static HX_DEVICE E cast(float v) {
#if defined(__CUDA_ARCH__)
    if (v == v) return __half_as_ushort(__float2half_rn(v));
#endif
    return float_to_half(v);
  }
};
template <>
struct BvqOut<16> {
  using E = uint16_t;
  static HX_DEVICE E cast(float v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    if (v == v) return __bfloat16_as_ushort(__float2bfloat16_rn(v));
#endif
    return float_to_bfloat16(v);
  }
};

template <typename E>
struct alignas(2 * sizeof(E)) BvqPair {
  E x, y;
};

// Pairs first, first + stride, ...: code θ (2b bits) and header h of its block (10 bits at bit 10q of the
// header stream: two bytes, as 10q is even), then value_t = levels[c][digit_t] * scale[k] (one rounding) and
// the cast. kPairStore: the output is aligned to two elements, so a whole pair is one store.
template <int DT, bool kAligned, bool kPairStore>
HX_DEVICE void blockvq_body(const BlockVQArgs& a, uint64_t first, uint64_t stride) {
  using Out = BvqOut<DT>;
  using E = typename Out::E;
  const uint32_t b = static_cast<uint32_t>(a.level_bits);
  const uint32_t bits = 2 * b;
  const uint32_t mask = code_mask(bits);
  const uint32_t level_mask = (1u << b) - 1u;
  const float* __restrict__ scales = a.params;
  const float* __restrict__ levels = a.params + 256;
  const uint8_t* __restrict__ headers = a.blob + a.code_bytes;
  const uint32_t ppb = a.pairs_per_block;
  E* __restrict__ out = static_cast<E*>(a.out);
  for (uint64_t p = first; p < a.count; p += stride) {
    const uint32_t theta = load_code<kAligned>(a.blob, a.blob_len, bits, mask, p);
    const uint64_t q = p <= 0xffffffffull ? static_cast<uint64_t>(static_cast<uint32_t>(p) / ppb) : p / ppb;
    const uint64_t hbit = q * 10;
    const uint8_t* hp = headers + (hbit >> 3);
    const uint32_t h =
        ((static_cast<uint32_t>(HX_LDG(hp)) | (static_cast<uint32_t>(HX_LDG(hp + 1)) << 8)) >> (hbit & 7)) & 0x3ffu;
    const float s = HX_LDG(scales + (h & 255u));
    const float* lv = levels + ((h >> 8) << b);
    const E v0 = Out::cast(HX_FMUL(HX_LDG(lv + (theta >> b)), s));
    const E v1 = Out::cast(HX_FMUL(HX_LDG(lv + (theta & level_mask)), s));
    const uint64_t e = 2 * p;
    if (e + 1 < a.numel) {
      if (kPairStore) {
        BvqPair<E> pair;
        pair.x = v0;
        pair.y = v1;
        reinterpret_cast<BvqPair<E>*>(out)[p] = pair;
      } else {
        out[e] = v0;
        out[e + 1] = v1;
      }
    } else {
      out[e] = v0;  // the last pair of an odd-sized tensor has one element
    }
  }
}

struct BlockVQPlan {
  enum Status { kOk, kInvalid, kMisaligned } status = kOk;
  bool blob_aligned = false;  // 4-byte aligned blob: word code loads
  bool pair_store = false;    // output aligned to two elements
  uint32_t elem_bytes = 4;
};

inline BlockVQPlan plan_blockvq(const BlockVQArgs& a) {
  BlockVQPlan p;
  switch (a.dtype) {
    case 1: p.elem_bytes = 4; break;
    case 11: p.elem_bytes = 8; break;
    case 10:
    case 16: p.elem_bytes = 2; break;
    default: p.status = BlockVQPlan::kInvalid; return p;
  }
  if (a.level_bits < 1 || a.level_bits > 8 || a.pairs_per_block < 1 || a.params == nullptr) {
    p.status = BlockVQPlan::kInvalid;
    return p;
  }
  if (!aligned_to(a.out, p.elem_bytes) || !aligned_to(a.params, 4)) {
    p.status = BlockVQPlan::kMisaligned;
    return p;
  }
  p.blob_aligned = aligned_to(a.blob, 4);
  p.pair_store = aligned_to(a.out, 2 * p.elem_bytes);
  return p;
}

// ---- blocktcq -------------------------------------------------------------------------------------------
// One weight per lane: a warp decodes 32 consecutive weights at a time (a "chunk") and gets every weight's trellis
// parity from one ballot of the 32 low bits of θ instead of a walk. docs/format.md's closed form: the parity before
// weight t of a block is u_(t−1), u_t = Σ_(s≤t) (θ_s & 1)·g_(t−s) mod 2 with g = 1 0 1 1 1 0 0 repeating (the
// power series of 1 / (1 + z² + z³) over GF(2)), so u_t = popc(P & tcq_mask(t)) & 1 for the ballot P of a chunk
// that starts a block. A block that began in an earlier chunk enters as its last three parities (v1, v2, v3) =
// (u_(−1), u_(−2), u_(−3)), folded into bits 0..2 of P (u_0 = p_0 ⊕ v2 ⊕ v3, u_1 = p_1 ⊕ v1 ⊕ v2, u_2 = p_2 ⊕ u_0 ⊕
// v1); a block that begins inside the chunk at lane s masks off the bits below s.
// Lane masks: bit s of tcq_mask(t) is g_(t−s) for s ≤ t, 0 above t; all 32 are shifts of one word, bit i of kTcqG
// being g_((31 − i) mod 7). The definition, for the compile-time check:
constexpr uint32_t tcq_mask_by_definition(uint32_t t) {
  uint32_t m = 0;
  for (uint32_t s = 0; s <= t; ++s) m |= ((0x1du >> ((t - s) % 7)) & 1u) << s;  // 0x1d: g_0..g_6 = 1 0 1 1 1 0 0
  return m;
}
constexpr uint32_t kTcqG = tcq_mask_by_definition(31);
HX_DEVICE uint32_t tcq_mask(uint32_t t) { return kTcqG >> (31 - t); }
constexpr bool tcq_masks_match() {
  for (uint32_t t = 0; t < 32; ++t) {
    if ((kTcqG >> (31 - t)) != tcq_mask_by_definition(t)) return false;
  }
  return true;
}
static_assert(tcq_masks_match(), "every lane mask is a shift of the last one");

HX_DEVICE uint32_t parity_of(uint32_t x) {
#ifdef __CUDACC__
  return static_cast<uint32_t>(__popc(x)) & 1u;
#else
  return static_cast<uint32_t>(__builtin_popcount(x)) & 1u;
#endif
}

// The three parities a block carries from one chunk into the next: v1 = u at the chunk's last weight, v2, v3 the two
// before it; zero where those weights belong to an earlier block (or for a chunk that starts a block).
struct TcqCarry {
  uint32_t v1 = 0, v2 = 0, v3 = 0;
};

// A warp's work: whole blocks [unit·per, (unit + 1)·per) with per = max(1, 256 / B), as elements [r0, r1): a span
// starts a block, so it needs no parity from before it; 256 weights (8 chunks at the default B = 32) spread the
// span setup without leaving a 64M-weight tensor short of warps. Not yet tuned on a GPU (tests/gpu/README.md).
struct TcqSpan {
  uint64_t r0 = 0, r1 = 0;
};
HX_HOST_DEVICE inline uint64_t tcq_blocks_per_unit(uint32_t block) { return block >= 256 ? 1 : 256 / block; }
HX_HOST_DEVICE inline uint64_t tcq_units(const BlockTcqArgs& a) {
  const uint64_t per = tcq_blocks_per_unit(a.block);
  return (a.nblocks + per - 1) / per;
}
HX_DEVICE TcqSpan tcq_span(const BlockTcqArgs& a, uint64_t unit) {
  const uint64_t per_elems = tcq_blocks_per_unit(a.block) * a.block;
  TcqSpan sp;
  sp.r0 = unit * per_elems;
  sp.r1 = sp.r0 + per_elems < a.numel ? sp.r0 + per_elems : a.numel;
  return sp;
}

// The block holding element e (32-bit division where the tensor allows it).
HX_DEVICE uint64_t tcq_block_of(const BlockTcqArgs& a, uint64_t e) {
  if (a.numel <= 0xffffffffull) return static_cast<uint32_t>(e) / a.block;
  return e / a.block;
}

// Phase 1 of a chunk, per lane: the code of element e (0 past the span's end, so its bit in the ballot is 0).
template <bool kAligned>
HX_DEVICE uint32_t tcq_theta(const BlockTcqArgs& a, uint32_t mask, uint64_t e, uint64_t r1) {
  return e < r1 ? load_code<kAligned>(a.blob, a.blob_len, static_cast<uint32_t>(a.level_bits), mask, e) : 0u;
}

// The ballot with the carry folded in (for the lanes of the block that began before chunk start c0).
HX_DEVICE uint32_t tcq_fold(uint32_t ballot, const TcqCarry& c) {
  return ballot ^ ((c.v2 ^ c.v3) | ((c.v1 ^ c.v2) << 1) | (c.v1 << 2));
}

// u at lane t (0..31) of the chunk at c0, for the block starting at bs (bs ≤ c0 + t).
HX_DEVICE uint32_t tcq_u(uint32_t ballot, uint32_t folded, uint64_t c0, uint64_t bs, uint32_t t) {
  if (bs <= c0) return parity_of(folded & tcq_mask(t));
  return parity_of(ballot & tcq_mask(t) & (~0u << static_cast<uint32_t>(bs - c0)));
}

// Element e of block q with its parity: f = 2θ + parity, the block's level times its scale, the cast and the store.
template <int DT>
HX_DEVICE void tcq_emit(const BlockTcqArgs& a, uint32_t theta, uint64_t e, uint64_t q, uint32_t parity) {
  const uint64_t hbit = q * 10;
  const uint8_t* hp = a.blob + a.code_bytes + (hbit >> 3);
  const uint32_t h =
      ((static_cast<uint32_t>(HX_LDG(hp)) | (static_cast<uint32_t>(HX_LDG(hp + 1)) << 8)) >> (hbit & 7)) & 0x3ffu;
  const float s = HX_LDG(a.params + (h & 255u));
  const float* lv = a.params + 256 + (h >> 8) * (2u << a.level_bits);
  using E = typename BvqOut<DT>::E;
  static_cast<E*>(a.out)[e] = BvqOut<DT>::cast(HX_FMUL(HX_LDG(lv + 2 * theta + parity), s));
}

// Phase 2 of a chunk, per lane (any B): the parity before element e = c0 + lane, then tcq_emit.
template <int DT>
HX_DEVICE void tcq_store(const BlockTcqArgs& a, uint32_t theta, uint64_t c0, uint32_t lane, uint64_t r1,
                         uint32_t ballot, const TcqCarry& carry) {
  const uint64_t e = c0 + lane;
  if (e >= r1) return;
  const uint64_t q = tcq_block_of(a, e);
  const uint64_t bs = q * a.block;
  uint32_t parity = 0;
  if (e == bs) {
    parity = 0;
  } else if (lane == 0) {
    parity = carry.v1;
  } else {
    parity = tcq_u(ballot, tcq_fold(ballot, carry), c0, bs, lane - 1);
  }
  tcq_emit<DT>(a, theta, e, q, parity);
}

// The carry into the chunk after the one at c0 (the same value in every lane).
HX_DEVICE TcqCarry tcq_next_carry(const BlockTcqArgs& a, uint64_t c0, uint64_t r1, uint32_t ballot,
                                  const TcqCarry& carry) {
  TcqCarry next;
  const uint64_t n0 = c0 + 32;
  if (n0 >= r1) return next;
  const uint64_t bs = tcq_block_of(a, n0) * a.block;
  const uint32_t folded = tcq_fold(ballot, carry);
  if (n0 - 1 >= bs) next.v1 = tcq_u(ballot, folded, c0, bs, 31);
  if (n0 - 2 >= bs) next.v2 = tcq_u(ballot, folded, c0, bs, 30);
  if (n0 - 3 >= bs) next.v3 = tcq_u(ballot, folded, c0, bs, 29);
  return next;
}

// B a multiple of 32 (the default B = 32 among them): a span starts a block, so every chunk lies inside one block;
// the block index and the carry are kept from chunk to chunk, with no division and no block start inside a chunk.
// Fewer instructions per weight than the general path, which matters where the decode is issue-bound rather than
// memory-bound (float16 outputs).
struct TcqWhole {
  uint64_t q = 0;    // block of the current chunk
  uint32_t off = 0;  // the chunk's offset in its block
  TcqCarry carry;
};
HX_DEVICE TcqWhole tcq_whole_start(const BlockTcqArgs& a, const TcqSpan& sp) {
  TcqWhole w;
  w.q = tcq_block_of(a, sp.r0);
  return w;
}
// Phase 2 of a chunk, per lane (B a multiple of 32).
template <int DT>
HX_DEVICE void tcq_store_whole(const BlockTcqArgs& a, uint32_t theta, uint64_t c0, uint32_t lane, uint64_t r1,
                               uint32_t ballot, const TcqWhole& w) {
  const uint64_t e = c0 + lane;
  if (e >= r1) return;
  const uint32_t parity = lane == 0 ? w.carry.v1 : parity_of(tcq_fold(ballot, w.carry) & tcq_mask(lane - 1));
  tcq_emit<DT>(a, theta, e, w.q, parity);
}
// On to the next chunk (the same in every lane).
HX_DEVICE void tcq_whole_next(const BlockTcqArgs& a, uint32_t ballot, TcqWhole& w) {
  w.off += 32;
  if (w.off == a.block) {
    w.off = 0;
    ++w.q;
    w.carry = TcqCarry();
    return;
  }
  const uint32_t folded = tcq_fold(ballot, w.carry);
  w.carry.v1 = parity_of(folded & tcq_mask(31));
  w.carry.v2 = parity_of(folded & tcq_mask(30));
  w.carry.v3 = parity_of(folded & tcq_mask(29));
}

struct BlockTcqPlan {
  enum Status { kOk, kInvalid, kMisaligned } status = kOk;
  bool blob_aligned = false;  // 4-byte aligned blob: word code loads
  bool whole_chunks = false;  // B a multiple of 32: tcq_store_whole
  uint32_t elem_bytes = 4;
};

inline BlockTcqPlan plan_blocktcq(const BlockTcqArgs& a) {
  BlockTcqPlan p;
  switch (a.dtype) {
    case 1: p.elem_bytes = 4; break;
    case 11: p.elem_bytes = 8; break;
    case 10:
    case 16: p.elem_bytes = 2; break;
    default: p.status = BlockTcqPlan::kInvalid; return p;
  }
  if (a.level_bits < 1 || a.level_bits > 8 || a.block < 1 || a.params == nullptr) {
    p.status = BlockTcqPlan::kInvalid;
    return p;
  }
  if (!aligned_to(a.out, p.elem_bytes) || !aligned_to(a.params, 4)) {
    p.status = BlockTcqPlan::kMisaligned;
    return p;
  }
  p.blob_aligned = aligned_to(a.blob, 4);
  p.whole_chunks = a.block % 32 == 0;
  return p;
}

// Which kernels a decode launches: rows [0, rows) with the row kernel of row_bytes (0: none), then
// elements [elems_from, numel) with the element kernel (none when elems_from == numel).
struct DecodePlan {
  enum Status { kOk, kInvalid, kMisaligned } status = kOk;
  bool blob_aligned = false;  // 4-byte aligned blob: word code loads
  uint32_t row_bytes = 0;
  uint64_t rows = 0;
  uint64_t elems_from = 0;
};

inline DecodePlan plan_decode(const DecodeArgs& a) {
  DecodePlan p;
  if (a.group < 1 || a.bits < 1 || a.bits > 32 || (a.elem_bytes != 2 && a.elem_bytes != 4 && a.elem_bytes != 8)) {
    p.status = DecodePlan::kInvalid;
    return p;
  }
  if (!aligned_to(a.out, a.elem_bytes) || !aligned_to(a.table, a.elem_bytes)) {
    p.status = DecodePlan::kMisaligned;
    return p;
  }
  p.blob_aligned = aligned_to(a.blob, 4);
  const uint64_t g = static_cast<uint64_t>(a.group);
  const uint64_t row_bytes = g * a.elem_bytes;
  const uint64_t full_rows = a.numel / g;
  const bool word_row = row_bytes == 2 || row_bytes == 4 || row_bytes == 8 || row_bytes == 16;
  if (full_rows > 0 && word_row && aligned_to(a.out, row_bytes) && aligned_to(a.table, row_bytes)) {
    p.row_bytes = static_cast<uint32_t>(row_bytes);
    p.rows = full_rows;
    p.elems_from = full_rows * g;
  }
  return p;
}

}  // namespace detail
}  // namespace cuda
}  // namespace hyperonnx
