// End to end: the real binary on real files in a temporary directory.
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <thread>

#include "support.hpp"

using hwtest::run_hashwall;
using hwtest::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

std::vector<fs::path> photos_in(const fs::path& dir, const std::string& prefix = "") {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<json> jsonl(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(json::parse(line));
  return out;
}

void write_text(const fs::path& p, const std::string& s) {
  std::ofstream(p, std::ios::binary) << s;
}

void truncate_copy(const fs::path& from, const fs::path& to, std::size_t keep) {
  std::ifstream in(from, std::ios::binary);
  std::string data(keep, '\0');
  in.read(data.data(), static_cast<std::streamsize>(keep));
  write_text(to, data.substr(0, static_cast<std::size_t>(in.gcount())));
}

}  // namespace

TEST_CASE("every command answers --help with examples and exit codes", "[cli]") {
  auto top = run_hashwall("--help");
  CHECK(top.exit_code == 0);
  CHECK(top.out.find("Exit codes") != std::string::npos);
  for (const std::string cmd :
       {"hash", "index", "query", "scan", "import", "export", "stats", "remove", "reindex", "check",
        "init", "serve", "bench", "bench robustness", "bench speed", "list", "disable", "enable",
        "log"}) {
    INFO(cmd);
    auto r = run_hashwall(cmd + " --help");
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("Example") != std::string::npos);
    CHECK(r.out.find("Exit codes") != std::string::npos);
  }
  CHECK(run_hashwall("frobnicate").exit_code == 2);
  CHECK(run_hashwall("query").exit_code == 2);
}

TEST_CASE("the samples: edited uploads match their originals unrelated photos do not",
          "[cli][stores]") {
  const auto samples = hwtest::source_dir() / "samples";
  REQUIRE(fs::is_directory(samples / "bank"));
  TempDir tmp;
  const fs::path bank = hwtest::bank_location(tmp);
  auto idx = run_hashwall("index " + q(samples / "bank") + " --bank " + q(bank) +
                          " --label samples --json");
  INFO(idx.err);
  REQUIRE(idx.exit_code == 0);
  const auto summary = json::parse(idx.out);
  CHECK(summary["added"].get<int>() == static_cast<int>(photos_in(samples / "bank").size()));

  auto scan = run_hashwall("scan " + q(samples / "uploads") + " --bank " + q(bank) + " --jsonl");
  INFO(scan.out << scan.err);
  CHECK(scan.exit_code == 1);
  int matched = 0, unrelated_clean = 0, errors = 0;
  for (const auto& rec : jsonl(scan.out)) {
    const std::string file = fs::path(rec["file"].get<std::string>()).filename().string();
    INFO(file);
    if (file.rfind("unrelated", 0) == 0) {
      CHECK_FALSE(rec["match"].get<bool>());
      ++unrelated_clean;
    } else if (file.rfind("broken", 0) == 0) {
      CHECK(rec["status"] == "error");
      CHECK(rec["error"].get<std::string>().find(file) != std::string::npos);
      ++errors;
    } else if (file.find("--caption") != std::string::npos) {
      // A caption bar moves PDQ's whole frame: PDQ misses it, the local features and the
      // embedding (both on by default) find the photo under the bar.
      REQUIRE(rec["match"].get<bool>());
      CHECK(rec["matches"][0]["signal"] != "pdq");
      CHECK(rec["matches"][0]["inliers"].get<int>() >= rec["local_min_inliers"].get<int>());
      CHECK(rec["matches"][0]["similarity"].get<double>() >= rec["embed_threshold"].get<double>());
      ++matched;
    } else {
      REQUIRE(rec["match"].get<bool>());
      // The matching entry is the photo the upload was edited from.
      const std::string original = file.substr(0, file.find("--"));
      const std::string source =
          fs::path(rec["matches"][0]["source"].get<std::string>()).filename().string();
      CHECK(source.rfind(original, 0) == 0);
      ++matched;
    }
  }
  CHECK(matched >= 5);
  CHECK(unrelated_clean >= 2);
  CHECK(errors == 1);
}

