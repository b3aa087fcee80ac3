// PDQ search indexes over FAISS binary structures, and their cache file
// (docs/BANK_FORMAT.md, "Index cache file").
#include "bank/pdq_index.hpp"

#include <faiss/IndexBinaryFlat.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

#include "core/error.hpp"
#include "core/file.hpp"

namespace hashwall {

namespace {

using faiss_idx = faiss::Index::idx_t;

constexpr int kBits = 256;
constexpr std::size_t kCode = 32;  // bytes per PDQ hash
// Multi-index hashing: the 256 bits split into 16 disjoint 16-bit sub-hashes. If two
// hashes differ in d bits, some sub-hash differs in at most floor(d / 16) bits
// (pigeonhole), so probing every sub-hash with up to floor(d / 16) flipped bits finds
// every match: with 1 flip the search is exact up to d = 31, PDQ's usual threshold.
constexpr int kSubHashes = 16;
constexpr int kSubBits = 16;
// Above this many flips (d >= 48) the probes cost more than a scan of the storage.
constexpr int kMaxFlips = 2;

constexpr char kMagic[8] = {'H', 'W', 'P', 'D', 'Q', 'I', 'X', '1'};
constexpr std::size_t kMaxTypeLength = 64;

void sort_hits(std::vector<IndexHit>& hits) {
  std::sort(hits.begin(), hits.end(), [](const IndexHit& a, const IndexHit& b) {
    return a.distance != b.distance ? a.distance < b.distance : a.id < b.id;
  });
}

std::vector<std::uint8_t> pack(std::span<const Hash256> hashes) {
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
          return id < 0 || id > static_cast<std::int64_t>(std::numeric_limits<std::uint32_t>::max());
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
  std::size_t memory_bytes() const noexcept { return narrow_.capacity() * 4 + wide_ids_.capacity() * 8; }

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
      if (!dead_.dead(i))
        out.append(reinterpret_cast<const char*>(codes + i * kCode), kCode);
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
// listed row, keeping those within max_distance. Compiled twice (POPCNT and baseline
// x86-64, chosen once by the loader) because Debian builds for the baseline.
__attribute__((target_clones("popcnt", "default"))) void check_rows(
    const std::uint8_t* q, const std::uint8_t* codes, const std::uint32_t* rows,
    std::size_t count, int max_distance, std::vector<std::pair<std::uint32_t, int>>& out) {
  std::uint64_t qw[4];
  std::memcpy(qw, q, kCode);
  for (std::size_t k = 0; k < count; ++k) {
    // Rows are scattered over the codes: fetch a few ahead so the misses overlap.
    if (k + 8 < count) __builtin_prefetch(codes + std::size_t{rows[k + 8]} * kCode);
    const std::uint8_t* c = codes + std::size_t{rows[k]} * kCode;
    std::uint64_t w[4];
    std::memcpy(w, c, kCode);
    const int d = std::popcount(qw[0] ^ w[0]) + std::popcount(qw[1] ^ w[1]) +
                  std::popcount(qw[2] ^ w[2]) + std::popcount(qw[3] ^ w[3]);
    if (d <= max_distance) out.emplace_back(rows[k], d);
  }
}

// Same, over a contiguous range of rows [first, last).
__attribute__((target_clones("popcnt", "default"))) void check_range(
    const std::uint8_t* q, const std::uint8_t* codes, std::size_t first, std::size_t last,
    int max_distance, std::vector<std::pair<std::uint32_t, int>>& out) {
  std::uint64_t qw[4];
  std::memcpy(qw, q, kCode);
  for (std::size_t row = first; row < last; ++row) {
    std::uint64_t w[4];
    std::memcpy(w, codes + row * kCode, kCode);
    const int d = std::popcount(qw[0] ^ w[0]) + std::popcount(qw[1] ^ w[1]) +
                  std::popcount(qw[2] ^ w[2]) + std::popcount(qw[3] ^ w[3]);
    if (d <= max_distance) out.emplace_back(static_cast<std::uint32_t>(row), d);
  }
}

// Exhaustive search over FAISS's IndexBinaryFlat storage. The scan is check_range, not
// IndexBinaryFlat::range_search: FAISS's range search allocates a result buffer of
// several hundred kB per call (faiss::BufferList), which cost more than the scan itself
// for the one-to-eight-hash searches the matcher makes (measured under ASan, where it
// dominated `check`).
class FlatPdqIndex final : public BinaryIndexBase {
 public:
  std::string type() const override { return "flat"; }

  void add_raw(std::span<const std::int64_t> ids, const std::uint8_t* codes) override {
    if (ids_.size() + ids.size() > std::numeric_limits<std::uint32_t>::max())
      throw Error(ErrorKind::Usage, "", "flat index: more than 2^32 - 1 entries");
    flat_.add(static_cast<faiss_idx>(ids.size()), codes);
    ids_.append(ids);
  }

  std::vector<std::vector<IndexHit>> range_search(std::span<const Hash256> queries,
                                                  int max_distance) const override {
    return search_each(queries, max_distance, [&](const std::uint8_t* q, auto& found) {
      check_range(q, flat_.xb.data(), 0, ids_.size(), max_distance, found);
    });
  }

  std::size_t memory_bytes() const override {
    return sizeof(*this) + flat_.xb.capacity() + ids_.memory_bytes() +
           dead_.memory_bytes();
  }

 protected:
  const std::uint8_t* codes_data() const override { return flat_.xb.data(); }
  void clear_rows() override {
    flat_.reset();
    flat_.xb.shrink_to_fit();
  }

 private:
  faiss::IndexBinaryFlat flat_{kBits};
};

// Multi-index hashing (Norouzi et al.), 16 sub-hashes of 16 bits, with its posting lists
// stored compactly: for each sub-hash, one array of row numbers grouped by key and an
// offset per key (CSR). That is 16 x 4 bytes per entry plus a fixed 4 MB of offsets.
// FAISS's IndexBinaryMultiHash (one std::unordered_map<key, std::vector> per sub-hash,
// used until this change) took 200-240 bytes per entry and, in 1.7.3, (a) updates the
// global indexBinaryHash_stats without synchronisation, a data race under concurrent
// searches, (b) reads 8 bytes at each sub-hash offset, past the end of a 32-byte code,
// and (c) uses one shared nflip, whereas an exact answer needs a number of flips that
// depends on each search's radius.
//
// The CSR arrays cover rows [0, indexed_); rows added since (the tail) are scanned
// linearly and folded in once the tail outgrows kTailRows + size/256, so adding one entry
// at a time stays cheap and a query never scans more than a sliver of the bank.
class MultiHashPdqIndex final : public BinaryIndexBase {
 public:
  std::string type() const override { return "multihash"; }

  void add_raw(std::span<const std::int64_t> ids, const std::uint8_t* codes) override {
    if (ids_.size() + ids.size() > std::numeric_limits<std::uint32_t>::max())
      throw Error(ErrorKind::Usage, "", "multihash index: more than 2^32 - 1 entries");
    codes_.insert(codes_.end(), codes, codes + ids.size() * kCode);
    ids_.append(ids);
    if (ids_.size() - indexed_ > kTailRows + ids_.size() / 256) {
      if (indexed_ == 0) rebuild_lists();
      else fold_tail();
    }
  }

  std::vector<std::vector<IndexHit>> range_search(std::span<const Hash256> queries,
                                                  int max_distance) const override {
    const int flips = max_distance / kSubBits;
    return search_each(queries, max_distance, [&](const std::uint8_t* q, auto& found) {
      if (flips > kMaxFlips || indexed_ == 0) {
        check_range(q, codes_.data(), 0, ids_.size(), max_distance, found);
        return;
      }
      for (int h = 0; h < kSubHashes; ++h) probe(h, q, flips, max_distance, found);
      check_range(q, codes_.data(), indexed_, ids_.size(), max_distance, found);  // the tail
    });
  }

  std::size_t memory_bytes() const override {
    std::size_t lists = 0;
    for (const auto& t : tables_) lists += (t.start.capacity() + t.rows.capacity()) * 4;
    return sizeof(*this) + codes_.capacity() + ids_.memory_bytes() + lists +
           dead_.memory_bytes();
  }

 protected:
  const std::uint8_t* codes_data() const override { return codes_.data(); }
  void clear_rows() override {
    codes_.clear();
    codes_.shrink_to_fit();
    for (auto& t : tables_) t = Table{};
    indexed_ = 0;
  }

 private:
  static constexpr std::size_t kTailRows = 1024;
  static constexpr std::size_t kKeys = std::size_t{1} << kSubBits;

  struct Table {
    std::vector<std::uint32_t> start;  // kKeys + 1 offsets into rows
    std::vector<std::uint32_t> rows;   // row numbers, grouped by key, ascending within one
  };

  // Counting sort of every row by each sub-hash: O(16 n), no per-key allocation.
  void rebuild_lists() {
    const std::size_t n = ids_.size();
    for (int h = 0; h < kSubHashes; ++h) {
      Table& t = tables_[static_cast<std::size_t>(h)];
      t.start.assign(kKeys + 1, 0);
      for (std::size_t row = 0; row < n; ++row) ++t.start[sub_hash(&codes_[row * kCode], h) + 1];
      for (std::size_t k = 0; k < kKeys; ++k) t.start[k + 1] += t.start[k];
      std::vector<std::uint32_t> fill(t.start.begin(), t.start.end() - 1);
      t.rows.resize(n);
      t.rows.shrink_to_fit();
      for (std::size_t row = 0; row < n; ++row)
        t.rows[fill[sub_hash(&codes_[row * kCode], h)]++] = static_cast<std::uint32_t>(row);
    }
    indexed_ = n;
  }

  // Folds the tail rows [indexed_, n) into the lists without sorting the rest again: the
  // tail's row numbers are all larger, so each key's group keeps its rows and gains the
  // tail's at its end. Groups move up in place (from the last key down, so none is
  // overwritten before it moved): one memmove per table plus O(tail), instead of the
  // counting sort's scattered writes over all n rows (seconds at 10M).
  void fold_tail() {
    const std::size_t n = ids_.size(), old = indexed_;
    std::vector<std::uint32_t> added(kKeys + 1);
    for (int h = 0; h < kSubHashes; ++h) {
      Table& t = tables_[static_cast<std::size_t>(h)];
      std::fill(added.begin(), added.end(), 0);
      for (std::size_t row = old; row < n; ++row) ++added[sub_hash(&codes_[row * kCode], h) + 1];
      for (std::size_t k = 0; k < kKeys; ++k) added[k + 1] += added[k];  // added[k]: tail rows of keys < k
      t.rows.resize(n);
      for (std::size_t k = kKeys; k-- > 0;) {
        const std::uint32_t b = t.start[k], e = t.start[k + 1], shift = added[k];
        if (shift != 0 && e > b) std::memmove(&t.rows[b + shift], &t.rows[b], (e - b) * sizeof(std::uint32_t));
      }
      // New offsets; each group's free slots follow its old rows.
      std::vector<std::uint32_t> fill(kKeys);
      for (std::size_t k = 0; k < kKeys; ++k) fill[k] = t.start[k + 1] + added[k];
      for (std::size_t k = 0; k <= kKeys; ++k) t.start[k] += added[k];
      for (std::size_t row = old; row < n; ++row)
        t.rows[fill[sub_hash(&codes_[row * kCode], h)]++] = static_cast<std::uint32_t>(row);
    }
    indexed_ = n;
  }

  // Every row whose sub-hash h is within `flips` bits of the query's.
  void probe(int h, const std::uint8_t* q, int flips, int max_distance,
             std::vector<std::pair<std::uint32_t, int>>& out) const {
    const Table& t = tables_[static_cast<std::size_t>(h)];
    const std::uint32_t key = sub_hash(q, h);
    const auto take = [&](std::uint32_t k) {
      const std::uint32_t b = t.start[k], e = t.start[k + 1];
      if (b != e) check_rows(q, codes_.data(), t.rows.data() + b, e - b, max_distance, out);
    };
    take(key);
    if (flips < 1) return;
    for (int i = 0; i < kSubBits; ++i) {
      take(key ^ (1u << i));
      if (flips < 2) continue;
      for (int j = i + 1; j < kSubBits; ++j) take(key ^ (1u << i) ^ (1u << j));
    }
  }

  std::vector<std::uint8_t> codes_;  // row after row, 32 bytes each
  std::array<Table, kSubHashes> tables_;
  std::size_t indexed_ = 0;  // rows [0, indexed_) are in the tables
};

// Multi-index hashing with compressed posting lists, for large banks on little memory.
// 8 sub-hashes of 24 bits (bytes 3h..3h+2, h < 8) cover 192 of the 256 bits. Two hashes
// d bits apart differ in at most d of those 192, so one sub-hash differs in at most
// floor(d / 8) bits: probing each with up to 3 flipped bits is exact up to d = 31.
//
// A sub-hash's list groups rows by the key's top `dir` bits (a bucket per value, with a
// bit offset each); inside a bucket, rows ascend and each entry is the key's low bits
// followed by the gap from the previous row, Rice-coded. That costs about 24 + 1.5 bits
// per entry and list, so 8 lists take ~26 bytes per entry: with the 32-byte hash and a
// 4-byte bank id, ~62 bytes in all, against 100 for `multihash`. A search decodes every
// bucket within the flip budget of the query's top bits and checks the low bits (as a
// Hamming distance against what is left of the budget) before fetching a candidate's hash.
//
// Rows added since the last build (the tail) are scanned linearly; the lists are rebuilt
// from all rows once the tail outgrows kTailRows + size/64.
class CompactPdqIndex final : public BinaryIndexBase {
 public:
  std::string type() const override { return "compact"; }

  void add_raw(std::span<const std::int64_t> ids, const std::uint8_t* codes) override {
    if (ids_.size() + ids.size() > std::numeric_limits<std::uint32_t>::max())
      throw Error(ErrorKind::Usage, "", "compact index: more than 2^32 - 1 entries");
    const std::size_t need = codes_.size() + ids.size() * kCode;
    if (need > codes_.capacity()) codes_.reserve(std::max(need, codes_.capacity() * 3 / 2));
    codes_.insert(codes_.end(), codes, codes + ids.size() * kCode);
    ids_.append(ids);
    if (ids_.size() - indexed_ > kTailRows + ids_.size() / 64) rebuild();
  }

  std::vector<std::vector<IndexHit>> range_search(std::span<const Hash256> queries,
                                                  int max_distance) const override {
    const int flips = max_distance / kSubHashes8;
    std::vector<std::uint32_t> candidates;
    std::vector<Visit> visits;
    return search_each(queries, max_distance, [&](const std::uint8_t* q, auto& found) {
      if (flips > kMaxFlips8 || indexed_ == 0) {
        check_range(q, codes_.data(), 0, ids_.size(), max_distance, found);
        return;
      }
      candidates.clear();
      for (int h = 0; h < kSubHashes8; ++h)
        probe(lists_[static_cast<std::size_t>(h)], key24(q, h), flips, visits, candidates);
      check_rows(q, codes_.data(), candidates.data(), candidates.size(), max_distance, found);
      check_range(q, codes_.data(), indexed_, ids_.size(), max_distance, found);  // the tail
    });
  }

  std::size_t memory_bytes() const override {
    std::size_t lists = 0;
    for (const auto& l : lists_) lists += l.base.capacity() * 8 + l.rel.capacity() * 4 + l.bits.capacity() * 8;
    return sizeof(*this) + codes_.capacity() + ids_.memory_bytes() + lists + dead_.memory_bytes();
  }

 protected:
  const std::uint8_t* codes_data() const override { return codes_.data(); }
  void clear_rows() override {
    codes_.clear();
    codes_.shrink_to_fit();
    for (auto& l : lists_) l = List{};
    indexed_ = 0;
  }

 private:
  static constexpr int kSubHashes8 = 8;
  static constexpr int kKeyBits = 24;
  static constexpr int kMaxFlips8 = 3;  // exact up to d = 31; beyond, a scan
  static constexpr std::size_t kTailRows = 1024;
  static constexpr int kBlockShift = 8;  // buckets per 64-bit base offset: 256
  static constexpr std::uint32_t kEscape = 32;  // a Rice quotient this large is sent raw

  struct List {
    int dir = 0, low = 0, k = 0;       // top bits (bucket), low bits stored, Rice parameter
    std::vector<std::uint64_t> base;   // bit offset of every 256th bucket
    std::vector<std::uint32_t> rel;    // 2^dir + 1 bucket offsets, relative to their base
    std::vector<std::uint64_t> bits;   // the entries, LSB first, plus one zero word
    std::uint64_t begin(std::uint32_t b) const noexcept { return base[b >> kBlockShift] + rel[b]; }
  };

  static std::uint32_t key24(const std::uint8_t* code, int h) noexcept {
    const std::uint8_t* c = code + 3 * h;
    return static_cast<std::uint32_t>(c[0] | c[1] << 8 | c[2] << 16);
  }

  // 64 bits of the stream from bit `pos` (the stream ends with a zero word).
  static std::uint64_t peek(const std::uint64_t* w, std::uint64_t pos) noexcept {
    const std::size_t i = pos >> 6;
    const unsigned off = pos & 63;
    const std::uint64_t v = w[i] >> off;
    return off == 0 ? v : v | w[i + 1] << (64 - off);
  }

  // Bits one entry takes: its low key bits, then the gap's Rice code.
  static std::uint64_t entry_bits(const List& l, std::uint32_t gap) noexcept {
    const std::uint32_t q = gap >> l.k;
    return static_cast<std::uint64_t>(l.low) + (q < kEscape ? q + 1 + l.k : kEscape + 32);
  }

  static void put(std::vector<std::uint64_t>& w, std::uint64_t& pos, std::uint64_t v, int n) noexcept {
    if (n == 0) return;
    const std::size_t i = pos >> 6;
    const unsigned off = pos & 63;
    w[i] |= v << off;
    if (off + static_cast<unsigned>(n) > 64) w[i + 1] |= v >> (64 - off);
    pos += static_cast<std::uint64_t>(n);
  }

  void rebuild() {
    const std::size_t n = ids_.size();
    // Buckets of 24 to 48 rows on average: enough bits on top to keep them short, not so
    // many that the offsets cost more than the entries.
    int dir = 8;
    while (dir < 20 && (n >> (dir + 1)) >= 24) ++dir;
    std::vector<std::uint32_t> order(n), start((std::size_t{1} << dir) + 1);
    for (int h = 0; h < kSubHashes8; ++h) {
      List l;
      l.dir = dir;
      l.low = kKeyBits - dir;
      const std::uint32_t buckets = std::uint32_t{1} << dir;
      const std::uint32_t low_mask = (std::uint32_t{1} << l.low) - 1;
      // Counting sort by bucket; rows stay ascending inside one.
      std::fill(start.begin(), start.end(), 0);
      for (std::size_t row = 0; row < n; ++row) ++start[(key24(&codes_[row * kCode], h) >> l.low) + 1];
      for (std::uint32_t b = 0; b < buckets; ++b) start[b + 1] += start[b];
      {
        std::vector<std::uint32_t> fill(start.begin(), start.end() - 1);
        for (std::size_t row = 0; row < n; ++row)
          order[fill[key24(&codes_[row * kCode], h) >> l.low]++] = static_cast<std::uint32_t>(row);
      }
      // The Rice parameter from the mean gap: about log2(mean * ln 2) for geometric gaps.
      std::uint64_t gap_sum = 0;
      for (std::uint32_t b = 0; b < buckets; ++b) {
        std::int64_t prev = -1;
        for (std::uint32_t i = start[b]; i < start[b + 1]; ++i) {
          gap_sum += static_cast<std::uint64_t>(order[i] - prev - 1);
          prev = order[i];
        }
      }
      const double mean = n > 0 ? static_cast<double>(gap_sum) / static_cast<double>(n) : 0;
      l.k = 0;
      while (l.k < 30 && std::ldexp(1.0, l.k + 1) <= mean * 0.69) ++l.k;
      // Offsets, then the entries.
      l.base.assign((buckets >> kBlockShift) + 1, 0);
      l.rel.assign(std::size_t{buckets} + 1, 0);
      std::uint64_t pos = 0;
      for (std::uint32_t b = 0; b <= buckets; ++b) {
        if ((b & ((1u << kBlockShift) - 1)) == 0) l.base[b >> kBlockShift] = pos;
        const std::uint64_t rel = pos - l.base[b >> kBlockShift];
        if (rel > std::numeric_limits<std::uint32_t>::max())
          throw Error(ErrorKind::Usage, "", "compact index: a bucket group exceeds 2^32 bits (use multihash)");
        l.rel[b] = static_cast<std::uint32_t>(rel);
        if (b == buckets) break;
        std::int64_t prev = -1;
        for (std::uint32_t i = start[b]; i < start[b + 1]; ++i) {
          pos += entry_bits(l, static_cast<std::uint32_t>(order[i] - prev - 1));
          prev = order[i];
        }
      }
      l.bits.assign(static_cast<std::size_t>(pos / 64) + 2, 0);
      pos = 0;
      for (std::uint32_t b = 0; b < buckets; ++b) {
        std::int64_t prev = -1;
        for (std::uint32_t i = start[b]; i < start[b + 1]; ++i) {
          const std::uint32_t row = order[i];
          const auto gap = static_cast<std::uint32_t>(row - prev - 1);
          prev = row;
          put(l.bits, pos, key24(&codes_[std::size_t{row} * kCode], h) & low_mask, l.low);
          const std::uint32_t q = gap >> l.k;
          if (q < kEscape) {
            put(l.bits, pos, (std::uint64_t{1} << q) - 1, static_cast<int>(q) + 1);  // q ones, a zero
            put(l.bits, pos, gap & ((std::uint64_t{1} << l.k) - 1), l.k);
          } else {
            put(l.bits, pos, (std::uint64_t{1} << kEscape) - 1, kEscape);
            put(l.bits, pos, gap, 32);
          }
        }
      }
      lists_[static_cast<std::size_t>(h)] = std::move(l);
    }
    indexed_ = n;
  }

  // Every row of bucket b whose low key bits are within `budget` bits of `low`.
  static void scan(const List& l, std::uint32_t b, std::uint32_t low, int budget,
                   std::vector<std::uint32_t>& out) {
    std::uint64_t pos = l.begin(b);
    const std::uint64_t end = l.begin(b + 1);
    const std::uint64_t* w = l.bits.data();
    const std::uint64_t low_mask = (std::uint64_t{1} << l.low) - 1, k_mask = (std::uint64_t{1} << l.k) - 1;
    std::int64_t prev = -1;
    while (pos < end) {
      const std::uint64_t v = peek(w, pos);
      const auto key = static_cast<std::uint32_t>(v & low_mask);
      const std::uint64_t r = v >> l.low;
      const int q = std::countr_one(r);
      std::uint64_t gap;
      if (q < static_cast<int>(kEscape) && l.low + q + 1 + l.k <= 64) {
        gap = static_cast<std::uint64_t>(q) << l.k | ((r >> (q + 1)) & k_mask);
        pos += static_cast<std::uint64_t>(l.low + q + 1 + l.k);
      } else if (q < static_cast<int>(kEscape)) {
        pos += static_cast<std::uint64_t>(l.low + q + 1);
        gap = static_cast<std::uint64_t>(q) << l.k | (peek(w, pos) & k_mask);
        pos += static_cast<std::uint64_t>(l.k);
      } else {
        pos += l.low + kEscape;
        gap = peek(w, pos) & 0xffffffffu;
        pos += 32;
      }
      prev += static_cast<std::int64_t>(gap) + 1;
      if (std::popcount(key ^ low) <= budget) out.push_back(static_cast<std::uint32_t>(prev));
    }
  }

  struct Visit {
    std::uint32_t bucket;
    int budget;  // flips left for the low bits
  };

  // Rows whose sub-hash is within `flips` bits of `key`: buckets within f <= flips bits of
  // the key's top bits, each with a budget of flips - f bits for the low ones. The buckets
  // are listed first and then scanned with their offsets and first bits fetched a few
  // visits ahead: each visit is a miss in memory (a bucket is ~120 bytes anywhere in tens
  // of MB), and overlapping the misses is most of the speed.
  static void probe(const List& l, std::uint32_t key, int flips, std::vector<Visit>& visits,
                    std::vector<std::uint32_t>& out) {
    const std::uint32_t top = key >> l.low, low = key & ((std::uint32_t{1} << l.low) - 1);
    visits.clear();
    visits.push_back({top, flips});
    for (int i = 0; flips >= 1 && i < l.dir; ++i) {
      const std::uint32_t a = top ^ (1u << i);
      visits.push_back({a, flips - 1});
      for (int j = i + 1; flips >= 2 && j < l.dir; ++j) {
        const std::uint32_t b = a ^ (1u << j);
        visits.push_back({b, flips - 2});
        for (int m = j + 1; flips >= 3 && m < l.dir; ++m) visits.push_back({b ^ (1u << m), flips - 3});
      }
    }
    constexpr std::size_t kAheadOffsets = 16, kAheadBits = 8;
    const std::size_t n = visits.size();
    for (std::size_t i = 0; i < n; ++i) {
      if (i + kAheadOffsets < n) __builtin_prefetch(&l.rel[visits[i + kAheadOffsets].bucket]);
      if (i + kAheadBits < n) __builtin_prefetch(l.bits.data() + (l.begin(visits[i + kAheadBits].bucket) >> 6));
      scan(l, visits[i].bucket, low, visits[i].budget, out);
    }
  }

  std::vector<std::uint8_t> codes_;  // row after row, 32 bytes each
  std::array<List, kSubHashes8> lists_;
  std::size_t indexed_ = 0;  // rows [0, indexed_) are in the lists
};

}  // namespace

std::unique_ptr<PdqIndex> make_pdq_index(std::string_view type) {
  if (type == "flat") return std::make_unique<FlatPdqIndex>();
  if (type == "multihash") return std::make_unique<MultiHashPdqIndex>();
  if (type == "compact") return std::make_unique<CompactPdqIndex>();
  throw Error(ErrorKind::Usage, "",
              "unknown PDQ index type '" + std::string(type) + "' (expected flat, multihash or compact)");
}

std::unique_ptr<PdqIndex> load_pdq_index(const std::filesystem::path& file,
                                         std::uint64_t* generation) {
  try {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(file, ec)) return nullptr;
    std::ifstream in(file, std::ios::binary);
    if (!in) return nullptr;
    in.seekg(0, std::ios::end);
    const std::streamoff end = in.tellg();
    if (end < 0) return nullptr;
    const auto size = static_cast<std::uint64_t>(end);
    // Smallest file: magic, generation, type length, count, checksum.
    constexpr std::uint64_t kFixed = sizeof kMagic + 8 + 8 + 8 + 8;
    if (size < kFixed) return nullptr;
    std::vector<std::uint8_t> buf(static_cast<std::size_t>(size));
    in.seekg(0);
    if (!in.read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(size)))
      return nullptr;

