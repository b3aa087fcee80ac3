// The bank: records in SQLite, deduplication, transactions, its configuration, and the
// PDQ index cache that must never outlive the records it was built from.
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "bank/bank.hpp"
#include "bank/bank_impl.hpp"
#include "bank/digests.hpp"
#include "bank/store.hpp"
#include "core/error.hpp"
#include "embed/embed_signal.hpp"
#include "local/local_signal.hpp"
#include "support.hpp"

using namespace hashwall;
using hwtest::random_hash;
namespace fs = std::filesystem;

namespace {

Hash256 flip_bits(Hash256 h, int n) {
  for (int i = 0; i < n; ++i) h.bytes[static_cast<std::size_t>(i)] ^= 0x01;  // bit 0 of byte i
  return h;
}

std::string sha_of(int n) {
  char buf[65];
  std::snprintf(buf, sizeof buf, "%064x", n);
  return buf;
}

NewEntry indexed(int n, const Hash256& h, std::string label = "") {
  NewEntry e;
  e.pdq = Hash256{};
  e.sha256 = sha_of(n);
  e.pdq = h;
  e.quality = 90;
  e.label = std::move(label);
  e.source = "photo" + std::to_string(n) + ".jpg";
  return e;
}

NewEntry imported(const Hash256& h, std::string source) {
  NewEntry e;
  e.pdq = Hash256{};
  e.pdq = h;
  e.source = std::move(source);
  e.origin = Origin::Imported;
  return e;
}

// Writes through a connection of its own, as another program would.
void raw_exec(const fs::path& db, const std::string& sql) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
  sqlite3_busy_timeout(h, 5000);
  char* err = nullptr;
  const int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
  const std::string msg = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(h);
  INFO(sql << ": " << msg);
  REQUIRE(rc == SQLITE_OK);
}

std::set<std::int64_t> found_ids(const Bank& bank, const Hash256& q, int d) {
  std::set<std::int64_t> out;
  for (const auto& m : bank.search_pdq(std::span(&q, 1), d)) out.insert(m.id);
  return out;
}

std::int64_t count_entries(const Bank& bank) {
  std::int64_t n = 0;
  bank.for_each([&](const Entry&) { return ++n, true; });
  return n;
}

}  // namespace

TEST_CASE("a new bank keeps its entries after it is closed and reopened", "[bank][stores]") {
  hwtest::TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  std::mt19937_64 rng(1);
  std::vector<NewEntry> batch;
  for (int i = 0; i < 10; ++i)
    batch.push_back(indexed(i, random_hash(rng), i % 2 ? "odd" : "even"));
  batch[3].quality.reset();
  std::vector<std::int64_t> ids;
  {
    auto bank = Bank::open(path, OpenMode::Create);
    CHECK(bank->path() == path);
    const auto r = bank->add(batch);
    CHECK(r.added == 10);
    CHECK(r.duplicates == 0);
    REQUIRE(r.ids.size() == 10);
    CHECK(std::count(r.was_duplicate.begin(), r.was_duplicate.end(), true) == 0);
    ids = r.ids;
    CHECK(std::set(ids.begin(), ids.end()).size() == 10);
  }
  auto bank = Bank::open(path, OpenMode::ReadOnly);
  for (int i = 0; i < 10; ++i) {
    const auto e = bank->get(ids[static_cast<std::size_t>(i)]);
    REQUIRE(e);
    CHECK(e->sha256 == sha_of(i));
    CHECK(e->pdq == batch[static_cast<std::size_t>(i)].pdq);
    CHECK(e->quality == batch[static_cast<std::size_t>(i)].quality);
    CHECK(e->label == batch[static_cast<std::size_t>(i)].label);
    CHECK(e->source == batch[static_cast<std::size_t>(i)].source);
    CHECK(e->origin == Origin::Indexed);
    CHECK(e->added_at > 1600000000);
    const auto matches = bank->search_pdq(std::span(&*e->pdq, 1), 0);
    REQUIRE(matches.size() == 1);
    CHECK(matches[0].id == e->id);
    CHECK(matches[0].distance == 0);
  }
  CHECK_FALSE(bank->get(999999));
  CHECK(bank->find_sha256(sha_of(4))->id == ids[4]);
  CHECK_FALSE(bank->find_sha256(sha_of(77)));

  // for_each: id order, and it stops when asked.
  std::vector<std::int64_t> seen;
  bank->for_each([&](const Entry& e) { return seen.push_back(e.id), true; });
  CHECK(seen == ids);
  seen.clear();
  bank->for_each([&](const Entry& e) { return seen.push_back(e.id), seen.size() < 3; });
  CHECK(seen.size() == 3);

  const auto st = bank->stats();
  CHECK(st.entries == 10);
  CHECK(st.indexed == 10);
  CHECK(st.imported == 0);
  CHECK(st.labels == 2);
  CHECK(st.generation == 1);
  CHECK(st.format_version == kFormatVersion);
  CHECK(st.index_type == "flat");
  CHECK(st.db_bytes > 0);
  CHECK(st.index_memory_bytes > 0);
  CHECK(st.low_quality == 0);
}

TEST_CASE("a file whose SHA-256 is already in the bank is not added again", "[bank][stores]") {
  hwtest::TempDir dir;
  auto bank = Bank::open(hwtest::bank_location(dir), OpenMode::Create);
  std::mt19937_64 rng(2);
  const auto first =
      bank->add(std::vector{indexed(1, random_hash(rng)), indexed(2, random_hash(rng))});
  REQUIRE(first.added == 2);

  // Same SHA-256 (even spelt in capitals), other PDQ: still the same file.
  auto again = indexed(2, random_hash(rng));
  again.sha256 = sha_of(2);
  std::transform(again.sha256->begin(), again.sha256->end(), again.sha256->begin(), ::toupper);
  auto fresh = indexed(3, random_hash(rng));
  const auto r = bank->add(
      std::vector{again, fresh, indexed(3, random_hash(rng)), indexed(1, random_hash(rng))});
  CHECK(r.added == 1);
  CHECK(r.duplicates == 3);
  REQUIRE(r.ids.size() == 4);
  CHECK(r.ids[0] == first.ids[1]);
  CHECK(r.ids[2] == r.ids[1]);  // duplicate within the batch
  CHECK(r.ids[3] == first.ids[0]);
  CHECK(r.was_duplicate == std::vector<bool>{true, false, true, true});
  CHECK(count_entries(*bank) == 3);
  // The skipped rows' hashes were not indexed.
  CHECK(found_ids(*bank, *again.pdq, 0).empty());

  // A batch of nothing but duplicates changes nothing, not even the generation.
  const auto gen = bank->stats().generation;
  CHECK(bank->add(std::vector{indexed(1, random_hash(rng))}).added == 0);
  CHECK(bank->stats().generation == gen);
}

