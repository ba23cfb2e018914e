// The HyperDecode custom op for the CUDA execution provider. Same name, domain, types and (classic
// Ort::CustomOpBase, REQUIRED) input characteristics as the CPU op, so ORT merges both into one schema.
//
// The blob input keeps the default memory type: under the CUDA EP it arrives as device memory, so `call`
// mode reads only the compressed codes from device memory each run (no host->device copy per run).
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>

#include "cuda_decoder.h"
#include "op.h"
#include "ort_api.h"

namespace hyperonnx {

class HyperDecodeCudaKernel {
 public:
  HyperDecodeCudaKernel(std::string node, std::unique_ptr<cuda::CudaDecoder> dec, Mode mode)
      : node_(std::move(node)), dec_(std::move(dec)), mode_(mode) {}
  ~HyperDecodeCudaKernel();

  // A constant blob is range-checked now (a bad blob fails session creation, as on the CPU), so runs that
  // get that same blob need no check and no stream synchronization.
  OrtStatus* Prepare(const OrtApi& api, const OrtKernelInfo* info);
  OrtStatus* ComputeV2(OrtKernelContext* context);

 private:
  OrtStatus* Error(OrtErrorCode code, const std::string& message) const;
  OrtStatus* EnsureCached(const void* blob, size_t len, void* stream, bool check);

  std::string node_;
  std::unique_ptr<cuda::CudaDecoder> dec_;
  Mode mode_;
  const void* validated_blob_ = nullptr;  // the constant blob checked by Prepare
  // load mode: the decoded tensor in device memory, written once under mu_ (on the first run's stream,
  // which is synchronized before ready_ is published), then only read.
  std::mutex mu_;
  std::atomic<bool> ready_{false};
  void* cache_ = nullptr;
};

// Everything that shapes the merged schema (types, counts, characteristics, variadic settings, shape
// inference) is forwarded to a CPU op object, so a change to the CPU op (op.h) is mirrored here and the two
// registrations can never disagree (ORT rejects every session using the domain when they do).
struct HyperDecodeCudaOp : Ort::CustomOpBase<HyperDecodeCudaOp, HyperDecodeCudaKernel, /*WithStatus=*/true> {
  explicit HyperDecodeCudaOp(OpConfig config);

  OrtStatus* CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const;
  const char* GetName() const { return cpu_.GetName(); }
  const char* GetExecutionProviderType() const { return "CUDAExecutionProvider"; }
  size_t GetInputTypeCount() const { return cpu_.GetInputTypeCount(); }
  ONNXTensorElementDataType GetInputType(size_t i) const { return cpu_.GetInputType(i); }
  size_t GetOutputTypeCount() const { return cpu_.GetOutputTypeCount(); }
  ONNXTensorElementDataType GetOutputType(size_t i) const { return cpu_.GetOutputType(i); }
  OrtCustomOpInputOutputCharacteristic GetInputCharacteristic(size_t i) const { return cpu_.GetInputCharacteristic(i); }
  OrtCustomOpInputOutputCharacteristic GetOutputCharacteristic(size_t i) const {
    return cpu_.GetOutputCharacteristic(i);
  }
  int GetVariadicInputMinArity() const { return cpu_.GetVariadicInputMinArity(); }
  bool GetVariadicInputHomogeneity() const { return cpu_.GetVariadicInputHomogeneity(); }
  int GetVariadicOutputMinArity() const { return cpu_.GetVariadicOutputMinArity(); }
  bool GetVariadicOutputHomogeneity() const { return cpu_.GetVariadicOutputHomogeneity(); }
  // GetInputMemoryType: the default (device memory for the blob), see the top of this file.

 private:
  OpConfig config_;
  HyperDecodeOp cpu_;  // the schema source; never registered itself
};

// Called by register.cc when the library is built with HYPERONNX_CUDA.
std::shared_ptr<OrtCustomOp> add_cuda_ops(Ort::CustomOpDomain& domain, const OpConfig& config);

}  // namespace hyperonnx
