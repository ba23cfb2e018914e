#include "gemm_op.h"

#include <vector>

namespace hyperonnx {

OrtStatus* HyperGemmKernel::Init(const OrtApi& api, const OrtKernelInfo* info) {
  alpha_ = optional_float(api, info, "alpha", 1.0f);
  beta_ = optional_float(api, info, "beta", 1.0f);
  const int64_t ta = optional_int(api, info, "transA", 0), tb = optional_int(api, info, "transB", 0);
  if ((ta != 0 && ta != 1) || (tb != 0 && tb != 1)) {
    return Error(ORT_INVALID_ARGUMENT, "transA and transB must be 0 or 1, got " + std::to_string(ta) + " and " +
                                           std::to_string(tb));
  }
  trans_a_ = ta == 1;
  trans_b_ = tb == 1;
  return nullptr;
}

OrtStatus* HyperGemmKernel::Run(Ort::KernelContext& ctx, const uint8_t* blob, size_t len) {
  Ort::ConstValue a = ctx.GetInput(0);
  const std::vector<int64_t> a_shape = a.GetTensorTypeAndShapeInfo().GetShape();
  // B′ is K × N: the weight is [K, N], or [N, K] with transB.
  const int64_t K = trans_b_ ? w_->cols() : w_->rows(), N = trans_b_ ? w_->rows() : w_->cols();
  if (a_shape.size() != 2 || a_shape[trans_a_ ? 0 : 1] != K) {
    return Error(ORT_INVALID_ARGUMENT, "input 0 (A) of shape " + shape_string(a_shape) + " does not match the " +
                                           "weight's K = " + std::to_string(K) + " (A must be 2-D, " +
                                           (trans_a_ ? "[K, M] with transA)" : "[M, K])"));
  }
  const int64_t M = a_shape[trans_a_ ? 1 : 0];
  // C: absent (an omitted optional input), or unidirectionally broadcastable to [M, N].
  const OrtValue* c_value = OptionalInput(ctx, 2);
  std::vector<int64_t> c_shape;
  if (c_value != nullptr) {
    c_shape = Ort::ConstValue(c_value).GetTensorTypeAndShapeInfo().GetShape();
    const bool ok = c_shape.size() <= 2 &&
                    (c_shape.empty() || c_shape.back() == 1 || c_shape.back() == N) &&
                    (c_shape.size() < 2 || c_shape[0] == 1 || c_shape[0] == M);
    if (!ok) {
      return Error(ORT_INVALID_ARGUMENT, "input 2 (C) of shape " + shape_string(c_shape) +
                                             " does not broadcast to [" + std::to_string(M) + ", " +
                                             std::to_string(N) + "]");
    }
  }
  const std::vector<int64_t> y_shape = {M, N};
  Ort::UnownedValue y_value = ctx.GetOutput(0, y_shape.data(), y_shape.size());
  if (M == 0 || N == 0) return nullptr;
  float* y = y_value.GetTensorMutableData<float>();
  const float* a_data = a.GetTensorData<float>();
  std::vector<float> a_rows;  // Aᵀ, row-major M × K, when transA
  if (trans_a_) {
    a_rows.resize(static_cast<size_t>(M * K));
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t m = 0; m < M; ++m) a_rows[static_cast<size_t>(m * K + k)] = a_data[k * M + m];
    }
    a_data = a_rows.data();
  }
  const std::string error = Product(ctx, blob, len, a_data, M, trans_b_, y);
  if (!error.empty()) return Error(ORT_INVALID_ARGUMENT, error);
  // alpha and beta · C after the product: one more rounding than a fused epilogue, far inside 1e-5 relative.
  const bool scale = alpha_ != 1.0f;
  const float* c = c_value != nullptr && beta_ != 0.0f ? Ort::ConstValue(c_value).GetTensorData<float>() : nullptr;
  if (!scale && c == nullptr) return nullptr;
  const bool c_rows = c_shape.size() == 2 && c_shape[0] == M && M != 1;
  const bool c_cols = !c_shape.empty() && c_shape.back() == N && N != 1;
  for (int64_t m = 0; m < M; ++m) {
    float* row = y + m * N;
    if (scale) {
      for (int64_t n = 0; n < N; ++n) row[n] *= alpha_;
    }
    if (c != nullptr) {
      const float* c_row = c + (c_rows ? m * (c_cols ? N : 1) : 0);
      for (int64_t n = 0; n < N; ++n) row[n] += beta_ * c_row[c_cols ? n : 0];
    }
  }
  return nullptr;
}

}  // namespace hyperonnx