TEST_CASE("an add of more entries than one round trip takes finds every copy and keeps every field",
          "[bank][stores]") {
  // Bank::add sends entries to the store in chunks of 5,000 (a PostgreSQL store answers a
  // chunk in one statement): copies within a chunk, across chunks and of entries already
  // stored must all name the first entry, and the fields must survive the batch encoding.
  hwtest::TempDir dir;
  auto bank = Bank::open(hwtest::bank_location(dir), OpenMode::Create);
  std::mt19937_64 rng(31);
  const auto before = bank->add(
      std::vector{indexed(1, random_hash(rng)), imported(random_hash(rng), "before.csv")});
  REQUIRE(before.added == 2);
  const auto before_unhashed = bank->get(before.ids[1]);
  REQUIRE(before_unhashed);

  std::vector<NewEntry> batch;
  for (int i = 0; i < 12000; ++i) {
    if (i % 2) {
      batch.push_back(indexed(100 + i, random_hash(rng), i % 3 ? "lab\"el,{x}" : ""));
      if (i % 7 == 0) batch.back().quality.reset();
    } else {
      // Bytes that need escaping in an array literal, and one that is not UTF-8.
      batch.push_back(imported(
          random_hash(rng), "list \"q\" {a,b} \\ " + std::to_string(i) + std::string(1, '\xff')));
      batch.back().quality = i % 101;
      batch.back().label = std::string("\0nul", 4);
    }
  }
  batch[7000] = batch[10];                                       // across chunks (unhashed)
  batch[7001] = batch[11];                                       // across chunks (SHA-256)
  batch[9002] = batch[9000];                                     // within a chunk (unhashed)
  batch[9003] = batch[9001];                                     // within a chunk (SHA-256)
  batch[11000] = indexed(1, random_hash(rng));                   // stored before (SHA-256)
  batch[11001] = imported(*before_unhashed->pdq, "before.csv");  // stored before (unhashed)
  const std::map<std::size_t, std::size_t> copies{
      {7000, 10}, {7001, 11}, {9002, 9000}, {9003, 9001}};

  const auto r = bank->add(batch);
  REQUIRE(r.ids.size() == batch.size());
  CHECK(r.duplicates == 6);
  CHECK(r.added == static_cast<std::int64_t>(batch.size()) - 6);
  std::int64_t last = before.ids[1];
  for (std::size_t i = 0; i < batch.size(); ++i) {
    INFO("entry " << i);
    if (const auto c = copies.find(i); c != copies.end()) {
      CHECK(r.was_duplicate[i]);
      CHECK(r.ids[i] == r.ids[c->second]);
      continue;
    }
    if (i == 11000 || i == 11001) {
      CHECK(r.was_duplicate[i]);
      CHECK(r.ids[i] == before.ids[i - 11000]);
      continue;
    }
    CHECK_FALSE(r.was_duplicate[i]);
    CHECK(r.ids[i] > last);  // new ids grow in the batch's order
    last = r.ids[i];
  }
  for (const std::size_t i : {std::size_t{0}, std::size_t{1}, std::size_t{14}, std::size_t{5001},
                              std::size_t{9000}, std::size_t{11999}}) {
    INFO("entry " << i);
    const auto e = bank->get(r.ids[i]);
    REQUIRE(e);
    CHECK(e->pdq == batch[i].pdq);
    CHECK(e->label == batch[i].label);
    CHECK(e->source == batch[i].source);
    CHECK(e->quality == batch[i].quality);
    CHECK(e->origin == batch[i].origin);
    CHECK(e->sha256 == batch[i].sha256);
    CHECK(found_ids(*bank, *batch[i].pdq, 0).count(r.ids[i]) == 1);
  }
  CHECK(count_entries(*bank) == 2 + r.added);
  // The digests written in batches are those check() recomputes from the rows.
  CHECK(bank->check().ok);
}

TEST_CASE("imported hashes are duplicates only with the same hash from the same source",
          "[bank][stores]") {
  hwtest::TempDir dir;
  auto bank = Bank::open(hwtest::bank_location(dir), OpenMode::Create);
  std::mt19937_64 rng(3);
  const Hash256 a = random_hash(rng), b = random_hash(rng);
  const auto r1 = bank->add(
      std::vector{imported(a, "ncmec.csv"), imported(a, "ncmec.csv"), imported(b, "ncmec.csv")});
  CHECK(r1.added == 2);
  CHECK(r1.duplicates == 1);
  CHECK(r1.ids[1] == r1.ids[0]);

  const auto r2 = bank->add(std::vector{imported(a, "ncmec.csv"), imported(a, "other.csv")});
  CHECK(r2.added == 1);
  CHECK(r2.ids[0] == r1.ids[0]);
  CHECK(r2.was_duplicate == std::vector<bool>{true, false});

  // A photo indexed from disk with the same PDQ is a different record.
  auto photo = indexed(1, a);
  photo.source = "ncmec.csv";
  CHECK(bank->add(std::span(&photo, 1)).added == 1);

  const auto e = bank->get(r1.ids[0]);
  REQUIRE(e);
  CHECK_FALSE(e->sha256);
  CHECK_FALSE(e->quality);
  CHECK(e->origin == Origin::Imported);
  CHECK(std::string(origin_name(e->origin)) == "imported");
  const auto st = bank->stats();
  CHECK(st.imported == 3);
  CHECK(st.indexed == 1);
  CHECK(found_ids(*bank, a, 0).size() == 3);
}

TEST_CASE("removed entries are no longer found also after reopening", "[bank][stores]") {
  hwtest::TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  std::mt19937_64 rng(4);
  std::vector<Hash256> h;
  for (int i = 0; i < 6; ++i) h.push_back(random_hash(rng));
  std::vector<std::int64_t> ids;
  {
    auto bank = Bank::open(path, OpenMode::Create);
    ids = bank->add(std::vector{indexed(0, h[0], "keep"), indexed(1, h[1], "drop"),
                                indexed(2, h[2], "drop"), indexed(3, h[3], "keep"),
                                indexed(4, h[4], "keep"), indexed(5, h[5], "keep")})
              .ids;
    auto gen = bank->stats().generation;

    const std::int64_t by_id[] = {ids[0], 424242};
    CHECK(bank->remove_ids(by_id) == 1);
    CHECK(bank->stats().generation == ++gen);
    CHECK(bank->remove_label("drop") == 2);
    CHECK(bank->stats().generation == ++gen);
    CHECK(bank->remove_sha256(sha_of(3)) == 1);
    CHECK(bank->stats().generation == ++gen);
    CHECK(bank->remove_label("nobody") == 0);
    CHECK(bank->stats().generation == gen);

    for (int i = 0; i < 4; ++i) CHECK(found_ids(*bank, h[static_cast<std::size_t>(i)], 0).empty());
    CHECK(found_ids(*bank, h[4], 0) == std::set{ids[4]});
    CHECK_FALSE(bank->get(ids[1]));
    CHECK(bank->stats().entries == 2);
  }
  auto bank = Bank::open(path, OpenMode::ReadWrite);
  for (int i = 0; i < 4; ++i) CHECK(found_ids(*bank, h[static_cast<std::size_t>(i)], 0).empty());
  CHECK(found_ids(*bank, h[5], 0) == std::set{ids[5]});
  CHECK(count_entries(*bank) == 2);
  // A removed file can be indexed again, under a new id.
  const auto r = bank->add(std::vector{indexed(0, h[0])});
  CHECK(r.added == 1);
  CHECK(r.ids[0] > ids[5]);
  CHECK(bank->check().ok);
}

TEST_CASE("a bank keeps the configuration it was created with", "[bank][stores]") {
  hwtest::TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  BankConfig made;
  made.pdq_threshold = 20;
  made.min_quality = 70;
  made.index_type = "multihash";
  made.multihash_min_entries = 1234;
  Bank::open(path, OpenMode::Create, made);

  BankConfig other;  // defaults: 31, 50, auto
  for (const auto mode : {OpenMode::ReadOnly, OpenMode::ReadWrite, OpenMode::Create}) {
    auto bank = Bank::open(path, mode, other);
    CHECK(bank->config().pdq_threshold == 20);
    CHECK(bank->config().min_quality == 70);
    CHECK(bank->config().index_type == "multihash");
    CHECK(bank->config().multihash_min_entries == 1234);
    CHECK(bank->stats().index_type == "multihash");
  }

  BankConfig wrong;
  wrong.index_type = "hnsw";
  CHECK_THROWS_AS(Bank::open(hwtest::bank_location(dir, "other.db"), OpenMode::Create, wrong),
                  Error);
}

