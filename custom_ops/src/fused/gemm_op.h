// The HyperGemm custom op (CPU execution provider): Y = alpha · A′ × B′ + beta · C, ONNX Gemm with B = decode(θ)
// read a tile at a time (A′ = Aᵀ if transA, B′ = Bᵀ if transB; C optional, broadcast to [M, N]). transB = 0 runs
// HyperMatMul's units (fused/matmul.h), transB = 1 the transposing tile decoder (fused/matmul_nt.h).
#pragma once

#include <memory>
#include <string>

#include "base_op.h"

namespace hyperonnx {

constexpr const char* kGemmOpName = "HyperGemm";

class HyperGemmKernel : public FusedKernelBase {
 public:
  HyperGemmKernel(std::string node, std::unique_ptr<FusedWeight> weight)
      : FusedKernelBase(kGemmOpName, std::move(node), std::move(weight), 1) {}

  OrtStatus* Init(const OrtApi& api, const OrtKernelInfo* info);  // alpha, beta, transA, transB

 protected:
  OrtStatus* Run(Ort::KernelContext& ctx, const uint8_t* blob, size_t len) override;

 private:
  float alpha_ = 1.0f, beta_ = 1.0f;
  bool trans_a_ = false, trans_b_ = false;
};

struct HyperGemmOp : FusedOpWithBias<HyperGemmOp, HyperGemmKernel> {
  const char* GetName() const { return kGemmOpName; }
};

}  // namespace hyperonnx