TEST_CASE("100 indexed photos: edited copies match 100 unrelated photos do not", "[cli][shared]") {
  HW_REQUIRE_SHARED(shared);
  const auto all = photos_in(shared / "photos" / "bsds500");
  REQUIRE(all.size() >= 200);
  TempDir tmp;
  const auto known = tmp / "known", unrelated = tmp / "unrelated", edits = tmp / "edits";
  fs::create_directories(known);
  fs::create_directories(unrelated);
  fs::create_directories(edits);
  for (int i = 0; i < 100; ++i) fs::copy_file(all[2 * i], known / all[2 * i].filename());
  for (int i = 0; i < 100; ++i)
    fs::copy_file(all[2 * i + 1], unrelated / all[2 * i + 1].filename());
  // Edited copies of every 10th known photo: re-encoded, resized, flipped, rotated.
  for (int i = 0; i < 100; i += 10) {
    const cv::Mat img = cv::imread(all[2 * i].string());
    const std::string stem = all[2 * i].stem().string();
    cv::imwrite((edits / (stem + "--q40.jpg")).string(), img, {cv::IMWRITE_JPEG_QUALITY, 40});
    cv::Mat half, flipped, rotated;
    cv::resize(img, half, cv::Size(), 0.5, 0.5, cv::INTER_AREA);
    cv::imwrite((edits / (stem + "--half.png")).string(), half);
    cv::flip(img, flipped, 1);
    cv::imwrite((edits / (stem + "--flip.jpg")).string(), flipped);
    cv::rotate(img, rotated, cv::ROTATE_90_CLOCKWISE);
    cv::imwrite((edits / (stem + "--rot90.jpg")).string(), rotated);
  }
  const auto bank = tmp / "bank.db";
  auto idx = run_hashwall("index " + q(known) + " --bank " + q(bank) + " -q");
  INFO(idx.err);
  REQUIRE(idx.exit_code == 0);
  CHECK(idx.err.find("100 added") != std::string::npos);

  auto scan = run_hashwall("scan " + q(edits) + " --bank " + q(bank) + " --jsonl");
  CHECK(scan.exit_code == 1);
  const auto recs = jsonl(scan.out);
  REQUIRE(recs.size() == 40);
  for (const auto& rec : recs) {
    const std::string file = fs::path(rec["file"].get<std::string>()).filename().string();
    INFO(file);
    REQUIRE(rec["match"].get<bool>());
    const std::string stem = file.substr(0, file.find("--"));
    CHECK(fs::path(rec["matches"][0]["source"].get<std::string>()).stem().string() == stem);
    if (file.find("--flip") != std::string::npos) CHECK(rec["matches"][0]["variant"] != "original");
    if (file.find("--rot90") != std::string::npos)
      CHECK(rec["matches"][0]["variant"] != "original");
  }

  auto clean = run_hashwall("scan " + q(unrelated) + " --bank " + q(bank) + " --jsonl");
  CHECK(clean.exit_code == 0);
  const auto clean_recs = jsonl(clean.out);
  CHECK(clean_recs.size() == 100);
  for (const auto& rec : clean_recs) CHECK_FALSE(rec["match"].get<bool>());

  // An exact copy is reported as such.
  auto exact =
      run_hashwall("query " + q(known / all[0].filename()) + " --bank " + q(bank) + " --json");
  CHECK(exact.exit_code == 1);
  CHECK(json::parse(exact.out)["matches"][0]["exact"].get<bool>());
}

