#include "cli/common.hpp"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <set>
#include <thread>

#include "match/video_check.hpp"
#include "server/auth.hpp"

namespace hashwall::cli {

const char* const kExitCodesHelp =
    "Exit codes:\n"
    "  0    success; for query/scan: no match\n"
    "  1    query/scan: at least one file matched the bank\n"
    "  2    error: unreadable input, unusable bank, bad usage (scan: some file failed)\n"
    "  3    query/scan: too low quality to decide (PDQ quality below the minimum);\n"
    "       index: finished, but some files were skipped as unreadable\n"
    "  4    query/scan: allowed: the strongest match is on an allow list (a known harmless\n"
    "       photo or collision), and no file matched a block list\n"
    "  130  interrupted (Ctrl-C); every committed batch is kept\n";

std::atomic<bool>& stop_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

std::atomic<bool>& reload_requested() {
  static std::atomic<bool> flag{false};
  return flag;
}

namespace {
extern "C" void on_reload(int) { reload_requested() = true; }

extern "C" void on_signal(int sig) {
  if (stop_requested().exchange(true)) {
    // Second Ctrl-C: the user insists; SQLite's journal keeps the bank consistent.
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

const std::set<std::string>& image_extensions() {
  static const std::set<std::string> ext = {".jpg",  ".jpeg", ".jpe",  ".jfif", ".png",
                                            ".webp", ".tif",  ".tiff", ".bmp",  ".dib",
                                            ".gif",  ".pgm",  ".ppm",  ".pnm",  ".pbm"};
  return ext;
}

bool has_image_extension(const fs::path& p, bool videos_too) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  const auto& videos = video_extensions();
  return image_extensions().count(e) > 0 ||
         (videos_too && std::find(videos.begin(), videos.end(), e) != videos.end());
}
}  // namespace

void install_signal_handlers() {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  // Over a file-size limit (ulimit -f) the kernel sends SIGXFSZ, which kills the process
  // before SQLite sees the failed write. Ignored, the write fails with EFBIG: the batch
  // is rolled back and reported like a full disk.
  std::signal(SIGXFSZ, SIG_IGN);
}

void install_reload_handler() { std::signal(SIGHUP, on_reload); }

std::vector<fs::path> collect_files(const std::vector<std::string>& paths, bool all_files,
                                    std::vector<std::string>& missing, bool videos_too) {
  std::vector<fs::path> out;
  for (const auto& arg : paths) {
    const fs::path p(arg);
    std::error_code ec;
    const auto st = fs::status(p, ec);
    if (ec || !fs::exists(st)) {
      missing.push_back(arg + ": no such file or directory");
      continue;
    }
    if (!fs::is_directory(st)) {
      out.push_back(p);
      continue;
    }
    std::vector<fs::path> found;
    auto it =
        fs::recursive_directory_iterator(p, fs::directory_options::skip_permission_denied, ec);
    if (ec) {
      missing.push_back(arg + ": cannot list directory: " + ec.message());
      continue;
    }
    for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (ec) {
        missing.push_back(it->path().string() + ": " + ec.message());
        ec.clear();
        continue;
      }
      std::error_code e2;
      if (it->is_symlink(e2) && fs::is_directory(it->path(), e2)) {
        it.disable_recursion_pending();
        continue;
      }
      // Special files (FIFOs, sockets, devices) with an image name are reported by the
      // reader as 'not a regular file' rather than silently passed over.
      if (it->is_directory(e2)) continue;
      if (all_files || has_image_extension(it->path(), videos_too)) found.push_back(it->path());
    }
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

Progress::Progress(std::string what, std::size_t total, bool enabled)
    : what_(std::move(what)),
      total_(total),
      active_(enabled && ::isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()),
      last_(start_ - std::chrono::seconds(1)) {}

Progress::~Progress() { finish(); }

void Progress::update(std::size_t done, const std::string& extra) {
  if (!active_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double rate = secs > 0 ? static_cast<double>(done) / secs : 0.0;
  constexpr int kWidth = 30;
  const int filled = total_ ? static_cast<int>(kWidth * done / total_) : kWidth;
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "\r%s [%s] %zu/%zu  %.0f/s  %s\033[K", what_.c_str(), bar.c_str(), done,
               total_, rate, extra.c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (!active_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  active_ = false;
}

std::string format_duration(double s) {
  char buf[64];
  if (s < 1)
    std::snprintf(buf, sizeof buf, "%.0f ms", s * 1000);
  else if (s < 120)
    std::snprintf(buf, sizeof buf, "%.1f s", s);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return buf;
}

LoadOptions load_options(bool exact, bool no_exif, std::uint64_t max_pixels) {
  LoadOptions o;
  o.mode = exact ? DecodeMode::Exact : DecodeMode::Fast;
  o.exif_orientation = !no_exif;
  o.max_pixels = max_pixels;
  return o;
}

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

void add_seal_key_option(CLI::App* cmd, std::string& file, const std::string& purpose) {
  cmd->add_option(
         "--seal-key", file,
         "File holding the bank's seal key (one line, 16+ characters, mode 0600): " + purpose)
      ->envname("HASHWALL_SEAL_KEY_FILE");
}

std::string read_seal_key(const std::string& file) {
  return file.empty() ? std::string() : server::read_secret_file(file, "seal key file");
}

Actor cli_actor(const std::string& reason) {
  std::string user;
  if (const passwd* pw = ::getpwuid(::geteuid()); pw && pw->pw_name) user = pw->pw_name;
  if (user.empty()) user = "uid" + std::to_string(::geteuid());
  return Actor{"cli:" + user, reason};
}

std::int64_t parse_until(const std::string& text) {
  const auto bad = [&]() -> Error {
    return Error(ErrorKind::Usage, "",
                 "--until '" + text.substr(0, 40) +
                     "' is not a time: unix seconds, 2027-01-31, 2027-01-31T12:00:00Z or +7d");
  };
  if (text.empty()) throw bad();
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  const auto future = [&](std::int64_t t) {
    if (t <= now)
      throw Error(ErrorKind::Usage, "",
                  "--until '" + text.substr(0, 40) + "' is not in the future");
    return t;
  };
  if (text[0] == '+') {
    if (text.size() < 3 || !std::isdigit(static_cast<unsigned char>(text[1]))) throw bad();
    std::size_t used = 0;
    long long n = 0;
    try {
      n = std::stoll(text.substr(1), &used);
    } catch (const std::exception&) {
      throw bad();
    }
    if (n < 0 || used + 2 != text.size()) throw bad();
    const char unit = text.back();
    const long long mult = unit == 's'   ? 1
                           : unit == 'm' ? 60
                           : unit == 'h' ? 3600
                           : unit == 'd' ? 86400
                                         : 0;
    if (!mult || n > (1LL << 40) / mult) throw bad();
    return future(now + n * mult);
  }
  if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
    if (text.size() > 12) throw bad();
    return future(std::stoll(text));
  }
  std::tm tm{};
  const char* end = ::strptime(text.c_str(), "%Y-%m-%d", &tm);
  if (!end) throw bad();
  if (*end == 'T' || *end == ' ') {
    const char* t = ::strptime(end + 1, "%H:%M:%S", &tm);
    if (!t) t = ::strptime(end + 1, "%H:%M", &tm);
    if (!t) throw bad();
    end = t;
  }
  if (*end == 'Z') ++end;
  if (*end != '\0') throw bad();
  const std::tm asked = tm;
  const auto t = static_cast<std::int64_t>(::timegm(&tm));
  // timegm normalises (2027-02-31 becomes March 3rd): a date that moved did not exist.
  if (tm.tm_mday != asked.tm_mday || tm.tm_mon != asked.tm_mon || tm.tm_year != asked.tm_year)
    throw bad();
  return future(t);
}

std::int64_t list_id_of(const Bank& bank, const std::string& name) {
  const auto l = bank.list(name);
  if (!l)
    throw Error(ErrorKind::Usage, "",
                "there is no list '" + name.substr(0, 80) +
                    "' in the bank (see 'hashwall list'; make one with 'hashwall list create')");
  return l->id;
}

}  // namespace hashwall::cli
