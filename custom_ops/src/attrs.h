// Where a HyperDecode node's attributes come from, kept abstract so the decoder core does not depend on
// ONNX Runtime: the op reads them from OrtKernelInfo, the C++ tests from golden files.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace hyperonnx {

class AttrSource {
 public:
  virtual ~AttrSource() = default;
  // Each getter returns false when the attribute is absent (or has another type).
  virtual bool get_string(const std::string& name, std::string* out) const = 0;
  virtual bool get_int(const std::string& name, int64_t* out) const = 0;
  virtual bool get_ints(const std::string& name, std::vector<int64_t>* out) const = 0;
  virtual bool get_floats(const std::string& name, std::vector<float>* out) const = 0;
};

// An in-memory attribute set (tests, tools).
class MapAttrs : public AttrSource {
 public:
  std::map<std::string, std::string> strings;
  std::map<std::string, std::vector<int64_t>> ints;  // an INT attribute is stored as a one-element list
  std::map<std::string, std::vector<float>> floats;

  bool get_string(const std::string& name, std::string* out) const override;
  bool get_int(const std::string& name, int64_t* out) const override;
  bool get_ints(const std::string& name, std::vector<int64_t>* out) const override;
  bool get_floats(const std::string& name, std::vector<float>* out) const override;
};

}  // namespace hyperonnx
