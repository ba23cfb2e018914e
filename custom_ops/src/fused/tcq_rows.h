// blocktcq's fast decode for the fused kernels: whole blocks of a multiple of 32 weights to float32, 32 weights at a
// time in SIMD registers (docs/fused.md). Bit-identical to the codec's decoder (codecs/blocktcq.cc), which the
// fused ops fall back to for everything this path does not take.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "../codecs/blockvq.h"
#include "code_widths.h"

namespace hyperonnx {

struct TcqKernels;

class TcqRows {
 public:
  // Null where the fast path does not apply: it needs a float32 weight, blocks of a multiple of 32 weights, codes
  // of 1..7 bits, finite level sets and scales, and x86 AVX2 + BMI2 or aarch64 NEON (tcq_rows_available(); NEON:
  // tcq_neon.h). allow_vbmi: codes of up to 6 bits take the AVX-512 VBMI kernel where the CPU has it (tcq_vbmi.h).
  static std::unique_ptr<TcqRows> create(const BlockVQParams& p, bool allow_vbmi);
  using RunFn = void (*)(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t q1, float* out);
  // y[m·ldy + j] += Σ_r a[m·lda + r] · W_r[j] for m < M, r < nrows, j < row_blocks·B, where row W_r is blocks
  // [q0 + r·row_blocks, q0 + (r + 1)·row_blocks) (a row-major weight whose width is a multiple of B).
  using GemvFn = void (*)(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t row_blocks,
                          int64_t nrows, const float* a, int64_t lda, float* y, int64_t ldy);

  // Writes blocks [q0, q1) (B·(q1 − q0) weights) to out. blob: the whole checked blob of len bytes.
  void run(const uint8_t* blob, size_t len, uint64_t q0, uint64_t q1, float* out) const {
    run_(*this, blob, len, q0, q1, out);
  }

  // The kernel family: "avx2", "avx512vbmi" or "neon" (the tests check the dispatch by it).
  const char* name() const { return name_; }

  // The GEMV above for batch M, where this CPU has one (AVX-512 VBMI or NEON, M ≤ kTcqGemvMaxM): the weights go from
  // registers into the products, never to memory. Summation order: rows in groups of four, then into y.
  bool has_gemv(int64_t M) const { return M >= 1 && M <= kTcqGemvMaxM && gemv_[M] != nullptr; }
  void gemv(const uint8_t* blob, size_t len, uint64_t q0, uint64_t row_blocks, int64_t nrows, const float* a,
            int64_t lda, int64_t M, float* y, int64_t ldy) const {
    gemv_[M](*this, blob, len, q0, row_blocks, nrows, a, lda, y, ldy);
  }
  static constexpr int64_t kTcqGemvMaxM = 3;
  // The transposed product, from registers as gemv(): y[m·ldy + r] = Σ_k a[m·lda + k] · W_r[k] for m < M, r < nrows
  // (overwritten), rows W_r as for gemv() (a weight stored [N, K], K a multiple of B). Each row is summed in M·4
  // vector accumulators, then across their lanes.
  bool has_dot(int64_t M) const { return M >= 1 && M <= kTcqGemvMaxM && dot_[M] != nullptr; }
  void dot(const uint8_t* blob, size_t len, uint64_t q0, uint64_t row_blocks, int64_t nrows, const float* a,
           int64_t lda, int64_t M, float* y, int64_t ldy) const {
    dot_[M](*this, blob, len, q0, row_blocks, nrows, a, lda, y, ldy);
  }

  // The level sets as byte planes for the in-register lookup: for level set c, byte p (0 = lowest) of the float32
  // level, 16-level chunk j: 32 bytes (the chunk's 16 bytes, twice, one copy per 128-bit lane) at
  // planes[((c·4 + p)·chunks + j)·32].
  const BlockVQParams& params() const { return p_; }
  const uint8_t* planes() const { return planes_.data(); }
  int chunks() const { return chunks_; }
  // The same for the VBMI kernel (2L ≤ 64): per level set c, planes 0-3 of 64 bytes each at planes64()[c·256 + p·64].
  const uint8_t* planes64() const { return planes64_.data(); }
  // 6-bit codes (2L = 128): per level set c, planes 0-3 of 128 bytes each at planes128()[c·512 + p·128].
  const uint8_t* planes128() const { return planes128_.data(); }
  // 7-bit codes (2L = 256), for the NEON kernel: per level set c, planes 0-3 of 256 bytes at
  // planes256()[c·1024 + p·256].
  const uint8_t* planes256() const { return planes256_.data(); }

