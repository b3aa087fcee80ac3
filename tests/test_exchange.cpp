// Sync between organisations' banks (issue #17): a list's change feed read from one bank
// and applied to another on both stores ([stores]), and `hashwall sync` against a real
// `hashwall serve` on loopback, killed mid-page and resumed.
#include <httplib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "bank/bank.hpp"
#include "core/error.hpp"
#include "exchange/feed.hpp"
#include "exchange/sync.hpp"
#include "server_process.hpp"
#include "support.hpp"

using namespace hashwall;
using hwtest::ServerProcess;
using hwtest::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* const kReadToken = "read-Zq8Lm2Xv9Rt4Wb7Nk1Ps";
const char* const kMatchToken = "match-5e1d9c2a7b3f4e8d06";
const char* const kWriteToken = "write-3f9a0c7e21b84d5f9e";

NewEntry imported(const Hash256& h, const std::string& label, std::int64_t list) {
  NewEntry e;
  e.pdq = Hash256{};
  e.pdq = h;
  e.quality = 90;
  e.label = label;
  e.source = "partner-list.csv";
  e.origin = Origin::Imported;
  e.list_id = list;
  return e;
}

// What a list holds, by PDQ hash: label and state ("" when enabled).
using Holding = std::map<std::string, std::pair<std::string, std::string>>;
Holding holding(const Bank& bank, const std::string& list) {
  Holding out;
  const auto l = bank.list(list);
  REQUIRE(l);
  std::int64_t count = 0;
  for (const auto& e : bank.list_entries(l->id, 0, 100000)) {
    ++count;
    // A state a peer set carries its name ("peer bank:ID: collision"): compared without it.
    std::string reason = e.disabled ? e.disabled->reason : "";
    if (reason.starts_with("peer ") && reason.find(": ") != std::string::npos)
      reason = reason.substr(reason.find(": ") + 2);
    out[e.pdq->hex()] = {e.label, reason};
  }
  CHECK(count == static_cast<std::int64_t>(out.size()));  // one entry per hash: none twice
  return out;
}

// Reads `list`'s feed of `from` after `cursor` in pages of `page` and applies each to `to`;
// returns the cursor it ended at and adds up the reports.
std::string pull(const Bank& from, Bank& to, const std::string& list, std::string cursor,
                 std::size_t page, std::int64_t into, ApplyReport& total,
                 const std::string& peer = "https://a.example:443") {
  for (int guard = 0; guard < 10000; ++guard) {
    // Through JSON, as the feed travels.
    const FeedPage p =
        parse_feed("test", json::parse(feed_json(read_feed(from, list, cursor, page)).dump()));
    CHECK_FALSE((p.items.empty() && p.more && p.next == cursor));  // never stuck
    const auto r = apply_feed(
        to, p, peer, into, Actor{peer == "https://a.example:443" ? "sync:a" : "sync:" + peer, ""});
    total.added += r.added;
    total.duplicates += r.duplicates;
    total.removed += r.removed;
    total.disabled += r.disabled;
    total.enabled += r.enabled;
    cursor = p.next;
    if (!p.more) return cursor;
  }
  FAIL("the feed never ended");
  return cursor;
}

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

}  // namespace

