#include "gather_op.h"

#include <algorithm>
#include <vector>

#include "gather.h"

namespace hyperonnx {
namespace {

// Indices per work unit: a unit decodes this many rows (384-wide MiniLM rows: 96 KiB of output).
constexpr size_t kRowsPerUnit = 64;

}  // namespace

OrtStatus* HyperGatherKernel::Run(Ort::KernelContext& ctx, const uint8_t* blob, size_t len) {
  Ort::ConstValue indices = ctx.GetInput(1);
  const auto info = indices.GetTensorTypeAndShapeInfo();
  const ONNXTensorElementDataType type = info.GetElementType();
  if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 && type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32) {
    return Error(ORT_INVALID_ARGUMENT, "input 1 (indices) must be an int32 or int64 tensor");
  }
  const int64_t V = w_->rows(), D = w_->cols();
  std::vector<int64_t> y_shape = info.GetShape();
  const size_t count = info.GetElementCount();
  std::vector<int64_t> rows(count);
  std::string error;
  if (!fused_gather_rows(indices.GetTensorRawData(), type == ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64, 0, count, V,
                         rows.data(), &error)) {
    return Error(ORT_INVALID_ARGUMENT, "input 1 (indices): " + error);
  }
  y_shape.push_back(D);
  Ort::UnownedValue y = ctx.GetOutput(0, y_shape.data(), y_shape.size());
  if (count == 0 || D == 0) return nullptr;
  float* out = y.GetTensorMutableData<float>();
  const FusedWeight& w = *w_;
  const uint64_t units = (count + kRowsPerUnit - 1) / kRowsPerUnit;
  error = RunUnits(ctx, units, [&](uint64_t u, std::string* e) {
    const size_t i0 = static_cast<size_t>(u) * kRowsPerUnit, i1 = std::min(count, i0 + kRowsPerUnit);
    return fused_gather(w, blob, len, rows.data(), i0, i1, out + i0 * static_cast<size_t>(D), e);
  });
  if (!error.empty()) return Error(ORT_INVALID_ARGUMENT, error);
  return nullptr;
}

}  // namespace hyperonnx