TEST_CASE("quality below the bank's minimum is counted as low quality", "[bank][stores]") {
  hwtest::TempDir dir;
  auto bank = Bank::open(hwtest::bank_location(dir), OpenMode::Create);
  std::mt19937_64 rng(5);
  auto low = indexed(1, random_hash(rng));
  low.quality = 49;
  auto edge = indexed(2, random_hash(rng));
  edge.quality = 50;
  auto none = imported(random_hash(rng), "list.txt");
  bank->add(std::vector{low, edge, none});
  CHECK(bank->stats().low_quality == 1);
}

TEST_CASE("opening a missing bank without creating it is a bank error", "[bank]") {
  hwtest::TempDir dir;
  for (const auto mode : {OpenMode::ReadOnly, OpenMode::ReadWrite}) {
    try {
      Bank::open(dir / "nope.db", mode);
      FAIL("expected an Error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Bank);
      CHECK(e.file() == (dir / "nope.db").string());
      CHECK_THAT(e.reason(), Catch::Contains("no bank here"));
    }
  }
  CHECK_FALSE(fs::exists(dir / "nope.db"));
}

TEST_CASE("a file that is not a bank is refused and left untouched", "[bank]") {
  hwtest::TempDir dir;
  const auto text = dir / "notes.txt";
  const std::string content(5000, 'x');
  std::ofstream(text) << content;
  for (const auto mode : {OpenMode::ReadOnly, OpenMode::ReadWrite, OpenMode::Create}) {
    try {
      Bank::open(text, mode);
      FAIL("expected an Error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Bank);
      CHECK_THAT(e.reason(), Catch::Contains("not a hashwall bank"));
    }
  }
  CHECK(fs::file_size(text) == content.size());

  // Somebody else's SQLite database: also refused, and not switched to WAL.
  const auto other = dir / "other.db";
  raw_exec(other, "CREATE TABLE songs(title TEXT)");
  try {
    Bank::open(other, OpenMode::Create);
    FAIL("expected an Error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Bank);
    CHECK_THAT(e.reason(), Catch::Contains("not a hashwall bank"));
  }
  CHECK_FALSE(fs::exists(dir / "other.db-wal"));
}

TEST_CASE("a bank of a newer format version is refused with a clear reason", "[bank]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  Bank::open(path, OpenMode::Create);
  raw_exec(path, "UPDATE meta SET value = '" + std::to_string(kFormatVersion + 1) +
                     "' WHERE key = 'format_version'");
  try {
    Bank::open(path, OpenMode::ReadOnly);
    FAIL("expected an Error");
  } catch (const Error& e) {
    CHECK(e.kind() == ErrorKind::Bank);
    CHECK_THAT(e.reason(), Catch::Contains("newer"));
  }
}

TEST_CASE("a batch with one invalid entry is rolled back as a whole", "[bank][stores]") {
  hwtest::TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  auto bank = Bank::open(path, OpenMode::Create);
  std::mt19937_64 rng(6);
  bank->add(std::vector{indexed(100, random_hash(rng))});
  const auto gen = bank->stats().generation;

  const Hash256 a = random_hash(rng), b = random_hash(rng);
  auto bad_quality = indexed(3, random_hash(rng));
  bad_quality.quality = 500;
  auto bad_sha = indexed(4, random_hash(rng));
  bad_sha.sha256 = "abc123";
  auto not_hex = indexed(5, random_hash(rng));
  not_hex.sha256 = std::string(64, 'g');
  for (const auto& bad : {bad_quality, bad_sha, not_hex}) {
    try {
      bank->add(std::vector{indexed(1, a), indexed(2, b), bad});
      FAIL("expected an Error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Bank);
      CHECK_THAT(e.reason(), Catch::Contains("entry 3"));
    }
    CHECK(bank->stats().entries == 1);
    CHECK(bank->stats().generation == gen);
    CHECK_FALSE(bank->find_sha256(sha_of(1)));
    CHECK(found_ids(*bank, a, 0).empty());
  }
  // The bank is still usable, and the good rows can go in on their own.
  CHECK(bank->add(std::vector{indexed(1, a), indexed(2, b)}).added == 2);
  CHECK(found_ids(*bank, a, 0).size() == 1);

  // The schema refuses what add() would refuse, for writers that bypass hashwall.
  if (hwtest::testing_postgresql()) {
    const std::string zero32 = "decode(repeat('00', 32), 'hex')";
    for (const std::string& sql :
         {"INSERT INTO entries(pdq, quality, origin, added_at) VALUES(" + zero32 +
              ", 500, 'indexed', 0)",
          std::string("INSERT INTO entries(pdq, origin, added_at) VALUES(decode(repeat('00', "
                      "31), 'hex'), 'indexed', 0)"),
          "INSERT INTO entries(pdq, origin, added_at) VALUES(" + zero32 + ", 'stolen', 0)",
          "INSERT INTO entries(sha256, pdq, origin, added_at) VALUES('abc', " + zero32 +
              ", 'indexed', 0)"}) {
      INFO(sql);
      CHECK_THROWS(hwtest::raw_sql(path, sql));
    }
    return;
  }
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &h) == SQLITE_OK);
  sqlite3_busy_timeout(h, 5000);
  for (const char* sql :
       {"INSERT INTO entries(pdq, quality, origin, added_at) VALUES(zeroblob(32), 500, 'indexed', "
        "0)",
        "INSERT INTO entries(pdq, origin, added_at) VALUES(zeroblob(31), 'indexed', 0)",
        "INSERT INTO entries(pdq, origin, added_at) VALUES(zeroblob(32), 'stolen', 0)",
        "INSERT INTO entries(sha256, pdq, origin, added_at) VALUES('abc', zeroblob(32), 'indexed', "
        "0)"}) {
    INFO(sql);
    CHECK(sqlite3_exec(h, sql, nullptr, nullptr, nullptr) != SQLITE_OK);
  }
  sqlite3_close(h);
}

TEST_CASE("a read-only bank refuses writes", "[bank][stores]") {
  hwtest::TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  std::mt19937_64 rng(7);
  Bank::open(path, OpenMode::Create)->add(std::vector{indexed(1, random_hash(rng))});
  auto bank = Bank::open(path, OpenMode::ReadOnly);
  CHECK_THROWS_AS(bank->add(std::vector{indexed(2, random_hash(rng))}), Error);
  CHECK_THROWS_AS(bank->remove_sha256(sha_of(1)), Error);
  CHECK(bank->stats().entries == 1);
}

TEST_CASE("search keeps one row per entry with its best distance and the first query to reach it",
          "[bank][stores]") {
  hwtest::TempDir dir;
  auto bank = Bank::open(hwtest::bank_location(dir), OpenMode::Create);
  std::mt19937_64 rng(8);
  const Hash256 x = random_hash(rng), y = random_hash(rng);
  const auto ids =
      bank->add(std::vector{indexed(1, x), indexed(2, y), indexed(3, flip_bits(x, 2))}).ids;
  // Query 0 is 5 from x, queries 1 and 2 are both 2 from x; query 3 is y itself.
  const std::vector<Hash256> queries{flip_bits(x, 5), flip_bits(x, 2), flip_bits(x, 2), y};
  const auto m = bank->search_pdq(queries, 10);
  REQUIRE(m.size() == 3);
  // Nearest first, ties by id.
  CHECK(m[0].id == ids[1]);
  CHECK(m[0].distance == 0);
  CHECK(m[0].query_index == 3);
  CHECK(m[1].id == ids[2]);  // flip_bits(x, 2) itself
  CHECK(m[1].distance == 0);
  CHECK(m[1].query_index == 1);
  CHECK(m[2].id == ids[0]);
  CHECK(m[2].distance == 2);
  CHECK(m[2].query_index == 1);
  CHECK(bank->search_pdq(queries, -1).empty());
  CHECK(bank->search_pdq(std::span<const Hash256>(), 31).empty());
}

TEST_CASE("the index cache is written on close trusted when fresh and refused when forged",
          "[bank]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  const auto cache = pdq_index_path(path);
  CHECK(cache == dir / "bank.db.pdq-index");
  std::mt19937_64 rng(9);
  std::vector<Hash256> h;
  for (int i = 0; i < 4; ++i) h.push_back(random_hash(rng));
  std::vector<std::int64_t> ids;
  std::uint64_t gen = 0;
  {
    auto bank = Bank::open(path, OpenMode::Create);
    ids = bank->add(std::vector{indexed(0, h[0]), indexed(1, h[1]), indexed(2, h[2])}).ids;
    gen = bank->stats().generation;
    bank->flush_index();
    CHECK(fs::exists(cache));
    CHECK(bank->stats().index_cache_bytes == fs::file_size(cache));
  }
  std::uint64_t cache_gen = 0;
  auto cached = load_pdq_index(cache, &cache_gen);
  REQUIRE(cached);
  CHECK(cache_gen == gen);
  CHECK(cached->size() == 3);

  // A fresh cache is used as it is: opening does not rebuild the index.
  {
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    CHECK(bank->stats().index_rebuilds == 0);
    CHECK(bank->index_cache_refused().empty());
    CHECK(found_ids(*bank, h[0], 0) == std::set{ids[0]});
  }

  // Forge a cache with the bank's generation and entry count but other content: the
  // header fits, the content does not. open() finds a sampled record missing under its
  // hash, does not use the cache and rebuilds from the records; check() calls it out.
  auto forged = make_pdq_index("flat");
  const std::vector<Hash256> fake{h[3], h[1], h[2]};
  forged->add(ids, fake);
  forged->save(cache, gen);
  {
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    CHECK_THAT(bank->index_cache_refused(), Catch::Contains("disagrees with the records"));
    CHECK(bank->stats().index_rebuilds == 1);
    CHECK(found_ids(*bank, h[0], 0) == std::set{ids[0]});
    CHECK(found_ids(*bank, h[3], 0).empty());
    const auto rep = bank->check();
    CHECK_FALSE(rep.ok);
    REQUIRE_FALSE(rep.problems.empty());
    bool cache_named = false;
    for (const auto& p : rep.problems)
      cache_named = cache_named || p.find("index cache") != std::string::npos;
    CHECK(cache_named);
  }
  // Deleting the cache makes the next open rebuild it from the records.
  fs::remove(cache);
  {
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    CHECK(found_ids(*bank, h[0], 0) == std::set{ids[0]});
    CHECK(found_ids(*bank, h[3], 0).empty());
    CHECK(bank->check().ok);
  }
  // ... and a read-only bank writes the rebuilt cache back (a derived file).
  CHECK(load_pdq_index(cache, &cache_gen));
}

TEST_CASE("a stale index cache is rebuilt and searches stay correct", "[bank]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  const auto cache = pdq_index_path(path);
  std::mt19937_64 rng(10);
  const Hash256 a = random_hash(rng), b = random_hash(rng), c = random_hash(rng);
  Bank::open(path, OpenMode::Create)->add(std::vector{indexed(1, a)});
  std::uint64_t cache_gen = 0;
  REQUIRE(load_pdq_index(cache, &cache_gen));
  REQUIRE(cache_gen == 1);

  SECTION("another writer adds entries and bumps the generation") {
    // The other writer's cache file is lost (it crashed before writing it): ours is left.
    std::string old_cache;
    {
      std::ifstream in(cache, std::ios::binary);
      old_cache.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    Bank::open(path, OpenMode::ReadWrite)->add(std::vector{indexed(2, b)});
    std::ofstream(cache, std::ios::binary | std::ios::trunc) << old_cache;
    {
      // The old cache is noted, not a problem: it is simply out of date.
      auto bank = Bank::open(path, OpenMode::ReadWrite);
      CHECK(found_ids(*bank, b, 0).size() == 1);
      CHECK(found_ids(*bank, a, 0).size() == 1);
      const auto rep = bank->check();
      CHECK(rep.ok);
      CHECK_FALSE(rep.notes.empty());
    }
    REQUIRE(load_pdq_index(cache, &cache_gen));
    CHECK(cache_gen == 2);
  }
  SECTION("another writer forgets to bump the generation") {
    raw_exec(path, "INSERT INTO entries(sha256, pdq, origin, added_at) VALUES('" + sha_of(2) +
                       "', x'" + b.hex() + "', 'indexed', 0)");
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    CHECK(found_ids(*bank, b, 0).size() == 1);
  }
  SECTION("another Bank object writes while this one is open") {
    auto first = Bank::open(path, OpenMode::ReadWrite);
    {
      auto second = Bank::open(path, OpenMode::ReadWrite);
      second->add(std::vector{indexed(2, b)});
    }
    // The first notices at its next search ...
    CHECK(found_ids(*first, b, 0).size() == 1);
    // ... and its own next write builds on the other's, not on its old picture.
    first->add(std::vector{indexed(3, c)});
    CHECK(found_ids(*first, a, 0).size() == 1);
    CHECK(found_ids(*first, b, 0).size() == 1);
    CHECK(found_ids(*first, c, 0).size() == 1);
    CHECK(first->stats().generation == 3);
    CHECK(first->check().ok);
    first.reset();
    REQUIRE(load_pdq_index(cache, &cache_gen));
    CHECK(cache_gen == 3);
    auto again = Bank::open(path, OpenMode::ReadOnly);
    CHECK(found_ids(*again, b, 0).size() == 1);
    CHECK(found_ids(*again, c, 0).size() == 1);
  }
  SECTION("the cache file is damaged") {
    std::ofstream(cache, std::ios::binary | std::ios::trunc) << "HWPDQIX1 garbage";
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    CHECK(found_ids(*bank, a, 0).size() == 1);
    const auto rep = bank->check();
    CHECK(rep.ok);
    CHECK_FALSE(rep.notes.empty());
  }
}

TEST_CASE("an auto bank switches to multihash once it is large enough", "[bank][stores]") {
  hwtest::TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  BankConfig cfg;
  cfg.multihash_min_entries = 10;
  std::mt19937_64 rng(11);
  std::vector<Hash256> h;
  for (int i = 0; i < 12; ++i) h.push_back(random_hash(rng));
  std::vector<NewEntry> first, second;
  for (int i = 0; i < 6; ++i) first.push_back(indexed(i, h[static_cast<std::size_t>(i)]));
  for (int i = 6; i < 12; ++i) second.push_back(indexed(i, h[static_cast<std::size_t>(i)]));
  {
    auto bank = Bank::open(path, OpenMode::Create, cfg);
    bank->add(first);
    CHECK(bank->stats().index_type == "flat");
    bank->add(second);
    CHECK(bank->stats().index_type == "multihash");
    for (const auto& x : h) CHECK(found_ids(*bank, flip_bits(x, 3), 31).size() == 1);
    CHECK(bank->check().ok);
  }
  {
    auto bank = Bank::open(path, OpenMode::ReadWrite);
    CHECK(bank->stats().index_type == "multihash");
    const std::int64_t drop[] = {1, 2, 3};
    bank->remove_ids(drop);
    CHECK(bank->stats().index_type == "flat");
    CHECK(found_ids(*bank, h[0], 0).empty());
    CHECK(found_ids(*bank, h[11], 0).size() == 1);
  }
}

TEST_CASE("a compact-index bank searches adds removes and reopens like the others", "[bank]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  BankConfig cfg;
  cfg.index_type = "compact";
  std::mt19937_64 rng(41);
  std::vector<Hash256> h;
  std::vector<NewEntry> batch, more;
  for (int i = 0; i < 4000; ++i) {
    h.push_back(random_hash(rng));
    (i < 3000 ? batch : more).push_back(indexed(i, h.back()));
  }
  std::vector<std::int64_t> ids;
  {
    auto bank = Bank::open(path, OpenMode::Create, cfg);
    ids = bank->add(batch).ids;
    const auto added = bank->add(more).ids;
    ids.insert(ids.end(), added.begin(), added.end());
    CHECK(bank->stats().index_type == "compact");
    for (const std::size_t i :
         {std::size_t{0}, std::size_t{2999}, std::size_t{3000}, std::size_t{3999}})
      CHECK(found_ids(*bank, flip_bits(h[i], 20), 31) == std::set{ids[i]});
    const std::int64_t drop[] = {ids[5]};
    CHECK(bank->remove_ids(drop) == 1);
    CHECK(found_ids(*bank, h[5], 0).empty());
    CHECK(bank->check().ok);
  }
  // From the index cache, then from the records alone.
  for (int pass = 0; pass < 2; ++pass) {
    INFO("pass " << pass);
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    CHECK(bank->stats().index_type == "compact");
    CHECK(found_ids(*bank, flip_bits(h[1234], 31), 31) == std::set{ids[1234]});
    CHECK(found_ids(*bank, h[5], 0).empty());
    CHECK(bank->check().ok);
    bank.reset();
    for (const auto& f : std::filesystem::directory_iterator(dir.path()))
      if (f.path().string().find("index") != std::string::npos) std::filesystem::remove(f.path());
  }
}

TEST_CASE("set_index records the new index type and rebuilds the index", "[bank][stores]") {
  hwtest::TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  std::mt19937_64 rng(43);
  std::vector<Hash256> h;
  std::vector<NewEntry> batch;
  for (int i = 0; i < 1500; ++i) {
    h.push_back(random_hash(rng));
    batch.push_back(indexed(i, h.back()));
  }
  std::vector<std::int64_t> ids;
  {
    auto bank = Bank::open(path, OpenMode::Create);
    ids = bank->add(batch).ids;
    CHECK(bank->stats().index_type == "flat");
    for (const std::string type : {"compact", "multihash", "flat"}) {
      INFO(type);
      bank->set_index(type);
      CHECK(bank->config().index_type == type);
      CHECK(bank->stats().index_type == type);
      CHECK(found_ids(*bank, flip_bits(h[700], 25), 31) == std::set{ids[700]});
      CHECK(bank->check().ok);
    }
    bank->set_index("auto", 1000);
    CHECK(bank->stats().index_type == "multihash");
    CHECK_THROWS_AS(bank->set_index("hnsw"), Error);
    CHECK_THROWS_AS(bank->set_index("auto", -1), Error);
    CHECK(bank->config().index_type == "auto");
  }
  auto reopened = Bank::open(path, OpenMode::ReadOnly);
  CHECK(reopened->config().index_type == "auto");
  CHECK(reopened->config().multihash_min_entries == 1000);
  CHECK(reopened->stats().index_type == "multihash");
  CHECK_THROWS_AS(reopened->set_index("flat"), Error);  // read-only
}

TEST_CASE("removals on a multihash bank stay correct in this and in other connections",
          "[bank][stores]") {
  hwtest::TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  BankConfig cfg;
  cfg.index_type = "multihash";
  std::mt19937_64 rng(31);
  std::vector<Hash256> h;
  std::vector<NewEntry> batch;
  for (int i = 0; i < 3000; ++i) {
    h.push_back(random_hash(rng));
    batch.push_back(indexed(i, h.back(), i % 10 == 0 ? "tenth" : ""));
  }
  std::vector<std::int64_t> ids;
  {
    auto bank = Bank::open(path, OpenMode::Create, cfg);
    ids = bank->add(batch).ids;
    auto other = Bank::open(path, OpenMode::ReadWrite);
    CHECK(found_ids(*other, h[7], 0) == std::set{ids[7]});

    // Removed here: gone from this connection at once, and from the other at its next search.
    const std::int64_t drop[] = {ids[1], ids[2], ids[3]};
    CHECK(bank->remove_ids(drop) == 3);
    CHECK(bank->remove_label("tenth") == 300);
    CHECK(hwtest::eventually([&] { return found_ids(*other, h[20], 0).empty(); }));
    for (const auto* b : {bank.get(), other.get()}) {
      CHECK(found_ids(*b, h[2], 0).empty());
      CHECK(found_ids(*b, h[20], 0).empty());
      CHECK(found_ids(*b, flip_bits(h[4], 9), 31) == std::set{ids[4]});
      CHECK(found_ids(*b, h[2999], 0) == std::set{ids[2999]});
    }
    // Removed by the other connection: this one learns of it too.
    const std::int64_t drop2[] = {ids[4]};
    CHECK(other->remove_ids(drop2) == 1);
    CHECK(hwtest::eventually([&] { return found_ids(*bank, h[4], 0).empty(); }));
    CHECK(bank->stats().entries == 3000 - 304);
    const auto rep = bank->check();
    INFO((rep.problems.empty() ? std::string() : rep.problems.front()));
    CHECK(rep.ok);
  }
  // The index cache written on close holds the live entries only, and check agrees.
  auto bank = Bank::open(path, OpenMode::ReadOnly);
  const auto rep = bank->check();
  INFO((rep.problems.empty() ? std::string() : rep.problems.front()));
  CHECK(rep.ok);
  CHECK(rep.notes.empty());
  CHECK(found_ids(*bank, h[30], 0).empty());
  CHECK(found_ids(*bank, h[31], 0) == std::set{ids[31]});
}

TEST_CASE("check passes on a healthy bank and reports corrupted rows", "[bank]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  std::mt19937_64 rng(12);
  std::vector<NewEntry> batch;
  for (int i = 0; i < 50; ++i) batch.push_back(indexed(i, random_hash(rng)));
  std::vector<std::int64_t> ids;
  {
    auto bank = Bank::open(path, OpenMode::Create);
    ids = bank->add(batch).ids;
    const auto rep = bank->check();
    CHECK(rep.ok);
    CHECK(rep.problems.empty());
  }
  const auto victim = std::to_string(ids[17]);
  SECTION("a PDQ blob of 31 bytes") {
    raw_exec(
        path,
        "PRAGMA ignore_check_constraints = ON; UPDATE entries SET pdq = zeroblob(31) WHERE id = " +
            victim + "; UPDATE meta SET value = '2' WHERE key = 'generation';");
    auto bank = Bank::open(path, OpenMode::ReadOnly);  // still opens, to be inspected
    const auto rep = bank->check();
    CHECK_FALSE(rep.ok);
    bool named = false;
    for (const auto& p : rep.problems)
      named = named || (p.find("entry " + victim) != std::string::npos &&
                        p.find("31 bytes") != std::string::npos);
    CHECK(named);
    CHECK_THROWS_AS(bank->get(ids[17]), Error);
    CHECK(bank->get(ids[18]));
  }
  SECTION("a quality of 500") {
    raw_exec(path,
             "PRAGMA ignore_check_constraints = ON; UPDATE entries SET quality = 500 WHERE id = " +
                 victim);
    const auto rep = Bank::open(path, OpenMode::ReadOnly)->check();
    CHECK_FALSE(rep.ok);
    // What check reads back differs from what was written, and the value is out of range.
    REQUIRE(rep.problems.size() == 2);
    CHECK_THAT(rep.problems[0], Catch::Contains("quality"));
    CHECK_THAT(rep.problems[1], Catch::Contains("differs from the checksum"));
  }
  SECTION("a generation that is not a number") {
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    raw_exec(path, "UPDATE meta SET value = 'many' WHERE key = 'generation'");
    CHECK_FALSE(bank->check().ok);
  }
}

TEST_CASE("concurrent searches and lookups agree with a single-threaded search", "[bank][stores]") {
  hwtest::TempDir dir;
  auto bank = Bank::open(hwtest::bank_location(dir), OpenMode::Create);
  std::mt19937_64 rng(13);
  std::vector<NewEntry> batch;
  for (int i = 0; i < 500; ++i) batch.push_back(indexed(i, random_hash(rng)));
  const auto ids = bank->add(batch).ids;
  std::vector<std::vector<PdqMatch>> want(batch.size());
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const Hash256 q = flip_bits(*batch[i].pdq, static_cast<int>(i % 20));
    want[i] = bank->search_pdq(std::span(&q, 1), 31);
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&, t] {
      for (std::size_t i = static_cast<std::size_t>(t); i < batch.size(); i += 2) {
        const Hash256 q = flip_bits(*batch[i].pdq, static_cast<int>(i % 20));
        const auto got = bank->search_pdq(std::span(&q, 1), 31);
        if (got.size() != want[i].size() || got.empty() || got[0].id != ids[i]) ++mismatches;
        const auto e = bank->get(ids[i]);
        if (!e || e->pdq != batch[i].pdq) ++mismatches;
      }
    });
  }
  for (auto& w : workers) w.join();
  CHECK(mismatches == 0);
}

