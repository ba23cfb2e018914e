// libFuzzer target over the op library's attribute parser, table builders and blob decoders
// (custom_ops/src/decoder.cc, codecs/*.cc, unpack.cc, dtype.cc). Built by tests/reliability/test_fuzz.py:
//
//   clang++ -std=c++17 -O1 -g -ffp-contract=off -fsanitize=fuzzer,address,undefined -Icustom_ops/src \
//     tools/fuzz/decoder_fuzz.cc custom_ops/src/{attrs,codec,decoder,dtype,parallel,unpack}.cc \
//     custom_ops/src/codecs/*.cc custom_ops/src/fused/{weight,matmul,matmul_nt,gather,gemm,tcq_rows}.cc \
//     -o build-fuzz/decoder_fuzz
//
// Input: attribute lines in the golden-file syntax (custom_ops/tests/golden/*.txt), one per line:
//   s NAME TEXT            string attribute
//   i NAME V1 V2 ...       ints attribute (one value: also readable as an int)
//   f NAME HEX1 HEX2 ...   floats attribute, float32 bit patterns
// then a line "--" and the raw blob bytes. Lines that do not parse are ignored (so mutations stay useful).
//
// Checked: Decoder::create never crashes or allocates absurdly (libFuzzer's -malloc_limit_mb), and for a
// decoder it returns: validate() and decode() agree, decode() of the blob as given and of the blob fitted to
// the expected length (variable-length ecsq and grid blobs: to at least the least length) never reads or writes out of bounds, and 1 thread and 4 threads give the same bytes.
// Where the node is one the fused kernels take (FusedWeight::create: blockvq / blocktcq, float32, 2-D), its checks
// agree with the decoder's, and HyperMatMul's tiles with A = the first rows of I give those rows of W exactly.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attrs.h"
#include "decoder.h"
#include "fused/gather.h"
#include "fused/matmul.h"
#include "fused/matmul_nt.h"
#include "fused/weight.h"

namespace {

// The attribute-source shim: each attribute has one type, and a getter of another type sees it as absent
// (what OrtKernelInfo does for an attribute of the wrong type).
class FuzzAttrs : public hyperonnx::AttrSource {
 public:
  std::map<std::string, std::string> strings;
  std::map<std::string, std::vector<int64_t>> ints;
  std::map<std::string, std::vector<float>> floats;

  bool get_string(const std::string& name, std::string* out) const override {
    auto it = strings.find(name);
    if (it == strings.end()) return false;
    *out = it->second;
    return true;
  }
  bool get_int(const std::string& name, int64_t* out) const override {
    auto it = ints.find(name);
    if (it == ints.end() || it->second.size() != 1) return false;
    *out = it->second[0];
    return true;
  }
  bool get_ints(const std::string& name, std::vector<int64_t>* out) const override {
    auto it = ints.find(name);
    if (it == ints.end()) return false;
    *out = it->second;
    return true;
  }
  bool get_floats(const std::string& name, std::vector<float>* out) const override {
    auto it = floats.find(name);
    if (it == floats.end()) return false;
    *out = it->second;
    return true;
  }
};

constexpr size_t kMaxOutBytes = size_t{16} << 20;  // decode only outputs up to this size
constexpr size_t kMaxValues = 4096;                 // values per attribute line

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> words;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    size_t j = i;
    while (j < line.size() && line[j] != ' ') ++j;
    if (j > i) words.push_back(line.substr(i, j - i));
    i = j;
  }
  return words;
}

bool parse_int(const std::string& w, int64_t* out) {
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(w.c_str(), &end, 10);
  if (errno || end == w.c_str() || *end) return false;
  *out = static_cast<int64_t>(v);
  return true;
}

bool parse_float_bits(const std::string& w, float* out) {
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(w.c_str(), &end, 16);
  if (errno || end == w.c_str() || *end || v > 0xffffffffull) return false;
  uint32_t bits = static_cast<uint32_t>(v);
  std::memcpy(out, &bits, sizeof bits);
  return true;
}

