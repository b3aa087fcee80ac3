#include "match/matcher.hpp"

#include <algorithm>
#include <ctime>
#include <functional>
#include <set>
#include <span>

#include "core/error.hpp"
#include "embed/embed_signal.hpp"
#include "local/local_signal.hpp"
#include "pdq/pdq_signal.hpp"
#include "signal/signal.hpp"

namespace hashwall {

EntryRole entry_role_of(const Entry& e, std::int64_t now, const std::vector<std::string>& lists) {
  if (!e.enabled_at(now)) return EntryRole::Disabled;
  if (!lists.empty() && std::find(lists.begin(), lists.end(), e.list_name) == lists.end())
    return EntryRole::Disabled;
  return e.list_kind == ListKind::Allow ? EntryRole::Allow : EntryRole::Block;
}

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
  {
    // PDQ's decision (pdq/pdq_signal.hpp) from the options of its own.
    auto& pdq = decisions_["pdq"];
    pdq["threshold"] = std::to_string(threshold_);
    pdq["min_quality"] = std::to_string(min_quality_);
    if (!options_.dihedral) pdq["dihedral"] = "no";
  }
  if (options_.embed_threshold && bank.config().has("embed"))
    decisions_["embed"]["threshold"] = exact_threshold_text(*options_.embed_threshold);
  if (options_.local_min_inliers && bank.config().has("local"))
    decisions_["local"]["min_inliers"] = std::to_string(*options_.local_min_inliers);
  for (const auto& [name, params] : options_.decisions) {
    const auto it = decisions_.find(name);
    if (it == decisions_.end())
      throw Error(
          ErrorKind::Usage, "",
          "decision parameters given for '" + name + "', which is not one of the bank's signals");
    for (const auto& [k, v] : params) it->second[k] = v;
  }
  for (const auto& [name, params] : decisions_)
    if (const Signal* s = find_signal(name))
      if (const auto why = s->validate(params); !why.empty())
        throw Error(ErrorKind::Usage, "", "signal '" + name + "': " + why);
  threshold_ = pdq_threshold_of(decisions_.at("pdq")).value_or(threshold_);
  min_quality_ = pdq_min_quality_of(decisions_.at("pdq")).value_or(min_quality_);
  if (const auto it = decisions_.find("embed"); it != decisions_.end())
    embed_threshold_ = embed_threshold_of(it->second).value_or(embed_threshold_);
  if (const auto it = decisions_.find("local"); it != decisions_.end())
    local_min_inliers_ = min_inliers_of(it->second).value_or(local_min_inliers_);
}

// Views of the pdq and local signals' evidence (pdq/pdq_signal.cpp, local/local_signal.cpp
// write it).
namespace {
const MatchHit::Evidence* pdq_evidence(const MatchHit& h) {
  const auto it = h.registered.find("pdq");
  return it == h.registered.end() ? nullptr : &it->second;
}
const MatchHit::Evidence* local_evidence(const MatchHit& h) {
  const auto it = h.registered.find("local");
  return it == h.registered.end() ? nullptr : &it->second;
}
}  // namespace

int MatchHit::distance() const {
  const auto* ev = pdq_evidence(*this);
  if (!ev || !ev->detail.contains("distance")) return 256;
  return ev->detail.at("distance").get<int>();
}

Dihedral MatchHit::variant() const {
  const auto* ev = pdq_evidence(*this);
  return ev && ev->form >= 0 && ev->form < kDihedralCount ? static_cast<Dihedral>(ev->form)
                                                          : Dihedral::Original;
}

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

double clip_margin(double m) { return std::clamp(m, -1.0, 1.0); }

}  // namespace

double embed_margin(double similarity, double threshold) {
  return similarity_margin(similarity, threshold);
}

double local_margin(int inliers, int min_inliers) { return inliers_margin(inliers, min_inliers); }

double joint_score(const MatchHit& h) {
  std::vector<double> margins;
  if (h.exact) margins.push_back(1.0);
  for (const auto& [name, ev] : h.registered)
    if (ev.decides) margins.push_back(clip_margin(ev.margin));
  if (margins.empty()) return -1.0;
  std::sort(margins.begin(), margins.end(), std::greater<>());
  double score = margins[0];
  for (std::size_t i = 1; i < margins.size(); ++i) score += 0.1 * std::max(0.0, margins[i]);
  return score;
}

void Matcher::add_exact_hits(MatchResult& r, const std::string& sha256, const std::string& md5,
                             const std::function<EntryRole(const Entry&)>& role) const {
  const auto add = [&](std::optional<Entry> e, const char* signal) {
    if (!e || role(*e) == EntryRole::Disabled) return;
    for (const auto& h : r.hits)
      if (h.entry.id == e->id) return;
    MatchHit hit;
    hit.allow = role(*e) == EntryRole::Allow;
    hit.entry = std::move(*e);
    hit.exact = true;
    hit.signal = signal;
    hit.signals_matched.emplace_back(signal);
    r.hits.push_back(std::move(hit));
  };
  if (!sha256.empty()) add(bank_.find_sha256(sha256), "sha256");
  // An MD5 list's entry: the same file, as far as MD5 can tell.
  if (!md5.empty()) add(bank_.find_md5(md5), "md5");
}

