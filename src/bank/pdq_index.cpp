// PDQ search indexes over FAISS binary structures, and their cache file
// (docs/BANK_FORMAT.md, "Index cache file").
#include "bank/pdq_index.hpp"

#include <faiss/IndexBinaryFlat.h>
#include <faiss/IndexBinaryHash.h>
#include <faiss/impl/AuxIndexStructures.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <system_error>

#include "core/error.hpp"

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

int popcount_distance(const std::uint8_t* a, const std::uint8_t* b) noexcept {
  int d = 0;
  for (std::size_t i = 0; i < kCode; i += 8) {
    std::uint64_t x, y;
    std::memcpy(&x, a + i, 8);
    std::memcpy(&y, b + i, 8);
    d += std::popcount(x ^ y);
  }
  return d;
}

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

// ---- little-endian encoding for the cache file -------------------------------------

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

std::uint64_t get_u64(const std::uint8_t* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

// FNV-1a, 64 bit: catches a flipped or torn byte anywhere in the cache. Not a defence
// against tampering (the cache is derived data; the SQLite file is the truth).
std::uint64_t fnv1a(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void write_file_atomically(const std::filesystem::path& file, const std::string& bytes) {
  static std::atomic<unsigned> counter{0};
  const auto tmp = std::filesystem::path(file.string() + ".tmp." + std::to_string(::getpid()) +
                                         "." + std::to_string(counter++));
  const auto fail = [&](const char* what) {
    const int err = errno;
    ::unlink(tmp.c_str());
    throw Error(ErrorKind::Io, file.string(),
                std::string(what) + ": " + std::generic_category().message(err));
  };
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot write the index cache");
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      fail("cannot write the index cache");
    }
    done += static_cast<std::size_t>(n);
  }
  // fsync before rename: after a crash the cache is either the old file or the whole new one.
  if (::fsync(fd) != 0) {
    ::close(fd);
    fail("cannot sync the index cache");
  }
  if (::close(fd) != 0) fail("cannot write the index cache");
  if (::rename(tmp.c_str(), file.c_str()) != 0) fail("cannot rename the index cache");
  // Make the rename itself durable; best effort (some file systems refuse to fsync dirs).
  auto dir = file.parent_path();
  if (dir.empty()) dir = ".";
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

// Shared by both implementations: the bank ids of the rows, and how to save them.
class BinaryIndexBase : public PdqIndex {
 public:
  void add(std::span<const std::int64_t> ids, std::span<const Hash256> hashes) override {
    if (ids.size() != hashes.size())
      throw Error(ErrorKind::Usage, "", "PdqIndex::add: ids and hashes differ in length");
    if (ids.empty()) return;
    const auto bytes = pack(hashes);
    add_raw(ids, bytes.data());
  }

  std::size_t size() const override { return ids_.size(); }

  std::vector<std::pair<std::int64_t, Hash256>> contents() const override {
    std::vector<std::pair<std::int64_t, Hash256>> out(ids_.size());
    const std::uint8_t* codes = codes_data();
    for (std::size_t i = 0; i < ids_.size(); ++i) {
      out[i].first = ids_[i];
      std::memcpy(out[i].second.bytes.data(), codes + i * kCode, kCode);
    }
    return out;
  }

  void save(const std::filesystem::path& file, std::uint64_t generation) const override {
    const std::string t = type();
    const std::uint8_t* codes = codes_data();
    std::string out;
    out.reserve(8 + 8 + 8 + t.size() + 8 + ids_.size() * (8 + kCode) + 8);
    out.append(kMagic, sizeof kMagic);
    put_u64(out, generation);
    put_u64(out, t.size());
    out.append(t);
    put_u64(out, ids_.size());
    for (const std::int64_t id : ids_) put_u64(out, static_cast<std::uint64_t>(id));
    out.append(reinterpret_cast<const char*>(codes), ids_.size() * kCode);
    put_u64(out, fnv1a(reinterpret_cast<const std::uint8_t*>(out.data()), out.size()));
    write_file_atomically(file, out);
  }

  // codes: ids.size() hashes of 32 bytes, row after row.
  virtual void add_raw(std::span<const std::int64_t> ids, const std::uint8_t* codes) = 0;

 protected:
  // The stored hashes, row after row, in the order of ids_.
  virtual const std::uint8_t* codes_data() const = 0;

  std::vector<std::vector<IndexHit>> to_hits(const faiss::RangeSearchResult& res,
                                             std::size_t nq) const {
    std::vector<std::vector<IndexHit>> out(nq);
    for (std::size_t q = 0; q < nq; ++q) {
      auto& hits = out[q];
      hits.reserve(res.lims[q + 1] - res.lims[q]);
      for (std::size_t k = res.lims[q]; k < res.lims[q + 1]; ++k)
        hits.push_back(
            {ids_[static_cast<std::size_t>(res.labels[k])], static_cast<int>(res.distances[k])});
      sort_hits(hits);
    }
    return out;
  }

  std::vector<std::int64_t> ids_;  // row -> bank id
};

// Exhaustive search; FAISS's range search over IndexBinaryFlat.
class FlatPdqIndex final : public BinaryIndexBase {
 public:
  std::string type() const override { return "flat"; }

  void add_raw(std::span<const std::int64_t> ids, const std::uint8_t* codes) override {
    flat_.add(static_cast<faiss_idx>(ids.size()), codes);
    ids_.insert(ids_.end(), ids.begin(), ids.end());
  }

  std::vector<std::vector<IndexHit>> range_search(std::span<const Hash256> queries,
                                                  int max_distance) const override {
    if (queries.empty() || ids_.empty() || max_distance < 0)
      return std::vector<std::vector<IndexHit>>(queries.size());
    const auto q = pack(queries);
    faiss::RangeSearchResult res(static_cast<faiss_idx>(queries.size()));
    // FAISS keeps hits with distance < radius (strictly; pinned by a test), hence +1.
    flat_.range_search(static_cast<faiss_idx>(queries.size()), q.data(),
                       std::min(max_distance, kBits) + 1, &res);
    return to_hits(res, queries.size());
  }

  std::size_t memory_bytes() const override {
    return sizeof(*this) + flat_.xb.capacity() + ids_.capacity() * sizeof(std::int64_t);
  }

 protected:
  const std::uint8_t* codes_data() const override { return flat_.xb.data(); }

 private:
  faiss::IndexBinaryFlat flat_{kBits};
};

// Multi-index hashing over FAISS IndexBinaryMultiHash (16 sub-hashes of 16 bits).
//
// FAISS builds the structure (its `storage` IndexBinaryFlat and one hash map per
// sub-hash), but the candidate generation is done here, from its maps, because
// IndexBinaryMultiHash::range_search in FAISS 1.7.3 (a) updates the global
// indexBinaryHash_stats without synchronisation, a data race when worker threads search
// concurrently, (b) reads 8 bytes at each sub-hash offset, past the end of a 32-byte
// query (its add does the same past the last vector), and (c) uses one shared nflip,
// whereas the number of flips needed for an exact answer depends on the radius of each
// search.
class MultiHashPdqIndex final : public BinaryIndexBase {
 public:
  MultiHashPdqIndex() { mh_.nflip = 1; }

  std::string type() const override { return "multihash"; }

  // Fills the FAISS structure as IndexBinaryMultiHash::add would (same keys, same row
  // numbers), but one map at a time with the lists sized first: FAISS's add touches all
  // 16 maps per vector and grows every list one push at a time, 14x slower at 1M hashes
  // (docs/BANK_FORMAT.md), which is what a cache load or a rebuild costs.
  void add_raw(std::span<const std::int64_t> ids, const std::uint8_t* codes) override {
    const std::size_t n = ids.size();
    const auto first = static_cast<faiss_idx>(ids_.size());
    mh_.storage->add(static_cast<faiss_idx>(n), codes);
    std::vector<std::uint32_t> counts(std::size_t{1} << kSubBits);
    for (int h = 0; h < kSubHashes; ++h) {
      auto& map = mh_.maps[static_cast<std::size_t>(h)];
      std::fill(counts.begin(), counts.end(), 0);
      std::size_t new_keys = 0;
      for (std::size_t i = 0; i < n; ++i) new_keys += counts[sub_hash(codes + i * kCode, h)]++ == 0;
      map.reserve(map.size() + new_keys);
      for (std::size_t k = 0; k < counts.size(); ++k) {
        if (counts[k] == 0) continue;
        auto& list = map[static_cast<faiss_idx>(k)];
        if (list.capacity() < list.size() + counts[k])
          list.reserve(std::max(list.size() + counts[k], 2 * list.size()));
      }
      for (std::size_t i = 0; i < n; ++i)
        map[sub_hash(codes + i * kCode, h)].push_back(first + static_cast<faiss_idx>(i));
    }
    mh_.ntotal += static_cast<faiss_idx>(n);
    ids_.insert(ids_.end(), ids.begin(), ids.end());
  }

  std::vector<std::vector<IndexHit>> range_search(std::span<const Hash256> queries,
                                                  int max_distance) const override {
    std::vector<std::vector<IndexHit>> out(queries.size());
    if (queries.empty() || ids_.empty() || max_distance < 0) return out;
    const int flips = max_distance / kSubBits;
    const std::uint8_t* xb = mh_.storage->xb.data();
    const std::size_t n = ids_.size();
    std::vector<faiss_idx> candidates;
    for (std::size_t qi = 0; qi < queries.size(); ++qi) {
      const std::uint8_t* q = queries[qi].bytes.data();
      auto& hits = out[qi];
      const auto consider = [&](std::size_t row) {
        const int d = popcount_distance(q, xb + row * kCode);
        if (d <= max_distance) hits.push_back({ids_[row], d});
      };
      if (flips > kMaxFlips) {
        for (std::size_t row = 0; row < n; ++row) consider(row);
      } else {
        candidates.clear();
        for (int h = 0; h < kSubHashes; ++h) probe(h, q, flips, candidates);
        std::sort(candidates.begin(), candidates.end());
        candidates.erase(std::unique(candidates.begin(), candidates.end()), candidates.end());
        for (const faiss_idx row : candidates) consider(static_cast<std::size_t>(row));
      }
      sort_hits(hits);
    }
    return out;
  }

  std::size_t memory_bytes() const override {
    // Hash-map nodes (key, vector header, next pointer, allocator overhead), buckets, and
    // one row number per vector per map.
    std::size_t maps = 0;
    for (const auto& m : mh_.maps)
      maps += m.size() * 64 + m.bucket_count() * sizeof(void*) + ids_.size() * sizeof(faiss_idx);
    return sizeof(*this) + mh_.storage->xb.capacity() + ids_.capacity() * sizeof(std::int64_t) +
           maps;
  }

 protected:
  const std::uint8_t* codes_data() const override { return mh_.storage->xb.data(); }

 private:
  // Same sub-hash layout as IndexBinaryMultiHash::add: sub-hash h is the little-endian
  // 16-bit word at bytes 2h, 2h+1.
  static std::size_t sub_hash(const std::uint8_t* code, int h) noexcept {
    return static_cast<std::size_t>(code[2 * h] | (code[2 * h + 1] << 8));
  }

  void probe(int h, const std::uint8_t* q, int flips, std::vector<faiss_idx>& out) const {
    const auto& map = mh_.maps[static_cast<std::size_t>(h)];
    const auto key = static_cast<faiss_idx>(sub_hash(q, h));
    const auto take = [&](faiss_idx k) {
      if (auto it = map.find(k); it != map.end())
        out.insert(out.end(), it->second.begin(), it->second.end());
    };
    take(key);
    if (flips < 1) return;
    for (int i = 0; i < kSubBits; ++i) {
      take(key ^ (faiss_idx{1} << i));
      if (flips < 2) continue;
      for (int j = i + 1; j < kSubBits; ++j) take(key ^ (faiss_idx{1} << i) ^ (faiss_idx{1} << j));
    }
  }

  faiss::IndexBinaryMultiHash mh_{kBits, kSubHashes, kSubBits};
};

}  // namespace

