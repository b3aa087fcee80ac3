#include "bench/metrics.hpp"

#include <algorithm>

namespace hashwall::bench {

namespace {

struct Ranked {
  double score;
  bool correct;
};

// Best score per (query, ref), then all of them ranked best first, false before true on
// ties (ISC2021's pessimistic order).
std::vector<Ranked> rank(std::span<const Prediction> predictions, const GroundTruth& truth) {
  std::vector<Prediction> p(predictions.begin(), predictions.end());
  std::sort(p.begin(), p.end(), [](const Prediction& a, const Prediction& b) {
    if (a.query != b.query) return a.query < b.query;
    if (a.ref != b.ref) return a.ref < b.ref;
    return a.score > b.score;
  });
  std::vector<Ranked> out;
  out.reserve(p.size());
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (i > 0 && p[i].query == p[i - 1].query && p[i].ref == p[i - 1].ref) continue;
    const bool known_query = p[i].query >= 0 && static_cast<std::size_t>(p[i].query) < truth.size();
    out.push_back({p[i].score, known_query &&
                                   truth[static_cast<std::size_t>(p[i].query)] == p[i].ref &&
                                   p[i].ref >= 0});
  }
  std::sort(out.begin(), out.end(), [](const Ranked& a, const Ranked& b) {
    if (a.score != b.score) return a.score > b.score;
    return !a.correct && b.correct;
  });
  return out;
}

}  // namespace

std::int64_t positives(const GroundTruth& truth) {
  return std::count_if(truth.begin(), truth.end(), [](std::int64_t r) { return r >= 0; });
}

double micro_ap(std::span<const Prediction> predictions, const GroundTruth& truth) {
  const auto npos = positives(truth);
  if (npos == 0) return 0;
  const auto ranked = rank(predictions, truth);
  double ap = 0;
  std::int64_t tp = 0;
  for (std::size_t i = 0; i < ranked.size(); ++i) {
    if (!ranked[i].correct) continue;
    ++tp;
    ap += static_cast<double>(tp) / static_cast<double>(i + 1);
  }
  return ap / static_cast<double>(npos);
}

std::vector<PrPoint> pr_curve(std::span<const Prediction> predictions, const GroundTruth& truth) {
  const auto npos = positives(truth);
  const auto ranked = rank(predictions, truth);
  std::vector<PrPoint> curve;
  std::int64_t tp = 0;
  for (std::size_t i = 0; i < ranked.size(); ++i) {
    tp += ranked[i].correct;
    const bool group_end = i + 1 == ranked.size() || ranked[i + 1].score != ranked[i].score;
    if (!group_end) continue;
    curve.push_back({ranked[i].score, static_cast<double>(tp) / static_cast<double>(i + 1),
                     npos ? static_cast<double>(tp) / static_cast<double>(npos) : 0.0});
  }
  return curve;
}

OperatingPoint recall_at_precision(std::span<const Prediction> predictions,
                                   const GroundTruth& truth, double precision) {
  OperatingPoint best;
  for (const PrPoint& p : pr_curve(predictions, truth)) {
    if (p.precision < precision) continue;
    if (!best.reached || p.recall > best.recall) best = {p.recall, p.score, true};
  }
  return best;
}

std::vector<PrPoint> thin_curve(const std::vector<PrPoint>& curve, std::size_t max_points) {
  if (curve.size() <= max_points || max_points < 2) return curve;
  std::vector<PrPoint> out;
  const double step = static_cast<double>(curve.size() - 1) / static_cast<double>(max_points - 1);
  for (std::size_t i = 0; i < max_points; ++i)
    out.push_back(curve[std::min(curve.size() - 1, static_cast<std::size_t>(i * step + 0.5))]);
  return out;
}

}  // namespace hashwall::bench
