// A bank is evidence: it must survive the process dying at any moment, a full disk, and
// two writers at once (docs/SECURITY.md, "Crash and fault safety"). These tests run the
// real binary on generated photos and look at the bank afterwards, in-process and with
// `hashwall check`.
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "bank/bank.hpp"
#include "support.hpp"

using hwtest::RunResult;
using hwtest::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// n distinct, textured 64x64 photos (distinct bytes, distinct PDQ hashes).
void make_corpus(const fs::path& dir, int n, int seed) {
  fs::create_directories(dir);
  cv::RNG rng(static_cast<std::uint64_t>(seed));
  for (int i = 0; i < n; ++i) {
    cv::Mat img(64, 64, CV_8UC3);
    rng.fill(img, cv::RNG::UNIFORM, 0, 255);
    cv::GaussianBlur(img, img, cv::Size(0, 0), 1 + i % 3);
    cv::circle(img, {rng.uniform(0, 64), rng.uniform(0, 64)}, rng.uniform(5, 30),
               cv::Scalar(rng.uniform(0, 255), rng.uniform(0, 255), rng.uniform(0, 255)), -1);
    char name[32];
    std::snprintf(name, sizeof name, "p%04d.png", i);
    REQUIRE(cv::imwrite((dir / name).string(), img));
  }
}

void remove_bank(const fs::path& bank) {
  for (const char* suffix : {"", "-wal", "-shm", ".pdq-index"}) fs::remove(bank.string() + suffix);
}

std::vector<std::string> lines_of(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line))
    if (line.size() == 64) out.push_back(line);  // a line cut by the kill is not a report
  return out;
}

pid_t spawn_index(const fs::path& corpus, const fs::path& bank, const fs::path& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    const std::string bin = hwtest::hashwall_binary().string();
    if (!std::freopen("/dev/null", "w", stderr) || !std::freopen("/dev/null", "w", stdout))
      _exit(126);
    execl(bin.c_str(), bin.c_str(), "index", corpus.c_str(), "--bank", bank.c_str(), "--batch", "4",
          "-j", "1", "-q", "--commit-log", log.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  return pid;
}

std::string bank_snapshot(const fs::path& bank) {
  const RunResult st = hwtest::run_hashwall("stats --json --bank " + q(bank));
  const RunResult ex = hwtest::run_hashwall("export --format pdq-csv --bank " + q(bank));
  REQUIRE(st.exit_code == 0);
  REQUIRE(ex.exit_code == 0);
  return std::to_string(json::parse(st.out)["entries"].get<long>()) + "\n" + ex.out;
}

// 200 imported entries with random PDQ hashes from rng, sources "s0".."s199".
std::vector<hashwall::NewEntry> imported_batch(std::mt19937_64& rng) {
  std::vector<hashwall::NewEntry> batch(200);
  for (std::size_t i = 0; i < batch.size(); ++i) {
    batch[i].pdq.emplace();
    for (auto& b : batch[i].pdq->bytes) b = static_cast<std::uint8_t>(rng());
    batch[i].source = "s" + std::to_string(i);
    batch[i].origin = hashwall::Origin::Imported;
  }
  return batch;
}

}  // namespace

TEST_CASE("a bank killed with SIGKILL at random moments of index stays whole", "[crash]") {
  TempDir tmp;
  const auto corpus = tmp / "corpus";
  constexpr int kPhotos = 120;
  make_corpus(corpus, kPhotos, 1);
  const auto bank = tmp / "bank.db", log = tmp / "commits.log";
  // The series stops at whichever budget runs out first; it always does some rounds, and
  // tools/heavy_trials.sh runs 100 rounds with no time budget.
  const long max_rounds = hwtest::budget("HASHWALL_CRASH_ROUNDS", 40);
  const double max_seconds = static_cast<double>(hwtest::budget("HASHWALL_CRASH_SECONDS", 180));
  constexpr int kMinRounds = 10;

  // How long one whole run takes here (sanitizer builds are slower): kills are spread
  // uniformly over it.
  const auto t0 = std::chrono::steady_clock::now();
  {
    const pid_t pid = spawn_index(corpus, tmp / "timing.db", tmp / "timing.log");
    int status = 0;
    waitpid(pid, &status, 0);
    REQUIRE(WIFEXITED(status));
    REQUIRE(WEXITSTATUS(status) == 0);
  }
  const auto full_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  const auto series_start = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - series_start).count();
  };

  std::mt19937 rng(20240601);
  int with_bank = 0, rounds = 0;
  std::size_t verified = 0;
  for (int round = 0; round < max_rounds && (round < kMinRounds || elapsed() < max_seconds);
       ++round) {
    ++rounds;
    // A fresh bank every 10 rounds, so that kills keep landing in the middle of work
    // rather than in re-runs that find everything already indexed.
    if (round % 10 == 0) {
      remove_bank(bank);
      fs::remove(log);
    }
    const pid_t pid = spawn_index(corpus, bank, log);
    REQUIRE(pid > 0);
    std::this_thread::sleep_for(
        std::chrono::milliseconds(std::uniform_int_distribution<long>(0, full_ms)(rng)));
    kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!fs::exists(bank)) continue;  // killed before the bank was created
    ++with_bank;
    INFO("round " << round);
    const auto b = hashwall::Bank::open(bank, hashwall::OpenMode::ReadOnly);
    const auto rep = b->check();
    std::string problems;
    for (const auto& p : rep.problems) problems += p + "\n";
    INFO(problems);
    REQUIRE(rep.ok);
    for (const auto& sha : lines_of(log)) {
      INFO("reported committed: " << sha);
      REQUIRE(b->find_sha256(sha));
      ++verified;
    }
    if (round % 10 == 9) {
      const RunResult chk = hwtest::run_hashwall("check --bank " + q(bank));
      INFO(chk.out << chk.err);
      REQUIRE(chk.exit_code == 0);
    }
  }
  WARN(with_bank << " of " << rounds << " kills left a bank to check; " << verified
                 << " committed entries verified; one run takes " << full_ms << " ms; series "
                 << static_cast<int>(elapsed()) << " s");
  // Kills fall uniformly over a whole run, and the bank exists after its first commit.
  CHECK(with_bank * 2 >= rounds);
  // The re-run completes the last bank.
  const RunResult rerun =
      hwtest::run_hashwall("index " + q(corpus) + " --bank " + q(bank) + " -q --json");
  INFO(rerun.err);
  REQUIRE(rerun.exit_code == 0);
  CHECK(json::parse(rerun.out)["bank_entries"].get<int>() == kPhotos);
  CHECK(hwtest::run_hashwall("check --bank " + q(bank)).exit_code == 0);
}

