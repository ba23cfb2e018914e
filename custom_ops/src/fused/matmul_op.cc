#include "matmul_op.h"

#include <vector>

namespace hyperonnx {

// No InferOutputShapeFn: the output type is declared (float), and ORT cannot tell the inference function an unknown
// shape (an outer-scope A in a subgraph) from a scalar's, so the kernel sets Y's shape at run time instead.
HyperMatMulOp::HyperMatMulOp() = default;

OrtStatus* HyperMatMulKernel::Init(const OrtApi& api, const OrtKernelInfo* info) {
  const int64_t tb = optional_int(api, info, "transB", 0);
  if (tb != 0 && tb != 1) return Error(ORT_INVALID_ARGUMENT, "transB must be 0 or 1, got " + std::to_string(tb));
  trans_b_ = tb == 1;
  return nullptr;
}

OrtStatus* HyperMatMulKernel::Run(Ort::KernelContext& ctx, const uint8_t* blob, size_t len) {
  Ort::ConstValue a = ctx.GetInput(0);
  const std::vector<int64_t> a_shape = a.GetTensorTypeAndShapeInfo().GetShape();
  // The weight is [K, N], or [N, K] with transB.
  const int64_t K = trans_b_ ? w_->cols() : w_->rows(), N = trans_b_ ? w_->rows() : w_->cols();
  if (a_shape.empty() || a_shape.back() != K) {
    return Error(ORT_INVALID_ARGUMENT, "input 0 (A) of shape " + shape_string(a_shape) + " does not match the " +
                                           "weight's " + std::to_string(K) + (trans_b_ ? " columns" : " rows") +
                                           " (its last dimension must be K)");
  }
  std::vector<int64_t> y_shape(a_shape.begin(), a_shape.end() - 1);
  y_shape.push_back(N);
  int64_t m = 1;
  for (size_t i = 0; i + 1 < a_shape.size(); ++i) m *= a_shape[i];
  Ort::UnownedValue y = ctx.GetOutput(0, y_shape.data(), y_shape.size());
  if (m == 0 || N == 0) return nullptr;
  const float* a_data = a.GetTensorData<float>();
  float* y_data = y.GetTensorMutableData<float>();
  // Every leading dimension of A is a row of one [m, K] × [K, N] product, with or without transB.
  const std::string error = Product(ctx, blob, len, a_data, m, trans_b_, y_data);
  return error.empty() ? nullptr : Error(ORT_INVALID_ARGUMENT, error);
}

}  // namespace hyperonnx
