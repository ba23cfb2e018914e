// Random rANS streams for the stream reader's test and benchmark (test_rans.cc, bench_rans.cc): frequency tables
// and the format's encoder (docs/format.md, "rANS streams"), run backwards from states 2^16 as numpy's
// hyperonnx/codec/rans.py does.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "codecs/rans.h"

namespace hyperonnx {
namespace test {

inline void put16(std::vector<uint8_t>* b, uint32_t v) {
  b->push_back(static_cast<uint8_t>(v));
  b->push_back(static_cast<uint8_t>(v >> 8));
}
inline void put32(std::vector<uint8_t>* b, uint32_t v) {
  put16(b, v & 0xffffu);
  put16(b, v >> 16);
}

// A frequency table (docs/format.md): lo, n, n frequencies summing to 4096.
struct Table {
  uint32_t lo = 0;
  std::vector<uint32_t> freq, cum;
  rans::Model model;
};

// The table of symbols lo, lo + 1, ... with frequencies in proportion to `weight` (each at least 1), parsed by the
// decoder's parse_model. False (with *error) when it refuses it.
inline bool make_table(uint32_t lo, const std::vector<uint64_t>& weight, Table* t, std::string* error) {
  const uint32_t n = static_cast<uint32_t>(weight.size());
  uint64_t total = 0;
  for (uint64_t v : weight) total += v;
  t->lo = lo;
  t->freq.assign(n, 1);
  uint32_t sum = n;
  for (uint32_t j = 0; j < n; ++j) {
    const uint32_t add = static_cast<uint32_t>(weight[j] * (rans::kProbScale - n) / total);
    t->freq[j] += add;
    sum += add;
  }
  t->freq[static_cast<size_t>(std::max_element(weight.begin(), weight.end()) - weight.begin())] +=
      rans::kProbScale - sum;
  t->cum.assign(n, 0);
  for (uint32_t j = 1; j < n; ++j) t->cum[j] = t->cum[j - 1] + t->freq[j - 1];
  std::vector<uint8_t> bytes;
  put16(&bytes, t->lo);
  put16(&bytes, n);
  for (uint32_t f : t->freq) put16(&bytes, f);
  size_t pos = 0;
  return rans::parse_model(bytes.data(), bytes.size(), &pos, "test", &t->model, error);
}

// A symbol (alphabet index) drawn by the table's frequencies.
inline uint32_t draw(std::mt19937_64& rng, const Table& t) {
  const uint32_t s = static_cast<uint32_t>(rng() % rans::kProbScale);
  return static_cast<uint32_t>(std::upper_bound(t.cum.begin(), t.cum.end(), s) - t.cum.begin() - 1);
}

// The stream of syms (alphabet indices), symbol i coded with tables[table_of[i]]: the format's interleaved
// encoder, symbols last to first, each lane from 2^16, words written in reverse and then reversed, which is the
// order the decoder reads them.
inline std::vector<uint8_t> encode(const std::vector<uint32_t>& syms, const std::vector<uint8_t>& table_of,
                                   const std::vector<Table>& tables) {
  const uint64_t count = syms.size();
  const uint32_t lanes = rans::lanes_for(count);
  std::vector<uint32_t> x(lanes, rans::kStateLow);
  std::vector<uint16_t> words;
  for (uint64_t i = count; i-- > 0;) {
    const Table& t = tables[table_of[i]];
    uint32_t& s = x[i % lanes];
    const uint32_t f = t.freq[syms[i]], c = t.cum[syms[i]];
    if (s >= f << 20) {  // would leave [2^16, 2^32): one word out
      words.push_back(static_cast<uint16_t>(s));
      s >>= 16;
    }
    s = (s / f << rans::kProbBits) + s % f + c;
  }
  std::reverse(words.begin(), words.end());
  std::vector<uint8_t> blob;
  for (uint32_t s : x) put32(&blob, s);
  put32(&blob, static_cast<uint32_t>(words.size()));
  for (uint16_t w : words) put16(&blob, w);
  return blob;
}

}  // namespace test
}  // namespace hyperonnx
