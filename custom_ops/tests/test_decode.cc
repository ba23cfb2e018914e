// C++ tests of the decoder core (no ONNX Runtime needed):
//   golden     every golden case decodes bit-identically to the numpy reference (1 and 3 threads)
//   malformed  bad attributes and blobs are rejected with a message naming the problem
//   casts      float32 -> float16 / bfloat16 match numpy / ml_dtypes on edge values
//   threads    a large tensor decodes identically on 1..8 threads, and the per-code (no table) path
//              equals the table path (paper and kronecker); a bad code deep inside is reported at its position;
//              blockvq's fused and generic paths and blocktcq equal the format's formula on 1..8 threads
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "decoder.h"
#include "dtype.h"
#include "golden.h"

using hyperonnx::Decoder;
using hyperonnx::MapAttrs;
using hyperonnx::test::GoldenCase;
using hyperonnx::test::load_cases;
using hyperonnx::test::load_digest_cases;

namespace {

int g_failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++g_failures;
  }
}

// LSB-first packing, the inverse of the decoder's unpacking (docs/format.md, "Codes").
std::vector<uint8_t> pack(const std::vector<uint32_t>& codes, int bits) {
  std::vector<uint8_t> out((codes.size() * static_cast<size_t>(bits) + 7) / 8, 0);
  for (size_t i = 0; i < codes.size(); ++i) {
    for (int b = 0; b < bits; ++b) {
      const uint64_t bit = i * static_cast<uint64_t>(bits) + static_cast<uint64_t>(b);
      if ((codes[i] >> b) & 1u) out[bit / 8] |= static_cast<uint8_t>(1u << (bit % 8));
    }
  }
  return out;
}

int run_golden(const std::string& dir) {
  auto cases = load_cases(dir);
  const auto digests = load_digest_cases(dir);  // large outputs (ecsq tensors of several segments)
  cases.insert(cases.end(), digests.begin(), digests.end());
  for (const GoldenCase& c : cases) {
    std::string error;
    auto dec = Decoder::create(c.attrs, &error);
    check(dec != nullptr, c.name + ": create: " + error);
    if (!dec) continue;
    check(dec->out_bytes() == (c.has_digest ? c.expect_bytes : c.expect.size()), c.name + ": output size");
    check(dec->validate(c.blob.data(), c.blob.size(), &error), c.name + ": validate: " + error);
    for (int threads : {1, 3, 8}) {
      if (threads == 8 && !c.has_digest) continue;
      std::vector<uint8_t> out(dec->out_bytes(), 0xAB);
      const bool ok = dec->decode(c.blob.data(), c.blob.size(), out.data(), threads, &error);
      check(ok, c.name + ": decode: " + error);
      check(hyperonnx::test::matches(c, out),
            c.name + ": output differs from the reference (threads=" + std::to_string(threads) + ")");
    }
  }
  std::printf("golden: %zu cases (%zu digests), %d failures\n", cases.size(), digests.size(), g_failures);
  return g_failures ? 1 : 0;
}

// Side-information errors of the kronecker codec; returns how many cases ran.
size_t run_malformed_kronecker(const std::string& dir) {
  GoldenCase base;
  for (auto& c : load_cases(dir)) {
    if (c.name == "kronecker_edge_U200_b9_auto") base = c;
  }
  check(!base.name.empty(), "golden case kronecker_edge_U200_b9_auto present");
  if (base.name.empty()) return 0;
  struct AttrCase {
    const char* what;
    std::function<void(MapAttrs&)> mutate;
    const char* expect;
  };
  const std::vector<AttrCase> cases = {
      {"no i_levels", [](MapAttrs& a) { a.ints.erase("i_levels"); }, "'i_levels'"},
      {"no i_alpha", [](MapAttrs& a) { a.ints.erase("i_alpha"); }, "'i_alpha'"},
      {"no f_offset", [](MapAttrs& a) { a.floats.erase("f_offset"); }, "'f_offset'"},
      {"no f_width", [](MapAttrs& a) { a.floats.erase("f_width"); }, "'f_width'"},
      {"levels 0", [](MapAttrs& a) { a.ints["i_levels"] = {0}; }, "i_levels must be in"},
      {"levels 2^40", [](MapAttrs& a) { a.ints["i_levels"] = {int64_t{1} << 40}; }, "i_levels must be in"},
      {"two levels", [](MapAttrs& a) { a.ints["i_levels"] = {4, 5}; }, "one integer"},
      {"alpha short", [](MapAttrs& a) { a.ints["i_alpha"].pop_back(); }, "i_alpha must hold group = 4"},
      {"alpha vs group", [](MapAttrs& a) { a.ints["group"] = {2}; }, "i_alpha must hold group = 2"},
      {"group 5", [](MapAttrs& a) { a.ints["group"] = {5}; }, "group must be 2, 3 or 4"},
      {"group 1", [](MapAttrs& a) { a.ints["group"] = {1}; }, "group must be 2, 3 or 4"},
      {"two widths", [](MapAttrs& a) { a.floats["f_width"].push_back(1.0f); }, "f_width must hold"},
      {"no offset value", [](MapAttrs& a) { a.floats["f_offset"].clear(); }, "f_offset must hold"},
  };
  for (const auto& ac : cases) {
    MapAttrs attrs = base.attrs;
    ac.mutate(attrs);
    std::string error;
    auto dec = Decoder::create(attrs, &error);
    check(dec == nullptr, std::string("kronecker ") + ac.what + ": accepted");
    check(error.find(ac.expect) != std::string::npos,
          std::string("kronecker ") + ac.what + ": message '" + error + "' lacks '" + ac.expect + "'");
  }
  return cases.size();
}

