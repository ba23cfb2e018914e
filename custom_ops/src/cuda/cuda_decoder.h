// Host side of the CUDA HyperDecode: wraps the CPU Decoder (attribute validation, the float32 table built
// and cast by the codec code: no table math here), uploads its table once, and runs the device kernels.
// Shared by the ORT CUDA kernel (cuda_op.cc), the C entry points (c_api.cc) and the CUDA test program.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "decoder.h"
#include "host_table.h"

namespace hyperonnx {
namespace cuda {

class CudaDecoder {
 public:
  // Host work only (no CUDA call): keeps the decoder's cast table, or builds it with the decoder's own
  // table generator and cast when the CPU decoder generates rows per code instead (host_table.h).
  explicit CudaDecoder(std::unique_ptr<Decoder> dec);
  ~CudaDecoder();
  CudaDecoder(const CudaDecoder&) = delete;
  CudaDecoder& operator=(const CudaDecoder&) = delete;

  const Decoder& host() const { return *dec_; }
  // False when the table exceeds kMaxDeviceTableBytes: decode() then decodes on the host and uploads.
  bool device_table() const { return device_table_; }

  // Decodes `blob` (len bytes; device or host memory, any alignment) into `out` (device memory,
  // host().out_bytes() bytes, aligned to the element size) on `stream` (a cudaStream_t, null = legacy
  // default stream), on the current device (the first call fixes it; the table is uploaded then).
  //   check = true:  the first out-of-range code fails the call with the CPU decoder's message; waits for
  //                  the stream.
  //   check = false: asynchronous, for blobs validated before. Out-of-range codes still never index the
  //                  table (their rows are left unwritten) but are not reported.
  // A wrong blob length is always reported (host check). On failure `out` is partly written.
  bool decode(const void* blob, size_t len, void* out, void* stream, bool check, std::string* error);

  // Length and range check of `blob` (device or host memory) without decoding; waits for the stream.
  bool validate(const void* blob, size_t len, void* stream, std::string* error);

 private:
  bool check_length(size_t len, std::string* error) const;
  bool ensure_device(void* stream, std::string* error);  // table + error word on the current device, once
  bool read_bad_index(void* stream, uint64_t* index, std::string* error);
  std::string bad_code_message(const void* blob, size_t len, uint64_t index, void* stream) const;
  bool launch_checked(const void* blob, size_t len, void* out, void* stream, bool check, std::string* error);
  bool host_decode(const void* blob, size_t len, void* out, void* stream, std::string* error);

  std::unique_ptr<Decoder> dec_;
  std::vector<uint8_t> own_table_;  // the table when the CPU decoder has none
  const uint8_t* table_ = nullptr;  // host copy of the cast table (dec_'s or own_table_)
  size_t table_bytes_ = 0;
  bool device_table_ = true;

  std::mutex mu_;  // guards the upload and the error word (checked decodes are serialized)
  int device_ = -1;
  void* d_table_ = nullptr;
  unsigned long long* d_bad_ = nullptr;
};

// Whether a kernel may read p (device, managed or mapped pinned memory; false for pageable host memory).
bool device_accessible(const void* p);

// "CUDA error <name> (<text>) in <what>"
std::string cuda_error_message(int err, const char* what);

}  // namespace cuda
}  // namespace hyperonnx
