// The `compact` PDQ index: 8 Rice-coded posting lists, ~62 bytes per entry
// (docs/BANK_FORMAT.md).
#include "pdq/pdq_index_impl.hpp"

namespace hashwall::pdq_detail {

namespace {

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
    for (const auto& l : lists_)
      lists += l.base.capacity() * 8 + l.rel.capacity() * 4 + l.bits.capacity() * 8;
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
  static constexpr int kBlockShift = 8;         // buckets per 64-bit base offset: 256
  static constexpr std::uint32_t kEscape = 32;  // a Rice quotient this large is sent raw

  struct List {
    int dir = 0, low = 0, k = 0;      // top bits (bucket), low bits stored, Rice parameter
    std::vector<std::uint64_t> base;  // bit offset of every 256th bucket
    std::vector<std::uint32_t> rel;   // 2^dir + 1 bucket offsets, relative to their base
    std::vector<std::uint64_t> bits;  // the entries, LSB first, plus one zero word
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

  static void put(std::vector<std::uint64_t>& w, std::uint64_t& pos, std::uint64_t v,
                  int n) noexcept {
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
      for (std::size_t row = 0; row < n; ++row)
        ++start[(key24(&codes_[row * kCode], h) >> l.low) + 1];
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
          throw Error(ErrorKind::Usage, "",
                      "compact index: a bucket group exceeds 2^32 bits (use multihash)");
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
            put(l.bits, pos, (std::uint64_t{1} << q) - 1,
                static_cast<int>(q) + 1);  // q ones, a zero
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
    const std::uint64_t low_mask = (std::uint64_t{1} << l.low) - 1,
                        k_mask = (std::uint64_t{1} << l.k) - 1;
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
        for (int m = j + 1; flips >= 3 && m < l.dir; ++m)
          visits.push_back({b ^ (1u << m), flips - 3});
      }
    }
    constexpr std::size_t kAheadOffsets = 16, kAheadBits = 8;
    const std::size_t n = visits.size();
    for (std::size_t i = 0; i < n; ++i) {
      if (i + kAheadOffsets < n) __builtin_prefetch(&l.rel[visits[i + kAheadOffsets].bucket]);
      if (i + kAheadBits < n)
        __builtin_prefetch(l.bits.data() + (l.begin(visits[i + kAheadBits].bucket) >> 6));
      scan(l, visits[i].bucket, low, visits[i].budget, out);
    }
  }

  std::vector<std::uint8_t> codes_;  // row after row, 32 bytes each
  std::array<List, kSubHashes8> lists_;
  std::size_t indexed_ = 0;  // rows [0, indexed_) are in the lists
};

}  // namespace

std::unique_ptr<BinaryIndexBase> make_compact_index() {
  return std::make_unique<CompactPdqIndex>();
}

}  // namespace hashwall::pdq_detail