// blockvq: side-information errors, wrong blob lengths, and every 10-bit header value (a codebook id >= 4 cannot
// be written in 10 bits, so all 1024 must be accepted). Returns how many cases ran.
size_t run_malformed_blockvq(const std::string& dir) {
  GoldenCase base;
  for (auto& c : load_cases(dir)) {
    if (c.name == "blockvq_float32_b5_B32_19x41") base = c;
  }
  check(!base.name.empty(), "golden case blockvq_float32_b5_B32_19x41 present");
  if (base.name.empty()) return 0;
  struct AttrCase {
    const char* what;
    std::function<void(MapAttrs&)> mutate;
    const char* expect;
  };
  const std::vector<AttrCase> cases = {
      {"no i_block", [](MapAttrs& a) { a.ints.erase("i_block"); }, "'i_block'"},
      {"no i_levels", [](MapAttrs& a) { a.ints.erase("i_levels"); }, "'i_levels'"},
      {"no f_smax", [](MapAttrs& a) { a.floats.erase("f_smax"); }, "'f_smax'"},
      {"no f_books", [](MapAttrs& a) { a.floats.erase("f_books"); }, "'f_books'"},
      {"levels 0", [](MapAttrs& a) { a.ints["i_levels"] = {0}; }, "power of two in 2..256, got 0"},
      {"levels 1", [](MapAttrs& a) { a.ints["i_levels"] = {1}; }, "power of two in 2..256, got 1"},
      {"levels 24", [](MapAttrs& a) { a.ints["i_levels"] = {24}; }, "power of two in 2..256, got 24"},
      {"levels 512", [](MapAttrs& a) { a.ints["i_levels"] = {512}; a.ints["bits"] = {18}; }, "2..256, got 512"},
      {"levels -32", [](MapAttrs& a) { a.ints["i_levels"] = {-32}; }, "power of two"},
      {"two levels", [](MapAttrs& a) { a.ints["i_levels"] = {32, 32}; }, "i_levels must hold one integer"},
      {"bits 11", [](MapAttrs& a) { a.ints["bits"] = {11}; }, "bits must be 2*log2(i_levels) = 10, got 11"},
      {"bits 5", [](MapAttrs& a) { a.ints["bits"] = {5}; }, "bits must be 2*log2(i_levels) = 10, got 5"},
      {"levels vs bits", [](MapAttrs& a) { a.ints["i_levels"] = {64}; }, "= 12, got 10"},
      {"group 4", [](MapAttrs& a) { a.ints["group"] = {4}; }, "group must be 2"},
      {"group 1", [](MapAttrs& a) { a.ints["group"] = {1}; }, "group must be 2"},
      {"block 0", [](MapAttrs& a) { a.ints["i_block"] = {0}; }, "i_block must be even and in 2..4096, got 0"},
      {"block 33", [](MapAttrs& a) { a.ints["i_block"] = {33}; }, "i_block must be even and in 2..4096, got 33"},
      {"block 1", [](MapAttrs& a) { a.ints["i_block"] = {1}; }, "got 1"},
      {"block 4098", [](MapAttrs& a) { a.ints["i_block"] = {4098}; }, "got 4098"},
      {"block -32", [](MapAttrs& a) { a.ints["i_block"] = {-32}; }, "got -32"},
      {"two blocks", [](MapAttrs& a) { a.ints["i_block"] = {32, 32}; }, "i_block must hold one integer"},
      {"books short", [](MapAttrs& a) { a.floats["f_books"].pop_back(); }, "f_books must hold 4*i_levels = 128 floats, got 127"},
      {"books long", [](MapAttrs& a) { a.floats["f_books"].push_back(0.5f); }, "got 129"},
      {"books of 16 levels", [](MapAttrs& a) { a.floats["f_books"].resize(64); }, "got 64"},
      {"no smax value", [](MapAttrs& a) { a.floats["f_smax"].clear(); }, "f_smax must hold one float"},
      {"two smax", [](MapAttrs& a) { a.floats["f_smax"].push_back(1.0f); }, "f_smax must hold one float"},
  };
  for (const auto& ac : cases) {
    MapAttrs attrs = base.attrs;
    ac.mutate(attrs);
    std::string error;
    auto dec = Decoder::create(attrs, &error);
    check(dec == nullptr, std::string("blockvq ") + ac.what + ": accepted");
    check(error.find(ac.expect) != std::string::npos,
          std::string("blockvq ") + ac.what + ": message '" + error + "' lacks '" + ac.expect + "'");
  }
  std::string error;
  auto dec = Decoder::create(base.attrs, &error);
  check(dec != nullptr, "blockvq base: " + error);
  if (!dec) return cases.size();
  // 779 weights, blocks of 32: 390 codes of 10 bits (488 bytes), 25 headers (32 bytes).
  check(dec->blob_bytes() == 488 + 32 && base.blob.size() == 520, "blockvq blob length");
  const std::vector<std::pair<std::string, std::vector<uint8_t>>> blobs = {
      {"one byte short", std::vector<uint8_t>(base.blob.begin(), base.blob.end() - 1)},
      {"one byte long", [&] { auto b = base.blob; b.push_back(0); return b; }()},
      {"codes only", std::vector<uint8_t>(base.blob.begin(), base.blob.begin() + 488)},
      {"a header byte short", std::vector<uint8_t>(base.blob.begin(), base.blob.begin() + 519)},
      {"empty", {}},
  };
  for (const auto& [what, blob] : blobs) {
    std::vector<uint8_t> out(dec->out_bytes());
    std::string e1, e2;
    check(!dec->validate(blob.data(), blob.size(), &e1), "blockvq " + what + ": validate accepted");
    check(!dec->decode(blob.data(), blob.size(), out.data(), 2, &e2), "blockvq " + what + ": decode accepted");
    const std::string want = "expected 520 (390 codes of 10 bits + 25 block headers of 10 bits)";
    check(e1.find(want) != std::string::npos && e1 == e2, "blockvq " + what + ": message '" + e2 + "'");
  }
  // Every header value, codebook ids 0..3 with every scale code: all valid; the values as the format says.
  MapAttrs attrs = base.attrs;
  attrs.ints["shape"] = {2048};
  attrs.ints["i_block"] = {2};
  auto all = Decoder::create(attrs, &error);
  check(all != nullptr, "blockvq 1024 headers: " + error);
  if (all) {
    std::vector<uint32_t> codes(1024), headers(1024);
    for (uint32_t i = 0; i < 1024; ++i) codes[i] = (i * 77u) & 1023u, headers[i] = i;
    auto blob = pack(codes, 10);
    const auto hb = pack(headers, 10);
    blob.insert(blob.end(), hb.begin(), hb.end());
    std::vector<float> out(2048);
    check(all->validate(blob.data(), blob.size(), &error), "blockvq 1024 headers: validate: " + error);
    check(all->decode(blob.data(), blob.size(), out.data(), 1, &error), "blockvq 1024 headers: decode: " + error);
    const auto& books = attrs.floats.at("f_books");
    const float smax = attrs.floats.at("f_smax")[0];
    static const uint32_t kSteps[16] = {0x3F800000, 0x3F75257D, 0x3F6AC0C7, 0x3F60CCDF, 0x3F5744FD, 0x3F4E248C,
                                        0x3F45672A, 0x3F3D08A4, 0x3F3504F3, 0x3F2D583F, 0x3F25FED7, 0x3F1EF532,
                                        0x3F1837F0, 0x3F11C3D3, 0x3F0B95C2, 0x3F05AAC3};
    int wrong = 0;
    for (uint32_t i = 0; i < 1024; ++i) {
      float m;
      std::memcpy(&m, &kSteps[i & 15], 4);
      const float s = std::ldexp(smax * m, -static_cast<int>((i & 255) >> 4));
      const float want0 = books[(i >> 8) * 32 + (codes[i] >> 5)] * s, want1 = books[(i >> 8) * 32 + (codes[i] & 31)] * s;
      wrong += std::memcmp(&out[2 * i], &want0, 4) != 0 || std::memcmp(&out[2 * i + 1], &want1, 4) != 0;
    }
    check(wrong == 0, "blockvq 1024 headers: " + std::to_string(wrong) + " pairs differ from the format's formula");
  }
  return cases.size() + blobs.size() + 1;
}

// The malformed-input cases the rANS codecs (ecsq, grid) share: attribute mutations, and blobs that are truncated
// anywhere, have a byte flipped anywhere, a trailing byte, states out of range or wrong, word counts off by one, a
// second segment damaged, or far too few segments for the shape. validate() and decode() (1 and 3 threads) must
// agree and reject every one of them with the codec's message, never reading outside the blob (the sanitizer
// build runs this).

// An attribute mutation that must make create() fail with a message containing `expect`.
struct AttrCase {
  const char* what;
  std::function<void(MapAttrs&)> mutate;
  const char* expect;
};

// Applies each mutation to `attrs`; create() must reject every one. Returns how many ran.
size_t reject_attrs(const std::string& codec, const MapAttrs& attrs, const std::vector<AttrCase>& cases) {
  for (const auto& ac : cases) {
    MapAttrs a = attrs;
    ac.mutate(a);
    std::string error;
    auto dec = Decoder::create(a, &error);
    check(dec == nullptr, codec + " " + ac.what + ": accepted");
    check(error.find(ac.expect) != std::string::npos,
          codec + " " + ac.what + ": message '" + error + "' lacks '" + ac.expect + "'");
  }
  return cases.size();
}

// blocktcq by the format's words (docs/format.md, "blocktcq"), written independently of the library: level sets 1-3
// from their integer quotients, the literal state walk with tcq's NEXT table, one float32 product per weight.
// codes: one θ per weight; headers: one per block; stored: f_books (level set 0, 2L values).
std::vector<float> blocktcq_formula(const std::vector<uint32_t>& codes, const std::vector<uint32_t>& headers,
                                    const std::vector<float>& stored, float smax, uint32_t levels, uint64_t block) {
  const int n = static_cast<int>(2 * levels) - 1;
  std::vector<float> books(stored);
  for (int i = 0; i <= n; ++i) books.push_back(static_cast<float>(2 * i - n) / static_cast<float>(n));
  for (int i = 0; i <= n; ++i) books.push_back(static_cast<float>(5 * n - 6 * i) / static_cast<float>(5 * n));
  for (int i = 0; i <= n; ++i) books.push_back(-(static_cast<float>(5 * n - 6 * i) / static_cast<float>(5 * n)));
  static const int kNext[8][4] = {{0, -1, 1, -1}, {-1, 2, -1, 3}, {5, -1, 4, -1}, {-1, 7, -1, 6},
                                  {1, -1, 0, -1}, {-1, 3, -1, 2}, {4, -1, 5, -1}, {-1, 6, -1, 7}};
  static const uint32_t kSteps[16] = {0x3F800000, 0x3F75257D, 0x3F6AC0C7, 0x3F60CCDF, 0x3F5744FD, 0x3F4E248C,
                                      0x3F45672A, 0x3F3D08A4, 0x3F3504F3, 0x3F2D583F, 0x3F25FED7, 0x3F1EF532,
                                      0x3F1837F0, 0x3F11C3D3, 0x3F0B95C2, 0x3F05AAC3};
  std::vector<float> out(codes.size());
  int state = 0;
  float s = 0;
  uint32_t h = 0;
  for (size_t e = 0; e < codes.size(); ++e) {
    if (e % block == 0) {
      h = headers[e / block];
      float m;
      std::memcpy(&m, &kSteps[h & 15], 4);
      s = std::ldexp(smax * m, -static_cast<int>((h & 255) >> 4));
      state = 0;
    }
    const uint32_t f = 2 * codes[e] + static_cast<uint32_t>(state & 1);
    out[e] = books[(h >> 8) * 2 * levels + f] * s;
    state = kNext[state][f & 3];
  }
  return out;
}

