#include "parallel.h"

#include <cstdlib>
#include <thread>
#include <vector>

namespace hyperonnx {

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
  uint64_t parts = threads < 1 ? 1 : static_cast<uint64_t>(threads);
  if (parts > units) parts = units;
  if (parts <= 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(parts - 1);
  uint64_t begin = 0;
  for (uint64_t p = 0; p < parts; ++p) {
    const uint64_t end_units = units * (p + 1) / parts;
    const uint64_t end = end_units * align < n ? end_units * align : n;
    if (p + 1 == parts) {
      fn(begin, end);  // the last part runs here, so `threads` counts the caller
    } else {
      try {
        pool.emplace_back(fn, begin, end);
      } catch (...) {  // no thread available (resource limits): do this part here instead
        fn(begin, end);
      }
    }
    begin = end;
  }
  for (auto& t : pool) t.join();
}

}  // namespace hyperonnx
