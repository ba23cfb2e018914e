#include "matmul_op.h"

#include <exception>
#include <vector>

#include "matmul.h"
#include "matmul_nt.h"

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

OrtStatus* HyperMatMulKernel::ComputeV2(OrtKernelContext* raw) {
  try {
    Ort::KernelContext ctx(raw);
    const uint8_t* blob = nullptr;
    size_t len = 0;
    if (OrtStatus* status = Blob(ctx, &blob, &len)) return status;
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
    if (trans_b_) {  // every leading dimension of A is a row of one [m, K] × [K, N] product, as without transB
      const FusedNtPlan plan = fused_nt_plan(m, N);
      const std::string error = RunUnits(ctx, plan.units, [&](uint64_t unit, std::string* e) {
        return fused_matmul_nt_unit(*w_, blob, len, a_data, y_data, plan, unit, e);
      });
      return error.empty() ? nullptr : Error(ORT_INVALID_ARGUMENT, error);
    }
    const FusedPlan plan = fused_plan(m, K, N);
    std::vector<float> partials(fused_partial_floats(plan));
    const std::string error = RunUnits(ctx, static_cast<uint64_t>(plan.units), [&](uint64_t unit, std::string* e) {
      return fused_matmul_unit(*w_, blob, len, a_data, y_data, partials.data(), plan, static_cast<size_t>(unit), e);
    });
    if (!error.empty()) return Error(ORT_INVALID_ARGUMENT, error);
    fused_matmul_finish(plan, partials.data(), y_data);
    return nullptr;
  } catch (const std::exception& e) {
    return Error(ORT_RUNTIME_EXCEPTION, e.what());
  }
}

}  // namespace hyperonnx
