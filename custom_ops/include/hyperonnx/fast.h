/* hyperonnx fast load path, the part without ONNX Runtime: rewrite a hyperonnx model so that every HyperDecode
 * node whose θ blob is a constant initializer becomes a plain initializer holding the decoded tensor (bit-exact).
 * hyperonnx/session.h builds ORT sessions on it; Python's hyperonnx.session() and the tests call it via ctypes.
 */
#ifndef HYPERONNX_FAST_H_
#define HYPERONNX_FAST_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* hyperonnx_fast_plan*() parses and validates; hyperonnx_fast_write() decodes into buffers the caller owns:
 * model_bytes for the rewritten ONNX model, external_bytes (0: none) for the in-memory external-data file named
 * HYPERONNX_FAST_EXTERNAL_NAME. Functions returning int give 0 on success, else 1 with a one-line message in
 * err (NUL-terminated, truncated to errlen; err may be NULL). */
#define HYPERONNX_FAST_EXTERNAL_NAME "hyperonnx-decoded.bin"
#define HYPERONNX_FAST_DECODE_CALL_NODES 1 /* flag: decode call-mode nodes too */

typedef struct hyperonnx_fast_model hyperonnx_fast_model;

typedef struct hyperonnx_fast_info {
  uint64_t model_bytes;    /* size of the rewritten model */
  uint64_t external_bytes; /* size of the external-data buffer, 0 when everything is inline */
  uint64_t decoded_nodes;  /* HyperDecode nodes replaced by initializers */
  uint64_t decoded_bytes;  /* bytes of decoded tensors */
  int32_t ops_remain;      /* ai.hyperonnx nodes remain: register the op library */
  int32_t external_refs;   /* other initializers keep external data (resolve against the model's folder) */
} hyperonnx_fast_info;

/* inline_limit 0: the default; threads 0: the default. The model bytes must stay valid until
 * hyperonnx_fast_free (the _file form maps the file itself). */
__attribute__((visibility("default"))) int hyperonnx_fast_plan(const void* data, size_t len, const char* base_dir,
                                                              int flags, uint64_t inline_limit, int threads,
                                                              hyperonnx_fast_model** out, char* err, size_t errlen);
__attribute__((visibility("default"))) int hyperonnx_fast_plan_file(const char* path, int flags,
                                                                   uint64_t inline_limit, int threads,
                                                                   hyperonnx_fast_model** out, char* err,
                                                                   size_t errlen);
__attribute__((visibility("default"))) void hyperonnx_fast_get_info(const hyperonnx_fast_model* model,
                                                                   hyperonnx_fast_info* info);
__attribute__((visibility("default"))) int hyperonnx_fast_write(const hyperonnx_fast_model* model, void* model_out,
                                                               void* external_out, char* err, size_t errlen);
__attribute__((visibility("default"))) void hyperonnx_fast_free(hyperonnx_fast_model* model);

#ifdef __cplusplus
}
#endif

#endif /* HYPERONNX_FAST_H_ */
