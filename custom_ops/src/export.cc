// The shared library's only entry point, found by name by OrtApi::RegisterCustomOpsLibrary. Kept out of
// the static library so applications linking it can still load other custom-op libraries.
#include "hyperonnx/ops.h"

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  return hyperonnx_register_ops(options, api_base);
}
