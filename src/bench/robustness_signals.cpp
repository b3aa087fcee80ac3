// The signals of `bench robustness` (robustness_signals.hpp): PDQ (as given and best of
// the 8 dihedral variants), OpenCV's PHash as a baseline, the local features alone, the
// embedding alone, and hashwall's Matcher combining the bank's signals. Each scores every
// reference for one query and says whether its default rule declares a match.
#include "bench/robustness_signals.hpp"

#include <algorithm>
#include <cstdio>
#include <opencv2/img_hash.hpp>

#include "embed/embed_signal.hpp"

namespace hashwall::bench::robustness_detail {

namespace {

// Scores every reference with score(i), keeps the best kTopPerQuery, declares those with
// accept(score).
template <class Score, class Accept>
Outcome rank_refs(std::size_t nrefs, int truth, Score score, Accept accept) {
  Outcome o;
  std::vector<std::pair<int, float>> all(nrefs);
  for (std::size_t i = 0; i < nrefs; ++i) all[i] = {static_cast<int>(i), score(i)};
  const std::size_t k = std::min(kTopPerQuery, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(k), all.end(),
                    [](const auto& a, const auto& b) {
                      return a.second > b.second || (a.second == b.second && a.first < b.first);
                    });
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (!accept(all[i].second)) continue;
    o.declared = true;
    if (all[i].first == truth) o.right = true;
  }
  all.resize(k);
  o.top = std::move(all);
  return o;
}

}  // namespace

SignalInfo PdqSignal::info() const {
  return {dihedral_ ? "PDQ+dihedral" : "PDQ",
          "distance <= " + std::to_string(threshold_) + " of 256" +
              (dihedral_ ? ", best of the 8 variants" : ""),
          "-(Hamming distance)"};
}

Outcome PdqSignal::evaluate(const Query& q, int truth) const {
  const int n = dihedral_ ? kDihedralCount : 1;
  return rank_refs(
      refs_.size(), truth,
      [&](std::size_t i) {
        int d = 256;
        for (int v = 0; v < n; ++v)
          d = std::min(d, hamming(q.fp.pdq.hashes[static_cast<std::size_t>(v)], refs_[i].pdq));
        return static_cast<float>(-d);
      },
      [&](float s) { return -s <= threshold_; });
}

SignalInfo PhashSignal::info() const {
  return {"PHash (baseline)",
          "distance <= " + std::to_string(threshold_) + " of 64 (OpenCV img_hash)",
          "-(Hamming distance)"};
}

Outcome PhashSignal::evaluate(const Query& q, int truth) const {
  cv::Mat h;
  cv::img_hash::pHash(q.pixels, h);  // the free function: no shared state between threads
  return rank_refs(
      refs_.size(), truth,
      [&](std::size_t i) {
        return static_cast<float>(-cv::norm(h, refs_[i].phash, cv::NORM_HAMMING));
      },
      [&](float s) { return -s <= threshold_; });
}

SignalInfo MatcherSignal::info() const {
  std::string rule =
      "hashwall's Matcher: PDQ+dihedral <= " + std::to_string(bank_.config().pdq_threshold) +
      " (both sides PDQ quality >= " + std::to_string(bank_.config().min_quality) + ")";
  if (bank_.config().has("embed")) rule += ", or embed";
  if (bank_.config().has("local")) rule += ", or local";
  return {
      "combined", rule,
      "joint score: the strongest signal's margin past its threshold plus a tenth of the others' "
      "(near misses down to -1 included)"};
}

Outcome MatcherSignal::evaluate(const Query& q, int truth) const {
  Outcome o;
  const MatchResult r = matcher_.match(q.fp);
  for (const MatchHit& h : r.hits) {
    const auto id = static_cast<std::size_t>(h.entry.id);
    const int ref = id < ref_of_id_.size() ? ref_of_id_[id] : -1;
    if (ref < 0) continue;
    if (h.matched) {
      o.declared = true;
      if (ref == truth) o.right = true;
    }
    if (o.top.size() < kTopPerQuery) o.top.push_back({ref, static_cast<float>(h.score)});
  }
  return o;
}

SignalInfo LocalAlone::info() const {
  return {"local",
          ">= " + std::to_string(min_inliers_) +
              " RANSAC inliers (ORB keypoints, mirror tried when the photo as given finds nothing)",
          "inliers of the verified candidates"};
}

Outcome LocalAlone::evaluate(const Query& q, int truth) const {
  Outcome o;
  const auto form = q.fp.registered.find("local");
  if (form == q.fp.registered.end() || form->second.forms.empty()) return o;
  // Every verified candidate, matched or not (margin below -1), for the ranked metrics;
  // the mirror image only when the photo as given matched nothing.
  const SignalParams decision{{"min_inliers", std::to_string(min_inliers_)}};
  const auto found = bank_.search_signal("local", form->second, -2.0, kTopPerQuery, &decision);
  std::vector<std::pair<int, float>> scores;
  for (const SignalMatch& m : found) {
    const auto id = static_cast<std::size_t>(m.id);
    const int ref = id < ref_of_id_.size() ? ref_of_id_[id] : -1;
    if (ref < 0) continue;
    if (m.evidence.at("matched").get<bool>()) {
      o.declared = true;
      if (ref == truth) o.right = true;
    }
    auto it =
        std::find_if(scores.begin(), scores.end(), [&](const auto& p) { return p.first == ref; });
    const float s = static_cast<float>(m.evidence.at("inliers").get<int>());
    if (it == scores.end())
      scores.push_back({ref, s});
    else
      it->second = std::max(it->second, s);
  }
  std::sort(scores.begin(), scores.end(), [](const auto& a, const auto& b) {
    return a.second > b.second || (a.second == b.second && a.first < b.first);
  });
  if (scores.size() > kTopPerQuery) scores.resize(kTopPerQuery);
  o.top = std::move(scores);
  return o;
}

SignalInfo EmbedAlone::info() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, "cosine similarity >= %.3f", threshold_);
  return {"embed", buf, "cosine similarity"};
}

Outcome EmbedAlone::evaluate(const Query& q, int truth) const {
  Outcome o;
  const auto form = q.fp.registered.find("embed");
  if (form == q.fp.registered.end() || form->second.forms.empty()) return o;
  // The nearest entries whatever their similarity (ranked metrics reach past the
  // threshold): a threshold of 0 puts margin -1 at similarity -1.
  const SignalParams everything{{"threshold", threshold_text(0)}};
  for (const SignalMatch& m :
       bank_.search_signal("embed", form->second, -1.0, kTopPerQuery, &everything)) {
    const auto id = static_cast<std::size_t>(m.id);
    const int ref = id < ref_of_id_.size() ? ref_of_id_[id] : -1;
    if (ref < 0) continue;
    const float similarity = m.evidence.at("similarity").get<float>();
    if (similarity >= threshold_) {
      o.declared = true;
      if (ref == truth) o.right = true;
    }
    o.top.push_back({ref, similarity});
  }
  return o;
}

}  // namespace hashwall::bench::robustness_detail