TEST_CASE("a truncated JPEG and a text file named .jpg are reported and skipped", "[cli]") {
  const auto samples = hwtest::source_dir() / "samples" / "bank";
  const auto good = photos_in(samples);
  REQUIRE(good.size() >= 2);
  TempDir tmp;
  const auto dir = tmp / "in";
  fs::create_directories(dir);
  fs::copy_file(good[0], dir / "good.jpg");
  truncate_copy(good[1], dir / "truncated.jpg", fs::file_size(good[1]) / 2);
  write_text(dir / "notes.jpg", "this is a text file, not a photo\n");
  write_text(dir / "empty.png", "");
  const auto bank = tmp / "bank.db";
  auto idx = run_hashwall("index " + q(dir) + " --bank " + q(bank) + " -q");
  INFO(idx.err);
  CHECK(idx.exit_code == 3);
  CHECK(idx.err.find("truncated.jpg: truncated JPEG") != std::string::npos);
  CHECK(idx.err.find("notes.jpg: not an image") != std::string::npos);
  CHECK(idx.err.find("empty.png: empty file") != std::string::npos);
  CHECK(idx.err.find("1 added") != std::string::npos);

  auto qt = run_hashwall("query " + q(dir / "truncated.jpg") + " --bank " + q(bank));
  CHECK(qt.exit_code == 2);
  CHECK(qt.err.find("truncated.jpg") != std::string::npos);
  auto qn = run_hashwall("query " + q(dir / "notes.jpg") + " --bank " + q(bank) + " --json");
  CHECK(qn.exit_code == 2);
  CHECK(json::parse(qn.out)["status"] == "error");
  auto qm = run_hashwall("query " + q(dir / "missing.jpg") + " --bank " + q(bank));
  CHECK(qm.exit_code == 2);
  auto nobank = run_hashwall("query " + q(dir / "good.jpg") + " --bank " + q(tmp / "nobank.db"));
  CHECK(nobank.exit_code == 2);
  CHECK(nobank.err.find("no bank") != std::string::npos);
  CHECK_FALSE(fs::exists(tmp / "nobank.db"));
}

TEST_CASE("hash lists round-trip through export and import and a bad list imports nothing",
          "[cli][stores]") {
  const auto samples = hwtest::source_dir() / "samples" / "bank";
  TempDir tmp;
  const fs::path bank = hwtest::bank_location(tmp, "a.db"),
                 bank2 = hwtest::bank_location(tmp, "b.db");
  REQUIRE(run_hashwall("index " + q(samples) + " --bank " + q(bank) + " -q").exit_code == 0);
  for (const std::string fmt : {"pdq-csv", "hma", "hex"}) {
    INFO(fmt);
    const auto list = tmp / ("list." + fmt);
    REQUIRE(run_hashwall("export --bank " + q(bank) + " --format " + fmt + " -o " + q(list))
                .exit_code == 0);
    const fs::path b = hwtest::bank_location(tmp, "from-" + fmt + ".db");
    auto imp =
        run_hashwall("import " + q(list) + " --bank " + q(b) + " --format " + fmt + " --json");
    INFO(imp.err);
    REQUIRE(imp.exit_code == 0);
    CHECK(json::parse(imp.out)["added"].get<int>() == static_cast<int>(photos_in(samples).size()));
    // The imported bank finds the photos by hash.
    auto qr = run_hashwall("query " + q(photos_in(samples)[0]) + " --bank " + q(b) + " --json");
    CHECK(qr.exit_code == 1);
    CHECK(json::parse(qr.out)["matches"][0]["distance"].get<int>() <= 2);
  }
  // One bad line among good ones: nothing imported, line named.
  const auto bad = tmp / "bad.txt";
  write_text(bad, "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22\nnot-a-hash\n");
  auto r = run_hashwall("import " + q(bad) + " --bank " + q(bank2) + " --format hex");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("bad.txt:2:") != std::string::npos);
  const auto none = run_hashwall("stats --bank " + q(bank2));
  CHECK(none.exit_code == 2);
  CHECK_THAT(none.err, Catch::Contains("no bank here"));
}

