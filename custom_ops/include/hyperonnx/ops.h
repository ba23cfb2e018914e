/* hyperonnx custom-op library: registration entry points.
 *
 * Shared library (libhyperonnx_ops.so): ONNX Runtime finds `RegisterCustomOps` itself when an application
 * calls SessionOptions::RegisterCustomOpsLibrary / Python's register_custom_ops_library.
 *
 * Static library (hyperonnx_ops_static): call hyperonnx_register_ops(session_options, OrtGetApiBase())
 * before creating the session. Both read the session config entries
 *   hyperonnx.decode_mode     "load" | "call"   overrides every node's `mode` attribute
 *   hyperonnx.decode_threads  positive integer  threads used to decode one large tensor
 * at registration time, so set them before registering.
 */
#ifndef HYPERONNX_OPS_H_
#define HYPERONNX_OPS_H_

#include <onnxruntime_c_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Registers the ai.hyperonnx domain (HyperDecode) with `options`. Returns NULL on success, or an OrtStatus
 * the caller must release (e.g. when the runtime is older than ONNX Runtime 1.21). */
__attribute__((visibility("default"))) OrtStatus* hyperonnx_register_ops(OrtSessionOptions* options,
                                                                        const OrtApiBase* api_base);

#ifdef __cplusplus
}
#endif

#endif /* HYPERONNX_OPS_H_ */
