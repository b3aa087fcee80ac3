// `hashwall bench speed`: what hashing and searching cost. Hashing is timed on files
// already in memory (so the disk is not measured), with the decoder alone timed
// separately; search is timed on synthetic banks of random PDQ hashes with planted
// near-duplicates whose matches are checked.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace hashwall::bench {

struct HashSet {
  std::string label;  // "bsds500", "debian", ...
  std::vector<std::filesystem::path> files;
};

struct SpeedOptions {
  std::vector<HashSet> hash_sets;
  std::vector<std::int64_t> sizes = {10'000, 100'000, 1'000'000};
  std::vector<std::string> index_types = {"flat", "multihash"};
  int queries = 500;   // latency samples per (size, index type), fewer if time runs out
  double max_seconds_per_case = 15;
  int batch = 100;     // queries per batched call
  int planted = 100;   // near-duplicates planted in every synthetic bank and searched for
  int threshold = 31;  // search radius (the bank default)
  std::int64_t sqlite_max = 100'000;  // real SQLite banks are built up to this size
  int jobs = 1;                       // "all threads" for the hashing throughput
  std::uint64_t seed = 1;
  std::filesystem::path work_dir;  // temporary banks (must exist)
  std::function<void(const std::string&)> progress;  // what runs now
  const std::atomic<bool>* stop = nullptr;
};

struct HashTiming {
  std::string label, mode;  // mode: "fast" (what index/query do) or "exact" (reference)
  int files = 0;
  double megapixels = 0;       // mean, full resolution
  double floor_ms = 0;         // cv::imdecode alone, with the flags the mode uses
  double decode_ms = 0;        // decode_image: probe + SHA-256 + decode (+ orientation)
  double total_ms = 0;         // decode_image + fingerprint (PDQ with its 8 variants)
  double images_per_s_1 = 0;   // one thread: 1000 / total_ms
  double images_per_s_all = 0;  // `threads` threads
  int threads = 1;
};

struct IndexTiming {
  std::int64_t size = 0;
  std::string type;
  std::string skipped;  // non-empty: why this case was not run
  double build_s = 0;
  double rss_bytes_per_entry = 0;    // resident memory growth while building
  double index_bytes_per_entry = 0;  // PdqIndex::memory_bytes()
  int samples = 0;
  double p50_ms = 0, p99_ms = 0;                    // one hash per query, one thread
  double dihedral_p50_ms = 0, dihedral_p99_ms = 0;  // 8 hashes per query, as the matcher sends
  double batch_ms_per_query = 0;                    // `batch` queries per call, one thread
  int planted = 0, planted_found = 0;
  std::int64_t random_hits = 0;  // hits for random (unplanted) queries: expected 0
};

struct BankTiming {
  std::int64_t size = 0;
  std::string index_type;
  double import_hashes_per_s = 0;
  double open_cached_s = 0;   // open with an up-to-date index cache
  double open_rebuild_s = 0;  // open with the cache deleted (rebuilt from SQLite)
  double db_bytes_per_entry = 0;
  double p50_ms = 0, p99_ms = 0;  // Bank::search_pdq with 8 hashes
  int planted = 0, planted_found = 0;
};

struct SpeedReport {
  std::vector<HashTiming> hashing;
  std::vector<IndexTiming> indexes;
  std::vector<BankTiming> banks;
  std::vector<std::string> notes;
  double seconds = 0;
};

SpeedReport run_speed(const SpeedOptions& options);

nlohmann::ordered_json speed_json(const SpeedReport& report);
std::string speed_markdown(const SpeedReport& report);

// Resident set size of this process, in bytes (/proc/self/statm); 0 if unknown.
std::uint64_t resident_bytes();
// MemAvailable from /proc/meminfo, in bytes; 0 if unknown.
std::uint64_t available_memory_bytes();

}  // namespace hashwall::bench
