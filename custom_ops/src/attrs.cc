#include "attrs.h"

namespace hyperonnx {

bool MapAttrs::get_string(const std::string& name, std::string* out) const {
  auto it = strings.find(name);
  if (it == strings.end()) return false;
  *out = it->second;
  return true;
}

bool MapAttrs::get_int(const std::string& name, int64_t* out) const {
  auto it = ints.find(name);
  if (it == ints.end() || it->second.size() != 1) return false;
  *out = it->second[0];
  return true;
}

bool MapAttrs::get_ints(const std::string& name, std::vector<int64_t>* out) const {
  auto it = ints.find(name);
  if (it == ints.end()) return false;
  *out = it->second;
  return true;
}

bool MapAttrs::get_floats(const std::string& name, std::vector<float>* out) const {
  auto it = floats.find(name);
  if (it == floats.end()) return false;
  *out = it->second;
  return true;
}

}  // namespace hyperonnx
