#include "parallel.h"

#include <atomic>
#include <cstdlib>
#include <thread>
#include <vector>

namespace hyperonnx {
namespace {

// Ranges per thread: enough for a fast thread to make up for a slowed one, few enough that each range stays
// large (>= 1/16 of the work on 4 threads) and the shared counter is touched rarely.
constexpr uint64_t kRangesPerThread = 4;

}  // namespace

int default_decode_threads() {
  if (const char* env = std::getenv("HYPERONNX_DECODE_THREADS")) {
    const long v = std::strtol(env, nullptr, 10);
    if (v > 0) return static_cast<int>(v > 256 ? 256 : v);
  }
  const unsigned hw = std::thread::hardware_concurrency();
  if (hw == 0) return 1;
  return hw > static_cast<unsigned>(kMaxDefaultThreads) ? kMaxDefaultThreads : static_cast<int>(hw);
}

void parallel_ranges(uint64_t n, uint64_t align, int threads, const std::function<void(uint64_t, uint64_t)>& fn) {
  const uint64_t units = (n + align - 1) / align;
  uint64_t workers = threads < 1 ? 1 : static_cast<uint64_t>(threads);
  if (workers > units) workers = units;
  if (workers <= 1) {
    fn(0, n);
    return;
  }
  const uint64_t ranges = units < workers * kRangesPerThread ? units : workers * kRangesPerThread;
  std::atomic<uint64_t> next{0};
  auto work = [&] {
    for (uint64_t r = next.fetch_add(1, std::memory_order_relaxed); r < ranges;
         r = next.fetch_add(1, std::memory_order_relaxed)) {
      const uint64_t begin = units * r / ranges * align;
      const uint64_t end_units = units * (r + 1) / ranges;
      fn(begin, end_units * align < n ? end_units * align : n);
    }
  };
  std::vector<std::thread> pool;
  pool.reserve(workers - 1);
  for (uint64_t w = 0; w + 1 < workers; ++w) {
    try {
      pool.emplace_back(work);
    } catch (...) {  // no thread available (resource limits): the threads we have take the ranges
      break;
    }
  }
  work();  // the caller's thread is one of the workers
  for (auto& t : pool) t.join();
}

}  // namespace hyperonnx
