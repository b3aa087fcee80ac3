#include "support.hpp"

#include <libpq-fe.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace hwtest {

hashwall::Hash256 random_hash(std::mt19937_64& rng) {
  hashwall::Hash256 h;
  for (auto& b : h.bytes) b = static_cast<std::uint8_t>(rng());
  return h;
}

void hw_skip_exit(const char* why) {
  std::fprintf(stderr, "SKIPPED: %s (not present here)\n", why);
  std::fflush(stderr);
  std::_Exit(77);
}

fs::path source_dir() { return fs::path(HASHWALL_SOURCE_DIR); }

std::optional<fs::path> shared_dir() {
  fs::path p = source_dir().parent_path() / "shared";
  if (fs::is_directory(p / "pdq-vectors")) return p;
  return std::nullopt;
}

std::optional<fs::path> photos_dir() {
  if (const char* env = std::getenv("HASHWALL_PHOTOS"); env && *env && fs::is_directory(env))
    return fs::path(env);
  if (auto s = shared_dir(); s && fs::is_directory(*s / "photos")) return *s / "photos";
  return std::nullopt;
}

fs::path hashwall_binary() { return fs::path(HASHWALL_BINARY); }

TempDir::TempDir() {
  std::random_device rd;
  for (int attempt = 0; attempt < 100; ++attempt) {
    fs::path p = fs::temp_directory_path() / ("hashwall-test-" + std::to_string(rd()));
    if (fs::create_directory(p)) {
      path_ = p;
      return;
    }
  }
  throw std::runtime_error("cannot create a temporary directory");
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

static std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

RunResult run_shell(const std::string& command) {
  TempDir tmp;
  const auto out = tmp / "out", err = tmp / "err";
  const std::string full = command + " >'" + out.string() + "' 2>'" + err.string() + "' </dev/null";
  const int status = std::system(full.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

bool eventually(const std::function<bool()>& ok, double seconds) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return ok();
}

bool testing_postgresql() {
  const char* v = std::getenv("HASHWALL_TEST_STORE");
  return v && std::string(v) == "postgresql";
}

namespace {

// The scratch server's address, written by tools/pg_test_fixture.sh; skips the test when
// there is none (PostgreSQL not installed).
std::string scratch_server() {
  static const std::string url = [] {
    std::ifstream in(fs::path(HASHWALL_BUILD_DIR) / "pg-scratch.url");
    std::string line;
    std::getline(in, line);
    return line;
  }();
  if (url.empty()) {
    if (const char* r = std::getenv("HASHWALL_REQUIRE_POSTGRESQL"); r && std::string(r) == "1")
      throw std::runtime_error("no scratch PostgreSQL server, and HASHWALL_REQUIRE_POSTGRESQL=1");
    hw_skip_exit("needs PostgreSQL 15 (Debian's postgresql package)");
  }
  // The PostgreSQL banks' index caches, kept out of the user's home.
  setenv("HASHWALL_CACHE_DIR", (fs::path(HASHWALL_BUILD_DIR) / "pg-test-cache").c_str(), 1);
  return url;
}

void pg_exec(const std::string& url, const std::string& sql) {
  PGconn* c = PQconnectdb(url.c_str());
  std::string why;
  if (PQstatus(c) != CONNECTION_OK) {
    why = PQerrorMessage(c);
  } else {
    PGresult* r = PQexec(c, sql.c_str());
    const auto st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) why = PQerrorMessage(c);
    PQclear(r);
  }
  PQfinish(c);
  if (!why.empty()) throw std::runtime_error("PostgreSQL: " + why + " (" + sql + ")");
}

}  // namespace

std::string bank_location(const TempDir& dir, const std::string& name) {
  if (!testing_postgresql()) return (dir / name).string();
  const std::string server = scratch_server();
  static std::atomic<int> n{0};
  std::random_device rd;
  const std::string schema = "t_" + std::to_string(::getpid()) + "_" + std::to_string(n++) + "_" +
                             std::to_string(rd() % 100000);
  pg_exec(server, "CREATE SCHEMA " + schema);
  return server + (server.find('?') == std::string::npos ? "?" : "&") + "options=-csearch_path%3D" +
         schema;
}

void raw_sql(const std::string& location, const std::string& sql) {
  if (location.starts_with("postgresql://")) return pg_exec(location, sql);
  sqlite3* db = nullptr;
  std::string why;
  if (sqlite3_open_v2(location.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    why = sqlite3_errmsg(db);
  } else {
    char* err = nullptr;
    if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) why = err ? err : "?";
    sqlite3_free(err);
  }
  sqlite3_close(db);
  if (!why.empty()) throw std::runtime_error("SQLite: " + why + " (" + sql + ")");
}

long budget(const char* name, long fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return end && *end == '\0' && n > 0 ? n : fallback;
}

RunResult run_hashwall(const std::string& args) {
  return run_shell("'" + hashwall_binary().string() + "' " + args);
}

}  // namespace hwtest
