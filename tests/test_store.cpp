// The Store interface (src/bank/store.hpp) and its SQLite implementation: the change log
// that every write leaves, other connections following it instead of rebuilding, and the
// in-place upgrade of an older bank.
#include <sqlite3.h>

#include <catch2/catch.hpp>
#include <random>
#include <set>

#include "bank/bank.hpp"
#include "bank/store.hpp"
#include "core/error.hpp"
#include "support.hpp"

using namespace hashwall;
using hwtest::random_hash;
namespace fs = std::filesystem;

namespace {

NewEntry entry(int n, const Hash256& h, std::string label = "") {
  char sha[65];
  std::snprintf(sha, sizeof sha, "%064x", n + 1);
  NewEntry e;
  e.pdq = Hash256{};
  e.sha256 = sha;
  e.pdq = h;
  e.quality = 90;
  e.label = std::move(label);
  e.source = "photo" + std::to_string(n) + ".jpg";
  return e;
}

std::set<std::int64_t> found(const Bank& bank, const Hash256& q) {
  std::set<std::int64_t> out;
  for (const auto& m : bank.search_pdq(std::span(&q, 1), 0)) out.insert(m.id);
  return out;
}

std::unique_ptr<Store> read_store(const fs::path& p) {
  if (is_postgresql_location(p.native()))
    return open_postgresql_store(p.native(), OpenMode::ReadOnly, {}, nullptr);
  return open_sqlite_store(p, OpenMode::ReadOnly, {}, nullptr);
}

}  // namespace

TEST_CASE("every write leaves one change in the log, with its generation and its ids",
          "[store][stores]") {
  hwtest::TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  std::mt19937_64 rng(5);
  std::vector<NewEntry> a, b;
  for (int i = 0; i < 300; ++i) a.push_back(entry(i, random_hash(rng), i % 3 ? "" : "third"));
  for (int i = 300; i < 310; ++i) b.push_back(entry(i, random_hash(rng)));
  std::vector<std::int64_t> ids_a, ids_b;
  {
    auto bank = Bank::open(path, OpenMode::Create);
    ids_a = bank->add(a).ids;
    CHECK(bank->add(a).added == 0);  // only duplicates: no write, no change
    ids_b = bank->add(b).ids;
    const std::int64_t one[] = {ids_b[4]};
    CHECK(bank->remove_ids(one) == 1);
    CHECK(bank->remove_ids(one) == 0);  // nothing removed: no change
    CHECK(bank->remove_label("third") == 100);
  }
  const auto store = read_store(path);
  CHECK(store->format_version() == kFormatVersion);
  CHECK(store->meta("generation") == "4");
  const auto all = store->changes_since(0);
  REQUIRE(all);
  REQUIRE(all->size() == 4);
  CHECK((*all)[0].generation == 1);
  CHECK((*all)[0].op == ChangeOp::Add);
  CHECK((*all)[0].ids == ids_a);
  CHECK((*all)[1].ids == ids_b);
  CHECK((*all)[2].op == ChangeOp::Remove);
  CHECK((*all)[2].ids == std::vector<std::int64_t>{ids_b[4]});
  CHECK((*all)[3].op == ChangeOp::Remove);
  CHECK((*all)[3].ids.size() == 100);
  CHECK((*all)[3].generation == 4);
  const auto tail = store->changes_since(2);
  REQUIRE(tail);
  REQUIRE(tail->size() == 2);
  CHECK(tail->front().generation == 3);
  CHECK(store->changes_since(4)->empty());
}

TEST_CASE("another connection follows adds and removals from the change log without a rebuild",
          "[store][stores]") {
  hwtest::TempDir dir;
  std::mt19937_64 rng(9);
  std::vector<Hash256> h;
  std::vector<NewEntry> first, second;
  for (int i = 0; i < 2000; ++i) {
    h.push_back(random_hash(rng));
    (i < 1000 ? first : second).push_back(entry(i, h.back(), i % 10 ? "" : "tenth"));
  }
  for (const char* type : {"flat", "multihash", "compact"}) {
    DYNAMIC_SECTION(type) {
      const std::string path = hwtest::bank_location(dir, std::string("bank-") + type + ".db");
      BankConfig cfg;
      cfg.index_type = type;
      auto writer = Bank::open(path, OpenMode::Create, cfg);
      const auto ids1 = writer->add(first).ids;
      auto reader = Bank::open(path, OpenMode::ReadOnly);
      const auto rebuilds = reader->stats().index_rebuilds;
      CHECK(found(*reader, h[5]) == std::set{ids1[5]});

      const auto ids2 = writer->add(second).ids;
      const std::int64_t drop[] = {ids1[5], ids2[7]};
      CHECK(writer->remove_ids(drop) == 2);
      CHECK(writer->remove_label("tenth") == 200);
      // The reader sees all three writes at its next search (PostgreSQL: once the writes'
      // NOTIFY reached it), from the log.
      CHECK(hwtest::eventually([&] { return found(*reader, h[1501]) == std::set{ids2[501]}; }));
      CHECK(found(*reader, h[5]).empty());
      CHECK(found(*reader, h[1007]).empty());
      CHECK(found(*reader, h[20]).empty());  // a tenth
      CHECK(found(*reader, h[21]) == std::set{ids1[21]});
      const auto st = reader->stats();
      CHECK(st.index_rebuilds == rebuilds);
      CHECK(st.changes_followed == 3);
      CHECK(st.entries == 2000 - 202);
      const auto rep = reader->check();  // the index against the records, by brute force
      INFO((rep.problems.empty() ? std::string() : rep.problems.front()));
      CHECK(rep.ok);
    }
  }
}

