// One HyperDecode node's validated attributes plus its decode table: everything needed to turn a θ blob
// into the weight tensor. Independent of ONNX Runtime (the op wraps it; the C++ tests drive it directly).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attrs.h"
#include "codec.h"
#include "dtype.h"

namespace hyperonnx {

enum class Mode { kLoad, kCall };
// "load" / "call"; returns false for anything else.
bool parse_mode(const std::string& text, Mode* out);
const char* mode_name(Mode m);

// The newest format version this library reads; 1 is read by every codec, later ones by the codecs that
// declare them (CodecSpec::max_format).
constexpr int64_t kFormatVersion = 2;
// Tensors with at least this many elements are decoded by several threads.
constexpr uint64_t kParallelMinElements = uint64_t{1} << 20;

class Decoder {
 public:
  // Reads and validates every attribute (docs/format.md) and builds the table. Returns null and sets
  // *error on any problem; the message does not name the node (the caller knows it).
  static std::unique_ptr<Decoder> create(const AttrSource& attrs, std::string* error);

  const std::vector<int64_t>& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  Mode mode() const { return mode_; }
  uint64_t numel() const { return numel_; }
  uint64_t count() const { return count_; }
  // The exact blob length, or for variable-length codecs (variable_length()) the least one.
  size_t blob_bytes() const { return blob_bytes_; }
  bool variable_length() const { return blocked_ && blocked_->variable_length(); }
  size_t out_bytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  // For other backends (the CUDA kernel uploads the cast table): code width, weights per code, table size.
  int bits() const { return bits_; }
  int64_t group() const { return group_; }
  uint64_t entries() const { return entries_; }
  // Table codecs: rows [0, table_rows()) of the table cast to dtype() (table_rows() * group() elements), or
  // empty when the decoder generates rows per code instead; table_gen() then regenerates them (float32,
  // uncast). Blocked codecs (blocked() != null) have neither: no table, no generator, table_rows() == 0.
  uint64_t table_rows() const { return table_rows_; }
  const std::vector<uint8_t>& table() const { return table_; }
  const TableGen& table_gen() const { return *gen_; }
  // The codec's own decoder for blocked codecs (codec.h), else null.
  const BlockDecoder* blocked() const { return blocked_.get(); }

  // True when len is the exact blob length (variable-length blocked codecs: at least the least length, the rest
  // is checked by validate() and decode()); else false with the message every backend reports.
  bool check_length(size_t len, std::string* error) const;
  // Checks the blob's length and that every code is < entries (blocked codecs: their own checks), without
  // decoding.
  bool validate(const uint8_t* blob, size_t len, std::string* error) const;

  // Decodes the blob into out (out_bytes() bytes). Tensors of >= kParallelMinElements use up to `threads`
  // threads. On failure (bad length, code out of range) returns false with *error set; out is then partly
  // written. Thread-safe: the decoder is not modified.
  bool decode(const uint8_t* blob, size_t len, void* out, int threads, std::string* error) const;

 private:
  Decoder() = default;
  bool decode_blocked(const uint8_t* blob, size_t len, void* out, int threads, std::string* error) const;
  // Decodes codes [c0, c1); on a bad code stores it in *bad_code/*bad_index and returns false.
  bool decode_range(const uint8_t* blob, size_t len, uint64_t c0, uint64_t c1, uint8_t* out, uint32_t* bad_code,
                    uint64_t* bad_index) const;
  bool check_codes(const uint32_t* codes, size_t n, uint64_t first, uint32_t* bad_code, uint64_t* bad_index) const;
  bool scan_range(const uint8_t* blob, size_t len, uint64_t c0, uint64_t c1, uint32_t* bad_code,
                  uint64_t* bad_index) const;

  std::vector<int64_t> shape_;
  DType dtype_ = DType::kFloat;
  Mode mode_ = Mode::kLoad;
  int64_t group_ = 1;
  int bits_ = 1;
  uint64_t numel_ = 0, count_ = 0, entries_ = 0;
  size_t blob_bytes_ = 0;
  size_t row_bytes_ = 0;  // group * element size

  // Rows [0, table_rows_) of the table already cast to dtype_. When the table would be larger than the
  // output itself (a huge codebook for a tiny tensor) rows are generated per code from gen_ instead.
  std::unique_ptr<TableGen> gen_;
  std::unique_ptr<BlockDecoder> blocked_;  // blocked codecs only (then gen_ and table_ are empty)
  std::vector<uint8_t> table_;
  uint64_t table_rows_ = 0;
  bool use_table_ = true;
};

}  // namespace hyperonnx
