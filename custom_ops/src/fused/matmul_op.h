// The HyperMatMul custom op (CPU execution provider): Y = A × decode(θ) for a 2-D blocktcq or blockvq weight, with
// the weight decoded a tile at a time inside the multiply (fused/matmul.h) instead of materialized. With transB = 1
// the weight is stored [N, K] and Y = A × decode(θ)ᵀ (fused/matmul_nt.h): a tied LM head reading its embedding
// table through a Transpose. Same attributes and the same validation as HyperDecode (docs/fused.md); every failure
// is one status naming the node.
#pragma once

#include <memory>
#include <string>

#include "base_op.h"

namespace hyperonnx {

constexpr const char* kMatMulOpName = "HyperMatMul";

class HyperMatMulKernel : public FusedKernelBase {
 public:
  HyperMatMulKernel(std::string node, std::unique_ptr<FusedWeight> weight)
      : FusedKernelBase(kMatMulOpName, std::move(node), std::move(weight), 1) {}

  OrtStatus* Init(const OrtApi& api, const OrtKernelInfo* info);  // transB

 protected:
  OrtStatus* Run(Ort::KernelContext& ctx, const uint8_t* blob, size_t len) override;

 private:
  bool trans_b_ = false;
};

struct HyperMatMulOp : FusedOpBase<HyperMatMulOp, HyperMatMulKernel> {
  HyperMatMulOp();

  const char* GetName() const { return kMatMulOpName; }
  size_t GetInputTypeCount() const { return 2; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return i == 0 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT : ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
  }
};

}  // namespace hyperonnx
