// Fused-kernel throughput for profiling (not a test; benchmarks/fused.py is the measurement of record):
//   build/custom_ops/tests/hyperonnx_fused_bench [K N M bits]
// Times decoding a K×N blocktcq weight (random θ and headers) a row at a time, HyperMatMul (fused_matmul) at batch M,
// and the transposed product with the same weight read as [N, K] rows (fused_matmul_nt: HyperMatMul / HyperGemm
// transB, a tied LM head), single-threaded; prints ns of this thread's CPU time per weight (the development machine
// is shared, so wall time would count other processes' turns).
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "fused/gemm.h"
#include "fused/matmul.h"
#include "fused/matmul_nt.h"
#include "fused/weight.h"

using namespace hyperonnx;

int main(int argc, char** argv) {
  const int64_t K = argc > 1 ? std::atoll(argv[1]) : 4096, N = argc > 2 ? std::atoll(argv[2]) : 4096;
  const int64_t M = argc > 3 ? std::atoll(argv[3]) : 1;
  const int bits = argc > 4 ? std::atoi(argv[4]) : 5;
  const int64_t block = 32, L = int64_t{1} << bits;
  MapAttrs attrs;
  attrs.strings["codec"] = "blocktcq";
  attrs.ints = {{"format", {1}}, {"shape", {K, N}}, {"dtype", {1}}, {"group", {1}}, {"bits", {bits}},
                {"i_block", {block}}, {"i_levels", {L}}};
  std::vector<float> books(2 * L);
  for (int64_t i = 0; i < 2 * L; ++i) books[i] = -1.0f + 2.0f * static_cast<float>(i) / static_cast<float>(2 * L - 1);
  attrs.floats = {{"f_smax", {0.1f}}, {"f_books", books}};
  std::string error;
  auto w = FusedWeight::create(attrs, &error);
  if (!w) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  const uint64_t numel = static_cast<uint64_t>(K * N), nblocks = (numel + block - 1) / block;
  std::vector<uint8_t> blob((numel * bits + 7) / 8 + (nblocks * 10 + 7) / 8);
  std::mt19937 rng(1);
  for (auto& b : blob) b = static_cast<uint8_t>(rng());
  if (!w->check(blob.data(), blob.size(), &error)) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  auto now = [] {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
  };
  std::vector<float> row(static_cast<size_t>(N)), scratch;
  int rep_salt = 0;
  double best_decode = 1e30, best_mm = 1e30, best_nt = 1e30;
  std::vector<float> a(static_cast<size_t>(M * K), 0.5f), y(static_cast<size_t>(M * N));
  std::vector<float> a_nt(static_cast<size_t>(M * N), 0.5f), y_nt(static_cast<size_t>(M * K));
  // Between timings, 64 MiB are written so the codes come from DRAM, as in a model whose other weights pass through
  // the caches between two runs of this one (benchmarks/fused.py interleaves an fp32 session of 64 MiB).
  std::vector<char> evict(size_t{64} << 20);
  auto flush = [&] {
    for (size_t i = 0; i < evict.size(); i += 64) evict[i] = static_cast<char>(i + rep_salt++);
  };
  for (int rep = 0; rep < 5; ++rep) {
    flush();
    double t0 = now();
    for (int64_t k = 0; k < K; ++k) {  // whole rows, as the op's row slices (M <= 8) decode them
      const uint64_t e0 = static_cast<uint64_t>(k * N);
      w->decode(blob.data(), blob.size(), e0, e0 + N, row.data(), &scratch, &error);
    }
    best_decode = std::min(best_decode, now() - t0);
    flush();
    t0 = now();
    fused_matmul(*w, blob.data(), blob.size(), a.data(), M, y.data(), &error);
    best_mm = std::min(best_mm, now() - t0);
    flush();
    t0 = now();
    fused_matmul_nt(*w, blob.data(), blob.size(), a_nt.data(), M, y_nt.data(), &error);
    best_nt = std::min(best_nt, now() - t0);
  }
  std::printf("K=%lld N=%lld M=%lld bits=%d isa=%s: decode %.3f ns/weight, HyperMatMul %.3f ns/weight (%.2f ms), "
              "transposed %.3f ns/weight (%.2f ms)\n",
              static_cast<long long>(K), static_cast<long long>(N), static_cast<long long>(M), bits,
              isa_name(w->isa()), best_decode / numel * 1e9, best_mm / numel * 1e9, best_mm * 1e3,
              best_nt / numel * 1e9, best_nt * 1e3);
  return 0;
}
