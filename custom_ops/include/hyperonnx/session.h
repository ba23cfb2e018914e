/* hyperonnx fast load path: an ONNX Runtime session for a hyperonnx model that runs like the original model.
 *
 * hyperonnx_create_session() reads the model, decodes every HyperDecode node whose θ blob is a constant
 * initializer (bit-exact, with the kernel's own decoder), and creates the session from a rewritten model in
 * which those nodes are plain constant initializers: ONNX Runtime prepacks them, converts Conv weights to NCHWc
 * and constant-folds as it does for the original model. The decoded tensors live in a buffer freed before the
 * call returns, so no second copy stays resident (docs/ops.md, "Fast path").
 *
 * The library never links ONNX Runtime: the application passes ORT's API (OrtGetApiBase()), and the session
 * belongs to the application (release it with OrtApi::ReleaseSession). The caller's options are not modified
 * (the library works on a clone). Nodes that stay kernels (θ fed at run time; nodes whose `mode` is "call",
 * unless hyperonnx.fast_decode is "all") run in the op library, which the call registers on the clone; do not
 * register it yourself on options passed here.
 *
 * Session config entries read from `options` (OrtApi::AddSessionConfigEntry):
 *   hyperonnx.fast_decode        "load" (default): decode nodes whose mode is "load"; "all": call-mode nodes too
 *   hyperonnx.decode_threads     threads used to decode one large tensor (default: hardware, at most 8)
 *   hyperonnx.fast_inline_limit  bytes; decoded weights go into the rewritten protobuf while it stays below this
 *                                (default just under 2 GiB, protobuf's limit); above it they are handed to ORT as
 *                                an in-memory external-data file (AddExternalInitializersFromFilesInMemory)
 *
 * Errors: a non-NULL OrtStatus (release it with OrtApi::ReleaseStatus) whose message is one line starting with
 * "hyperonnx: ", e.g. for a missing or non-ONNX file, a malformed θ blob, a missing external-data file; nothing
 * is left allocated. ONNX Runtime >= 1.21 (C API 21).
 */
#ifndef HYPERONNX_SESSION_H_
#define HYPERONNX_SESSION_H_

#include <stddef.h>

#include <onnxruntime_c_api.h>

#include "hyperonnx/fast.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HYPERONNX_CONFIG_FAST_DECODE "hyperonnx.fast_decode"
#define HYPERONNX_CONFIG_FAST_INLINE_LIMIT "hyperonnx.fast_inline_limit"

/* A session for the model at `model_path` (external data beside it, models over 2 GiB included). `options`
 * may be NULL (defaults). On success *out is the new session. */
__attribute__((visibility("default"))) OrtStatus* hyperonnx_create_session(const OrtApiBase* api_base,
                                                                          const OrtEnv* env, const char* model_path,
                                                                          const OrtSessionOptions* options,
                                                                          OrtSession** out);

/* The same for a model in memory. `external_data_dir`: the folder its external-data locations are relative to
 * (NULL: the model must have none). */
__attribute__((visibility("default"))) OrtStatus* hyperonnx_create_session_from_array(
    const OrtApiBase* api_base, const OrtEnv* env, const void* model_data, size_t model_data_length,
    const char* external_data_dir, const OrtSessionOptions* options, OrtSession** out);

#ifdef __cplusplus
}
#endif

#endif /* HYPERONNX_SESSION_H_ */
