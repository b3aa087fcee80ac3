// vPDQ as a Signal (signal/signal.hpp): a video entry's record is its vPDQ frame hashes
// (vpdq_record.hpp), pruned of near-identical neighbours; a query is another video's
// frames; the index holds every frame hash of every video entry in one PDQ index
// (pdq/pdq_index.hpp: flat, multi-index hashing past kVpdqMultihashFrames), so candidates
// come from a range search over all frames, not a scan over videos; the decision is vPDQ's
// matching rule (VpdqRule) and the evidence both shares and where the match sits in time,
// in the query and in the entry.
//
// A photo has no vPDQ record and makes no vPDQ query (compute and compute_query give
// nothing): video entries are made by `index` and `import --format vpdq`, and searched by
// check_video (match/video_check.hpp).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "signal/signal.hpp"
#include "video/vpdq_record.hpp"

namespace hashwall {

// Frames in the index from which multi-index hashing replaces the flat scan (the PDQ
// index's own switch point, bank.hpp BankConfig::multihash_min_entries).
inline constexpr std::size_t kVpdqMultihashFrames = 20000;

class VpdqSignal final : public Signal {
 public:
  std::string name() const override { return "vpdq"; }
  std::string summary() const override;
  // {"prune_distance": "6", "version": "1"}: records made another way are refused.
  SignalParams compute_params() const override;
  // {"distance": "31", "min_quality": "50", "query_percent": "80", "entry_percent": "0"},
  // python-threatexchange's VPDQ defaults.
  SignalParams decision_defaults() const override;
  std::string validate(const SignalParams& decision) const override;
  std::optional<SignalRecord> compute(const LoadedImage&) const override { return std::nullopt; }
  SignalQuery compute_query(const LoadedImage&) const override { return {}; }
  // A query none of whose frames reaches min_quality (a black or blurred video) cannot be
  // decided by vPDQ.
  bool may_decide(const SignalQuery& query, const SignalParams& decision) const override;
  bool returns_all_candidates() const override { return true; }
  std::string check_record(std::string_view record) const override;
  std::int64_t record_items(std::string_view record) const override {
    return static_cast<std::int64_t>(vpdq_record_frames(record));
  }
  std::unique_ptr<SignalIndex> make_index() const override;
};

// Registers it under "vpdq" unless a signal of that name already is.
void register_vpdq_signal();

// The rule a decision states (nullopt: a value missing or out of range).
std::optional<VpdqRule> vpdq_rule_of(const SignalParams& decision);

}  // namespace hashwall
