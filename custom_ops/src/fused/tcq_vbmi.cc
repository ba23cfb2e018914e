// blocktcq's AVX-512 VBMI decode, 64 weights a step (codes of at most 6 bits: 2L ≤ 128 fine levels), and the GEMV
// that multiplies them straight from registers (tcq_vbmi.h). Per 64 weights:
//   codes: one masked 8·BITS-byte load, one byte permute that gives each 64-bit lane the BITS bytes of its 8 codes,
//     one multishift that pulls each code's bits into its byte (no pdep: it is microcoded on AMD Zen 1/2 and its
//     spread-to-bytes work is what multishift does for 64 bytes at once);
//   parity: the 64 low bits in one mask, the GF(2) prefix (tcq_rows.cc) on each 32-weight half in scalar registers;
//   levels: f = 2θ + parity, reordered by one byte permute, indexes four byte planes, one 128-entry permute each
//     (the two halves' level sets side by side; 6-bit codes: one per half, blended), and eight in-lane unpacks
//     interleave the planes into 64 floats in weight order; one multiply by each half's block scale.
// The 32-wide kernel of tcq_rows.cc spent about 55 instructions per 32 weights (4 pdep and their inserts, the
// per-block loop); this is about 40 per 64 (hyperonnx_fused_bench, docs/fused.md).
#include "tcq_vbmi.h"

#include <array>
#include <cstring>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#define HX_VBMI_X86 1
#endif

