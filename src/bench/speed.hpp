// `hashwall bench speed`: what hashing and searching cost. Hashing is timed on files
// already in memory (so the disk is not measured), with the decoder alone timed
// separately; search is timed on synthetic banks of random PDQ hashes with planted
// near-duplicates whose matches are checked.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace hashwall {
class Embedder;
}

namespace hashwall::bench {

struct HashSet {
  std::string label;  // "bsds500", "debian", ...
  std::vector<std::filesystem::path> files;
};

struct SpeedOptions {
  std::vector<HashSet> hash_sets;
  std::vector<std::int64_t> sizes = {10'000, 100'000, 1'000'000};
  std::vector<std::string> index_types = {"flat", "multihash", "compact"};
  int queries = 500;  // latency samples per (size, index type), fewer if time runs out
  double max_seconds_per_case = 15;
  int batch = 100;     // queries per batched call
  int planted = 100;   // near-duplicates planted in every synthetic bank and searched for
  int threshold = 31;  // search radius (the bank default)
  std::int64_t sqlite_max = 100'000;  // real SQLite banks are built up to this size
  int jobs = 1;                       // "all threads" for the hashing throughput
  std::uint64_t seed = 1;
  std::filesystem::path work_dir;  // temporary banks (must exist)
  // Local features and embedding: per-photo cost on the corpus, and local-feature search
  // against synthetic banks of these sizes (built from the corpus's own descriptors).
  const Embedder* embedder = nullptr;  // null: no embedding timings
  std::vector<std::int64_t> local_sizes = {1'000, 10'000, 100'000};
  int signal_photos = 100;                           // photos per corpus set timed for the signals
  std::function<void(const std::string&)> progress;  // what runs now
  const std::atomic<bool>* stop = nullptr;
};

struct HashTiming {
  std::string label, mode;  // mode: "fast" (what index/query do) or "exact" (reference)
  int files = 0;
  double megapixels = 0;        // mean, full resolution
  double floor_ms = 0;          // cv::imdecode alone, with the flags the mode uses
  double decode_ms = 0;         // decode_image: probe + SHA-256 + decode (+ orientation)
  double total_ms = 0;          // decode_image + fingerprint (PDQ with its 8 variants)
  double images_per_s_1 = 0;    // one thread: 1000 / total_ms
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
  int batch_size = 0;                               // queries per batched call
  double batch_p50_ms = 0, batch_p99_ms = 0;        // one batched call, one thread
  double batch_ms_per_query = 0;                    // batch p50 / batch_size
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

// Per photo, one thread, on fast-decoded pixels (as index and query compute them).
struct SignalCost {
  std::string label;
  int files = 0;
  double local_entry_ms = 0;   // ORB for a bank entry (256 keypoints)
  double local_query_ms = 0;   // ORB for a query: the photo and its mirror (1024 each)
  double embed_ms = 0;         // the embedding network, preprocessing included (0: no model)
  double local_keypoints = 0;  // mean keypoints per entry
};

// A query against a synthetic bank of `size` entries: local-feature retrieval (FAISS
// binary index, votes) and geometric verification of the candidates, one thread.
struct LocalTiming {
  std::int64_t size = 0;
  std::string index_type;
  std::string skipped;
  double build_s = 0;                 // FAISS index over all descriptors
  double memory_bytes_per_entry = 0;  // LocalIndex::memory_bytes()
  double blob_bytes_per_entry = 0;    // what the bank stores (keypoints + descriptors)
  int samples = 0;
  double copy_p50_ms = 0, copy_p99_ms = 0;            // edited copies of planted photos
  double unrelated_p50_ms = 0, unrelated_p99_ms = 0;  // unrelated photos (mirror tried too)
  double extract_ms = 0;  // the query's own ORB extraction (both sides), for reference
  int planted = 0, planted_found = 0;
  int unrelated = 0, false_matches = 0;
};

struct SpeedReport {
  std::vector<HashTiming> hashing;
  std::vector<IndexTiming> indexes;
  std::vector<BankTiming> banks;
  std::vector<SignalCost> signal_costs;
  std::vector<LocalTiming> local;
  std::vector<std::string> notes;
  double seconds = 0;
};

SpeedReport run_speed(const SpeedOptions& options);

// speed_signals.cpp: the local-feature and embedding parts of run_speed.
void time_signals(const SpeedOptions& options, SpeedReport& report);

nlohmann::ordered_json speed_json(const SpeedReport& report);
std::string speed_markdown(const SpeedReport& report);

// Resident set size of this process, in bytes (/proc/self/statm); 0 if unknown.
std::uint64_t resident_bytes();
// MemAvailable from /proc/meminfo, in bytes; 0 if unknown.
std::uint64_t available_memory_bytes();

}  // namespace hashwall::bench
