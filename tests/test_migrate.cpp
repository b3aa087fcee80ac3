// hashwall migrate (src/bank/migrate.cpp): a bank copied into another store answers as the
// original, keeps its ids, and a copy that did not finish is never used. Under the "pg: ..."
// run the middle bank is in PostgreSQL: SQLite -> PostgreSQL -> SQLite.
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "image/load.hpp"
#include "support.hpp"

using hwtest::run_hashwall;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// Each upload's verdict and matches (entry ids, signals, distances, scores), by file name.
std::map<std::string, json> answers(const fs::path& bank) {
  const auto uploads = hwtest::source_dir() / "samples" / "uploads";
  const auto r = run_hashwall("scan " + q(uploads) + " --bank " + q(bank) + " --jsonl");
  INFO(r.err);
  REQUIRE(r.exit_code == 1);
  std::map<std::string, json> out;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    if (line.empty()) continue;
    auto rec = json::parse(line);
    if (!rec.contains("file")) continue;
    out[fs::path(rec["file"].get<std::string>()).filename().string()] = json{
        {"match", rec.value("match", false)}, {"matches", rec.value("matches", json::array())}};
  }
  return out;
}

}  // namespace

TEST_CASE("a bank migrated to another store and back answers the same under the same ids",
          "[migrate][stores]") {
  const auto samples = hwtest::source_dir() / "samples" / "bank";
  hwtest::TempDir tmp;
  const fs::path a = tmp / "a.db";
  const fs::path b = hwtest::bank_location(tmp, "b.db");
  const fs::path c = tmp / "c.db";
  // Lists, a disabled entry and the audit log travel too (format 5).
  const auto coffee =
      hwtest::source_dir() / "samples" / "uploads" / "unrelated--skimage_coffee.jpg";
  REQUIRE(run_hashwall("init --bank " + q(a)).exit_code == 0);
  REQUIRE(
      run_hashwall("list create ok --kind allow --organisation 'Org A' --bank " + q(a)).exit_code ==
      0);
  REQUIRE(run_hashwall("index " + q(coffee) + " --list ok --bank " + q(a) + " -q").exit_code == 0);
  REQUIRE(
      run_hashwall("index " + q(samples) + " --bank " + q(a) + " --label case-1 -q").exit_code ==
      0);
  REQUIRE(run_hashwall("disable --id 2 --reason collision --bank " + q(a)).exit_code == 0);
  const auto lists_of = [](const fs::path& bank) {
    return json::parse(run_hashwall("list --json --bank " + q(bank)).out);
  };
  const auto log_of = [](const fs::path& bank) {
    return json::parse(run_hashwall("log --json --bank " + q(bank)).out);
  };
  // The highest id removed: ids are never given twice, in either store.
  const auto st = json::parse(run_hashwall("stats --bank " + q(a) + " --json").out);
  const int entries = st["entries"].get<int>();
  REQUIRE(run_hashwall("remove --bank " + q(a) + " --id " + std::to_string(entries)).exit_code ==
          0);
  // A file-hash list's entry (format 6: an MD5, no PDQ hash) travels too.
  const auto aitz = hwtest::source_dir() / "samples" / "uploads" /
                    "unrelated--lomiri_aitzgorri_by_Aitzol_Berasategi.jpg";
  std::ofstream(tmp / "files.md5")
      << hashwall::md5_hex(hashwall::read_file_bytes(aitz, 1 << 30)) << "\n";
  REQUIRE(
      run_hashwall("import " + q(tmp / "files.md5") + " --format md5 --bank " + q(a)).exit_code ==
      0);
  const auto before = answers(a);

  auto ab = run_hashwall("migrate --from " + q(a) + " --to " + q(b) + " --json");
  INFO(ab.out << ab.err);
  REQUIRE(ab.exit_code == 0);
  const auto j = json::parse(ab.out);
  CHECK(j["ok"] == true);
  CHECK(j["entries"].get<int>() == entries);
  CHECK(j["records"].get<int>() > 0);
  REQUIRE(run_hashwall("migrate --from " + q(b) + " --to " + q(c)).exit_code == 0);
  CHECK(answers(b) == before);
  CHECK(answers(c) == before);
  CHECK(lists_of(a)["lists"].size() == 2);
  CHECK(lists_of(b) == lists_of(a));
  CHECK(lists_of(c) == lists_of(a));
  CHECK(log_of(a)["events"].size() == 6);
  CHECK(log_of(b) == log_of(a));
  CHECK(log_of(c) == log_of(a));
  CHECK(json::parse(run_hashwall("query " + q(coffee) + " --json --bank " + q(c)).out)["status"] ==
        "allowed");
  CHECK(json::parse(run_hashwall("query " + q(aitz) + " --json --bank " + q(c))
                        .out)["matches"][0]["signal"] == "md5");
  for (const auto& bank : {b, c}) {
    INFO(bank);
    CHECK(run_hashwall("check --bank " + q(bank)).exit_code == 0);
    const auto s = json::parse(run_hashwall("stats --bank " + q(bank) + " --json").out);
    CHECK(s["entries"] == entries);
    CHECK(s["generation"] == st["generation"].get<int>() + 2);
  }
  // A new entry in the copy gets an id past every id the original gave.
  const auto extra = hwtest::source_dir() / "samples" / "uploads" / "unrelated--mate_Storm.jpg";
  const auto add = run_hashwall("index " + q(extra) + " --bank " + q(b) + " --json");
  REQUIRE(add.exit_code == 0);
  const auto found =
      json::parse(run_hashwall("query " + q(extra) + " --bank " + q(b) + " --json").out);
  CHECK(found["matches"][0]["id"].get<int>() == entries + 2);  // after the MD5 entry

  // Never over a bank: the target is left as it was.
  auto again = run_hashwall("migrate --from " + q(a) + " --to " + q(c));
  CHECK(again.exit_code == 2);
  CHECK_THAT(again.err, Catch::Contains("already there"));
  CHECK(answers(c) == before);
  // A copy marked unfinished (as a crash mid-copy leaves it) is refused by every command.
  hwtest::raw_sql(c.string(), "INSERT INTO meta(key, value) VALUES('migrating', '1')");
  auto unfinished = run_hashwall("stats --bank " + q(c));
  CHECK(unfinished.exit_code == 2);
  CHECK_THAT(unfinished.err, Catch::Contains("did not finish"));
}
