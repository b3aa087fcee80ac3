// File-hash lists (issue #17, bank format 6): entries that hold a file's MD5 or SHA-256 and
// no PDQ hash, as exchanges share videos; imported from md5, sha256 and threatexchange
// lists, matched by a query's bytes alone, exported again, and passed on by a feed. On
// both stores ([stores]).
#include <algorithm>
#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <sstream>

#include "bank/bank.hpp"
#include "core/error.hpp"
#include "exchange/feed.hpp"
#include "image/load.hpp"
#include "match/fingerprint.hpp"
#include "match/matcher.hpp"
#include "support.hpp"

using namespace hashwall;
using hwtest::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string md5_of_file(const fs::path& p) { return md5_hex(read_file_bytes(p, 1ull << 30)); }

NewEntry file_entry(std::optional<std::string> md5, std::optional<std::string> sha256,
                    const std::string& label) {
  NewEntry e;
  e.md5 = std::move(md5);
  e.sha256 = std::move(sha256);
  e.label = label;
  e.source = "videos.txt";
  e.origin = Origin::Imported;
  return e;
}

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

}  // namespace

TEST_CASE("entries of file-hash lists have no PDQ hash and are found by their bytes alone",
          "[bank][stores]") {
  TempDir tmp;
  const std::string path = hwtest::bank_location(tmp);
  auto bank = Bank::open(path, OpenMode::Create);
  std::mt19937_64 rng(5);
  NewEntry photo;
  photo.pdq = hwtest::random_hash(rng);
  photo.source = "photo.jpg";
  photo.origin = Origin::Imported;
  const std::string md5 = "0123456789abcdef0123456789abcdef";
  const std::string sha(64, 'e');
  std::vector<NewEntry> batch = {photo, file_entry(md5, std::nullopt, "v1"),
                                 file_entry(std::nullopt, sha, "v2")};
  const auto r = bank->add(batch);
  REQUIRE(r.added == 3);
  CHECK(bank->has_md5_entries());
  // Only the PDQ entry is in the PDQ index.
  CHECK(bank->stats().entries == 3);
  CHECK(bank->search_pdq(std::span(&*photo.pdq, 1), 256).size() == 1);

  const auto m = bank->find_md5("0123456789ABCDEF0123456789ABCDEF");
  REQUIRE(m);
  CHECK(m->id == r.ids[1]);
  CHECK_FALSE(m->pdq);
  CHECK(m->md5 == md5);
  const auto s = bank->get(r.ids[2]);
  REQUIRE(s);
  CHECK_FALSE(s->pdq);
  CHECK(s->sha256 == sha);

  // The same file hash again (in any case) is a duplicate; an entry with nothing to be
  // found by, or a malformed MD5, is refused and writes nothing.
  auto again = file_entry("0123456789ABCDEF0123456789ABCDEF", std::nullopt, "again");
  again.source = "other-list.txt";
  const auto d = bank->add(std::span(&again, 1));
  CHECK(d.added == 0);
  CHECK(d.ids[0] == r.ids[1]);
  auto nothing = file_entry(std::nullopt, std::nullopt, "x");
  CHECK_THROWS_WITH(bank->add(std::span(&nothing, 1)),
                    Catch::Contains("no PDQ hash, SHA-256, MD5 or signal record"));
  auto bad = file_entry("0123", std::nullopt, "x");
  CHECK_THROWS_WITH(bank->add(std::span(&bad, 1)), Catch::Contains("is not an MD5"));
  CHECK(bank->stats().entries == 3);

  // A query is matched by its MD5 and by its SHA-256, exactly; its PDQ hash finds nothing
  // here.
  const Matcher matcher(*bank, MatchOptions{});
  Fingerprint f;
  f.pdq.hashes.fill(hwtest::random_hash(rng));
  f.pdq.quality = 100;
  f.md5 = md5;
  auto res = matcher.match(f);
  CHECK(res.verdict == Verdict::Match);
  REQUIRE(res.hits.size() == 1);
  CHECK(res.hits[0].entry.id == r.ids[1]);
  CHECK(res.hits[0].signal == "md5");
  CHECK(res.hits[0].exact);
  f.md5.clear();
  CHECK(matcher.match(f).verdict == Verdict::NoMatch);
  CHECK(matcher.match_file(sha, "").verdict == Verdict::Match);
  CHECK(matcher.match_file(std::string(64, 'f'), std::string(32, 'f')).verdict == Verdict::NoMatch);
  // A disabled file-hash entry decides nothing.
  bank->set_disabled(std::vector<std::int64_t>{r.ids[1]}, Disabled{"wrong list", std::nullopt},
                     Actor{"test", ""});
  CHECK(matcher.match_file("", md5).verdict == Verdict::NoMatch);

  // An entry with both a SHA-256 and an MD5 (as a peer may send) duplicates an entry with
  // either, instead of breaking the MD5's uniqueness.
  auto both = file_entry("0123456789abcdef0123456789abcdef", std::string(64, 'd'), "both");
  const auto b2 = bank->add(std::span(&both, 1));
  CHECK(b2.added == 0);
  CHECK(b2.ids[0] == r.ids[1]);

  // The file of the SHA-256 entry indexed later: that entry gains the PDQ hash (near
  // copies are found from now on), keeps its list and label, and the digests follow.
  NewEntry indexed;
  indexed.sha256 = sha;
  indexed.pdq = hwtest::random_hash(rng);
  indexed.quality = 88;
  indexed.label = "indexed later";
  indexed.source = "/photos/x.jpg";
  const auto c = bank->add(std::span(&indexed, 1));
  CHECK(c.added == 1);
  CHECK(c.ids[0] == r.ids[2]);
  const auto completed = bank->get(r.ids[2]);
  REQUIRE(completed);
  REQUIRE(completed->pdq);
  CHECK(*completed->pdq == *indexed.pdq);
  CHECK(completed->quality == 88);
  CHECK(completed->label == "v2");
  CHECK(bank->search_pdq(std::span(&*indexed.pdq, 1), 0).at(0).id == r.ids[2]);
  CHECK(bank->add(std::span(&indexed, 1)).added == 0);  // once only

  // A PDQ hash never joins another list's file-hash entry (an allow or disabled list):
  // that is a duplicate in another list, said as such.
  ListInfo spec;
  spec.name = "harmless";
  spec.kind = ListKind::Allow;
  const auto allow = bank->create_list(spec, Actor{"test", ""});
  auto listed = file_entry(std::nullopt, std::string(64, '9'), "harmless file");
  listed.list_id = allow.id;
  const auto l = bank->add(std::span(&listed, 1));
  NewEntry other = indexed;
  other.sha256 = std::string(64, '9');
  other.pdq = hwtest::random_hash(rng);
  const auto o = bank->add(std::span(&other, 1));
  CHECK(o.added == 0);
  CHECK(o.in_other_list == 1);
  CHECK_FALSE(bank->get(l.ids[0])->pdq);

  // In one batch, a file-hash row then the same file with its PDQ hash: one entry, with
  // the PDQ hash, whichever came first (as the rows would one at a time).
  std::vector<NewEntry> pair = {file_entry(std::nullopt, std::string(64, '8'), "listed"), indexed};
  pair[1].sha256 = std::string(64, '8');
  pair[1].pdq = hwtest::random_hash(rng);
  const auto pr = bank->add(pair);
  CHECK(pr.added == 1);
  CHECK(pr.duplicates == 1);
  CHECK(pr.ids[0] == pr.ids[1]);
  REQUIRE(bank->get(pr.ids[0]));
  CHECK(bank->get(pr.ids[0])->pdq == pair[1].pdq);

  // Checksums cover the MD5: the bank checks, before and after a reopen and a removal.
  CHECK(bank->check().ok);
  bank->remove_ids(std::vector<std::int64_t>{r.ids[1]});
  CHECK_FALSE(bank->find_md5(md5));
  CHECK_FALSE(bank->has_md5_entries());
  bank.reset();
  bank = Bank::open(path, OpenMode::ReadWrite);
  const auto rep = bank->check();
  INFO((rep.problems.empty() ? "" : rep.problems.front()));
  CHECK(rep.ok);
  CHECK(bank->stats().entries == 4);
  CHECK(bank->search_pdq(std::span(&*indexed.pdq, 1), 0).at(0).id == r.ids[2]);
}

