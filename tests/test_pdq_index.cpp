// PdqIndex: every implementation must return exactly what brute force returns, and its
// cache file must never be trusted when damaged.
#include <faiss/IndexBinaryFlat.h>
#include <faiss/impl/AuxIndexStructures.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>

#include "core/error.hpp"
#include "pdq/pdq_index.hpp"
#include "support.hpp"

using namespace hashwall;
using hwtest::random_hash;

namespace {

Hash256 flip(Hash256 h, int bit) {
  h.bytes[static_cast<std::size_t>(bit / 8)] ^= static_cast<std::uint8_t>(1u << (bit % 8));
  return h;
}

// `d` distinct random bits flipped.
Hash256 flip_random(Hash256 h, int d, std::mt19937_64& rng) {
  std::vector<int> bits(256);
  for (int i = 0; i < 256; ++i) bits[static_cast<std::size_t>(i)] = i;
  std::shuffle(bits.begin(), bits.end(), rng);
  for (int i = 0; i < d; ++i) h = flip(h, bits[static_cast<std::size_t>(i)]);
  return h;
}

// `d` bits flipped as evenly as possible over the sixteen 16-bit sub-hashes: the worst
// case for multi-index hashing (every sub-hash as far from the query as it can be).
Hash256 flip_spread(Hash256 h, int d, std::mt19937_64& rng) {
  for (int sub = 0; sub < 16; ++sub) {
    const int here = d / 16 + (sub < d % 16 ? 1 : 0);
    std::vector<int> bits(16);
    for (int i = 0; i < 16; ++i) bits[static_cast<std::size_t>(i)] = sub * 16 + i;
    std::shuffle(bits.begin(), bits.end(), rng);
    for (int i = 0; i < here; ++i) h = flip(h, bits[static_cast<std::size_t>(i)]);
  }
  return h;
}

std::vector<Hash256> read_hashes(const std::filesystem::path& file) {
  std::ifstream in(file);
  std::vector<Hash256> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto h = Hash256::from_hex(line);
    REQUIRE(h);
    out.push_back(*h);
  }
  return out;
}

std::vector<std::vector<IndexHit>> brute_force(const std::vector<std::int64_t>& ids,
                                               const std::vector<Hash256>& hashes,
                                               const std::vector<Hash256>& queries,
                                               int max_distance) {
  std::vector<std::vector<IndexHit>> out(queries.size());
  for (std::size_t q = 0; q < queries.size(); ++q) {
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      const int d = hamming(queries[q], hashes[i]);
      if (d <= max_distance) out[q].push_back({ids[i], d});
    }
    std::sort(out[q].begin(), out[q].end(), [](const IndexHit& a, const IndexHit& b) {
      return a.distance != b.distance ? a.distance < b.distance : a.id < b.id;
    });
  }
  return out;
}

// Same hits in the same order, distances included.
void require_same(const std::vector<std::vector<IndexHit>>& got,
                  const std::vector<std::vector<IndexHit>>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t q = 0; q < want.size(); ++q) {
    INFO("query " << q);
    REQUIRE(got[q].size() == want[q].size());
    for (std::size_t k = 0; k < want[q].size(); ++k) {
      REQUIRE(got[q][k].id == want[q][k].id);
      REQUIRE(got[q][k].distance == want[q][k].distance);
    }
  }
}

std::size_t total(const std::vector<std::vector<IndexHit>>& hits) {
  std::size_t n = 0;
  for (const auto& h : hits) n += h.size();
  return n;
}

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::filesystem::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::uint64_t fnv1a(const std::string& s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

const char* const kTypes[] = {"flat", "multihash", "compact"};

}  // namespace

