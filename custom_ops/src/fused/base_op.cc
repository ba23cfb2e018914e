#include "base_op.h"

#include <atomic>
#include <exception>
#include <mutex>
#include <vector>

#include "../kernel_attrs.h"
#include "matmul.h"
#include "matmul_nt.h"

namespace hyperonnx {

OrtStatus* FusedKernelBase::Prepare(const OrtApi& api, const OrtKernelInfo* info) {
  const OrtValue* value = constant_blob(api, info, theta_input_);
  if (value == nullptr) return nullptr;  // fed at run time: every run checks it
  Ort::ConstValue blob(value);
  if (blob.GetTensorTypeAndShapeInfo().GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) return nullptr;
  const auto* data = blob.GetTensorData<uint8_t>();
  std::string error;
  if (!w_->check(data, blob.GetTensorTypeAndShapeInfo().GetElementCount(), &error)) {
    return Error(ORT_INVALID_ARGUMENT, error);
  }
  checked_blob_ = data;
  return nullptr;
}

OrtStatus* FusedKernelBase::Error(OrtErrorCode code, const std::string& message) const {
  return Ort::GetApi().CreateStatus(code, (std::string(op_) + " node '" + node_ + "': " + message).c_str());
}

OrtStatus* FusedKernelBase::ComputeV2(OrtKernelContext* raw) {
  try {
    Ort::KernelContext ctx(raw);
    Ort::ConstValue theta = ctx.GetInput(theta_input_);
    const auto info = theta.GetTensorTypeAndShapeInfo();
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8) {
      return Error(ORT_INVALID_ARGUMENT, "input " + std::to_string(theta_input_) + " (theta) must be a uint8 tensor");
    }
    const auto* blob = theta.GetTensorData<uint8_t>();
    const size_t len = info.GetElementCount();
    std::string error;
    if (blob != checked_blob_ && !w_->check(blob, len, &error)) return Error(ORT_INVALID_ARGUMENT, error);
    return Run(ctx, blob, len);
  } catch (const std::exception& e) {
    return Error(ORT_RUNTIME_EXCEPTION, e.what());
  }
}

std::string FusedKernelBase::Product(Ort::KernelContext& ctx, const uint8_t* blob, size_t len, const float* a,
                                     int64_t m, bool transposed, float* y) const {
  const FusedWeight& w = *w_;
  if (transposed) {
    const FusedNtPlan plan = fused_nt_plan(m, w.rows());
    return RunUnits(ctx, plan.units, [&](uint64_t u, std::string* e) {
      return fused_matmul_nt_unit(w, blob, len, a, y, plan, u, e);
    });
  }
  const FusedPlan plan = fused_plan(m, w.rows(), w.cols());
  std::vector<float> partials(fused_partial_floats(plan));
  const std::string error = RunUnits(ctx, plan.units, [&](uint64_t u, std::string* e) {
    return fused_matmul_unit(w, blob, len, a, y, partials.data(), plan, u, e);
  });
  if (error.empty()) fused_matmul_finish(plan, partials.data(), y);
  return error;
}

const OrtValue* FusedKernelBase::OptionalInput(const Ort::KernelContext& ctx, size_t index) {
  const OrtValue* value = nullptr;
  Ort::ThrowOnError(Ort::GetApi().KernelContext_GetInput(ctx.GetOrtKernelContext(), index, &value));
  return value;
}

namespace {

struct UnitsJob {
  const std::function<bool(uint64_t, std::string*)>* unit;
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::string error;
};

void run_one(void* user, size_t u) {
  auto* job = static_cast<UnitsJob*>(user);
  if (job->failed.load(std::memory_order_relaxed)) return;
  std::string error;
  if (!(*job->unit)(u, &error)) {
    std::lock_guard<std::mutex> lock(job->mu);
    if (!job->failed.exchange(true)) job->error = error.empty() ? "decode failed" : error;
  }
}

}  // namespace

std::string FusedKernelBase::RunUnits(Ort::KernelContext& ctx, uint64_t units,
                                      const std::function<bool(uint64_t, std::string*)>& unit) {
  UnitsJob job;
  job.unit = &unit;
  if (units == 1) {
    run_one(&job, 0);
  } else if (units > 1) {
    ctx.ParallelFor(&run_one, static_cast<size_t>(units), 0, &job);
  }
  return job.failed.load() ? job.error : std::string();
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string dims;
  for (int64_t d : shape) dims += (dims.empty() ? "" : ", ") + std::to_string(d);
  return "[" + dims + "]";
}

}  // namespace hyperonnx
