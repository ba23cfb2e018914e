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

}  // namespace

std::vector<GoldenCase> load_cases(const std::string& dir) {
  std::vector<std::string> names;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string n = e->d_name;
      if (n.size() > 4 && n.compare(n.size() - 4, 4, ".txt") == 0 && n != "casts.txt") names.push_back(n);
    }
    closedir(d);
  }
  std::sort(names.begin(), names.end());
  std::vector<GoldenCase> cases;
  for (const auto& n : names) cases.push_back(load_case(dir + "/" + n, n.substr(0, n.size() - 4)));
  if (cases.empty()) throw std::runtime_error("no golden cases in " + dir);
  return cases;
}

}  // namespace test
}  // namespace hyperonnx