namespace {

// Entries with every kind of stored part: the row, local features, an embedding.
std::vector<NewEntry> entries_with_features(std::mt19937_64& rng, int n) {
  std::vector<NewEntry> batch;
  for (int i = 0; i < n; ++i) {
    NewEntry e = indexed(i, random_hash(rng), "case-" + std::to_string(i));
    LocalFeatures f;
    f.width = 64;
    f.height = 48;
    f.descriptors.create(8, kOrbBytes, CV_8U);
    cv::randu(f.descriptors, 0, 256);
    for (int k = 0; k < 8; ++k) f.points.emplace_back(0.1f * static_cast<float>(k), 0.5f);
    e.records["local"] = local_record(f);
    e.records["embed"] =
        embedding_record(std::vector<float>{1.f, static_cast<float>(i), 0.f, 0.5f});
    batch.push_back(std::move(e));
  }
  return batch;
}

BankConfig all_signals() {
  BankConfig cfg;
  cfg.signals = {"pdq", "local", "embed"};
  cfg.embed_model = "test@0000";
  return cfg;
}

bool names(const CheckReport& rep, const std::string& what, const std::string& id = "") {
  return std::any_of(rep.problems.begin(), rep.problems.end(), [&](const std::string& p) {
    return p.find(what) != std::string::npos &&
           (id.empty() || p.find("entry " + id + " ") != std::string::npos ||
            p.find("entry " + id + ":") != std::string::npos);
  });
}

std::string meta_value(const fs::path& db, const std::string& key) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* s = nullptr;
  sqlite3_prepare_v2(h, "SELECT value FROM meta WHERE key = ?1", -1, &s, nullptr);
  sqlite3_bind_text(s, 1, key.c_str(), -1, SQLITE_TRANSIENT);
  std::string out;
  if (sqlite3_step(s) == SQLITE_ROW) out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
  sqlite3_finalize(s);
  sqlite3_close(h);
  return out;
}

}  // namespace