TEST_CASE("FAISS binary range search keeps only distances strictly below the radius",
          "[pdq_index]") {
  // The flat index passes max_distance + 1 to FAISS because of this; if a FAISS upgrade
  // changes it, this test says so before the off-by-one reaches a user.
  std::mt19937_64 rng(7);
  const Hash256 q = random_hash(rng);
  const Hash256 x = flip_random(q, 5, rng);
  REQUIRE(hamming(q, x) == 5);
  faiss::IndexBinaryFlat flat(256);
  flat.add(1, x.bytes.data());
  const auto hits_at = [&](int radius) {
    faiss::RangeSearchResult res(1);
    flat.range_search(1, q.bytes.data(), radius, &res);
    return res.lims[1] - res.lims[0];
  };
  CHECK(hits_at(5) == 0);
  CHECK(hits_at(6) == 1);

  for (const char* type : kTypes) {
    INFO(type);
    auto index = make_pdq_index(type);
    const std::int64_t id = 42;
    index->add(std::span(&id, 1), std::span(&x, 1));
    CHECK(index->range_search(std::span(&q, 1), 4).at(0).empty());
    const auto at5 = index->range_search(std::span(&q, 1), 5).at(0);
    REQUIRE(at5.size() == 1);
    CHECK(at5[0].id == 42);
    CHECK(at5[0].distance == 5);
  }
}