TEST_CASE("a feed passes file-hash entries on to another bank", "[exchange][stores]") {
  TempDir tmp;
  auto a = Bank::open(hwtest::bank_location(tmp, "a.db"), OpenMode::Create);
  auto b = Bank::open(hwtest::bank_location(tmp, "b.db"), OpenMode::Create);
  const Actor cli{"cli:test", ""};
  std::vector<NewEntry> batch = {file_entry(std::string(32, 'a'), std::nullopt, "v1"),
                                 file_entry(std::nullopt, std::string(64, 'b'), "v2")};
  REQUIRE(a->add(batch, cli).added == 2);
  const FeedPage p =
      parse_feed("test", json::parse(feed_json(read_feed(*a, "default", "0", 100)).dump()));
  REQUIRE(p.items.size() == 2);
  const auto rep = apply_feed(*b, p, "bank:a", kDefaultListId, Actor{"sync:a", ""});
  CHECK(rep.added == 2);
  CHECK(rep.refused == 0);
  const auto m = b->find_md5(std::string(32, 'a'));
  REQUIRE(m);
  CHECK(m->label == "v1");
  CHECK_FALSE(m->pdq);
  CHECK(b->find_sha256(std::string(64, 'b')));
  CHECK(b->check().ok);
  // A page whose entry has nothing to be found by, or a bad MD5, loses that entry only.
  json page = feed_json(read_feed(*a, "default", "0", 100));
  page["changes"][0]["md5"] = "not-hex";
  page["changes"][1]["sha256"] = nullptr;
  CHECK(parse_feed("test", page).refused == 2);
}