TEST_CASE("check reports damaged local-feature and embedding rows", "[bank]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  BankConfig cfg;
  cfg.signals = {"pdq", "local", "embed"};
  cfg.embed_model = "test@0000";
  std::mt19937_64 rng(3);
  std::vector<std::int64_t> ids;
  {
    auto bank = Bank::open(path, OpenMode::Create, cfg);
    ids = bank->add(entries_with_features(rng, 4)).ids;
    const auto rep = bank->check();
    INFO((rep.problems.empty() ? std::string() : rep.problems[0]));
    CHECK(rep.ok);
  }
  const auto a = std::to_string(ids[1]), b = std::to_string(ids[2]);
  raw_exec(
      path,
      "UPDATE local_features SET descriptors = x'00ff' WHERE entry_id = " + a +
          "; UPDATE embeddings SET vector = x'000000' WHERE entry_id = " + b +
          "; UPDATE embeddings SET vector = x'0000c07f0000803f0000803f0000803f' WHERE entry_id = " +
          std::to_string(ids[3]));
  const auto rep = Bank::open(path, OpenMode::ReadOnly)->check();
  CHECK_FALSE(rep.ok);
  const auto named = [&](const std::string& what, const std::string& id) {
    return std::any_of(rep.problems.begin(), rep.problems.end(), [&](const std::string& p) {
      return p.find("entry " + id + ":") != std::string::npos && p.find(what) != std::string::npos;
    });
  };
  CHECK(named("local features", a));
  CHECK(named("3 bytes", b));
  CHECK(named("not a finite number", std::to_string(ids[3])));
  // Each of the three also differs from the checksum written when it was added.
  CHECK(rep.problems.size() == 6);
}

