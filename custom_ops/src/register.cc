// Registration: C API version negotiation, session config, and op/domain lifetimes.
#include <cstdlib>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>

#include "fused/conv_op.h"
#include "fused/gather_op.h"
#include "fused/gemm_op.h"
#include "fused/matmul_op.h"
#include "hyperonnx/ops.h"
#include "op.h"
#include "parallel.h"

#ifdef HYPERONNX_WITH_CUDA
namespace hyperonnx {
// CUDA hook: custom_ops/src/cuda/cuda_op.cc provides the CUDA-EP HyperDecode kernel (same name, same input
// characteristics: classic CustomOpBase) and adds it to `domain`; the returned op must live as long as it
// (a shared_ptr: it deletes the derived op object, which OrtCustomOp, a C struct, could not).
std::shared_ptr<OrtCustomOp> add_cuda_ops(Ort::CustomOpDomain& domain, const OpConfig& config);
}  // namespace hyperonnx
#endif

namespace hyperonnx {
namespace {

// ORT keeps raw pointers to the domain and its ops for as long as any session created from the options
// lives, and gives us no callback when that ends, so every registration is kept until the library is
// unloaded. Each holds a few hundred bytes.
struct Registration {
  std::unique_ptr<HyperDecodeOp> cpu_op;
  std::unique_ptr<HyperMatMulOp> matmul_op;  // the fused ops (docs/fused.md)
  std::unique_ptr<HyperGemmOp> gemm_op;
  std::unique_ptr<HyperGatherOp> gather_op;
  std::unique_ptr<HyperConvOp> conv_op;
  std::shared_ptr<OrtCustomOp> cuda_op;  // null unless built with HYPERONNX_CUDA
  Ort::CustomOpDomain domain{kDomain};
};
std::mutex g_mu;
std::deque<std::unique_ptr<Registration>> g_registrations;

OrtStatus* read_config(const OrtApi& api, OrtSessionOptions* options, OpConfig* config) {
  Ort::ConstSessionOptions so(options);
  const std::string mode = so.GetConfigEntryOrDefault(kConfigDecodeMode, "");
  if (!mode.empty()) {
    if (!parse_mode(mode, &config->mode)) {
      return api.CreateStatus(ORT_INVALID_ARGUMENT, ("hyperonnx: session config " + std::string(kConfigDecodeMode) +
                                                     " must be 'load' or 'call', got '" + mode + "'")
                                                        .c_str());
    }
    config->override_mode = true;
  }
  config->threads = default_decode_threads();
  const std::string threads = so.GetConfigEntryOrDefault(kConfigDecodeThreads, "");
  if (!threads.empty()) {
    char* end = nullptr;
    const long v = std::strtol(threads.c_str(), &end, 10);
    if (*end != '\0' || v < 1 || v > 256) {
      return api.CreateStatus(ORT_INVALID_ARGUMENT, ("hyperonnx: session config " + std::string(kConfigDecodeThreads) +
                                                     " must be an integer in 1..256, got '" + threads + "'")
                                                        .c_str());
    }
    config->threads = static_cast<int>(v);
  }
  return nullptr;
}

}  // namespace
}  // namespace hyperonnx

extern "C" OrtStatus* hyperonnx_register_ops(OrtSessionOptions* options, const OrtApiBase* api_base) {
  using namespace hyperonnx;
  // Built against C API version ORT_API_VERSION (21, ORT 1.21); newer runtimes serve it too, older ones
  // return null, and then only the version-1 API is safe to use for the error.
  const OrtApi* api = api_base->GetApi(ORT_API_VERSION);
  if (api == nullptr) {
    const OrtApi* v1 = api_base->GetApi(1);
    if (v1 == nullptr) return nullptr;  // cannot even report; ORT >= 1.0 always serves version 1
    const std::string message = std::string("hyperonnx: onnxruntime ") + api_base->GetVersionString() +
                                " is too old: this library needs C API version " + std::to_string(ORT_API_VERSION) +
                                " (onnxruntime >= 1.21)";
    return v1->CreateStatus(ORT_FAIL, message.c_str());
  }
  Ort::InitApi(api);
  try {
    OpConfig config;
    if (OrtStatus* status = read_config(*api, options, &config)) return status;
    auto reg = std::make_unique<Registration>();
    reg->cpu_op = std::make_unique<HyperDecodeOp>(config);
    reg->domain.Add(reg->cpu_op.get());
    reg->matmul_op = std::make_unique<HyperMatMulOp>();
    reg->domain.Add(reg->matmul_op.get());
    reg->gemm_op = std::make_unique<HyperGemmOp>();
    reg->domain.Add(reg->gemm_op.get());
    reg->gather_op = std::make_unique<HyperGatherOp>();
    reg->domain.Add(reg->gather_op.get());
    reg->conv_op = std::make_unique<HyperConvOp>();
    reg->domain.Add(reg->conv_op.get());
#ifdef HYPERONNX_WITH_CUDA
    reg->cuda_op = add_cuda_ops(reg->domain, config);
#endif
    Ort::UnownedSessionOptions(options).Add(reg->domain);
    std::lock_guard<std::mutex> lock(g_mu);
    g_registrations.push_back(std::move(reg));
    return nullptr;
  } catch (const Ort::Exception& e) {
    return api->CreateStatus(e.GetOrtErrorCode(), (std::string("hyperonnx: ") + e.what()).c_str());
  } catch (const std::exception& e) {
    return api->CreateStatus(ORT_FAIL, (std::string("hyperonnx: ") + e.what()).c_str());
  }
}
