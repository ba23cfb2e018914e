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
template <typename E>
struct alignas(4 * sizeof(E) > 16 ? 16 : 4 * sizeof(E)) TcqQuad {
  E v[4];
};

// One weight of a block: θ, its level f = 2θ + (state & 1) in the block's fine level set `lv`, the product and
// the cast; the state's parity is u_(t−1) of the closed form (docs/format.md, "blocktcq"; the CPU decoder proves
// it equal to the NEXT walk), kept in three registers: u_t = (θ_t & 1) ⊕ u_(t−2) ⊕ u_(t−3).
template <int DT, bool kAligned>
HX_DEVICE typename BvqOut<DT>::E tcq_weight(const BlockTcqArgs& a, uint32_t mask, const float* __restrict__ lv,
                                            float s, uint64_t e, uint32_t& u1, uint32_t& u2, uint32_t& u3) {
  const uint32_t theta = load_code<kAligned>(a.blob, a.blob_len, static_cast<uint32_t>(a.level_bits), mask, e);
  const float v = HX_FMUL(HX_LDG(lv + 2 * theta + u1), s);
  const uint32_t u = (theta & 1u) ^ u2 ^ u3;
  u3 = u2;
  u2 = u1;
  u1 = u;
  return BvqOut<DT>::cast(v);
}

// Blocks first, first + stride, ...: each walked from state 0 at its first weight. kQuad: the output is aligned to
// four elements, so the weights from each multiple of 4 on go out as one vector store of four.
template <int DT, bool kAligned, bool kQuad>
HX_DEVICE void blocktcq_body(const BlockTcqArgs& a, uint64_t first, uint64_t stride) {
  using E = typename BvqOut<DT>::E;
  const uint32_t mask = code_mask(static_cast<uint32_t>(a.level_bits));
  const uint32_t fine = 2u << a.level_bits;
  const float* __restrict__ scales = a.params;
  const float* __restrict__ levels = a.params + 256;
  const uint8_t* __restrict__ headers = a.blob + a.code_bytes;
  E* __restrict__ out = static_cast<E*>(a.out);
  for (uint64_t q = first; q < a.nblocks; q += stride) {
    const uint64_t hbit = q * 10;
    const uint8_t* hp = headers + (hbit >> 3);
    const uint32_t h =
        ((static_cast<uint32_t>(HX_LDG(hp)) | (static_cast<uint32_t>(HX_LDG(hp + 1)) << 8)) >> (hbit & 7)) & 0x3ffu;
    const float s = HX_LDG(scales + (h & 255u));
    const float* lv = levels + (h >> 8) * fine;
    const uint64_t e0 = q * a.block;
    const uint64_t e1 = e0 + a.block < a.numel ? e0 + a.block : a.numel;
    uint32_t u1 = 0, u2 = 0, u3 = 0;
    uint64_t e = e0;
    if (kQuad) {
      for (; e < e1 && (e & 3); ++e) out[e] = tcq_weight<DT, kAligned>(a, mask, lv, s, e, u1, u2, u3);
      for (; e + 4 <= e1; e += 4) {
        TcqQuad<E> quad;
        for (int i = 0; i < 4; ++i) quad.v[i] = tcq_weight<DT, kAligned>(a, mask, lv, s, e + i, u1, u2, u3);
        reinterpret_cast<TcqQuad<E>*>(out)[e >> 2] = quad;
      }
    }
    for (; e < e1; ++e) out[e] = tcq_weight<DT, kAligned>(a, mask, lv, s, e, u1, u2, u3);
  }
}

struct BlockTcqPlan {
  enum Status { kOk, kInvalid, kMisaligned } status = kOk;
  bool blob_aligned = false;  // 4-byte aligned blob: word code loads
  bool quad_store = false;    // output aligned to four elements
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
  // TcqQuad of doubles is 32 bytes aligned to 16: a 16-byte aligned output suffices for its two 16-byte stores.
  p.quad_store = aligned_to(a.out, p.elem_bytes == 8 ? 16 : 4 * p.elem_bytes);
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
