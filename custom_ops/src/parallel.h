// A minimal fork-join split over std::thread: decoding is memory bound, so a second core roughly doubles
// throughput on large tensors, while small tensors stay on the calling thread (thread start costs ~20 us).
#pragma once

#include <cstdint>
#include <functional>

namespace hyperonnx {

// Default decode thread count: std::thread::hardware_concurrency() capped at kMaxDefaultThreads, or
// HYPERONNX_DECODE_THREADS from the environment when set to a positive integer.
constexpr int kMaxDefaultThreads = 8;
int default_decode_threads();

// Calls fn(begin, end) on disjoint, consecutive sub-ranges of [0, n) that together cover it, whose boundaries are
// multiples of `align`, using up to `threads` threads (the caller's thread is one of them). The ranges are handed
// out a few per thread on demand, so a thread slowed by another process on its core takes fewer of them.
// Returns when all have finished.
void parallel_ranges(uint64_t n, uint64_t align, int threads, const std::function<void(uint64_t, uint64_t)>& fn);

}  // namespace hyperonnx
