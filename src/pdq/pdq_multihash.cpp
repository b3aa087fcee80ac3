// The `multihash` PDQ index: 16 plain posting lists (docs/BANK_FORMAT.md).
#include "pdq/pdq_index_impl.hpp"

namespace hashwall::pdq_detail {

namespace {

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
      if (indexed_ == 0)
        rebuild_lists();
      else
        fold_tail();
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
    return sizeof(*this) + codes_.capacity() + ids_.memory_bytes() + lists + dead_.memory_bytes();
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
      for (std::size_t k = 0; k < kKeys; ++k)
        added[k + 1] += added[k];  // added[k]: tail rows of keys < k
      t.rows.resize(n);
      for (std::size_t k = kKeys; k-- > 0;) {
        const std::uint32_t b = t.start[k], e = t.start[k + 1], shift = added[k];
        if (shift != 0 && e > b)
          std::memmove(&t.rows[b + shift], &t.rows[b], (e - b) * sizeof(std::uint32_t));
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

}  // namespace

std::unique_ptr<BinaryIndexBase> make_multihash_index() {
  return std::make_unique<MultiHashPdqIndex>();
}

}  // namespace hashwall::pdq_detail
