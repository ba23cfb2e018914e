// The fast load path's core, free of ONNX Runtime: reads an ONNX model (protobuf bytes), finds every HyperDecode
// node whose θ blob is a constant initializer, and writes the model with each such node replaced by a plain
// initializer holding the decoded tensor (bit-exact: the same Decoder the kernel uses). Everything else is copied
// byte for byte. ORT then sees the weights as constants, as in the original model, so prepacking, NCHWc layouts
// and constant folding apply (docs/ops.md, "Fast path").
//
// Two phases, so the caller owns the (large) output memory and nothing is decoded twice:
//   plan = Plan::create(bytes, ...)      parse, validate attributes, lay out the output (sizes known)
//   plan->write(model_buf, external_buf) decode every tensor straight into the output buffers
// Decoded tensors go inline (TensorProto.raw_data) while the whole model stays under `inline_limit` (protobuf
// cannot parse messages of 2 GiB or more); above it, the main graph's decoded tensors go into one separate
// buffer, referenced as external data of the in-memory file external_name() (ORT:
// AddExternalInitializersFromFilesInMemory, which copies them).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "fast/wire.h"

namespace hyperonnx {
namespace fast {

// Just under protobuf's 2 GiB message limit, leaving room for ORT's own bookkeeping.
constexpr uint64_t kDefaultInlineLimit = (uint64_t{1} << 31) - (uint64_t{1} << 20);
constexpr const char* kExternalName = "hyperonnx-decoded.bin";
constexpr size_t kExternalAlign = 64;

// True for a relative path that stays inside its folder (no "..", not absolute): external-data locations.
bool safe_relative(const std::string& location);

struct Options {
  bool decode_call_nodes = false;  // also decode nodes whose `mode` is "call" (default: they stay kernels)
  int threads = 0;                 // decode threads per large tensor (0: default_decode_threads())
  uint64_t inline_limit = kDefaultInlineLimit;
  // Folder that relative external-data locations of θ blobs resolve against; empty: θ blobs with external
  // data are an error (a model given as bytes with no folder).
  std::string base_dir;
};

struct Graph;
struct Job;
struct Piece;

class Plan {
 public:
  ~Plan();
  // Parses `data` (which must stay valid until write() returns). Returns null with *error set (one line) on
  // malformed input: not a protobuf ModelProto, a HyperDecode node with bad attributes, a θ blob of the wrong
  // type or size, unreadable external data.
  static std::unique_ptr<Plan> create(const uint8_t* data, size_t size, const Options& options, std::string* error);

  size_t model_bytes() const { return model_bytes_; }
  size_t external_bytes() const { return external_bytes_; }  // 0: everything is inline
  size_t decoded_count() const;  // nodes replaced
  size_t decoded_bytes() const;  // bytes of decoded tensors
  bool ops_remain() const { return ops_remain_; }  // ai.hyperonnx nodes left (call-mode or run-time θ)
  size_t external_refs() const { return external_refs_; }  // kept initializers with external data
  // Their external-data locations (relative paths, as written in the model), each once.
  const std::vector<std::string>& external_locations() const { return locations_; }

  // Writes the model (model_bytes() bytes) and the external buffer (external_bytes(); null when 0), decoding
  // every tensor. False with *error set when a blob fails to decode (the output is then unusable).
  bool write(uint8_t* model, uint8_t* external, std::string* error) const;

 private:
  Plan();
  bool layout(bool externalize, std::string* error);

  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  Options options_;
  std::vector<wire::Field> model_fields_;
  std::unique_ptr<Graph> graph_;
  std::vector<std::unique_ptr<Job>> jobs_;
  std::vector<Piece> pieces_;
  std::deque<std::string> owned_;
  size_t model_bytes_ = 0, external_bytes_ = 0, external_refs_ = 0;
  std::vector<std::string> locations_;
  bool ops_remain_ = false;
  bool keep_domain_ = true;
};

}  // namespace fast
}  // namespace hyperonnx
