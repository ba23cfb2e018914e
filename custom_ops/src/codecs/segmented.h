// The BlockDecoder plumbing shared by the segmented rANS codecs (`ecsq`, `tcq`, `grid`; rans.h): a blob of frequency
// tables then one stream per segment, of variable length, one unit per segment.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "../codec.h"
#include "rans.h"

namespace hyperonnx {
namespace rans {

// Derived provides `template <bool WRITE> bool run(blob, len, u0, u1, uint8_t* out, std::string* error) const`
// (units [u0, u1); WRITE false: check only, out null) and befriends this class.
template <class Derived>
class SegmentedDecoder : public BlockDecoder {
 public:
  // `tables`: how many frequency tables precede the streams, `tables_word` the same in words ("two"); `prefix`:
  // bytes of fixed size before the tables (ecsq's rank-1 term).
  SegmentedDecoder(const Segments& seg, uint64_t tables, const char* tables_word, uint64_t prefix = 0)
      : seg_(seg), tables_word_(tables_word), prefix_(prefix) {
    // The least blob: the prefix, one-symbol tables (6 bytes each), then per segment its states, its word count
    // and no words.
    min_bytes_ = prefix + 6 * tables + seg_.min_bytes();
  }

  uint64_t blob_bytes() const override { return min_bytes_; }
  std::string blob_layout() const override {
    return (prefix_ ? "a " + std::to_string(prefix_) + "-byte rank-1 term + " : std::string()) + tables_word_ +
           " frequency tables + " + std::to_string(seg_.count) + " rANS stream(s) of 2^17 blocks of " +
           std::to_string(seg_.block) + " weights";
  }
  bool variable_length() const override { return true; }
  uint64_t units() const override { return seg_.count; }
  uint64_t unit_align() const override { return 1; }

  bool validate(const uint8_t* blob, size_t len, std::string* error) const override {
    return static_cast<const Derived*>(this)->template run<false>(blob, len, 0, seg_.count, nullptr, error);
  }
  bool decode(const uint8_t* blob, size_t len, uint64_t u0, uint64_t u1, void* out, bool,
              std::string* error) const override {
    return static_cast<const Derived*>(this)->template run<true>(blob, len, u0, u1, static_cast<uint8_t*>(out),
                                                                  error);
  }

 private:
  Segments seg_;
  const char* tables_word_;
  uint64_t prefix_ = 0;
  uint64_t min_bytes_ = 0;
};

}  // namespace rans
}  // namespace hyperonnx