MatchResult Matcher::match_file(const std::string& sha256, const std::string& md5) const {
  MatchResult r;
  r.threshold = threshold_;
  r.min_quality = min_quality_;
  r.local_min_inliers = local_min_inliers_;
  r.embed_threshold = embed_threshold_;
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  add_exact_hits(r, sha256, md5, [&](const Entry& e) {
    return options_.entry_role ? options_.entry_role(e) : entry_role_of(e, now, options_.lists);
  });
  bool block = false, allow = false;
  for (MatchHit& h : r.hits) {
    h.matched = true;
    h.score = joint_score(h);
    (h.allow ? allow : block) = true;
  }
  // Every hit here is exact: an allow entry is as strong as any block entry, and ties go to
  // allow, as in match().
  r.verdict = allow ? Verdict::Allowed : block ? Verdict::Match : Verdict::NoMatch;
  return r;
}

MatchResult Matcher::match(const Fingerprint& q) const {
  MatchResult r;
  r.threshold = threshold_;
  r.min_quality = min_quality_;
  r.local_min_inliers = local_min_inliers_;
  r.embed_threshold = embed_threshold_;
  // Each signal's query forms: those the fingerprint computed, and PDQ's from its own
  // field (Fingerprint::pdq; a bare hash sent by a client has PDQ only).
  const SignalQuery pdq_forms = q.registered.count("pdq") ? SignalQuery{} : pdq_query(q.pdq);
  const auto forms_of = [&](const std::string& name) -> const SignalQuery* {
    if (const auto it = q.registered.find(name); it != q.registered.end()) return &it->second;
    return name == "pdq" ? &pdq_forms : nullptr;
  };
  const auto carried = [&](const std::string& name) {
    const SignalQuery* f = forms_of(name);
    return f && !f->forms.empty() && decisions_.count(name) && find_signal(name);
  };
  // The signals that take part: those allowed that the query carries. The built-in ones
  // come first (pdq, embed, local), then the registered ones in the bank's order: the
  // order decides which signal a hit names when several match.
  std::vector<std::string> order;
  for (const char* name : {"pdq", "embed", "local"})
    if (bank_.config().has(name)) order.emplace_back(name);
  for (const auto& name : bank_.config().signals)
    if (!is_builtin_signal(name)) order.push_back(name);
  std::vector<std::string> taking_part;
  for (const auto& name : order)
    if (carried(name) && use(name)) taking_part.push_back(name);
  r.signals = taking_part;
  for (const auto& name : taking_part) r.registered_params[name] = decisions_.at(name);
  // Which signals may decide for this query (PDQ's quality gate), among all the bank's
  // signals the query carries: a query none of those taking part may decide for, refused
  // by one, is too featureless to decide ("low-quality").
  std::map<std::string, bool> query_ok;
  for (const auto& name : order)
    if (carried(name))
      query_ok[name] = find_signal(name)->may_decide(*forms_of(name), decisions_.at(name));

  // How far searches reach: the thresholds, or twice as far for near misses.
  const bool near = options_.near_misses;
  // With near misses, the top cut comes after scoring (a near miss found first must not
  // push out a match found later); each signal still stops somewhere.
  const int per_signal_cap = near ? std::max(options_.top, 1) * 4 : options_.top;
  // Roles (lists, disabled entries: entry_role_of): allowlisted and disabled entries must
  // not take a blocking entry's place before the verdict is decided, so only blocking hits
  // count towards a signal's cap, the top cut waits for the end, and searches that stop at
  // k results are asked again for more (up to kRolePageMax) while they return only others.
  constexpr std::size_t kRolePageMax = 4096;

  const auto find_hit = [&](std::int64_t id) -> MatchHit* {
    for (auto& h : r.hits)
      if (h.entry.id == id) return &h;
    return nullptr;
  };
  // The caller's word on an entry: disabled ones never become hits.
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  const auto role = [&](const Entry& e) {
    return options_.entry_role ? options_.entry_role(e) : entry_role_of(e, now, options_.lists);
  };
  // Whether `sig` may decide for this entry (Signal::may_decide_for on its record).
  const auto entry_ok = [&](const Signal& sig, const std::string& name, const Entry& e) {
    if (!sig.compares_records()) return true;
    const auto rec = bank_.record(name, e);
    return !rec || sig.may_decide_for(*rec, decisions_.at(name));
  };
  // The hit a signal's search result goes to: the entry's existing hit, or a new one
  // while the signal has taken fewer than its share, unless the entry is disabled or the signal may
  // not decide for it. stop: this signal is done; hit nullptr: skip it.
  struct Take {
    MatchHit* hit;
    bool stop;
  };
  // Per signal: blocking hits taken, allow hits taken (each up to the cap: the strongest
  // come first), and entries looked up (bounded, so that a query near thousands of
  // disabled or other lists' entries costs at most kRolePageMax look-ups a signal).
  struct Taken {
    int block = 0, allow = 0;
    std::size_t examined = 0;
  };
  const auto take = [&](std::int64_t id, const std::string& name, const Signal& sig,
                        Taken& taken) -> Take {
    if (MatchHit* h = find_hit(id)) return {h, false};
    if (taken.block >= per_signal_cap || ++taken.examined > kRolePageMax) return {nullptr, true};
    auto e = bank_.get(id);
    if (!e || !entry_ok(sig, name, *e)) return {nullptr, false};  // removed meanwhile, or gated
    const EntryRole rl = role(*e);
    if (rl == EntryRole::Disabled) return {nullptr, false};
    if (rl == EntryRole::Allow && taken.allow >= per_signal_cap) return {nullptr, false};
    MatchHit hit;
    hit.allow = rl == EntryRole::Allow;
    hit.entry = std::move(*e);
    hit.signal = name;
    r.hits.push_back(std::move(hit));
    ++(r.hits.back().allow ? taken.allow : taken.block);
    return {&r.hits.back(), false};
  };

  // A byte-identical file is a match whatever its quality.
  add_exact_hits(r, q.sha256, q.md5, role);

  // One signal's search under the decision in use, each result merged into the entry's
  // hit with its evidence. A signal whose forms are tried in turn (local: the mirror
  // image) is searched form by form until one finds an entry that is kept as a hit and
  // passes the threshold.
  const auto search = [&](const std::string& name) {
    const Signal& sig = *find_signal(name);
    const SignalQuery& sq = *forms_of(name);
    const SignalParams& decision = decisions_.at(name);
    const bool in_turn = sig.tries_forms_in_turn() && sq.forms.size() > 1;
    const bool whole = sig.returns_all_candidates();
    Taken taken;
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
          const MatchHit* before = find_hit(m.id);
          if (before) {
            const auto ev = before->registered.find(name);
            if (ev != before->registered.end() && ev->second.margin >= m.margin)
              continue;  // an earlier form came as near
          }
          const auto [h, stop] = take(m.id, name, sig, taken);
          if (stop) break;
          if (!h) continue;
          // An entry found earlier by another signal (an identical file) keeps the
          // evidence, but counts only where this signal may decide for it (take() checked
          // a new hit's entry already).
          const bool decides = !before || entry_ok(sig, name, h->entry);
          h->registered[name] = MatchHit::Evidence{
              m.margin, in_turn ? static_cast<int>(round) : m.form, m.evidence, m.extra, decides};
          if (m.margin >= 0 && decides) {
            if (std::find(h->signals_matched.begin(), h->signals_matched.end(), name) ==
                h->signals_matched.end())
              h->signals_matched.push_back(name);
            any = true;
          }
        }
        if (whole || taken.block >= per_signal_cap || found.size() < k || k == 0 ||
            k >= kRolePageMax)
          break;
      }
      if (any) break;
    }
  };
  for (const auto& name : taking_part)
    if (query_ok.at(name)) search(name);

  // The evidence of signals that compare single records (PDQ's distance) for the hits
  // their search did not reach: reported, and counted where that signal may decide.
  for (const auto& name : order) {
    if (!carried(name)) continue;
    const Signal& sig = *find_signal(name);
    if (!sig.compares_records()) continue;
    const bool takes = std::find(taking_part.begin(), taking_part.end(), name) != taking_part.end();
    for (MatchHit& h : r.hits) {
      if (h.registered.count(name)) continue;
      const auto rec = bank_.record(name, h.entry);
      if (!rec) continue;
      const auto m = sig.compare(*forms_of(name), *rec, decisions_.at(name));
      if (!m) continue;
      h.registered[name] = MatchHit::Evidence{
          m->margin, m->form, m->evidence, m->extra,
          takes && query_ok.at(name) && sig.may_decide_for(*rec, decisions_.at(name))};
    }
  }

  for (MatchHit& h : r.hits) {
    h.matched = !h.signals_matched.empty();
    // The deciding signal is the first that matched (sha256, pdq, embed, local, then the
    // registered ones in the bank's order).
    if (h.matched) h.signal = h.signals_matched.front();
    h.score = joint_score(h);
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
    // Too featureless to decide only when a signal refused the query (PDQ's quality gate)
    // and none of those taking part may decide for it.
    r.verdict =
        std::any_of(query_ok.begin(), query_ok.end(), [](const auto& x) { return !x.second; }) &&
                std::none_of(taking_part.begin(), taking_part.end(),
                             [&](const std::string& n) { return query_ok.at(n); })
            ? Verdict::LowQuality
            : Verdict::NoMatch;
  return r;
}

}  // namespace hashwall
