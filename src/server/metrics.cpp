#include "server/metrics.hpp"

#include <cstdio>

namespace hashwall::server {

const char* endpoint_name(Endpoint e) noexcept {
  switch (e) {
    case Endpoint::Match:
      return "/v1/match";
    case Endpoint::MatchHash:
      return "/v1/match/hash";
    case Endpoint::EntriesAdd:
      return "POST /v1/entries";
    case Endpoint::EntriesRemove:
      return "DELETE /v1/entries";
    case Endpoint::Health:
      return "/v1/health";
    case Endpoint::Ready:
      return "/v1/ready";
    case Endpoint::Stats:
      return "/v1/stats";
    case Endpoint::Metrics:
      return "/metrics";
    case Endpoint::Audit:
      return "/v1/audit";
    case Endpoint::Changes:
      return "/v1/changes";
    case Endpoint::Verdicts:
      return "POST /v1/verdicts";
    case Endpoint::Lists:
      return "/v1/lists";
    case Endpoint::ListsWrite:
      return "POST /v1/lists";
    case Endpoint::EntryState:
      return "POST /v1/entries/state";
    case Endpoint::Other:
      break;
  }
  return "other";
}

Endpoint classify(std::string_view method, std::string_view path) noexcept {
  if (method == "POST") {
    if (path == "/v1/match") return Endpoint::Match;
    if (path == "/v1/match/hash") return Endpoint::MatchHash;
    if (path == "/v1/entries") return Endpoint::EntriesAdd;
    if (path == "/v1/verdicts") return Endpoint::Verdicts;
    if (path == "/v1/lists" || path.starts_with("/v1/lists/")) return Endpoint::ListsWrite;
    if (path.starts_with("/v1/entries/") &&
        (path.ends_with("/disable") || path.ends_with("/enable")))
      return Endpoint::EntryState;
  } else if (method == "DELETE") {
    if (path.starts_with("/v1/entries/")) return Endpoint::EntriesRemove;
  } else if (method == "GET" || method == "HEAD") {
    if (path == "/v1/health") return Endpoint::Health;
    if (path == "/v1/ready") return Endpoint::Ready;
    if (path == "/v1/stats") return Endpoint::Stats;
    if (path == "/metrics") return Endpoint::Metrics;
    if (path == "/v1/audit") return Endpoint::Audit;
    if (path == "/v1/changes") return Endpoint::Changes;
    if (path == "/v1/lists") return Endpoint::Lists;
  }
  return Endpoint::Other;
}

int Metrics::code_slot(int status) noexcept {
  for (std::size_t i = 0; i < kCodes.size(); ++i)
    if (kCodes[i] == status) return static_cast<int>(i);
  return static_cast<int>(kCodes.size());
}

void Metrics::record(Endpoint e, int status, double seconds) noexcept {
  auto& p = ep_[static_cast<std::size_t>(e)];
  p.by_code[static_cast<std::size_t>(code_slot(status))].fetch_add(1, std::memory_order_relaxed);
  p.count.fetch_add(1, std::memory_order_relaxed);
  if (seconds < 0) seconds = 0;
  p.sum_us.fetch_add(static_cast<std::uint64_t>(seconds * 1e6), std::memory_order_relaxed);
  for (std::size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) {
      p.buckets[i].fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  // Slower than the last bucket: only in +Inf (count).
}

void Metrics::record_verdict(bool match) noexcept {
  queries_.fetch_add(1, std::memory_order_relaxed);
  if (match) matches_.fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t Metrics::requests(Endpoint e) const noexcept {
  return ep_[static_cast<std::size_t>(e)].count.load(std::memory_order_relaxed);
}

namespace {
std::string fmt_double(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  return buf;
}
}  // namespace

std::string Metrics::prometheus(const MetricsSnapshot& g) const {
  std::string out;
  out.reserve(8192);
  out += "# HELP hashwall_requests_total HTTP requests answered, by endpoint and status code.\n";
  out += "# TYPE hashwall_requests_total counter\n";
  for (int e = 0; e < kEndpointCount; ++e) {
    const auto& p = ep_[static_cast<std::size_t>(e)];
    for (int c = 0; c < kCodeSlots; ++c) {
      const auto n = p.by_code[static_cast<std::size_t>(c)].load(std::memory_order_relaxed);
      if (n == 0) continue;
      const std::string code = c < static_cast<int>(kCodes.size())
                                   ? std::to_string(kCodes[static_cast<std::size_t>(c)])
                                   : "other";
      out += "hashwall_requests_total{endpoint=\"" +
             std::string(endpoint_name(static_cast<Endpoint>(e))) + "\",code=\"" + code + "\"} " +
             std::to_string(n) + "\n";
    }
  }
  out +=
      "# HELP hashwall_errors_total Requests answered with a status of 400 or above, by "
      "endpoint.\n";
  out += "# TYPE hashwall_errors_total counter\n";
  for (int e = 0; e < kEndpointCount; ++e) {
    const auto& p = ep_[static_cast<std::size_t>(e)];
    std::uint64_t errors = 0;
    for (int c = 0; c < kCodeSlots; ++c)
      if (c == static_cast<int>(kCodes.size()) || kCodes[static_cast<std::size_t>(c)] >= 400)
        errors += p.by_code[static_cast<std::size_t>(c)].load(std::memory_order_relaxed);
    out += "hashwall_errors_total{endpoint=\"" +
           std::string(endpoint_name(static_cast<Endpoint>(e))) + "\"} " + std::to_string(errors) +
           "\n";
  }
  out +=
      "# HELP hashwall_request_duration_seconds Time from reading the request headers to the "
      "response.\n";
  out += "# TYPE hashwall_request_duration_seconds histogram\n";
  for (int e = 0; e < kEndpointCount; ++e) {
    const auto& p = ep_[static_cast<std::size_t>(e)];
    const std::string lbl =
        "endpoint=\"" + std::string(endpoint_name(static_cast<Endpoint>(e))) + "\"";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < kBuckets.size(); ++i) {
      cumulative += p.buckets[i].load(std::memory_order_relaxed);
      out += "hashwall_request_duration_seconds_bucket{" + lbl + ",le=\"" +
             fmt_double(kBuckets[i]) + "\"} " + std::to_string(cumulative) + "\n";
    }
    const auto count = p.count.load(std::memory_order_relaxed);
    out += "hashwall_request_duration_seconds_bucket{" + lbl + ",le=\"+Inf\"} " +
           std::to_string(count) + "\n";
    out += "hashwall_request_duration_seconds_sum{" + lbl + "} " +
           fmt_double(static_cast<double>(p.sum_us.load(std::memory_order_relaxed)) / 1e6) + "\n";
    out += "hashwall_request_duration_seconds_count{" + lbl + "} " + std::to_string(count) + "\n";
  }
  out += "# HELP hashwall_queries_total Images and hashes checked against the bank.\n";
  out += "# TYPE hashwall_queries_total counter\n";
  out += "hashwall_queries_total " + std::to_string(queries()) + "\n";
  out += "# HELP hashwall_matches_total Images and hashes that matched the bank.\n";
  out += "# TYPE hashwall_matches_total counter\n";
  out += "hashwall_matches_total " + std::to_string(matches()) + "\n";
  out +=
      "# HELP hashwall_rejected_total Requests refused with 503: queue full, queue wait, shutting "
      "down, processing timeout, uploads in memory at their limit.\n";
  out += "# TYPE hashwall_rejected_total counter\n";
  out += "hashwall_rejected_total{reason=\"queue_full\"} " +
         std::to_string(rejected_full_.load(std::memory_order_relaxed)) + "\n";
  out += "hashwall_rejected_total{reason=\"queue_wait\"} " +
         std::to_string(rejected_wait_.load(std::memory_order_relaxed)) + "\n";
  out += "hashwall_rejected_total{reason=\"stopping\"} " +
         std::to_string(rejected_stopping_.load(std::memory_order_relaxed)) + "\n";
  out += "hashwall_rejected_total{reason=\"timeout\"} " +
         std::to_string(rejected_timeout_.load(std::memory_order_relaxed)) + "\n";
  out += "hashwall_rejected_total{reason=\"memory\"} " +
         std::to_string(rejected_memory_.load(std::memory_order_relaxed)) + "\n";
  out +=
      "# HELP hashwall_connections_closed_total Connections the server closed: a request not "
      "complete by its deadline, a chunked body past the body limit.\n";
  out += "# TYPE hashwall_connections_closed_total counter\n";
  out += "hashwall_connections_closed_total{reason=\"deadline\"} " +
         std::to_string(closed_deadline_.load(std::memory_order_relaxed)) + "\n";
  out += "hashwall_connections_closed_total{reason=\"body_too_large\"} " +
         std::to_string(closed_body_.load(std::memory_order_relaxed)) + "\n";
  out +=
      "# HELP hashwall_flood_quarantined_total Entries the flood guard found matching too large "
      "a share of queries (disabled with reason flood when the bank is writable).\n";
  out += "# TYPE hashwall_flood_quarantined_total counter\n";
  out += "hashwall_flood_quarantined_total " +
         std::to_string(flood_.load(std::memory_order_relaxed)) + "\n";
  out += "# HELP hashwall_queue_depth Requests received and waiting for a worker thread.\n";
  out += "# TYPE hashwall_queue_depth gauge\n";
  out += "hashwall_queue_depth " + std::to_string(g.queue_depth) + "\n";
  out += "# HELP hashwall_in_flight_requests Requests being handled now.\n";
  out += "# TYPE hashwall_in_flight_requests gauge\n";
  out += "hashwall_in_flight_requests " + std::to_string(g.in_flight) + "\n";
  out += "# HELP hashwall_bank_entries Entries in the bank.\n";
  out += "# TYPE hashwall_bank_entries gauge\n";
  out += "hashwall_bank_entries " + std::to_string(g.bank_entries) + "\n";
  out += "# HELP hashwall_uptime_seconds Seconds since the service started.\n";
  out += "# TYPE hashwall_uptime_seconds gauge\n";
  out += "hashwall_uptime_seconds " + fmt_double(g.uptime_seconds) + "\n";
  return out;
}

}  // namespace hashwall::server