TEST_CASE("a list's feed carries adds removals and disables to another bank exactly once",
          "[exchange][stores]") {
  TempDir tmp;
  auto a = Bank::open(hwtest::bank_location(tmp, "a.db"), OpenMode::Create);
  auto b = Bank::open(hwtest::bank_location(tmp, "b.db"), OpenMode::Create);
  const Actor cli{"cli:test", ""};
  ListInfo spec;
  spec.name = "ncii";
  spec.organisation = "Org A";
  spec.terms = "share with members only";
  const auto ncii = a->create_list(spec, cli).id;
  std::mt19937_64 rng(17);
  std::vector<NewEntry> batch;
  for (int i = 0; i < 30; ++i)
    batch.push_back(imported(hwtest::random_hash(rng), "case-" + std::to_string(i), ncii));
  for (int i = 0; i < 5; ++i)
    batch.push_back(imported(hwtest::random_hash(rng), "own-" + std::to_string(i), kDefaultListId));
  const auto added = a->add(batch, cli);
  REQUIRE(added.added == 35);
  const auto& ids = added.ids;
  a->set_disabled(std::vector<std::int64_t>{ids[0], ids[1], ids[2]},
                  Disabled{"under review", std::nullopt}, cli);

  // B holds an entry of its own with the hash of A's entry 5 (its own source: not a duplicate).
  NewEntry own = imported(*batch[5].pdq, "b's own", kDefaultListId);
  own.source = "b-own.csv";
  b->add(std::span(&own, 1), cli);
  ListInfo into_spec;
  into_spec.name = "partner";
  const auto into = b->create_list(into_spec, cli).id;

  ApplyReport total;
  std::string cursor = pull(*a, *b, "ncii", "0", 7, into, total);
  CHECK(total.added == 30);
  CHECK(total.disabled == 3);
  CHECK(holding(*b, "partner") == holding(*a, "ncii"));
  CHECK(holding(*b, "partner").size() == 30);
  // Provenance: each came from the peer under its id there.
  const auto first = b->list_entries(into, 0, 1);
  REQUIRE(first.size() == 1);
  CHECK(first[0].peer == "https://a.example:443");
  CHECK(first[0].external_id == std::to_string(ids[0]));
  CHECK(first[0].added_by == "sync:a");

  // Changes on A: removals (one of them the entry B also holds as its own), disables, an
  // enable, adds; and a change to A's default list, which must not travel.
  a->remove_ids(std::vector<std::int64_t>{ids[4], ids[5], ids[6], ids[30]}, cli);
  a->set_disabled(std::vector<std::int64_t>{ids[7], ids[8]}, Disabled{"collision", 4102444800},
                  cli);
  a->set_disabled(std::vector<std::int64_t>{ids[0]}, std::nullopt, cli);
  std::vector<NewEntry> more;
  for (int i = 0; i < 6; ++i)
    more.push_back(imported(hwtest::random_hash(rng), "late-" + std::to_string(i), ncii));
  more.push_back(imported(hwtest::random_hash(rng), "own-late", kDefaultListId));
  a->add(more, cli);
  const std::string before = cursor;
  total = {};
  cursor = pull(*a, *b, "ncii", cursor, 4, into, total);
  CHECK(total.added == 6);
  CHECK(total.removed == 3);
  CHECK(total.disabled == 2);
  CHECK(total.enabled == 1);
  CHECK(holding(*b, "partner") == holding(*a, "ncii"));
  CHECK(holding(*b, "partner").size() == 33);
  CHECK(holding(*b, "default").size() == 1);  // B's own copy of entry 5 stays
  const auto disabled =
      b->ids_from_peer("https://a.example:443", std::vector<std::string>{std::to_string(ids[7])});
  REQUIRE(disabled.size() == 1);
  const auto e7 = b->get(disabled[0].second);
  REQUIRE(e7);
  REQUIRE(e7->disabled);
  CHECK(e7->disabled->until == 4102444800);

  // A page applied again (a sync killed before it kept its cursor) changes nothing.
  total = {};
  pull(*a, *b, "ncii", before, 4, into, total);
  CHECK(total.added == 0);
  CHECK(total.removed == 0);
  CHECK(total.disabled == 0);
  CHECK(total.enabled == 0);
  CHECK(holding(*b, "partner") == holding(*a, "ncii"));
  // So does the whole feed from the start.
  total = {};
  pull(*a, *b, "ncii", "0", 1000, into, total);
  CHECK(total.added == 0);
  CHECK(holding(*b, "partner") == holding(*a, "ncii"));
  CHECK(b->check().ok);

  // Nothing new: the cursor stays and says so.
  const auto idle = read_feed(*a, "ncii", cursor, 10);
  CHECK(idle.items.empty());
  CHECK_FALSE(idle.more);
  CHECK(idle.next == cursor);
}

