#include "bench/speed.hpp"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "bank/bank.hpp"
#include "bench/timing.hpp"
#include "core/error.hpp"
#include "image/load.hpp"
#include "match/fingerprint.hpp"
#include "pdq/pdq_index.hpp"

namespace hashwall::bench {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

void note(const SpeedOptions& o, const std::string& what) {
  if (o.progress) o.progress(what);
}

HashTiming time_hashing(const HashSet& set, const std::vector<std::vector<std::uint8_t>>& bytes,
                        DecodeMode mode, const SpeedOptions& o) {
  HashTiming t;
  t.label = set.label;
  t.mode = mode == DecodeMode::Fast ? "fast" : "exact";
  LoadOptions opt;
  opt.mode = mode;
  double floor_ms = 0, decode_ms = 0, total_ms = 0, mp = 0;
  std::vector<std::size_t> good;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    check_stop(o.stop);
    try {
      const cv::Mat buf(1, static_cast<int>(bytes[i].size()), CV_8UC1,
                        const_cast<std::uint8_t*>(bytes[i].data()));
      auto t0 = Clock::now();
      const LoadedImage img = decode_image(bytes[i], set.files[i].string(), opt);
      const double d = ms_since(t0);
      t0 = Clock::now();
      const Fingerprint f = fingerprint(img, mode);
      const double h = ms_since(t0);
      t0 = Clock::now();
      // The bare decode decode_image does for `pixels`: the floor under the fast path.
      const cv::Mat raw = cv::imdecode(buf, pixel_decode_flags(img.probe, opt));
      floor_ms += ms_since(t0);
      decode_ms += d;
      total_ms += d + h;
      mp += static_cast<double>(img.width) * img.height / 1e6;
      good.push_back(i);
      (void)f;
      (void)raw;
    } catch (const Error&) {
      // unreadable files are left out of the timing
    }
  }
  t.files = static_cast<int>(good.size());
  if (good.empty()) return t;
  const double n = static_cast<double>(good.size());
  t.floor_ms = floor_ms / n;
  t.decode_ms = decode_ms / n;
  t.total_ms = total_ms / n;
  t.megapixels = mp / n;
  t.images_per_s_1 = 1000.0 / t.total_ms;

  // All threads: each takes the next file; as many passes as make it last ~1 s at least.
  t.threads = std::max(1, o.jobs);
  const int passes = std::max(1, static_cast<int>(std::ceil(1000.0 * t.threads / total_ms)));
  const std::size_t work = good.size() * static_cast<std::size_t>(std::min(passes, 20));
  std::atomic<std::size_t> next{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int k = 0; k < t.threads; ++k)
    threads.emplace_back([&] {
      for (std::size_t j; (j = next++) < work;) {
        const std::size_t i = good[j % good.size()];
        const LoadedImage img = decode_image(bytes[i], set.files[i].string(), opt);
        (void)fingerprint(img, mode);
      }
    });
  for (auto& th : threads) th.join();
  t.images_per_s_all = static_cast<double>(work) / (ms_since(t0) / 1000.0);
  return t;
}

Hash256 random_hash(std::mt19937_64& rng) {
  Hash256 h;
  for (std::size_t i = 0; i < 32; i += 8) {
    const std::uint64_t v = rng();
    for (int b = 0; b < 8; ++b)
      h.bytes[i + static_cast<std::size_t>(b)] = static_cast<std::uint8_t>(v >> (8 * b));
  }
  return h;
}

Hash256 flip_bits(Hash256 h, int n, std::mt19937_64& rng) {
  std::vector<int> bits(256);
  for (int i = 0; i < 256; ++i) bits[static_cast<std::size_t>(i)] = i;
  std::shuffle(bits.begin(), bits.end(), rng);
  for (int i = 0; i < n; ++i) {
    const int k = bits[static_cast<std::size_t>(i)];
    h.bytes[static_cast<std::size_t>(k / 8)] ^= static_cast<std::uint8_t>(1u << (k % 8));
  }
  return h;
}

struct Synthetic {
  std::vector<Hash256> hashes;
  std::vector<std::int64_t> ids;
  std::vector<std::size_t> planted_rows;  // rows whose near-duplicates are queried
  std::vector<Hash256> planted_queries;
  std::vector<Hash256> random_queries;
};

