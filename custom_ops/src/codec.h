// The codec table (like ggml's type traits): each codec family is one entry that turns the node's side
// information into a float32 table generator. Everything else (code unpacking, range checks, casting,
// gathering, threading) is shared, exactly as in the numpy reference (hyperonnx/codec/base.py).
//
// Adding a codec = one new file in codecs/ defining `const CodecSpec kFooCodec = {...}` plus one
// `X(kFooCodec)` line in HYPERONNX_CODECS below (CMake globs codecs/*.cc).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace hyperonnx {

// The codec's side information, keyed without the i_/f_ prefix (docs/format.md, "Attributes").
struct SideInfo {
  std::map<std::string, std::vector<int64_t>> ints;
  std::map<std::string, std::vector<float>> floats;
};

// Regenerates rows of one tensor's float32 table. Implementations are immutable after creation, so
// rows() may be called from several threads at once.
class TableGen {
 public:
  virtual ~TableGen() = default;
  virtual uint64_t entries() const = 0;
  // Writes rows [first, first + count) to out, count * group floats, with the format's exact float32 op order.
  virtual void rows(uint64_t first, uint64_t count, float* out) const = 0;
};

struct CodecSpec {
  const char* name;                     // the `codec` attribute value
  std::vector<std::string> int_keys;    // side information read as i_<key> (all required)
  std::vector<std::string> float_keys;  // side information read as f_<key> (all required)
  // Validates the side information for a node with `group` weights per code; on failure returns null and
  // sets *error (without the node name; the caller adds it).
  std::unique_ptr<TableGen> (*create)(const SideInfo& side, int64_t group, std::string* error);
};

#define HYPERONNX_CODECS(X) \
  X(kPaperCodec)              \
  X(kKroneckerCodec)

#define HYPERONNX_DECLARE_CODEC(spec) extern const CodecSpec spec;
HYPERONNX_CODECS(HYPERONNX_DECLARE_CODEC)
#undef HYPERONNX_DECLARE_CODEC

// The codec named `name`, or null.
const CodecSpec* find_codec(const std::string& name);
// "paper, kronecker" (for error messages).
std::string known_codecs();

}  // namespace hyperonnx
