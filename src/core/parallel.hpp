// Work spread over threads with results taken in input order: `index`, `scan`, `hash`
// and the benchmarks share it.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>

namespace hashwall {

// Runs work(i) for i in [0, n) on `jobs` threads and calls emit(i) on the calling thread
// in index order as results become ready. Stops scheduling new items once *stop (when
// given) is set; returns the number of items emitted. The first exception thrown by work
// or emit stops the scheduling and is rethrown on the calling thread once every worker
// has finished (a joinable thread must never be destroyed).
std::size_t ordered_parallel(std::size_t n, int jobs, const std::function<void(std::size_t)>& work,
                             const std::function<void(std::size_t)>& emit,
                             const std::atomic<bool>* stop = nullptr);

// std::thread::hardware_concurrency(), or 2 where it is unknown.
int default_jobs();

}  // namespace hashwall