std::unique_ptr<PdqIndex> make_pdq_index(std::string_view type) {
  if (type == "flat") return std::make_unique<FlatPdqIndex>();
  if (type == "multihash") return std::make_unique<MultiHashPdqIndex>();
  throw Error(ErrorKind::Usage, "",
              "unknown PDQ index type '" + std::string(type) + "' (expected flat or multihash)");
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
    if (get_u64(buf.data() + size - 8) != fnv1a(buf.data(), buf.size() - 8)) return nullptr;
    std::size_t pos = sizeof kMagic;
    const std::uint64_t gen = get_u64(buf.data() + pos);
    pos += 8;
    const std::uint64_t type_len = get_u64(buf.data() + pos);
    pos += 8;
    if (type_len > kMaxTypeLength || type_len > size - kFixed) return nullptr;
    const std::string type(reinterpret_cast<const char*>(buf.data() + pos), type_len);
    pos += type_len;
    const std::uint64_t count = get_u64(buf.data() + pos);
    pos += 8;
    // Everything left but the checksum is ids and hashes: the count must fit exactly.
    const std::uint64_t body = size - pos - 8;
    if (count > body / (8 + kCode) || count * (8 + kCode) != body) return nullptr;
    if (type != "flat" && type != "multihash") return nullptr;

    const auto n = static_cast<std::size_t>(count);
    std::vector<std::int64_t> ids(n);
    for (std::size_t i = 0; i < n; ++i, pos += 8)
      ids[i] = static_cast<std::int64_t>(get_u64(buf.data() + pos));
    auto index = make_pdq_index(type);
    if (n > 0) static_cast<BinaryIndexBase&>(*index).add_raw(ids, buf.data() + pos);
    if (generation) *generation = gen;
    return index;
  } catch (const std::exception&) {
    return nullptr;  // e.g. out of memory: the caller rebuilds from the bank
  }
}

}  // namespace hashwall