// blocktcq: side-information errors, wrong blob lengths, and every 10-bit header value with codes over the whole
// range (all valid; the values as the format's walk gives them). Returns how many cases ran.
size_t run_malformed_blocktcq(const std::string& dir) {
  GoldenCase base;
  for (auto& c : load_cases(dir)) {
    if (c.name == "blocktcq_float32_b5_B32_19x41") base = c;
  }
  check(!base.name.empty(), "golden case blocktcq_float32_b5_B32_19x41 present");
  if (base.name.empty()) return 0;
  const std::vector<AttrCase> cases = {
      {"no i_block", [](MapAttrs& a) { a.ints.erase("i_block"); }, "'i_block'"},
      {"no i_levels", [](MapAttrs& a) { a.ints.erase("i_levels"); }, "'i_levels'"},
      {"no f_smax", [](MapAttrs& a) { a.floats.erase("f_smax"); }, "'f_smax'"},
      {"no f_books", [](MapAttrs& a) { a.floats.erase("f_books"); }, "'f_books'"},
      {"levels 0", [](MapAttrs& a) { a.ints["i_levels"] = {0}; }, "blocktcq codec: i_levels must be a power of two in 2..256, got 0"},
      {"levels 1", [](MapAttrs& a) { a.ints["i_levels"] = {1}; }, "power of two in 2..256, got 1"},
      {"levels 24", [](MapAttrs& a) { a.ints["i_levels"] = {24}; }, "power of two in 2..256, got 24"},
      {"levels 512", [](MapAttrs& a) { a.ints["i_levels"] = {512}; a.ints["bits"] = {9}; }, "2..256, got 512"},
      {"levels -32", [](MapAttrs& a) { a.ints["i_levels"] = {-32}; }, "power of two"},
      {"levels 2^40", [](MapAttrs& a) { a.ints["i_levels"] = {int64_t{1} << 40}; }, "power of two"},
      {"two levels", [](MapAttrs& a) { a.ints["i_levels"] = {32, 32}; }, "i_levels must hold one integer"},
      {"bits 6", [](MapAttrs& a) { a.ints["bits"] = {6}; }, "blocktcq codec: bits must be log2(i_levels) = 5, got 6"},
      {"bits 10 (blockvq's)", [](MapAttrs& a) { a.ints["bits"] = {10}; }, "bits must be log2(i_levels) = 5, got 10"},
      {"levels vs bits", [](MapAttrs& a) { a.ints["i_levels"] = {64}; }, "= 6, got 5"},
      {"group 2", [](MapAttrs& a) { a.ints["group"] = {2}; }, "group must be 1 (one code per weight), got 2"},
      {"group 4", [](MapAttrs& a) { a.ints["group"] = {4}; }, "group must be 1"},
      {"block 0", [](MapAttrs& a) { a.ints["i_block"] = {0}; }, "blocktcq codec: i_block must be in 2..4096, got 0"},
      {"block 1", [](MapAttrs& a) { a.ints["i_block"] = {1}; }, "i_block must be in 2..4096, got 1"},
      {"block 4097", [](MapAttrs& a) { a.ints["i_block"] = {4097}; }, "got 4097"},
      {"block -32", [](MapAttrs& a) { a.ints["i_block"] = {-32}; }, "got -32"},
      {"block 2^40", [](MapAttrs& a) { a.ints["i_block"] = {int64_t{1} << 40}; }, "got 1099511627776"},
      {"two blocks", [](MapAttrs& a) { a.ints["i_block"] = {32, 32}; }, "i_block must hold one integer"},
      {"books short", [](MapAttrs& a) { a.floats["f_books"].pop_back(); }, "f_books must hold 2*i_levels = 64 floats, got 63"},
      {"books long", [](MapAttrs& a) { a.floats["f_books"].push_back(0.5f); }, "got 65"},
      {"all four level sets", [](MapAttrs& a) { a.floats["f_books"].resize(256); }, "got 256"},
      {"no books", [](MapAttrs& a) { a.floats["f_books"].clear(); }, "got 0"},
      {"no smax value", [](MapAttrs& a) { a.floats["f_smax"].clear(); }, "f_smax must hold one float"},
      {"two smax", [](MapAttrs& a) { a.floats["f_smax"].push_back(1.0f); }, "f_smax must hold one float"},
  };
  const size_t attrs = reject_attrs("blocktcq", base.attrs, cases);
  std::string error;
  // Odd blocks and the extremes are valid (unlike blockvq's pairs, a block needs no even size).
  for (int64_t block : {2, 7, 33, 4096}) {
    MapAttrs a = base.attrs;
    a.ints["i_block"] = {block};
    check(Decoder::create(a, &error) != nullptr, "blocktcq block " + std::to_string(block) + ": " + error);
  }
  auto dec = Decoder::create(base.attrs, &error);
  check(dec != nullptr, "blocktcq base: " + error);
  if (!dec) return attrs;
  // 779 weights, blocks of 32: 779 codes of 5 bits (487 bytes), 25 headers (32 bytes).
  check(dec->blob_bytes() == 487 + 32 && base.blob.size() == 519, "blocktcq blob length");
  const std::vector<std::pair<std::string, std::vector<uint8_t>>> blobs = {
      {"one byte short", std::vector<uint8_t>(base.blob.begin(), base.blob.end() - 1)},
      {"one byte long", [&] { auto b = base.blob; b.push_back(0); return b; }()},
      {"codes only", std::vector<uint8_t>(base.blob.begin(), base.blob.begin() + 487)},
      {"a header byte short", std::vector<uint8_t>(base.blob.begin(), base.blob.begin() + 518)},
      {"one byte", std::vector<uint8_t>(1, 0xff)},
      {"empty", {}},
  };
  for (const auto& [what, blob] : blobs) {
    std::vector<uint8_t> out(dec->out_bytes());
    std::string e1, e2;
    check(!dec->validate(blob.data(), blob.size(), &e1), "blocktcq " + what + ": validate accepted");
    check(!dec->decode(blob.data(), blob.size(), out.data(), 2, &e2), "blocktcq " + what + ": decode accepted");
    const std::string want = "expected 519 (779 codes of 5 bits + 25 block headers of 10 bits)";
    check(e1.find(want) != std::string::npos && e1 == e2, "blocktcq " + what + ": message '" + e2 + "'");
  }
  // Every header value, level sets 0..3 with every scale code, blocks of 2 and of 7 (odd): all valid; the values
  // as the format's walk gives them.
  for (int64_t block : {2, 7}) {
    MapAttrs a = base.attrs;
    const uint64_t numel = 1024 * static_cast<uint64_t>(block) - 1;  // a partial last block
    a.ints["shape"] = {static_cast<int64_t>(numel)};
    a.ints["i_block"] = {block};
    const std::string what = "blocktcq 1024 headers, blocks of " + std::to_string(block);
    auto all = Decoder::create(a, &error);
    check(all != nullptr, what + ": " + error);
    if (!all) continue;
    std::vector<uint32_t> codes(numel), headers(1024);
    for (uint32_t i = 0; i < numel; ++i) codes[i] = (i * 77u + i / 5) & 31u;
    for (uint32_t i = 0; i < 1024; ++i) headers[i] = i;
    auto blob = pack(codes, 5);
    const auto hb = pack(headers, 10);
    blob.insert(blob.end(), hb.begin(), hb.end());
    std::vector<float> out(numel);
    check(all->validate(blob.data(), blob.size(), &error), what + ": validate: " + error);
    check(all->decode(blob.data(), blob.size(), out.data(), 1, &error), what + ": decode: " + error);
    const auto want = blocktcq_formula(codes, headers, a.floats.at("f_books"), a.floats.at("f_smax")[0], 32,
                                       static_cast<uint64_t>(block));
    check(std::memcmp(out.data(), want.data(), numel * 4) == 0, what + ": values differ from the format's walk");
  }
  return attrs + blobs.size() + 6;
}