Synthetic make_synthetic(std::int64_t n, const SpeedOptions& o) {
  Synthetic s;
  std::mt19937_64 rng(o.seed * 7919 + static_cast<std::uint64_t>(n));
  s.hashes.resize(static_cast<std::size_t>(n));
  s.ids.resize(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) {
    s.hashes[static_cast<std::size_t>(i)] = random_hash(rng);
    s.ids[static_cast<std::size_t>(i)] = i + 1;
  }
  const int planted = static_cast<int>(std::min<std::int64_t>(o.planted, n));
  for (int k = 0; k < planted; ++k) {
    const auto row = static_cast<std::size_t>(rng() % static_cast<std::uint64_t>(n));
    s.planted_rows.push_back(row);
    // Near-duplicates anywhere inside the radius, up to its edge.
    const int flips = static_cast<int>(rng() % static_cast<std::uint64_t>(o.threshold + 1));
    s.planted_queries.push_back(flip_bits(s.hashes[row], flips, rng));
  }
  for (int k = 0; k < std::max(o.queries, o.batch); ++k)
    s.random_queries.push_back(random_hash(rng));
  return s;
}

// Rough peak need of an index, to skip sizes this machine cannot hold.
std::uint64_t estimated_bytes(const std::string& type, std::int64_t n) {
  // multihash: 16 posting lists of 4 bytes, with room for the build; compact: 8 lists of
  // ~3.2 bytes plus the build's row order.
  const double per = type == "flat" ? 40 : type == "compact" ? 36 + 8 * 3.2 + 8 : 40 + 16 * 8 * 1.5;
  return static_cast<std::uint64_t>(per * static_cast<double>(n));
}

struct OmpThreads {  // one thread for the latency numbers, restored after
  int saved;
  explicit OmpThreads(int n) : saved(omp_get_max_threads()) { omp_set_num_threads(n); }
  ~OmpThreads() { omp_set_num_threads(saved); }
};

IndexTiming time_index(const Synthetic& s, const std::string& type, const SpeedOptions& o) {
  IndexTiming t;
  t.size = static_cast<std::int64_t>(s.hashes.size());
  t.type = type;
  const std::uint64_t rss0 = resident_bytes();
  auto t0 = Clock::now();
  auto index = make_pdq_index(type);
  // One add, as a bank builds its index (the multihash posting lists are built once).
  check_stop(o.stop);
  index->add(s.ids, s.hashes);
  t.build_s = ms_since(t0) / 1000.0;
  const std::uint64_t rss1 = resident_bytes();
  const double n = static_cast<double>(t.size);
  t.rss_bytes_per_entry = rss1 > rss0 ? static_cast<double>(rss1 - rss0) / n : 0;
  t.index_bytes_per_entry = static_cast<double>(index->memory_bytes()) / n;

  OmpThreads one(1);
  // Planted near-duplicates: each must come back.
  t.planted = static_cast<int>(s.planted_rows.size());
  for (std::size_t k = 0; k < s.planted_rows.size(); ++k) {
    const auto hits = index->range_search(std::span(&s.planted_queries[k], 1), o.threshold);
    const std::int64_t want = s.ids[s.planted_rows[k]];
    if (std::any_of(hits[0].begin(), hits[0].end(),
                    [&](const IndexHit& h) { return h.id == want; }))
      ++t.planted_found;
  }
  std::vector<double> single, dihedral;
  const auto start = Clock::now();
  std::mt19937_64 rng(o.seed);
  for (int q = 0; q < o.queries; ++q) {
    check_stop(o.stop);
    if (q >= 5 && ms_since(start) > 1000 * o.max_seconds_per_case) break;
    // Alternate planted and random queries; a dihedral query is the hash plus 7 others.
    const Hash256 h =
        q % 2 == 0 && !s.planted_queries.empty()
            ? s.planted_queries[static_cast<std::size_t>(q / 2) % s.planted_queries.size()]
            : s.random_queries[static_cast<std::size_t>(q) % s.random_queries.size()];
    auto t1 = Clock::now();
    const auto r1 = index->range_search(std::span(&h, 1), o.threshold);
    single.push_back(ms_since(t1));
    if (q % 2 == 1) t.random_hits += static_cast<std::int64_t>(r1[0].size());
    std::vector<Hash256> eight{h};
    for (int k = 1; k < 8; ++k)
      eight.push_back(
          s.random_queries[(static_cast<std::size_t>(q) * 7 + static_cast<std::size_t>(k)) %
                           s.random_queries.size()]);
    t1 = Clock::now();
    (void)index->range_search(eight, o.threshold);
    dihedral.push_back(ms_since(t1));
  }
  t.samples = static_cast<int>(single.size());
  t.p50_ms = percentile(single, 0.5);
  t.p99_ms = percentile(single, 0.99);
  t.dihedral_p50_ms = percentile(dihedral, 0.5);
  t.dihedral_p99_ms = percentile(dihedral, 0.99);
  const std::size_t nb = std::min<std::size_t>(static_cast<std::size_t>(std::max(1, o.batch)),
                                               s.random_queries.size());
  // Batches of `nb` queries in one call (an import check, a crawl): up to 20 calls on
  // different slices, so a p50 and a p99 per batch can be given too.
  std::vector<double> batches;
  const auto t2 = Clock::now();
  for (int r = 0; r < 20; ++r) {
    check_stop(o.stop);
    if (r >= 3 && ms_since(t2) > 1000 * o.max_seconds_per_case) break;
    const std::size_t first =
        (static_cast<std::size_t>(r) * 37) % (s.random_queries.size() - nb + 1);
    const auto t3 = Clock::now();
    (void)index->range_search(std::span(s.random_queries).subspan(first, nb), o.threshold);
    batches.push_back(ms_since(t3));
  }
  t.batch_size = static_cast<int>(nb);
  t.batch_p50_ms = percentile(batches, 0.5);
  t.batch_p99_ms = percentile(batches, 0.99);
  t.batch_ms_per_query = t.batch_p50_ms / static_cast<double>(nb);
  return t;
}

