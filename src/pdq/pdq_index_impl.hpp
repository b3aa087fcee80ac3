// Private to src/bank: what the PDQ index types share (pdq_index.cpp: flat, the factory
// and the cache file; pdq_multihash.cpp; pdq_compact.cpp).
#pragma once

#include <faiss/IndexBinaryFlat.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <span>
#include <vector>

#include "core/error.hpp"
#include "core/file.hpp"
#include "pdq/pdq_index.hpp"

namespace hashwall::pdq_detail {

using faiss_idx = faiss::Index::idx_t;

inline constexpr int kBits = 256;
inline constexpr std::size_t kCode = 32;  // bytes per PDQ hash
// Multi-index hashing: the 256 bits split into 16 disjoint 16-bit sub-hashes. If two
// hashes differ in d bits, some sub-hash differs in at most floor(d / 16) bits
// (pigeonhole), so probing every sub-hash with up to floor(d / 16) flipped bits finds
// every match: with 1 flip the search is exact up to d = 31, PDQ's usual threshold.
inline constexpr int kSubHashes = 16;
inline constexpr int kSubBits = 16;
// Above this many flips (d >= 48) the probes cost more than a scan of the storage.
inline constexpr int kMaxFlips = 2;

inline constexpr char kMagic[8] = {'H', 'W', 'P', 'D', 'Q', 'I', 'X', '1'};
inline constexpr std::size_t kMaxTypeLength = 64;

inline void sort_hits(std::vector<IndexHit>& hits) {
  std::sort(hits.begin(), hits.end(), [](const IndexHit& a, const IndexHit& b) {
    return a.distance != b.distance ? a.distance < b.distance : a.id < b.id;
  });
}

inline std::vector<std::uint8_t> pack(std::span<const Hash256> hashes) {
  std::vector<std::uint8_t> out(hashes.size() * kCode);
  for (std::size_t i = 0; i < hashes.size(); ++i)
    std::memcpy(out.data() + i * kCode, hashes[i].bytes.data(), kCode);
  return out;
}

// Tombstones, shared by both implementations: a removed row stays in the structure,
// marked dead, until dead rows reach a quarter of the live ones; then the index is
// compacted (rebuilt from its live rows). A DELETE on a 1M-entry bank so costs a scan of
// the ids (milliseconds), not a rebuild from SQLite (seconds).
class Tombstones {
 public:
  bool dead(std::size_t row) const noexcept {
    return row / 64 < bits_.size() && (bits_[row / 64] >> (row % 64) & 1u);
  }
  // True when the row was live.
  bool kill(std::size_t row) {
    if (dead(row)) return false;
    if (bits_.size() <= row / 64) bits_.resize(row / 64 + 1, 0);
    bits_[row / 64] |= std::uint64_t{1} << (row % 64);
    ++count_;
    return true;
  }
  std::size_t count() const noexcept { return count_; }
  std::size_t memory_bytes() const noexcept { return bits_.capacity() * 8; }
  void clear() noexcept {
    bits_.clear();
    bits_.shrink_to_fit();
    count_ = 0;
  }

 private:
  std::vector<std::uint64_t> bits_;
  std::size_t count_ = 0;
};

// Row -> bank id. Bank ids are SQLite rowids, in practice all below 2^32: they are kept
// in 4 bytes each until one is not, and then in 8 (the whole column widens once).
class IdColumn {
 public:
  std::size_t size() const noexcept { return wide_ ? wide_ids_.size() : narrow_.size(); }
  bool empty() const noexcept { return size() == 0; }
  std::int64_t operator[](std::size_t row) const noexcept {
    return wide_ ? wide_ids_[row] : static_cast<std::int64_t>(narrow_[row]);
  }
  void append(std::span<const std::int64_t> ids) {
    if (!wide_ && std::any_of(ids.begin(), ids.end(), [](std::int64_t id) {
          return id < 0 ||
                 id > static_cast<std::int64_t>(std::numeric_limits<std::uint32_t>::max());
        })) {
      wide_ids_.assign(narrow_.begin(), narrow_.end());
      narrow_.clear();
      narrow_.shrink_to_fit();
      wide_ = true;
    }
    if (wide_) {
      wide_ids_.insert(wide_ids_.end(), ids.begin(), ids.end());
    } else {
      // Geometric growth for one-at-a-time adds; a first bulk add is sized exactly.
      const std::size_t need = narrow_.size() + ids.size();
      if (need > narrow_.capacity()) narrow_.reserve(std::max(need, narrow_.capacity() * 3 / 2));
      for (const std::int64_t id : ids) narrow_.push_back(static_cast<std::uint32_t>(id));
    }
  }
  void clear() noexcept {
    narrow_.clear();
    narrow_.shrink_to_fit();
    wide_ids_.clear();
    wide_ids_.shrink_to_fit();
    wide_ = false;
  }
  std::size_t memory_bytes() const noexcept {
    return narrow_.capacity() * 4 + wide_ids_.capacity() * 8;
  }

 private:
  std::vector<std::uint32_t> narrow_;
  std::vector<std::int64_t> wide_ids_;
  bool wide_ = false;
};

// Shared by every implementation: the bank ids of the rows, removal, and the cache file.
class BinaryIndexBase : public PdqIndex {
 public:
  void add(std::span<const std::int64_t> ids, std::span<const Hash256> hashes) override {
    if (ids.size() != hashes.size())
      throw Error(ErrorKind::Usage, "", "PdqIndex::add: ids and hashes differ in length");
    if (ids.empty()) return;
    const auto bytes = pack(hashes);
    add_raw(ids, bytes.data());
  }