TEST_CASE("a reader whose generation the log does not reach rebuilds, and answers the same",
          "[store][stores]") {
  hwtest::TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  std::mt19937_64 rng(3);
  std::vector<Hash256> h;
  std::vector<NewEntry> batch;
  for (int i = 0; i < 50; ++i) {
    h.push_back(random_hash(rng));
    batch.push_back(entry(i, h.back()));
  }
  auto writer = Bank::open(path, OpenMode::Create);
  auto reader = Bank::open(path, OpenMode::ReadOnly);
  const auto before = reader->stats().index_rebuilds;
  const auto ids = writer->add(batch).ids;
  // As after an upgrade from format 2, or a pruned log: it starts after the reader.
  hwtest::raw_sql(path, "UPDATE meta SET value = '1' WHERE key = 'changes_from'");
  CHECK(hwtest::eventually([&] { return found(*reader, h[3]) == std::set{ids[3]}; }));
  CHECK(reader->stats().index_rebuilds == before + 1);
  CHECK(reader->stats().changes_followed == 0);
}

TEST_CASE(
    "a format-2 bank is upgraded in place to the current format and logs its changes from then on",
    "[store]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  fs::copy_file(hwtest::source_dir() / "tests" / "data" / "bank-v2" / "bank.db", path);
  std::uint64_t gen = 0;
  {
    const auto store = read_store(path);
    CHECK(store->format_version() == 2);
    CHECK_FALSE(store->has_record_table());
    CHECK_FALSE(store->changes_since(0));  // no log at all
    gen = std::stoull(store->meta("generation").value());
  }
  {
    auto bank = Bank::open(path, OpenMode::ReadWrite);  // the upgrade
    CHECK(bank->stats().format_version == kFormatVersion);
    const std::int64_t first[] = {1};
    CHECK(bank->remove_ids(first) == 1);
    CHECK(bank->check().ok);
  }
  const auto store = read_store(path);
  CHECK(store->format_version() == kFormatVersion);
  CHECK(store->has_record_table());
  CHECK(store->meta("changes_from") == std::to_string(gen));
  CHECK_FALSE(store->changes_since(gen - 1));  // before the upgrade: not in the log
  const auto after = store->changes_since(gen);
  REQUIRE(after);
  REQUIRE(after->size() == 1);
  CHECK(after->front().op == ChangeOp::Remove);
  CHECK(after->front().ids == std::vector<std::int64_t>{1});
}

