#include "decoder.h"

#include <algorithm>
#include <cstring>
#include <mutex>

#include "parallel.h"
#include "unpack.h"

namespace hyperonnx {
namespace {

// Bounds that keep every size computation below far from overflow (count * bits, numel * 8, ...).
constexpr uint64_t kMaxElements = uint64_t{1} << 56;
constexpr int64_t kMaxGroup = int64_t{1} << 24;
// Codes unpacked per step: a 4 KiB buffer that stays in L1 between unpack and gather.
constexpr size_t kChunkCodes = 1024;

bool fail(std::string* error, const std::string& message) {
  *error = message;
  return false;
}

template <size_t RB>
void gather_rows(const uint8_t* table, const uint32_t* codes, size_t n, uint8_t* out) {
  for (size_t i = 0; i < n; ++i) std::memcpy(out + i * RB, table + static_cast<size_t>(codes[i]) * RB, RB);
}

void gather_rows_any(const uint8_t* table, size_t rb, const uint32_t* codes, size_t n, uint8_t* out) {
  switch (rb) {
    case 2: return gather_rows<2>(table, codes, n, out);
    case 4: return gather_rows<4>(table, codes, n, out);
    case 8: return gather_rows<8>(table, codes, n, out);
    case 16: return gather_rows<16>(table, codes, n, out);
    default:
      for (size_t i = 0; i < n; ++i) std::memcpy(out + i * rb, table + static_cast<size_t>(codes[i]) * rb, rb);
  }
}

}  // namespace

bool parse_mode(const std::string& text, Mode* out) {
  if (text == "load") {
    *out = Mode::kLoad;
  } else if (text == "call") {
    *out = Mode::kCall;
  } else {
    return false;
  }
  return true;
}

const char* mode_name(Mode m) { return m == Mode::kLoad ? "load" : "call"; }

std::unique_ptr<Decoder> Decoder::create(const AttrSource& attrs, std::string* error) {
  std::unique_ptr<Decoder> d(new Decoder());
  auto bad = [&](const std::string& message) {
    *error = message;
    return nullptr;
  };

  std::string codec_name;
  if (!attrs.get_string("codec", &codec_name)) return bad("missing string attribute 'codec'");
  const CodecSpec* codec = find_codec(codec_name);
  if (!codec) return bad("unknown codec '" + codec_name + "' (this library knows: " + known_codecs() + ")");

  int64_t format = 0, dtype = 0, group = 0, bits = 0;
  if (!attrs.get_int("format", &format)) return bad("missing int attribute 'format'");
  if (format != kFormatVersion) {
    return bad("format version " + std::to_string(format) + " is not supported (this library reads version " +
               std::to_string(kFormatVersion) + "; upgrade hyperonnx)");
  }
  if (!attrs.get_int("dtype", &dtype)) return bad("missing int attribute 'dtype'");
  if (!dtype_from_onnx(dtype, &d->dtype_)) {
    return bad("dtype " + std::to_string(dtype) + " is not supported (FLOAT 1, FLOAT16 10, DOUBLE 11, BFLOAT16 16)");
  }
  if (!attrs.get_int("group", &group)) return bad("missing int attribute 'group'");
  if (group < 1 || group > kMaxGroup) return bad("group must be in 1.." + std::to_string(kMaxGroup) + ", got " + std::to_string(group));
  if (!attrs.get_int("bits", &bits)) return bad("missing int attribute 'bits'");
  if (bits < 1 || bits > 32) return bad("bits must be in 1..32, got " + std::to_string(bits));
  if (!attrs.get_ints("shape", &d->shape_)) return bad("missing ints attribute 'shape'");
  uint64_t numel = 1;
  for (int64_t dim : d->shape_) {
    if (dim < 0) return bad("shape has a negative dimension " + std::to_string(dim));
    if (dim != 0 && numel > kMaxElements / static_cast<uint64_t>(dim)) return bad("shape has too many elements");
    numel *= static_cast<uint64_t>(dim);
  }
  std::string mode = "load";
  attrs.get_string("mode", &mode);  // optional; the format's default is load
  if (!parse_mode(mode, &d->mode_)) return bad("mode must be 'load' or 'call', got '" + mode + "'");

  d->group_ = group;
  d->bits_ = static_cast<int>(bits);
  d->numel_ = numel;
  d->count_ = (numel + static_cast<uint64_t>(group) - 1) / static_cast<uint64_t>(group);
  d->blob_bytes_ = static_cast<size_t>((d->count_ * static_cast<uint64_t>(bits) + 7) / 8);
  d->row_bytes_ = static_cast<size_t>(group) * dtype_size(d->dtype_);

  SideInfo side;
  for (const auto& key : codec->int_keys) {
    if (!attrs.get_ints("i_" + key, &side.ints[key])) return bad("codec " + codec_name + ": missing ints attribute 'i_" + key + "'");
  }
  for (const auto& key : codec->float_keys) {
    if (!attrs.get_floats("f_" + key, &side.floats[key])) {
      return bad("codec " + codec_name + ": missing floats attribute 'f_" + key + "'");
    }
  }
  d->gen_ = codec->create(side, group, error);
  if (!d->gen_) return nullptr;
  d->entries_ = d->gen_->entries();
  if (d->entries_ == 0) return bad("codec " + codec_name + ": empty table");

  // Codes are < 2^bits, so no row past that can be used; a table larger than the output is not worth building.
  const uint64_t reachable = bits == 32 ? (uint64_t{1} << 32) : (uint64_t{1} << bits);
  d->table_rows_ = std::min(d->entries_, reachable);
  const uint64_t g = static_cast<uint64_t>(group);
  d->use_table_ = d->table_rows_ <= d->count_ || d->table_rows_ * g <= (uint64_t{1} << 20);
  if (d->use_table_) {
    std::vector<float> rows(static_cast<size_t>(d->table_rows_ * g));
    d->gen_->rows(0, d->table_rows_, rows.data());
    d->table_.resize(rows.size() * dtype_size(d->dtype_));
    cast_floats(rows.data(), rows.size(), d->dtype_, d->table_.data());
  }
  return d;
}

bool Decoder::check_length(size_t len, std::string* error) const {
  if (len == blob_bytes_) return true;
  return fail(error, "blob holds " + std::to_string(len) + " bytes, expected " + std::to_string(blob_bytes_) + " (" +
                         std::to_string(count_) + " codes of " + std::to_string(bits_) + " bits)");
}

bool Decoder::check_codes(const uint32_t* codes, size_t n, uint64_t first, uint32_t* bad_code,
                          uint64_t* bad_index) const {
  uint32_t top = 0;
  for (size_t i = 0; i < n; ++i) top = std::max(top, codes[i]);  // branch-free; vectorizes
  if (top < entries_) return true;
  for (size_t i = 0; i < n; ++i) {
    if (codes[i] >= entries_) {
      *bad_code = codes[i];
      *bad_index = first + i;
      break;
    }
  }
  return false;
}

bool Decoder::scan_range(const uint8_t* blob, size_t len, uint64_t c0, uint64_t c1, uint32_t* bad_code,
                         uint64_t* bad_index) const {
  uint32_t codes[kChunkCodes];
  for (uint64_t c = c0; c < c1; c += kChunkCodes) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkCodes, c1 - c));
    unpack_codes(blob, len, bits_, c, n, codes);
    if (!check_codes(codes, n, c, bad_code, bad_index)) return false;
  }
  return true;
}

