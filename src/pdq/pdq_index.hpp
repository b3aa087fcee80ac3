// Search structures over PDQ hashes (FAISS binary indexes). A PdqIndex is a derived
// cache of the bank's records: it can always be rebuilt from SQLite.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "hash/hash256.hpp"

namespace hashwall {

struct IndexHit {
  std::int64_t id;  // bank entry id
  int distance;     // Hamming distance
};

// One interface, several implementations (FAISS IndexBinaryFlat; multi-index hashing with
// plain or compressed posting lists).
class PdqIndex {
 public:
  virtual ~PdqIndex() = default;
  // The configuration string that rebuilds this index: "flat", "multihash" or "compact".
  virtual std::string type() const = 0;
  virtual void add(std::span<const std::int64_t> ids, std::span<const Hash256> hashes) = 0;
  // Removes every row holding one of these bank ids; returns how many rows went. Rows are
  // marked dead and skipped at once; the structure compacts itself when they pile up.
  virtual std::size_t remove(std::span<const std::int64_t> ids) = 0;
  // Live rows.
  virtual std::size_t size() const = 0;
  // For each query, every indexed entry within max_distance (inclusive), nearest first.
  // Exact for every implementation: the multi-index ones probe with as many flips as
  // pigeonhole over their sub-hashes needs (multihash up to max_distance 47, compact up
  // to 31) and fall back to a scan for larger radii.
  virtual std::vector<std::vector<IndexHit>> range_search(std::span<const Hash256> queries,
                                                          int max_distance) const = 0;
  // Approximate memory held by the index, in bytes.
  virtual std::size_t memory_bytes() const = 0;
  // Every live (bank id, hash) pair held, in insertion order: lets `check` compare the whole
  // index with the records, not only a sample of searches.
  virtual std::vector<std::pair<std::int64_t, Hash256>> contents() const = 0;
  // The same pairs, one call each, without building a copy of the index (opening a large
  // bank checks its cache this way: at 1M entries a copy costs more than the check).
  virtual void for_each(const std::function<void(std::int64_t, const Hash256&)>& fn) const = 0;

  // Cache file: magic, generation, ids and the FAISS index, written to a temp file and
  // renamed, so a crash never leaves a half-written cache.
  virtual void save(const std::filesystem::path& file, std::uint64_t generation) const = 0;
};

// One row per entry that any query reached: its smallest distance and the first query that
// reached it at that distance (e.g. a dihedral variant); nearest first, ties by id.
struct PdqMatch {
  std::int64_t id;
  int distance;
  int query_index;
};
std::vector<PdqMatch> best_per_entry(const std::vector<std::vector<IndexHit>>& per_query);

// "flat", "multihash", "compact" (throws Error{Usage} otherwise).
std::unique_ptr<PdqIndex> make_pdq_index(std::string_view type);
// Loads a cache file; returns nullptr when missing, unreadable or not of this format.
// On success, *generation receives the bank generation it was saved at.
std::unique_ptr<PdqIndex> load_pdq_index(const std::filesystem::path& file,
                                         std::uint64_t* generation);

}  // namespace hashwall