TEST_CASE("remove by label makes entries unmatchable and stats and check report the bank",
          "[cli][stores]") {
  const auto samples = hwtest::source_dir() / "samples" / "bank";
  const auto photo = photos_in(samples)[0];
  TempDir tmp;
  const fs::path bank = hwtest::bank_location(tmp, "a.db");
  REQUIRE(
      run_hashwall("index " + q(samples) + " --bank " + q(bank) + " --label one -q").exit_code ==
      0);
  auto st = run_hashwall("stats --bank " + q(bank) + " --json");
  REQUIRE(st.exit_code == 0);
  CHECK(json::parse(st.out)["entries"].get<int>() == static_cast<int>(photos_in(samples).size()));
  CHECK(run_hashwall("check --bank " + q(bank)).exit_code == 0);
  CHECK(run_hashwall("query " + q(photo) + " --bank " + q(bank)).exit_code == 1);
  REQUIRE(run_hashwall("remove --bank " + q(bank) + " --label one").exit_code == 0);
  CHECK(run_hashwall("query " + q(photo) + " --bank " + q(bank)).exit_code == 0);
  CHECK(
      json::parse(run_hashwall("stats --bank " + q(bank) + " --json").out)["entries"].get<int>() ==
      0);
}

TEST_CASE("query --near-misses lists entries past the threshold without matching them", "[cli]") {
  const auto samples = hwtest::source_dir() / "samples";
  // The flipped upload is 14-16 bits from its original: a match at 31, a near miss at 10.
  const auto photo = samples / "uploads" / "mate_LadyBird--flipped.jpg";
  TempDir tmp;
  const auto bank = tmp / "a.db";
  REQUIRE(run_hashwall("index " + q(samples / "bank") + " --bank " + q(bank) + " --signals pdq -q")
              .exit_code == 0);
  const std::string base = "query " + q(photo) + " --bank " + q(bank) + " --threshold 10";
  auto plain = run_hashwall(base + " --json");
  REQUIRE(plain.exit_code == 0);
  CHECK(json::parse(plain.out)["matches"].empty());
  auto near = run_hashwall(base + " --near-misses --json");
  CHECK(near.exit_code == 0);  // a near miss never makes a match
  const auto j = json::parse(near.out);
  CHECK(j["status"] == "no-match");
  REQUIRE(j["matches"].size() == 1);
  CHECK(j["matches"][0]["near_miss"] == true);
  CHECK(j["matches"][0]["score"].get<double>() < 0);
  CHECK(j["matches"][0]["distance"].get<int>() > 10);
  CHECK(j["matches"][0]["distance"].get<int>() <= 20);
  const auto text = run_hashwall(base + " --near-misses");
  CHECK(text.exit_code == 0);
  CHECK(text.out.find("near miss -> ") != std::string::npos);
  CHECK(text.out.find("not a match") != std::string::npos);
  // At the bank's threshold the same entry is a plain match.
  const auto at31 =
      run_hashwall("query " + q(photo) + " --bank " + q(bank) + " --near-misses --json");
  CHECK(at31.exit_code == 1);
  CHECK_FALSE(json::parse(at31.out)["matches"][0].contains("near_miss"));
}

TEST_CASE("reindex changes the index type a bank records and what it finds stays the same",
          "[cli][stores]") {
  const auto samples = hwtest::source_dir() / "samples" / "bank";
  // A 40 % resize: found through the PDQ index (22 bits away), not by its SHA-256.
  const auto photo = hwtest::source_dir() / "samples" / "uploads" /
                     "lomiri_Bridge_by_Sander_Klootwijk--resized40.jpg";
  TempDir tmp;
  const fs::path bank = hwtest::bank_location(tmp, "a.db");
  REQUIRE(
      run_hashwall("index " + q(samples) + " --bank " + q(bank) + " --signals pdq -q").exit_code ==
      0);
  const auto before = run_hashwall("query " + q(photo) + " --bank " + q(bank) + " --json");
  REQUIRE(before.exit_code == 1);
  REQUIRE(json::parse(before.out)["matches"].at(0)["signal"] == "pdq");
  auto r = run_hashwall("reindex --bank " + q(bank) + " --index compact --json");
  REQUIRE(r.exit_code == 0);
  const auto j = json::parse(r.out);
  CHECK(j["index_type"] == "compact");
  CHECK(j["previous_index_config"] == "auto");
  CHECK(j["entries"].get<int>() == static_cast<int>(photos_in(samples).size()));
  // Recorded in the bank: a later open uses it.
  const auto st = json::parse(run_hashwall("stats --bank " + q(bank) + " --json").out);
  CHECK(st["index_type"] == "compact");
  CHECK(st["index_config"] == "compact");
  const auto after = run_hashwall("query " + q(photo) + " --bank " + q(bank) + " --json");
  CHECK(after.exit_code == 1);
  CHECK(json::parse(after.out)["matches"] == json::parse(before.out)["matches"]);
  CHECK(run_hashwall("check --bank " + q(bank)).exit_code == 0);
  // Back to auto with a threshold of 0 entries: multihash.
  r = run_hashwall("reindex --bank " + q(bank) + " --index auto --multihash-from 0 --json");
  REQUIRE(r.exit_code == 0);
  CHECK(json::parse(r.out)["index_type"] == "multihash");
  // Bad usage and a missing bank are errors, and change nothing.
  CHECK(run_hashwall("reindex --bank " + q(bank) + " --index hnsw").exit_code == 2);
  const fs::path missing = hwtest::bank_location(tmp, "missing.db");
  CHECK(run_hashwall("reindex --bank " + q(missing) + " --index flat").exit_code == 2);
  CHECK(run_hashwall("stats --bank " + q(missing)).exit_code == 2);
  CHECK(json::parse(run_hashwall("stats --bank " + q(bank) + " --json").out)["index_type"] ==
        "multihash");
}