 private:
  TcqRows(const BlockVQParams& p, const TcqKernels& k);

  const BlockVQParams& p_;  // owned by the codec's decoder, which outlives this
  RunFn run_;
  const char* name_ = "";
  GemvFn gemv_[kTcqGemvMaxM + 1] = {};
  GemvFn dot_[kTcqGemvMaxM + 1] = {};
  int chunks_ = 1;
  std::vector<uint8_t> planes_, planes64_, planes128_, planes256_;
};

// One code width's kernels in a SIMD family (tcq_vbmi.h, tcq_neon.h); null where the family has none.
struct TcqKernels {
  TcqRows::RunFn run = nullptr;
  TcqRows::GemvFn gemv[TcqRows::kTcqGemvMaxM + 1] = {};  // by batch M; [0] unused
  TcqRows::GemvFn dot[TcqRows::kTcqGemvMaxM + 1] = {};
};

// A SIMD family's kernels, declared once for both: tcq_vbmi.cc and tcq_neon.cc each define them for their own Tag
// (`template <> template <int BITS> void TcqFamily<Neon>::run(...)`), outside any class body, so that they are not
// implicitly inline: GCC 12 then compiles them to the instructions of the free functions they replaced.
template <class Tag>
struct TcqFamily {
  // The decode (a RunFn) for codes of BITS bits.
  template <int BITS>
  static void run(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t q1, float* out);
  // The GEMV and the transposed product (GemvFns, TcqRows::gemv and TcqRows::dot) for batch M.
  template <int BITS, int M>
  static void gemv(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t row_blocks,
                   int64_t nrows, const float* a, int64_t lda, float* y, int64_t ldy);
  template <int BITS, int M>
  static void dot(const TcqRows& rows, const uint8_t* blob, size_t len, uint64_t q0, uint64_t row_blocks,
                  int64_t nrows, const float* a, int64_t lda, float* y, int64_t ldy);
};

// TcqFamily<Tag>'s kernels for codes of `bits` bits in [Lo, Hi] (every batch 1..kTcqGemvMaxM), else all null.
template <class Tag, int Lo, int Hi>
TcqKernels tcq_kernels(int bits) {
  using Family = TcqFamily<Tag>;
  return for_bits<Lo, Hi>(bits, [](auto b) {
    using Bits = decltype(b);
    TcqKernels k;
    k.run = &Family::template run<Bits::value>;
    for (int m = 1; m <= TcqRows::kTcqGemvMaxM; ++m) {
      k.gemv[m] = for_bits<1, TcqRows::kTcqGemvMaxM>(
          m, [](auto batch) { return &Family::template gemv<Bits::value, decltype(batch)::value>; });
      k.dot[m] = for_bits<1, TcqRows::kTcqGemvMaxM>(
          m, [](auto batch) { return &Family::template dot<Bits::value, decltype(batch)::value>; });
    }
    return k;
  });
}

// Whether this CPU runs the fast path (x86 AVX2 + BMI2, or aarch64 NEON unless HYPERONNX_FUSED_ISA=scalar).
bool tcq_rows_available();

// The trellis parity's closed form (docs/format.md, "blocktcq"): u = x / (1 + z² + z³) over GF(2)[z] mod z³² (bit t
// of a word = the coefficient of z^t), four steps U ^= U·(z^a + z^b) (the product (1 + y)(1 + y²)(1 + y⁴)(1 + y⁸),
// y = z² + z³). tcq_rows.cc proves it equal to the recurrence u_t = x_t ⊕ u_(t−2) ⊕ u_(t−3).
constexpr uint32_t tcq_parity_prefix(uint32_t u) {
  u ^= (u << 2) ^ (u << 3);
  u ^= (u << 4) ^ (u << 6);
  u ^= (u << 8) ^ (u << 12);
  u ^= (u << 16) ^ (u << 24);
  return u;
}

}  // namespace hyperonnx
