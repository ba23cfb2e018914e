// What the ORT kernels of the fused ops (HyperMatMul, HyperGemm, HyperGather, HyperConv) share: the node's name and
// weight, the check of θ (constant: once, at session creation; fed at run time: every run), one-line errors naming
// the node, and running independent work units on the session's intra-op pool.
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "../kernel_attrs.h"
#include "../ort_api.h"
#include "weight.h"

namespace hyperonnx {

class FusedKernelBase {
 public:
  FusedKernelBase(const char* op, std::string node, std::unique_ptr<FusedWeight> weight, size_t theta_input)
      : op_(op), node_(std::move(node)), w_(std::move(weight)), theta_input_(theta_input) {}

  // The weight from the node's attributes (an op that views its weight differently hides this).
  static std::unique_ptr<FusedWeight> CreateWeight(const AttrSource& attrs, std::string* error) {
    return FusedWeight::create(attrs, error);
  }
  virtual ~FusedKernelBase() = default;

  // A constant θ is checked now, so a bad blob fails session creation as HyperDecode's does.
  OrtStatus* Prepare(const OrtApi& api, const OrtKernelInfo* info);
  // Every run: this run's θ (checked unless it is the constant Prepare checked), then the op's Run; an exception
  // becomes one status naming the node.
  OrtStatus* ComputeV2(OrtKernelContext* context);

 protected:
  // The op's work for one run, θ (blob, len) already checked. Null status on success.
  virtual OrtStatus* Run(Ort::KernelContext& ctx, const uint8_t* blob, size_t len) = 0;
  // "<op> node '<name>': <message>".
  OrtStatus* Error(OrtErrorCode code, const std::string& message) const;
  // Runs unit(u, &error) for u in [0, units) on ORT's pool (KernelContext_ParallelFor, so the session's thread
  // settings apply); the first failure's message, else empty.
  static std::string RunUnits(Ort::KernelContext& ctx, uint64_t units,
                              const std::function<bool(uint64_t, std::string*)>& unit);
  // Y [m, N] = A [m, K] × the weight [K, N], or with `transposed` A [m, K] × the weightᵀ (the weight is [N, K]),
  // decoded a tile at a time on the session's pool: HyperMatMul's and HyperGemm's product, HyperConv's over the
  // positions. The first unit's error, else empty.
  std::string Product(Ort::KernelContext& ctx, const uint8_t* blob, size_t len, const float* a, int64_t m,
                      bool transposed, float* y) const;
  // An optional input: null when the node omits it.
  static const OrtValue* OptionalInput(const Ort::KernelContext& ctx, size_t index);

  const char* op_;
  std::string node_;
  std::unique_ptr<FusedWeight> w_;
  size_t theta_input_;
  const void* checked_blob_ = nullptr;  // the constant θ Prepare checked (it never changes)
};

// Creates kernel K for ORT's CreateKernelV2: the weight's attributes are read and validated as HyperDecode's
// (K::CreateWeight), then K(node, weight).Init(api, info) reads the op's own attributes and Prepare checks a
// constant θ; every failure is one status naming the node.
template <typename K>
OrtStatus* create_fused_kernel(const OrtApi& api, const OrtKernelInfo* info, const char* op, void** kernel) {
  const std::string node = kernel_node_name(api, info);
  try {
    std::string error;
    std::unique_ptr<FusedWeight> w = K::CreateWeight(KernelInfoAttrs(api, info), &error);
    if (!w) return api.CreateStatus(ORT_INVALID_ARGUMENT, (std::string(op) + " node '" + node + "': " + error).c_str());
    auto k = std::make_unique<K>(node, std::move(w));
    if (OrtStatus* status = k->Init(api, info)) return status;
    if (OrtStatus* status = k->Prepare(api, info)) return status;
    *kernel = k.release();
    return nullptr;
  } catch (const std::exception& e) {
    return api.CreateStatus(ORT_FAIL, (std::string(op) + " node '" + node + "': " + e.what()).c_str());
  }
}

// The ORT op definition every fused op shares: the CPU provider, one float output, and kernel K created by
// create_fused_kernel under the op's name. An op adds its inputs (count, types, which are optional).
template <typename Op, typename K>
struct FusedOpBase : Ort::CustomOpBase<Op, K, /*WithStatus=*/true> {
  OrtStatus* CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    return create_fused_kernel<K>(api, info, static_cast<const Op*>(this)->GetName(), kernel);
  }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT; }
};

// The op definition of HyperGemm and HyperConv: float data, θ, and an optional float third input (C, the bias).
template <typename Op, typename K>
struct FusedOpWithBias : FusedOpBase<Op, K> {
  size_t GetInputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetInputType(size_t i) const {
    return i == 1 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const {
    return i == 2 ? OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_OPTIONAL
                  : OrtCustomOpInputOutputCharacteristic::INPUT_OUTPUT_REQUIRED;
  }
};

// A string for a shape, "[2, 3]".
std::string shape_string(const std::vector<int64_t>& shape);

}  // namespace hyperonnx