namespace hyperonnx {

#ifdef HX_VBMI_X86
namespace {

// GCC 12's AVX-512 headers pass an undefined vector as the unused merge operand of unmasked intrinsics, which
// -W(maybe-)uninitialized reports once they are inlined here: a false positive.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#define HX_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi,avx2,pclmul")))

// The parity recurrence's response, 64 weights long (bit t of a word = weight t; docs/format.md, "blocktcq"):
// u_t = x_t ^ u_(t−2) ^ u_(t−3), walked one weight at a time from carry c (bits 0-2: u_(−3), u_(−2), u_(−1)).
constexpr uint64_t parity_walk64(uint64_t x, uint32_t c) {
  uint64_t u = 0;
  auto bit = [&](int t) -> uint64_t { return t >= 0 ? (u >> t) & 1u : (c >> (t + 3)) & 1u; };
  for (int t = 0; t < 64; ++t) u |= (((x >> t) & 1u) ^ bit(t - 2) ^ bit(t - 3)) << t;
  return u;
}

// The map is linear over GF(2): u = x ⊗ P ⊕ R[c], with P = 1 / (1 + z² + z³) mod z⁶⁴ (the response to x = 1) and
// R[c] the response to the carry alone. So one carry-less multiply gives 64 parities, where the shift-xor prefix
// of tcq_rows.cc took 16 shifts per 32 weights (shifts run on two of Zen 4's four ALUs: that prefix was 40 % of
// this kernel's time, hyperonnx_fused_bench).
constexpr uint64_t kParityP = parity_walk64(1, 0);
struct CarryTable {
  uint64_t r[8];
};
constexpr CarryTable make_carry_table() {
  CarryTable t{};
  for (uint32_t c = 0; c < 8; ++c) t.r[c] = parity_walk64(0, c);
  return t;
}
constexpr CarryTable kCarry = make_carry_table();

constexpr uint64_t clmul_low(uint64_t a, uint64_t b) {
  uint64_t r = 0;
  for (int i = 0; i < 64; ++i) r ^= ((b >> i) & 1u) ? a << i : 0;
  return r;
}
// Linear in x and in c, so checking unit vectors proves every input.
constexpr bool product_matches_walk() {
  for (int t = 0; t < 64; ++t) {
    if ((clmul_low(uint64_t{1} << t, kParityP)) != parity_walk64(uint64_t{1} << t, 0)) return false;
  }
  for (uint32_t c = 1; c < 8; c <<= 1) {
    if (kCarry.r[c] != parity_walk64(0, c)) return false;
  }
  return true;
}
static_assert(product_matches_walk(), "x ⊗ P ⊕ R[c] must equal the parity recurrence");

constexpr __mmask64 kUpper = 0xffffffff00000000ull;  // the bytes of a step's second 32 weights
constexpr __mmask64 kUpperOrdered = 0xff00ff00ff00ff00ull;  // the same after Indices::order

struct Indices {
  alignas(64) uint8_t spread[64];      // byte 8j + i of lane j: code byte BITS·j + i
  alignas(64) uint8_t shift[64];       // byte i of each lane: bit offset BITS·i
  alignas(64) uint8_t order[64];       // byte 16L + 4v + i: weight 16v + 4L + i (see decode64's unpacks)
};

constexpr Indices make_indices(int bits) {
  Indices x{};
  for (int j = 0; j < 8; ++j) {
    for (int i = 0; i < 8; ++i) {
      const int src = bits * j + i;
      x.spread[8 * j + i] = static_cast<uint8_t>(src < 63 ? src : 63);
      x.shift[8 * j + i] = static_cast<uint8_t>(bits * i);
    }
  }
  for (int lane = 0; lane < 4; ++lane) {
    for (int v = 0; v < 4; ++v) {
      for (int i = 0; i < 4; ++i) x.order[16 * lane + 4 * v + i] = static_cast<uint8_t>(16 * v + 4 * lane + i);
    }
  }
  return x;
}

template <int BITS>
struct Tables {
  static constexpr Indices kIdx = make_indices(BITS);
};

// Where a stream of whole blocks stands: the next 32 weights are 32-weight chunk `pos` of block q.
struct Cursor {
  uint64_t q = 0, pos = 0;
  uint32_t carry = 0, header = 0;
};

struct Ctx {
  const uint8_t* blob;
  uint64_t len;
  const uint8_t* headers;
  const float* scales;
  const uint8_t* planes;  // TcqRows::planes64() (BITS ≤ 5) or planes128() (BITS = 6)
  uint64_t per_block;     // 32-weight chunks per block
};

inline void advance(const Ctx& c, Cursor* cur) {
  if (++cur->pos == c.per_block) {
    cur->pos = 0;
    ++cur->q;
  }
}

// 64 weights (two = false: 32) at the cursor into w[0..3] (w[0..1]), moving it on. Always inlined: once the
// transposed product also called it, GCC stopped inlining the 6-bit form into the GEMV, and w[] went through memory
// (4096², M = 1: 0.25 against 0.15 ns a weight). kFresh: blocks of 32 (the
// default), where every half starts a block, so no carry links one step to the next: a carry chained through a
// select would serialize the steps on the multiply's latency.
template <int BITS, bool kFresh>
HX_VBMI __attribute__((always_inline)) inline void decode64(const Ctx& c, Cursor* cur, bool two, __m512 w[4]) {
  const Indices& idx = Tables<BITS>::kIdx;
  const uint64_t at = (cur->q * c.per_block + cur->pos) * 4 * BITS;  // 32 codes = 4·BITS bytes
  // The two halves' headers; a half that starts a block starts the recurrence afresh.
  if (kFresh || cur->pos == 0) {
    cur->header = block_header(c.headers, cur->q);
    cur->carry = 0;
  }
  const uint32_t h0 = cur->header, carry_in = kFresh ? 0u : cur->carry;
  advance(c, cur);
  uint32_t h1 = h0;
  bool restart = false;
  if (two) {
    restart = kFresh || cur->pos == 0;
    if (restart) cur->header = block_header(c.headers, cur->q);
    h1 = cur->header;
    advance(c, cur);
  }
  const __mmask64 load = two ? ~__mmask64{0} >> (64 - 8 * BITS) : ~__mmask64{0} >> (64 - 4 * BITS);
  // The codes 512 bytes on (about 13 steps): benchmarks/fused.py runs other sessions between two of this one's,
  // so the codes come from DRAM, and the GEMV's four row streams outrun the hardware prefetcher (M = 1, 4096²:
  // 2.7 → 2.0 ms).
  __builtin_prefetch(c.blob + at + 512);
  // A plain load where 64 bytes are readable (the bytes past the step's codes only reach weights it drops).
  const __m512i raw = at + 64 <= c.len ? _mm512_loadu_si512(c.blob + at) : _mm512_maskz_loadu_epi8(load, c.blob + at);
  const __m512i spread = _mm512_permutexvar_epi8(_mm512_load_si512(idx.spread), raw);
  const __m512i theta = _mm512_and_si512(_mm512_multishift_epi64_epi8(_mm512_load_si512(idx.shift), spread),
                                         _mm512_set1_epi8(static_cast<char>((1 << BITS) - 1)));
  const uint64_t x = _mm512_test_epi8_mask(theta, _mm512_set1_epi8(1));
  const __m128i product = _mm_clmulepi64_si128(_mm_cvtsi64_si128(static_cast<int64_t>(x)),
                                               _mm_cvtsi64_si128(static_cast<int64_t>(kParityP)), 0x00);
  uint64_t u = static_cast<uint64_t>(_mm_cvtsi128_si64(product));
  if (!kFresh) u ^= kCarry.r[carry_in];
  uint64_t parity = (u << 1) | (carry_in >> 2);
  if (restart) {  // take the lower half's carry back out of the upper half (its response, 32 weights on)
    u ^= kCarry.r[(u >> 29) & 7u] << 32;
    parity = ((u << 1) | (carry_in >> 2)) & ~(uint64_t{1} << 32);
  }
  if (!kFresh) cur->carry = static_cast<uint32_t>(two ? u >> 61 : (u >> 29) & 7u);
  const float s0 = c.scales[h0 & 255u], s1 = c.scales[h1 & 255u];
  constexpr uint32_t kSetBytes = BITS <= 5 ? 256 : 512;  // four planes of 64 or 128 entries
  const uint8_t* tab0 = c.planes + (h0 >> 8) * kSetBytes;
  const uint8_t* tab1 = c.planes + (h1 >> 8) * kSetBytes;
  const __m512i twice = _mm512_add_epi8(theta, theta);
  __m512i f = _mm512_mask_add_epi8(twice, parity, twice, _mm512_set1_epi8(1));
  if (BITS <= 5) f = _mm512_mask_add_epi8(f, kUpper, f, _mm512_set1_epi8(64));  // the upper half's own set
  // Reordered so that in-lane unpacks, not cross-lane permutes, interleave the four byte planes into floats in
  // weight order: one single-source permute here in place of four two-source byte and four word permutes after
  // the lookup (register GEMV, M = 1, 6 bits on SmolLM2's shapes: 0.156–0.171 → 0.140–0.148 ns a weight,
  // hyperonnx_fused_bench; docs/fused.md, Measurements).
  f = _mm512_permutexvar_epi8(_mm512_load_si512(idx.order), f);
  const __m512i* t0 = reinterpret_cast<const __m512i*>(tab0);
  const __m512i* t1 = reinterpret_cast<const __m512i*>(tab1);
  __m512i plane[4];
  if (BITS <= 5) {  // f < 64: one permute of 128 entries looks up both halves, the upper one in its own set
    for (int p = 0; p < 4; ++p) {
      plane[p] = _mm512_permutex2var_epi8(_mm512_loadu_si512(t0 + p), f, _mm512_loadu_si512(t1 + p));
    }
  } else {  // f < 128: a permute per half and plane (two vectors of 64 entries each), blended
    for (int p = 0; p < 4; ++p) {
      const __m512i lo =
          _mm512_permutex2var_epi8(_mm512_loadu_si512(t0 + 2 * p), f, _mm512_loadu_si512(t0 + 2 * p + 1));
      const __m512i hi =
          _mm512_permutex2var_epi8(_mm512_loadu_si512(t1 + 2 * p), f, _mm512_loadu_si512(t1 + 2 * p + 1));
      plane[p] = _mm512_mask_blend_epi8(kUpperOrdered, lo, hi);
    }
  }
  // Lane L of w[v] is bytes 16L + 4v … 16L + 4v + 3 of the planes: weights 16v + 4L …, by Indices::order.
  const __m512i p01lo = _mm512_unpacklo_epi8(plane[0], plane[1]), p23lo = _mm512_unpacklo_epi8(plane[2], plane[3]);
  const __m512 scale0 = _mm512_set1_ps(s0);
  w[0] = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(p01lo, p23lo)), scale0);
  w[1] = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(p01lo, p23lo)), scale0);
  // The second half always (a step of 32 weights leaves it unused): no branch in the hot loop.
  const __m512i p01hi = _mm512_unpackhi_epi8(plane[0], plane[1]), p23hi = _mm512_unpackhi_epi8(plane[2], plane[3]);
  const __m512 scale1 = _mm512_set1_ps(s1);
  w[2] = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_unpacklo_epi16(p01hi, p23hi)), scale1);
  w[3] = _mm512_mul_ps(_mm512_castsi512_ps(_mm512_unpackhi_epi16(p01hi, p23hi)), scale1);
}

