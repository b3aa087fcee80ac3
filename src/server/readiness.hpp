// A replica's readiness (GET /v1/ready), for a load balancer's health check: ready once
// the bank's indexes are loaded and while the replica has caught up with the bank's store
// within `max_lag`. A follower (`hashwall serve`) reports each catch-up; a store that
// cannot be reached (PostgreSQL restarting, the network) stops the reports, and the
// replica leaves the balancer after max_lag, to come back at the first catch-up after.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>

namespace hashwall::server {

class Readiness {
 public:
  using Clock = std::chrono::steady_clock;
  explicit Readiness(std::chrono::milliseconds max_lag) : max_lag_(max_lag) {}

  // The replica's indexes hold the bank as of `generation`, as read just now.
  void caught_up(std::uint64_t generation) {
    std::lock_guard lock(mu_);
    last_ok_ = Clock::now();
    generation_ = generation;
    reason_.clear();
  }
  // A catch-up failed: why (one line, without secrets: a bank's name never has a password).
  void failed(std::string why) {
    std::lock_guard lock(mu_);
    reason_ = std::move(why);
  }

  struct State {
    bool ready = false;
    std::string status;  // "ready", "loading" (never caught up yet) or "behind"
    double lag_seconds = 0;
    std::uint64_t generation = 0;
    std::string reason;  // the last failure, when not ready
  };
  State state() const {
    std::lock_guard lock(mu_);
    State s;
    s.generation = generation_;
    if (!last_ok_) {
      s.status = "loading";
      s.reason = reason_;
      return s;
    }
    const auto lag = Clock::now() - *last_ok_;
    s.lag_seconds = std::chrono::duration<double>(lag).count();
    s.ready = lag <= max_lag_;
    s.status = s.ready ? "ready" : "behind";
    if (!s.ready) s.reason = reason_;
    return s;
  }
  std::chrono::milliseconds max_lag() const { return max_lag_; }

 private:
  mutable std::mutex mu_;
  std::chrono::milliseconds max_lag_;
  std::optional<Clock::time_point> last_ok_;
  std::uint64_t generation_ = 0;
  std::string reason_;
};

}  // namespace hashwall::server
