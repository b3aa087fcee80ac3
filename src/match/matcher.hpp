// The decision: does a query image match the bank, with which entries, and why.
#pragma once

#include <optional>
#include <vector>

#include "bank/bank.hpp"
#include "hash/pdq.hpp"
#include "match/fingerprint.hpp"

namespace hashwall {

struct MatchOptions {
  std::optional<int> threshold;    // PDQ distance; default: the bank's recorded threshold
  std::optional<int> min_quality;  // default: the bank's recorded minimum
  int top = 10;                    // at most this many hits are reported
  bool dihedral = true;            // also try the 7 rotated/flipped variants
};

enum class Verdict {
  NoMatch,
  Match,
  LowQuality,  // the query's PDQ quality is below the minimum: too featureless to decide
};
const char* verdict_name(Verdict) noexcept;  // "no-match", "match", "low-quality"

struct MatchHit {
  Entry entry;
  int distance = 0;             // PDQ Hamming distance (0 for an exact file match)
  Dihedral variant = Dihedral::Original;  // which transform of the query matched
  bool exact = false;           // same SHA-256: byte-identical file
};

struct MatchResult {
  Verdict verdict = Verdict::NoMatch;
  int threshold = 0;    // the thresholds the decision used
  int min_quality = 0;
  std::vector<MatchHit> hits;  // nearest first; exact matches first of all
};

class Matcher {
 public:
  Matcher(const Bank& bank, MatchOptions options);
  // Thread-safe (the bank's search and lookups are).
  MatchResult match(const Fingerprint& query) const;

 private:
  const Bank& bank_;
  MatchOptions options_;
  int threshold_;
  int min_quality_;
};

}  // namespace hashwall
