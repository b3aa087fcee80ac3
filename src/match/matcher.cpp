#include "match/matcher.hpp"

#include <algorithm>
#include <span>

namespace hashwall {

const char* verdict_name(Verdict v) noexcept {
  switch (v) {
    case Verdict::Match: return "match";
    case Verdict::LowQuality: return "low-quality";
    case Verdict::NoMatch: break;
  }
  return "no-match";
}

Matcher::Matcher(const Bank& bank, MatchOptions options)
    : bank_(bank),
      options_(options),
      threshold_(options.threshold.value_or(bank.config().pdq_threshold)),
      min_quality_(options.min_quality.value_or(bank.config().min_quality)) {}

MatchResult Matcher::match(const Fingerprint& q) const {
  MatchResult r;
  r.threshold = threshold_;
  r.min_quality = min_quality_;

  // A byte-identical file is a match whatever its quality.
  if (!q.sha256.empty()) {
    if (auto e = bank_.find_sha256(q.sha256)) {
      MatchHit hit;
      hit.entry = std::move(*e);
      hit.exact = true;
      r.hits.push_back(std::move(hit));
    }
  }

  const bool query_trusted = q.pdq.quality >= min_quality_;
  if (query_trusted) {
    const std::size_t n = options_.dihedral ? q.pdq.hashes.size() : 1;
    const auto found = bank_.search_pdq(std::span(q.pdq.hashes.data(), n), threshold_);
    for (const PdqMatch& m : found) {
      if (static_cast<int>(r.hits.size()) >= options_.top) break;
      if (!r.hits.empty() && r.hits.front().exact && r.hits.front().entry.id == m.id) {
        r.hits.front().distance = m.distance;
        r.hits.front().variant = static_cast<Dihedral>(m.query_index);
        continue;
      }
      auto e = bank_.get(m.id);
      if (!e) continue;  // removed meanwhile
      // PDQ: quality below the minimum is not trusted on either side. Entries imported
      // without a quality were vetted by whoever shared them and are kept.
      if (e->quality && *e->quality < min_quality_) continue;
      MatchHit hit;
      hit.entry = std::move(*e);
      hit.distance = m.distance;
      hit.variant = static_cast<Dihedral>(m.query_index);
      r.hits.push_back(std::move(hit));
    }
  }
  if (static_cast<int>(r.hits.size()) > options_.top) r.hits.resize(static_cast<std::size_t>(std::max(options_.top, 0)));

  if (!r.hits.empty())
    r.verdict = Verdict::Match;
  else
    r.verdict = query_trusted ? Verdict::NoMatch : Verdict::LowQuality;
  return r;
}

}  // namespace hashwall
