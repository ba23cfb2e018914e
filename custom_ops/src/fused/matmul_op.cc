#include "matmul_op.h"

#include <atomic>
#include <exception>
#include <mutex>
#include <vector>

#include "../kernel_attrs.h"
#include "matmul.h"

namespace hyperonnx {
namespace {

// θ (input 1) when it is a constant initializer, else null.
const OrtValue* constant_theta(const OrtApi& api, const OrtKernelInfo* info) {
  int is_constant = 0;
  const OrtValue* value = nullptr;
  if (OrtStatus* status = api.KernelInfoGetConstantInput_tensor(info, 1, &is_constant, &value)) {
    api.ReleaseStatus(status);
    return nullptr;
  }
  return is_constant ? value : nullptr;
}

// One run's work, shared by ORT's worker threads (KernelContext_ParallelFor: the session's intra-op pool, so the
// session's thread settings apply).
struct Job {
  const FusedWeight* w;
  const uint8_t* blob;
  size_t len;
  const float* a;
  float* y;
  float* partials;
  FusedPlan plan;
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::string error;
};

void run_unit(void* user, size_t unit) {
  auto* job = static_cast<Job*>(user);
  if (job->failed.load(std::memory_order_relaxed)) return;
  std::string error;
  if (!fused_matmul_unit(*job->w, job->blob, job->len, job->a, job->y, job->partials, job->plan, unit, &error)) {
    std::lock_guard<std::mutex> lock(job->mu);
    if (!job->failed.exchange(true)) job->error = error;
  }
}

}  // namespace

// No InferOutputShapeFn: the output type is declared (float), and ORT cannot tell the inference function an unknown
// shape (an outer-scope A in a subgraph) from a scalar's, so the kernel sets Y's shape at run time instead.
HyperMatMulOp::HyperMatMulOp() = default;

OrtStatus* HyperMatMulOp::CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
  const std::string node = kernel_node_name(api, info);
  try {
    std::string error;
    std::unique_ptr<FusedWeight> w = FusedWeight::create(KernelInfoAttrs(api, info), &error);
    if (!w) return api.CreateStatus(ORT_INVALID_ARGUMENT, ("HyperMatMul node '" + node + "': " + error).c_str());
    auto k = std::make_unique<HyperMatMulKernel>(node, std::move(w));
    if (OrtStatus* status = k->Prepare(api, info)) return status;
    *kernel = k.release();
    return nullptr;
  } catch (const std::exception& e) {
    return api.CreateStatus(ORT_FAIL, ("HyperMatMul node '" + node + "': " + e.what()).c_str());
  }
}

OrtStatus* HyperMatMulKernel::Error(OrtErrorCode code, const std::string& message) const {
  return Ort::GetApi().CreateStatus(code, ("HyperMatMul node '" + node_ + "': " + message).c_str());
}

OrtStatus* HyperMatMulKernel::Prepare(const OrtApi& api, const OrtKernelInfo* info) {
  const OrtValue* value = constant_theta(api, info);
  if (value == nullptr) return nullptr;  // fed at run time: every run checks it
  Ort::ConstValue blob(value);
  const auto* data = blob.GetTensorData<uint8_t>();
  std::string error;
  if (!w_->check(data, blob.GetTensorTypeAndShapeInfo().GetElementCount(), &error)) {
    return Error(ORT_INVALID_ARGUMENT, error);
  }
  checked_blob_ = data;
  return nullptr;
}

OrtStatus* HyperMatMulKernel::ComputeV2(OrtKernelContext* raw) {
  try {
    Ort::KernelContext ctx(raw);
    Ort::ConstValue a = ctx.GetInput(0);
    Ort::ConstValue theta = ctx.GetInput(1);
    const auto* blob = theta.GetTensorData<uint8_t>();
    const size_t len = theta.GetTensorTypeAndShapeInfo().GetElementCount();
    std::string error;
    if (blob != checked_blob_ && !w_->check(blob, len, &error)) return Error(ORT_INVALID_ARGUMENT, error);
    const std::vector<int64_t> a_shape = a.GetTensorTypeAndShapeInfo().GetShape();
    const int64_t K = w_->rows(), N = w_->cols();
    if (a_shape.empty() || a_shape.back() != K) {
      std::string dims;
      for (int64_t d : a_shape) dims += (dims.empty() ? "" : ", ") + std::to_string(d);
      return Error(ORT_INVALID_ARGUMENT, "input 0 (A) of shape [" + dims + "] does not match the weight's " +
                                             std::to_string(K) + " rows (its last dimension must be K)");
    }
    std::vector<int64_t> y_shape(a_shape.begin(), a_shape.end() - 1);
    y_shape.push_back(N);
    int64_t m = 1;
    for (size_t i = 0; i + 1 < a_shape.size(); ++i) m *= a_shape[i];
    Ort::UnownedValue y = ctx.GetOutput(0, y_shape.data(), y_shape.size());
    if (m == 0 || N == 0) return nullptr;
    Job job;
    job.w = w_.get();
    job.blob = blob;
    job.len = len;
    job.a = a.GetTensorData<float>();
    job.y = y.GetTensorMutableData<float>();
    job.plan = fused_plan(m, K, N);
    std::vector<float> partials(fused_partial_floats(job.plan));
    job.partials = partials.data();
    const size_t units = static_cast<size_t>(job.plan.units);
    if (units == 1) {
      run_unit(&job, 0);
    } else {
      ctx.ParallelFor(&run_unit, units, 0, &job);
    }
    if (job.failed.load()) return Error(ORT_INVALID_ARGUMENT, job.error);
    fused_matmul_finish(job.plan, job.partials, job.y);
    return nullptr;
  } catch (const std::exception& e) {
    return Error(ORT_RUNTIME_EXCEPTION, e.what());
  }
}

}  // namespace hyperonnx
