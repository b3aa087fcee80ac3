// The vpdq signal and its index (vpdq_signal.hpp).
#include "video/vpdq_signal.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <unordered_map>

#include "core/error.hpp"
#include "pdq/pdq_index.hpp"

namespace hashwall {

namespace {

// A frame's id in the frame index: its entry's id, then its place in the record.
constexpr int kFrameBits = 17;  // 131,072 > kMaxVpdqRecordFrames
static_assert((std::size_t{1} << kFrameBits) > kMaxVpdqRecordFrames);
constexpr std::int64_t kMaxEntryId = std::int64_t{1} << (62 - kFrameBits);
// Gaps in an entry's matching frames up to this are joined in its reported times.
constexpr double kMaxJoinGap = 5.0;

std::optional<double> percent_of(const SignalParams& d, const char* key) {
  const auto it = d.find(key);
  if (it == d.end()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0' || !(v >= 0 && v <= 100)) return std::nullopt;
  return v;
}

std::optional<int> int_of(const SignalParams& d, const char* key, int lo, int hi) {
  const auto it = d.find(key);
  if (it == d.end()) return std::nullopt;
  char* end = nullptr;
  const long v = std::strtol(it->second.c_str(), &end, 10);
  if (end == it->second.c_str() || *end != '\0' || v < lo || v > hi) return std::nullopt;
  return static_cast<int>(v);
}

double round1(double v) { return std::round(v * 10) / 10; }
double round3(double v) { return std::round(v * 1000) / 1000; }

nlohmann::ordered_json spans_json(const std::vector<std::pair<double, double>>& spans) {
  auto j = nlohmann::ordered_json::array();
  for (const auto& [a, b] : spans) j.push_back({round3(a), round3(b)});
  return j;
}

class VpdqIndex final : public SignalIndex {
 public:
  std::string type() const override { return index_ ? "frames-" + index_->type() : "frames-flat"; }

  void add(std::int64_t id, std::string_view record) override {
    std::string why;
    auto v = decode_vpdq_record(record, &why);
    if (!v) throw std::runtime_error(why);
    if (id <= 0 || id >= kMaxEntryId) throw std::runtime_error("entry id out of range");
    remove(std::span(&id, 1));
    for (std::size_t i = 0; i < v->frames.size(); ++i) {
      pending_ids_.push_back((id << kFrameBits) | static_cast<std::int64_t>(i));
      pending_hashes_.push_back(v->frames[i].hash);
    }
    frames_ += v->frames.size();
    // Its distinct hashes with their best quality, for the entry's share at any
    // min_quality without building a set per search.
    std::map<Hash256, int> best;
    for (const auto& f : v->frames) {
      auto [it, fresh] = best.emplace(f.hash, f.quality);
      if (!fresh) it->second = std::max(it->second, f.quality);
    }
    std::vector<int>& qualities = distinct_quality_[id];
    qualities.clear();
    for (const auto& [h, q] : best) qualities.push_back(q);
    videos_[id] = std::move(*v);
  }

  void prepare() override {
    const std::string want = frames_ >= kVpdqMultihashFrames ? "multihash" : "flat";
    if (!index_ || index_->type() != want) {
      // Built afresh of every frame held (a type change, or the first build): one add.
      index_ = make_pdq_index(want);
      std::vector<std::int64_t> ids;
      std::vector<Hash256> hashes;
      ids.reserve(frames_);
      hashes.reserve(frames_);
      for (const auto& [id, v] : videos_)
        for (std::size_t i = 0; i < v.frames.size(); ++i) {
          ids.push_back((id << kFrameBits) | static_cast<std::int64_t>(i));
          hashes.push_back(v.frames[i].hash);
        }
      index_->add(ids, hashes);
    } else if (!pending_ids_.empty()) {
      index_->add(pending_ids_, pending_hashes_);
    }
    pending_ids_.clear();
    pending_hashes_.clear();
  }

  void remove(std::span<const std::int64_t> ids) override {
    std::vector<std::int64_t> gone;
    for (const auto id : ids) {
      const auto it = videos_.find(id);
      if (it == videos_.end()) continue;
      for (std::size_t i = 0; i < it->second.frames.size(); ++i)
        gone.push_back((id << kFrameBits) | static_cast<std::int64_t>(i));
      frames_ -= it->second.frames.size();
      videos_.erase(it);
      distinct_quality_.erase(id);
    }
    if (gone.empty()) return;
    if (index_) index_->remove(gone);
    if (!pending_ids_.empty()) {
      const std::set<std::int64_t> g(gone.begin(), gone.end());
      std::size_t w = 0;
      for (std::size_t r = 0; r < pending_ids_.size(); ++r)
        if (!g.count(pending_ids_[r])) {
          pending_ids_[w] = pending_ids_[r];
          pending_hashes_[w++] = pending_hashes_[r];
        }
      pending_ids_.resize(w);
      pending_hashes_.resize(w);
    }
  }

  std::vector<SignalMatch> search(const SignalQuery& query, const SignalParams& decision,
                                  double min_margin, std::size_t k) const override {
    if (query.forms.empty() || !index_) return {};
    std::string why;
    const auto q = decode_vpdq_record(query.forms.front(), &why);
    if (!q) throw Error(ErrorKind::Usage, "", "vpdq query: " + why);
    const auto rule = vpdq_rule_of(decision);
    if (!rule) throw Error(ErrorKind::Usage, "", "vpdq: a decision out of range");
    // The query's unique frames taking part, and which of them each frame is.
    std::vector<Hash256> unique;
    std::map<Hash256, std::size_t> slot;
    std::vector<std::ptrdiff_t> frame_slot(q->frames.size(), -1);
    for (std::size_t i = 0; i < q->frames.size(); ++i) {
      const VpdqFrame& f = q->frames[i];
      if (f.quality < rule->min_quality) continue;
      const auto [it, fresh] = slot.emplace(f.hash, unique.size());
      if (fresh) unique.push_back(f.hash);
      frame_slot[i] = static_cast<std::ptrdiff_t>(it->second);
    }
    if (unique.empty()) return {};
    // The entry's matching frames are joined into spans across the query's sampling gaps
    // (its widest step between frames, up to kMaxJoinGap): a query sampled once a second
    // meets an entry's frames a second apart.
    double join_gap = 0;
    for (std::size_t i = 1; i < q->frames.size(); ++i)
      join_gap = std::max(join_gap, q->frames[i].timestamp - q->frames[i - 1].timestamp);
    join_gap = std::min(join_gap, kMaxJoinGap);
    // Near misses (min_margin < 0) reach no further in distance: vPDQ's share is what a
    // near miss falls short on.
    const auto hits = index_->range_search(unique, rule->distance);
    struct Candidate {
      std::set<std::size_t> query_slots;
      std::set<std::uint32_t> entry_frames;
      int best = 256;
    };
    std::unordered_map<std::int64_t, Candidate> found;
    for (std::size_t s = 0; s < hits.size(); ++s)
      for (const IndexHit& h : hits[s]) {
        const std::int64_t entry = h.id >> kFrameBits;
        const auto frame = static_cast<std::uint32_t>(h.id & ((std::int64_t{1} << kFrameBits) - 1));
        const auto v = videos_.find(entry);
        if (v == videos_.end() || frame >= v->second.frames.size() ||
            v->second.frames[frame].quality < rule->min_quality)
          continue;
        Candidate& c = found[entry];
        c.query_slots.insert(s);
        c.entry_frames.insert(frame);
        c.best = std::min(c.best, h.distance);
      }
    std::vector<SignalMatch> out;
    for (const auto& [id, c] : found) {
      const VpdqVideo& e = videos_.at(id);
      // The entry's unique frames taking part, and how many of them matched (a hash that
      // shows twice counts once, matched when either copy was).
      const auto& qualities = distinct_quality_.at(id);
      const auto entry_unique = static_cast<std::size_t>(std::count_if(
          qualities.begin(), qualities.end(), [&](int q) { return q >= rule->min_quality; }));
      std::set<Hash256> entry_hit;
      for (const auto fi : c.entry_frames) entry_hit.insert(e.frames[fi].hash);
      const double qp = 100.0 * static_cast<double>(c.query_slots.size()) / unique.size();
      const double ep = 100.0 * static_cast<double>(entry_hit.size()) / entry_unique;
      const double margin = vpdq_margin(qp, ep, *rule);
      if (margin < min_margin) continue;
      SignalMatch m;
      m.id = id;
      m.margin = margin;
      std::vector<bool> q_on(q->frames.size(), false), e_on(e.frames.size(), false);
      for (std::size_t i = 0; i < q->frames.size(); ++i)
        q_on[i] =
            frame_slot[i] >= 0 && c.query_slots.count(static_cast<std::size_t>(frame_slot[i]));
      for (std::size_t i = 0; i < e.frames.size(); ++i)
        e_on[i] = e.frames[i].quality >= rule->min_quality && entry_hit.count(e.frames[i].hash);
      m.evidence["query_percent"] = round1(qp);
      m.evidence["entry_percent"] = round1(ep);
      m.evidence["query_frames"] = unique.size();
      m.evidence["entry_frames"] = entry_unique;
      m.evidence["query_matched"] = c.query_slots.size();
      m.evidence["entry_matched"] = entry_hit.size();
      m.evidence["distance"] = c.best;
      m.evidence["query_times"] = spans_json(vpdq_spans(*q, q_on));
      m.evidence["entry_times"] = spans_json(vpdq_spans(e, e_on, join_gap));
      out.push_back(std::move(m));
    }
    // Every candidate, whatever k (returns_all_candidates): the matcher skips disabled and
    // other lists' entries, and must not find a blocking video cut away behind them.
    (void)k;
    std::sort(out.begin(), out.end(), [](const SignalMatch& a, const SignalMatch& b) {
      return a.margin != b.margin ? a.margin > b.margin : a.id < b.id;
    });
    return out;
  }

  std::size_t size() const override { return videos_.size(); }
  std::size_t memory_bytes() const override {
    return (index_ ? index_->memory_bytes() : 0) + frames_ * sizeof(VpdqFrame) +
           videos_.size() * (sizeof(VpdqVideo) + 64);
  }

 private:
  std::unique_ptr<PdqIndex> index_;
  std::unordered_map<std::int64_t, VpdqVideo> videos_;
  // Per video, the best quality of each of its distinct hashes.
  std::unordered_map<std::int64_t, std::vector<int>> distinct_quality_;
  std::size_t frames_ = 0;
  std::vector<std::int64_t> pending_ids_;  // added since the last prepare()
  std::vector<Hash256> pending_hashes_;
};

}  // namespace

std::optional<VpdqRule> vpdq_rule_of(const SignalParams& d) {
  VpdqRule r;
  const auto distance = int_of(d, "distance", 0, 256);
  const auto quality = int_of(d, "min_quality", 0, 100);
  const auto qp = percent_of(d, "query_percent");
  const auto ep = percent_of(d, "entry_percent");
  if (!distance || !quality || !qp || !ep) return std::nullopt;
  r.distance = *distance;
  r.min_quality = *quality;
  r.query_percent = *qp;
  r.entry_percent = *ep;
  return r;
}

std::string VpdqSignal::summary() const {
  return "Meta's vPDQ: videos in the bank, matched by their share of matching frames "
         "(clips inside longer videos too)";
}

SignalParams VpdqSignal::compute_params() const {
  return {{"prune_distance", std::to_string(kVpdqPruneDistance)}, {"version", "1"}};
}

SignalParams VpdqSignal::decision_defaults() const {
  const VpdqRule r;
  return {{"distance", std::to_string(r.distance)},
          {"entry_percent", "0"},
          {"min_quality", std::to_string(r.min_quality)},
          {"query_percent", "80"}};
}

std::string VpdqSignal::validate(const SignalParams& d) const {
  for (const auto& [k, v] : d)
    if (k != "distance" && k != "min_quality" && k != "query_percent" && k != "entry_percent")
      return "unknown parameter '" + k +
             "' (vpdq has: distance, min_quality, query_percent, entry_percent)";
  if (!int_of(d, "distance", 0, 256)) return "distance must be an integer within 0..256";
  if (!int_of(d, "min_quality", 0, 100)) return "min_quality must be an integer within 0..100";
  if (!percent_of(d, "query_percent")) return "query_percent must be a number within 0..100";
  if (!percent_of(d, "entry_percent")) return "entry_percent must be a number within 0..100";
  return {};
}

bool VpdqSignal::may_decide(const SignalQuery& query, const SignalParams& decision) const {
  const auto rule = vpdq_rule_of(decision);
  if (!rule || query.forms.empty()) return false;
  const auto q = decode_vpdq_record(query.forms.front());
  return q && std::any_of(q->frames.begin(), q->frames.end(),
                          [&](const VpdqFrame& f) { return f.quality >= rule->min_quality; });
}

std::string VpdqSignal::check_record(std::string_view record) const {
  std::string why;
  return decode_vpdq_record(record, &why) ? std::string() : why;
}

std::unique_ptr<SignalIndex> VpdqSignal::make_index() const {
  return std::make_unique<VpdqIndex>();
}

void register_vpdq_signal() {
  if (!find_signal("vpdq")) register_signal(std::make_shared<VpdqSignal>());
}

}  // namespace hashwall