TEST_CASE(
    "a bank records how its local features were computed and refuses entries computed "
    "otherwise",
    "[bank]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  BankConfig cfg;
  cfg.signals = {"pdq", "local"};
  std::mt19937_64 rng(2);
  NewEntry e = indexed(1, random_hash(rng));
  LocalFeatures none;
  none.descriptors = cv::Mat(0, kOrbBytes, CV_8U);
  e.records["local"] = local_record(none);
  REQUIRE(Bank::open(path, OpenMode::Create, cfg)->add(std::span(&e, 1)).added == 1);
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = 'signal.local.compute'", -1,
                               &s, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(s) == SQLITE_ROW);
    const std::string recorded = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    sqlite3_close(db);
    CHECK(parse_params(recorded) == local_entry_params());
    CHECK_THAT(recorded, Catch::Contains("\"entry_keypoints\":\"256\""));
  }
  // As if a later release took 512 keypoints per entry.
  auto other = local_entry_params();
  other["entry_keypoints"] = "512";
  raw_exec(path, "UPDATE meta SET value = '" + params_text(other) +
                     "' WHERE key = 'signal.local.compute'");
  auto bank = Bank::open(path, OpenMode::ReadWrite);
  NewEntry e2 = indexed(2, random_hash(rng));
  e2.records = e.records;
  CHECK_THROWS_WITH(bank->add(std::span(&e2, 1)), Catch::Contains("\"entry_keypoints\":\"512\"") &&
                                                      Catch::Contains("would mix two kinds"));
  CHECK(bank->stats().entries == 1);
  // Entries without local features (an imported list) and queries are unaffected.
  NewEntry plain = imported(random_hash(rng), "list.csv");
  CHECK(bank->add(std::span(&plain, 1)).added == 1);
  CHECK(bank->search_signal("local", SignalQuery{{local_query_form(none)}}, 0.0, 10).empty());
  // The edit itself is what check() reports: the settings no longer match their seal.
  const auto rep = bank->check();
  CHECK_FALSE(rep.ok);
  REQUIRE(rep.problems.size() == 1);
  CHECK_THAT(rep.problems[0], Catch::Contains("differ from those it was created with"));
}