TEST_CASE("a bank survives kill -9 during index and the rerun completes it", "[cli][shared]") {
  HW_REQUIRE_SHARED(shared);
  const auto all = photos_in(shared / "photos" / "bsds500");
  TempDir tmp;
  const auto corpus = tmp / "corpus";
  fs::create_directories(corpus);
  for (std::size_t i = 0; i < 300 && i < all.size(); ++i)
    fs::create_symlink(all[i], corpus / all[i].filename());
  const auto bank = tmp / "bank.db";
  for (int round = 0; round < 3; ++round) {
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const std::string bin = hwtest::hashwall_binary().string();
      freopen("/dev/null", "w", stderr);
      execl(bin.c_str(), bin.c_str(), "index", corpus.c_str(), "--bank", bank.c_str(), "--batch",
            "7", "-j", "1", "-q", static_cast<char*>(nullptr));
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250 + 200 * round));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!fs::exists(bank)) continue;  // killed before the first commit: nothing to check yet
    auto chk = run_hashwall("check --bank " + q(bank));
    INFO(chk.out << chk.err);
    CHECK(chk.exit_code == 0);
  }
  auto rerun = run_hashwall("index " + q(corpus) + " --bank " + q(bank) + " -q --json");
  INFO(rerun.err);
  REQUIRE(rerun.exit_code == 0);
  auto st = json::parse(run_hashwall("stats --bank " + q(bank) + " --json").out);
  CHECK(st["entries"].get<int>() == 300);
  CHECK(run_hashwall("check --bank " + q(bank)).exit_code == 0);
}

TEST_CASE("hash prints Meta's format and matches the reference on the vectors", "[cli][shared]") {
  HW_REQUIRE_SHARED(shared);
  const auto dir = shared / "pdq-vectors";
  auto r = run_hashwall("hash " + q(dir / "images" / "aaa-orig.jpg") + " " +
                        q(dir / "images" / "wee.jpg"));
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22,100,") == 0);
  CHECK(r.out.find("6227401f601ff4ccafcc9fad4b0d95d371a2eb7265a3285234d228ca94deeb2d,100,") !=
        std::string::npos);
  auto d = run_hashwall("hash --dihedral " + q(dir / "images" / "aaa-orig.jpg"));
  std::ifstream in(dir / "expected-dihedral.csv");
  std::string expected;
  std::getline(in, expected);
  CHECK(d.out.substr(0, 64 * 8 + 8 + 4) == expected.substr(0, 64 * 8 + 8 + 4));
}

