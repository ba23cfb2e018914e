#include "op.h"

#include <cstring>
#include <exception>

#include "kernel_attrs.h"
#include "parallel.h"

namespace hyperonnx {
namespace {

ONNXTensorElementDataType ort_type(DType t) {
  switch (t) {
    case DType::kFloat: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
    case DType::kFloat16: return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
    case DType::kDouble: return ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE;
    case DType::kBFloat16: return ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16;
  }
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

// Output type and shape from the attributes, so graphs need no value_info for HyperDecode outputs.
OrtStatus* ORT_API_CALL infer_shape(const OrtCustomOp*, OrtShapeInferContext* raw) {
  const OrtApi& api = Ort::GetApi();
  try {
    Ort::ShapeInferContext ctx(&api, raw);
    const std::vector<int64_t> dims = ctx.GetAttrInts("shape");
    DType dtype;
    if (!dtype_from_onnx(ctx.GetAttrInt("dtype"), &dtype)) {
      return api.CreateStatus(ORT_INVALID_ARGUMENT, "HyperDecode: unsupported dtype attribute");
    }
    Ort::ShapeInferContext::Shape shape;
    for (int64_t d : dims) {
      // A bad dimension still gets an entry: the output type must be set here, or ORT falls back to the
      // untyped input's type and reports a confusing type mismatch. The kernel then rejects the node by name.
      shape.emplace_back(d < 0 ? int64_t{0} : d);
    }
    Ort::Status status = ctx.SetOutputShape(0, shape, ort_type(dtype));
    return status.release();
  } catch (const Ort::Exception& e) {
    return api.CreateStatus(ORT_INVALID_ARGUMENT, (std::string("HyperDecode shape inference: ") + e.what()).c_str());
  } catch (const std::exception& e) {
    return api.CreateStatus(ORT_FAIL, (std::string("HyperDecode shape inference: ") + e.what()).c_str());
  }
}

// Large copies run on the decode threads too: one core cannot saturate memory bandwidth.
void parallel_copy(void* dst, const void* src, size_t bytes, int threads) {
  if (bytes == 0) return;
  const int t = bytes >= 4 * kParallelMinElements ? threads : 1;
  parallel_ranges(bytes, 4096, t, [&](uint64_t b, uint64_t e) {
    std::memcpy(static_cast<uint8_t*>(dst) + b, static_cast<const uint8_t*>(src) + b, static_cast<size_t>(e - b));
  });
}

}  // namespace

HyperDecodeOp::HyperDecodeOp(OpConfig config) : config_(config) {
  OrtCustomOp::InferOutputShapeFn = &infer_shape;  // our own, so exceptions cannot escape into ORT
}

OrtStatus* HyperDecodeOp::CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
  const std::string node = kernel_node_name(api, info);
  try {
    std::string error;
    std::unique_ptr<Decoder> dec = Decoder::create(KernelInfoAttrs(api, info), &error);
    if (!dec) return api.CreateStatus(ORT_INVALID_ARGUMENT, ("HyperDecode node '" + node + "': " + error).c_str());
    const Mode mode = config_.override_mode ? config_.mode : dec->mode();
    auto k = std::make_unique<HyperDecodeKernel>(node, std::move(dec), mode, config_.threads);
    if (OrtStatus* status = k->Prepare(api, info)) return status;
    *kernel = k.release();
    return nullptr;
  } catch (const std::exception& e) {  // bad_alloc for an absurd shape, Ort::Exception from the wrappers
    return api.CreateStatus(ORT_FAIL, ("HyperDecode node '" + node + "': " + e.what()).c_str());
  }
}

OrtStatus* HyperDecodeKernel::Error(OrtErrorCode code, const std::string& message) const {
  return Ort::GetApi().CreateStatus(code, ("HyperDecode node '" + node_ + "': " + message).c_str());
}

OrtStatus* HyperDecodeKernel::Prepare(const OrtApi& api, const OrtKernelInfo* info) {
  const OrtValue* value = constant_blob(api, info);
  if (value == nullptr) return nullptr;  // Compute decodes/validates on first use instead
  if (!is_uint8_blob(value)) return Error(ORT_INVALID_ARGUMENT, kBlobTypeError);
  Ort::ConstValue blob(value);
  const auto* data = blob.GetTensorData<uint8_t>();
  const size_t len = blob.GetTensorTypeAndShapeInfo().GetElementCount();
  if (mode_ == Mode::kLoad) return EnsureCached(data, len);
  std::string error;
  if (!dec_->validate(data, len, &error)) return Error(ORT_INVALID_ARGUMENT, error);
  return nullptr;
}

OrtStatus* HyperDecodeKernel::EnsureCached(const uint8_t* blob, size_t len) {
  if (ready_.load(std::memory_order_acquire)) return nullptr;
  std::lock_guard<std::mutex> lock(mu_);
  if (ready_.load(std::memory_order_relaxed)) return nullptr;
  std::string error;
  // The length first: a blob that cannot be the node's must not cost the output's allocation.
  if (!dec_->check_length(len, &error)) return Error(ORT_INVALID_ARGUMENT, error);
  std::vector<uint8_t> decoded(dec_->out_bytes());
  if (!dec_->decode(blob, len, decoded.data(), threads_, &error)) return Error(ORT_INVALID_ARGUMENT, error);
  cache_ = std::move(decoded);
  ready_.store(true, std::memory_order_release);
  return nullptr;
}

OrtStatus* HyperDecodeKernel::ComputeV2(OrtKernelContext* raw) {
  try {
    Ort::KernelContext ctx(raw);
    Ort::ConstValue input = ctx.GetInput(0);
    if (!is_uint8_blob(input)) return Error(ORT_INVALID_ARGUMENT, kBlobTypeError);
    const auto* blob = input.GetTensorData<uint8_t>();
    const size_t len = input.GetTensorTypeAndShapeInfo().GetElementCount();
    const std::vector<int64_t>& shape = dec_->shape();
    Ort::UnownedValue output = ctx.GetOutput(0, shape.data(), shape.size());
    void* out = output.GetTensorMutableRawData();
    if (mode_ == Mode::kLoad) {
      if (OrtStatus* status = EnsureCached(blob, len)) return status;
      parallel_copy(out, cache_.data(), cache_.size(), threads_);
      return nullptr;
    }
    std::string error;
    if (!dec_->decode(blob, len, out, threads_, &error)) return Error(ORT_INVALID_ARGUMENT, error);
    return nullptr;
  } catch (const std::exception& e) {
    return Error(ORT_RUNTIME_EXCEPTION, e.what());
  }
}

}  // namespace hyperonnx