TEST_CASE("labels and sources are bounded: at the limit stored, one byte over refused",
          "[bank][stores]") {
  hwtest::TempDir dir;
  auto bank = Bank::open(hwtest::bank_location(dir), OpenMode::Create);
  std::mt19937_64 rng(8);
  NewEntry e = indexed(1, random_hash(rng), std::string(kMaxLabelBytes, 'l'));
  e.source = std::string(kMaxSourceBytes, 's');
  CHECK(bank->add(std::span(&e, 1)).added == 1);
  NewEntry big = indexed(2, random_hash(rng), std::string(kMaxLabelBytes + 1, 'l'));
  try {
    bank->add(std::span(&big, 1));
    FAIL("expected an Error");
  } catch (const Error& err) {
    CHECK(err.kind() == ErrorKind::Usage);
    CHECK_THAT(err.reason(), Catch::Contains("label of 1025 bytes is longer than 1024"));
  }
  big = indexed(3, random_hash(rng));
  big.source = std::string(kMaxSourceBytes + 1, 's');
  CHECK_THROWS_WITH(bank->add(std::span(&big, 1)),
                    Catch::Contains("source of 4097 bytes is longer than 4096"));
  CHECK(bank->stats().entries == 1);
}

TEST_CASE("a bank, its write-ahead log and its index cache are readable by their owner only",
          "[bank]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  const mode_t old_mask = ::umask(022);  // the usual mask, under which SQLite makes 0644
  {
    auto bank = Bank::open(path, OpenMode::Create);
    std::mt19937_64 rng(4);
    const std::vector<NewEntry> es{indexed(1, random_hash(rng))};
    bank->add(es);
    const auto perms = fs::status(fs::path(path.string() + "-wal")).permissions();
    CHECK((perms & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
  }
  ::umask(old_mask);
  for (const auto& p : {path, pdq_index_path(path)}) {
    INFO(p);
    REQUIRE(fs::exists(p));
    CHECK((fs::status(p).permissions() & fs::perms::all) ==
          (fs::perms::owner_read | fs::perms::owner_write));
  }
}

// ---- checksums and the keyed seal (#15; bank/digests.hpp) ------------------------------

TEST_CASE("check finds stored values edited behind the bank's back even when they still decode",
          "[bank][digests]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  std::mt19937_64 rng(21);
  std::vector<std::int64_t> ids;
  {
    auto bank = Bank::open(path, OpenMode::Create, all_signals());
    ids = bank->add(entries_with_features(rng, 4)).ids;
    const auto rep = bank->check();
    INFO((rep.problems.empty() ? std::string() : rep.problems[0]));
    REQUIRE(rep.ok);
  }
  const auto a = std::to_string(ids[1]);
  // Each edit leaves rows that decode as well as before: only the checksums can tell.
  SECTION("a label") {
    raw_exec(path, "UPDATE entries SET label = 'case-2' WHERE id = " + a);
    CHECK(names(Bank::open(path, OpenMode::ReadOnly)->check(), "differs from the checksum", a));
  }
  SECTION("local features replaced by random bytes of the same length") {
    raw_exec(path,
             "UPDATE local_features SET descriptors = randomblob(length(descriptors)) WHERE "
             "entry_id = " +
                 a);
    CHECK(names(Bank::open(path, OpenMode::ReadOnly)->check(), "differs from the checksum", a));
  }
  SECTION("an embedding replaced by another valid vector") {
    raw_exec(path,
             "UPDATE embeddings SET vector = x'0000803f0000803f0000803f0000803f' WHERE "
             "entry_id = " +
                 a);
    CHECK(names(Bank::open(path, OpenMode::ReadOnly)->check(), "differs from the checksum", a));
  }
  SECTION("a PDQ hash, with the index cache deleted") {
    raw_exec(path, "UPDATE entries SET pdq = zeroblob(32) WHERE id = " + a);
    fs::remove(pdq_index_path(path));
    const auto rep = Bank::open(path, OpenMode::ReadOnly)->check();
    CHECK(names(rep, "differs from the checksum", a));
    CHECK(names(rep, "do not add up to the bank's PDQ digest"));
  }
  SECTION("an entry deleted with its rows and its checksum") {
    raw_exec(path, "DELETE FROM entries WHERE id = " + a +
                       "; DELETE FROM entry_digests WHERE entry_id = " + a);
    fs::remove(pdq_index_path(path));
    CHECK(names(Bank::open(path, OpenMode::ReadOnly)->check(),
                "do not add up to the bank's records digest"));
  }
  SECTION("an entry inserted behind the bank's back") {
    raw_exec(path, "INSERT INTO entries(sha256, pdq, origin, added_at) VALUES('" + sha_of(99) +
                       "', zeroblob(32), 'indexed', 0)");
    fs::remove(pdq_index_path(path));
    const auto rep = Bank::open(path, OpenMode::ReadOnly)->check();
    CHECK(names(rep, "has no checksum although it was added after checksums began"));
  }
  SECTION("removals through the bank keep the digests whole") {
    auto bank = Bank::open(path, OpenMode::ReadWrite);
    CHECK(bank->remove_label("case-0") == 1);
    CHECK(bank->remove_ids(std::span(&ids[2], 1)) == 1);
    const auto more = entries_with_features(rng, 2);
    std::vector<NewEntry> renamed;
    for (int i = 0; i < 2; ++i) {
      NewEntry e = more[static_cast<std::size_t>(i)];
      e.sha256 = sha_of(50 + i);
      renamed.push_back(std::move(e));
    }
    CHECK(bank->add(renamed).added == 2);
    const auto rep = bank->check();
    INFO((rep.problems.empty() ? std::string() : rep.problems[0]));
    CHECK(rep.ok);
  }
}

TEST_CASE("a bank sealed with a key: writes need the key and a forger without it is caught",
          "[bank][digests]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  const std::string key = "k7Qm2vX9pL4rT8wZ1nB6cJ3hF5dS0gYe";
  std::mt19937_64 rng(22);
  std::vector<std::int64_t> ids;
  {
    auto bank = Bank::open(path, OpenMode::Create, all_signals(), key);
    CHECK(bank->seal_key_id().size() == 16);
    ids = bank->add(entries_with_features(rng, 3)).ids;
  }
  const auto keyed_check = [&] { return Bank::open(path, OpenMode::ReadOnly, {}, key)->check(); };
  {
    const auto rep = keyed_check();
    INFO((rep.problems.empty() ? std::string() : rep.problems[0]));
    CHECK(rep.ok);
  }
  // Without the key: reads work, writes are refused before anything is written.
  {
    auto bank = Bank::open(path, OpenMode::ReadWrite);
    NewEntry e = indexed(7, random_hash(rng));
    CHECK_THROWS_WITH(bank->add(std::span(&e, 1)), Catch::Contains("sealed with a key"));
    CHECK_THROWS_WITH(bank->remove_ids(std::span(&ids[0], 1)),
                      Catch::Contains("sealed with a key"));
    CHECK(bank->stats().entries == 3);
    const auto rep = bank->check();
    CHECK(rep.ok);  // nothing wrong that it could see, and it says what it could not
    CHECK(std::any_of(rep.notes.begin(), rep.notes.end(), [](const std::string& n) {
      return n.find("give it (--seal-key FILE)") != std::string::npos;
    }));
  }
  // Another key is refused for writing, and named as wrong by check.
  CHECK_THROWS_WITH(Bank::open(path, OpenMode::ReadWrite, {}, "another key of 32 characters!!!"),
                    Catch::Contains("not the bank's"));
  CHECK(names(Bank::open(path, OpenMode::ReadOnly, {}, "another key of 32 characters!!!")->check(),
              "not the bank's"));
  // With the key, removals and additions keep the seal.
  {
    auto bank = Bank::open(path, OpenMode::ReadWrite, {}, key);
    CHECK(bank->remove_ids(std::span(&ids[0], 1)) == 1);
    NewEntry e = entries_with_features(rng, 1)[0];
    e.sha256 = sha_of(8);
    CHECK(bank->add(std::span(&e, 1)).added == 1);
  }
  {
    const auto rep = keyed_check();
    INFO((rep.problems.empty() ? std::string() : rep.problems[0]));
    CHECK(rep.ok);
  }

  // A forger without the key deletes an entry and makes every unkeyed sum add up again:
  // the checksums' sum and the PDQ digest are recomputed, the index cache deleted. Only
  // the seal, which needs the key, still tells.
  const auto victim = std::to_string(ids[1]);
  {
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &h) == SQLITE_OK);
    const auto blob = [&](const std::string& sql) {
      sqlite3_stmt* s = nullptr;
      sqlite3_prepare_v2(h, sql.c_str(), -1, &s, nullptr);
      REQUIRE(sqlite3_step(s) == SQLITE_ROW);
      std::string out(static_cast<const char*>(sqlite3_column_blob(s, 0)),
                      static_cast<std::size_t>(sqlite3_column_bytes(s, 0)));
      sqlite3_finalize(s);
      return out;
    };
    auto records = *bank_detail::Digest::from_hex(meta_value(path, "records_digest"));
    records -= *bank_detail::Digest::from_bytes(
        blob("SELECT digest FROM entry_digests WHERE entry_id = " + victim));
    auto pdq = *bank_detail::Digest::from_hex(meta_value(path, "pdq_digest"));
    const auto h1 = blob("SELECT pdq FROM entries WHERE id = " + victim);
    Hash256 victim_hash;
    std::memcpy(victim_hash.bytes.data(), h1.data(), 32);
    pdq -= bank_detail::pdq_term(ids[1], victim_hash);
    sqlite3_close(h);
    raw_exec(path, "DELETE FROM entries WHERE id = " + victim +
                       "; DELETE FROM entry_digests WHERE entry_id = " + victim +
                       "; UPDATE meta SET value = '" + records.hex() +
                       "' WHERE key = 'records_digest'; UPDATE meta SET value = '" + pdq.hex() +
                       "' WHERE key = 'pdq_digest'");
    fs::remove(pdq_index_path(path));
  }
  CHECK(Bank::open(path, OpenMode::ReadOnly)->check().ok);  // without the key: fooled
  const auto rep = keyed_check();
  CHECK_FALSE(rep.ok);
  CHECK(names(rep, "changed by someone without its key"));
}