TEST_CASE("two peers listing one photo: one's removal or disable leaves what the other lists",
          "[exchange][stores]") {
  TempDir tmp;
  auto a = Bank::open(hwtest::bank_location(tmp, "a.db"), OpenMode::Create);
  auto q = Bank::open(hwtest::bank_location(tmp, "q.db"), OpenMode::Create);
  auto b = Bank::open(hwtest::bank_location(tmp, "b.db"), OpenMode::Create);
  const Actor cli{"cli:test", ""};
  std::mt19937_64 rng(41);
  // Both peers hold the same file (same SHA-256), and each a photo of its own.
  NewEntry shared = imported(hwtest::random_hash(rng), "shared", kDefaultListId);
  shared.sha256 = std::string(64, 'a');
  shared.origin = Origin::Indexed;
  std::vector<NewEntry> in_a = {shared,
                                imported(hwtest::random_hash(rng), "a-only", kDefaultListId)};
  std::vector<NewEntry> in_q = {shared,
                                imported(hwtest::random_hash(rng), "q-only", kDefaultListId)};
  const auto ids_a = a->add(in_a, cli).ids;
  const auto ids_q = q->add(in_q, cli).ids;
  // B's own copy of a third photo, which A also lists.
  NewEntry own = imported(hwtest::random_hash(rng), "b-own", kDefaultListId);
  own.sha256 = std::string(64, 'b');
  own.origin = Origin::Indexed;
  b->add(std::span(&own, 1), cli);
  NewEntry also = own;
  also.label = "a lists b's photo too";
  const auto a_also = a->add(std::span(&also, 1), cli).ids[0];

  ListInfo spec;
  spec.name = "from-a";
  const auto into_a = b->create_list(spec, cli).id;
  spec.name = "from-q";
  const auto into_q = b->create_list(spec, cli).id;
  ApplyReport t;
  std::string ca = pull(*a, *b, "default", "0", 10, into_a, t, "https://a.example:443");
  std::string cq = pull(*q, *b, "default", "0", 10, into_q, t, "https://q.example:443");
  const auto held = [&](const std::string& sha) { return b->find_sha256(sha).has_value(); };
  REQUIRE(held(std::string(64, 'a')));
  REQUIRE(held(std::string(64, 'b')));

  // A disables, then removes, the shared photo and B's own: Q still lists the first, and
  // the second is B's own; both stay, enabled.
  a->set_disabled(std::vector<std::int64_t>{ids_a[0], a_also}, Disabled{"doubt", std::nullopt},
                  cli);
  ca = pull(*a, *b, "default", ca, 10, into_a, t, "https://a.example:443");
  CHECK_FALSE(b->find_sha256(std::string(64, 'a'))->disabled);
  CHECK_FALSE(b->find_sha256(std::string(64, 'b'))->disabled);
  a->remove_ids(std::vector<std::int64_t>{ids_a[0], ids_a[1], a_also}, cli);
  ApplyReport r;
  ca = pull(*a, *b, "default", ca, 10, into_a, r, "https://a.example:443");
  CHECK(r.removed == 1);  // a-only
  CHECK(held(std::string(64, 'a')));
  CHECK(held(std::string(64, 'b')));
  // Q removes it too: now nobody lists it, and it goes.
  q->remove_ids(std::vector<std::int64_t>{ids_q[0]}, cli);
  r = {};
  cq = pull(*q, *b, "default", cq, 10, into_q, r, "https://q.example:443");
  CHECK(r.removed == 1);
  CHECK_FALSE(held(std::string(64, 'a')));
  CHECK(held(std::string(64, 'b')));  // B's own, whoever removes it
  CHECK(b->check().ok);

  // A list the peer disables: the page says so (sync.cpp disables the local list).
  Bank::ListChange off;
  off.disable = Disabled{"compromised", std::nullopt};
  q->change_list("default", off, cli);
  const auto page = read_feed(*q, "default", cq, 10);
  REQUIRE(page.list.disabled);
  CHECK(page.list.disabled->reason == "compromised");
}

TEST_CASE("a feed's pages stay under their byte budget and a cursor past the log is refused",
          "[exchange]") {
  TempDir tmp;
  auto a = Bank::open(tmp / "a.db", OpenMode::Create);
  auto b = Bank::open(tmp / "b.db", OpenMode::Create);
  std::mt19937_64 rng(43);
  std::vector<NewEntry> batch;
  for (int i = 0; i < 40; ++i)
    batch.push_back(imported(hwtest::random_hash(rng), std::string(1000, 'x') + std::to_string(i),
                             kDefaultListId));
  a->add(batch, {});
  // Each entry counts ~6.4 kB at most: a page of 20 kB holds three.
  std::size_t pages = 0, most = 0;
  std::string cursor = "0";
  for (int guard = 0; guard < 200; ++guard) {
    const auto p = read_feed(*a, "default", cursor, 1000, 20000);
    ++pages;
    most = std::max(most, p.items.size());
    CHECK(feed_json(p).dump().size() < 20000);
    apply_feed(*b, p, "http://a:1", kDefaultListId, {});
    cursor = p.next;
    if (!p.more) break;
  }
  CHECK(most <= 3);
  CHECK(pages >= 14);
  CHECK(b->stats().entries == 40);
  // The same through the log: an import of 40 is one event, read three at a time.
  const auto start = std::to_string(a->audit_high_water());
  auto more = batch;
  for (auto& e : more) e.source = "second.csv";
  a->add(more, {});
  cursor = start;
  std::size_t got = 0;
  for (int guard = 0; guard < 200; ++guard) {
    const auto p = read_feed(*a, "default", cursor, 1000, 20000);
    got += p.items.size();
    CHECK(p.items.size() <= 3);
    cursor = p.next;
    if (!p.more) break;
  }
  CHECK(got == 40);
  // A cursor from a bank with a longer log (or this one before a restore).
  CHECK_THROWS_WITH(read_feed(*a, "default", "999.0", 10), Catch::Contains("past the end"));
  // A change with a malformed SHA-256 is left out and counted; the rest applies.
  json page = feed_json(read_feed(*a, "default", "0", 5));
  page["changes"][1]["sha256"] = "not-a-sha";
  const auto parsed = parse_feed("peer", page);
  CHECK(parsed.refused == 1);
  CHECK(parsed.items.size() == 4);
}