namespace {

// Every hit's evidence from `query --json --near-misses` of each upload, keyed by
// "upload|entry source".
std::map<std::string, json> evidence(const fs::path& bank, const std::string& signals_flag) {
  std::map<std::string, json> out;
  for (const auto& upload : photos_in(hwtest::source_dir() / "samples" / "uploads")) {
    if (upload.filename().string().rfind("broken", 0) == 0) continue;
    const auto r = run_hashwall("query " + q(upload) + " --bank " + q(bank) +
                                " --json --near-misses --top 50 " + signals_flag);
    INFO(upload << ": " << r.err);
    REQUIRE((r.exit_code == 0 || r.exit_code == 1));
    const json doc = json::parse(r.out);
    for (const auto& h : doc["matches"])
      out[upload.filename().string() + "|" +
          fs::path(h["source"].get<std::string>()).filename().string()] = h;
  }
  return out;
}

bool matched_by(const json& hit, const char* signal) {
  const auto& m = hit["signals_matched"];
  return std::find(m.begin(), m.end(), signal) != m.end();
}

}  // namespace

TEST_CASE(
    "each signal's evidence is the same whichever other signals the bank or the query enables",
    "[cli][slow]") {
  TempDir tmp;
  // Banks built with each set of signals, queried with all they hold; then the full bank
  // queried with each subset.
  struct Run {
    std::string name;
    bool local, embed;
    std::map<std::string, json> hits;
  };
  std::vector<Run> runs;
  for (const std::string set : {"pdq,local,embed", "pdq,local", "pdq,embed", "pdq"}) {
    const auto bank = tmp / (set + ".db");
    const auto r = run_hashwall("index " + q(hwtest::source_dir() / "samples" / "bank") +
                                " --bank " + q(bank) + " --signals " + set + " -q");
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    runs.push_back({"bank " + set, set.find("local") != std::string::npos,
                    set.find("embed") != std::string::npos, evidence(bank, "")});
    if (set != "pdq,local,embed")
      runs.push_back({"query " + set, runs.back().local, runs.back().embed,
                      evidence(tmp / "pdq,local,embed.db", "--signals " + set)});
  }
  std::size_t compared = 0, local_matches = 0, embed_seen = 0;
  for (const auto& a : runs)
    for (const auto& b : runs) {
      for (const auto& [key, ha] : a.hits) {
        INFO(a.name << " vs " << b.name << ": " << key);
        const auto it = b.hits.find(key);
        // A signal both runs use finds the same entries.
        if (a.local && b.local && matched_by(ha, "local")) CHECK(it != b.hits.end());
        if (a.embed && b.embed && matched_by(ha, "embed")) CHECK(it != b.hits.end());
        if (matched_by(ha, "pdq")) CHECK(it != b.hits.end());
        if (it == b.hits.end()) continue;
        const json& hb = it->second;
        ++compared;
        CHECK(ha["distance"] == hb["distance"]);
        CHECK(ha["variant"] == hb["variant"]);
        CHECK(ha["entry_pdq"] == hb["entry_pdq"]);
        CHECK(ha["entry_quality"] == hb["entry_quality"]);
        if (a.local && b.local && !ha["inliers"].is_null() && !hb["inliers"].is_null()) {
          CHECK(ha["inliers"] == hb["inliers"]);
          CHECK(ha["region"] == hb["region"]);
          local_matches += matched_by(ha, "local");
        }
        if (a.embed && b.embed && !ha["similarity"].is_null() && !hb["similarity"].is_null()) {
          CHECK(ha["similarity"] == hb["similarity"]);
          ++embed_seen;
        }
      }
    }
  // The comparison had something to compare: every signal's evidence appeared.
  CHECK(compared > 100);
  CHECK(local_matches > 0);
  CHECK(embed_seen > 0);
}

