// A HyperDecode-encoded 2-D weight (K rows, N columns, row-major) that the fused kernels read a row segment at a
// time, so no caller ever holds the whole fp32 tensor. Independent of ONNX Runtime (the ops wrap it; the C++ tests
// drive it directly).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../attrs.h"
#include "../codecs/blockvq.h"
#include "../decoder.h"
#include "gemm.h"
#include "tcq_rows.h"

namespace hyperonnx {

class FusedWeight {
 public:
  // Reads and validates every attribute exactly as HyperDecode does (Decoder::create), then what fusion needs: a
  // blocktcq or blockvq weight of dtype float32 and rank 2. Null with *error set (without the node name) otherwise.
  static std::unique_ptr<FusedWeight> create(const AttrSource& attrs, std::string* error);

  // The kernels this weight runs (gemm.h, best_isa() when it was created): scalar (the codec's own decoder and a
  // portable multiply), avx2 or avx512 (blocktcq's SIMD decode, tcq_rows.h, and a SIMD multiply).
  FusedIsa isa() const { return isa_; }
  // Which kernel decodes blocktcq's whole blocks: TcqRows::name() ("avx2", "avx512vbmi", "neon"), else "codec" (the
  // codec's own decoder: blockvq, HYPERONNX_FUSED_ISA=scalar, or what the SIMD kernels do not take).
  const char* decode_kernel() const { return tcq_rows_ ? tcq_rows_->name() : "codec"; }

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  const Decoder& decoder() const { return *dec_; }

  // The blob checks HyperDecode makes (exact length, the codec's own validation); false with *error set.
  bool check(const uint8_t* blob, size_t len, std::string* error) const;

  // Hints the CPU to fetch the blob bytes that elements [e0, e0 + n) are decoded from (codes and block headers).
  void prefetch(const uint8_t* blob, size_t len, uint64_t e0, uint64_t n) const;

  // Writes elements [e0, e1) of the row-major weight (any range) to out as float32, bit-identical to the decoder.
  // The blob must have passed check(). `scratch` holds partial blocks (reused between calls).
  bool decode(const uint8_t* blob, size_t len, uint64_t e0, uint64_t e1, float* out, std::vector<float>* scratch,
              std::string* error) const;

  // Whether gemv() takes batch M: a blocktcq weight whose rows are whole blocks, on a CPU with the register GEMV
  // (tcq_vbmi.h).
  bool has_gemv(int64_t M) const {
    return tcq_rows_ && cols_ % static_cast<int64_t>(block_) == 0 && tcq_rows_->has_gemv(M);
  }
  // Y[m, n] += Σ_k A[m, k] · W[k, n] for m < M, k0 ≤ k < k1 (A's row stride lda, Y's N), with no decoded row
  // written to memory. Only where has_gemv(M); the blob must have passed check().
  // Whether gemv_nt() takes batch M (as has_gemv(), for the transposed product).
  bool has_gemv_nt(int64_t M) const {
    return tcq_rows_ && cols_ % static_cast<int64_t>(block_) == 0 && tcq_rows_->has_dot(M);
  }
  // Y[m·ldy + r] = Σ_k A[m, k] · W[n0 + r, k] for m < M, r < nr (A: M × cols(), row stride lda): the product with Wᵀ
  // (fused/matmul_nt.h) for rows [n0, n0 + nr), straight from registers. Only where has_gemv_nt(M).
  void gemv_nt(const uint8_t* blob, size_t len, int64_t n0, int64_t nr, const float* A, int64_t lda, int64_t M,
               float* Y, int64_t ldy) const {
    const uint64_t row_blocks = static_cast<uint64_t>(cols_) / block_;
    tcq_rows_->dot(blob, len, static_cast<uint64_t>(n0) * row_blocks, row_blocks, nr, A, lda, M, Y, ldy);
  }
  void gemv(const uint8_t* blob, size_t len, int64_t k0, int64_t k1, const float* A, int64_t lda, int64_t M,
            float* Y) const {
    const uint64_t row_blocks = static_cast<uint64_t>(cols_) / block_;
    tcq_rows_->gemv(blob, len, static_cast<uint64_t>(k0) * row_blocks, row_blocks, k1 - k0, A + k0, lda, M, Y, cols_);
  }

 private:
  FusedWeight() = default;

  std::unique_ptr<Decoder> dec_;
  const BlockVQParams* tcq_ = nullptr;  // blocktcq's parameters, else null
  std::unique_ptr<TcqRows> tcq_rows_;   // blocktcq's SIMD path for whole blocks (tcq_rows.h), where it applies
  uint64_t block_ = 1, bits_ = 1, group_ = 1, code_bytes_ = 0;  // the blob's layout, for prefetch()
  int64_t rows_ = 0, cols_ = 0;
  FusedIsa isa_ = FusedIsa::kScalar;
};

}  // namespace hyperonnx