TEST_CASE("every index type finds exactly what brute force finds in Meta's haystack",
          "[pdq_index]") {
  HW_REQUIRE_SHARED(shared);
  const auto haystack = read_hashes(shared / "pdq-vectors" / "haystack.txt");
  const auto needles = read_hashes(shared / "pdq-vectors" / "needles.txt");
  REQUIRE(haystack.size() == 1350);
  REQUIRE(needles.size() == 100);
  // Ids unlike row numbers, so that a mix-up of the two shows.
  std::vector<std::int64_t> ids(haystack.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = 100000 + 7 * static_cast<std::int64_t>(i);

  for (const int threshold : {31, 45}) {
    const auto want = brute_force(ids, haystack, needles, threshold);
    REQUIRE(total(want) > 0);
    for (const char* type : kTypes) {
      INFO(type << " at threshold " << threshold);
      auto index = make_pdq_index(type);
      index->add(ids, haystack);
      REQUIRE(index->size() == haystack.size());
      require_same(index->range_search(needles, threshold), want);
    }
  }
}

TEST_CASE("every index type agrees with brute force on random hashes with planted near-duplicates",
          "[pdq_index]") {
  std::mt19937_64 rng(20240601);
  std::vector<Hash256> queries(40);
  for (auto& q : queries) q = random_hash(rng);

  std::vector<Hash256> hashes;
  for (int i = 0; i < 3000; ++i) hashes.push_back(random_hash(rng));
  for (const auto& q : queries) {
    for (int d = 0; d <= 40; ++d) {
      hashes.push_back(flip_random(q, d, rng));
      hashes.push_back(flip_spread(q, d, rng));
    }
  }
  std::shuffle(hashes.begin(), hashes.end(), rng);
  std::vector<std::int64_t> ids(hashes.size());
  for (std::size_t i = 0; i < ids.size(); ++i)
    ids[i] = static_cast<std::int64_t>(ids.size() - i) * 3;

  std::unique_ptr<PdqIndex> indexes[] = {make_pdq_index("flat"), make_pdq_index("multihash"),
                                         make_pdq_index("compact")};
  for (auto& index : indexes) {
    // In batches, to cover appending: for multihash, the first builds the lists, small ones
    // stay in the linearly scanned tail, and larger ones fold the tail into the lists.
    std::size_t at = 0;
    for (const std::size_t n : {1500, 10, 2000, 700, 1, 1200}) {
      index->add(std::span(ids).subspan(at, n), std::span(hashes).subspan(at, n));
      at += n;
    }
    index->add(std::span(ids).subspan(at), std::span(hashes).subspan(at));
    REQUIRE(index->size() == hashes.size());
  }

  for (const int threshold : {0, 10, 31, 32, 45, 64, 256}) {
    const auto want = brute_force(ids, hashes, queries, threshold);
    // Each query has two planted copies at every distance up to 40.
    const std::size_t planted =
        queries.size() * 2 * static_cast<std::size_t>(std::min(threshold, 40) + 1);
    REQUIRE(total(want) >= planted);
    for (auto& index : indexes) {
      INFO(index->type() << " at threshold " << threshold);
      require_same(index->range_search(queries, threshold), want);
    }
  }
}

TEST_CASE("the compact index stays exact on skewed hashes with long and empty buckets",
          "[pdq_index]") {
  // Real hash sets are not uniform. Here 90 % of the rows share their first 24 bytes
  // (every sub-hash key the same: one bucket per list holds them all, with gaps of a few
  // rows) while the rest are random (gaps of thousands of rows, which overflow the Rice
  // code's quotient and are written raw), and near copies of a few queries sit among them.
  std::mt19937_64 rng(99);
  const Hash256 hub = random_hash(rng);
  std::vector<Hash256> queries = {hub};
  for (int i = 0; i < 20; ++i) queries.push_back(random_hash(rng));
  std::vector<Hash256> hashes;
  for (int i = 0; i < 30000; ++i) {
    if (i % 10 != 0) {
      Hash256 h = hub;
      for (std::size_t b = 24; b < 32; ++b) h.bytes[b] = static_cast<std::uint8_t>(rng());
      hashes.push_back(h);
    } else {
      hashes.push_back(random_hash(rng));
    }
  }
  for (const auto& q : queries)
    for (int d = 0; d <= 35; ++d) hashes.push_back(flip_spread(q, d, rng));
  std::shuffle(hashes.begin() + 20000, hashes.end(), rng);
  std::vector<std::int64_t> ids(hashes.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = 5 + static_cast<std::int64_t>(i);

  auto index = make_pdq_index("compact");
  index->add(std::span(ids).first(25000), std::span(hashes).first(25000));      // built
  index->add(std::span(ids).subspan(25000), std::span(hashes).subspan(25000));  // rebuilt
  REQUIRE(index->size() == hashes.size());
  for (const int threshold : {0, 8, 24, 31, 40}) {
    INFO("threshold " << threshold);
    const auto want = brute_force(ids, hashes, queries, threshold);
    REQUIRE(total(want) >= queries.size() * static_cast<std::size_t>(std::min(threshold, 35) + 1));
    require_same(index->range_search(queries, threshold), want);
  }
  // Compressed: well under the 64 bytes of a plain 16-list layout's posting lists alone.
  CHECK(index->memory_bytes() < hashes.size() * 80);
}

TEST_CASE("bank ids beyond 32 bits are kept whole by every index", "[pdq_index]") {
  std::mt19937_64 rng(8);
  std::vector<Hash256> hashes(3000);
  std::vector<std::int64_t> ids(hashes.size());
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    hashes[i] = random_hash(rng);
    ids[i] = static_cast<std::int64_t>(i) + 1;
  }
  ids[2500] = std::int64_t{1} << 40;  // an id past 2^32 arrives after 2500 narrow ones
  ids[2999] = std::int64_t{1} << 32;
  for (const char* type : kTypes) {
    INFO(type);
    auto index = make_pdq_index(type);
    index->add(std::span(ids).first(2000), std::span(hashes).first(2000));
    index->add(std::span(ids).subspan(2000), std::span(hashes).subspan(2000));
    for (const std::size_t row :
         {std::size_t{0}, std::size_t{1999}, std::size_t{2500}, std::size_t{2999}}) {
      const auto hits = index->range_search(std::span(&hashes[row], 1), 0);
      REQUIRE(hits[0].size() == 1);
      CHECK(hits[0][0].id == ids[row]);
    }
    const auto all = index->contents();
    REQUIRE(all.size() == hashes.size());
    CHECK(all[2500].first == ids[2500]);
    CHECK(index->remove(std::span(&ids[2500], 1)) == 1);
    CHECK(index->range_search(std::span(&hashes[2500], 1), 0)[0].empty());
  }
}

TEST_CASE("searching an empty index or with a negative radius finds nothing", "[pdq_index]") {
  std::mt19937_64 rng(3);
  const Hash256 q = random_hash(rng);
  for (const char* type : kTypes) {
    INFO(type);
    auto index = make_pdq_index(type);
    CHECK(index->type() == type);
    CHECK(index->size() == 0);
    auto hits = index->range_search(std::span(&q, 1), 31);
    REQUIRE(hits.size() == 1);
    CHECK(hits[0].empty());
    const std::int64_t id = 1;
    index->add(std::span(&id, 1), std::span(&q, 1));
    CHECK(index->range_search(std::span(&q, 1), -1).at(0).empty());
    CHECK(index->range_search(std::span(&q, 1), 0).at(0).size() == 1);
    CHECK(index->range_search(std::span<const Hash256>(), 31).empty());
  }
}

TEST_CASE("an unknown index type is a usage error", "[pdq_index]") {
  try {
    make_pdq_index("hnsw");
    FAIL("expected an Error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Usage);
  }
}

TEST_CASE("memory use is reported and grows with the index", "[pdq_index]") {
  std::mt19937_64 rng(5);
  for (const char* type : kTypes) {
    INFO(type);
    auto index = make_pdq_index(type);
    const auto empty = index->memory_bytes();
    std::vector<Hash256> hashes(1000);
    std::vector<std::int64_t> ids(1000);
    for (std::size_t i = 0; i < hashes.size(); ++i) {
      hashes[i] = random_hash(rng);
      ids[i] = static_cast<std::int64_t>(i);
    }
    index->add(ids, hashes);
    CHECK(index->memory_bytes() >= empty + 1000 * 36);  // a hash and a 4-byte id each
  }
}

TEST_CASE("a saved index loads back with its generation type and hits", "[pdq_index]") {
  hwtest::TempDir dir;
  std::mt19937_64 rng(11);
  std::vector<Hash256> hashes(500);
  std::vector<std::int64_t> ids(500);
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    hashes[i] = random_hash(rng);
    ids[i] = 1000 + static_cast<std::int64_t>(i);
  }
  std::vector<Hash256> queries;
  for (int i = 0; i < 20; ++i)
    queries.push_back(flip_random(hashes[static_cast<std::size_t>(i * 7)], i, rng));

  std::ptrdiff_t saved = 0;
  for (const char* type : kTypes) {
    INFO(type);
    auto index = make_pdq_index(type);
    index->add(ids, hashes);
    const auto file = dir / (std::string(type) + ".pdq-index");
    index->save(file, 12345);
    // No temporary file left behind.
    CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), {}) == ++saved);
    std::uint64_t gen = 0;
    auto loaded = load_pdq_index(file, &gen);
    REQUIRE(loaded);
    CHECK(gen == 12345);
    CHECK(loaded->type() == type);
    CHECK(loaded->size() == hashes.size());
    const auto want = brute_force(ids, hashes, queries, 31);
    REQUIRE(total(want) >= queries.size());
    require_same(loaded->range_search(queries, 31), want);
  }
  std::uint64_t gen = 7;
  CHECK_FALSE(load_pdq_index(dir / "missing", &gen));
  CHECK(gen == 7);
}

