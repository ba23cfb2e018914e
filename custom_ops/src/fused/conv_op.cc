#include "conv_op.h"

#include <vector>

namespace hyperonnx {
namespace {

// The node's attributes with `shape` [M, C, 1, …, 1] read as [M, C]; everything else as given.
class KernelAsMatrix : public AttrSource {
 public:
  KernelAsMatrix(const AttrSource& base, std::vector<int64_t> shape) : base_(base), shape_(std::move(shape)) {}
  bool get_string(const std::string& name, std::string* out) const override { return base_.get_string(name, out); }
  bool get_int(const std::string& name, int64_t* out) const override { return base_.get_int(name, out); }
  bool get_ints(const std::string& name, std::vector<int64_t>* out) const override {
    if (name != "shape") return base_.get_ints(name, out);
    *out = shape_;
    return true;
  }
  bool get_floats(const std::string& name, std::vector<float>* out) const override {
    return base_.get_floats(name, out);
  }

 private:
  const AttrSource& base_;
  std::vector<int64_t> shape_;
};

// The kernel's rank from the node's `shape` (the kernel checked it in CreateWeight).
size_t kernel_rank(const OrtApi& api, const OrtKernelInfo* info) {
  size_t size = 0;
  if (OrtStatus* status = api.KernelInfoGetAttributeArray_int64(info, "shape", nullptr, &size)) {
    api.ReleaseStatus(status);
    return 0;
  }
  return size;
}

}  // namespace

std::unique_ptr<FusedWeight> HyperConvKernel::CreateWeight(const AttrSource& attrs, std::string* error) {
  std::vector<int64_t> shape;
  if (!attrs.get_ints("shape", &shape)) return FusedWeight::create(attrs, error);  // the decoder names it
  bool ones = shape.size() >= 3;
  for (size_t i = 2; i < shape.size(); ++i) ones &= shape[i] == 1;
  if (!ones) {
    *error = "HyperConv needs a 1×1 kernel [M, C, 1, …, 1], got shape " + shape_string(shape);
    return nullptr;
  }
  return FusedWeight::create(KernelAsMatrix(attrs, {shape[0], shape[1]}), error);
}

OrtStatus* HyperConvKernel::Init(const OrtApi& api, const OrtKernelInfo* info) {
  rank_ = kernel_rank(api, info);
  return nullptr;
}

OrtStatus* HyperConvKernel::Run(Ort::KernelContext& ctx, const uint8_t* blob, size_t len) {
  Ort::ConstValue x = ctx.GetInput(0);
  const std::vector<int64_t> x_shape = x.GetTensorTypeAndShapeInfo().GetShape();
  const int64_t M = w_->rows(), C = w_->cols();
  if (x_shape.size() != rank_ || x_shape[1] != C) {
    return Error(ORT_INVALID_ARGUMENT, "input 0 (X) of shape " + shape_string(x_shape) + " does not match the " +
                                           std::to_string(rank_) + "-D kernel's " + std::to_string(C) +
                                           " input channels (X must be [N, " + std::to_string(C) + ", …])");
  }
  const OrtValue* b_value = OptionalInput(ctx, 2);
  if (b_value != nullptr) {
    const std::vector<int64_t> b_shape = Ort::ConstValue(b_value).GetTensorTypeAndShapeInfo().GetShape();
    if (b_shape != std::vector<int64_t>{M}) {
      return Error(ORT_INVALID_ARGUMENT, "input 2 (B) of shape " + shape_string(b_shape) + " must be [" +
                                             std::to_string(M) + "]");
    }
  }
  const int64_t N = x_shape[0];
  int64_t S = 1;
  for (size_t i = 2; i < x_shape.size(); ++i) S *= x_shape[i];
  std::vector<int64_t> y_shape = x_shape;
  y_shape[1] = M;
  Ort::UnownedValue y_value = ctx.GetOutput(0, y_shape.data(), y_shape.size());
  if (N == 0 || S == 0 || M == 0) return nullptr;
  const float* xd = x.GetTensorData<float>();
  float* yd = y_value.GetTensorMutableData<float>();
  // A = every image's positions as rows: A[(b·S + s), c] = X[b, c, s].
  const int64_t rows = N * S;
  std::vector<float> a(static_cast<size_t>(rows * C)), yt(static_cast<size_t>(rows * M));
  for (int64_t b = 0; b < N; ++b) {
    for (int64_t c = 0; c < C; ++c) {
      const float* src = xd + (b * C + c) * S;
      float* dst = a.data() + b * S * C + c;
      for (int64_t s = 0; s < S; ++s) dst[s * C] = src[s];
    }
  }
  const std::string error = Product(ctx, blob, len, a.data(), rows, /*transposed=*/true, yt.data());
  if (!error.empty()) return Error(ORT_INVALID_ARGUMENT, error);
  const float* bias = b_value != nullptr ? Ort::ConstValue(b_value).GetTensorData<float>() : nullptr;
  for (int64_t b = 0; b < N; ++b) {
    for (int64_t m = 0; m < M; ++m) {
      const float* src = yt.data() + b * S * M + m;
      float* dst = yd + (b * M + m) * S;
      const float add = bias != nullptr ? bias[m] : 0.0f;
      for (int64_t s = 0; s < S; ++s) dst[s] = src[s * M] + add;
    }
  }
  return nullptr;
}

}  // namespace hyperonnx