    if (std::memcmp(buf.data(), kMagic, sizeof kMagic) != 0) return nullptr;
    if (get_le(buf.data() + size - 8) != fnv1a(buf.data(), buf.size() - 8)) return nullptr;
    std::size_t pos = sizeof kMagic;
    const std::uint64_t gen = get_le(buf.data() + pos);
    pos += 8;
    const std::uint64_t type_len = get_le(buf.data() + pos);
    pos += 8;
    if (type_len > kMaxTypeLength || type_len > size - kFixed) return nullptr;
    const std::string type(reinterpret_cast<const char*>(buf.data() + pos), type_len);
    pos += type_len;
    const std::uint64_t count = get_le(buf.data() + pos);
    pos += 8;
    // Everything left but the checksum is ids and hashes: the count must fit exactly.
    const std::uint64_t body = size - pos - 8;
    if (count > body / (8 + kCode) || count * (8 + kCode) != body) return nullptr;
    if (type != "flat" && type != "multihash" && type != "compact") return nullptr;

    const auto n = static_cast<std::size_t>(count);
    std::vector<std::int64_t> ids(n);
    for (std::size_t i = 0; i < n; ++i, pos += 8)
      ids[i] = static_cast<std::int64_t>(get_le(buf.data() + pos));
    auto index = make_pdq_index(type);
    if (n > 0) static_cast<BinaryIndexBase&>(*index).add_raw(ids, buf.data() + pos);
    if (generation) *generation = gen;
    return index;
  } catch (const std::exception&) {
    return nullptr;  // e.g. out of memory: the caller rebuilds from the bank
  }
}

}  // namespace hashwall