  std::size_t remove(std::span<const std::int64_t> ids) override {
    if (ids.empty() || ids_.empty()) return 0;
    std::vector<std::int64_t> gone(ids.begin(), ids.end());
    std::sort(gone.begin(), gone.end());
    std::size_t removed = 0;
    for (std::size_t row = 0; row < ids_.size(); ++row)
      if (std::binary_search(gone.begin(), gone.end(), ids_[row])) removed += dead_.kill(row);
    if (dead_.count() > 0 && dead_.count() * 4 > size()) compact();
    return removed;
  }

  std::size_t size() const override { return ids_.size() - dead_.count(); }

  std::vector<std::pair<std::int64_t, Hash256>> contents() const override {
    std::vector<std::pair<std::int64_t, Hash256>> out;
    out.reserve(size());
    const std::uint8_t* codes = codes_data();
    for (std::size_t i = 0; i < ids_.size(); ++i) {
      if (dead_.dead(i)) continue;
      auto& [id, hash] = out.emplace_back();
      id = ids_[i];
      std::memcpy(hash.bytes.data(), codes + i * kCode, kCode);
    }
    return out;
  }

  void for_each(const std::function<void(std::int64_t, const Hash256&)>& fn) const override {
    const std::uint8_t* codes = codes_data();
    Hash256 h;
    for (std::size_t i = 0; i < ids_.size(); ++i) {
      if (dead_.dead(i)) continue;
      std::memcpy(h.bytes.data(), codes + i * kCode, kCode);
      fn(ids_[i], h);
    }
  }

  void save(const std::filesystem::path& file, std::uint64_t generation) const override {
    // Live rows only: a loaded cache starts without tombstones.
    const std::string t = type();
    const std::uint8_t* codes = codes_data();
    const std::size_t n = size();
    std::string out;
    out.reserve(8 + 8 + 8 + t.size() + 8 + n * (8 + kCode) + 8);
    out.append(kMagic, sizeof kMagic);
    put_le(out, generation);
    put_le(out, t.size());
    out.append(t);
    put_le(out, n);
    for (std::size_t i = 0; i < ids_.size(); ++i)
      if (!dead_.dead(i)) put_le(out, static_cast<std::uint64_t>(ids_[i]));
    for (std::size_t i = 0; i < ids_.size(); ++i)
      if (!dead_.dead(i)) out.append(reinterpret_cast<const char*>(codes + i * kCode), kCode);
    put_le(out, fnv1a(reinterpret_cast<const std::uint8_t*>(out.data()), out.size()));
    write_file_atomically(file, out);
  }

  // codes: ids.size() hashes of 32 bytes, row after row.
  virtual void add_raw(std::span<const std::int64_t> ids, const std::uint8_t* codes) = 0;

 protected:
  // The frame of every range_search: for each query, fill(query bytes, found) appends
  // (row, distance) pairs within the radius, a row possibly more than once (a near copy
  // shares several sub-hashes with the query); here they become one hit per live row,
  // nearest first.
  template <class Fill>
  std::vector<std::vector<IndexHit>> search_each(std::span<const Hash256> queries, int max_distance,
                                                 Fill&& fill) const {
    std::vector<std::vector<IndexHit>> out(queries.size());
    if (queries.empty() || ids_.empty() || max_distance < 0) return out;
    std::vector<std::pair<std::uint32_t, int>> found;
    for (std::size_t qi = 0; qi < queries.size(); ++qi) {
      found.clear();
      fill(queries[qi].bytes.data(), found);
      std::sort(found.begin(), found.end());
      found.erase(std::unique(found.begin(), found.end()), found.end());
      auto& hits = out[qi];
      for (const auto& [row, d] : found)
        if (!dead_.dead(row)) hits.push_back({ids_[row], d});
      sort_hits(hits);
    }
    return out;
  }

  // The stored hashes, row after row, in the order of ids_ (dead rows included).
  virtual const std::uint8_t* codes_data() const = 0;
  // Drops every row (the structure becomes empty, as constructed).
  virtual void clear_rows() = 0;

  // Rebuilds the structure from its live rows, in their order.
  void compact() {
    std::vector<std::int64_t> ids;
    std::vector<std::uint8_t> codes;
    ids.reserve(size());
    codes.reserve(size() * kCode);
    const std::uint8_t* all = codes_data();
    for (std::size_t i = 0; i < ids_.size(); ++i) {
      if (dead_.dead(i)) continue;
      ids.push_back(ids_[i]);
      codes.insert(codes.end(), all + i * kCode, all + (i + 1) * kCode);
    }
    clear_rows();
    ids_.clear();
    dead_.clear();
    if (!ids.empty()) add_raw(ids, codes.data());
  }

  IdColumn ids_;  // row -> bank id
  Tombstones dead_;
};

// Same sub-hash layout as FAISS's IndexBinaryMultiHash: sub-hash h is the little-endian
// 16-bit word at bytes 2h, 2h+1.
inline std::uint32_t sub_hash(const std::uint8_t* code, int h) noexcept {
  return static_cast<std::uint32_t>(code[2 * h] | (code[2 * h + 1] << 8));
}

// The candidate check, the hot loop of a multi-hash search: the distance from q to each
// listed row, keeping those within max_distance (pdq_index.cpp).
void check_rows(const std::uint8_t* q, const std::uint8_t* codes, const std::uint32_t* rows,
                std::size_t count, int max_distance,
                std::vector<std::pair<std::uint32_t, int>>& out);
// Same, over a contiguous range of rows [first, last).
void check_range(const std::uint8_t* q, const std::uint8_t* codes, std::size_t first,
                 std::size_t last, int max_distance,
                 std::vector<std::pair<std::uint32_t, int>>& out);

std::unique_ptr<BinaryIndexBase> make_multihash_index();
std::unique_ptr<BinaryIndexBase> make_compact_index();

}  // namespace hashwall::pdq_detail
