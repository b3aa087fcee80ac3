#include "match/matcher.hpp"

#include <algorithm>
#include <span>

#include "core/error.hpp"

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
      min_quality_(options.min_quality.value_or(bank.config().min_quality)),
      local_min_inliers_(options.local_min_inliers.value_or(bank.config().local_min_inliers)),
      embed_threshold_(options.embed_threshold.value_or(bank.config().embed_threshold)) {
  for (const auto& s : options_.signals)
    if (s != "pdq" && s != "local" && s != "embed")
      throw Error(ErrorKind::Usage, "", "unknown signal '" + s + "' (known: pdq, local, embed)");
}

bool Matcher::use(std::string_view signal) const {
  if (!bank_.config().has(signal)) return false;
  return options_.signals.empty() ||
         std::find(options_.signals.begin(), options_.signals.end(), signal) != options_.signals.end();
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

}  // namespace

MatchResult Matcher::match(const Fingerprint& q) const {
  MatchResult r;
  r.threshold = threshold_;
  r.min_quality = min_quality_;
  r.local_min_inliers = local_min_inliers_;
  r.embed_threshold = embed_threshold_;
  // The signals that take part: those allowed that the query carries (a bare hash sent
  // by a client has PDQ only).
  if (use("pdq")) r.signals.emplace_back("pdq");
  if (use("embed") && !q.embedding.empty()) r.signals.emplace_back("embed");
  if (use("local") && q.local) r.signals.emplace_back("local");

  const auto find_hit = [&](std::int64_t id) -> MatchHit* {
    for (auto& h : r.hits)
      if (h.entry.id == id) return &h;
    return nullptr;
  };
  // A hit for an entry another signal found: its PDQ distance is filled in too.
  const auto new_hit = [&](std::int64_t id, const char* signal) -> MatchHit* {
    auto e = bank_.get(id);
    if (!e) return nullptr;  // removed meanwhile
    MatchHit hit;
    hit.entry = std::move(*e);
    hit.signal = signal;
    fill_pdq_distance(hit, q, options_.dihedral);
    r.hits.push_back(std::move(hit));
    return &r.hits.back();
  };

  // A byte-identical file is a match whatever its quality.
  if (!q.sha256.empty()) {
    if (auto e = bank_.find_sha256(q.sha256)) {
      MatchHit hit;
      hit.entry = std::move(*e);
      hit.exact = true;
      hit.signal = "sha256";
      hit.signals_matched.emplace_back("sha256");
      fill_pdq_distance(hit, q, options_.dihedral);
      r.hits.push_back(std::move(hit));
    }
  }

  const bool query_trusted = q.pdq.quality >= min_quality_;
  if (query_trusted && use("pdq")) {
    const std::size_t n = options_.dihedral ? q.pdq.hashes.size() : 1;
    const auto found = bank_.search_pdq(std::span(q.pdq.hashes.data(), n), threshold_);
    for (const PdqMatch& m : found) {
      if (static_cast<int>(r.hits.size()) >= options_.top) break;
      if (MatchHit* h = find_hit(m.id)) {
        h->distance = m.distance;
        h->variant = static_cast<Dihedral>(m.query_index);
        h->signals_matched.emplace_back("pdq");
        continue;
      }
      auto e = bank_.get(m.id);
      if (!e) continue;  // removed meanwhile
      // PDQ: quality below the minimum is not trusted on either side. Entries imported
      // without a quality were vetted by whoever shared them and are kept.
      if (e->quality && *e->quality < min_quality_) continue;
      MatchHit hit;
      hit.entry = std::move(*e);
      hit.signal = "pdq";
      hit.signals_matched.emplace_back("pdq");
      hit.distance = m.distance;
      hit.variant = static_cast<Dihedral>(m.query_index);
      r.hits.push_back(std::move(hit));
    }
  }

  if (use("embed") && !q.embedding.empty()) {
    const auto found = bank_.search_embed(q.embedding, std::max(options_.top, 1), static_cast<float>(embed_threshold_));
    for (const EmbedMatch& m : found) {
      MatchHit* h = find_hit(m.id);
      if (!h && static_cast<int>(r.hits.size()) >= options_.top) break;
      if (!h) h = new_hit(m.id, "embed");
      if (!h) continue;
      h->similarity = m.similarity;
      h->signals_matched.emplace_back("embed");
    }
  }

  if (use("local") && q.local) {
    LocalVerifyParams vp;
    vp.min_inliers = local_min_inliers_;
    const auto run = [&](const LocalFeatures& f) {
      bool any = false;
      for (const LocalMatch& m : bank_.search_local(f, vp)) {
        if (!m.verification.matched) continue;
        MatchHit* h = find_hit(m.id);
        if (h && h->inliers && *h->inliers >= m.verification.inliers) continue;  // mirror side weaker
        if (!h && static_cast<int>(r.hits.size()) >= options_.top) break;
        if (!h) h = new_hit(m.id, "local");
        if (!h) continue;
        h->inliers = m.verification.inliers;
        h->region = m.verification.region;
        h->inlier_pairs = m.verification.inlier_pairs;
        h->local_mirrored = f.mirrored;
        if (std::find(h->signals_matched.begin(), h->signals_matched.end(), "local") == h->signals_matched.end())
          h->signals_matched.emplace_back("local");
        any = true;
      }
      return any;
    };
    // The mirror image only when the photo as given found nothing: a flipped crop is
    // rarer than a plain one, and it doubles the search.
    if (!run(*q.local) && q.local_mirror) run(*q.local_mirror);
  }
  if (static_cast<int>(r.hits.size()) > options_.top) r.hits.resize(static_cast<std::size_t>(std::max(options_.top, 0)));

  if (!r.hits.empty())
    r.verdict = Verdict::Match;
  else
    r.verdict = query_trusted || r.signals.size() > 1 ? Verdict::NoMatch : Verdict::LowQuality;
  return r;
}

}  // namespace hashwall