TEST_CASE(
    "a format-2 bank from the last release answers as it did before and after it is opened for "
    "writing",
    "[cli]") {
  TempDir tmp;
  const auto fixture = hwtest::source_dir() / "tests" / "data" / "bank-v2";
  const auto bank = tmp / "bank.db";
  fs::copy_file(fixture / "bank.db", bank);  // never opened in place (tests/data/bank-v2/README.md)
  std::ifstream in(fixture / "answers.json");
  const json recorded = json::parse(in);

  const auto answers = [&] {
    json out = json::object();
    for (const auto& [name, _] : recorded.items()) {
      const auto r =
          run_hashwall("query " + q(hwtest::source_dir() / "samples" / "uploads" / name) +
                       " --bank " + q(bank) + " --json --near-misses --top 50");
      INFO(name << ": " << r.err);
      REQUIRE((r.exit_code == 0 || r.exit_code == 1));
      out[name] = json::parse(r.out);
    }
    return out;
  };
  const auto format_version = [&] {
    const auto r = run_hashwall("stats --json --bank " + q(bank));
    REQUIRE(r.exit_code == 0);
    return json::parse(r.out)["format_version"].get<int>();
  };

  REQUIRE(format_version() == 2);
  CHECK(run_hashwall("check --bank " + q(bank)).exit_code == 0);
  const json before = answers();
  // What the release answered: the same entries, by the same signals, at the same PDQ
  // distance. Inliers and similarity may differ by a hair on another CPU (OpenCV's SIMD
  // paths), so they get a tolerance here; before and after below must be identical.
  for (const auto& [name, want] : recorded.items()) {
    INFO(name);
    const json& got = before[name];
    CHECK(got["status"] == want["status"]);
    REQUIRE(got["matches"].size() == want["matches"].size());
    for (std::size_t i = 0; i < want["matches"].size(); ++i) {
      const json &g = got["matches"][i], &w = want["matches"][i];
      CHECK(g["id"] == w["id"]);
      CHECK(fs::path(g["source"].get<std::string>()).filename() == w["source"].get<std::string>());
      CHECK(g["distance"] == w["distance"]);
      CHECK(g["variant"] == w["variant"]);
      CHECK(g["signals_matched"] == w["signals_matched"]);
      CHECK(g.value("near_miss", false) == w["near_miss"].get<bool>());
      CHECK(g["inliers"].is_null() == w["inliers"].is_null());
      if (!w["inliers"].is_null())
        CHECK(std::abs(g["inliers"].get<int>() - w["inliers"].get<int>()) <= 3);
      CHECK(g["similarity"].is_null() == w["similarity"].is_null());
      if (!w["similarity"].is_null())
        CHECK(g["similarity"].get<double>() == Approx(w["similarity"].get<double>()).margin(1e-3));
    }
  }

  // A read-write open: where a newer format upgrades the bank in place.
  const auto rw = run_hashwall("reindex --bank " + q(bank) + " --index auto");
  INFO(rw.err);
  REQUIRE(rw.exit_code == 0);
  CHECK(format_version() == 6);  // upgraded in place to the current format
  CHECK(run_hashwall("check --bank " + q(bank)).exit_code == 0);
  const json after = answers();
  for (const auto& [name, b] : before.items()) {
    INFO(name);
    CHECK(after[name]["matches"] == b["matches"]);
    CHECK(after[name]["status"] == b["status"]);
  }
}

