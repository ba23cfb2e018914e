// The HyperConv custom op (CPU execution provider): a 1×1 Conv (group 1, strides 1, no padding, dilations 1) whose
// kernel W [M, C, 1, …, 1] is read from θ a tile at a time. Over the spatial positions it is a GEMM: for image b,
// Y_b [M, S] = W [M, C] × X_b [C, S] (+ bias per output channel). It runs as Y_bᵀ = X_bᵀ × Wᵀ on the transposing
// tiles of HyperGemm's transB path (fused/matmul_nt.h), with every image's positions stacked as rows of one A, so
// W is decoded once per run: X is transposed in, Y transposed out (two passes over the activations).
#pragma once

#include <memory>
#include <string>

#include "base_op.h"

namespace hyperonnx {

constexpr const char* kConvOpName = "HyperConv";

class HyperConvKernel : public FusedKernelBase {
 public:
  HyperConvKernel(std::string node, std::unique_ptr<FusedWeight> weight)
      : FusedKernelBase(kConvOpName, std::move(node), std::move(weight), 1) {}

  // The weight viewed as [M, C] (the codecs' blobs are laid out over the row-major elements alone), after checking
  // that the node's shape is a 1×…×1 kernel [M, C, 1, …, 1].
  static std::unique_ptr<FusedWeight> CreateWeight(const AttrSource& attrs, std::string* error);
  OrtStatus* Init(const OrtApi& api, const OrtKernelInfo* info);  // the kernel's rank

 protected:
  OrtStatus* Run(Ort::KernelContext& ctx, const uint8_t* blob, size_t len) override;

 private:
  size_t rank_ = 4;  // of W and X
};

struct HyperConvOp : FusedOpWithBias<HyperConvOp, HyperConvKernel> {
  const char* GetName() const { return kConvOpName; }
};

}  // namespace hyperonnx