void parse_attrs(const std::string& text, FuzzAttrs* attrs) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::vector<std::string> w = split(text.substr(pos, end - pos));
    pos = end + 1;
    if (w.size() < 2 || w[0].size() != 1) continue;
    const std::string& name = w[1];
    if (w[0] == "s") {
      std::string value;
      for (size_t k = 2; k < w.size(); ++k) value += (k > 2 ? " " : "") + w[k];
      attrs->strings[name] = value;
    } else if (w[0] == "i") {
      std::vector<int64_t> values;
      for (size_t k = 2; k < w.size() && values.size() < kMaxValues; ++k) {
        int64_t v;
        if (parse_int(w[k], &v)) values.push_back(v);
      }
      attrs->ints[name] = values;
    } else if (w[0] == "f") {
      std::vector<float> values;
      for (size_t k = 2; k < w.size() && values.size() < kMaxValues; ++k) {
        float v;
        if (parse_float_bits(w[k], &v)) values.push_back(v);
      }
      attrs->floats[name] = values;
    }
  }
}

// Known bug (tests/reliability/test_fuzz.py::test_decoder_known_bugs, tests/fuzz_corpus/decoder_known/): Decoder::create
// builds the whole reachable table (up to 2^32 rows) whenever it has no more rows than the tensor has codes, so
// a node claiming a huge shape with wide codes allocates gigabytes before any blob is seen. Until that is fixed,
// skip such inputs (unless HX_FUZZ_NO_FILTER is set) so the bounded CI run stays about everything else.
bool known_huge_table(const FuzzAttrs& attrs) {
  if (std::getenv("HX_FUZZ_NO_FILTER")) return false;
  auto it = attrs.ints.find("shape");
  auto bits = attrs.ints.find("bits");
  if (it == attrs.ints.end() || bits == attrs.ints.end() || bits->second.size() != 1) return false;
  unsigned __int128 numel = 1;
  for (int64_t dim : it->second) {
    if (dim < 0) return false;
    numel *= static_cast<uint64_t>(dim);
    if (numel > (static_cast<unsigned __int128>(1) << 64)) break;
  }
  return numel > (uint64_t{1} << 26) && bits->second[0] > 22;
}

[[noreturn]] void die(const char* what, const std::string& detail) {
  std::fprintf(stderr, "decoder_fuzz: %s: %s\n", what, detail.c_str());
  std::abort();
}

void check_blob(const hyperonnx::Decoder& d, const std::vector<uint8_t>& blob) {
  std::string verr, derr;
  const bool valid = d.validate(blob.data(), blob.size(), &verr);
  if (!valid && verr.empty()) die("validate failed without a message", "");
  if (d.out_bytes() > kMaxOutBytes) return;
  std::vector<uint8_t> out1(d.out_bytes() + 1, 0xa5), out4(d.out_bytes() + 1, 0xa5);
  const bool ok1 = d.decode(blob.data(), blob.size(), out1.data(), 1, &derr);
  if (ok1 != valid) die("validate and decode disagree", verr + " | " + derr);
  if (out1.back() != 0xa5) die("decode wrote past the output", "");
  if (!ok1) return;
  const bool ok4 = d.decode(blob.data(), blob.size(), out4.data(), 4, &derr);
  if (!ok4) die("4-thread decode failed where 1 thread succeeded", derr);
  if (out1 != out4) die("1-thread and 4-thread decodes differ", "");
}

