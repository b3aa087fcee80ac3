// `hashwall bench robustness`: what is caught and what is missed. A corpus is split into
// known photos (indexed into a temporary bank, as `hashwall index` does) and distractors;
// every photo of both sets is edited with every edit of the registry (bench/edits.hpp),
// encoded as an upload, decoded and fingerprinted by the real pipeline, and scored by each
// signal. Distractors are edited too: an edited unrelated photo must not match either.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/metrics.hpp"
#include "local/local_features.hpp"

namespace hashwall {
class Embedder;
}

namespace hashwall::bench {

struct RobustnessOptions {
  std::vector<std::filesystem::path> files;  // the corpus, image files
  int known = 200;                           // photos indexed into the bank
  int distractors = -1;                      // unrelated photos; -1: all the others
  std::vector<std::string> edits;            // names; empty: the whole registry
  std::uint64_t seed = 1;
  // Photos are edited at most this large on their long side (0: as they are), so that a
  // few 5120x2880 wallpapers do not dominate the run time. The bank holds the full file.
  int max_side = 2048;
  int phash_threshold = 10;  // of 64 bits: the PHash baseline's match rule
  // The signals the temporary bank records (and the combined decision uses): "pdq"
  // always, "local", "embed" (needs `embedder`).
  std::vector<std::string> signals = {"pdq", "local"};
  const Embedder* embedder = nullptr;
  int local_min_inliers = kLocalMinInliers;
  double precision_target = 0.999;
  int jobs = 1;
  std::filesystem::path work_dir;  // the temporary bank goes here (must exist)
  // Called on the calling thread, often (the CLI progress line throttles itself).
  std::function<void(const char* phase, std::size_t done, std::size_t total)> progress;
  const std::atomic<bool>* stop = nullptr;  // set: throws Error{Interrupted}
};

// One signal's numbers on one set of queries.
struct SignalScore {
  std::int64_t positives = 0;      // queries made from a known photo
  std::int64_t caught = 0;         // ... matched to that photo at the default threshold
  std::int64_t negatives = 0;      // queries made from a distractor
  std::int64_t false_matches = 0;  // ... matched to anything at the default threshold
  double recall = 0;
  OperatingPoint at_precision;  // best recall at precision >= precision_target
  double micro_ap = 0;
};

struct ResultRow {
  std::string name;                  // an edit, a family, or "all"
  std::string family;                // for edit rows
  std::vector<SignalScore> signals;  // in RobustnessReport::signals order
};

struct SignalInfo {
  std::string name;   // column header: "PDQ", "PDQ+dihedral", "PHash (baseline)", "combined"
  std::string rule;   // the default decision, e.g. "distance <= 31"
  std::string score;  // what is ranked, e.g. "-(Hamming distance)"
};

struct RobustnessReport {
  std::int64_t known = 0, distractors = 0, queries = 0;
  std::int64_t known_low_quality = 0;  // known photos under the bank's minimum PDQ quality
  std::uint64_t seed = 0;
  int max_side = 0;
  double precision_target = 0;
  std::vector<std::string> bank_signals;
  std::string embed_model;
  // Largest score any distractor query reached per signal (e.g. local inliers), so a
  // threshold's margin is visible.
  std::vector<double> max_distractor_score;
  std::vector<SignalInfo> signals;
  std::vector<ResultRow> edits, families;
  ResultRow overall;
  std::vector<std::vector<PrPoint>> pr_curves;  // per signal, all queries, thinned
  std::vector<std::string> skipped;             // unreadable files
  // Photos left out because the matcher finds them in an earlier photo of the corpus
  // (the same photo resized or cropped): (left out, the photo it copies).
  std::vector<std::pair<std::string, std::string>> corpus_copies;
  double seconds = 0;
};

RobustnessReport run_robustness(const RobustnessOptions& options);

nlohmann::ordered_json robustness_json(const RobustnessReport& report);
std::string robustness_markdown(const RobustnessReport& report);

}  // namespace hashwall::bench
