#include "match/matcher.hpp"

#include <algorithm>
#include <functional>
#include <set>
#include <span>

#include "core/error.hpp"
#include "embed/embed_signal.hpp"
#include "local/local_signal.hpp"
#include "signal/signal.hpp"

namespace hashwall {

const char* verdict_name(Verdict v) noexcept {
  switch (v) {
    case Verdict::Match:
      return "match";
    case Verdict::LowQuality:
      return "low-quality";
    case Verdict::Allowed:
      return "allowed";
    case Verdict::NoMatch:
      break;
  }
  return "no-match";
}

Matcher::Matcher(const Bank& bank, MatchOptions options)
    : bank_(bank),
      options_(options),
      threshold_(options.threshold.value_or(bank.config().pdq_threshold)),
      min_quality_(options.min_quality.value_or(bank.config().min_quality)),
      local_min_inliers_(options.local_min_inliers.value_or(bank.config().local_min_inliers)),
      embed_threshold_(options.embed_threshold.value_or(bank.config().embed_threshold)) {
  if (const auto why = unknown_signal(options_.signals); !why.empty())
    throw Error(ErrorKind::Usage, "", why);
  decisions_ = bank.config().signal_params;
  if (options_.embed_threshold && bank.config().has("embed"))
    decisions_["embed"]["threshold"] = exact_threshold_text(*options_.embed_threshold);
  if (options_.local_min_inliers && bank.config().has("local"))
    decisions_["local"]["min_inliers"] = std::to_string(*options_.local_min_inliers);
  for (const auto& [name, params] : options_.decisions) {
    const auto it = decisions_.find(name);
    if (it == decisions_.end())
      throw Error(ErrorKind::Usage, "",
                  "decision parameters given for '" + name +
                      "', which is not one of the bank's signals on the Signal interface");
    for (const auto& [k, v] : params) it->second[k] = v;
  }
  for (const auto& [name, params] : decisions_)
    if (const Signal* s = find_signal(name))
      if (const auto why = s->validate(params); !why.empty())
        throw Error(ErrorKind::Usage, "", "signal '" + name + "': " + why);
  if (const auto it = decisions_.find("embed"); it != decisions_.end())
    embed_threshold_ = embed_threshold_of(it->second).value_or(embed_threshold_);
  if (const auto it = decisions_.find("local"); it != decisions_.end())
    local_min_inliers_ = min_inliers_of(it->second).value_or(local_min_inliers_);
}

// Views of the local signal's evidence (local/local_signal.cpp writes it).
namespace {
const MatchHit::Evidence* local_evidence(const MatchHit& h) {
  const auto it = h.registered.find("local");
  return it == h.registered.end() ? nullptr : &it->second;
}
}  // namespace

std::optional<int> MatchHit::inliers() const {
  const auto* ev = local_evidence(*this);
  if (!ev || !ev->detail.contains("inliers")) return std::nullopt;
  return ev->detail.at("inliers").get<int>();
}

bool MatchHit::local_mirrored() const {
  const auto* ev = local_evidence(*this);
  return ev && ev->detail.value("mirrored", false);
}

std::optional<std::array<cv::Point2f, 4>> MatchHit::region() const {
  const auto* ev = local_evidence(*this);
  if (!ev || !ev->detail.contains("region") || ev->detail.at("region").size() != 4)
    return std::nullopt;
  std::array<cv::Point2f, 4> out;
  for (std::size_t i = 0; i < 4; ++i) {
    const auto& p = ev->detail.at("region")[i];
    out[i] = {p.at(0).get<float>(), p.at(1).get<float>()};
  }
  return out;
}

std::vector<std::pair<cv::Point2f, cv::Point2f>> MatchHit::inlier_pairs() const {
  std::vector<std::pair<cv::Point2f, cv::Point2f>> out;
  const auto* ev = local_evidence(*this);
  if (!ev || !ev->extra.contains("inlier_pairs")) return out;
  for (const auto& p : ev->extra.at("inlier_pairs"))
    out.push_back({{p.at(0).get<float>(), p.at(1).get<float>()},
                   {p.at(2).get<float>(), p.at(3).get<float>()}});
  return out;
}

std::optional<float> MatchHit::similarity() const {
  const auto it = registered.find("embed");
  if (it == registered.end() || !it->second.detail.contains("similarity")) return std::nullopt;
  return it->second.detail.at("similarity").get<float>();
}

bool Matcher::use(std::string_view signal) const {
  if (!bank_.config().has(signal)) return false;
  return options_.signals.empty() || std::find(options_.signals.begin(), options_.signals.end(),
                                               signal) != options_.signals.end();
}

namespace {

// The best PDQ distance of the query's variants to an entry, for hits another signal found.
void fill_pdq_distance(MatchHit& h, const Fingerprint& q, bool dihedral) {
  const std::size_t n = dihedral ? q.pdq.hashes.size() : 1;
  h.distance = 256;
  for (std::size_t v = 0; v < n; ++v) {
    const int d = hamming(q.pdq.hashes[v], h.entry.pdq);
    if (d < h.distance) {
      h.distance = d;
      h.variant = static_cast<Dihedral>(v);
    }
  }
}

double clip_margin(double m) { return std::clamp(m, -1.0, 1.0); }

}  // namespace

double pdq_margin(int distance, int threshold) {
  if (threshold <= 0) return distance <= 0 ? 1.0 : -1.0;
  return clip_margin(static_cast<double>(threshold - distance) / threshold);
}

double embed_margin(double similarity, double threshold) {
  return similarity_margin(similarity, threshold);
}

double local_margin(int inliers, int min_inliers) { return inliers_margin(inliers, min_inliers); }

double joint_score(const MatchHit& h, const ScoreScale& scale, bool pdq_counts) {
  std::vector<double> margins;
  if (h.exact) margins.push_back(1.0);
  if (pdq_counts) margins.push_back(pdq_margin(h.distance, scale.pdq_threshold));
  for (const auto& [name, ev] : h.registered) margins.push_back(clip_margin(ev.margin));
  if (margins.empty()) return -1.0;
  std::sort(margins.begin(), margins.end(), std::greater<>());
  double score = margins[0];
  for (std::size_t i = 1; i < margins.size(); ++i) score += 0.1 * std::max(0.0, margins[i]);
  return score;
}

MatchResult Matcher::match(const Fingerprint& q) const {
  MatchResult r;
  r.threshold = threshold_;
  r.min_quality = min_quality_;
  r.local_min_inliers = local_min_inliers_;
  r.embed_threshold = embed_threshold_;
  // The signals that take part: those allowed that the query carries (a bare hash sent
  // by a client has PDQ only).
  // Signals on the Signal interface in the bank's order (q.registered is by name). The
  // built-in ones come first, embed before local as when they had code paths of their own:
  // the order decides which signal a hit names when several match.
  const auto takes_part = [&](const std::string& name) {
    const auto qi = q.registered.find(name);
    return qi != q.registered.end() && !qi->second.forms.empty() && use(name) &&
           decisions_.count(name);
  };
  std::vector<std::string> interface_signals;
  for (const auto& name : bank_.config().signals)
    if (takes_part(name)) interface_signals.push_back(name);
  const auto builtin = [](const std::string& name) { return name == "embed" || name == "local"; };
  if (use("pdq")) r.signals.emplace_back("pdq");
  for (const char* name : {"embed", "local"})
    if (takes_part(name)) r.signals.emplace_back(name);
  for (const auto& name : interface_signals) {
    if (!builtin(name)) r.signals.push_back(name);
    r.registered_params[name] = decisions_.at(name);
  }

  // How far each search reaches: the thresholds, or twice as far for near misses.
  const bool near = options_.near_misses;
  const int pdq_reach = near ? std::min(2 * threshold_, 255) : threshold_;
  // With near misses, the top cut comes after scoring (a near miss found first must not
  // push out a match found later); each signal still stops somewhere.
  const int per_signal_cap = near ? std::max(options_.top, 1) * 4 : options_.top;
  // With roles (lists), allowlisted and disabled entries must not take a blocking entry's
  // place before the verdict is decided: only blocking hits count towards a signal's cap,
  // the top cut waits for the end, and searches that stop at k results are asked again
  // for more (up to kRolePageMax) while they return only others.
  const bool roles = static_cast<bool>(options_.entry_role);
  const bool cut_late = near || roles;
  constexpr std::size_t kRolePageMax = 4096;

  const auto find_hit = [&](std::int64_t id) -> MatchHit* {
    for (auto& h : r.hits)
      if (h.entry.id == id) return &h;
    return nullptr;
  };
  // The caller's word on an entry: disabled ones never become hits.
  const auto role = [&](const Entry& e) {
    return options_.entry_role ? options_.entry_role(e) : EntryRole::Block;
  };
  // A hit for an entry another signal found: its PDQ distance is filled in too.
  const auto new_hit = [&](std::int64_t id, const char* signal) -> MatchHit* {
    auto e = bank_.get(id);
    if (!e) return nullptr;  // removed meanwhile
    const EntryRole rl = role(*e);
    if (rl == EntryRole::Disabled) return nullptr;
    MatchHit hit;
    hit.allow = rl == EntryRole::Allow;
    hit.entry = std::move(*e);
    hit.signal = signal;
    fill_pdq_distance(hit, q, options_.dihedral);
    r.hits.push_back(std::move(hit));
    return &r.hits.back();
  };
  // The hit a signal's search result goes to: the entry's existing hit, or a new one
  // while the signal has taken fewer than its share (and, without near misses or roles,
  // while fewer than `top` hits are in). stop: this signal is done; hit nullptr: skip it.
  struct Take {
    MatchHit* hit;
    bool stop;
  };
  const auto take = [&](std::int64_t id, const char* signal, int& taken) -> Take {
    if (MatchHit* h = find_hit(id)) return {h, false};
    if (taken >= per_signal_cap) return {nullptr, true};
    if (!cut_late && static_cast<int>(r.hits.size()) >= options_.top) return {nullptr, true};
    MatchHit* h = new_hit(id, signal);
    if (!roles || (h && !h->allow)) ++taken;
    return {h, false};
  };

  // A byte-identical file is a match whatever its quality.
  if (!q.sha256.empty()) {
    if (auto e = bank_.find_sha256(q.sha256); e && role(*e) != EntryRole::Disabled) {
      MatchHit hit;
      hit.allow = role(*e) == EntryRole::Allow;
      hit.entry = std::move(*e);
      hit.exact = true;
      hit.signal = "sha256";
      hit.signals_matched.emplace_back("sha256");
      fill_pdq_distance(hit, q, options_.dihedral);
      r.hits.push_back(std::move(hit));
    }
  }

  const bool query_trusted = q.pdq.quality >= min_quality_;
  // PDQ may decide for an entry when both sides pass the quality gate. Entries imported
  // without a quality were vetted by whoever shared them and are kept.
  const bool pdq_on = query_trusted && use("pdq");
  const auto entry_trusted = [&](const Entry& e) {
    return !e.quality || *e.quality >= min_quality_;
  };
  if (pdq_on) {
    const std::size_t n = options_.dihedral ? q.pdq.hashes.size() : 1;
    const auto found = bank_.search_pdq(std::span(q.pdq.hashes.data(), n), pdq_reach);
    int taken = 0;
    for (const PdqMatch& m : found) {
      if (taken >= per_signal_cap) break;
      const bool passes = m.distance <= threshold_;
      if (MatchHit* h = find_hit(m.id)) {
        h->distance = m.distance;
        h->variant = static_cast<Dihedral>(m.query_index);
        if (passes && entry_trusted(h->entry)) h->signals_matched.emplace_back("pdq");
        continue;
      }
      auto e = bank_.get(m.id);
      if (!e) continue;  // removed meanwhile
      if (!entry_trusted(*e)) continue;
      const EntryRole rl = role(*e);
      if (rl == EntryRole::Disabled) continue;
      MatchHit hit;
      hit.allow = rl == EntryRole::Allow;
      hit.entry = std::move(*e);
      hit.signal = "pdq";
      if (passes) hit.signals_matched.emplace_back("pdq");
      hit.distance = m.distance;
      hit.variant = static_cast<Dihedral>(m.query_index);
      if (!hit.allow) ++taken;
      r.hits.push_back(std::move(hit));
    }
  }

  // A signal on the Signal interface: its search under the decision in use, each result
  // merged into the entry's hit with its evidence. A signal whose forms are tried in turn
  // (local: the mirror image) is searched form by form until one finds an entry that is
  // kept as a hit and passes the threshold.
  const auto search_interface = [&](const std::string& name) {
    const Signal* sig = find_signal(name);
    const SignalQuery& sq = q.registered.at(name);
    const SignalParams& decision = decisions_.at(name);
    const bool in_turn = sig && sig->tries_forms_in_turn() && sq.forms.size() > 1;
    const bool whole = sig && sig->returns_all_candidates();
    int taken = 0;
    for (std::size_t round = 0; round < (in_turn ? sq.forms.size() : 1); ++round) {
      SignalQuery one;
      if (in_turn) one.forms = {sq.forms[round]};
      const SignalQuery& query = in_turn ? one : sq;
      bool any = false;
      std::set<std::int64_t> seen;
      for (std::size_t k = static_cast<std::size_t>(std::max(per_signal_cap, 0));; k *= 4) {
        const auto found = bank_.search_signal(name, query, near ? -1.0 : 0.0, k, &decision);
        for (const SignalMatch& m : found) {
          if (!seen.insert(m.id).second) continue;  // an earlier page
          if (const MatchHit* before = find_hit(m.id)) {
            const auto ev = before->registered.find(name);
            if (ev != before->registered.end() && ev->second.margin >= m.margin)
              continue;  // an earlier form came as near
          }
          const auto [h, stop] = take(m.id, name.c_str(), taken);
          if (stop) break;
          if (!h) continue;
          h->registered[name] = MatchHit::Evidence{
              m.margin, in_turn ? static_cast<int>(round) : m.form, m.evidence, m.extra};
          if (m.margin >= 0) {
            if (std::find(h->signals_matched.begin(), h->signals_matched.end(), name) ==
                h->signals_matched.end())
              h->signals_matched.push_back(name);
            any = true;
          }
        }
        if (whole || !roles || taken >= per_signal_cap || found.size() < k || k == 0 ||
            k >= kRolePageMax)
          break;
      }
      if (any) break;
    }
  };
  if (takes_part("embed")) search_interface("embed");

  if (takes_part("local")) search_interface("local");

  // The registered signals, in the bank's order.
  for (const auto& name : interface_signals)
    if (!builtin(name)) search_interface(name);

  const ScoreScale scale{threshold_};
  for (MatchHit& h : r.hits) {
    h.matched = !h.signals_matched.empty();
    // The deciding signal is the first that matched (sha256, pdq, embed, local, then the
    // registered ones in the bank's order).
    if (h.matched) h.signal = h.signals_matched.front();
    h.score = joint_score(h, scale, pdq_on && entry_trusted(h.entry));
  }
  std::stable_sort(r.hits.begin(), r.hits.end(), [](const MatchHit& a, const MatchHit& b) {
    if (a.exact != b.exact) return a.exact;
    return a.score > b.score;
  });
  // The strongest blocking and allowing matches, strength as the hits are ordered (an
  // identical file first, then the joint score), before the top cut so that neither is
  // cut away by the other's hits.
  using Strength = std::pair<bool, double>;
  Strength best_block{false, -2}, best_allow{false, -2};
  bool block_match = false, allow_match = false;
  for (const MatchHit& h : r.hits) {
    if (!h.matched) continue;
    Strength& best = h.allow ? best_allow : best_block;
    best = std::max(best, Strength{h.exact, h.score});
    (h.allow ? allow_match : block_match) = true;
  }
  if (static_cast<int>(r.hits.size()) > options_.top)
    r.hits.resize(static_cast<std::size_t>(std::max(options_.top, 0)));
  if (allow_match && best_allow >= best_block)
    r.verdict = Verdict::Allowed;
  else if (block_match)
    r.verdict = Verdict::Match;
  else
    // Too featureless to decide only when PDQ, which the quality gate is about, was the
    // only signal that could have found it.
    r.verdict =
        !query_trusted && (r.signals.empty() || r.signals == std::vector<std::string>{"pdq"})
            ? Verdict::LowQuality
            : Verdict::NoMatch;
  return r;
}

}  // namespace hashwall
