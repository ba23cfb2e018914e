// The HyperDecode custom op for the CPU execution provider (classic Ort::CustomOpBase, status-returning V2
// entry points so no C++ exception ever crosses into ONNX Runtime). A later CUDA kernel registers a second
// CustomOpBase with the same name and the same (REQUIRED) input characteristics.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "decoder.h"
#include "ort_api.h"

namespace hyperonnx {

constexpr const char* kDomain = "ai.hyperonnx";
constexpr const char* kOpName = "HyperDecode";
constexpr const char* kConfigDecodeMode = "hyperonnx.decode_mode";        // "load" | "call": overrides `mode`
constexpr const char* kConfigDecodeThreads = "hyperonnx.decode_threads";  // positive integer

// Per-session settings, read from the session config when the library is registered.
struct OpConfig {
  bool override_mode = false;
  Mode mode = Mode::kLoad;
  int threads = 1;
};

class HyperDecodeKernel {
 public:
  HyperDecodeKernel(std::string node, std::unique_ptr<Decoder> decoder, Mode mode, int threads)
      : node_(std::move(node)), dec_(std::move(decoder)), mode_(mode), threads_(threads) {}

  // load mode with a constant blob: decode now, so a bad blob fails session creation.
  // call mode with a constant blob: validate now, for the same reason.
  OrtStatus* Prepare(const OrtApi& api, const OrtKernelInfo* info);
  OrtStatus* ComputeV2(OrtKernelContext* context);

 private:
  OrtStatus* Error(OrtErrorCode code, const std::string& message) const;
  OrtStatus* Fill(const uint8_t* blob, size_t len, void* out);
  OrtStatus* EnsureCached(const uint8_t* blob, size_t len);

  std::string node_;
  std::unique_ptr<Decoder> dec_;
  Mode mode_;
  int threads_;
  // load mode: the decoded tensor, written once under mu_, read-only afterwards (published by ready_).
  std::mutex mu_;
  std::atomic<bool> ready_{false};
  std::vector<uint8_t> cache_;
};

struct HyperDecodeOp : Ort::CustomOpBase<HyperDecodeOp, HyperDecodeKernel, /*WithStatus=*/true> {
  explicit HyperDecodeOp(OpConfig config);

  OrtStatus* CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const;
  const char* GetName() const { return kOpName; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 1; }
  // Declared untyped: ORT 1.21 requires an untyped input when the output type is untyped (it rejects the op
  // at session creation otherwise). The kernel checks that the blob really is uint8.
  ONNXTensorElementDataType GetInputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED; }
  size_t GetOutputTypeCount() const { return 1; }
  // The output type comes from the `dtype` attribute, set by the shape inference function.
  ONNXTensorElementDataType GetOutputType(size_t) const { return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED; }

 private:
  OpConfig config_;
};

}  // namespace hyperonnx