TEST_CASE("scan --csv and export neutralise names a spreadsheet would run as formulas", "[cli]") {
  // Security review finding 6: labels and names starting with = + - @ went out as they are.
  TempDir tmp;
  const auto bank = tmp / "bank.db";
  const std::string formula = "=HYPERLINK(\"http://x\",\"y\")";
  auto r = run_hashwall("index " + q(hwtest::source_dir() / "samples" / "bank" / "mate_Aqua.jpg") +
                        " --bank " + q(bank) + " --signals pdq --label '" + formula + "' -q");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  r = run_hashwall("scan " +
                   q(hwtest::source_dir() / "samples" / "uploads" / "mate_Aqua--jpeg30.jpg") +
                   " --bank " + q(bank) + " --csv");
  INFO(r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.out.find(",\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",") != std::string::npos);
  CHECK(r.out.find(",=HYPERLINK") == std::string::npos);
  CHECK(r.out.find(",\"=HYPERLINK") == std::string::npos);
}

TEST_CASE("check finds edited thresholds and deleted signal rows that would change answers",
          "[cli]") {
  // Security review finding 5: thresholds set to 0 or 256 in meta, and deleted embedding or
  // feature rows, passed check while answers changed.
  TempDir tmp;
  const auto bank = tmp / "bank.db";
  auto r = run_hashwall("index " + q(hwtest::source_dir() / "samples" / "bank") + " --bank " +
                        q(bank) + " -q");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(run_hashwall("check --bank " + q(bank)).exit_code == 0);
  const auto sql = [&](const std::string& s) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(bank.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, s.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  };
  sql("DELETE FROM embeddings WHERE entry_id = 2; DELETE FROM local_features WHERE entry_id = 3");
  r = run_hashwall("check --bank " + q(bank));
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.out + r.err,
             Catch::Contains("entry 2 was indexed from an image but has no embed row") &&
                 Catch::Contains("entry 3 was indexed from an image but has no local row"));
  sql("UPDATE meta SET value = '256' WHERE key = 'pdq_threshold'");
  r = run_hashwall("check --bank " + q(bank));
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.out + r.err, Catch::Contains("differ from those it was created with"));
}

TEST_CASE("a bank sealed with --seal-key is written and verified only with its key", "[cli]") {
  TempDir tmp;
  const auto bank = tmp / "shared.db";
  const auto key = tmp / "bank.key", other = tmp / "other.key", open_key = tmp / "open.key";
  const auto write = [](const fs::path& p, const std::string& text, fs::perms mode) {
    std::ofstream(p) << text << "\n";
    fs::permissions(p, mode);
  };
  write(key, "Wq3vL9xT2mK8pR5nZ7cY1bH4jF6dS0aG", fs::perms::owner_read | fs::perms::owner_write);
  write(other, "Pz8kN3wQ6tB1mV9xC4rL7yH2jD5fG0sA", fs::perms::owner_read | fs::perms::owner_write);
  write(open_key, "Wq3vL9xT2mK8pR5nZ7cY1bH4jF6dS0aG",
        fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
  const auto list = tmp / "list.txt";
  std::ofstream(list) << std::string(64, 'a') << "\n" << std::string(64, 'b') << "\n";

  // A key others can read guards nothing: refused, and no bank is made.
  auto r = run_hashwall("init --bank " + q(bank) + " --seal-key " + q(open_key));
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("chmod 600"));
  CHECK_FALSE(fs::exists(bank));

  r = run_hashwall("init --bank " + q(bank) + " --signals pdq --seal-key " + q(key));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  r = run_hashwall("import " + q(list) + " --bank " + q(bank) + " -f hex");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("sealed with a key"));
  r = run_hashwall("import " + q(list) + " --bank " + q(bank) + " -f hex --seal-key " + q(other));
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("not the bank's"));
  r = run_hashwall("import " + q(list) + " --bank " + q(bank) + " -f hex --seal-key " + q(key));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);

  r = run_hashwall("check --json --bank " + q(bank) + " --seal-key " + q(key));
  INFO(r.out);
  REQUIRE(r.exit_code == 0);
  const json j = json::parse(r.out);
  CHECK(j["ok"] == true);
  CHECK(j["seal_key_id"].get<std::string>().size() == 16);
  // Without the key check says what it could not verify; with another it fails.
  r = run_hashwall("check --bank " + q(bank));
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("note: the bank is sealed with a key"));
  r = run_hashwall("check --bank " + q(bank) + " --seal-key " + q(other));
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.out, Catch::Contains("not the bank's"));

  // A label edited behind the bank's back: its checksum no longer matches.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(bank.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "UPDATE entries SET label = 'someone else' WHERE id = 1", nullptr,
                       nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  r = run_hashwall("check --bank " + q(bank) + " --seal-key " + q(key));
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.out, Catch::Contains("entry 1:") && Catch::Contains("differs from the checksum"));
  // Serving it writable needs the key; read-only it needs none.
  r = run_hashwall("serve --bank " + q(bank) + " --no-auth --listen 127.0.0.1:0");
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("serving it writable needs --seal-key"));
}
