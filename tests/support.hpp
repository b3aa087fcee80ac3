// Helpers shared by the test files: where the data lives, temporary folders, and
// running the real binary for end-to-end tests.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>

#include "hash/hash256.hpp"

namespace hwtest {

// A uniformly random 256-bit hash (PDQ-sized), from a seeded generator.
hashwall::Hash256 random_hash(std::mt19937_64& rng);

[[noreturn]] void hw_skip_exit(const char* why);

namespace fs = std::filesystem;

// The project checkout (for samples/).
fs::path source_dir();
// ../shared next to the checkout, or nullopt when it is absent (a user's clone).
std::optional<fs::path> shared_dir();
// HASHWALL_PHOTOS, else ../shared/photos, else nullopt.
std::optional<fs::path> photos_dir();
// The built CLI binary.
fs::path hashwall_binary();

// A fresh folder under the system temp dir, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// The store the [stores] tests run against: SQLite, or PostgreSQL when CTest runs them as
// "pg: ..." (HASHWALL_TEST_STORE=postgresql, with the scratch server the "postgresql"
// fixture started: tools/pg_test_fixture.sh). Without a server those skip visibly.
bool testing_postgresql();
// Where a test's bank lives: `dir / name` for SQLite; for PostgreSQL a fresh schema on the
// scratch server ("postgresql://...?options=-csearch_path%3Dt_..."), one per call.
std::string bank_location(const TempDir& dir, const std::string& name = "bank.db");
// Runs SQL on a bank's records behind the bank's back (sqlite3 or libpq), for tests of what
// check and open find; throws std::runtime_error when it fails.
void raw_sql(const std::string& location, const std::string& sql);

// Whether `ok` holds within `seconds`, asked every few milliseconds. For what another
// connection wrote: a PostgreSQL bank learns of it by NOTIFY, which reaches it a moment
// after the writer's commit (at most a second later, docs/BANK_FORMAT.md); SQLite at once.
bool eventually(const std::function<bool()>& ok, double seconds = 5);

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs `hashwall ARGS` through /bin/sh (ARGS is pasted into the command line as given).
RunResult run_hashwall(const std::string& args);
RunResult run_shell(const std::string& command);

// A heavy trial's budget (rounds, seconds): the environment variable `name` when it holds
// a positive number, else `fallback`. Defaults keep each CTest test well under its
// timeout under ASan on two busy cores; tools/heavy_trials.sh runs the full series.
long budget(const char* name, long fallback);

}  // namespace hwtest

// Skips the current test visibly when ../shared is absent. Under CTest (which runs one
// test per process and sets HASHWALL_SKIP_EXIT) the process exits with 77, which CTest
// reports as "Skipped"; run directly, the test warns and returns.
#define HW_REQUIRE_SHARED(var)                                                        \
  auto var##_opt = ::hwtest::shared_dir();                                            \
  if (!var##_opt) {                                                                   \
    if (std::getenv("HASHWALL_SKIP_EXIT")) ::hwtest::hw_skip_exit("needs ../shared"); \
    WARN("SKIPPED: needs ../shared (or HASHWALL_PHOTOS); not present here");          \
    return;                                                                           \
  }                                                                                   \
  const auto& var = *var##_opt
