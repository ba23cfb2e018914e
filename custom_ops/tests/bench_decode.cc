// Decode throughput of the decoder core vs memcpy of the decoded bytes, without ONNX Runtime (for profiling:
// `valgrind --tool=callgrind` or `perf record` on this binary; benchmarks/runtime.py measures through ORT).
//
//   hyperonnx_decode_bench [numel] [repeat] [codec] [dtype] [threads...]
//     codec: paper (n=1600, rings=3, group 2, 13-bit codes; the paper defaults), kronecker (N=2, U=4096),
//            blockvq[:b[:B]] (b bits per weight, blocks of B; default blockvq:5:32, the codec's defaults) or
//            blocktcq[:b[:B]] (the same, one b-bit θ per weight and the trellis; default blocktcq:5:32)
//     dtype: ONNX code, 1 float32 (default), 10 float16, 16 bfloat16, 11 double
//
// Prints the median over `repeat` runs of decoding into a reused output buffer, ns per code, and the ratio
// to a single-threaded memcpy of the same number of bytes into a reused buffer.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "decoder.h"

using hyperonnx::Decoder;
using hyperonnx::MapAttrs;

namespace {

struct BlockVQSpec {
  int b = 5;
  int64_t block = 32;
};

BlockVQSpec parse_blockvq(const std::string& codec) {
  BlockVQSpec s;
  const size_t c1 = codec.find(':');
  if (c1 == std::string::npos) return s;
  s.b = std::atoi(codec.c_str() + c1 + 1);
  const size_t c2 = codec.find(':', c1 + 1);
  if (c2 != std::string::npos) s.block = std::atoll(codec.c_str() + c2 + 1);
  return s;
}

MapAttrs attrs_for(const std::string& codec, int64_t numel, int64_t dtype) {
  MapAttrs a;
  a.strings = {{"codec", codec.substr(0, codec.find(':'))}, {"mode", "call"}};
  if (codec.rfind("blocktcq", 0) == 0) {
    const BlockVQSpec s = parse_blockvq(codec);
    const int64_t levels = int64_t{1} << s.b;
    std::vector<float> books(static_cast<size_t>(2 * levels));  // level set 0 (2L values); sets 1-3 are computed
    for (size_t i = 0; i < books.size(); ++i) books[i] = -1.0f + 2.0f * static_cast<float>(i) / (2 * levels - 1);
    a.ints = {{"format", {1}}, {"dtype", {dtype}}, {"group", {1}}, {"bits", {s.b}}, {"shape", {numel}},
              {"i_block", {s.block}}, {"i_levels", {levels}}};
    a.floats = {{"f_smax", {0.1f}}, {"f_books", books}};
  } else if (codec.rfind("blockvq", 0) == 0) {
    const BlockVQSpec s = parse_blockvq(codec);
    const int64_t levels = int64_t{1} << s.b;
    std::vector<float> books(static_cast<size_t>(4 * levels));
    for (size_t i = 0; i < books.size(); ++i) books[i] = -1.0f + 2.0f * static_cast<float>(i % levels) / (levels - 1);
    a.ints = {{"format", {1}}, {"dtype", {dtype}}, {"group", {2}}, {"bits", {2 * s.b}}, {"shape", {numel}},
              {"i_block", {s.block}}, {"i_levels", {levels}}};
    a.floats = {{"f_smax", {0.1f}}, {"f_books", books}};
  } else if (codec == "kronecker") {
    a.ints = {{"format", {1}}, {"dtype", {dtype}}, {"group", {2}}, {"bits", {12}}, {"shape", {numel}},
              {"i_levels", {4096}}, {"i_alpha", {-7046029254386353131, 4354685564936845355}}};
    a.floats = {{"f_offset", {0.01f}}, {"f_width", {0.3f}}};
  } else {
    a.ints = {{"format", {1}}, {"dtype", {dtype}}, {"group", {2}}, {"bits", {13}}, {"shape", {numel}},
              {"i_n", {1600}}, {"i_rings", {3}}};
    a.floats = {{"f_center", {0.001f, -0.002f}}, {"f_half", {0.5f}}, {"f_step", {1.0f / 1600, 1.0f / 40}},
                {"f_scale", {0.02f, 0.04f, 0.06f, 0.08f}}};
  }
  return a;
}

std::vector<uint8_t> pack(const std::vector<uint32_t>& codes, int bits) {
  std::vector<uint8_t> out((codes.size() * static_cast<size_t>(bits) + 7) / 8, 0);
  for (size_t i = 0; i < codes.size(); ++i) {
    const uint64_t bit = i * static_cast<uint64_t>(bits);
    for (int b = 0; b < bits; ++b) {
      if ((codes[i] >> b) & 1u) out[(bit + b) / 8] |= static_cast<uint8_t>(1u << ((bit + b) % 8));
    }
  }
  return out;
}

struct Timing {
  double median, min;
};

template <class F>
Timing time_runs(int repeat, F&& fn) {
  fn();  // warm-up: page faults, thread start
  std::vector<double> t;
  for (int r = 0; r < repeat; ++r) {
    const auto start = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t.front()};
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t numel = argc > 1 ? std::atoll(argv[1]) : int64_t{1} << 24;
  const int repeat = argc > 2 ? std::atoi(argv[2]) : 15;
  const std::string codec = argc > 3 ? argv[3] : "paper";
  const int64_t dtype = argc > 4 ? std::atoll(argv[4]) : 1;
  std::vector<int> thread_counts;
  for (int i = 5; i < argc; ++i) thread_counts.push_back(std::atoi(argv[i]));
  if (thread_counts.empty()) thread_counts = {1, 2};

  std::string error;
  auto dec = Decoder::create(attrs_for(codec, numel, dtype), &error);
  if (!dec) {
    std::fprintf(stderr, "create: %s\n", error.c_str());
    return 1;
  }
  const bool blocktcq = codec.rfind("blocktcq", 0) == 0;
  const bool blockvq = codec.rfind("blockvq", 0) == 0 || blocktcq;  // the same framing: codes, then headers
  const BlockVQSpec bvq = parse_blockvq(codec);
  const int bits = blocktcq ? bvq.b : blockvq ? 2 * bvq.b : codec == "kronecker" ? 12 : 13;
  const uint32_t entries = blockvq ? (1u << bits) : codec == "kronecker" ? 4096 : 1601 * 4;
  std::vector<uint32_t> codes(dec->count());
  uint64_t state = 88172645463325252ull;
  auto next = [&] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
  };
  for (auto& c : codes) c = static_cast<uint32_t>(next() % entries);
  auto blob = pack(codes, bits);
  if (blockvq) {  // block headers: scale codes near the top (as for real weights), all four codebooks
    std::vector<uint32_t> headers((numel + bvq.block - 1) / bvq.block);
    for (auto& h : headers) h = static_cast<uint32_t>((next() % 48) | (next() % 4) << 8);
    const auto hb = pack(headers, 10);
    blob.insert(blob.end(), hb.begin(), hb.end());
  }
  std::vector<uint8_t> out(dec->out_bytes()), src(dec->out_bytes(), 1), dst(dec->out_bytes());
  const Timing copy = time_runs(repeat, [&] { std::memcpy(dst.data(), src.data(), src.size()); });
  const double t_copy = copy.median;
  const double ncodes = static_cast<double>(dec->count());
  std::printf("%s dtype %lld, %lld elements, %.1f MiB out; memcpy 1 thread %.3f ms (%.1f GB/s; min %.3f ms)\n", codec.c_str(),
              static_cast<long long>(dtype), static_cast<long long>(numel), out.size() / 1048576.0, t_copy * 1e3,
              out.size() / t_copy / 1e9, copy.min * 1e3);
  for (int threads : thread_counts) {
    bool ok = true;
    const Timing dt = time_runs(repeat, [&] { ok &= dec->decode(blob.data(), blob.size(), out.data(), threads, &error); });
    const double t = dt.median;
    if (!ok) {
      std::fprintf(stderr, "decode: %s\n", error.c_str());
      return 1;
    }
    std::printf("threads %d: decode %.3f ms, %.3f ns/code, %.1f GB/s, vs memcpy %.2fx; min %.3f ms, %.3f ns/code, vs min memcpy %.2fx\n",
                threads, t * 1e3, t / ncodes * 1e9, out.size() / t / 1e9, t_copy / t, dt.min * 1e3,
                dt.min / ncodes * 1e9, copy.min / dt.min);
  }
  return 0;
}