BankTiming time_bank(const Synthetic& s, const SpeedOptions& o) {
  BankTiming t;
  t.size = static_cast<std::int64_t>(s.hashes.size());
  const fs::path path = o.work_dir / ("bench-speed-" + std::to_string(t.size) + ".db");
  auto cleanup = [&] {
    std::error_code ec;
    for (const auto& p : {path, pdq_index_path(path), fs::path(path.string() + "-wal"),
                          fs::path(path.string() + "-shm")})
      fs::remove(p, ec);
  };
  cleanup();
  {
    auto bank = Bank::open(path, OpenMode::Create);
    std::vector<NewEntry> batch;
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < s.hashes.size(); ++i) {
      NewEntry e;
      e.pdq = s.hashes[i];
      e.label = "bench";
      e.source = "synthetic";
      e.origin = Origin::Imported;
      batch.push_back(std::move(e));
      if (batch.size() == 10'000 || i + 1 == s.hashes.size()) {
        check_stop(o.stop);
        bank->add(batch);
        batch.clear();
      }
    }
    bank->flush_index();
    t.import_hashes_per_s = static_cast<double>(t.size) / (ms_since(t0) / 1000.0);
  }
  auto t0 = Clock::now();
  auto bank = Bank::open(path, OpenMode::ReadOnly);
  t.open_cached_s = ms_since(t0) / 1000.0;
  const BankStats st = bank->stats();
  t.index_type = st.index_type;
  t.db_bytes_per_entry = static_cast<double>(st.db_bytes) / static_cast<double>(t.size);
  // Imported ids follow insertion order from 1, as the synthetic ids do.
  t.planted = static_cast<int>(s.planted_rows.size());
  std::vector<double> lat;
  for (std::size_t k = 0; k < s.planted_rows.size(); ++k) {
    std::vector<Hash256> eight{s.planted_queries[k]};
    for (int j = 1; j < 8; ++j)
      eight.push_back(
          s.random_queries[(k * 7 + static_cast<std::size_t>(j)) % s.random_queries.size()]);
    const auto t1 = Clock::now();
    const auto hits = bank->search_pdq(eight, o.threshold);
    lat.push_back(ms_since(t1));
    const Hash256& want = s.hashes[s.planted_rows[k]];
    for (const auto& h : hits)
      if (auto e = bank->get(h.id); e && e->pdq == want) {
        ++t.planted_found;
        break;
      }
  }
  t.p50_ms = percentile(lat, 0.5);
  t.p99_ms = percentile(lat, 0.99);
  bank.reset();
  std::error_code ec;
  fs::remove(pdq_index_path(path), ec);
  t0 = Clock::now();
  bank = Bank::open(path, OpenMode::ReadOnly);
  t.open_rebuild_s = ms_since(t0) / 1000.0;
  bank.reset();
  cleanup();
  return t;
}

}  // namespace