TEST_CASE("a feed's cursor and page are checked and a malformed page is refused naming why",
          "[exchange]") {
  for (const char* ok : {"0", "12", "s3.40", "7.0", "7.12"}) {
    const auto c = parse_cursor(ok);
    REQUIRE(c);
    if (std::string(ok) != "12") CHECK(cursor_text(*c) == ok);
  }
  CHECK(cursor_text(*parse_cursor("12")) == "13.0");
  for (const char* bad : {"", "-1", "x", "s", "s1", "1.", ".1", "0.5", "1.2.3", "s1.-2",
                          "99999999999999999999", "1 "})
    CHECK_FALSE(parse_cursor(bad));
  TempDir tmp;
  auto a = Bank::open(tmp / "a.db", OpenMode::Create);
  CHECK_THROWS_WITH(read_feed(*a, "nosuch", "0", 10), Catch::Contains("no list 'nosuch'"));
  CHECK_THROWS_WITH(read_feed(*a, "default", "zz", 10), Catch::Contains("not a cursor"));
  CHECK_THROWS_WITH(read_feed(*a, "default", "0", 0), Catch::Contains("limit"));
  CHECK_THROWS_WITH(read_feed(*a, "default", "0", kFeedPageMax + 1), Catch::Contains("limit"));
  CHECK_NOTHROW(read_feed(*a, "default", "0", kFeedPageMax));

  json page = feed_json(read_feed(*a, "default", "0", 10));
  CHECK_NOTHROW(parse_feed("peer", page));
  json bad = page;
  bad["changes"] = json::array({{{"id", 3}, {"op", "add"}, {"pdq", "xyz"}}});
  CHECK_THROWS_WITH(parse_feed("peer", bad), Catch::Contains("change 1") && Catch::Contains("pdq"));
  bad["changes"] = json::array({{{"id", -3}, {"op", "remove"}}});
  CHECK_THROWS_WITH(parse_feed("peer", bad), Catch::Contains("id"));
  bad["changes"] = json::array({{{"id", 3}, {"op", "explode"}}});
  CHECK_THROWS_WITH(parse_feed("peer", bad), Catch::Contains("op"));
  bad = page;
  bad["list"]["kind"] = "maybe";
  CHECK_THROWS_WITH(parse_feed("peer", bad), Catch::Contains("kind"));
  bad = page;
  bad["next"] = "nope";
  CHECK_THROWS_WITH(parse_feed("peer", bad), Catch::Contains("next"));
  CHECK_THROWS_WITH(parse_feed("peer", json::array()), Catch::Contains("not a JSON object"));

  CHECK(peer_of("HTTP://Example.org") == "http://example.org:80");
  CHECK(peer_of("https://a.b:8443/hw/") == "https://a.b:8443/hw");
  CHECK(peer_of("http://[::1]:81") == "http://[::1]:81");
  for (const char* bad_url : {"ftp://x", "example.org", "http://", "http://x:0", "http://x:99999",
                              "http://user:pw@x", "http://x/a?b=c"})
    CHECK_THROWS_AS(peer_of(bad_url), Error);
}

