// PDQ search indexes over FAISS binary structures, and their cache file
// (docs/BANK_FORMAT.md, "Index cache file").
#include "pdq/pdq_index.hpp"

#include <algorithm>
#include <fstream>
#include <unordered_map>

#include "pdq/pdq_index_impl.hpp"

namespace hashwall {

namespace pdq_detail {

// The candidate check, the hot loop of a multi-hash search: the distance from q to each
// listed row, keeping those within max_distance. Compiled twice (POPCNT and baseline
// x86-64, chosen once by the loader) because Debian builds for the baseline.
__attribute__((target_clones("popcnt", "default"))) void check_rows(
    const std::uint8_t* q, const std::uint8_t* codes, const std::uint32_t* rows, std::size_t count,
    int max_distance, std::vector<std::pair<std::uint32_t, int>>& out) {
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

}  // namespace pdq_detail

namespace {

using namespace pdq_detail;

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
    return sizeof(*this) + flat_.xb.capacity() + ids_.memory_bytes() + dead_.memory_bytes();
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

}  // namespace

using namespace pdq_detail;

std::vector<PdqMatch> best_per_entry(const std::vector<std::vector<IndexHit>>& per_query) {
  std::unordered_map<std::int64_t, PdqMatch> best;
  for (std::size_t q = 0; q < per_query.size(); ++q)
    for (const auto& h : per_query[q]) {
      auto [it, fresh] = best.try_emplace(h.id, PdqMatch{h.id, h.distance, static_cast<int>(q)});
      if (!fresh && h.distance < it->second.distance)
        it->second = PdqMatch{h.id, h.distance, static_cast<int>(q)};
    }
  std::vector<PdqMatch> out;
  out.reserve(best.size());
  for (const auto& [id, m] : best) out.push_back(m);
  std::sort(out.begin(), out.end(), [](const PdqMatch& a, const PdqMatch& b) {
    return a.distance != b.distance ? a.distance < b.distance : a.id < b.id;
  });
  return out;
}

std::unique_ptr<PdqIndex> make_pdq_index(std::string_view type) {
  if (type == "flat") return std::make_unique<FlatPdqIndex>();
  if (type == "multihash") return make_multihash_index();
  if (type == "compact") return make_compact_index();
  throw Error(
      ErrorKind::Usage, "",
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