TEST_CASE("a format-3 bank is upgraded to format 4: old entries are noted and new ones checked",
          "[store]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  fs::copy_file(hwtest::source_dir() / "tests" / "data" / "bank-v3" / "bank.db", path);
  const auto has_note = [](const CheckReport& rep, const std::string& what) {
    return std::any_of(rep.notes.begin(), rep.notes.end(),
                       [&](const std::string& n) { return n.find(what) != std::string::npos; });
  };
  std::vector<std::pair<std::int64_t, Hash256>> held;
  {
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    CHECK(bank->stats().format_version == 3);
    const auto rep = bank->check();
    CHECK(rep.ok);
    CHECK(has_note(rep, "carry no checksums"));
    bank->for_each([&](const Entry& e) {
      held.emplace_back(e.id, *e.pdq);
      return true;
    });
  }
  REQUIRE(held.size() == 6);
  std::int64_t added = 0;
  {
    auto bank = Bank::open(path, OpenMode::ReadWrite);  // the upgrade
    CHECK(bank->stats().format_version == kFormatVersion);
    for (const auto& [id, h] : held) CHECK(found(*bank, h).count(id) == 1);
    std::mt19937_64 rng(31);
    NewEntry e;
    e.pdq = Hash256{};
    e.pdq = random_hash(rng);
    e.source = "list.csv";
    e.origin = Origin::Imported;
    added = bank->add(std::span(&e, 1)).ids.at(0);
    const auto rep = bank->check();
    INFO((rep.problems.empty() ? std::string() : rep.problems[0]));
    CHECK(rep.ok);
    CHECK(has_note(rep, "6 entries were added before the bank had checksums"));
  }
  {
    const auto store = read_store(path);
    CHECK(store->meta("digests_from") == "7");
    CHECK(store->meta("changes_from") == "0");  // format 3's log goes on
    CHECK(store->changes_since(0));
  }
  // An entry added after the upgrade is checked; the six before it cannot be.
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &h) == SQLITE_OK);
  const std::string sql =
      "UPDATE entries SET label = 'edited' WHERE id IN (1, " + std::to_string(added) + ")";
  REQUIRE(sqlite3_exec(h, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(h);
  const auto rep = Bank::open(path, OpenMode::ReadOnly)->check();
  REQUIRE(rep.problems.size() == 1);
  CHECK_THAT(rep.problems[0], Catch::Contains("entry " + std::to_string(added) + ":") &&
                                  Catch::Contains("differs from the checksum"));
}

TEST_CASE(
    "the change log keeps the last change_log_keep generations and a reader further behind "
    "rebuilds",
    "[store]") {
  hwtest::TempDir dir;
  const auto path = dir / "bank.db";
  std::mt19937_64 rng(41);
  std::vector<Hash256> hashes;
  auto writer = Bank::open(path, OpenMode::Create);
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "INSERT INTO meta(key, value) VALUES('change_log_keep', '3')", nullptr,
                         nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  const auto add_one = [&](int n) {
    hashes.push_back(random_hash(rng));
    const NewEntry e = entry(n, hashes.back());
    writer->add(std::span(&e, 1));
  };
  add_one(0);
  auto reader = Bank::open(path, OpenMode::ReadOnly);  // at generation 1
  const auto rebuilds_before = reader->stats().index_rebuilds;
  for (int n = 1; n < 6; ++n) add_one(n);  // generations 2..6
  {
    const auto store = read_store(path);
    CHECK(store->meta("changes_from") == "3");
    CHECK_FALSE(store->changes_since(2));  // pruned
    const auto kept = store->changes_since(3);
    REQUIRE(kept);
    REQUIRE(kept->size() == 3);
    CHECK(kept->front().generation == 4);
    CHECK(kept->back().generation == 6);
  }
  // The reader is 5 generations behind, past what the log keeps: it rebuilds, and finds all.
  for (const auto& h : hashes) CHECK(found(*reader, h).size() == 1);
  const auto st = reader->stats();
  CHECK(st.index_rebuilds == rebuilds_before + 1);
  CHECK(st.changes_followed == 0);
  CHECK(writer->check().ok);
}

TEST_CASE("the SQLite store refuses what is not a bank before writing anything", "[store]") {
  hwtest::TempDir dir;
  CHECK_THROWS_WITH(read_store(dir / "missing.db"), Catch::Contains("no bank here"));
  CHECK_THROWS_WITH(read_store(dir.path()), Catch::Contains("it is a directory"));
  const auto other = dir / "other.db";
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(other.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  CHECK_THROWS_WITH(open_sqlite_store(other, OpenMode::ReadWrite, {}, nullptr),
                    Catch::Contains("without a meta table"));
  CHECK_FALSE(fs::exists(other.string() + "-wal"));  // not turned into WAL mode
  bool created = true;
  auto s = open_sqlite_store(dir / "new.db", OpenMode::Create, {{"generation", "0"}}, &created);
  CHECK(created);
  CHECK(s->changes_since(0)->empty());
  s.reset();
  s = open_sqlite_store(dir / "new.db", OpenMode::Create, {{"generation", "0"}}, &created);
  CHECK_FALSE(created);  // it was there
}

TEST_CASE("a batch of duplicates leaves the connection free to see and make later writes",
          "[store][stores]") {
  // Found in review: a cached look-up left on its row kept the connection on an old
  // snapshot, so it missed other writers and every later write was refused as busy.
  hwtest::TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  std::mt19937_64 rng(12);
  std::vector<Hash256> h;
  for (int i = 0; i < 3; ++i) h.push_back(random_hash(rng));
  auto a = Bank::open(path, OpenMode::Create);
  auto b = Bank::open(path, OpenMode::ReadWrite);
  REQUIRE(a->add(std::vector{entry(0, h[0])}).added == 1);
  REQUIRE(a->add(std::vector{entry(0, h[0])}).duplicates == 1);
  const auto from_b = b->add(std::vector{entry(1, h[1])}).ids;
  CHECK(hwtest::eventually([&] { return found(*a, h[1]) == std::set{from_b[0]}; }));
  CHECK(a->add(std::vector{entry(2, h[2])}).added == 1);
  CHECK(a->stats().entries == 3);
}
