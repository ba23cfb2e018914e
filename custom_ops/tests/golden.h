// Reader of the golden files written by make_golden.py (one text file per case, see there).
#pragma once

#include <cstddef>
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
  std::vector<uint8_t> expect;  // empty for digest cases
  // *.digest cases (outputs too large to store): the output's length and digest64() instead of `expect`.
  bool has_digest = false;
  uint64_t expect_bytes = 0;
  uint64_t digest = 0;
};

// Reads every *.txt case in `dir` except casts.txt, sorted by name. Throws std::runtime_error on bad files.
std::vector<GoldenCase> load_cases(const std::string& dir);
// Reads every *.digest case in `dir` (may be none), sorted by name.
std::vector<GoldenCase> load_digest_cases(const std::string& dir);
std::vector<uint8_t> from_hex(const std::string& hex);
// make_golden.py's digest: bytes zero-padded to little-endian 64-bit words w_i,
// (sum of splitmix64(w_i + i * 0x9E3779B97F4A7C15)) mod 2^64, xor the byte count.
uint64_t digest64(const uint8_t* data, size_t n);
// Whether `out` is the case's expected output (its bytes, or its length and digest).
bool matches(const GoldenCase& c, const std::vector<uint8_t>& out);

}  // namespace test
}  // namespace hyperonnx
