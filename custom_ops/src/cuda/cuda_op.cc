#include "cuda_op.h"

#include <cuda_runtime.h>

#include <exception>

#include "kernel_attrs.h"

namespace hyperonnx {
namespace {

// Makes `device` current on this thread (ORT normally has already); false on failure.
bool use_device(int device, std::string* error) {
  int cur = -1;
  cudaError_t e = cudaGetDevice(&cur);
  if (e == cudaSuccess && cur == device) return true;
  if ((e = cudaSetDevice(device)) == cudaSuccess) return true;
  *error = cuda::cuda_error_message(e, "cudaSetDevice");
  return false;
}

// The device a tensor lives on, or -1 for host memory.
template <typename Value>
int tensor_device(const Value& v) {
  Ort::ConstMemoryInfo info = v.GetTensorMemoryInfo();
  return info.GetDeviceType() == OrtMemoryInfoDeviceType_GPU ? info.GetDeviceId() : -1;
}

}  // namespace

HyperDecodeCudaOp::HyperDecodeCudaOp(OpConfig config) : config_(config), cpu_(config) {
  // The CPU op's shape inference function (a plain function pointer, not bound to the object).
  OrtCustomOp::InferOutputShapeFn = cpu_.InferOutputShapeFn;
}

OrtStatus* HyperDecodeCudaOp::CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
  const std::string node = kernel_node_name(api, info);
  try {
    std::string error;
    std::unique_ptr<Decoder> dec = Decoder::create(KernelInfoAttrs(api, info), &error);
    if (!dec) return api.CreateStatus(ORT_INVALID_ARGUMENT, ("HyperDecode node '" + node + "': " + error).c_str());
    const Mode mode = config_.override_mode ? config_.mode : dec->mode();
    auto k = std::make_unique<HyperDecodeCudaKernel>(node, std::make_unique<cuda::CudaDecoder>(std::move(dec)), mode);
    if (OrtStatus* status = k->Prepare(api, info)) return status;
    *kernel = k.release();
    return nullptr;
  } catch (const std::exception& e) {
    return api.CreateStatus(ORT_FAIL, ("HyperDecode node '" + node + "': " + e.what()).c_str());
  }
}

HyperDecodeCudaKernel::~HyperDecodeCudaKernel() {
  if (cache_) cudaFree(cache_);
}

OrtStatus* HyperDecodeCudaKernel::Error(OrtErrorCode code, const std::string& message) const {
  return Ort::GetApi().CreateStatus(code, ("HyperDecode node '" + node_ + "': " + message).c_str());
}

OrtStatus* HyperDecodeCudaKernel::Prepare(const OrtApi& api, const OrtKernelInfo* info) {
  const OrtValue* value = constant_blob(api, info);
  if (value == nullptr) return nullptr;  // every run checks instead
  if (!is_uint8_blob(value)) return Error(ORT_INVALID_ARGUMENT, kBlobTypeError);
  Ort::ConstValue blob(value);
  const void* data = blob.GetTensorRawData();
  const size_t len = blob.GetTensorTypeAndShapeInfo().GetElementCount();
  std::string error;
  const int device = tensor_device(blob);
  if (device >= 0) {
    if (!use_device(device, &error)) return Error(ORT_EP_FAIL, error);
    // The initializer may have been copied on another stream; this runs once per session creation.
    const cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess) return Error(ORT_EP_FAIL, cuda::cuda_error_message(e, "cudaDeviceSynchronize"));
  }
  // Device blob: scan kernel on the legacy default stream (synchronized); host blob: the CPU check.
  if (!dec_->validate(data, len, nullptr, &error)) return Error(ORT_INVALID_ARGUMENT, error);
  validated_blob_ = data;
  return nullptr;
}

OrtStatus* HyperDecodeCudaKernel::EnsureCached(const void* blob, size_t len, void* stream, bool check) {
  if (ready_.load(std::memory_order_acquire)) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  if (ready_.load(std::memory_order_relaxed)) return nullptr;
  const Decoder& d = dec_->host();
  std::string error;
  if (!cache_ && d.out_bytes() > 0) {
    const cudaError_t e = cudaMalloc(&cache_, d.out_bytes());
    if (e != cudaSuccess) {
      cache_ = nullptr;
      return Error(ORT_EP_FAIL, cuda::cuda_error_message(e, "cudaMalloc (load-mode cache)"));
    }
  }
  if (!dec_->decode(blob, len, cache_, stream, check, &error)) {
    return Error(error.rfind("CUDA error", 0) == 0 ? ORT_EP_FAIL : ORT_INVALID_ARGUMENT, error);
  }
  // Later runs may use other streams: the cache must be complete before anyone reads it.
  const cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
  if (e != cudaSuccess) return Error(ORT_EP_FAIL, cuda::cuda_error_message(e, "HyperDecode kernel"));
  ready_.store(true, std::memory_order_release);
  return nullptr;
}

OrtStatus* HyperDecodeCudaKernel::ComputeV2(OrtKernelContext* raw) {
  try {
    Ort::KernelContext ctx(raw);
    void* stream = ctx.GetGPUComputeStream();
    Ort::ConstValue input = ctx.GetInput(0);
    if (!is_uint8_blob(input)) return Error(ORT_INVALID_ARGUMENT, kBlobTypeError);
    const void* blob = input.GetTensorRawData();
    const size_t len = input.GetTensorTypeAndShapeInfo().GetElementCount();
    const Decoder& d = dec_->host();
    Ort::UnownedValue output = ctx.GetOutput(0, d.shape().data(), d.shape().size());
    if (d.out_bytes() == 0) return nullptr;
    void* out = output.GetTensorMutableRawData();
    std::string error;
    const int device = tensor_device(output);
    if (device < 0) return Error(ORT_EP_FAIL, "the CUDA kernel's output is not in GPU memory");
    if (!use_device(device, &error)) return Error(ORT_EP_FAIL, error);
    // Runs that get the constant blob Prepare validated skip the range check and its synchronization.
    const bool check = validated_blob_ == nullptr || blob != validated_blob_;
    if (mode_ == Mode::kLoad) {
      if (OrtStatus* status = EnsureCached(blob, len, stream, check)) return status;
      const cudaError_t e = cudaMemcpyAsync(out, cache_, d.out_bytes(), cudaMemcpyDeviceToDevice,
                                            static_cast<cudaStream_t>(stream));
      if (e != cudaSuccess) return Error(ORT_EP_FAIL, cuda::cuda_error_message(e, "cudaMemcpyAsync (load-mode copy)"));
      return nullptr;
    }
    if (!dec_->decode(blob, len, out, stream, check, &error)) {
      return Error(error.rfind("CUDA error", 0) == 0 ? ORT_EP_FAIL : ORT_INVALID_ARGUMENT, error);
    }
    return nullptr;
  } catch (const std::exception& e) {
    return Error(ORT_RUNTIME_EXCEPTION, e.what());
  }
}

std::shared_ptr<OrtCustomOp> add_cuda_ops(Ort::CustomOpDomain& domain, const OpConfig& config) {
  auto op = std::make_shared<HyperDecodeCudaOp>(config);
  domain.Add(op.get());
  return op;
}

}  // namespace hyperonnx
