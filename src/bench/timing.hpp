// What `bench speed`'s parts (speed.cpp: hashing and PDQ search; speed_signals.cpp: local
// features and the embedding) share to time things the same way.
#pragma once

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <opencv2/core/utility.hpp>
#include <vector>

#include "core/error.hpp"

namespace hashwall::bench {

using Clock = std::chrono::steady_clock;

inline double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

// The p-quantile (0 < p <= 1) by the nearest-rank method; 0 for no samples.
inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto k = static_cast<std::size_t>(std::ceil(p * static_cast<double>(v.size())));
  return v[std::min(v.size() - 1, k == 0 ? 0 : k - 1)];
}

// Throws Error{Interrupted} once *stop is set (Ctrl-C): a benchmark ends between timings.
inline void check_stop(const std::atomic<bool>* stop) {
  if (stop && stop->load()) throw Error(ErrorKind::Interrupted, "", "benchmark interrupted");
}

// One thread for OpenCV and FAISS while timing, restored after.
struct OneThread {
  int cv_saved, omp_saved;
  OneThread() : cv_saved(cv::getNumThreads()), omp_saved(omp_get_max_threads()) {
    cv::setNumThreads(1);
    omp_set_num_threads(1);
  }
  ~OneThread() {
    cv::setNumThreads(cv_saved);
    omp_set_num_threads(omp_saved);
  }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;
};

}  // namespace hashwall::bench
