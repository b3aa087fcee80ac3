#include "core/parallel.hpp"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace hashwall {

std::size_t ordered_parallel(std::size_t n, int jobs, const std::function<void(std::size_t)>& work,
                             const std::function<void(std::size_t)>& emit,
                             const std::atomic<bool>* stop) {
  jobs = std::max(1, std::min<int>(jobs, static_cast<int>(std::max<std::size_t>(n, 1))));
  enum : char { kPending = 0, kDone = 1, kSkipped = 2 };
  std::mutex mu;
  std::condition_variable cv;
  std::vector<char> ready(n, kPending);
  std::atomic<std::size_t> next{0};
  std::exception_ptr work_error;  // guarded by mu
  const auto stopped = [&] { return stop && stop->load(); };
  auto worker = [&] {
    while (true) {
      const std::size_t i = next.fetch_add(1);
      if (i >= n) return;
      char state = kDone;
      if (stopped()) {
        state = kSkipped;
      } else {
        try {
          work(i);
        } catch (...) {
          std::lock_guard lock(mu);
          if (!work_error) work_error = std::current_exception();
          next = n;
          state = kSkipped;
        }
      }
      std::lock_guard lock(mu);
      ready[i] = state;
      cv.notify_all();
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < jobs; ++t) threads.emplace_back(worker);
  std::size_t emitted = 0;
  try {
    for (std::size_t i = 0; i < n; ++i) {
      std::unique_lock lock(mu);
      // An item past a failed one may never be taken: wake on the error too.
      cv.wait(lock, [&] { return ready[i] != kPending || work_error; });
      if (ready[i] != kDone) break;
      lock.unlock();
      emit(i);
      ++emitted;
    }
  } catch (...) {
    // emit failed (e.g. a commit on a full disk): let the workers run out of items
    // before the error leaves.
    next = n;
    for (auto& t : threads) t.join();
    throw;
  }
  next = n;
  for (auto& t : threads) t.join();
  if (work_error) std::rethrow_exception(work_error);
  return emitted;
}

int default_jobs() {
  const unsigned hc = std::thread::hardware_concurrency();
  return hc ? static_cast<int>(hc) : 2;
}

}  // namespace hashwall
