// Private to src/bench: the signals as `bench robustness` scores them (robustness_signals.cpp)
// and what run_robustness() (robustness.cpp) hands them: the references, a query, and
// the outcome of one query for one signal.
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <string>
#include <utility>
#include <vector>

#include "bank/bank.hpp"
#include "bench/robustness.hpp"
#include "match/fingerprint.hpp"
#include "match/matcher.hpp"

namespace hashwall::bench::robustness_detail {

// Predictions kept per query and signal for the ranked metrics. Each query has at most one
// true reference, so deeper ranks only ever add false pairs at the tail of the list.
inline constexpr std::size_t kTopPerQuery = 10;

struct Reference {
  Hash256 pdq;
  cv::Mat phash;  // 8 bytes, cv::img_hash::PHash
  std::int64_t bank_id = 0;
};

// What one edited upload looks like to the signals.
struct Query {
  const Fingerprint& fp;
  const cv::Mat& pixels;  // as decoded for hashing (fast mode)
};

struct Outcome {
  bool declared = false;                   // matched something at the default threshold
  bool right = false;                      // ... and that includes the true reference
  std::vector<std::pair<int, float>> top;  // (reference, score), best first
};

// A signal as the benchmark sees it: a score for every reference (higher = more alike)
// and the default decision. A new signal is one more class here and one line where
// run_robustness() lists them; the tables and plots pick it up.
class BenchSignal {
 public:
  virtual ~BenchSignal() = default;
  virtual SignalInfo info() const = 0;
  virtual Outcome evaluate(const Query& q, int truth) const = 0;
};

class PdqSignal final : public BenchSignal {
 public:
  PdqSignal(const std::vector<Reference>& refs, int threshold, bool dihedral)
      : refs_(refs), threshold_(threshold), dihedral_(dihedral) {}
  SignalInfo info() const override;
  Outcome evaluate(const Query& q, int truth) const override;

 private:
  const std::vector<Reference>& refs_;
  int threshold_;
  bool dihedral_;
};

class PhashSignal final : public BenchSignal {
 public:
  PhashSignal(const std::vector<Reference>& refs, int threshold)
      : refs_(refs), threshold_(threshold) {}
  SignalInfo info() const override;
  Outcome evaluate(const Query& q, int truth) const override;

 private:
  const std::vector<Reference>& refs_;
  int threshold_;
};

// The real decision: hashwall's Matcher over the real bank (thresholds and quality
// gates as recorded in the bank), asked for near misses too so that its joint score ranks
// beyond the thresholds. Declared = a hit that matched (not a near miss).
class MatcherSignal final : public BenchSignal {
 public:
  MatcherSignal(const Matcher& m, const Bank& bank, std::vector<int> ref_of_id)
      : matcher_(m), bank_(bank), ref_of_id_(std::move(ref_of_id)) {}
  SignalInfo info() const override;
  Outcome evaluate(const Query& q, int truth) const override;

 private:
  const Matcher& matcher_;
  const Bank& bank_;
  std::vector<int> ref_of_id_;
};

// Local features alone: the bank's descriptor index proposes entries, a RANSAC fit
// verifies them; the score is the number of geometric inliers.
class LocalAlone final : public BenchSignal {
 public:
  LocalAlone(const Bank& bank, std::vector<int> ref_of_id, int min_inliers)
      : bank_(bank), ref_of_id_(std::move(ref_of_id)), min_inliers_(min_inliers) {}
  SignalInfo info() const override;
  Outcome evaluate(const Query& q, int truth) const override;

 private:
  const Bank& bank_;
  std::vector<int> ref_of_id_;
  int min_inliers_;
};

// The learned embedding alone: cosine similarity over the bank's embedding index.
class EmbedAlone final : public BenchSignal {
 public:
  EmbedAlone(const Bank& bank, std::vector<int> ref_of_id, double threshold)
      : bank_(bank), ref_of_id_(std::move(ref_of_id)), threshold_(threshold) {}
  SignalInfo info() const override;
  Outcome evaluate(const Query& q, int truth) const override;

 private:
  const Bank& bank_;
  std::vector<int> ref_of_id_;
  double threshold_;
};

}  // namespace hashwall::bench::robustness_detail