template <int BITS, bool kFresh>
HX_VBMI void run_blocks(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t q1, float* out) {
  const BlockVQParams& p = rows.params();
  const Ctx c{blob, len, blob + p.code_bytes, p.scales.data(), BITS <= 5 ? rows.planes64() : rows.planes128(),
              p.block / 32};
  Cursor cur;
  cur.q = q0;
  const uint64_t chunks = (q1 - q0) * c.per_block;
  __m512 w[4];
  uint64_t i = 0;
  for (; i + 2 <= chunks; i += 2, out += 64) {
    decode64<BITS, kFresh>(c, &cur, true, w);
    for (int j = 0; j < 4; ++j) _mm512_storeu_ps(out + 16 * j, w[j]);
  }
  if (i < chunks) {
    decode64<BITS, kFresh>(c, &cur, false, w);
    _mm512_storeu_ps(out, w[0]);
    _mm512_storeu_ps(out + 16, w[1]);
  }
}

constexpr int kGemvRows = 4;

// R rows (R·M broadcasts of A, M·4 accumulators): y[m] += Σ_r a[m, r] · W_r, 64 columns a step.
template <int BITS, int M, int R, bool kFresh>
HX_VBMI inline void gemv_group(const Ctx& c, uint64_t q0, uint64_t row_blocks, const float* a, int64_t lda, float* y,
                               int64_t ldy) {
  const uint64_t chunks = row_blocks * c.per_block;
  Cursor cur[R];
  __m512 av[R][M];
  for (int r = 0; r < R; ++r) {
    cur[r].q = q0 + static_cast<uint64_t>(r) * row_blocks;
    for (int m = 0; m < M; ++m) av[r][m] = _mm512_set1_ps(a[m * lda + r]);
  }
  for (uint64_t i = 0; i < chunks; i += 2) {
    const bool two = i + 2 <= chunks;
    __m512 acc[M][4];
    for (int m = 0; m < M; ++m) {
      for (int j = 0; j < 4; ++j) acc[m][j] = _mm512_setzero_ps();
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      __m512 w[4];
      if (kFresh) {  // the step's blocks from i alone: no cursor carried through memory from step to step
        Cursor at;
        at.q = q0 + static_cast<uint64_t>(r) * row_blocks + i;
        decode64<BITS, true>(c, &at, two, w);
      } else {
        decode64<BITS, false>(c, &cur[r], two, w);
      }
      for (int m = 0; m < M; ++m) {
        for (int j = 0; j < 4; ++j) acc[m][j] = _mm512_fmadd_ps(av[r][m], w[j], acc[m][j]);
      }
    }
    float* yc = y + 32 * i;
    for (int m = 0; m < M; ++m) {
      for (int j = 0; j < (two ? 4 : 2); ++j) {
        float* dst = yc + m * ldy + 16 * j;
        _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), acc[m][j]));
      }
    }
  }
}

