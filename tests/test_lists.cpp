// Named lists, allow lists, disabled entries and lists, provenance and the audit log (issue
// #17), on both stores ([stores]): the bank's verbs, the upgrade of a format-4 bank, and the
// command line end to end on the samples.
#include <libpq-fe.h>
#include <sqlite3.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "bank/bank.hpp"
#include "bank/store.hpp"
#include "core/error.hpp"
#include "match/matcher.hpp"
#include "support.hpp"

using namespace hashwall;
using hwtest::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

Hash256 random_hash(std::mt19937_64& rng) {
  Hash256 h;
  for (auto& b : h.bytes) b = static_cast<std::uint8_t>(rng());
  return h;
}

NewEntry entry(int i, const Hash256& h, std::int64_t list = kDefaultListId) {
  NewEntry e;
  e.pdq = Hash256{};
  char sha[65];
  std::snprintf(sha, sizeof sha, "%064x", i + 1);
  e.sha256 = sha;
  e.pdq = h;
  e.quality = 100;
  e.source = "photo-" + std::to_string(i) + ".jpg";
  e.list_id = list;
  return e;
}

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// Runs SQL on the bank's store directly (SQLite file or PostgreSQL address): what an older
// hashwall left, or a hand edit.
void exec_sql(const std::string& location, const std::string& sqlite_sql,
              const std::string& pg_sql) {
  if (is_postgresql_location(location)) {
    PGconn* c = PQconnectdb(location.c_str());
    REQUIRE(PQstatus(c) == CONNECTION_OK);
    PGresult* r = PQexec(c, pg_sql.c_str());
    const auto st = PQresultStatus(r);
    INFO(PQerrorMessage(c));
    CHECK((st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK));
    PQclear(r);
    PQfinish(c);
    return;
  }
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(location.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sqlite_sql.c_str(), nullptr, nullptr, &err);
  INFO((err ? err : ""));
  CHECK(rc == SQLITE_OK);
  sqlite3_free(err);
  sqlite3_close(db);
}

}  // namespace

