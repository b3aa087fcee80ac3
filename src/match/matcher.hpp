// The decision: does a query image match the bank, with which entries, and why.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bank/bank.hpp"
#include "embed/embedder.hpp"
#include "hash/pdq.hpp"
#include "match/fingerprint.hpp"
#include "pdq/pdq_signal.hpp"

namespace hashwall {

// What a caller's lists say of an entry (issue #17: named lists, allowlists, disabling).
enum class EntryRole {
  Block,     // may decide a match: every entry unless told otherwise
  Allow,     // a known-harmless photo (an allowlist entry): see Verdict::Allowed
  Disabled,  // never decides and is never reported (disabled without being deleted)
};

struct MatchOptions {
  std::optional<int> threshold;    // PDQ distance; default: the bank's recorded threshold
  std::optional<int> min_quality;  // default: the bank's recorded minimum
  int top = 10;                    // at most this many hits are reported
  bool dihedral = true;            // also try the 7 rotated/flipped variants
  // Which of the bank's signals may decide ("pdq", "local", "embed", registered ones);
  // empty: all it has.
  // An exact file match (same SHA-256) always counts.
  std::vector<std::string> signals;
  std::optional<int> local_min_inliers;   // default: the bank's recorded value
  std::optional<double> embed_threshold;  // default: the bank's recorded value
  // Decision parameters of the bank's signals, by signal name, over the bank's recorded ones
  // and the options above (Signal::validate must accept the result; Error{Usage} otherwise).
  // Not for untrusted callers as they are: "pdq" here sets the threshold and quality gate
  // past any limit a service checks on `threshold` and `min_quality`.
  std::map<std::string, SignalParams> decisions;
  // Also report near misses: entries up to twice as far from each threshold (PDQ distance
  // up to 2x the threshold, similarity down to 2t-1, half the inliers), with matched=false
  // and a negative score. The verdict still uses the thresholds. For ranking and
  // calibration (bench robustness); a near miss is not a match.
  bool near_misses = false;
  // Only entries of these lists (by name) take part; empty: every list's.
  std::vector<std::string> lists;
  // Each entry's role, asked once per entry a search reaches; empty: the entry's own list
  // and state say (entry_role_of). Called from the matching thread; must be thread-safe
  // when the Matcher is shared.
  std::function<EntryRole(const Entry&)> entry_role;
};

// An entry's role from its list and state at `now` (unix seconds): disabled when it or its
// list is disabled then, or when `lists` is not empty and does not name its list; else
// its list's kind.
EntryRole entry_role_of(const Entry& e, std::int64_t now, const std::vector<std::string>& lists);

enum class Verdict {
  NoMatch,
  Match,
  LowQuality,  // the query's PDQ quality is below the minimum: too featureless to decide
  // The query matches an allowlisted entry at least as strongly as any blocking one (an
  // identical file first, then the joint score): a known-harmless photo, or a known
  // collision. Not a match.
  Allowed,
};
// "no-match", "match", "low-quality", "allowed"
const char* verdict_name(Verdict) noexcept;

struct MatchHit {
  Entry entry;
  // Which signal decided: "sha256" (byte-identical file), "pdq", "embed", "local" or a
  // registered signal (the first of these that matched, in that order); the others'
  // evidence is filled in where they were computed.
  std::string signal;
  bool exact = false;                        // same SHA-256: byte-identical file
  std::vector<std::string> signals_matched;  // every signal that matched this entry
  // The evidence of the signals (signal/signal.hpp: pdq, local, embed and registered ones),
  // by name: from their searches, or for pdq from Signal::compare when another signal found
  // the entry.
  struct Evidence {
    double margin = 0;  // on the joint scale: >= 0 is a match
    int form = 0;       // which query form came nearest
    nlohmann::ordered_json detail;
    nlohmann::ordered_json extra;  // SignalMatch::extra: not reported
    // Whether the margin counts towards the score: false where the signal may not decide
    // (PDQ's quality gate, a signal the caller left out).
    bool decides = true;
  };
  std::map<std::string, Evidence> registered;
  // Views of that evidence, where the signal reached this entry. PDQ's Hamming distance,
  // best over the query's forms tried (256 when PDQ has no evidence), and which transform
  // of the query came nearest:
  int distance() const;
  Dihedral variant() const;
  // The embedding's cosine similarity:
  std::optional<float> similarity() const;
  // The local features' geometric inliers, whether the mirror image found them, where
  // the known photo sits in the query and the inlier pairs (entry, query), normalised:
  std::optional<int> inliers() const;
  bool local_mirrored() const;
  std::optional<std::array<cv::Point2f, 4>> region() const;
  std::vector<std::pair<cv::Point2f, cv::Point2f>> inlier_pairs() const;
  // One score over all signals (see joint_score); >= 0 for every match. Hits are sorted by it.
  double score = 0;
  bool matched = true;  // false only for a near miss (MatchOptions::near_misses)
  bool allow = false;   // the entry's role is EntryRole::Allow
};

// Each signal's evidence as its margin past its own threshold, on one scale from -1 to 1:
// 0 exactly at the threshold, 1 certain, -1 twice as far on the wrong side.
//   PDQ:       (T - d) / T                  (d = 0 gives 1, d = 2T gives -1)
//   embedding: (s - t) / (1 - t)            (s = 1 gives 1, s = 2t - 1 gives -1)
//   local:     (n - m) / n if n >= m, else (n - m) / m   (n = 2m gives 0.5, n -> inf gives 1)
//   sha256:    1
//   every signal gives its own margin (SignalMatch::margin; pdq_margin, embed_margin and
//   local_margin are pdq's, embed's and local's)
double embed_margin(double similarity, double threshold);
double local_margin(int inliers, int min_inliers);
// A hit's score: its strongest signal's margin plus a tenth of each other signal's positive
// margin (agreeing signals add a little confidence). Only evidence that decides counts
// (Evidence::decides: PDQ where the query's and the entry's quality pass the gate).
double joint_score(const MatchHit& h);

struct MatchResult {
  Verdict verdict = Verdict::NoMatch;
  int threshold = 0;  // the thresholds the decision used
  int min_quality = 0;
  std::vector<std::string> signals;  // the signals that took part
  int local_min_inliers = 0;
  double embed_threshold = 0;
  // The decision parameters each signal that took part used (pdq's included).
  std::map<std::string, SignalParams> registered_params;
  std::vector<MatchHit> hits;  // highest score first (exact matches first of all)
};

class Matcher {
 public:
  Matcher(const Bank& bank, MatchOptions options);
  // Thread-safe (the bank's search and lookups are).
  MatchResult match(const Fingerprint& query) const;
  // Only the file's own identity: the entries with this SHA-256 or MD5 (empty: not looked
  // up), under the same roles and verdict rules as match(). For a file that is not decoded
  // as one image (a video, whose frames are matched apart).
  MatchResult match_file(const std::string& sha256, const std::string& md5) const;
  const MatchOptions& options() const { return options_; }
  // Whether the bank has this signal and the options let it decide.
  bool uses(std::string_view signal) const { return use(signal); }

 private:
  // The exact hits (same bytes): by SHA-256, then by MD5 (format 6's file-hash lists).
  void add_exact_hits(MatchResult& r, const std::string& sha256, const std::string& md5,
                      const std::function<EntryRole(const Entry&)>& role) const;
  const Bank& bank_;
  MatchOptions options_;
  bool use(std::string_view signal) const;
  int threshold_;
  int min_quality_;
  int local_min_inliers_;
  double embed_threshold_;
  // Decision parameters of the bank's signals, overrides applied.
  std::map<std::string, SignalParams> decisions_;
};

}  // namespace hashwall
