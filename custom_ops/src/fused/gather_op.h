// The HyperGather custom op (CPU execution provider): Y = Gather(decode(θ), indices, axis = 0) for a 2-D weight
// [V, D] (an embedding table), decoding only the requested rows (fused/gather.h). Indices are int32 or int64, of any
// shape, with ONNX's negative-index rule; one out of range fails the run with one status naming the node.
#pragma once

#include <memory>
#include <string>

#include "base_op.h"

namespace hyperonnx {

constexpr const char* kGatherOpName = "HyperGather";

class HyperGatherKernel : public FusedKernelBase {
 public:
  HyperGatherKernel(std::string node, std::unique_ptr<FusedWeight> weight)
      : FusedKernelBase(kGatherOpName, std::move(node), std::move(weight), 0) {}

  OrtStatus* Init(const OrtApi&, const OrtKernelInfo*) { return nullptr; }

 protected:
  OrtStatus* Run(Ort::KernelContext& ctx, const uint8_t* blob, size_t len) override;
};

struct HyperGatherOp : FusedOpBase<HyperGatherOp, HyperGatherKernel> {
  const char* GetName() const { return kGatherOpName; }
  size_t GetInputTypeCount() const { return 2; }
  // indices: int32 or int64, checked by the kernel (UNDEFINED lets ORT bind either).
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return i == 0 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  }
};

}  // namespace hyperonnx
