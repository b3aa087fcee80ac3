// The flood guard (issue #17, match/flood.hpp): counting in a sliding window, and `serve`
// quarantining an entry that matches too large a share of its queries.
#include <httplib.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "bank/bank.hpp"
#include "match/flood.hpp"
#include "server_process.hpp"
#include "support.hpp"

using namespace hashwall;
using hwtest::ServerProcess;
using hwtest::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

TEST_CASE(
    "the flood guard trips on an entry past its share of distinct queries only with "
    "enough queries and forgets what leaves the window",
    "[flood]") {
  FloodOptions o;
  o.share = 0.10;
  o.window_seconds = 600;  // slots of 10 s
  o.min_queries = 100;
  o.min_matches = 5;
  FloodGuard g(o);
  const std::int64_t e = 42, other = 7;
  std::int64_t t = 1'000'000;
  std::uint64_t q = 0;  // each query a different photo, unless said
  // 99 queries, 20 of them matching e: far past 10 %, but not enough queries yet.
  for (int i = 0; i < 99; ++i) {
    const std::vector<std::int64_t> m =
        i % 5 == 0 ? std::vector<std::int64_t>{e, other} : std::vector<std::int64_t>{};
    CHECK(g.observe(t, ++q, m).empty());
  }
  // A query matching nothing decides nothing; the next one matching e trips it (21 of 101).
  CHECK(g.observe(t, ++q, std::vector<std::int64_t>{}).empty());
  auto trips = g.observe(t, ++q, std::vector<std::int64_t>{e});
  REQUIRE(trips.size() == 1);
  CHECK(trips[0].entry == e);
  CHECK(trips[0].matches == 21);
  CHECK(trips[0].queries == 101);
  // Once reported, e counts from zero: 5 more of 106 queries is under 10 %.
  for (int i = 0; i < 5; ++i) CHECK(g.observe(t, ++q, std::vector<std::int64_t>{e}).empty());
  // `other` (20 of 106 = 19 %) trips at its next match.
  trips = g.observe(t, ++q, std::vector<std::int64_t>{other});
  REQUIRE(trips.size() == 1);
  CHECK(trips[0].entry == other);

  // The same photo again and again counts once: 300 copies of one query never trip.
  FloodGuard same(o);
  for (int i = 0; i < 300; ++i) CHECK(same.observe(t, 99, std::vector<std::int64_t>{e}).empty());

  // Ten minutes later everything has left the window: 100 new quiet queries, then one
  // entry at 11 of 110 (not more than 10 %) and at its 12th of 111 it trips.
  t += 700;
  FloodGuard h(o);
  for (int i = 0; i < 100; ++i) CHECK(h.observe(t, ++q, std::vector<std::int64_t>{}).empty());
  t += 700;  // those expire too
  for (int i = 0; i < 99; ++i) CHECK(h.observe(t, ++q, std::vector<std::int64_t>{}).empty());
  std::size_t tripped_at = 0;
  for (int i = 1; i <= 20 && tripped_at == 0; ++i)
    if (!h.observe(t, ++q, std::vector<std::int64_t>{e}).empty())
      tripped_at = static_cast<std::size_t>(i);
  CHECK(tripped_at == 12);

  // Share 0: off.
  FloodOptions off = o;
  off.share = 0;
  FloodGuard none(off);
  for (int i = 0; i < 500; ++i) CHECK(none.observe(t, ++q, std::vector<std::int64_t>{e}).empty());
}

