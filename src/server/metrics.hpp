// Counters of the HTTP service, rendered in Prometheus' text exposition format.
// Lock-free: one fixed slot per (endpoint, status) and per latency bucket, so recording
// a request costs a few relaxed atomic increments on the request path.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>

namespace hashwall::server {

enum class Endpoint {
  Match,
  MatchHash,
  EntriesAdd,
  EntriesRemove,
  Health,
  Ready,
  Stats,
  Metrics,
  Audit,
  Changes,
  Verdicts,
  Lists,       // GET /v1/lists
  ListsWrite,  // POST /v1/lists, /v1/lists/NAME, /v1/lists/NAME/disable|enable
  EntryState,  // POST /v1/entries/ID/disable|enable
  Other
};
inline constexpr int kEndpointCount = 15;
const char* endpoint_name(Endpoint) noexcept;  // "/v1/match", ... "other"
// Which endpoint a request is for (unknown paths and methods: Other).
Endpoint classify(std::string_view method, std::string_view path) noexcept;

// Gauges read when /metrics is rendered.
struct MetricsSnapshot {
  std::int64_t queue_depth = 0;  // connections waiting for a worker
  std::int64_t in_flight = 0;    // requests being handled
  std::int64_t bank_entries = 0;
  double uptime_seconds = 0;
};

class Metrics {
 public:
  // Latency bucket upper bounds, seconds (Prometheus histogram "le" labels).
  static constexpr std::array<double, 14> kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  // The status codes the service answers with; anything else is counted as "other".
  static constexpr std::array<int, 11> kCodes = {200, 201, 400, 401, 403, 404,
                                                 405, 413, 415, 500, 503};

  void record(Endpoint e, int status, double seconds) noexcept;
  // One query (image or hash) decided: match / no-match / low-quality.
  void record_verdict(bool match) noexcept;
  void record_rejected_queue_full() noexcept {
    rejected_full_.fetch_add(1, std::memory_order_relaxed);
  }
  void record_rejected_queue_wait() noexcept {
    rejected_wait_.fetch_add(1, std::memory_order_relaxed);
  }
  void record_rejected_stopping() noexcept {
    rejected_stopping_.fetch_add(1, std::memory_order_relaxed);
  }
  void record_rejected_timeout() noexcept {
    rejected_timeout_.fetch_add(1, std::memory_order_relaxed);
  }
  // 503: the uploads already held in memory reach ServerOptions::max_buffered_bytes.
  void record_rejected_memory() noexcept {
    rejected_memory_.fetch_add(1, std::memory_order_relaxed);
  }
  // Connections the server closed itself: a request not complete by its deadline, a
  // chunked body past the body limit.
  void record_closed_deadline() noexcept {
    closed_deadline_.fetch_add(1, std::memory_order_relaxed);
  }
  void record_closed_body_too_large() noexcept {
    closed_body_.fetch_add(1, std::memory_order_relaxed);
  }
  // An entry the flood guard found matching too many queries (match/flood.hpp).
  void record_flood() noexcept { flood_.fetch_add(1, std::memory_order_relaxed); }

  std::uint64_t requests(Endpoint e) const noexcept;
  std::uint64_t matches() const noexcept { return matches_.load(std::memory_order_relaxed); }
  std::uint64_t queries() const noexcept { return queries_.load(std::memory_order_relaxed); }

  std::string prometheus(const MetricsSnapshot& gauges) const;

 private:
  static constexpr int kCodeSlots = static_cast<int>(kCodes.size()) + 1;  // + other
  static int code_slot(int status) noexcept;

  struct PerEndpoint {
    std::array<std::atomic<std::uint64_t>, kCodeSlots> by_code{};
    std::array<std::atomic<std::uint64_t>, kBuckets.size()> buckets{};  // non-cumulative
    std::atomic<std::uint64_t> count{0};
    std::atomic<std::uint64_t> sum_us{0};  // latency sum, microseconds
  };
  std::array<PerEndpoint, kEndpointCount> ep_{};
  std::atomic<std::uint64_t> matches_{0}, queries_{0};
  std::atomic<std::uint64_t> rejected_full_{0}, rejected_wait_{0}, rejected_stopping_{0},
      rejected_timeout_{0}, rejected_memory_{0};
  std::atomic<std::uint64_t> closed_deadline_{0}, closed_body_{0};
  std::atomic<std::uint64_t> flood_{0};
};

}  // namespace hashwall::server