uint32_t u16(const std::vector<uint8_t>& b, size_t at) { return static_cast<uint32_t>(b[at] | b[at + 1] << 8); }
void put16(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  b[at] = static_cast<uint8_t>(v), b[at + 1] = static_cast<uint8_t>(v >> 8);
}
void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) { put16(b, at, v & 0xffff), put16(b, at + 2, v >> 16); }

// A copy of `blob` changed by f.
std::vector<uint8_t> mutated(const std::vector<uint8_t>& blob, const std::function<void(std::vector<uint8_t>&)>& f) {
  auto b = blob;
  f(b);
  return b;
}

// Offsets of a blob's `n` frequency tables, then of its first stream.
std::vector<size_t> table_offsets(const std::vector<uint8_t>& b, int n) {
  std::vector<size_t> at{0};
  for (int k = 0; k < n; ++k) at.push_back(at.back() + 4 + 2 * u16(b, at.back() + 2));
  return at;
}

// The blob cases of one rANS codec; `ran` counts them.
struct RansRejecter {
  std::string codec;  // "ecsq"
  size_t ran = 0;

  // Rejects `blob` with a message holding `expect` (validate and decode agree); or, when expect is null, only
  // requires validate and decode to agree (a flipped word may still decode to valid states: rANS has no checksum).
  bool operator()(const GoldenCase& c, const std::string& what, const std::vector<uint8_t>& blob, const char* expect) {
    std::string error;
    auto dec = Decoder::create(c.attrs, &error);
    check(dec != nullptr, codec + " " + c.name + ": " + error);
    if (!dec) return false;
    std::string ev, e1, e3;
    std::vector<uint8_t> out(dec->out_bytes());
    const bool v = dec->validate(blob.data(), blob.size(), &ev);
    const bool d1 = dec->decode(blob.data(), blob.size(), out.data(), 1, &e1);
    const bool d3 = dec->decode(blob.data(), blob.size(), out.data(), 3, &e3);
    check(v == d1 && v == d3 && ev == e1 && ev == e3,
          codec + " " + what + ": validate/decode disagree: '" + ev + "' '" + e1 + "' '" + e3 + "'");
    if (expect) {
      check(!v, codec + " " + what + ": accepted");
      check(ev.find(expect) != std::string::npos, codec + " " + what + ": message '" + ev + "' lacks '" + expect + "'");
    }
    ++ran;
    return !v;
  }

  // The framing cases on `base`: `tables` frequency tables (`tables_word`: "two"), then one stream of 8 lanes.
  void framing(const GoldenCase& base, int tables, const char* tables_word) {
    const std::vector<uint8_t>& good = base.blob;
    auto& reject = *this;
    check(reject(base, "unmutated", good, nullptr) == false, codec + ": the unmutated blob is rejected");
    const size_t stream_at = table_offsets(good, tables).back(), nwords_at = stream_at + 4 * 8;
    check(good.size() == nwords_at + 4 + 2 * (u16(good, nwords_at) | u16(good, nwords_at + 2) << 16),
          codec + " base layout");
    const size_t least = 6 * static_cast<size_t>(tables) + 4 * 8 + 4;  // one-symbol tables, one empty stream
    const std::string short_msg = "expected at least " + std::to_string(least) + " (" + tables_word +
                                  " frequency tables + 1 rANS stream(s)";
    const std::string codec_msg = codec + " codec";
    for (size_t n = 0; n < good.size(); ++n) {  // every truncation (below the least length: the shared length error)
      reject(base, "truncated to " + std::to_string(n), std::vector<uint8_t>(good.begin(), good.begin() + n),
             n < least ? short_msg.c_str() : codec_msg.c_str());
    }
    int flips_rejected = 0, flips = 0;
    for (size_t at = 0; at < good.size(); ++at) {  // every byte flipped (each bit pattern 0x01 and 0x80)
      for (uint8_t mask : {uint8_t{0x01}, uint8_t{0x80}}) {
        auto b = good;
        b[at] ^= mask;
        flips_rejected += reject(base, "byte " + std::to_string(at) + " ^ " + std::to_string(mask), b, nullptr);
        ++flips;
      }
    }
    // Every flip in the tables and stream header must be caught; words may (rarely) decode to valid states.
    check(flips_rejected >= flips * 9 / 10, codec + " flips: only " + std::to_string(flips_rejected) + " of " +
                                                std::to_string(flips) + " rejected");
    reject(base, "trailing byte", mutated(good, [](auto& b) { b.push_back(0); }),
           "1 unexpected byte(s) after the last stream");
    reject(base, "state 2^16 - 1", mutated(good, [&](auto& b) { put32(b, stream_at, 0xffff); }), "state out of range");
    reject(base, "state 0", mutated(good, [&](auto& b) { put32(b, stream_at + 28, 0); }), "state out of range");
    reject(base, "state + 1", mutated(good, [&](auto& b) { b[stream_at] ^= 1; }), "segment 0: corrupt stream");
    reject(base, "nwords + 1", mutated(good, [&](auto& b) { b[nwords_at] += 1; }), "segment 0: truncated stream");
    reject(base, "nwords 2^32 - 1", mutated(good, [&](auto& b) { put32(b, nwords_at, 0xffffffffu); }),
           "truncated stream");
    reject(base, "nwords - 1", mutated(good, [&](auto& b) { b[nwords_at] -= 1; }), codec_msg.c_str());
    reject(base, "no words", mutated(good, [&](auto& b) { put32(b, nwords_at, 0); }), codec_msg.c_str());
  }

  // Two segments: damage in the second stream is reported for segment 1 by every thread count; a stream cut
  // short. Then a shape claiming far more segments than `base`'s blob can hold: rejected by the length check,
  // nothing allocated.
  void segments(const GoldenCase& multi, const GoldenCase& base) {
    auto& reject = *this;
    const auto& mb = multi.blob;
    reject(multi, "2 segments: last word flipped", mutated(mb, [](auto& b) { b.back() ^= 0x5a; }),
           "segment 1: corrupt stream");
    reject(multi, "2 segments: trailing byte", mutated(mb, [](auto& b) { b.push_back(7); }), "after the last stream");
    reject(multi, "2 segments: last byte cut", std::vector<uint8_t>(mb.begin(), mb.end() - 1),
           "segment 1: truncated stream");
    reject(multi, "2 segments: cut to the first", std::vector<uint8_t>(mb.begin(), mb.begin() + mb.size() / 2),
           (codec + " codec").c_str());
    MapAttrs huge = base.attrs;
    huge.ints["shape"] = {int64_t{1} << 40};
    std::string error;
    auto dec = Decoder::create(huge, &error);
    check(dec != nullptr, codec + " 2^40 weights: " + error);
    if (dec) {
      check(!dec->validate(base.blob.data(), base.blob.size(), &error) &&
                error.find("expected at least") != std::string::npos,
            codec + " 2^40 weights: '" + error + "'");
      ++ran;
    }
  }
};