TEST_CASE("a forger without the key cannot slip in entries or loosen a setting of a sealed bank",
          "[bank][digests]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  const std::string key = "Jv5Rk2Lm8Xq1Tz7Nb4Wc9Hd3Fg6Sp0Ya";
  std::mt19937_64 rng(24);
  {
    auto bank = Bank::open(path, OpenMode::Create, all_signals(), key);
    bank->add(entries_with_features(rng, 3));
  }
  const auto keyed_check = [&] { return Bank::open(path, OpenMode::ReadOnly, {}, key)->check(); };
  REQUIRE(keyed_check().ok);
  SECTION("an entry inserted with digests_from raised to pass it off as older than checksums") {
    const Hash256 h = random_hash(rng);
    auto pdq = *bank_detail::Digest::from_hex(meta_value(path, "pdq_digest"));
    raw_exec(path, "INSERT INTO entries(id, pdq, source, origin, added_at) VALUES(1000000, x'" +
                       h.hex() + "', 'list.csv', 'imported', 0)");
    pdq += bank_detail::pdq_term(1000000, h);
    raw_exec(path,
             "UPDATE meta SET value = '2000000' WHERE key = 'digests_from'; UPDATE meta SET "
             "value = '" +
                 pdq.hex() + "' WHERE key = 'pdq_digest'");
    const auto rep = keyed_check();
    CHECK_FALSE(rep.ok);
    CHECK(names(rep, "digests_from"));
  }
  SECTION("the PDQ threshold loosened with its settings digest recomputed") {
    raw_exec(path, "UPDATE meta SET value = '200' WHERE key = 'pdq_threshold'");
    const auto signals = bank_detail::split_signals(meta_value(path, "signals"));
    const auto digest = bank_detail::settings_digest(signals, [&](const std::string& k) {
      const auto v = meta_value(path, k);
      return v.empty() ? std::nullopt : std::optional<std::string>(v);
    });
    raw_exec(path, "UPDATE meta SET value = '" + digest + "' WHERE key = 'settings_sha256'");
    CHECK(Bank::open(path, OpenMode::ReadOnly)->check().ok);  // without the key: fooled
    const auto rep = keyed_check();
    CHECK_FALSE(rep.ok);
    CHECK(names(rep, "changed by someone without its key"));
  }
}

TEST_CASE("an index cache with one altered hash among many is refused at open", "[bank][digests]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  const auto cache = pdq_index_path(path);
  std::mt19937_64 rng(23);
  std::vector<NewEntry> batch;
  for (int i = 0; i < 2000; ++i) batch.push_back(indexed(i, random_hash(rng)));
  std::vector<std::int64_t> ids;
  std::uint64_t gen = 0;
  {
    auto bank = Bank::open(path, OpenMode::Create);
    ids = bank->add(batch).ids;
    gen = bank->stats().generation;
  }
  std::uint64_t cache_gen = 0;
  auto cached = load_pdq_index(cache, &cache_gen);
  REQUIRE(cached);
  REQUIRE(cache_gen == gen);
  // The cache is rewritten whole (its own checksum is right) with entry 1234's hash moved
  // by two bits: a sample of 32 records would miss it almost always.
  auto contents = cached->contents();
  std::sort(contents.begin(), contents.end(),
            [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::int64_t> cids;
  std::vector<Hash256> hashes;
  for (const auto& [id, h] : contents) {
    cids.push_back(id);
    hashes.push_back(id == ids[1234] ? flip_bits(h, 2) : h);
  }
  auto forged = make_pdq_index(cached->type());
  forged->add(cids, hashes);
  forged->save(cache, gen);
  auto bank = Bank::open(path, OpenMode::ReadOnly);
  CHECK_THAT(bank->index_cache_refused(), Catch::Contains("do not add up"));
  CHECK(bank->stats().index_rebuilds == 1);
  CHECK(found_ids(*bank, *batch[1234].pdq, 0) == std::set{ids[1234]});
}
