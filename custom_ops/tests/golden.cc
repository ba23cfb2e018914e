#include "golden.h"

#include <algorithm>
#include <cstring>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace hyperonnx {
namespace test {

std::vector<uint8_t> from_hex(const std::string& hex) {
  if (hex.size() % 2) throw std::runtime_error("odd-length hex string");
  std::vector<uint8_t> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(std::stoul(hex.substr(2 * i, 2), nullptr, 16));
  return out;
}

namespace {

GoldenCase load_case(const std::string& path, const std::string& name) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  GoldenCase c;
  c.name = name;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string kind, key;
    fields >> kind;
    if (kind == "digest") {
      std::string bytes, hex;
      fields >> bytes >> hex;
      c.has_digest = true;
      c.expect_bytes = std::stoull(bytes);
      c.digest = std::stoull(hex, nullptr, 16);
      continue;
    }
    if (kind == "blob" || kind == "expect") {
      std::string hex;
      fields >> hex;
      (kind == "blob" ? c.blob : c.expect) = from_hex(hex);
      continue;
    }
    fields >> key;
    if (kind == "s") {
      fields >> c.attrs.strings[key];
    } else if (kind == "i") {
      auto& v = c.attrs.ints[key];
      for (int64_t x; fields >> x;) v.push_back(x);
    } else if (kind == "f") {
      auto& v = c.attrs.floats[key];
      for (std::string h; fields >> h;) {
        const uint32_t bits = static_cast<uint32_t>(std::stoul(h, nullptr, 16));
        float f;
        std::memcpy(&f, &bits, sizeof f);
        v.push_back(f);
      }
    } else {
      throw std::runtime_error(path + ": unknown line kind '" + kind + "'");
    }
  }
  return c;
}

std::vector<GoldenCase> load_suffix(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0 &&
          n != "casts.txt") {
        names.push_back(n);
      }
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::vector<GoldenCase> cases;
  for (const auto& n : names) cases.push_back(load_case(dir + "/" + n, n.substr(0, n.size() - suffix.size())));
  return cases;
}

}  // namespace

std::vector<GoldenCase> load_cases(const std::string& dir) {
  std::vector<GoldenCase> cases = load_suffix(dir, ".txt");
  if (cases.empty()) throw std::runtime_error("no golden cases in " + dir);
  return cases;
}

std::vector<GoldenCase> load_digest_cases(const std::string& dir) {
  std::vector<GoldenCase> cases = load_suffix(dir, ".digest");
  for (const auto& c : cases) {
    if (!c.has_digest) throw std::runtime_error(c.name + ".digest: no digest line");
  }
  return cases;
}

uint64_t digest64(const uint8_t* data, size_t n) {
  uint64_t h = 0;
  for (size_t i = 0; i * 8 < n; ++i) {
    uint64_t w = 0;
    for (size_t b = 0; b < 8 && i * 8 + b < n; ++b) w |= static_cast<uint64_t>(data[i * 8 + b]) << (8 * b);
    uint64_t z = w + static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    h += z ^ (z >> 31);
  }
  return h ^ static_cast<uint64_t>(n);
}

bool matches(const GoldenCase& c, const std::vector<uint8_t>& out) {
  if (!c.has_digest) return out == c.expect;
  return out.size() == c.expect_bytes && digest64(out.data(), out.size()) == c.digest;
}

}  // namespace test
}  // namespace hyperonnx
