// AttrSource over an OrtKernelInfo, through the C API with status checks (no exceptions): a missing or
// mistyped attribute simply reads as absent, and the decoder reports it by name.
#pragma once

#include <string>
#include <vector>

#include "attrs.h"
#include "ort_api.h"

namespace hyperonnx {

class KernelInfoAttrs : public AttrSource {
 public:
  KernelInfoAttrs(const OrtApi& api, const OrtKernelInfo* info) : api_(api), info_(info) {}
  bool get_string(const std::string& name, std::string* out) const override;
  bool get_int(const std::string& name, int64_t* out) const override;
  bool get_ints(const std::string& name, std::vector<int64_t>* out) const override;
  bool get_floats(const std::string& name, std::vector<float>* out) const override;

 private:
  bool ok(OrtStatus* status) const;  // releases the status
  const OrtApi& api_;
  const OrtKernelInfo* info_;
};

// An optional attribute: its value, or `fallback` when the node does not set it (a mistyped one reads as absent, as
// KernelInfoAttrs reads it).
int64_t optional_int(const OrtApi& api, const OrtKernelInfo* info, const char* name, int64_t fallback);
float optional_float(const OrtApi& api, const OrtKernelInfo* info, const char* name, float fallback);

// The node's name for error messages ("<unnamed>" when it has none).
std::string kernel_node_name(const OrtApi& api, const OrtKernelInfo* info);

// The theta blob (input `index`) when it is a constant initializer, else nullptr (not knowing is fine: every run
// checks).
const OrtValue* constant_blob(const OrtApi& api, const OrtKernelInfo* info, size_t index = 0);

// The op declares its input untyped (ORT 1.21 requires it), so every kernel checks the blob really is uint8.
inline bool is_uint8_blob(const OrtValue* value) {
  return Ort::ConstValue(value).GetTensorTypeAndShapeInfo().GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8;
}
constexpr const char* kBlobTypeError = "input 0 (the theta blob) must be a uint8 tensor";

}  // namespace hyperonnx
