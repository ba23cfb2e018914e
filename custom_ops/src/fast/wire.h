// A minimal protobuf wire-format reader and writer, enough to walk ONNX's ModelProto/GraphProto/NodeProto/
// TensorProto without libprotobuf (the op library must stay free of heavy dependencies). Every read is bounds
// checked: the input is untrusted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace hyperonnx {
namespace wire {

enum Type : uint32_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

// One field of a message: its number, wire type, and either its scalar value (varint / fixed) or its
// payload (length-delimited); [begin, end) spans the whole field, tag included, for verbatim copies.
struct Field {
  uint32_t number = 0;
  uint32_t type = 0;
  uint64_t value = 0;
  const uint8_t* data = nullptr;
  size_t size = 0;
  const uint8_t* begin = nullptr;
  const uint8_t* end = nullptr;
};

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), end_(data + size) {}
  bool done() const { return p_ >= end_; }
  // Reads the next field; false on malformed input (truncation, bad wire type, field number 0, groups).
  bool next(Field* f) {
    f->begin = p_;
    uint64_t tag;
    if (!varint(&tag) || (tag >> 3) == 0 || (tag >> 3) > 0x1fffffff) return false;
    f->number = static_cast<uint32_t>(tag >> 3);
    f->type = static_cast<uint32_t>(tag & 7);
    f->data = nullptr;
    f->size = 0;
    switch (f->type) {
      case kVarint:
        if (!varint(&f->value)) return false;
        break;
      case kFixed64:
        if (end_ - p_ < 8) return false;
        f->value = load(8);
        break;
      case kFixed32:
        if (end_ - p_ < 4) return false;
        f->value = load(4);
        break;
      case kLen: {
        uint64_t n;
        if (!varint(&n) || n > static_cast<uint64_t>(end_ - p_)) return false;
        f->data = p_;
        f->size = static_cast<size_t>(n);
        p_ += n;
        break;
      }
      default:
        return false;  // groups (3, 4) are not used by ONNX; 6, 7 do not exist
    }
    f->end = p_;
    return true;
  }
  bool varint(uint64_t* out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) return false;
      const uint8_t b = *p_++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) {
        *out = v;
        return true;
      }
    }
    return false;  // more than 10 bytes
  }

 private:
  uint64_t load(int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(p_[i]) << (8 * i);
    p_ += n;
    return v;
  }
  const uint8_t* p_;
  const uint8_t* end_;
};

inline size_t varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

inline void put_varint(std::string* out, uint64_t v) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

inline void put_tag(std::string* out, uint32_t number, uint32_t type) {
  put_varint(out, (static_cast<uint64_t>(number) << 3) | type);
}

inline void put_bytes(std::string* out, uint32_t number, const std::string& s) {
  put_tag(out, number, kLen);
  put_varint(out, s.size());
  out->append(s);
}

}  // namespace wire
}  // namespace hyperonnx