// ecsq and tcq (one layout): the shared cases (above), and a bad frequency sum and alphabets out of range, from
// the golden cases `base_name` (one segment) and `multi_name` (a digest of several). Returns how many cases ran.
size_t run_malformed_ecsq(const std::string& dir, const std::string& family, const std::string& base_name,
                          const std::string& multi_name) {
  GoldenCase base, multi;
  for (auto& c : load_cases(dir)) {
    if (c.name == base_name) base = c;
  }
  for (auto& c : load_digest_cases(dir)) {
    if (c.name == multi_name) multi = c;
  }
  check(!base.name.empty() && !multi.name.empty(), "golden cases " + base_name + ", " + multi_name);
  if (base.name.empty() || multi.name.empty()) return 0;
  const size_t attrs = reject_attrs(family, base.attrs, {
      {"no i_block", [](MapAttrs& a) { a.ints.erase("i_block"); }, "'i_block'"},
      {"no f_scale", [](MapAttrs& a) { a.floats.erase("f_scale"); }, "'f_scale'"},
      {"block 0", [](MapAttrs& a) { a.ints["i_block"] = {0}; }, "i_block must be in 1..4096, got 0"},
      {"block 4097", [](MapAttrs& a) { a.ints["i_block"] = {4097}; }, "got 4097"},
      {"block -1", [](MapAttrs& a) { a.ints["i_block"] = {-1}; }, "got -1"},
      {"two blocks", [](MapAttrs& a) { a.ints["i_block"] = {32, 32}; }, "i_block must hold one integer"},
      {"no scale value", [](MapAttrs& a) { a.floats["f_scale"].clear(); }, "f_scale must hold one float"},
      {"scale NaN", [](MapAttrs& a) { a.floats["f_scale"] = {std::nanf("")}; }, "not finite"},
      {"scale inf", [](MapAttrs& a) { a.floats["f_scale"] = {INFINITY}; }, "not finite"},
      {"group 2", [](MapAttrs& a) { a.ints["group"] = {2}; }, "group must be 1"},
      {"bits 4", [](MapAttrs& a) { a.ints["bits"] = {4}; }, "bits must be 8"},
  });
  RansRejecter reject{family};
  reject.framing(base, 2, "two");
  // The tables: k, then q.
  const std::vector<uint8_t>& good = base.blob;
  const size_t q_at = table_offsets(good, 2)[1];
  reject(base, "k frequency sum 4097", mutated(good, [&](auto& b) { put16(b, 4, u16(b, 4) + 1); }),
         "k model: frequencies sum to 4097");
  reject(base, "q frequency sum 4095", mutated(good, [&](auto& b) { put16(b, q_at + 4, u16(b, q_at + 4) - 1); }),
         "q model: frequencies sum to 4095");
  reject(base, "k alphabet past 255", mutated(good, [&](auto& b) { put16(b, 0, 256 - u16(b, 2) + 1); }),
         "outside 0..255");
  reject(base, "k lo 65535", mutated(good, [&](auto& b) { put16(b, 0, 65535); }), "outside 0..255");
  reject(base, "q alphabet past 254", mutated(good, [&](auto& b) { put16(b, q_at, 255 - u16(b, q_at + 2) + 1); }),
         "level alphabet beyond");
  reject(base, "empty k table", mutated(good, [&](auto& b) { put16(b, 2, 0); }), "k model: truncated or empty");
  reject(base, "k table of 65535", mutated(good, [&](auto& b) { put16(b, 2, 65535); }), "k model: truncated or empty");
  reject.segments(multi, base);
  return attrs + reject.ran;
}

// The rank-1 term (format version 2) on tcq: every truncation (inside the term: the shared length error), a
// non-finite float16 (inf, -inf, NaN) first and last in u and in v; and the version checks: 0 and 3 for every
// codec, 2 where a codec does not define it (blockvq), a term without a first dimension. Returns how many cases ran.
size_t run_malformed_rank1(const std::string& dir) {
  GoldenCase base, blockvq;
  for (auto& c : load_cases(dir)) {
    if (c.name == "rank1_tcq_float32_B32_24x40") base = c;
    if (c.name == "blockvq_float32_b5_B32_19x41") blockvq = c;
  }
  check(!base.name.empty() && !blockvq.name.empty(),
        "golden cases rank1_tcq_float32_B32_24x40, blockvq_float32_b5_B32_19x41");
  if (base.name.empty() || blockvq.name.empty()) return 0;
  check(base.attrs.ints.at("format") == std::vector<int64_t>{2}, "rank1 base case is format 2");
  size_t ran = reject_attrs("tcq", base.attrs, {
      {"format 3", [](MapAttrs& a) { a.ints["format"] = {3}; }, "format version 3 is not supported"},
      {"format 0", [](MapAttrs& a) { a.ints["format"] = {0}; }, "format version 0 is not supported"},
      {"scalar shape", [](MapAttrs& a) { a.ints["shape"] = {}; }, "a rank-1 term needs a non-empty first dimension"},
  });
  ran += reject_attrs("blockvq", blockvq.attrs, {
      {"format 2", [](MapAttrs& a) { a.ints["format"] = {2}; }, "format version 2 is not defined"},
  });
  RansRejecter reject{"tcq"};
  const std::vector<uint8_t>& good = base.blob;
  check(reject(base, "unmutated", good, nullptr) == false, "tcq: the unmutated rank-1 blob is rejected");
  const size_t halves = 24 + 40, least = 2 * halves + 6 * 2 + 4 * 8 + 4;  // the term, one-symbol tables, no words
  const std::string short_msg = "expected at least " + std::to_string(least) + " (a 128-byte rank-1 term + two";
  for (size_t n = 0; n < good.size(); ++n) {  // below the least length: the shared length error
    reject(base, "truncated to " + std::to_string(n), std::vector<uint8_t>(good.begin(), good.begin() + n),
           n < least ? short_msg.c_str() : "tcq codec");
  }
  for (size_t h : {size_t{0}, size_t{23}, size_t{24}, halves - 1}) {
    for (uint16_t bad : {uint16_t{0x7c00}, uint16_t{0xfc00}, uint16_t{0x7e00}}) {
      reject(base, "half " + std::to_string(h) + " = " + std::to_string(bad),
             mutated(good, [&](auto& b) { put16(b, 2 * h, bad); }), "rank-1 term holds a non-finite value");
    }
  }
  return ran + reject.ran;
}

// grid: the shared cases (above), and a bad frequency sum, an alphabet out of range and a non-finite step or
// offset. A flipped transpose attribute is no error: it decodes, to another tensor. Returns how many cases ran.
size_t run_malformed_grid(const std::string& dir) {
  GoldenCase base, zero, transposed, multi;
  for (auto& c : load_cases(dir)) {
    if (c.name == "grid_float32_B32_q4_1_3x96") base = c;
    if (c.name == "grid_zero") zero = c;
    if (c.name == "grid_float32_B32_T_64x5") transposed = c;
  }
  for (auto& c : load_digest_cases(dir)) {
    if (c.name == "grid_2seg_B1_bfloat16") multi = c;
  }
  const bool have = !base.name.empty() && !zero.name.empty() && !transposed.name.empty() && !multi.name.empty();
  check(have, "golden cases grid_float32_B32_q4_1_3x96, grid_zero, grid_float32_B32_T_64x5, grid_2seg_B1_bfloat16");
  if (!have) return 0;
  size_t ran = reject_attrs("grid", base.attrs, {
      {"no i_block", [](MapAttrs& a) { a.ints.erase("i_block"); }, "'i_block'"},
      {"no i_transpose", [](MapAttrs& a) { a.ints.erase("i_transpose"); }, "'i_transpose'"},
      {"block 0", [](MapAttrs& a) { a.ints["i_block"] = {0}; }, "i_block must be in 1..4096, got 0"},
      {"block 4097", [](MapAttrs& a) { a.ints["i_block"] = {4097}; }, "got 4097"},
      {"block -1", [](MapAttrs& a) { a.ints["i_block"] = {-1}; }, "got -1"},
      {"two blocks", [](MapAttrs& a) { a.ints["i_block"] = {32, 32}; }, "i_block must hold one integer"},
      {"transpose 2", [](MapAttrs& a) { a.ints["i_transpose"] = {2}; }, "i_transpose must be 0 or 1, got 2"},
      {"transpose -1", [](MapAttrs& a) { a.ints["i_transpose"] = {-1}; }, "i_transpose must be 0 or 1, got -1"},
      {"no transpose value", [](MapAttrs& a) { a.ints["i_transpose"].clear(); }, "i_transpose must hold one integer"},
      {"two transposes", [](MapAttrs& a) { a.ints["i_transpose"] = {0, 1}; }, "i_transpose must hold one integer"},
      {"group 2", [](MapAttrs& a) { a.ints["group"] = {2}; }, "group must be 1"},
      {"bits 4", [](MapAttrs& a) { a.ints["bits"] = {4}; }, "bits must be 8"},
  });
  RansRejecter reject{"grid"};
  reject.framing(base, 20, "twenty");
  // The tables: d_lo, d_hi, m_lo, m_hi, q0 … q15.
  const std::vector<uint8_t>& good = base.blob;
  const std::vector<size_t> t_at = table_offsets(good, 20);
  reject(base, "d_lo frequency sum 4097", mutated(good, [&](auto& b) { put16(b, 4, u16(b, 4) + 1); }),
         "d_lo model: frequencies sum to 4097");
  reject(base, "q0 frequency sum 4095", mutated(good, [&](auto& b) { put16(b, t_at[4] + 4, u16(b, t_at[4] + 4) - 1); }),
         "q0 model: frequencies sum to 4095");
  reject(base, "q15 frequency sum 4097",
         mutated(good, [&](auto& b) { put16(b, t_at[19] + 4, u16(b, t_at[19] + 4) + 1); }),
         "q15 model: frequencies sum to 4097");
  reject(base, "m_hi alphabet past 255",
         mutated(good, [&](auto& b) { put16(b, t_at[3], 256 - u16(b, t_at[3] + 2) + 1); }), "m_hi model: alphabet");
  reject(base, "empty m_lo table", mutated(good, [&](auto& b) { put16(b, t_at[2] + 2, 0); }),
         "m_lo model: truncated or empty");
  reject(base, "q0 table of 65535", mutated(good, [&](auto& b) { put16(b, t_at[4] + 2, 65535); }),
         "q0 model: truncated or empty");
  // Non-finite steps and offsets: the zero tensor's side tables are one-symbol alphabets (symbol 0, no words), so
  // moving a table's symbol changes every block's byte and nothing else.
  const std::vector<size_t> z_at = table_offsets(zero.blob, 20);
  check(u16(zero.blob, z_at[1] + 2) == 1 && u16(zero.blob, z_at[3] + 2) == 1, "grid_zero: one-symbol side tables");
  for (uint32_t hi : {0x7cu, 0xfcu, 0x7eu, 0xffu}) {
    reject(zero, "d_hi " + std::to_string(hi), mutated(zero.blob, [&](auto& b) { put16(b, z_at[1], hi); }),
           "segment 0: block 0: step or offset is not finite");
    reject(zero, "m_hi " + std::to_string(hi), mutated(zero.blob, [&](auto& b) { put16(b, z_at[3], hi); }),
           "segment 0: block 0: step or offset is not finite");
  }
  for (uint32_t hi : {0x7bu, 0xfbu, 0x3cu}) {  // the largest finite exponents: fine
    check(!reject(zero, "d_hi finite " + std::to_string(hi),
                  mutated(zero.blob, [&](auto& b) { put16(b, z_at[1], hi); }), nullptr),
          "grid: a finite step rejected");
  }
  // The transpose attribute flipped: a valid decode of the other layout (not the tensor), and back.
  {
    MapAttrs flat = transposed.attrs;
    flat.ints["i_transpose"] = {0};
    std::string error;
    auto dec = Decoder::create(flat, &error);
    std::vector<uint8_t> out(dec ? dec->out_bytes() : 0);
    check(dec && dec->decode(transposed.blob.data(), transposed.blob.size(), out.data(), 1, &error),
          "grid transpose flipped: " + error);
    check(out != transposed.expect, "grid transpose flipped: decodes to the same tensor");
    // Element (r, c) of the [64, 5] tensor is stream element c·64 + r.
    bool same = out.size() == transposed.expect.size();
    for (size_t j = 0; same && j < 320; ++j) {
      same = std::memcmp(&out[4 * j], &transposed.expect[4 * ((j % 64) * 5 + j / 64)], 4) == 0;
    }
    check(same, "grid transpose flipped: not the stream order");
    ran += 2;
  }
  reject.segments(multi, base);
  return ran + reject.ran;
}