void check_fused(const FuzzAttrs& attrs, const hyperonnx::Decoder& d, const std::vector<uint8_t>& blob) {
  std::string error, derr;
  std::unique_ptr<hyperonnx::FusedWeight> w = hyperonnx::FusedWeight::create(attrs, &error);
  if (!w) {
    if (error.empty()) die("fused create failed without a message", "");
    return;
  }
  const bool valid = w->check(blob.data(), blob.size(), &error);
  if (valid != d.validate(blob.data(), blob.size(), &derr)) die("fused check and decoder validate disagree", error);
  if (!valid || d.out_bytes() > kMaxOutBytes) return;
  std::vector<float> weight(d.out_bytes() / sizeof(float));
  if (!d.decode(blob.data(), blob.size(), weight.data(), 1, &derr)) die("decode failed on a checked blob", derr);
  const int64_t k = w->rows(), n = w->cols(), m = k < 8 ? k : 8;
  std::vector<float> a(static_cast<size_t>(m * k), 0.0f), y(static_cast<size_t>(m * n) + 1, 0.0f);
  for (int64_t i = 0; i < m; ++i) a[static_cast<size_t>(i * k + i)] = 1.0f;
  y.back() = 12345.0f;
  if (!hyperonnx::fused_matmul(*w, blob.data(), blob.size(), a.data(), m, y.data(), &error)) {
    die("fused matmul failed on a checked blob", error);
  }
  if (y.back() != 12345.0f) die("fused tile wrote past the output", "");
  for (float v : weight) {
    if (!std::isfinite(v)) return;  // 0 · inf terms make NaN: nothing exact to compare
  }
  for (size_t i = 0; i < static_cast<size_t>(m * n); ++i) {
    if (y[i] != weight[i]) die("fused I x W differs from the decoded weight", std::to_string(i));
  }
  // HyperGemm's transposing tiles (W read as [N, K]): I × Wᵀ is Wᵀ; HyperGather: the last row, by index -1.
  const int64_t mt = n < 8 ? n : 8;
  std::vector<float> at(static_cast<size_t>(mt * n), 0.0f), yt(static_cast<size_t>(mt * k) + 1, 0.0f);
  for (int64_t i = 0; i < mt; ++i) at[static_cast<size_t>(i * n + i)] = 1.0f;
  yt.back() = 12345.0f;
  if (!hyperonnx::fused_matmul_nt(*w, blob.data(), blob.size(), at.data(), mt, yt.data(), &error)) {
    die("fused transposed matmul failed on a checked blob", error);
  }
  if (yt.back() != 12345.0f) die("fused transposed tile wrote past the output", "");
  for (int64_t i = 0; i < mt; ++i) {
    for (int64_t j = 0; j < k; ++j) {
      if (yt[static_cast<size_t>(i * k + j)] != weight[static_cast<size_t>(j * n + i)]) {
        die("fused I x W^T differs from the decoded weight", std::to_string(i * k + j));
      }
    }
  }
  if (k == 0) return;
  const int64_t last = -1;
  int64_t row = 0;
  std::vector<float> g(static_cast<size_t>(n) + 1, 0.0f);
  g.back() = 12345.0f;
  if (!hyperonnx::fused_gather_rows(&last, true, 0, 1, k, &row, &error) ||
      !hyperonnx::fused_gather(*w, blob.data(), blob.size(), &row, 0, 1, g.data(), &error)) {
    die("fused gather failed on a checked blob", error);
  }
  if (g.back() != 12345.0f) die("fused gather wrote past the output", "");
  if (std::memcmp(g.data(), weight.data() + (k - 1) * n, static_cast<size_t>(n) * sizeof(float)) != 0) {
    die("fused gather differs from the decoded weight's last row", "");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char kSep[] = "\n--\n";
  const std::string all(reinterpret_cast<const char*>(data), size);
  size_t cut = all.find(kSep);
  const std::string text = all.substr(0, cut);
  std::vector<uint8_t> blob;
  if (cut != std::string::npos) blob.assign(data + cut + 4, data + size);

  FuzzAttrs attrs;
  parse_attrs(text, &attrs);
  if (known_huge_table(attrs)) return 0;
  std::string error;
  std::unique_ptr<hyperonnx::Decoder> d = hyperonnx::Decoder::create(attrs, &error);
  if (!d) {
    if (error.empty()) die("create failed without a message", "");
    return 0;
  }
  // The blob as given (usually the wrong length: must be rejected cleanly) ...
  check_blob(*d, blob);
  // ... and fitted to the expected length (zero padded or truncated), so shape/bits/group mutations reach the
  // decode loops with a blob the length check accepts (variable-length codecs, ecsq and grid: padded to the least length
  // when shorter; any longer blob already passes the length check and is parsed as given).
  const bool fit = d->variable_length() ? blob.size() < d->blob_bytes() : blob.size() != d->blob_bytes();
  if (d->blob_bytes() <= kMaxOutBytes && fit) {
    blob.resize(d->blob_bytes(), 0);
    check_blob(*d, blob);
  }
  check_fused(attrs, *d, blob);
  return 0;
}
