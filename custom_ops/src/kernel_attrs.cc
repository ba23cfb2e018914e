#include "kernel_attrs.h"

namespace hyperonnx {

bool KernelInfoAttrs::ok(OrtStatus* status) const {
  if (status == nullptr) return true;
  api_.ReleaseStatus(status);
  return false;
}

bool KernelInfoAttrs::get_string(const std::string& name, std::string* out) const {
  size_t size = 0;
  if (!ok(api_.KernelInfoGetAttribute_string(info_, name.c_str(), nullptr, &size))) return false;
  std::string value(size, '\0');
  if (!ok(api_.KernelInfoGetAttribute_string(info_, name.c_str(), &value[0], &size))) return false;
  value.resize(size > 0 ? size - 1 : 0);  // size counts the terminating NUL
  *out = std::move(value);
  return true;
}

bool KernelInfoAttrs::get_int(const std::string& name, int64_t* out) const {
  return ok(api_.KernelInfoGetAttribute_int64(info_, name.c_str(), out));
}

bool KernelInfoAttrs::get_ints(const std::string& name, std::vector<int64_t>* out) const {
  size_t size = 0;
  if (!ok(api_.KernelInfoGetAttributeArray_int64(info_, name.c_str(), nullptr, &size))) return false;
  out->assign(size, 0);
  return size == 0 || ok(api_.KernelInfoGetAttributeArray_int64(info_, name.c_str(), out->data(), &size));
}

bool KernelInfoAttrs::get_floats(const std::string& name, std::vector<float>* out) const {
  size_t size = 0;
  if (!ok(api_.KernelInfoGetAttributeArray_float(info_, name.c_str(), nullptr, &size))) return false;
  out->assign(size, 0.0f);
  return size == 0 || ok(api_.KernelInfoGetAttributeArray_float(info_, name.c_str(), out->data(), &size));
}

namespace {

// get(info, name, &value)'s value, or `fallback` when it fails (its status released).
template <typename T, typename Get>
T attribute_or(const OrtApi& api, Get get, const OrtKernelInfo* info, const char* name, T fallback) {
  T value = fallback;
  if (OrtStatus* status = get(info, name, &value)) {
    api.ReleaseStatus(status);
    return fallback;
  }
  return value;
}

}  // namespace

int64_t optional_int(const OrtApi& api, const OrtKernelInfo* info, const char* name, int64_t fallback) {
  return attribute_or(api, api.KernelInfoGetAttribute_int64, info, name, fallback);
}

float optional_float(const OrtApi& api, const OrtKernelInfo* info, const char* name, float fallback) {
  return attribute_or(api, api.KernelInfoGetAttribute_float, info, name, fallback);
}

std::string kernel_node_name(const OrtApi& api, const OrtKernelInfo* info) {
  size_t size = 0;
  OrtStatus* status = api.KernelInfo_GetNodeName(info, nullptr, &size);
  std::string name;
  if (status == nullptr && size > 1) {
    name.assign(size, '\0');
    status = api.KernelInfo_GetNodeName(info, &name[0], &size);
    name.resize(size > 0 ? size - 1 : 0);
  }
  if (status != nullptr) {
    api.ReleaseStatus(status);
    name.clear();
  }
  return name.empty() ? "<unnamed>" : name;
}

const OrtValue* constant_blob(const OrtApi& api, const OrtKernelInfo* info, size_t index) {
  int is_constant = 0;
  const OrtValue* value = nullptr;
  OrtStatus* status = api.KernelInfoGetConstantInput_tensor(info, index, &is_constant, &value);
  if (status != nullptr) {
    api.ReleaseStatus(status);
    return nullptr;
  }
  return is_constant ? value : nullptr;
}

}  // namespace hyperonnx
