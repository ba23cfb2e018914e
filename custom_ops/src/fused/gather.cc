#include "gather.h"

#include <vector>

namespace hyperonnx {

bool fused_gather_rows(const void* indices, bool is64, size_t i0, size_t i1, int64_t vocab, int64_t* rows,
                       std::string* error) {
  for (size_t i = i0; i < i1; ++i) {
    const int64_t idx = is64 ? static_cast<const int64_t*>(indices)[i] : static_cast<const int32_t*>(indices)[i];
    if (idx < -vocab || idx >= vocab) {
      *error = "index " + std::to_string(idx) + " at position " + std::to_string(i) + " is out of range for " +
               std::to_string(vocab) + " rows (valid: -" + std::to_string(vocab) + ".." + std::to_string(vocab - 1) +
               ")";
      return false;
    }
    rows[i] = idx < 0 ? idx + vocab : idx;
  }
  return true;
}

bool fused_gather(const FusedWeight& w, const uint8_t* blob, size_t len, const int64_t* rows, size_t i0, size_t i1,
                  float* out, std::string* error) {
  const uint64_t d = static_cast<uint64_t>(w.cols());
  thread_local std::vector<float> scratch;
  for (size_t i = i0; i < i1; ++i) {
    const uint64_t e0 = static_cast<uint64_t>(rows[i]) * d;
    if (!w.decode(blob, len, e0, e0 + d, out + (i - i0) * d, &scratch, error)) return false;
  }
  return true;
}

}  // namespace hyperonnx