TEST_CASE("a full disk fails the batch says so and leaves the bank as it was", "[crash]") {
  TempDir tmp;
  make_corpus(tmp / "first", 10, 2);
  make_corpus(tmp / "second", 150, 3);
  const auto bank = tmp / "bank.db";
  REQUIRE(
      hwtest::run_hashwall("index " + q(tmp / "first") + " --bank " + q(bank) + " -q").exit_code ==
      0);
  const std::string before = bank_snapshot(bank);

  // ulimit -f (RLIMIT_FSIZE, 512-byte blocks in sh): no file may grow past 16 KiB, so the
  // write-ahead log of a 150-entry batch cannot be written.
  const std::string limit = "ulimit -f 32; ";
  SECTION("index") {
    const RunResult r =
        hwtest::run_shell(limit + "exec '" + hwtest::hashwall_binary().string() + "' index " +
                          q(tmp / "second") + " --bank " + q(bank) + " -q --batch 1000");
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::StartsWith("hashwall: " + bank.string() + ": "));
    CHECK_THAT(r.err,
               Catch::Contains("disk") || Catch::Contains("full") || Catch::Contains("too large"));
  }
  SECTION("import") {
    std::ofstream list(tmp / "list.hex");
    std::mt19937_64 rng(5);
    for (int i = 0; i < 3000; ++i) {
      char hex[65];
      for (int k = 0; k < 64; ++k) hex[k] = "0123456789abcdef"[rng() % 16];
      hex[64] = 0;
      list << hex << "\n";
    }
    list.close();
    const RunResult r =
        hwtest::run_shell(limit + "exec '" + hwtest::hashwall_binary().string() + "' import " +
                          q(tmp / "list.hex") + " --format hex --bank " + q(bank));
    INFO(r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::StartsWith("hashwall: " + bank.string() + ": "));
  }
  CHECK(bank_snapshot(bank) == before);
  const RunResult chk = hwtest::run_hashwall("check --bank " + q(bank));
  INFO(chk.out);
  CHECK(chk.exit_code == 0);
}

TEST_CASE("two index runs into one bank at once: no corruption nothing lost", "[crash]") {
  TempDir tmp;
  make_corpus(tmp / "a", 60, 4);
  make_corpus(tmp / "b", 60, 5);
  const auto bank = tmp / "bank.db";
  const pid_t pa = spawn_index(tmp / "a", bank, tmp / "a.log");
  const pid_t pb = spawn_index(tmp / "b", bank, tmp / "b.log");
  int sa = 0, sb = 0;
  waitpid(pa, &sa, 0);
  waitpid(pb, &sb, 0);
  REQUIRE(WIFEXITED(sa));
  REQUIRE(WIFEXITED(sb));
  // Each either finished, or gave up after the busy timeout with a clear error.
  CHECK((WEXITSTATUS(sa) == 0 || WEXITSTATUS(sa) == 2));
  CHECK((WEXITSTATUS(sb) == 0 || WEXITSTATUS(sb) == 2));
  for (const char* dir : {"a", "b"}) {
    const RunResult r =
        hwtest::run_hashwall("index " + q(tmp / dir) + " --bank " + q(bank) + " -q");
    INFO(r.err);
    CHECK(r.exit_code == 0);
  }
  CHECK(json::parse(hwtest::run_hashwall("stats --json --bank " + q(bank)).out)["entries"] == 120);
  const RunResult chk = hwtest::run_hashwall("check --bank " + q(bank));
  INFO(chk.out);
  CHECK(chk.exit_code == 0);
}