TEST_CASE("entries go to their list and read back with its kind and state", "[lists][stores]") {
  TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  std::mt19937_64 rng(7);
  auto bank = Bank::open(path, OpenMode::Create);
  const Actor alice{"cli:alice", ""};

  // Every bank has the block list "default"; names are checked and unique.
  auto lists = bank->lists();
  REQUIRE(lists.size() == 1);
  CHECK(lists[0].id == kDefaultListId);
  CHECK(lists[0].name == "default");
  CHECK(lists[0].kind == ListKind::Block);
  ListInfo spec;
  spec.name = "harmless";
  spec.kind = ListKind::Allow;
  spec.organisation = "Org A";
  spec.terms = "internal";
  const ListInfo allow = bank->create_list(spec, alice);
  CHECK(allow.id > kDefaultListId);
  CHECK_THROWS_AS(bank->create_list(spec, alice), Error);  // taken
  for (const std::string& bad :
       std::vector<std::string>{"", "-x", "a b", "a/b", std::string(65, 'a'), "caf\xc3\xa9"}) {
    INFO(bad);
    ListInfo b;
    b.name = bad;
    CHECK_THROWS_AS(bank->create_list(b, alice), Error);
  }
  ListInfo ok64;
  ok64.name = std::string(64, 'a');
  CHECK_NOTHROW(bank->create_list(ok64, alice));

  // An entry of a list that does not exist: the whole batch is refused.
  const Hash256 h0 = random_hash(rng), h1 = random_hash(rng), h2 = random_hash(rng);
  std::vector<NewEntry> bad_batch = {entry(0, h0), entry(1, h1, 999)};
  CHECK_THROWS_AS(bank->add(bad_batch), Error);
  CHECK(bank->stats().entries == 0);

  std::vector<NewEntry> batch = {entry(0, h0), entry(1, h1, allow.id), entry(2, h2)};
  batch[1].peer = "https://peer.example";
  batch[1].external_id = "ext-17";
  const auto r = bank->add(batch, alice);
  REQUIRE(r.added == 3);
  auto e1 = bank->get(r.ids[1]);
  REQUIRE(e1);
  CHECK(e1->list_id == allow.id);
  CHECK(e1->list_name == "harmless");
  CHECK(e1->list_kind == ListKind::Allow);
  CHECK(e1->peer == "https://peer.example");
  CHECK(e1->external_id == "ext-17");
  CHECK(bank->get(r.ids[0])->list_name == "default");
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  CHECK(bank->get(r.ids[0])->enabled_at(now));

  // Disabled entries stay, read back disabled, and are enabled again; an expired
  // disable no longer counts.
  CHECK(bank->set_disabled(std::vector<std::int64_t>{r.ids[0], 987654}, Disabled{"collision", {}},
                           alice) == 1);
  auto e0 = bank->get(r.ids[0]);
  REQUIRE(e0->disabled);
  CHECK(e0->disabled->reason == "collision");
  CHECK_FALSE(e0->enabled_at(now));
  CHECK_THROWS_AS(bank->set_disabled(std::vector<std::int64_t>{r.ids[0]}, Disabled{"", {}}, alice),
                  Error);  // a reason is required
  CHECK(bank->set_disabled(std::vector<std::int64_t>{r.ids[2]}, Disabled{"review", now - 10},
                           alice) == 1);
  CHECK(bank->get(r.ids[2])->enabled_at(now));  // it ended ten seconds ago
  CHECK(bank->set_disabled(std::vector<std::int64_t>{r.ids[0]}, std::nullopt, alice) == 1);
  CHECK_FALSE(bank->get(r.ids[0])->disabled);

  // A disabled list disables its entries; its kind and texts change.
  Bank::ListChange off;
  off.disable = Disabled{"under review", now + 3600};
  bank->change_list("harmless", off, alice);
  e1 = bank->get(r.ids[1]);
  REQUIRE(e1->list_disabled);
  CHECK_FALSE(e1->enabled_at(now));
  CHECK(e1->enabled_at(now + 7200));
  Bank::ListChange on;
  on.enable = true;
  on.kind = ListKind::Block;
  on.description = "now a block list";
  const auto changed = bank->change_list("harmless", on, alice);
  CHECK(changed.kind == ListKind::Block);
  CHECK_FALSE(changed.disabled);
  CHECK(bank->get(r.ids[1])->list_kind == ListKind::Block);
  CHECK_THROWS_AS(bank->change_list("nosuch", on, alice), Error);

  // Counts per list, after a reopen.
  bank.reset();
  bank = Bank::open(path, OpenMode::ReadOnly);
  lists = bank->lists();
  REQUIRE(lists.size() == 3);
  CHECK(lists[0].entries == 2);
  CHECK(lists[1].name == "harmless");
  CHECK(lists[1].entries == 1);
  CHECK(lists[1].organisation == "Org A");
  CHECK(lists[1].description == "now a block list");

  // The audit log: every change, in order, with who and why.
  const auto log = bank->audit(0, 100);
  std::vector<std::string> actions;
  for (const auto& ev : log) actions.push_back(ev.action + ":" + ev.list);
  CHECK(actions == std::vector<std::string>{"list-create:harmless", "list-create:" + ok64.name,
                                            "add:", "disable:", "disable:", "enable:",
                                            "disable:harmless", "enable:harmless"});
  REQUIRE(log.size() == 8);
  CHECK(log[2].ids == r.ids);
  CHECK(log[3].ids == std::vector<std::int64_t>{r.ids[0]});  // the id that exists only
  CHECK(log[3].reason == "collision");
  CHECK(log[6].reason == "under review");
  for (const auto& ev : log) CHECK(ev.actor == "cli:alice");
  CHECK(bank->audit(log[5].id, 100).size() == 2);  // paging
  CHECK(bank->audit(0, 3).size() == 3);
}

