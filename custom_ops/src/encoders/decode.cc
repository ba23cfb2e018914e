// The converter's check of each encoding (hyperonnx/passes/compress.py, encode_tensor): decode it and measure its
// weight SQNR. Python reaches these through hyperonnx/codec/native.py (decode, sqnr_sums).
//
// hx_decode runs the op library's own decoder core (custom_ops/src/decoder.h and codecs/, compiled into this
// library as well; no ONNX Runtime), which decodes bit-exactly what the numpy decoders do: the golden vectors and
// tests/codec/test_native_decode.py hold both to that.
//
// hx_sqnr_sums reproduces compress.sqnr_db's float64 sums bit for bit: per chunk of 2^20 weights, numpy's
// add.reduce of a contiguous float64 array, which is 0 + the pairwise sum below (numpy's pairwise_sum: blocks of
// at most 128 summed with eight accumulators, larger ranges split at a multiple of 8 near the middle), the chunks'
// sums then added in order as Python floats. The terms are made on the fly, so nothing of the tensor's size is
// allocated; chunks are summed on threads and combined in order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../attrs.h"
#include "../decoder.h"
#include "../dtype.h"
#include "../parallel.h"
#include "encoders.h"

namespace {

using hyperonnx::DType;

constexpr uint64_t kSqnrChunk = uint64_t{1} << 20;  // compress.sqnr_db's chunk
constexpr int64_t kPairwiseBlock = 128;             // numpy's PW_BLOCKSIZE

void set_error(const std::string& message, char* error, uint64_t capacity) {
  if (error == nullptr || capacity == 0) return;
  const size_t n = std::min<size_t>(message.size(), static_cast<size_t>(capacity - 1));
  std::memcpy(error, message.data(), n);
  error[n] = '\0';
}

// The attribute text native.py writes: one attribute a line, "<kind> <name> <values...>", kind s (one token), i
// (integers, possibly none) or f (floats in C99 hex form, exact). Returns false on anything else.
bool parse_attrs(const char* text, uint64_t len, hyperonnx::MapAttrs* attrs) {
  std::string all(text, static_cast<size_t>(len));
  size_t pos = 0;
  while (pos < all.size()) {
    size_t end = all.find('\n', pos);
    if (end == std::string::npos) end = all.size();
    const std::string line = all.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    std::vector<std::string> tokens;
    for (size_t at = 0; at < line.size();) {
      const size_t stop = std::min(line.find(' ', at), line.size());
      if (stop > at) tokens.push_back(line.substr(at, stop - at));
      at = stop + 1;
    }
    if (tokens.size() < 2 || tokens[0].size() != 1) return false;
    const char kind = tokens[0][0];
    const std::string& name = tokens[1];
    if (kind == 's') {
      if (tokens.size() != 3) return false;
      attrs->strings[name] = tokens[2];
      continue;
    }
    if (kind != 'i' && kind != 'f') return false;
    std::vector<int64_t> ints;
    std::vector<float> floats;
    for (size_t k = 2; k < tokens.size(); ++k) {
      char* stop = nullptr;
      if (kind == 'i') {
        ints.push_back(std::strtoll(tokens[k].c_str(), &stop, 10));
      } else {
        floats.push_back(static_cast<float>(std::strtod(tokens[k].c_str(), &stop)));  // float32 values: exact
      }
      if (stop == nullptr || *stop != '\0') return false;
    }
    if (kind == 'i') {
      attrs->ints[name] = std::move(ints);
    } else {
      attrs->floats[name] = std::move(floats);
    }
  }
  return true;
}

// One element as float64, exactly (every supported dtype widens without rounding).
template <DType T>
inline double widen(const void* data, uint64_t i) {
  if constexpr (T == DType::kFloat) {
    return static_cast<const float*>(data)[i];
  } else if constexpr (T == DType::kDouble) {
    return static_cast<const double*>(data)[i];
  } else if constexpr (T == DType::kBFloat16) {
    const uint32_t u = static_cast<uint32_t>(static_cast<const uint16_t*>(data)[i]) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  } else {
    const uint32_t h = static_cast<const uint16_t*>(data)[i];
    if ((h & 0x7c00u) == 0x7c00u) {  // inf or NaN (half_to_float takes finite values only)
      const double inf = (h & 0x3ffu) ? std::nan("") : HUGE_VAL;
      return (h & 0x8000u) ? -inf : inf;
    }
    return hyperonnx::half_to_float(h);
  }
}

// numpy's pairwise sum of term(i) for i in [first, first + n).
template <class Term>
double pairwise(const Term& term, uint64_t first, int64_t n) {
  if (n < 8) {
    double res = 0.0;
    for (int64_t i = 0; i < n; ++i) res += term(first + i);
    return res;
  }
  if (n <= kPairwiseBlock) {
    double r[8];
    for (int k = 0; k < 8; ++k) r[k] = term(first + k);
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (int k = 0; k < 8; ++k) r[k] += term(first + i + k);
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += term(first + i);
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise(term, first, n2) + pairwise(term, first + n2, n - n2);
}

template <DType T>
void sqnr_sums(const void* x, const void* y, uint64_t n, int threads, double* signal, double* noise) {
  const uint64_t chunks = (n + kSqnrChunk - 1) / kSqnrChunk;
  std::vector<double> s(chunks), e(chunks);
  auto square = [&](uint64_t i) {
    const double v = widen<T>(x, i);
    return v * v;
  };
  auto error = [&](uint64_t i) {
    const double d = widen<T>(x, i) - widen<T>(y, i);
    return d * d;
  };
  hyperonnx::parallel_ranges(chunks, 1, threads, [&](uint64_t c0, uint64_t c1) {
    for (uint64_t c = c0; c < c1; ++c) {
      const uint64_t first = c * kSqnrChunk;
      const int64_t len = static_cast<int64_t>(std::min(kSqnrChunk, n - first));
      e[c] = 0.0 + pairwise(error, first, len);
      s[c] = 0.0 + pairwise(square, first, len);
    }
  });
  double total_s = 0.0, total_e = 0.0;
  for (uint64_t c = 0; c < chunks; ++c) {
    total_e += e[c];
    total_s += s[c];
  }
  *signal = total_s;
  *noise = total_e;
}

}  // namespace

HX_ENCODER_API int hx_decode(const char* attrs, uint64_t attrs_len, const uint8_t* blob, uint64_t len, void* out,
                             uint64_t out_bytes, int threads, char* error, uint64_t error_capacity) {
  if (attrs == nullptr || (blob == nullptr && len > 0)) return kHxBadArgument;
  hyperonnx::MapAttrs map;
  if (!parse_attrs(attrs, attrs_len, &map)) {
    set_error("malformed attribute text", error, error_capacity);
    return kHxBadArgument;
  }
  const auto codec = map.strings.find("codec");
  if (codec == map.strings.end() || hyperonnx::find_codec(codec->second) == nullptr) {
    return kHxNeedsReference;  // a codec this library does not decode: numpy's decoder runs
  }
  std::string message;
  const auto decoder = hyperonnx::Decoder::create(map, &message);
  if (!decoder) {
    set_error(message, error, error_capacity);
    return kHxBadArgument;
  }
  if (out_bytes != decoder->out_bytes() || (out == nullptr && out_bytes > 0)) {
    set_error("output buffer of " + std::to_string(out_bytes) + " bytes for " +
                  std::to_string(decoder->out_bytes()) + " decoded bytes",
              error, error_capacity);
    return kHxBadArgument;
  }
  if (!decoder->decode(blob, static_cast<size_t>(len), out, threads < 1 ? 1 : threads, &message)) {
    set_error(message, error, error_capacity);
    return kHxBadArgument;
  }
  return 0;
}

HX_ENCODER_API int hx_sqnr_sums(const void* x, const void* y, uint64_t n, int64_t onnx_dtype, int threads,
                                double* signal, double* noise) {
  if ((n > 0 && (x == nullptr || y == nullptr)) || signal == nullptr || noise == nullptr) return kHxBadArgument;
  threads = threads < 1 ? 1 : threads;
  DType dtype;
  if (!hyperonnx::dtype_from_onnx(onnx_dtype, &dtype)) return kHxBadArgument;
  switch (dtype) {
    case DType::kFloat: sqnr_sums<DType::kFloat>(x, y, n, threads, signal, noise); break;
    case DType::kFloat16: sqnr_sums<DType::kFloat16>(x, y, n, threads, signal, noise); break;
    case DType::kBFloat16: sqnr_sums<DType::kBFloat16>(x, y, n, threads, signal, noise); break;
    case DType::kDouble: sqnr_sums<DType::kDouble>(x, y, n, threads, signal, noise); break;
  }
  return 0;
}
