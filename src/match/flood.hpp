// The flood guard (issue #17): an entry that matches too large a share of the queries a
// server sees is quarantined, i.e. disabled with reason "flood" (Bank::set_disabled), so
// that it stops blocking uploads until a person has looked at it. A known harmful photo
// resurfacing is a rare event among a platform's uploads; one entry behind a large share of
// all of them is a hash that collides with common pictures, or a poisoned list.
//
// An entry's matches are counted by distinct query (its PDQ hash): the same photo sent
// again and again (a raid re-uploading one file, a request repeating one hash) counts
// once, so that repetition cannot switch an entry off. Near-variants of a photo still count
// apart: docs/EXCHANGE.md says what that leaves open and how to run with it.
//
// Counting only: this class decides when, the service does the disabling (and says so in
// the audit log, /metrics and stats). Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

namespace hashwall {

struct FloodOptions {
  // An entry is quarantined when, within the last `window_seconds`, it matched more than
  // `share` of all queries, with at least `min_matches` distinct queries, out of at least
  // `min_queries`. Defaults (docs/EXCHANGE.md, "Flood guard"): the whole bank matches a
  // small fraction of a percent of a platform's uploads, so one entry behind 5 % of them
  // for ten minutes is hundreds of times what the bank normally finds; 2,000 queries and
  // 50 distinct matching photos keep a quiet server, or a few crafted requests, from
  // deciding anything. share 0 turns the guard off.
  double share = 0.05;
  std::int64_t window_seconds = 600;
  std::int64_t min_queries = 2000;
  std::int64_t min_matches = 50;
};

class FloodGuard {
 public:
  explicit FloodGuard(FloodOptions options);
  const FloodOptions& options() const { return options_; }
  bool enabled() const { return options_.share > 0; }

  struct Trip {
    std::int64_t entry = 0;
    std::int64_t matches = 0;  // distinct queries it matched in the window
    std::int64_t queries = 0;  // all queries in the window
  };
  // One query decided at `now_seconds` (`query`: its content, e.g. 64 bits of its PDQ
  // hash), with the block entries it matched (each once). Returns the entries that crossed
  // the line with it; each is reported once, its count then starts again (from zero,
  // should it be enabled again and keep flooding).
  std::vector<Trip> observe(std::int64_t now_seconds, std::uint64_t query,
                            std::span<const std::int64_t> matched);

 private:
  // The window in slots of window/kSlots seconds: each slot counts its queries and, per
  // entry, the queries that matched it; per entry the window's distinct queries are kept
  // with how often each came, so a query costs O(entries matched).
  static constexpr std::int64_t kSlots = 60;
  struct Slot {
    std::int64_t index = 0;  // time / slot length
    std::int64_t queries = 0;
    struct Match {
      std::int64_t entry;
      std::uint64_t query;
      std::uint32_t round;  // the entry's round (a trip starts a new one)
    };
    std::vector<Match> matches;
  };
  void expire(std::int64_t slot_index);

  FloodOptions options_;
  std::int64_t slot_seconds_;
  std::mutex mu_;
  std::deque<Slot> slots_;  // oldest first
  std::int64_t queries_ = 0;
  // entry -> (query -> times seen in the window)
  std::unordered_map<std::int64_t, std::unordered_map<std::uint64_t, std::int64_t>> seen_;
  std::unordered_map<std::int64_t, std::uint32_t> round_;  // entries that tripped, by times
};

}  // namespace hashwall
