// The codec table (like ggml's type traits): each codec family is one entry. Two kinds:
//   table codecs (paper, kronecker): the side information gives a float32 table generator; everything else
//     (code unpacking, range checks, casting, gathering, threading) is shared, exactly as in the numpy
//     reference (hyperonnx/codec/base.py);
//   blocked codecs (blockvq, blocktcq, ecsq, tcq, grid): the blob carries per-block side streams after the codes,
//     so there is no single table; the codec validates and decodes ranges of its own units (BlockDecoder). The
//     shared decoder still reads the common attributes, checks the blob length, splits the units over threads and
//     picks streaming stores. A blocked codec whose blob length is only known by parsing the blob (ecsq: entropy-coded
//     streams; grid) says so with variable_length(): the shared decoder then only checks the minimum length and
//     the codec checks the exact one in validate() and decode().
//
// Adding a codec = one new file in codecs/ defining `const CodecSpec kFooCodec = {...}` plus one
// `X(kFooCodec)` line in HYPERONNX_CODECS below (CMake globs codecs/*.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dtype.h"

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

// The node's common attributes, already validated, as a blocked codec sees them.
struct NodeLayout {
  uint64_t numel = 0;  // output elements
  uint64_t count = 0;  // codes: ceil(numel / group)
  int64_t group = 1;
  int bits = 1;
  DType dtype = DType::kFloat;
  std::vector<int64_t> shape;  // output shape (grid's transposed layout needs shape[0])
  int64_t format = 1;          // the node's format version, at most the codec's max_format
};

// Decodes one tensor of a blocked codec. Immutable after creation, so every method may be called from several
// threads at once.
class BlockDecoder {
 public:
  virtual ~BlockDecoder() = default;
  // The exact blob length (variable_length(): the least length any blob can have), and what it is made of (for
  // the length error: "123 codes of 10 bits + 9 headers").
  virtual uint64_t blob_bytes() const = 0;
  virtual std::string blob_layout() const = 0;
  // True when the length is only known by parsing the blob: the shared decoder then rejects only blobs shorter
  // than blob_bytes(), and validate() and decode() must check everything else (framing, trailing bytes) within
  // `len` bytes themselves. False (fixed length): len == blob_bytes() was checked before any call.
  virtual bool variable_length() const { return false; }
  // Independent work units (blocks); decode() may be given any sub-range, in any order, on any thread.
  virtual uint64_t units() const = 0;
  // The shared decoder hands out unit ranges starting at multiples of this (few, large units: 1).
  virtual uint64_t unit_align() const { return 64; }
  // Checks a blob of `len` bytes beyond what the shared decoder checked (see variable_length()).
  virtual bool validate(const uint8_t* blob, size_t len, std::string* error) const = 0;
  // Writes every output element of units [u0, u1) into out (the whole tensor: numel * element size bytes).
  // stream: out is 16-byte aligned and large; non-temporal stores are welcome (fenced before returning).
  // On a bad blob returns false with *error set (out partly written). The whole blob is checked by the union of
  // all the calls covering [0, units()) (each call checks what it reads; the call holding the last unit checks
  // the end of the blob); a variable-length codec with no units checks the blob in validate() only.
  virtual bool decode(const uint8_t* blob, size_t len, uint64_t u0, uint64_t u1, void* out, bool stream,
                      std::string* error) const = 0;
};

struct CodecSpec {
  const char* name;                     // the `codec` attribute value
  std::vector<std::string> int_keys;    // side information read as i_<key> (all required)
  std::vector<std::string> float_keys;  // side information read as f_<key> (all required)
  // Table codecs: validates the side information for a node with `group` weights per code; on failure returns
  // null and sets *error (without the node name; the caller adds it). Null for blocked codecs.
  std::unique_ptr<TableGen> (*create)(const SideInfo& side, int64_t group, std::string* error);
  // Blocked codecs: the same for the whole node (layout: the common attributes). Null for table codecs.
  std::unique_ptr<BlockDecoder> (*create_blocked)(const SideInfo& side, const NodeLayout& layout,
                                                  std::string* error);
  int64_t max_format = 1;  // the newest format version defined for this codec (ecsq, tcq: 2, the rank-1 term)
};

#define HYPERONNX_CODECS(X) \
  X(kPaperCodec)              \
  X(kKroneckerCodec)          \
  X(kBlockVQCodec)            \
  X(kBlockTcqCodec)           \
  X(kEcsqCodec)               \
  X(kTcqCodec)                \
  X(kGridCodec)

#define HYPERONNX_DECLARE_CODEC(spec) extern const CodecSpec spec;
HYPERONNX_CODECS(HYPERONNX_DECLARE_CODEC)
#undef HYPERONNX_DECLARE_CODEC

// The codec named `name`, or null.
const CodecSpec* find_codec(const std::string& name);
// "paper, kronecker" (for error messages).
std::string known_codecs();

}  // namespace hyperonnx