TEST_CASE("the matcher: allow wins ties disabled entries never decide and --list limits",
          "[lists][stores]") {
  TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  std::mt19937_64 rng(11);
  auto bank = Bank::open(path, OpenMode::Create);
  ListInfo spec;
  spec.name = "ok";
  spec.kind = ListKind::Allow;
  const auto allow = bank->create_list(spec, {});
  spec.name = "partner";
  spec.kind = ListKind::Block;
  const auto partner = bank->create_list(spec, {});
  const Hash256 target = random_hash(rng);
  Hash256 near = target, nearer = target;
  for (int b = 0; b < 20; ++b) near.bytes[static_cast<std::size_t>(b)] ^= 1;    // 20 bits away
  for (int b = 0; b < 10; ++b) nearer.bytes[static_cast<std::size_t>(b)] ^= 1;  // 10 bits
  // Block at 20 bits (default list), allow at 10 bits, block at 20 (partner), fillers.
  std::vector<NewEntry> batch = {entry(0, near), entry(1, nearer, allow.id),
                                 entry(2, near, partner.id)};
  batch[2].sha256 = std::string(64, 'c');
  for (int i = 3; i < 40; ++i) batch.push_back(entry(i, random_hash(rng)));
  const auto r = bank->add(batch);
  REQUIRE(r.added == 40);

  Fingerprint fp;
  fp.pdq.hashes[0] = target;
  fp.pdq.quality = 100;
  const auto verdict = [&](MatchOptions o) {
    o.dihedral = false;
    o.signals = {"pdq"};
    return Matcher(*bank, o).match(fp);
  };
  auto m = verdict({});
  CHECK(m.verdict == Verdict::Allowed);
  REQUIRE(m.hits.size() == 3);
  CHECK(m.hits[0].entry.id == r.ids[1]);
  CHECK(m.hits[0].allow);
  // Limited to the block lists, the same query is a match.
  MatchOptions only;
  only.lists = {"default", "partner"};
  m = verdict(only);
  CHECK(m.verdict == Verdict::Match);
  CHECK(m.hits.size() == 2);
  only.lists = {"partner"};
  m = verdict(only);
  REQUIRE(m.hits.size() == 1);
  CHECK(m.hits[0].entry.id == r.ids[2]);
  // A tie (allow and block entries equally near) is allowed: the allow list wins ties.
  {
    const Hash256 t2 = random_hash(rng);
    Hash256 same = t2;
    for (int b = 0; b < 15; ++b) same.bytes[static_cast<std::size_t>(b)] ^= 2;  // 15 bits
    std::vector<NewEntry> pair = {entry(50, same), entry(51, same, allow.id)};
    bank->add(pair);
    Fingerprint tie;
    tie.pdq.hashes[0] = t2;
    tie.pdq.quality = 100;
    MatchOptions o;
    o.dihedral = false;
    o.signals = {"pdq"};
    const auto t = Matcher(*bank, o).match(tie);
    CHECK(t.verdict == Verdict::Allowed);
    CHECK(t.hits.size() == 2);
  }
  // The allow entry disabled: a match again; the block entries disabled too: nothing.
  bank->set_disabled(std::vector<std::int64_t>{r.ids[1]}, Disabled{"test", {}}, {});
  CHECK(verdict({}).verdict == Verdict::Match);
  bank->set_disabled(std::vector<std::int64_t>{r.ids[0]}, Disabled{"test", {}}, {});
  Bank::ListChange off;
  off.disable = Disabled{"test", {}};
  bank->change_list("partner", off, {});
  m = verdict({});
  CHECK(m.verdict == Verdict::NoMatch);
  CHECK(m.hits.empty());
}