TEST_CASE("serve quarantines an entry that matches too many queries and says so everywhere",
          "[flood][server]") {
  TempDir tmp;
  const auto bank = tmp / "bank.db";
  std::mt19937_64 rng(5);
  const auto poisoned = hwtest::random_hash(rng);
  {
    std::ofstream list(tmp / "list.txt");
    list << poisoned.hex() << "\n";
    for (int i = 0; i < 50; ++i) list << hwtest::random_hash(rng).hex() << "\n";
  }
  auto r = hwtest::run_hashwall("import " + (tmp / "list.txt").string() + " --format hex --bank " +
                                bank.string());
  REQUIRE(r.exit_code == 0);
  const auto tokens = tmp / "tokens";
  std::ofstream(tokens) << "ops admin admin-b71e40c9d2a85f36e0\n";
  fs::permissions(tokens, fs::perms::owner_read | fs::perms::owner_write);
  fs::create_directories(tmp / "srv");
  ServerProcess srv(tmp / "srv", {"--bank", bank.string(), "--tokens", tokens.string(),
                                  "--flood-share", "0.2", "--flood-min-queries", "20",
                                  "--flood-min-matches", "10", "--flood-window", "600"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  auto c = srv.client();
  const httplib::Headers admin{{"Authorization", "Bearer admin-b71e40c9d2a85f36e0"}};
  // One hash repeated 60 times (what anyone could send, to switch an entry off) counts as
  // one query photo: no quarantine.
  Hash256 near = poisoned;
  near.bytes[0] ^= 7;
  json same = json::array();
  for (int i = 0; i < 60; ++i) same.push_back(near.hex());
  auto res = c.Post("/v1/match/hash", admin, json{{"hashes", same}}.dump(), "application/json");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  const json repeated = json::parse(res->body);  // alive across the loop over its results
  for (const auto& one : repeated["results"]) CHECK(one["status"] == "match");
  // 100 queries: every other one a different photo near the poisoned hash (4 bits away),
  // the rest unrelated: a hash that matches all sorts of pictures.
  json hashes = json::array();
  for (int i = 0; i < 100; ++i) {
    Hash256 v = near;
    v.bytes[static_cast<std::size_t>(1 + i / 8)] ^= static_cast<std::uint8_t>(1u << (i % 8));
    hashes.push_back(i % 2 == 0 ? v.hex() : hwtest::random_hash(rng).hex());
  }
  res = c.Post("/v1/match/hash", admin, json{{"hashes", hashes}}.dump(), "application/json");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  const auto results = json::parse(res->body)["results"];
  // Matches until the guard tripped, none after. The window holds the 60 repeats (one
  // distinct photo) first; after k variants it holds k + 1 distinct matching photos among
  // 59 + 2k queries, past 20 % from k = 19 (the 37th query of this request), which is
  // still answered as a match.
  int matched = 0, after_trip = 0;
  for (std::size_t i = 0; i < results.size(); ++i)
    if (results[i]["status"] == "match") {
      ++matched;
      if (i > 36) ++after_trip;
    }
  CHECK(matched == 19);
  CHECK(after_trip == 0);
  res = c.Get("/v1/stats", admin);
  REQUIRE(res);
  const auto stats = json::parse(res->body);
  CHECK(stats["flood"]["quarantined_by_this_server"] == 1);
  CHECK(stats["flood"]["quarantined_in_bank"] == 1);
  CHECK(stats["disabled"] == 1);
  res = c.Get("/metrics");
  REQUIRE(res);
  CHECK(res->body.find("hashwall_flood_quarantined_total 1") != std::string::npos);
  res = c.Get("/v1/audit", admin);
  REQUIRE(res);
  const auto events = json::parse(res->body)["events"];
  REQUIRE(events.size() >= 2);
  const auto& last = events.back();
  CHECK(last["action"] == "disable");
  CHECK(last["actor"] == "flood-guard");
  CHECK(last["reason"].get<std::string>().find("matched 20 of the last 97 queries") !=
        std::string::npos);
  const auto id = last["ids"][0].get<std::int64_t>();

  r = hwtest::run_hashwall("stats --bank " + bank.string());
  CHECK(r.out.find("1 quarantined by the flood guard") != std::string::npos);
  // A person looks, enables it again: it matches again.
  r = hwtest::run_hashwall("enable --id " + std::to_string(id) + " --bank " + bank.string() +
                           " --reason 'reviewed: a real case'");
  REQUIRE(r.exit_code == 0);
  res = c.Post("/v1/match/hash", admin, json{{"hash", near.hex()}}.dump(), "application/json");
  REQUIRE(res);
  CHECK(json::parse(res->body)["results"][0]["status"] == "match");
}