TEST_CASE("md5 sha256 and threatexchange lists are imported matched and exported by the CLI",
          "[cli][stores]") {
  const auto samples = hwtest::source_dir() / "samples";
  TempDir tmp;
  const std::string bank = hwtest::bank_location(tmp);
  const std::string b = " --bank '" + bank + "'";
  const auto run = [&](const std::string& args) {
    auto r = hwtest::run_hashwall(args);
    INFO(args << "\n" << r.out << r.err);
    return r;
  };
  REQUIRE(run("index " + q(samples / "bank") + b + " -q").exit_code == 0);
  const auto storm = samples / "uploads" / "unrelated--mate_Storm.jpg";
  const auto coffee = samples / "uploads" / "unrelated--skimage_coffee.jpg";
  CHECK(run("query " + q(storm) + b).exit_code == 0);

  // An MD5 list: the very file matches; a re-encoded copy of it does not.
  std::ofstream(tmp / "videos.md5") << "# known files\n" << md5_of_file(storm) << "\n";
  auto r = run("import " + q(tmp / "videos.md5") + b + " --format md5 --label known-files");
  REQUIRE(r.exit_code == 0);
  r = run("query " + q(storm) + b + " --json");
  CHECK(r.exit_code == 1);
  json j = json::parse(r.out);
  CHECK(j["matches"][0]["signal"] == "md5");
  CHECK(j["matches"][0]["label"] == "known-files");
  CHECK(j["matches"][0]["exact"] == true);
  {
    const cv::Mat img = cv::imread(storm.string());
    REQUIRE_FALSE(img.empty());
    cv::imwrite((tmp / "storm-again.jpg").string(), img, {cv::IMWRITE_JPEG_QUALITY, 70});
  }
  CHECK(run("query " + q(tmp / "storm-again.jpg") + b).exit_code == 0);
  // A file the image loader refuses (not an image) is still found by its bytes.
  std::ofstream(tmp / "notes.bin", std::ios::binary) << "a known file that is not an image";
  std::ofstream(tmp / "more.md5") << md5_of_file(tmp / "notes.bin") << "\n";
  CHECK(run("query " + q(tmp / "notes.bin") + b).exit_code == 2);  // an error before
  REQUIRE(run("import " + q(tmp / "more.md5") + b + " --format md5").exit_code == 0);
  r = run("query " + q(tmp / "notes.bin") + b + " --json");
  CHECK(r.exit_code == 1);
  j = json::parse(r.out);
  CHECK(j["known_file"] == true);
  CHECK(j["pdq"].is_null());
  CHECK(j["matches"][0]["distance"].is_null());

  // A threatexchange list with a SHA-256, a PDQ hash and a URL: refused as a whole for
  // the URL, imported with --skip-unsupported, which says what it skipped.
  const std::string coffee_sha = sha256_file_hex(coffee);
  const std::string pdq(64, '7');
  std::ofstream(tmp / "signals.txt")
      << "video_sha256 " << coffee_sha << "\npdq " << pdq << "\nurl https://example.com/x\n";
  r = run("import " + q(tmp / "signals.txt") + b + " --format threatexchange");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err,
             Catch::Contains("signals.txt:3: signal type 'url' is not one hashwall matches"));
  CHECK_THAT(r.err, Catch::Contains("nothing imported"));
  r = run("import " + q(tmp / "signals.txt") + b +
          " --format threatexchange --skip-unsupported --json");
  REQUIRE(r.exit_code == 0);
  j = json::parse(r.out);
  CHECK(j["added"] == 2);
  CHECK(j["skipped"]["url"] == 1);
  CHECK(j["format"] == "threatexchange");
  r = run("query " + q(coffee) + b + " --json");
  CHECK(r.exit_code == 1);
  CHECK(json::parse(r.out)["matches"][0]["signal"] == "sha256");
  // 'hma' is still read, as the old name of the format.
  std::ofstream(tmp / "old.txt") << "pdq " << std::string(64, '8') << "\n";
  CHECK(run("import " + q(tmp / "old.txt") + b + " --format hma").exit_code == 0);

  // Exports: each format carries what it can, and says what it left out.
  r = run("export" + b + " --format md5");
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == md5_of_file(storm) + "\n" + md5_of_file(tmp / "notes.bin") + "\n");
  CHECK_THAT(r.err, Catch::Contains("left out"));
  r = run("export" + b + " --format threatexchange");
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("video_md5 " + md5_of_file(storm) + "\n"));
  CHECK_THAT(r.out, Catch::Contains("video_sha256 " + coffee_sha + "\n"));
  CHECK_THAT(r.out, Catch::Contains("pdq " + pdq + "\n"));
  r = run("export" + b + " --format hex");
  REQUIRE(r.exit_code == 0);
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 8);  // 6 photos and 2 hashes
  CHECK_THAT(r.err, Catch::Contains("3 entries left out"));
  // Exported and imported into a new bank: the same file hashes.
  std::ofstream(tmp / "out.txt") << run("export" + b + " --format threatexchange").out;
  const std::string b2 = " --bank '" + hwtest::bank_location(tmp, "second.db") + "'";
  REQUIRE(run("import " + q(tmp / "out.txt") + b2 + " --format threatexchange").exit_code == 0);
  CHECK(run("query " + q(storm) + b2).exit_code == 1);
  CHECK(run("query " + q(coffee) + b2).exit_code == 1);
  CHECK(run("check" + b).exit_code == 0);
  CHECK(run("check" + b2).exit_code == 0);
}