TEST_CASE("a truncated or corrupted index cache is rejected never trusted", "[pdq_index]") {
  hwtest::TempDir dir;
  std::mt19937_64 rng(13);
  std::vector<Hash256> hashes(8);
  std::vector<std::int64_t> ids(8);
  for (std::size_t i = 0; i < hashes.size(); ++i) {
    hashes[i] = random_hash(rng);
    ids[i] = static_cast<std::int64_t>(i + 1);
  }
  auto index = make_pdq_index("multihash");
  index->add(ids, hashes);
  const auto good = dir / "good";
  index->save(good, 3);
  const std::string bytes = slurp(good);
  REQUIRE(bytes.size() == 8 + 8 + 8 + 9 + 8 + 8 * (8 + 32) + 8);
  std::uint64_t gen = 0;
  REQUIRE(load_pdq_index(good, &gen));

  const auto bad = dir / "bad";
  SECTION("every truncation") {
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      spit(bad, bytes.substr(0, n));
      INFO("truncated to " << n << " bytes");
      CHECK_FALSE(load_pdq_index(bad, &gen));
    }
  }
  SECTION("every single flipped byte") {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      std::string copy = bytes;
      copy[i] = static_cast<char>(copy[i] ^ 0x5a);
      spit(bad, copy);
      INFO("byte " << i << " flipped");
      CHECK_FALSE(load_pdq_index(bad, &gen));
    }
  }
  SECTION("trailing garbage") {
    spit(bad, bytes + "x");
    CHECK_FALSE(load_pdq_index(bad, &gen));
  }
  SECTION("absurd lengths with a valid checksum") {
    // Lengths are checked against the file size, not just the checksum.
    const auto forge = [&](std::uint64_t type_len, const std::string& type, std::uint64_t count) {
      std::string f = "HWPDQIX1";
      put_u64(f, 1);
      put_u64(f, type_len);
      f += type;
      put_u64(f, count);
      f += std::string(40, '\0');
      put_u64(f, fnv1a(f));
      return f;
    };
    spit(bad, forge(4, "flat", 1));
    REQUIRE(load_pdq_index(bad, &gen));  // the forger itself is right
    spit(bad, forge(4, "flat", std::uint64_t{1} << 60));
    CHECK_FALSE(load_pdq_index(bad, &gen));
    spit(bad, forge(~std::uint64_t{0}, "flat", 1));
    CHECK_FALSE(load_pdq_index(bad, &gen));
    spit(bad, forge(4, "flat", ~std::uint64_t{0} / 40 + 1));
    CHECK_FALSE(load_pdq_index(bad, &gen));
    spit(bad, forge(4, "hnsw", 1));
    CHECK_FALSE(load_pdq_index(bad, &gen));
  }
  SECTION("not a file") { CHECK_FALSE(load_pdq_index(dir.path(), &gen)); }
}