TEST_CASE("a second writer waiting on a busy bank says the bank is busy", "[crash]") {
  TempDir tmp;
  const auto bank = tmp / "bank.db";
  make_corpus(tmp / "c", 3, 6);
  REQUIRE(hwtest::run_hashwall("index " + q(tmp / "c") + " --bank " + q(bank) + " -q").exit_code ==
          0);
  const std::string before = bank_snapshot(bank);
  make_corpus(tmp / "d", 3, 7);
  // This process holds the write lock from before the writer starts until after it has
  // returned, so the writer meets a held lock however slowly either side runs (SQLite's
  // locks are per process: the writer, a child, cannot share ours).
  sqlite3* holder = nullptr;
  REQUIRE(sqlite3_open(bank.c_str(), &holder) == SQLITE_OK);
  REQUIRE(sqlite3_exec(holder, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  const RunResult r = hwtest::run_hashwall("index " + q(tmp / "d") + " --bank " + q(bank) + " -q");
  CHECK(sqlite3_exec(holder, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(holder);
  INFO(r.err);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err,
             Catch::Contains("the bank is locked by another process (still busy after 5 s)"));
  CHECK(bank_snapshot(bank) == before);
  // Once the lock is gone the same run goes through.
  CHECK(hwtest::run_hashwall("index " + q(tmp / "d") + " --bank " + q(bank) + " -q").exit_code ==
        0);
}

TEST_CASE("another bank's index cache copied over this one's is not used", "[crash]") {
  using namespace hashwall;
  TempDir tmp;
  // Two banks built alike (same count, same generation), different hashes.
  const auto make = [&](const fs::path& path, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    auto batch = imported_batch(rng);
    auto bank = Bank::open(path, OpenMode::Create);
    bank->add(batch);
    bank->flush_index();
    return batch;
  };
  const auto a = tmp / "a.db", b = tmp / "b.db";
  make(a, 1);
  const auto b_entries = make(b, 2);
  REQUIRE(Bank::open(a, OpenMode::ReadOnly)->stats().generation ==
          Bank::open(b, OpenMode::ReadOnly)->stats().generation);
  REQUIRE(Bank::open(b, OpenMode::ReadOnly)->index_cache_refused().empty());
  fs::copy_file(pdq_index_path(a), pdq_index_path(b), fs::copy_options::overwrite_existing);

  const auto bank = Bank::open(b, OpenMode::ReadOnly);
  CHECK_THAT(bank->index_cache_refused(),
             Catch::Contains("disagrees with the records") && Catch::Contains("it was not used"));
  // The answers come from the records: b's own entries are found under their hashes.
  const auto found = bank->search_pdq(std::span(&*b_entries[150].pdq, 1), 0);
  REQUIRE(found.size() == 1);
  CHECK(bank->get(found[0].id)->source == "s150");
  CHECK_FALSE(bank->check().ok);  // the cache file itself is named by check
  // query says so on stderr, and still answers (from the rebuilt index).
  const auto r = hwtest::run_hashwall(
      "query '" +
      (hwtest::source_dir() / "samples" / "uploads" / "unrelated--mate_Storm.jpg").string() +
      "' --bank '" + b.string() + "'");
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.err, Catch::Contains("warning: the index cache") &&
                        Catch::Contains("disagrees with the records"));
}

TEST_CASE("check finds an index cache that disagrees with the records in one entry", "[crash]") {
  using namespace hashwall;
  TempDir tmp;
  const auto path = tmp / "bank.db";
  std::mt19937_64 rng(9);
  std::vector<std::pair<std::int64_t, Hash256>> rows;
  std::uint64_t generation = 0;
  {
    const auto batch = imported_batch(rng);
    auto bank = Bank::open(path, OpenMode::Create);
    const auto ids = bank->add(batch).ids;
    for (std::size_t i = 0; i < ids.size(); ++i) rows.emplace_back(ids[i], *batch[i].pdq);
    generation = bank->stats().generation;
  }
  REQUIRE(Bank::open(path, OpenMode::ReadOnly)->check().ok);
  // A cache with the bank's generation and size, where one entry that a sample of
  // searches would not visit carries another hash (a flipped-bit cache, or a tampered one).
  SECTION("a wrong hash") { rows[101].second.bytes[0] ^= 0xFF; }
  SECTION("a wrong id") { rows[101].first = rows.back().first + 1; }
  auto index = make_pdq_index("flat");
  std::vector<std::int64_t> ids;
  std::vector<Hash256> hashes;
  for (const auto& [id, h] : rows) {
    ids.push_back(id);
    hashes.push_back(h);
  }
  index->add(ids, hashes);
  index->save(pdq_index_path(path), generation);
  const auto rep = Bank::open(path, OpenMode::ReadOnly)->check();
  std::string problems;
  for (const auto& p : rep.problems) problems += p + "\n";
  INFO(problems);
  CHECK_FALSE(rep.ok);
  CHECK_THAT(problems, Catch::Contains("disagrees with the records"));
}