// Rows are taken kGemvRows at a time: their weight vectors are summed into M accumulators (each row times its A
// value) before Y is loaded and stored once, so Y's traffic is a quarter of a row's (Zen 4 stores one 512-bit
// vector per two cycles: writing every decoded weight out, as the row-buffer path does, costs about as much as
// decoding it).
template <int BITS, int M, bool kFresh>
HX_VBMI void gemv_blocks(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t row_blocks,
                         int64_t nrows, const float* a, int64_t lda, float* y, int64_t ldy) {
  const BlockVQParams& p = rows.params();
  const Ctx c{blob, len, blob + p.code_bytes, p.scales.data(), BITS <= 5 ? rows.planes64() : rows.planes128(),
              p.block / 32};
  int64_t r = 0;
  for (; r + kGemvRows <= nrows; r += kGemvRows) {
    gemv_group<BITS, M, kGemvRows, kFresh>(c, q0 + static_cast<uint64_t>(r) * row_blocks, row_blocks, a + r, lda, y,
                                           ldy);
  }
  for (; r < nrows; ++r) {
    gemv_group<BITS, M, 1, kFresh>(c, q0 + static_cast<uint64_t>(r) * row_blocks, row_blocks, a + r, lda, y, ldy);
  }
}

// The transposed product (HyperGemm and HyperMatMul transB, fused/matmul_nt.h): y[m·ldy + r] = Σ_k a[m·lda + k] ·
// W_r[k] for rows W_r of the weight stored [N, K]: each row's decoded vectors meet A's straight from registers in
// M·2 accumulators, summed across lanes at the row's end, where the transposing tiles write every row out and
// transpose it. With blocks of 32 each step's blocks come from i alone, as in gemv_group (no cursor carried from step
// to step), and two accumulators a row rather than four: SmolLM2's tied head, 49152 × 576 at 6 bits, M = 1, went
// from 0.18 to 0.16 ns a weight (hyperonnx_fused_bench, thread CPU time); two or four rows interleaved were slower.
template <int BITS, int M, bool kFresh>
HX_VBMI void dot_blocks(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t row_blocks,
                        int64_t nrows, const float* a, int64_t lda, float* y, int64_t ldy) {
  const BlockVQParams& p = rows.params();
  const Ctx c{blob, len, blob + p.code_bytes, p.scales.data(), BITS <= 5 ? rows.planes64() : rows.planes128(),
              p.block / 32};
  const uint64_t chunks = row_blocks * c.per_block;
  for (int64_t r = 0; r < nrows; ++r) {
    Cursor cur;
    cur.q = q0 + static_cast<uint64_t>(r) * row_blocks;
    __m512 acc[M][2];
    for (int m = 0; m < M; ++m) acc[m][0] = acc[m][1] = _mm512_setzero_ps();
    for (uint64_t i = 0; i < chunks; i += 2) {
      const bool two = i + 2 <= chunks;
      __m512 w[4];
      if (kFresh) {
        Cursor at;
        at.q = cur.q + i;
        decode64<BITS, true>(c, &at, two, w);
      } else {
        decode64<BITS, false>(c, &cur, two, w);
      }
      for (int m = 0; m < M; ++m) {
        const float* ak = a + m * lda + 32 * i;
        acc[m][0] = _mm512_fmadd_ps(_mm512_loadu_ps(ak), w[0], acc[m][0]);
        acc[m][1] = _mm512_fmadd_ps(_mm512_loadu_ps(ak + 16), w[1], acc[m][1]);
        if (two) {
          acc[m][0] = _mm512_fmadd_ps(_mm512_loadu_ps(ak + 32), w[2], acc[m][0]);
          acc[m][1] = _mm512_fmadd_ps(_mm512_loadu_ps(ak + 48), w[3], acc[m][1]);
        }
      }
    }
    for (int m = 0; m < M; ++m) y[m * ldy + r] = _mm512_reduce_add_ps(_mm512_add_ps(acc[m][0], acc[m][1]));
  }
}

