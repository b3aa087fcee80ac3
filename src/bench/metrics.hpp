// Retrieval metrics for the robustness benchmark. Pure code.
//
// A prediction is (query, reference, score), higher score = more similar. Each query has
// at most one true reference (the known photo it was made from); distractor queries have
// none. Definitions follow the Image Similarity Challenge 2021 (Douze et al., "The 2021
// Image Similarity Dataset and Challenge", section 4.1): all predictions of all queries
// are ranked by score in one list, and micro-AP = sum over the list of
// precision(i) * delta-recall(i), recall counted over the queries that have a true
// reference. Ties are broken pessimistically (false before true), as the ISC code does,
// so a signal cannot gain from giving everything the same score.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace hashwall::bench {

struct Prediction {
  std::int64_t query = 0;
  std::int64_t ref = 0;
  double score = 0;
};

// truth[q] = the true reference of query q, or -1 (distractor).
using GroundTruth = std::vector<std::int64_t>;

struct PrPoint {
  double score;  // threshold: predictions with score >= this are accepted
  double precision;
  double recall;
};

// Number of queries that have a true reference.
std::int64_t positives(const GroundTruth& truth);

// Micro average precision (ISC2021). Duplicate (query, ref) pairs keep their best score.
// 0 when no query has a true reference.
double micro_ap(std::span<const Prediction> predictions, const GroundTruth& truth);

// The precision-recall curve at every distinct score, best score first.
std::vector<PrPoint> pr_curve(std::span<const Prediction> predictions, const GroundTruth& truth);

struct OperatingPoint {
  double recall = 0;     // best recall with precision >= the target
  double score = 0;      // the strictest threshold (highest score) that achieves it
  bool reached = false;  // false when no threshold reaches the target precision
};
// Only thresholds between distinct scores count: a threshold cannot split a tie.
OperatingPoint recall_at_precision(std::span<const Prediction> predictions,
                                   const GroundTruth& truth, double precision);

// A thinned copy of a curve (at most max_points, the first and last kept) for plots.
std::vector<PrPoint> thin_curve(const std::vector<PrPoint>& curve, std::size_t max_points);

}  // namespace hashwall::bench
