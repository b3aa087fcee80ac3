// Retrieval for the local-feature signal: every bank entry's ORB descriptors in one FAISS
// binary index (each row knows its entry). A query's descriptors vote for entries; the
// best-voted entries are then verified geometrically (local_features.hpp). Derived data:
// rebuilt from the bank's records, with the IVF layout optionally restored from a cache
// (layout()/restore_layout()) so that a new process need not assign every row again.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "local/local_features.hpp"

namespace faiss {
struct IndexBinary;
}

namespace hashwall {

struct LocalCandidate {
  std::int64_t id;  // bank entry
  int votes;        // query descriptors whose near neighbours include one of the entry's
};

struct LocalMatch {
  std::int64_t id;
  int votes;  // query descriptors that found one of the entry's among their neighbours
  LocalVerification verification;
};

struct LocalIndexParams {
  // Up to this many descriptor rows (about 64 entries) an exhaustive IndexBinaryFlat;
  // beyond, an IndexBinaryIVF (docs/BENCHMARKS.md has the cost of each).
  std::size_t ivf_min_rows = 16'384;
  int neighbours = 4;      // per query descriptor
  int vote_distance = 56;  // of 256 bits: a neighbour further away does not vote
  int min_votes = 4;       // an entry with fewer is not worth verifying
  int max_candidates = 8;  // verified per query (per mirror side)
  int nprobe = 8;          // IVF lists visited per query descriptor
  // IVF only: the query votes with this many of its descriptors (an even spread of them:
  // 128 found 50/50 planted copies at 10k entries and 93-100 % of the hard edits with 100
  // known photos, at a third of the cost of 384; docs/BENCHMARKS.md);
  // verification still uses all. Bounds the cost of large banks (docs/BENCHMARKS.md).
  int retrieval_descriptors = 128;
};

class LocalIndex {
 public:
  explicit LocalIndex(LocalIndexParams params = {});
  ~LocalIndex();
  LocalIndex(const LocalIndex&) = delete;
  LocalIndex& operator=(const LocalIndex&) = delete;

  // Entries with no keypoints are kept (they can never be verified) but add no rows.
  void add(std::int64_t id, LocalFeatures features);
  std::size_t entries() const { return stored_.size(); }
  std::size_t rows() const { return row_entry_.size(); }
  std::string type() const;  // "flat" or "ivf<nlist>"
  std::size_t memory_bytes() const;

  // Builds or extends the FAISS index; call after add() and before concurrent searches.
  void prepare() const;
  // The IVF layout after prepare(): its centroids and the list of every row. Empty for a
  // flat index. Assigning rows to lists is the slow part of a build (22 s at 10k
  // entries), so the bank caches this next to itself (docs/BANK_FORMAT.md).
  std::string layout() const;
  // Builds the IVF from a layout made over these same rows (same order), instead of
  // prepare()'s assignment. False, with nothing changed, when the layout does not fit
  // (other row count or list count, a list number out of range, wrong length).
  bool restore_layout(std::string_view bytes);
  // Whether a layout fits an index of `rows` descriptor rows built with `params`; when it
  // does not, why (for `hashwall check`).
  static std::string layout_mismatch(std::string_view bytes, std::size_t rows,
                                     const LocalIndexParams& params);
  // The entries with the most votes, best first. Not thread-safe against add().
  std::vector<LocalCandidate> candidates(const LocalFeatures& query) const;
  // The entry's features; the descriptors point into the index's own storage and stay
  // valid until the next add().
  std::optional<LocalFeatures> features(std::int64_t id) const;
  // The candidates, each verified by a RANSAC fit (verify_local); every verified one is
  // returned, matched or not, most inliers first (ties by id).
  std::vector<LocalMatch> search(const LocalFeatures& query, const LocalVerifyParams& params) const;
  const LocalIndexParams& params() const { return params_; }

 private:
  LocalIndexParams params_;
  void set_hnsw_ef(int ef) const;
  // An IVF over `cent` (nlist centroids), empty; the quantizer kind depends on nlist.
  void make_ivf(std::size_t nlist, const std::vector<std::uint8_t>& cent) const;
  struct Stored {
    std::size_t first_row = 0;
    std::vector<cv::Point2f> points;
    int width = 0, height = 0;
  };
  std::unordered_map<std::int64_t, Stored> stored_;
  std::vector<std::uint8_t> codes_;      // all descriptors, row-major (kept for rebuilds)
  std::vector<std::int64_t> row_entry_;  // row -> entry id
  mutable std::unique_ptr<faiss::IndexBinary> index_;
  mutable std::unique_ptr<faiss::IndexBinary> quantizer_;
  mutable std::vector<std::uint8_t> centroids_;  // IVF only: nlist x kOrbBytes
  mutable std::size_t indexed_rows_ = 0;         // rows already in index_
};

}  // namespace hashwall