TEST_CASE("removed entries are never found again and the rest still match brute force",
          "[pdq_index]") {
  std::mt19937_64 rng(77);
  std::vector<Hash256> queries(30);
  for (auto& q : queries) q = random_hash(rng);
  std::vector<Hash256> hashes;
  for (int i = 0; i < 4000; ++i) hashes.push_back(random_hash(rng));
  for (const auto& q : queries)
    for (int d = 0; d <= 31; d += 2) hashes.push_back(flip_spread(q, d, rng));
  std::vector<std::int64_t> ids(hashes.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int64_t>(i) + 1;

  for (const char* type : kTypes) {
    INFO(type);
    auto index = make_pdq_index(type);
    // Half in one batch, the rest one at a time: rows both in the posting lists and in
    // the not-yet-listed tail.
    const std::size_t half = hashes.size() / 2;
    index->add(std::span(ids).first(half), std::span(hashes).first(half));
    for (std::size_t i = half; i < hashes.size(); ++i)
      index->add(std::span(ids).subspan(i, 1), std::span(hashes).subspan(i, 1));

    std::vector<std::int64_t> live_ids = ids;
    std::vector<Hash256> live = hashes;
    // Rounds of removals: small ones leave tombstones, the later ones force compaction.
    for (const double fraction : {0.01, 0.05, 0.3, 0.5}) {
      std::vector<std::int64_t> gone;
      std::vector<std::int64_t> kept_ids;
      std::vector<Hash256> kept;
      std::bernoulli_distribution pick(fraction);
      for (std::size_t i = 0; i < live.size(); ++i) {
        if (pick(rng)) {
          gone.push_back(live_ids[i]);
        } else {
          kept_ids.push_back(live_ids[i]);
          kept.push_back(live[i]);
        }
      }
      gone.push_back(999999);  // not in the index: ignored
      CHECK(index->remove(gone) == gone.size() - 1);
      CHECK(index->remove(gone) == 0);  // already gone
      live_ids = kept_ids;
      live = kept;
      REQUIRE(index->size() == live.size());
      const auto want = brute_force(live_ids, live, queries, 31);
      require_same(index->range_search(queries, 31), want);
      require_same(index->range_search(queries, 64), brute_force(live_ids, live, queries, 64));
      const auto held = index->contents();
      REQUIRE(held.size() == live.size());
      for (std::size_t i = 0; i < held.size(); ++i) {
        REQUIRE(held[i].first == live_ids[i]);
        REQUIRE(held[i].second == live[i]);
      }
      // for_each visits the same live pairs, in the same order, without the copy.
      std::vector<std::pair<std::int64_t, Hash256>> visited;
      index->for_each([&](std::int64_t id, const Hash256& h) { visited.emplace_back(id, h); });
      REQUIRE(visited == held);
    }

    // Removed rows do not come back through the cache file, and adding after removing works.
    hwtest::TempDir dir;
    index->save(dir / "x.pdq-index", 3);
    std::uint64_t gen = 0;
    auto loaded = load_pdq_index(dir / "x.pdq-index", &gen);
    REQUIRE(loaded);
    CHECK(loaded->size() == live.size());
    require_same(loaded->range_search(queries, 31), brute_force(live_ids, live, queries, 31));
    const std::int64_t fresh_id = 424242;
    const Hash256 fresh = random_hash(rng);
    index->add(std::span(&fresh_id, 1), std::span(&fresh, 1));
    CHECK(index->size() == live.size() + 1);
    const auto hit = index->range_search(std::span(&fresh, 1), 0);
    REQUIRE(hit.at(0).size() == 1);
    CHECK(hit[0][0].id == fresh_id);
  }
}