int run_malformed(const std::string& dir) {
  GoldenCase base;
  for (auto& c : load_cases(dir)) {
    if (c.name == "paper_edge_n17_r3") base = c;
  }
  check(!base.name.empty(), "golden case paper_edge_n17_r3 present");
  if (base.name.empty()) return 1;

  // Attribute mutations: each must make create() fail with a message containing `expect`.
  const std::vector<AttrCase> attr_cases = {
      {"no codec", [](MapAttrs& a) { a.strings.erase("codec"); }, "'codec'"},
      {"unknown codec", [](MapAttrs& a) { a.strings["codec"] = "zip"; }, "unknown codec 'zip'"},
      {"format 2", [](MapAttrs& a) { a.ints["format"] = {2}; }, "format version 2"},
      {"no format", [](MapAttrs& a) { a.ints.erase("format"); }, "'format'"},
      {"dtype int8", [](MapAttrs& a) { a.ints["dtype"] = {3}; }, "dtype 3"},
      {"bits 0", [](MapAttrs& a) { a.ints["bits"] = {0}; }, "bits must be in 1..32"},
      {"bits 33", [](MapAttrs& a) { a.ints["bits"] = {33}; }, "bits must be in 1..32"},
      {"group 0", [](MapAttrs& a) { a.ints["group"] = {0}; }, "group must be"},
      {"group 3 for paper", [](MapAttrs& a) { a.ints["group"] = {3}; }, "group must be 2"},
      {"negative dim", [](MapAttrs& a) { a.ints["shape"] = {4, -1}; }, "negative dimension"},
      {"shape overflow", [](MapAttrs& a) { a.ints["shape"] = {1 << 30, 1 << 30, 1 << 30}; }, "too many elements"},
      {"no shape", [](MapAttrs& a) { a.ints.erase("shape"); }, "'shape'"},
      {"mode fast", [](MapAttrs& a) { a.strings["mode"] = "fast"; }, "mode must be"},
      {"no i_n", [](MapAttrs& a) { a.ints.erase("i_n"); }, "'i_n'"},
      {"no f_scale", [](MapAttrs& a) { a.floats.erase("f_scale"); }, "'f_scale'"},
      {"n = 0", [](MapAttrs& a) { a.ints["i_n"] = {0}; }, "i_n must be"},
      {"n too large", [](MapAttrs& a) { a.ints["i_n"] = {int64_t{1} << 40}; }, "i_n must be"},
      {"two n", [](MapAttrs& a) { a.ints["i_n"] = {3, 4}; }, "one integer"},
      {"rings -1", [](MapAttrs& a) { a.ints["i_rings"] = {-1}; }, "i_rings must be"},
      {"short scale", [](MapAttrs& a) { a.floats["f_scale"].pop_back(); }, "f_scale must hold"},
      {"long center", [](MapAttrs& a) { a.floats["f_center"].push_back(1.0f); }, "f_center must hold"},
      {"no half", [](MapAttrs& a) { a.floats["f_half"].clear(); }, "f_half must hold"},
  };
  for (const auto& ac : attr_cases) {
    MapAttrs attrs = base.attrs;
    ac.mutate(attrs);
    std::string error;
    auto dec = Decoder::create(attrs, &error);
    check(dec == nullptr, std::string(ac.what) + ": accepted");
    check(error.find(ac.expect) != std::string::npos,
          std::string(ac.what) + ": message '" + error + "' lacks '" + ac.expect + "'");
  }

  // Blob mutations: each must make validate() and decode() fail, without reading out of bounds.
  std::string error;
  auto dec = Decoder::create(base.attrs, &error);
  check(dec != nullptr, "base case: " + error);
  if (!dec) return 1;
  const int bits = static_cast<int>(base.attrs.ints.at("bits")[0]);
  const auto entries = static_cast<uint32_t>((base.attrs.ints.at("i_n")[0] + 1) * (base.attrs.ints.at("i_rings")[0] + 1));
  std::vector<uint32_t> codes(dec->count());
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint32_t>(i % entries);
  struct BlobCase {
    std::string what;
    std::vector<uint8_t> blob;
    const char* expect;
  };
  std::vector<BlobCase> blob_cases;
  std::vector<uint8_t> good = pack(codes, bits);
  blob_cases.push_back({"one byte short", std::vector<uint8_t>(good.begin(), good.end() - 1), "expected"});
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  blob_cases.push_back({"one byte long", longer, "expected"});
  blob_cases.push_back({"empty", {}, "expected"});
  for (size_t pos : {size_t{0}, size_t{5}, codes.size() - 1}) {  // first, middle and last (partial) code
    for (uint32_t bad_code : {entries, (1u << bits) - 1}) {
      auto c = codes;
      c[pos] = bad_code;
      blob_cases.push_back({"code " + std::to_string(bad_code) + " at " + std::to_string(pos), pack(c, bits),
                            "out of range"});
    }
  }
  for (const auto& bc : blob_cases) {
    std::vector<uint8_t> out(dec->out_bytes());
    std::string e1, e2;
    check(!dec->validate(bc.blob.data(), bc.blob.size(), &e1), bc.what + ": validate accepted");
    check(!dec->decode(bc.blob.data(), bc.blob.size(), out.data(), 2, &e2), bc.what + ": decode accepted");
    check(e1.find(bc.expect) != std::string::npos && e2.find(bc.expect) != std::string::npos,
          bc.what + ": message '" + e2 + "' lacks '" + bc.expect + "'");
  }
  check(dec->validate(good.data(), good.size(), &error), "the unmutated blob: " + error);
  const size_t kron_cases = run_malformed_kronecker(dir);
  const size_t bvq_cases = run_malformed_blockvq(dir);
  const size_t btcq_cases = run_malformed_blocktcq(dir);
  const size_t ecsq_cases =
      run_malformed_ecsq(dir, "ecsq", "ecsq_float32_B32_s0.25_19x41", "ecsq_2seg_B1_bfloat16") +
      run_malformed_ecsq(dir, "tcq", "tcq_float32_B32_s0.25_19x41", "tcq_2seg_B4_float32");
  const size_t grid_cases = run_malformed_grid(dir);
  const size_t rank1_cases = run_malformed_rank1(dir);
  std::printf("malformed: %zu attribute and %zu blob cases, %zu kronecker cases, %zu blockvq cases, %zu blocktcq cases, "
              "%zu ecsq/tcq cases, %zu grid cases, %zu rank-1 cases, %d failures\n",
              attr_cases.size(), blob_cases.size(), kron_cases, bvq_cases, btcq_cases, ecsq_cases, grid_cases,
              rank1_cases, g_failures);
  return g_failures ? 1 : 0;
}