std::uint64_t resident_bytes() {
  std::ifstream in("/proc/self/statm");
  std::uint64_t size = 0, resident = 0;
  if (!(in >> size >> resident)) return 0;
  return resident * static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
}

std::uint64_t available_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key, unit;
  std::uint64_t kb = 0;
  while (in >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

SpeedReport run_speed(const SpeedOptions& o) {
  const auto t0 = Clock::now();
  SpeedReport rep;
  for (const auto& set : o.hash_sets) {
    note(o, "hashing " + set.label);
    std::vector<std::vector<std::uint8_t>> bytes;
    HashSet readable{set.label, {}};
    for (const auto& f : set.files) {
      try {
        bytes.push_back(read_file_bytes(f, LoadOptions{}.max_file_bytes));
        readable.files.push_back(f);
      } catch (const Error& e) {
        rep.notes.push_back(std::string("skipped ") + e.what());
      }
    }
    rep.hashing.push_back(time_hashing(readable, bytes, DecodeMode::Fast, o));
    rep.hashing.push_back(time_hashing(readable, bytes, DecodeMode::Exact, o));
  }
  for (const std::int64_t n : o.sizes) {
    check_stop(o.stop);
    if (n <= 0) throw Error(ErrorKind::Usage, "", "bank sizes must be positive");
    note(o, "generating " + std::to_string(n) + " random hashes");
    const Synthetic s = make_synthetic(n, o);
    for (const auto& type : o.index_types) {
      const std::uint64_t need = estimated_bytes(type, n), avail = available_memory_bytes();
      if (avail && need > avail / 2) {
        IndexTiming t;
        t.size = n;
        t.type = type;
        t.skipped = "needs about " + std::to_string(need >> 20) + " MiB, more than half of the " +
                    std::to_string(avail >> 20) + " MiB available";
        rep.indexes.push_back(t);
        continue;
      }
      note(o, type + " index of " + std::to_string(n));
      rep.indexes.push_back(time_index(s, type, o));
    }
    if (n <= o.sqlite_max) {
      note(o, "SQLite bank of " + std::to_string(n));
      rep.banks.push_back(time_bank(s, o));
    }
  }
  time_signals(o, rep);
  rep.seconds = ms_since(t0) / 1000.0;
  return rep;
}

// ---- output ---------------------------------------------------------------------------

namespace {
std::string num(double v, int decimals) {
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}
std::string human_count(std::int64_t n) {
  if (n >= 1'000'000 && n % 1'000'000 == 0) return std::to_string(n / 1'000'000) + "M";
  if (n >= 1'000 && n % 1'000 == 0) return std::to_string(n / 1'000) + "k";
  return std::to_string(n);
}
}  // namespace

json speed_json(const SpeedReport& r) {
  json j;
  j["seconds"] = r.seconds;
  j["hashing"] = json::array();
  for (const auto& h : r.hashing)
    j["hashing"].push_back({{"set", h.label},
                            {"mode", h.mode},
                            {"files", h.files},
                            {"megapixels", h.megapixels},
                            {"decoder_floor_ms", h.floor_ms},
                            {"decode_ms", h.decode_ms},
                            {"total_ms", h.total_ms},
                            {"images_per_s_1_thread", h.images_per_s_1},
                            {"images_per_s_all", h.images_per_s_all},
                            {"threads", h.threads}});
  j["indexes"] = json::array();
  for (const auto& t : r.indexes) {
    json x{{"size", t.size}, {"type", t.type}};
    if (!t.skipped.empty()) {
      x["skipped"] = t.skipped;
    } else {
      x.update({{"build_s", t.build_s},
                {"rss_bytes_per_entry", t.rss_bytes_per_entry},
                {"index_bytes_per_entry", t.index_bytes_per_entry},
                {"samples", t.samples},
                {"p50_ms", t.p50_ms},
                {"p99_ms", t.p99_ms},
                {"dihedral_p50_ms", t.dihedral_p50_ms},
                {"dihedral_p99_ms", t.dihedral_p99_ms},
                {"batch_ms_per_query", t.batch_ms_per_query},
                {"batch_size", t.batch_size},
                {"batch_p50_ms", t.batch_p50_ms},
                {"batch_p99_ms", t.batch_p99_ms},
                {"planted", t.planted},
                {"planted_found", t.planted_found},
                {"random_hits", t.random_hits}});
    }
    j["indexes"].push_back(x);
  }
  j["banks"] = json::array();
  for (const auto& b : r.banks)
    j["banks"].push_back({{"size", b.size},
                          {"index_type", b.index_type},
                          {"import_hashes_per_s", b.import_hashes_per_s},
                          {"open_cached_s", b.open_cached_s},
                          {"open_rebuild_s", b.open_rebuild_s},
                          {"db_bytes_per_entry", b.db_bytes_per_entry},
                          {"p50_ms", b.p50_ms},
                          {"p99_ms", b.p99_ms},
                          {"planted", b.planted},
                          {"planted_found", b.planted_found}});
  j["signal_costs"] = json::array();
  for (const auto& c : r.signal_costs)
    j["signal_costs"].push_back({{"set", c.label},
                                 {"files", c.files},
                                 {"local_entry_ms", c.local_entry_ms},
                                 {"local_query_ms", c.local_query_ms},
                                 {"embed_ms", c.embed_ms},
                                 {"local_keypoints", c.local_keypoints}});
  j["local"] = json::array();
  for (const auto& t : r.local) {
    json x{{"size", t.size}};
    if (!t.skipped.empty()) {
      x["skipped"] = t.skipped;
    } else {
      x.update({{"index_type", t.index_type},
                {"build_s", t.build_s},
                {"memory_bytes_per_entry", t.memory_bytes_per_entry},
                {"blob_bytes_per_entry", t.blob_bytes_per_entry},
                {"samples", t.samples},
                {"copy_p50_ms", t.copy_p50_ms},
                {"copy_p99_ms", t.copy_p99_ms},
                {"unrelated_p50_ms", t.unrelated_p50_ms},
                {"unrelated_p99_ms", t.unrelated_p99_ms},
                {"query_extract_ms", t.extract_ms},
                {"planted", t.planted},
                {"planted_found", t.planted_found},
                {"unrelated", t.unrelated},
                {"false_matches", t.false_matches}});
    }
    j["local"].push_back(x);
  }
  j["notes"] = r.notes;
  return j;
}

std::string speed_markdown(const SpeedReport& r) {
  std::ostringstream o;
  if (!r.hashing.empty()) {
    o << "#### Hashing (files in memory; per image, one thread)\n\n"
      << "| set | mode | files | mean MP | decoder floor ms | decode ms | decode + PDQ ms | "
         "images/s, 1 thread | images/s, all threads |\n"
      << "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& h : r.hashing)
      o << "| " << h.label << " | " << h.mode << " | " << h.files << " | " << num(h.megapixels, 2)
        << " | " << num(h.floor_ms, 2) << " | " << num(h.decode_ms, 2) << " | "
        << num(h.total_ms, 2) << " | " << num(h.images_per_s_1, 0) << " | "
        << num(h.images_per_s_all, 0) << " (" << h.threads << ") |\n";
    o << "\n";
  }
  if (!r.indexes.empty()) {
    o << "#### Search in memory (synthetic random PDQ hashes, radius 31, one thread)\n\n"
      << "| entries | index | build s | RSS B/entry | index B/entry | p50 ms | p99 ms | 8-hash p50 "
         "ms | 8-hash p99 ms | batch p50 ms | batch p99 ms | batch ms/query | planted found | "
         "samples |\n"
      << "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& t : r.indexes) {
      o << "| " << human_count(t.size) << " | " << t.type << " | ";
      if (!t.skipped.empty()) {
        o << "skipped: " << t.skipped << " ||||||||||||\n";
        continue;
      }
      o << num(t.build_s, 2) << " | " << num(t.rss_bytes_per_entry, 1) << " | "
        << num(t.index_bytes_per_entry, 1) << " | " << num(t.p50_ms, 3) << " | " << num(t.p99_ms, 3)
        << " | " << num(t.dihedral_p50_ms, 3) << " | " << num(t.dihedral_p99_ms, 3) << " | "
        << num(t.batch_p50_ms, 2) << " | " << num(t.batch_p99_ms, 2) << " | "
        << num(t.batch_ms_per_query, 3) << " | " << t.planted_found << " / " << t.planted << " | "
        << t.samples << " |\n";
    }
    o << "\n";
  }
  if (!r.banks.empty()) {
    o << "#### SQLite banks (Bank API: import, open, search with 8 hashes)\n\n"
      << "| entries | index | import hashes/s | open s (cached index) | open s (rebuild) | SQLite "
         "B/entry | p50 ms | p99 ms | planted found |\n"
      << "|---:|---|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& b : r.banks)
      o << "| " << human_count(b.size) << " | " << b.index_type << " | "
        << num(b.import_hashes_per_s, 0) << " | " << num(b.open_cached_s, 3) << " | "
        << num(b.open_rebuild_s, 3) << " | " << num(b.db_bytes_per_entry, 1) << " | "
        << num(b.p50_ms, 3) << " | " << num(b.p99_ms, 3) << " | " << b.planted_found << " / "
        << b.planted << " |\n";
    o << "\n";
  }
  if (!r.signal_costs.empty()) {
    o << "#### Local features and embedding (per photo, one thread, fast-decoded pixels)\n\n"
      << "| set | photos | ORB entry ms | keypoints | ORB query ms (photo + mirror) | embedding ms "
         "|\n"
      << "|---|---:|---:|---:|---:|---:|\n";
    for (const auto& c : r.signal_costs)
      o << "| " << c.label << " | " << c.files << " | " << num(c.local_entry_ms, 2) << " | "
        << num(c.local_keypoints, 0) << " | " << num(c.local_query_ms, 2) << " | "
        << (c.embed_ms > 0 ? num(c.embed_ms, 2) : std::string("–")) << " |\n";
    o << "\n";
  }
  if (!r.local.empty()) {
    o << "#### Local-feature search (synthetic banks of real descriptors; one thread; extraction "
         "not included)\n\n"
      << "| entries | index | build s | memory B/entry | stored B/entry | edited copy p50 ms | p99 "
         "ms | unrelated p50 ms | p99 ms | copies found | false matches | samples |\n"
      << "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& t : r.local) {
      o << "| " << human_count(t.size) << " | ";
      if (!t.skipped.empty()) {
        o << "skipped: " << t.skipped << " |||||||||||\n";
        continue;
      }
      o << t.index_type << " | " << num(t.build_s, 2) << " | " << num(t.memory_bytes_per_entry, 0)
        << " | " << num(t.blob_bytes_per_entry, 0) << " | " << num(t.copy_p50_ms, 1) << " | "
        << num(t.copy_p99_ms, 1) << " | " << num(t.unrelated_p50_ms, 1) << " | "
        << num(t.unrelated_p99_ms, 1) << " | " << t.planted_found << " / " << t.planted << " | "
        << t.false_matches << " / " << t.unrelated << " | " << t.samples << " |\n";
    }
    if (!r.local.empty() && r.local.front().extract_ms > 0)
      o << "\nThe query's own ORB extraction (photo and mirror, 1024 keypoints each) adds "
        << num(r.local.front().extract_ms, 1) << " ms (p50) to each query.\n";
    o << "\n";
  }
  for (const auto& n : r.notes) o << "- " << n << "\n";
  return o.str();
}

}  // namespace hashwall::bench