bool Decoder::decode_range(const uint8_t* blob, size_t len, uint64_t c0, uint64_t c1, uint8_t* out,
                           uint32_t* bad_code, uint64_t* bad_index) const {
  const size_t esize = dtype_size(dtype_);
  const size_t tail_elems = static_cast<size_t>(numel_ - (count_ - 1) * static_cast<uint64_t>(group_));
  std::vector<float> gen_row;      // direct path only
  std::vector<uint8_t> cast_row;  // direct path, and the last (partial) row
  uint32_t codes[kChunkCodes];
  for (uint64_t c = c0; c < c1; c += kChunkCodes) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(kChunkCodes, c1 - c));
    unpack_codes(blob, len, bits_, c, n, codes);
    if (!check_codes(codes, n, c, bad_code, bad_index)) return false;  // before any table read
    uint8_t* dst = out + static_cast<size_t>(c) * row_bytes_;
    // The last code of the tensor may cover fewer than `group` elements (the encoder's pad is dropped).
    const bool has_tail = c + n == count_;
    const size_t full = has_tail ? n - 1 : n;
    if (use_table_) {
      gather_rows_any(table_.data(), row_bytes_, codes, full, dst);
      if (has_tail) std::memcpy(dst + full * row_bytes_, table_.data() + codes[full] * row_bytes_, tail_elems * esize);
    } else {
      gen_row.resize(static_cast<size_t>(group_));
      cast_row.resize(row_bytes_);
      for (size_t i = 0; i < n; ++i) {
        gen_->rows(codes[i], 1, gen_row.data());
        cast_floats(gen_row.data(), gen_row.size(), dtype_, cast_row.data());
        std::memcpy(dst + i * row_bytes_, cast_row.data(), (has_tail && i == full) ? tail_elems * esize : row_bytes_);
      }
    }
  }
  return true;
}

namespace {

// Collects the first failure (lowest code index) reported by any worker.
struct FirstBadCode {
  std::mutex mu;
  bool failed = false;
  uint32_t code = 0;
  uint64_t index = 0;
  void report(uint32_t c, uint64_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!failed || i < index) {
      failed = true;
      code = c;
      index = i;
    }
  }
};

}  // namespace

bool Decoder::validate(const uint8_t* blob, size_t len, std::string* error) const {
  if (!check_length(len, error)) return false;
  uint32_t code = 0;
  uint64_t index = 0;
  if (scan_range(blob, len, 0, count_, &code, &index)) return true;
  return fail(error, "code " + std::to_string(code) + " at position " + std::to_string(index) +
                         " is out of range: the table has " + std::to_string(entries_) + " entries");
}

bool Decoder::decode(const uint8_t* blob, size_t len, void* out, int threads, std::string* error) const {
  if (!check_length(len, error)) return false;
  if (numel_ == 0) return true;
  auto* dst = static_cast<uint8_t*>(out);
  FirstBadCode bad;
  parallel_ranges(count_, 64, numel_ >= kParallelMinElements ? threads : 1, [&](uint64_t c0, uint64_t c1) {
    uint32_t code = 0;
    uint64_t index = 0;
    if (!decode_range(blob, len, c0, c1, dst, &code, &index)) bad.report(code, index);
  });
  if (!bad.failed) return true;
  return fail(error, "code " + std::to_string(bad.code) + " at position " + std::to_string(bad.index) +
                         " is out of range: the table has " + std::to_string(entries_) + " entries");
}

}  // namespace hyperonnx