int run_casts(const std::string& dir) {
  std::ifstream in(dir + "/casts.txt");
  check(static_cast<bool>(in), "casts.txt present");
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream fields(line);
    std::string f, h, b;
    fields >> f >> h >> b;
    const uint32_t bits = static_cast<uint32_t>(std::stoul(f, nullptr, 16));
    float x;
    std::memcpy(&x, &bits, sizeof x);
    const auto want_h = static_cast<uint16_t>(std::stoul(h, nullptr, 16));
    const auto want_b = static_cast<uint16_t>(std::stoul(b, nullptr, 16));
    char msg[128];
    std::snprintf(msg, sizeof msg, "%08x: half %04x want %04x, bfloat16 %04x want %04x", bits,
                  hyperonnx::float_to_half(x), want_h, hyperonnx::float_to_bfloat16(x), want_b);
    check(hyperonnx::float_to_half(x) == want_h && hyperonnx::float_to_bfloat16(x) == want_b, msg);
    ++n;
  }
  std::printf("casts: %d values, %d failures\n", n, g_failures);
  return g_failures ? 1 : 0;
}

MapAttrs wide_paper(int64_t numel, int64_t n, int64_t dtype) {
  MapAttrs a;
  a.strings = {{"codec", "paper"}};
  a.ints = {{"format", {1}}, {"dtype", {dtype}}, {"group", {2}}, {"bits", {20}}, {"shape", {numel}},
            {"i_n", {n}}, {"i_rings", {1}}};
  a.floats = {{"f_center", {0.125f, -0.5f}}, {"f_half", {0.75f}}, {"f_step", {1.0f / 1048576, 1.0f / 1024}},
              {"f_scale", {1.0f, 1.7f}}};
  return a;
}

MapAttrs wide_kronecker(int64_t numel, int64_t levels, int64_t dtype, int64_t group) {
  MapAttrs a;
  a.strings = {{"codec", "kronecker"}};
  std::vector<int64_t> alpha = {-7046029254386353131, 4354685564936845355, 1};
  alpha.resize(static_cast<size_t>(group), 3);
  a.ints = {{"format", {1}}, {"dtype", {dtype}}, {"group", {group}}, {"bits", {18}}, {"shape", {numel}},
            {"i_levels", {levels}}, {"i_alpha", alpha}};
  a.floats = {{"f_offset", {-0.03125f}}, {"f_width", {0.7f}}};
  return a;
}

// kronecker, group 2 and 3 (rows of 4..24 bytes: streamed directly, staged, with and without a fused kernel):
// threads agree with one thread, a misaligned output (no streaming) with an aligned one, the per-code path with
// the table path, and a bad code deep inside a large tensor is reported at its first position on any thread count.
void run_threads_kronecker() {
  // 2^22 + 1 elements: every dtype's output is >= 8 MiB, so float16 and bfloat16 stream too.
  const int64_t levels = (int64_t{1} << 18) - 5, numel = (int64_t{1} << 22) + 1;
  for (int64_t group : {2, 3}) {
  for (int64_t dtype : {1, 10, 16, 11}) {
    std::string error;
    auto big = Decoder::create(wide_kronecker(numel, levels, dtype, group), &error);
    auto small = Decoder::create(wide_kronecker(1001, levels, dtype, group), &error);
    check(big && small, "kronecker create: " + error);
    if (!big || !small) return;
    std::vector<uint32_t> codes(big->count());
    uint64_t state = 2463534242ull;
    for (auto& c : codes) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      c = static_cast<uint32_t>(state % static_cast<uint64_t>(levels));
    }
    const auto blob = pack(codes, 18);
    std::vector<uint8_t> ref(big->out_bytes());
    check(big->decode(blob.data(), blob.size(), ref.data(), 1, &error), "kronecker 1 thread: " + error);
    for (int threads : {2, 3, 8}) {
      std::vector<uint8_t> out(big->out_bytes());
      check(big->decode(blob.data(), blob.size(), out.data(), threads, &error), "kronecker threads: " + error);
      check(out == ref, "kronecker dtype " + std::to_string(dtype) + ": " + std::to_string(threads) + " threads differ");
    }
    std::vector<uint8_t> shifted(big->out_bytes() + 4);
    check(big->decode(blob.data(), blob.size(), shifted.data() + 4, 2, &error), "kronecker misaligned: " + error);
    check(std::equal(ref.begin(), ref.end(), shifted.begin() + 4), "kronecker misaligned output differs");
    const auto small_blob = pack(std::vector<uint32_t>(codes.begin(), codes.begin() + small->count()), 18);
    std::vector<uint8_t> direct(small->out_bytes());
    check(small->decode(small_blob.data(), small_blob.size(), direct.data(), 1, &error), "kronecker direct: " + error);
    check(std::equal(direct.begin(), direct.end(), ref.begin()),
          "kronecker dtype " + std::to_string(dtype) + ": per-code path differs from the table path");
    auto bad = codes;
    const size_t first_bad = bad.size() / 2 + 13, second_bad = bad.size() - 700;
    bad[first_bad] = static_cast<uint32_t>(levels);
    bad[second_bad] = (1u << 18) - 1;
    const auto bad_blob = pack(bad, 18);
    for (int threads : {1, 2, 3, 8}) {
      std::vector<uint8_t> out(big->out_bytes());
      std::string e;
      check(!big->decode(bad_blob.data(), bad_blob.size(), out.data(), threads, &e), "kronecker bad code accepted");
      check(e.find("code " + std::to_string(levels) + " at position " + std::to_string(first_bad)) != std::string::npos,
            "kronecker bad code, " + std::to_string(threads) + " threads: message '" + e + "'");
    }
  }
  }
}