TEST_CASE("a video known by its file hash is a match without decoding its frames", "[cli][video]") {
  TempDir tmp;
  const auto bank = tmp / "bank.db";
  const auto gif = hwtest::source_dir() / "tests" / "data" / "video" / "anim-3.gif";
  // Garbage with a video's name: it cannot be decoded, so only its bytes can match it.
  const auto clip = tmp / "clip.mp4";
  std::ofstream(clip, std::ios::binary) << "not a real video, but a known file's bytes";
  std::ofstream(tmp / "list.txt") << "video_md5 " << md5_of_file(clip) << "\n"
                                  << "video_sha256 " << sha256_file_hex(gif) << "\n";
  auto r = hwtest::run_hashwall("import " + q(tmp / "list.txt") + " --bank " + q(bank) +
                                " --format threatexchange --label known-videos");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  r = hwtest::run_hashwall("scan " + q(clip) + " " + q(gif) + " --bank " + q(bank) + " --jsonl");
  INFO(r.out << r.err);
  CHECK(r.exit_code == 1);
  std::istringstream lines(r.out);
  std::string line;
  int known = 0;
  while (std::getline(lines, line)) {
    const json j = json::parse(line);
    CHECK(j["status"] == "match");
    CHECK(j["known_file"] == true);
    CHECK(j["video"]["frames_checked"] == 0);
    CHECK(j["pdq"].is_null());
    ++known;
  }
  CHECK(known == 2);
}
