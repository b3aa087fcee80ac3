#include "support.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>

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
