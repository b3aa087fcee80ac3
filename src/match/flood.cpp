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
    for (const auto& [entry, n] : s.matches) {
      const auto it = totals_.find(entry);
      if (it == totals_.end()) continue;  // reported, and forgotten
      if ((it->second -= n) <= 0) totals_.erase(it);
    }
    slots_.pop_front();
  }
}

std::vector<FloodGuard::Trip> FloodGuard::observe(std::int64_t now,
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
    ++slot.matches[entry];
    const std::int64_t n = ++totals_[entry];
    if (queries_ >= options_.min_queries && n >= options_.min_matches &&
        static_cast<double>(n) > options_.share * static_cast<double>(queries_)) {
      out.push_back({entry, n, queries_});
      totals_.erase(entry);
      for (auto& s : slots_) s.matches.erase(entry);
    }
  }
  return out;
}

}  // namespace hashwall