bool host_has_vbmi() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("pclmul");
}

struct Vbmi {};  // this file's tag for TcqFamily (tcq_rows.h)

// kernel(std::true_type{}) for blocks of 32, the default, where every 32 weights start a block: the kernels' kFresh
// form, in which no carry links one step to the next; kernel(std::false_type{}) for longer blocks.
template <class Kernel>
void by_block(const TcqRows& rows, Kernel kernel) {
  if (rows.params().block == 32) {
    kernel(std::true_type{});
  } else {
    kernel(std::false_type{});
  }
}

}  // namespace

template <>
template <int BITS>
void TcqFamily<Vbmi>::run(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t q1,
                          float* out) {
  by_block(rows, [&](auto fresh) { run_blocks<BITS, decltype(fresh)::value>(rows, blob, len, q0, q1, out); });
}

template <>
template <int BITS, int M>
void TcqFamily<Vbmi>::gemv(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t row_blocks,
                           int64_t nrows, const float* a, int64_t lda, float* y, int64_t ldy) {
  by_block(rows, [&](auto fresh) {
    gemv_blocks<BITS, M, decltype(fresh)::value>(rows, blob, len, q0, row_blocks, nrows, a, lda, y, ldy);
  });
}

template <>
template <int BITS, int M>
void TcqFamily<Vbmi>::dot(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t row_blocks,
                          int64_t nrows, const float* a, int64_t lda, float* y, int64_t ldy) {
  by_block(rows, [&](auto fresh) {
    dot_blocks<BITS, M, decltype(fresh)::value>(rows, blob, len, q0, row_blocks, nrows, a, lda, y, ldy);
  });
}

#pragma GCC diagnostic pop

bool tcq_vbmi_available() {
  static const bool has = host_has_vbmi();
  return has;
}

TcqKernels tcq_vbmi_kernels(int bits) {
  return tcq_vbmi_available() ? tcq_kernels<Vbmi, 1, 6>(bits) : TcqKernels{};
}

#else

bool tcq_vbmi_available() { return false; }
TcqKernels tcq_vbmi_kernels(int) { return {}; }

#endif

}  // namespace hyperonnx