// [slow]: two dozen runs of the binary; the feed it carries is the first case's, which the
// sanitizer pass runs.
TEST_CASE(
    "sync pulls a list from a real server follows its changes and a killed sync resumes "
    "with nothing lost or doubled",
    "[exchange][server][slow]") {
  TempDir tmp;
  const auto bank_a = tmp / "a.db", bank_b = tmp / "b.db";
  fs::create_directories(tmp / "srv-a");
  const auto tokens = tmp / "tokens";
  std::ofstream(tokens) << "partner match " << kMatchToken << "\nbank-b read " << kReadToken
                        << "\ningest write " << kWriteToken << "\n";
  fs::permissions(tokens, fs::perms::owner_read | fs::perms::owner_write);
  const auto token_file = tmp / "a.token";
  std::ofstream(token_file) << kReadToken << "\n";
  fs::permissions(token_file, fs::perms::owner_read | fs::perms::owner_write);
  const auto match_token_file = tmp / "match.token";
  std::ofstream(match_token_file) << kMatchToken << "\n";
  fs::permissions(match_token_file, fs::perms::owner_read | fs::perms::owner_write);

  // A's list: 120 hashes, imported.
  std::mt19937_64 rng(29);
  const auto write_hashes = [&](const fs::path& file, int n) {
    std::ofstream out(file);
    for (int i = 0; i < n; ++i) out << hwtest::random_hash(rng).hex() << "\n";
  };
  write_hashes(tmp / "first.txt", 120);
  auto r = hwtest::run_hashwall("init --bank " + q(bank_a));
  REQUIRE(r.exit_code == 0);
  r = hwtest::run_hashwall("list create ncii --bank " + q(bank_a) + " --organisation 'Org A'");
  REQUIRE(r.exit_code == 0);
  r = hwtest::run_hashwall("import " + q(tmp / "first.txt") + " --format hex --list ncii --bank " +
                           q(bank_a));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);

  ServerProcess srv(tmp / "srv-a", {"--bank", bank_a.string(), "--tokens", tokens.string()});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.port());
  const std::string sync = "sync --bank " + q(bank_b) + " --from " + url + " --token-file " +
                           q(token_file) + " --list ncii --into partner";

  // The endpoint: read tokens only; a list and a cursor it knows.
  auto c = srv.client();
  const httplib::Headers read{{"Authorization", std::string("Bearer ") + kReadToken}};
  auto res = c.Get("/v1/changes?list=ncii");
  REQUIRE(res);
  CHECK(res->status == 401);
  res = c.Get("/v1/changes?list=ncii", {{"Authorization", std::string("Bearer ") + kMatchToken}});
  REQUIRE(res);
  CHECK(res->status == 403);
  res = c.Get("/v1/changes", read);
  REQUIRE(res);
  CHECK(res->status == 400);
  res = c.Get("/v1/changes?list=nosuch", read);
  REQUIRE(res);
  CHECK(res->status == 400);
  CHECK(res->body.find("nosuch") != std::string::npos);
  res = c.Get("/v1/changes?list=ncii&after=bogus", read);
  REQUIRE(res);
  CHECK(res->status == 400);
  res = c.Get("/v1/changes?list=ncii&limit=5001", read);
  REQUIRE(res);
  CHECK(res->status == 400);

  // Refusals the sync names: a match token, a list A does not have.
  r = hwtest::run_hashwall("sync --bank " + q(bank_b) + " --from " + url + " --token-file " +
                           q(match_token_file) + " --list ncii");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("403") != std::string::npos);
  r = hwtest::run_hashwall("sync --bank " + q(bank_b) + " --from " + url + " --token-file " +
                           q(token_file) + " --list nosuch");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("nosuch") != std::string::npos);

  // The first sync: everything, in pages of 25.
  r = hwtest::run_hashwall(sync + " --page 25 --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto rep = json::parse(r.out);
  CHECK(rep["added"] == 120);
  CHECK(rep["list_created"] == true);
  CHECK(rep["pages"].get<int>() >= 5);

  // A changes: a removal, a disable, more hashes; the next sync brings exactly those.
  auto bank = Bank::open(bank_a, OpenMode::ReadOnly);
  const auto ncii = bank->list("ncii");
  REQUIRE(ncii);
  const auto a_entries = bank->list_entries(ncii->id, 0, 1000);
  REQUIRE(a_entries.size() == 120);
  bank.reset();
  r = hwtest::run_hashwall("remove --id " + std::to_string(a_entries[3].id) + " --bank " +
                           q(bank_a) + " --reason 'withdrawn by Org A'");
  REQUIRE(r.exit_code == 0);
  r = hwtest::run_hashwall("disable --id " + std::to_string(a_entries[4].id) +
                           " --reason collision --bank " + q(bank_a));
  REQUIRE(r.exit_code == 0);
  write_hashes(tmp / "second.txt", 1000);
  r = hwtest::run_hashwall("import " + q(tmp / "second.txt") + " --format hex --list ncii --bank " +
                           q(bank_a));
  REQUIRE(r.exit_code == 0);

  // Syncs killed at random moments while they apply pages of 2 (500 pages, about a second
  // in all here), then one left to finish.
  std::uniform_int_distribution<int> ms(30, 250);
  int cut_midway = 0;
  for (int round = 0; round < 8; ++round) {
    hwtest::run_shell("timeout -s KILL " + std::to_string(ms(rng) / 1000.0) + " " +
                      hwtest::hashwall_binary().string() + " " + sync +
                      " --page 2 >/dev/null 2>&1; true");
    for (const auto& l : Bank::open(bank_b, OpenMode::ReadOnly)->lists())
      if (l.name == "partner" && l.entries > 119 && l.entries < 1119) ++cut_midway;
  }
  INFO("syncs killed midway: " << cut_midway);
  // Not a check: on a slow machine every kill may come before the first page.
  if (cut_midway == 0) WARN("no sync was killed midway this time");
  r = hwtest::run_hashwall(sync + " --page 50 --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);

  const auto a_now = Bank::open(bank_a, OpenMode::ReadOnly);
  const auto b_now = Bank::open(bank_b, OpenMode::ReadOnly);
  const auto ha = holding(*a_now, "ncii"), hb = holding(*b_now, "partner");
  CHECK(ha.size() == 1119);
  CHECK(hb == ha);
  CHECK(hb.at(a_entries[4].pdq->hex()).second == "collision");
  CHECK(hb.count(a_entries[3].pdq->hex()) == 0);
  CHECK(b_now->check().ok);
  const auto part = b_now->list("partner");
  REQUIRE(part);
  CHECK(part->organisation == "Org A");
  // The checkpoint is where A's feed now ends: nothing more to pull.
  r = hwtest::run_hashwall(sync + " --json");
  REQUIRE(r.exit_code == 0);
  rep = json::parse(r.out);
  CHECK(rep["added"] == 0);
  CHECK(rep["removed"] == 0);
  CHECK(rep["pages"] == 1);

  // Another address for the same bank (here "localhost"): the entries are claimed by the
  // bank, not the address, so its removals still apply.
  const std::string other_url = "http://localhost:" + std::to_string(srv.port());
  const std::string sync2 = "sync --bank " + q(bank_b) + " --from " + other_url + " --token-file " +
                            q(token_file) + " --list ncii --into partner";
  r = hwtest::run_hashwall(sync2 + " --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(json::parse(r.out)["added"] == 0);
  r = hwtest::run_hashwall("remove --id " + std::to_string(a_entries[5].id) + " --bank " +
                           q(bank_a));
  REQUIRE(r.exit_code == 0);
  r = hwtest::run_hashwall(sync2 + " --json");
  REQUIRE(r.exit_code == 0);
  CHECK(json::parse(r.out)["removed"] == 1);
  // A sync begun before peers were named by their bank: claims and provenance under the
  // address, no bank id kept. Its first pass now moves them to the bank's name, and the
  // peer's removals still apply.
  const std::string key = "sync:" + url + " ncii partner";
  hwtest::raw_sql(bank_b.string(),
                  "UPDATE entry_claims SET peer = '" + url + "'; UPDATE entries SET peer = '" +
                      url + "' WHERE peer <> ''; DELETE FROM meta WHERE key = 'sync:bank " +
                      key.substr(5) + "'");
  r = hwtest::run_hashwall("remove --id " + std::to_string(a_entries[6].id) + " --bank " +
                           q(bank_a));
  REQUIRE(r.exit_code == 0);
  r = hwtest::run_hashwall(sync + " --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(json::parse(r.out)["removed"] == 1);
  CHECK(json::parse(r.out)["restarted"] == false);
  // A checkpoint past the end of the peer's log (its bank restored from a backup), or
  // another bank id: the sync starts again from a snapshot, and nothing changes.
  hwtest::raw_sql(bank_b.string(), "UPDATE meta SET value = '99999.0' WHERE key = '" + key + "'");
  r = hwtest::run_hashwall(sync + " --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(json::parse(r.out)["restarted"] == true);
  CHECK(json::parse(r.out)["added"] == 0);
  hwtest::raw_sql(bank_b.string(), "UPDATE meta SET value = 'feedfeed' WHERE key = 'sync:bank " +
                                       key.substr(5) + "'");
  r = hwtest::run_hashwall(sync + " --json");
  REQUIRE(r.exit_code == 0);
  CHECK(json::parse(r.out)["restarted"] == true);
  CHECK(holding(*Bank::open(bank_b, OpenMode::ReadOnly), "partner") ==
        holding(*Bank::open(bank_a, OpenMode::ReadOnly), "ncii"));

  // A disables its list: so is B's copy, and enabled again with it; a list B disabled
  // itself stays disabled whatever A does.
  r = hwtest::run_hashwall("list disable ncii --bank " + q(bank_a) + " --reason compromised");
  REQUIRE(r.exit_code == 0);
  r = hwtest::run_hashwall(sync + " --json");
  REQUIRE(r.exit_code == 0);
  CHECK(json::parse(r.out)["list_changes"] == 1);
  {
    const auto part_now = Bank::open(bank_b, OpenMode::ReadOnly)->list("partner");
    REQUIRE(part_now);
    REQUIRE(part_now->disabled);
    CHECK(part_now->disabled->reason.starts_with("peer bank:"));
    CHECK(part_now->disabled->reason.ends_with(": compromised"));
  }
  r = hwtest::run_hashwall("list enable ncii --bank " + q(bank_a));
  REQUIRE(r.exit_code == 0);
  r = hwtest::run_hashwall(sync + " --json");
  REQUIRE(r.exit_code == 0);
  CHECK_FALSE(Bank::open(bank_b, OpenMode::ReadOnly)->list("partner")->disabled);
  r = hwtest::run_hashwall("list disable partner --bank " + q(bank_b) + " --reason 'our review'");
  REQUIRE(r.exit_code == 0);
  r = hwtest::run_hashwall(sync + " --json");
  REQUIRE(r.exit_code == 0);
  CHECK(Bank::open(bank_b, OpenMode::ReadOnly)->list("partner")->disabled->reason == "our review");

  // An allow list cannot be synced into a block list (it would block harmless photos).
  r = hwtest::run_hashwall("list create harmless --kind allow --bank " + q(bank_a));
  REQUIRE(r.exit_code == 0);
  r = hwtest::run_hashwall("sync --bank " + q(bank_b) + " --from " + url + " --token-file " +
                           q(token_file) + " --list harmless --into partner");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("allow") != std::string::npos);
}

TEST_CASE(
    "verdicts over HTTP and the command line: a write token and a false positive "
    "allowlisted in one step",
    "[exchange][server][lists]") {
  TempDir tmp;
  const auto bank = tmp / "bank.db";
  const auto samples = hwtest::source_dir() / "samples";
  auto r = hwtest::run_hashwall("index " + q(samples / "bank") + " --bank " + q(bank));
  REQUIRE(r.exit_code == 0);
  r = hwtest::run_hashwall("list create harmless --kind allow --bank " + q(bank));
  REQUIRE(r.exit_code == 0);
  // The known photo's own near copy is "matched": the reviewer calls it a false positive.
  const auto upload = samples / "uploads" / "mate_Aqua--jpeg30.jpg";
  r = hwtest::run_hashwall("query " + q(upload) + " --bank " + q(bank) + " --json");
  REQUIRE(r.exit_code == 1);
  const auto answer = json::parse(r.out);
  const auto entry = answer["matches"][0]["id"].get<std::int64_t>();
  const std::string sha = answer["sha256"], pdq = answer["pdq"];

  fs::create_directories(tmp / "srv");
  const auto tokens = tmp / "tokens";
  std::ofstream(tokens) << "reviewer read " << kReadToken << "\ningest write " << kWriteToken
                        << "\n";
  fs::permissions(tokens, fs::perms::owner_read | fs::perms::owner_write);
  {
    ServerProcess srv(tmp / "srv", {"--bank", bank.string(), "--tokens", tokens.string()});
    INFO(srv.log());
    REQUIRE(srv.port() > 0);
    auto c = srv.client();
    const auto post = [&](const char* token, const json& body) {
      httplib::Headers h;
      if (token) h.emplace("Authorization", std::string("Bearer ") + token);
      auto res = c.Post("/v1/verdicts", h, body.dump(), "application/json");
      REQUIRE(res);
      return std::pair{res->status, res->body};
    };
    const json confirmed = {{"entry", entry}, {"query_sha256", sha}, {"verdict", "confirmed"}};
    CHECK(post(nullptr, confirmed).first == 401);
    CHECK(post(kReadToken, confirmed).first == 403);
    CHECK(post(kWriteToken, json{{"entry", entry}}).first == 400);
    CHECK(post(kWriteToken, json{{"entry", entry}, {"query_sha256", sha}, {"verdict", "maybe"}})
              .first == 400);
    auto [st, body] =
        post(kWriteToken, json{{"entry", 99999}, {"query_sha256", sha}, {"verdict", "confirmed"}});
    CHECK(st == 400);
    CHECK(body.find("no entry 99999") != std::string::npos);
    std::tie(st, body) = post(kWriteToken, confirmed);
    CHECK(st == 201);
    CHECK(json::parse(body)["allow_entry"].is_null());
    // Allowlisting needs the query's PDQ hash, and an allow list.
    json fp = {{"entry", entry},
               {"query_sha256", sha},
               {"verdict", "false-positive"},
               {"allow_list", "harmless"},
               {"reason", "a stock photo"}};
    CHECK(post(kWriteToken, fp).first == 400);
    fp["pdq"] = pdq;
    fp["allow_list"] = "default";
    std::tie(st, body) = post(kWriteToken, fp);
    CHECK(st == 400);
    CHECK(body.find("block list") != std::string::npos);
    fp["allow_list"] = "harmless";
    std::tie(st, body) = post(kWriteToken, fp);
    INFO(body);
    REQUIRE(st == 201);
    CHECK(json::parse(body)["allow_entry"].is_number_integer());
    // The same hash is now allowed.
    auto res = c.Post("/v1/match/hash", {{"Authorization", std::string("Bearer ") + kReadToken}},
                      json{{"hash", pdq}}.dump(), "application/json");
    REQUIRE(res);
    CHECK(json::parse(res->body)["results"][0]["status"] == "allowed");
    res = c.Get("/v1/audit", {{"Authorization", std::string("Bearer ") + kReadToken}});
    REQUIRE(res);
    const auto events = json::parse(res->body)["events"];
    int verdicts = 0;
    for (const auto& e : events)
      if (e["action"] == "verdict") {
        ++verdicts;
        CHECK(e["actor"] == "token:ingest");
      }
    CHECK(verdicts == 2);
  }
  // The command line: another upload, a false positive put on the allow list from its file.
  const auto other = samples / "uploads" / "mate_LadyBird--flipped.jpg";
  r = hwtest::run_hashwall("query " + q(other) + " --bank " + q(bank) + " --json");
  REQUIRE(r.exit_code == 1);
  const auto other_entry = json::parse(r.out)["matches"][0]["id"].get<std::int64_t>();
  r = hwtest::run_hashwall("verdict --bank " + q(bank) + " --entry " + std::to_string(other_entry) +
                           " --query " + q(other) +
                           " --verdict false-positive --allow-list default");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("block list") != std::string::npos);
  r = hwtest::run_hashwall("verdict --bank " + q(bank) + " --entry " + std::to_string(other_entry) +
                           " --query " + q(other) +
                           " --verdict false-positive --allow-list harmless --json");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(json::parse(r.out)["allow_entry"].is_number_integer());
  r = hwtest::run_hashwall("query " + q(other) + " --bank " + q(bank));
  CHECK(r.exit_code == 4);
  r = hwtest::run_hashwall("verdict --bank " + q(bank) + " --entry " + std::to_string(other_entry) +
                           " --query-sha256 " + sha + " --verdict confirmed");
  CHECK(r.exit_code == 0);
  r = hwtest::run_hashwall("verdict --bank " + q(bank) + " --entry 1 --verdict confirmed");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("--query") != std::string::npos);
}

TEST_CASE(
    "a format-5 bank made before claims gets them from its synced entries when opened "
    "to write",
    "[exchange][stores]") {
  TempDir tmp;
  const auto path = hwtest::bank_location(tmp);
  std::mt19937_64 rng(47);
  {
    auto b = Bank::open(path, OpenMode::Create);
    NewEntry synced = imported(hwtest::random_hash(rng), "synced", kDefaultListId);
    synced.peer = "bank:feedfeed";
    synced.external_id = "17";
    std::vector<NewEntry> batch = {synced,
                                   imported(hwtest::random_hash(rng), "own", kDefaultListId)};
    b->add(batch, {});
  }
  hwtest::raw_sql(path, "DROP TABLE entry_claims");
  {
    auto ro = Bank::open(path, OpenMode::ReadOnly);
    CHECK(ro->ids_from_peer("bank:feedfeed", std::vector<std::string>{"17"}).empty());
  }
  auto b = Bank::open(path, OpenMode::ReadWrite);
  const auto got = b->ids_from_peer("bank:feedfeed", std::vector<std::string>{"17"});
  REQUIRE(got.size() == 1);
  CHECK(b->get(got[0].second)->label == "synced");
  CHECK(b->release_claims("bank:feedfeed", std::vector<std::string>{"17"}, {}) == 1);
  CHECK(b->stats().entries == 1);
  CHECK(b->check().ok);
}