TEST_CASE("a reviewer's verdict is logged and a false positive goes on an allow list in one step",
          "[lists][stores]") {
  TempDir dir;
  std::mt19937_64 rng(23);
  auto bank = Bank::open(hwtest::bank_location(dir), OpenMode::Create);
  ListInfo spec;
  spec.name = "harmless";
  spec.kind = ListKind::Allow;
  bank->create_list(spec, {});
  spec.name = "partner";
  spec.kind = ListKind::Block;
  bank->create_list(spec, {});
  const Hash256 known = random_hash(rng);
  Hash256 query = known;
  for (int b = 0; b < 6; ++b) query.bytes[static_cast<std::size_t>(b)] ^= 1;  // 6 bits away
  std::vector<NewEntry> batch = {entry(0, known)};
  for (int i = 1; i < 20; ++i) batch.push_back(entry(i, random_hash(rng)));
  const auto ids = bank->add(batch).ids;
  Fingerprint fp;
  fp.pdq.hashes[0] = query;
  fp.pdq.quality = 100;
  MatchOptions o;
  o.dihedral = false;
  o.signals = {"pdq"};
  REQUIRE(Matcher(*bank, o).match(fp).verdict == Verdict::Match);
  const std::string query_sha(64, 'e');
  const Actor reviewer{"cli:reviewer", "looked at it"};

  // Confirmed: in the log, nothing else changes.
  Review v{query_sha, ids[0], ReviewVerdict::Confirmed};
  const auto c = bank->record_verdict(v, nullptr, reviewer);
  CHECK_FALSE(c.allow_entry);
  auto log = bank->audit(c.audit_id - 1, 10);
  REQUIRE(log.size() == 1);
  CHECK(log[0].action == "verdict");
  CHECK(log[0].actor == "cli:reviewer");
  CHECK(log[0].reason == "looked at it");
  CHECK(log[0].list == "default");
  CHECK(log[0].ids == std::vector<std::int64_t>{ids[0]});
  auto detail = json::parse(log[0].detail);
  CHECK(detail["verdict"] == "confirmed");
  CHECK(detail["query_sha256"] == query_sha);

  // Refused: no such entry, a bad SHA-256, a block list, an allow entry for a confirmation.
  NewEntry allow;
  allow.pdq = Hash256{};
  allow.pdq = query;
  allow.sha256 = query_sha;
  allow.origin = Origin::Imported;
  allow.list_id = bank->list("harmless")->id;
  Review fp_v{query_sha, ids[0], ReviewVerdict::FalsePositive};
  CHECK_THROWS_WITH(
      bank->record_verdict({query_sha, 999999, ReviewVerdict::Confirmed}, nullptr, reviewer),
      Catch::Contains("no entry 999999"));
  CHECK_THROWS_WITH(
      bank->record_verdict({"abc", ids[0], ReviewVerdict::Confirmed}, nullptr, reviewer),
      Catch::Contains("SHA-256"));
  CHECK_THROWS_WITH(bank->record_verdict(v, &allow, reviewer), Catch::Contains("false positive"));
  NewEntry wrong = allow;
  wrong.list_id = bank->list("partner")->id;
  CHECK_THROWS_WITH(bank->record_verdict(fp_v, &wrong, reviewer), Catch::Contains("block list"));
  NewEntry held = allow;
  held.sha256 = *batch[3].sha256;  // a file the bank holds in its block list
  CHECK_THROWS_WITH(bank->record_verdict(fp_v, &held, reviewer), Catch::Contains("already entry"));

  // A false positive allowlisted: the same query is now allowed, and the log says so.
  const auto f = bank->record_verdict(fp_v, &allow, reviewer);
  REQUIRE(f.allow_entry);
  const auto stored = bank->get(*f.allow_entry);
  REQUIRE(stored);
  CHECK(stored->list_name == "harmless");
  CHECK(Matcher(*bank, o).match(fp).verdict == Verdict::Allowed);
  log = bank->audit(f.audit_id - 1, 10);
  REQUIRE(log.size() == 1);
  detail = json::parse(log[0].detail);
  CHECK(detail["verdict"] == "false-positive");
  CHECK(detail["allow_entry"] == *f.allow_entry);
  CHECK(detail["allow_list"] == "harmless");
  // The same verdict again: logged again, the allow entry is the one already there.
  const auto again = bank->record_verdict(fp_v, &allow, reviewer);
  CHECK(again.allow_entry == f.allow_entry);
  CHECK(again.audit_id > f.audit_id);
}

