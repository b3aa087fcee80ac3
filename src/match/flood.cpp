#include "match/flood.hpp"

#include <algorithm>

namespace hashwall {

FloodGuard::FloodGuard(FloodOptions options)
    : options_(options),
      slot_seconds_(std::max<std::int64_t>(1, options.window_seconds / kSlots)) {}

void FloodGuard::expire(std::int64_t slot_index) {
  const std::int64_t oldest =
      slot_index - (options_.window_seconds + slot_seconds_ - 1) / slot_seconds_ + 1;
  while (!slots_.empty() && slots_.front().index < oldest) {
    const Slot& s = slots_.front();
    queries_ -= s.queries;
    for (const auto& [entry, query, round] : s.matches) {
      const auto r = round_.find(entry);
      if (r != round_.end() && r->second != round) continue;  // counted before a trip
      const auto e = seen_.find(entry);
      if (e == seen_.end()) continue;
      const auto q = e->second.find(query);
      if (q != e->second.end() && --q->second <= 0) e->second.erase(q);
      if (e->second.empty()) seen_.erase(e);
    }
    slots_.pop_front();
  }
}

std::vector<FloodGuard::Trip> FloodGuard::observe(std::int64_t now, std::uint64_t query,
                                                  std::span<const std::int64_t> matched) {
  std::vector<Trip> out;
  if (!enabled()) return out;
  const std::int64_t index = now / slot_seconds_;
  std::lock_guard lock(mu_);
  expire(index);
  if (slots_.empty() || slots_.back().index < index) slots_.push_back(Slot{index, 0, {}});
  Slot& slot = slots_.back();  // a clock that went back counts in the newest slot
  ++slot.queries;
  ++queries_;
  for (const std::int64_t entry : matched) {
    const auto r = round_.find(entry);
    slot.matches.push_back({entry, query, r == round_.end() ? 0u : r->second});
    auto& queries = seen_[entry];
    ++queries[query];
    const auto n = static_cast<std::int64_t>(queries.size());
    if (queries_ >= options_.min_queries && n >= options_.min_matches &&
        static_cast<double>(n) > options_.share * static_cast<double>(queries_)) {
      out.push_back({entry, n, queries_});
      seen_.erase(entry);
      ++round_[entry];  // its records in the slots are skipped when they expire
    }
  }
  return out;
}

}  // namespace hashwall
