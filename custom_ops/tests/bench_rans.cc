// Speed of the rANS stream reader's loops (codecs/rans.h, rans_simd.cc) on one random stream, for profiling (not
// a test; benchmarks/decode.py measures whole codecs through ONNX Runtime):
//
//   hyperonnx_rans_bench [symbols] [alphabet] [rounds]
//
// symbols (default 4194304: 1024 lanes) drawn from `alphabet` symbols (default 24) with Gaussian frequencies, as
// tcq's and ecsq's level symbols are; decoded in calls of 2048 symbols, as those codecs decode them. Every loop
// this CPU runs, rounds interleaved (so load changes hit them alike); prints the median ns a symbol, the fastest
// round and the ratio to the scalar loop.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "codecs/rans.h"
#include "rans_streams.h"

namespace rans = hyperonnx::rans;

int main(int argc, char** argv) {
  const uint64_t count = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : uint64_t{1} << 22;
  const int alphabet = argc > 2 ? std::atoi(argv[2]) : 24;
  const int rounds = argc > 3 ? std::atoi(argv[3]) : 15;
  if (count == 0 || alphabet < 1 || alphabet > 256 || rounds < 1) {
    std::fprintf(stderr, "usage: %s [symbols >= 1] [alphabet 1..256] [rounds >= 1]\n", argv[0]);
    return 2;
  }
  std::vector<uint64_t> weight(static_cast<size_t>(alphabet));
  for (int j = 0; j < alphabet; ++j) {
    const double z = (j - (alphabet - 1) / 2.0) / std::max(1.0, alphabet / 6.0);
    weight[static_cast<size_t>(j)] = static_cast<uint64_t>(1 + 1e6 * std::exp(-0.5 * z * z));
  }
  std::vector<hyperonnx::test::Table> tables(1);
  std::string error;
  if (!hyperonnx::test::make_table(0, weight, &tables[0], &error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  std::mt19937_64 rng(1);
  std::vector<uint32_t> syms(count);
  for (auto& s : syms) s = hyperonnx::test::draw(rng, tables[0]);
  const std::vector<uint8_t> blob = hyperonnx::test::encode(syms, std::vector<uint8_t>(count, 0), tables);
  const double bits = 8.0 * static_cast<double>(blob.size()) / static_cast<double>(count);

  std::vector<rans::Isa> isas;
  for (rans::Isa isa : {rans::Isa::kScalar, rans::Isa::kAvx2, rans::Isa::kAvx512}) {
    if (rans::isa_available(isa)) isas.push_back(isa);
  }
  const char* names[] = {"scalar", "avx2", "avx512"};
  std::vector<std::vector<double>> times(isas.size());
  std::vector<uint8_t> out(count);
  auto stream = std::make_unique<rans::Stream>();
  for (int r = 0; r <= rounds; ++r) {  // round 0 warms up
    for (size_t k = 0; k < isas.size(); ++k) {
      size_t pos = 0;
      if (!stream->open(blob.data(), blob.size(), &pos, count, &error)) {
        std::fprintf(stderr, "%s\n", error.c_str());
        return 1;
      }
      const auto t0 = std::chrono::steady_clock::now();
      bool ok = true;
      for (uint64_t i = 0; i < count && ok; i += 2048) {
        ok = stream->decode_using(isas[k], tables[0].model, std::min<uint64_t>(2048, count - i), out.data() + i);
      }
      const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!ok || !stream->finished() || out[count / 2] != syms[count / 2]) {
        std::fprintf(stderr, "%s: the stream did not decode\n", names[static_cast<int>(isas[k])]);
        return 1;
      }
      if (r > 0) times[k].push_back(t * 1e9 / static_cast<double>(count));
    }
  }
  std::printf("%llu symbols, %u lanes, alphabet %d, %.2f bits a symbol; median of %d interleaved rounds\n",
              static_cast<unsigned long long>(count), rans::lanes_for(count), alphabet, bits, rounds);
  double scalar = 0;
  for (size_t k = 0; k < isas.size(); ++k) {
    std::vector<double>& t = times[k];
    std::sort(t.begin(), t.end());
    const double median = t[t.size() / 2];
    if (k == 0) scalar = median;
    std::printf("  %-7s %6.3f ns a symbol (fastest %6.3f), %5.2fx the scalar loop's speed\n",
                names[static_cast<int>(isas[k])], median, t[0], scalar / median);
  }
  return 0;
}