TEST_CASE("a format-4 bank reads as one default list and is upgraded in place when written",
          "[lists][stores]") {
  TempDir dir;
  const std::string path = hwtest::bank_location(dir);
  std::mt19937_64 rng(3);
  std::vector<NewEntry> batch;
  for (int i = 0; i < 5; ++i) batch.push_back(entry(i, random_hash(rng)));
  std::vector<std::int64_t> ids;
  {
    auto bank = Bank::open(path, OpenMode::Create);
    ids = bank->add(batch).ids;
  }
  // What format 4 had: no lists, no audit, entries without list, state, provenance or MD5.
  exec_sql(
      path,
      "DROP INDEX entries_list; DROP INDEX entries_peer; ALTER TABLE entries DROP COLUMN list_id; "
      "ALTER TABLE entries DROP COLUMN disabled_reason; "
      "ALTER TABLE entries DROP COLUMN disabled_until; "
      "ALTER TABLE entries DROP COLUMN added_by; ALTER TABLE entries DROP COLUMN peer; "
      "ALTER TABLE entries DROP COLUMN external_id; DROP TABLE lists; DROP TABLE audit; "
      "DROP TABLE entry_claims; DROP INDEX entries_md5; ALTER TABLE entries DROP COLUMN md5; "
      "UPDATE meta SET value = '4' WHERE key = 'format_version';",
      "ALTER TABLE entries DROP COLUMN md5, ALTER COLUMN pdq SET NOT NULL, DROP COLUMN list_id, "
      "DROP COLUMN disabled_reason, DROP COLUMN "
      "disabled_until, DROP COLUMN added_by, DROP COLUMN peer, DROP COLUMN external_id; "
      "DROP TABLE lists; DROP TABLE audit; DROP TABLE entry_claims; "
      "UPDATE meta SET value = '4' WHERE key = 'format_version';");
  {
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    CHECK(bank->stats().format_version == 4);
    const auto e = bank->get(ids[2]);
    REQUIRE(e);
    CHECK(e->list_name == "default");
    CHECK(e->enabled_at(std::time(nullptr)));
    REQUIRE(bank->lists().size() == 1);
    CHECK(bank->lists()[0].entries == 5);
    CHECK(bank->audit(0, 10).empty());
    CHECK(bank->search_pdq(std::span(&*batch[2].pdq, 1), 0).at(0).id == ids[2]);
  }
  auto bank = Bank::open(path, OpenMode::ReadWrite);
  CHECK(bank->stats().format_version == kFormatVersion);
  CHECK(bank->check().ok);
  CHECK(bank->get(ids[4])->list_name == "default");
  ListInfo spec;
  spec.name = "later";
  const auto l = bank->create_list(spec, {});
  auto more = entry(9, random_hash(rng), l.id);
  const auto r = bank->add(std::span(&more, 1));
  CHECK(bank->get(r.ids[0])->list_name == "later");
  CHECK(bank->lists().at(0).entries == 5);
  CHECK(bank->search_pdq(std::span(&*batch[2].pdq, 1), 0).at(0).id == ids[2]);
}