// blockvq, blocks of 32 (fused path) and 40 (generic path), b = 5 (pair table) and 8 (level gathers), every dtype,
// 2^22 + 1 weights (streaming stores for every dtype; a partial last block and pair): 1 thread == 2, 3, 8
// threads == a misaligned output (plain stores) == the format's formula computed here element by element.
void run_threads_blockvq() {
  const int64_t numel = (int64_t{1} << 22) + 1;
  static const uint32_t kSteps[16] = {0x3F800000, 0x3F75257D, 0x3F6AC0C7, 0x3F60CCDF, 0x3F5744FD, 0x3F4E248C,
                                      0x3F45672A, 0x3F3D08A4, 0x3F3504F3, 0x3F2D583F, 0x3F25FED7, 0x3F1EF532,
                                      0x3F1837F0, 0x3F11C3D3, 0x3F0B95C2, 0x3F05AAC3};
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
  };
  for (int b : {5, 8}) {
    for (int64_t block : {32, 40}) {
      const uint32_t L = 1u << b;
      MapAttrs a;
      a.strings = {{"codec", "blockvq"}};
      a.ints = {{"format", {1}}, {"group", {2}}, {"bits", {2 * b}}, {"shape", {numel}}, {"i_block", {block}},
                {"i_levels", {L}}};
      std::vector<float> books(4 * L);
      for (auto& v : books) v = static_cast<float>(static_cast<int64_t>(next() % 2001) - 1000) / 997.0f;
      a.floats = {{"f_smax", {0.0371f}}, {"f_books", books}};
      const uint64_t count = (numel + 1) / 2, nblocks = (numel + block - 1) / block;
      std::vector<uint32_t> codes(count), headers(nblocks);
      for (auto& c : codes) c = static_cast<uint32_t>(next() % (uint64_t{L} * L));
      for (auto& h : headers) h = static_cast<uint32_t>(next() % 1024);
      auto blob = pack(codes, 2 * b);
      const auto hb = pack(headers, 10);
      blob.insert(blob.end(), hb.begin(), hb.end());
      std::vector<float> want(static_cast<size_t>(numel));
      for (int64_t e = 0; e < numel; ++e) {
        const uint32_t h = headers[static_cast<size_t>(e / block)], theta = codes[static_cast<size_t>(e / 2)];
        float m;
        std::memcpy(&m, &kSteps[h & 15], 4);
        const float s = std::ldexp(0.0371f * m, -static_cast<int>((h & 255) >> 4));
        want[static_cast<size_t>(e)] = books[(h >> 8) * L + (e % 2 ? theta & (L - 1) : theta >> b)] * s;
      }
      for (int64_t dtype : {1, 10, 16, 11}) {
        a.ints["dtype"] = {dtype};
        std::string error;
        auto dec = Decoder::create(a, &error);
        check(dec != nullptr, "blockvq threads create: " + error);
        if (!dec) return;
        const std::string what = "blockvq b=" + std::to_string(b) + " block=" + std::to_string(block) + " dtype=" +
                                 std::to_string(dtype);
        std::vector<uint8_t> ref(dec->out_bytes());
        hyperonnx::DType t;
        hyperonnx::dtype_from_onnx(dtype, &t);
        hyperonnx::cast_floats(want.data(), want.size(), t, ref.data());
        for (int threads : {1, 2, 3, 8}) {
          std::vector<uint8_t> out(dec->out_bytes());
          check(dec->decode(blob.data(), blob.size(), out.data(), threads, &error), what + ": " + error);
          check(out == ref, what + ": " + std::to_string(threads) + " threads differ from the formula");
        }
        std::vector<uint8_t> shifted(dec->out_bytes() + 4);
        check(dec->decode(blob.data(), blob.size(), shifted.data() + 2, 2, &error), what + " misaligned: " + error);
        check(std::equal(ref.begin(), ref.end(), shifted.begin() + 2), what + ": misaligned output differs");
      }
    }
  }
}

// blocktcq, 2^22 + 1 weights (streaming-size outputs for every dtype; a partial last block): b = 5 with blocks of 32
// (the defaults), b = 8 with odd blocks of 33 and level sets holding a NaN and an infinity (the scalar float16
// cast instead of F16C), b = 1 with blocks of 4096 (each block spanning eight 512-code chunks), every dtype:
// 1 thread == 2, 3, 8 threads == a misaligned output == the format's walk computed here.
void run_threads_blocktcq() {
  const int64_t numel = (int64_t{1} << 22) + 1;
  uint64_t state = 0x2545F4914F6CDD1Dull;
  auto next = [&] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
  };
  struct Config {
    int b;
    int64_t block;
    bool special;
  };
  for (const Config& cfg : {Config{5, 32, false}, Config{8, 33, true}, Config{1, 4096, false}}) {
    const uint32_t L = 1u << cfg.b;
    MapAttrs a;
    a.strings = {{"codec", "blocktcq"}};
    a.ints = {{"format", {1}}, {"group", {1}}, {"bits", {cfg.b}}, {"shape", {numel}}, {"i_block", {cfg.block}},
              {"i_levels", {L}}};
    std::vector<float> books(2 * L);  // level set 0; sets 1-3 are computed
    for (auto& v : books) v = static_cast<float>(static_cast<int64_t>(next() % 2001) - 1000) / 997.0f;
    if (cfg.special) books[3] = std::nanf(""), books[L + 5] = -INFINITY;
    a.floats = {{"f_smax", {0.0371f}}, {"f_books", books}};
    const uint64_t nblocks = (numel + cfg.block - 1) / cfg.block;
    std::vector<uint32_t> codes(static_cast<size_t>(numel)), headers(nblocks);
    for (auto& c : codes) c = static_cast<uint32_t>(next() % L);
    for (auto& h : headers) h = static_cast<uint32_t>(next() % 1024);
    auto blob = pack(codes, cfg.b);
    const auto hb = pack(headers, 10);
    blob.insert(blob.end(), hb.begin(), hb.end());
    const std::vector<float> want = blocktcq_formula(codes, headers, books, 0.0371f, L, static_cast<uint64_t>(cfg.block));
    for (int64_t dtype : {1, 10, 16, 11}) {
      a.ints["dtype"] = {dtype};
      std::string error;
      auto dec = Decoder::create(a, &error);
      check(dec != nullptr, "blocktcq threads create: " + error);
      if (!dec) return;
      const std::string what = "blocktcq b=" + std::to_string(cfg.b) + " block=" + std::to_string(cfg.block) +
                               " dtype=" + std::to_string(dtype);
      std::vector<uint8_t> ref(dec->out_bytes());
      hyperonnx::DType t;
      hyperonnx::dtype_from_onnx(dtype, &t);
      hyperonnx::cast_floats(want.data(), want.size(), t, ref.data());
      for (int threads : {1, 2, 3, 8}) {
        std::vector<uint8_t> out(dec->out_bytes());
        check(dec->decode(blob.data(), blob.size(), out.data(), threads, &error), what + ": " + error);
        check(out == ref, what + ": " + std::to_string(threads) + " threads differ from the format's walk");
      }
      std::vector<uint8_t> shifted(dec->out_bytes() + 4);
      check(dec->decode(blob.data(), blob.size(), shifted.data() + 2, 2, &error), what + " misaligned: " + error);
      check(std::equal(ref.begin(), ref.end(), shifted.begin() + 2), what + ": misaligned output differs");
    }
  }
}

int run_threads() {
  // n = 2^19 - 1, one ring: 2^20 entries, 20-bit codes. 2^21 + 3 elements (odd: a partial last code) need the
  // table path and several threads; the first 999 elements alone need the per-code path (the table would be
  // far larger than the output).
  const int64_t n = (int64_t{1} << 19) - 1, numel = (int64_t{1} << 21) + 3;
  for (int64_t dtype : {1, 10, 16, 11}) {
    std::string error;
    auto big = Decoder::create(wide_paper(numel, n, dtype), &error);
    auto small = Decoder::create(wide_paper(999, n, dtype), &error);
    check(big && small, "create: " + error);
    if (!big || !small) return 1;
    std::vector<uint32_t> codes(big->count());
    uint64_t state = 88172645463325252ull;  // xorshift: deterministic codes over the whole range
    for (auto& c : codes) {
      state ^= state << 13, state ^= state >> 7, state ^= state << 17;
      c = static_cast<uint32_t>(state % (uint64_t{1} << 20));
    }
    const auto blob = pack(codes, 20);
    std::vector<uint8_t> ref(big->out_bytes());
    check(big->decode(blob.data(), blob.size(), ref.data(), 1, &error), "1 thread: " + error);
    for (int threads : {2, 3, 8}) {
      std::vector<uint8_t> out(big->out_bytes());
      check(big->decode(blob.data(), blob.size(), out.data(), threads, &error), "threads: " + error);
      check(out == ref, "dtype " + std::to_string(dtype) + ": " + std::to_string(threads) + " threads differ from 1");
    }
    const auto small_blob = pack(std::vector<uint32_t>(codes.begin(), codes.begin() + small->count()), 20);
    std::vector<uint8_t> direct(small->out_bytes());
    check(small->decode(small_blob.data(), small_blob.size(), direct.data(), 1, &error), "direct: " + error);
    check(std::equal(direct.begin(), direct.end(), ref.begin()),
          "dtype " + std::to_string(dtype) + ": per-code path differs from the table path");
  }
  run_threads_kronecker();
  run_threads_blockvq();
  run_threads_blocktcq();
  std::printf("threads: %d failures\n", g_failures);
  return g_failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s golden|malformed|casts|threads GOLDEN_DIR\n", argv[0]);
    return 2;
  }
  const std::string what = argv[1], dir = argv[2];
  try {
    if (what == "golden") return run_golden(dir);
    if (what == "malformed") return run_malformed(dir);
    if (what == "casts") return run_casts(dir);
    if (what == "threads") return run_threads();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "unknown test %s\n", what.c_str());
  return 2;
}
