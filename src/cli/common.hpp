// Shared pieces of the command-line front end: exit codes, file discovery, signals,
// progress, the worker pool, and output helpers. Only src/cli prints or exits.
#pragma once

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "bank/bank.hpp"
#include "core/parallel.hpp"
#include "image/load.hpp"
#include "match/matcher.hpp"
#include "match/report.hpp"

namespace hashwall::cli {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

// Exit codes (documented in --help and the README).
inline constexpr int kExitOk = 0;         // success / no match
inline constexpr int kExitMatch = 1;      // query/scan: at least one match
inline constexpr int kExitError = 2;      // error (bad input, unusable bank, bad usage)
inline constexpr int kExitUndecided = 3;  // query/scan: too low quality to decide;
                                          // index: finished but skipped unreadable files
inline constexpr int kExitAllowed = 4;    // query/scan: matched allow-list entries only
inline constexpr int kExitInterrupted = 130;

extern const char* const kExitCodesHelp;

// Set by SIGINT/SIGTERM; long loops stop at the next file and commit what is done.
std::atomic<bool>& stop_requested();
void install_signal_handlers();
// SIGHUP sets reload_requested() instead of ending the process (`serve`: reread tokens).
std::atomic<bool>& reload_requested();
void install_reload_handler();

// Image files under the given paths. Directories are walked recursively (symlinked
// directories are not followed, so loops cannot trap the walk); inside directories only
// files with image extensions are taken unless all_files; files named explicitly are
// always taken (with videos_too, video extensions too: query and scan read videos). Paths
// that do not exist are reported through `missing`.
std::vector<fs::path> collect_files(const std::vector<std::string>& paths, bool all_files,
                                    std::vector<std::string>& missing, bool videos_too = false);

// --bank's help: where a bank lives.
inline constexpr const char* kBankHelp =
    "Bank: a file (SQLite), or a postgresql://USER@HOST:PORT/DB address whose password is in "
    "~/.pgpass or PGPASSFILE (docs/DEPLOY.md)";

// A progress line on stderr, only when stderr is a terminal.
class Progress {
 public:
  Progress(std::string what, std::size_t total, bool enabled = true);
  ~Progress();
  void update(std::size_t done, const std::string& extra = {});
  void finish();

 private:
  std::string what_;
  std::size_t total_;
  bool active_;
  std::chrono::steady_clock::time_point start_, last_;
};

std::string format_duration(double seconds);
LoadOptions load_options(bool exact, bool no_exif, std::uint64_t max_pixels);

// --seal-key FILE (docs/BANK_FORMAT.md, "Checksums and seal"): the option on `cmd`, and
// the key read from its file ("" when no file was given).
void add_seal_key_option(CLI::App* cmd, std::string& file, const std::string& purpose);
std::string read_seal_key(const std::string& file);

// Who a change made at the command line is attributed to in the audit log: "cli:USER".
Actor cli_actor(const std::string& reason = {});
// A time for --until: unix seconds ("1767225600"), a date or UTC time ("2027-01-31",
// "2027-01-31T12:00:00Z") or a span from now ("+90m", "+12h", "+7d"). Error{Usage} else.
std::int64_t parse_until(const std::string& text);
// The id of the list named `name` in `bank` (Error{Usage} when there is none).
std::int64_t list_id_of(const Bank& bank, const std::string& name);

// File names need not be UTF-8; invalid bytes become U+FFFD instead of aborting output.
std::string dump_json(const json& j, int indent = -1);

}  // namespace hashwall::cli
