// The ORT-free half of the fast path's C API (include/hyperonnx/session.h): a model, mapped from a file or
// borrowed from the caller, with its rewrite plan; plus anonymous mappings for the output buffers, so that
// freeing them gives the memory back to the system at once (malloc may keep freed blocks in its heap).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "fast/rewrite.h"

struct hyperonnx_fast_model {
  void* map = nullptr;  // the mapped file (plan_file), else null
  size_t map_len = 0;
  std::unique_ptr<hyperonnx::fast::Plan> plan;
  ~hyperonnx_fast_model();
};

namespace hyperonnx {
namespace fast {

// Maps `path` and plans it (base_dir: the file's folder). Null with *error on failure.
std::unique_ptr<hyperonnx_fast_model> plan_file(const char* path, const Options& options, std::string* error);
std::unique_ptr<hyperonnx_fast_model> plan_bytes(const void* data, size_t len, const Options& options,
                                                 std::string* error);

// Anonymous memory, unmapped on destruction.
class Buffer {
 public:
  Buffer() = default;
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  bool allocate(size_t n);  // false when the system refuses (n == 0: a null buffer)
  uint8_t* data() const { return static_cast<uint8_t*>(p_); }
  size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace fast
}  // namespace hyperonnx
