// Reader of the golden files written by make_golden.py (one text file per case, see there).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "attrs.h"

namespace hyperonnx {
namespace test {

struct GoldenCase {
  std::string name;
  MapAttrs attrs;
  std::vector<uint8_t> blob;
  std::vector<uint8_t> expect;
};

// Reads every *.txt case in `dir` except casts.txt, sorted by name. Throws std::runtime_error on bad files.
std::vector<GoldenCase> load_cases(const std::string& dir);
std::vector<uint8_t> from_hex(const std::string& hex);

}  // namespace test
}  // namespace hyperonnx