// [slow]: many runs of the binary (34 s under ASan); the bank's verbs it drives are the
// cases above, which the sanitizer pass runs.
TEST_CASE("the command line: lists allow verdicts disabling and the log on the samples",
          "[lists][cli][stores][slow]") {
  const auto samples = hwtest::source_dir() / "samples";
  TempDir tmp;
  const std::string bank = hwtest::bank_location(tmp);
  const std::string b = " --bank '" + bank + "'";
  const auto upload = samples / "uploads" / "mate_Aqua--jpeg30.jpg";
  const auto run = [&](const std::string& args) {
    auto r = hwtest::run_hashwall(args);
    INFO(args << "\n" << r.out << r.err);
    return r;
  };
  hwtest::RunResult r0;
  CHECK(run("list create harmless" + b).exit_code == 2);  // no bank there: not created
  REQUIRE(run("index " + q(samples / "bank") + b + " -q").exit_code == 0);
  REQUIRE(run("list --bank '" + bank + "' create harmless --kind allow --organisation 'Org A'")
              .exit_code == 0);
  CHECK(run("list create harmless" + b).exit_code == 2);  // taken
  CHECK(run("list create 'bad name'" + b).exit_code == 2);
  CHECK(run("index " + q(upload) + b + " --list nosuch -q").exit_code == 2);
  REQUIRE(run("index " + q(upload) + b + " --list harmless -q").exit_code == 0);
  // A photo already in another list stays there, and the command says so.
  r0 = run("index " + q(samples / "bank" / "mate_Aqua.jpg") + b + " --list harmless --json");
  CHECK(json::parse(r0.out)["in_other_list"] == 1);

  // The upload is itself on the allow list: allowed (exit 4), both entries shown.
  auto r = run("query " + q(upload) + b + " --json");
  CHECK(r.exit_code == 4);
  auto j = json::parse(r.out);
  CHECK(j["status"] == "allowed");
  CHECK(j["match"] == false);
  REQUIRE(j["matches"].size() == 2);
  CHECK(j["matches"][0]["list"] == "harmless");
  CHECK(j["matches"][0]["allow"] == true);
  CHECK(j["matches"][1]["list"] == "default");
  r = run("query " + q(upload) + b);
  CHECK(r.out.find("allowed") != std::string::npos);
  CHECK(r.out.find("allow list harmless") != std::string::npos);
  // Looking in the block list only: a match.
  CHECK(run("query " + q(upload) + b + " --list default").exit_code == 1);
  CHECK(run("query " + q(upload) + b + " --list nosuch").exit_code == 2);
  // scan: the allowed file counts as allowed; the others match as before.
  r = run("scan " + q(samples / "uploads") + b + " --jsonl");
  CHECK(r.exit_code == 1);
  CHECK(r.out.find("\"status\":\"allowed\"") != std::string::npos);

  // The allow list disabled: the upload matches its original again.
  CHECK(run("list disable harmless --reason 'under review'" + b).exit_code == 0);
  CHECK(run("list disable harmless" + b).exit_code == 2);  // no reason
  CHECK(run("query " + q(upload) + b).exit_code == 1);
  r = run("list" + b + " --json");
  j = json::parse(r.out);
  REQUIRE(j["lists"].size() == 2);
  CHECK(j["lists"][1]["enabled"] == false);
  CHECK(j["lists"][1]["organisation"] == "Org A");
  CHECK(j["lists"][1]["disabled"]["reason"] == "under review");
  CHECK(run("list enable harmless" + b).exit_code == 0);
  CHECK(run("query " + q(upload) + b).exit_code == 4);

  // Its original disabled (by SHA-256 of the file): no block entry is left to decide.
  const auto idx =
      json::parse(run("query " + q(samples / "bank" / "mate_Aqua.jpg") + b + " --json").out);
  const auto original_id = idx["matches"][0]["id"].get<std::int64_t>();
  r = run("disable --id " + std::to_string(original_id) + " --reason collision --until +1d" + b +
          " --json");
  CHECK(r.exit_code == 0);
  CHECK(json::parse(r.out)["disabled"] == 1);
  CHECK(run("disable --id 1" + b).exit_code == 2);  // no reason
  CHECK(run("disable --id 1 --reason x --until tomorrow" + b).exit_code == 2);
  CHECK(run("disable --id 1 --reason x --until 2020-01-01" + b).exit_code == 2);  // past
  CHECK(run("disable --id 1 --reason x --until 2027-02-31" + b).exit_code == 2);  // no such day
  CHECK(run("disable --id 1 --reason x --until ++7d" + b).exit_code == 2);
  // (the allow-list copy is all that is left to match it: allowed, the original unseen)
  r = run("query " + q(samples / "bank" / "mate_Aqua.jpg") + b + " --json");
  CHECK(r.exit_code == 4);
  const json unseen = json::parse(r.out);  // kept: a loop over a temporary's member dangles
  for (const auto& h : unseen["matches"]) CHECK(h["id"] != original_id);
  // Exports leave disabled entries out.
  // (7 entries: one disabled, one on the allow list, which is exported only when named)
  const auto exported = run("export" + b + " --format hex").out;
  CHECK(std::count(exported.begin(), exported.end(), '\n') == 5);
  CHECK(run("export" + b + " --format hex --list harmless").out.size() == 65);
  CHECK(run("enable --id " + std::to_string(original_id) + b).exit_code == 0);
  CHECK(run("query " + q(samples / "bank" / "mate_Aqua.jpg") + b).exit_code == 1);

  // The log: every change, who made it, why.
  r = run("log" + b + " --json");
  REQUIRE(r.exit_code == 0);
  j = json::parse(r.out);
  std::vector<std::string> actions;
  for (const auto& ev : j["events"]) {
    actions.push_back(ev["action"].get<std::string>());
    CHECK(ev["actor"].get<std::string>().rfind("cli:", 0) == 0);
  }
  CHECK(actions == std::vector<std::string>{"add", "list-create", "add", "disable", "enable",
                                            "disable", "enable"});
  CHECK(j["events"][0]["list"] == "default");
  CHECK(j["events"][2]["list"] == "harmless");
  CHECK(j["events"][1]["detail"]["organisation"] == "Org A");
  CHECK(j["events"][5]["reason"] == "collision");
  CHECK(j["events"][5]["ids"] == json::array({original_id}));
  CHECK(j["events"][5]["detail"]["until"].get<std::int64_t>() > std::time(nullptr));
  r = run("log" + b + " --after " + std::to_string(j["events"][4]["id"].get<int>()) + " --jsonl");
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 2);
  r = run("log" + b);
  CHECK(r.out.find("under review") != std::string::npos);
}
