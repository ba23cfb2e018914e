/* C entry points of a CUDA-enabled libhyperonnx_ops.so (built with -DHYPERONNX_CUDA=ON). They need no
 * ONNX Runtime: tests, tools and hyperonnx.doctor() call them through dlopen/ctypes. A library built
 * without CUDA does not export them (probe with dlsym / hasattr on the ctypes handle).
 *
 * Attribute text: one attribute per line, the golden-file syntax of custom_ops/tests/make_golden.py:
 *   s <name> <string>          e.g.  s codec paper
 *   i <name> <int> [<int>...]  e.g.  i shape 2 131      (an INT attribute is a one-element list)
 *   f <name> <hex> [<hex>...]  float32 bit patterns as 8 hex digits, e.g.  f f_scale 3f800000
 * Empty lines, lines starting with '#' and `blob`/`expect` lines are ignored, so a golden file's whole
 * text is valid attribute text.
 *
 * Every function returns 0 on success; otherwise a nonzero code and a NUL-terminated message in err
 * (truncated to errlen bytes; err may be null):
 *   1 invalid attributes, blob or sizes (the message is the CPU decoder's, e.g. "code 9 at position 3 is
 *     out of range: the table has 6 entries"), 2 CUDA error (no device, launch failure, ...). */
#ifndef HYPERONNX_CUDA_H_
#define HYPERONNX_CUDA_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices this library can use: 0 without a driver or device (never fails). */
int hyperonnx_cuda_available(void);

/* One line for diagnostics: CUDA runtime the library was built with, compiled architectures, driver
 * version, devices (name, compute capability, memory), or why there are none. */
int hyperonnx_cuda_info(char* buf, size_t len);

/* Output size in bytes of a node with these attributes (-1 on error). */
int64_t hyperonnx_cuda_out_bytes(const char* attrs, char* err, size_t errlen);

/* Decodes a blob into out on the current CUDA device. blob: blob_len bytes, device memory (host memory
 * is staged); out: device memory of exactly out_len == hyperonnx_cuda_out_bytes(attrs) bytes, aligned to
 * the element size; stream: a cudaStream_t (NULL = legacy default stream). Validates the attributes,
 * the blob length and every code (on the device); uploads the table per call; returns when the decode
 * on `stream` has finished. */
int hyperonnx_cuda_decode(const char* attrs, const void* blob, size_t blob_len, void* out, size_t out_len,
                          void* stream, char* err, size_t errlen);

/* The same decode with the CPU decoder (host memory in and out): the reference for GPU comparisons. */
int hyperonnx_cuda_host_decode(const char* attrs, const void* blob, size_t blob_len, void* out, size_t out_len,
                               char* err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* HYPERONNX_CUDA_H_ */
