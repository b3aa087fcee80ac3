// The bank: SQLite records (the truth) plus the derived PDQ index and its cache file.
// The on-disk format, and why it is so, is in docs/BANK_FORMAT.md.
#include "bank/bank.hpp"

#include <sqlite3.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <limits>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <unordered_map>

#include "core/error.hpp"
#include "core/file.hpp"
#include "embed/embed_index.hpp"
#include "local/local_index.hpp"

#ifndef HASHWALL_VERSION
#define HASHWALL_VERSION "unknown"
#endif

namespace hashwall {

namespace fs = std::filesystem;

namespace {

// 1: PDQ only. 2: adds the local_features and embeddings tables (a version-1 bank opened
// for writing is upgraded in place; read-only, it simply has neither).
constexpr int kFormatVersion = 2;
constexpr int kBusyTimeoutMs = 5000;
constexpr const char* kNoBank =
    "no bank here (create one with 'hashwall index' or 'hashwall import')";
// Rows per round trip when reading the whole table (for_each, index rebuilds).
constexpr std::size_t kChunk = 4096;
// check(): how many entries are re-searched by brute force, and how many problem lines
// of one kind are listed before they are summarised.
constexpr std::size_t kCheckSamples = 32;
constexpr std::size_t kMaxListedProblems = 20;

constexpr const char* kSchema = R"sql(
CREATE TABLE meta(
  key   TEXT PRIMARY KEY,
  value TEXT
);
CREATE TABLE entries(
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  sha256   TEXT UNIQUE
           CHECK (sha256 IS NULL OR (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*')),
  pdq      BLOB NOT NULL CHECK (typeof(pdq) = 'blob' AND length(pdq) = 32),
  quality  INTEGER CHECK (quality IS NULL OR (typeof(quality) = 'integer' AND quality BETWEEN 0 AND 100)),
  label    TEXT NOT NULL DEFAULT '',
  source   TEXT NOT NULL DEFAULT '',
  origin   TEXT NOT NULL CHECK (origin IN ('indexed', 'imported')),
  added_at INTEGER NOT NULL
);
CREATE INDEX entries_label ON entries(label);
CREATE INDEX entries_unhashed ON entries(source, pdq) WHERE sha256 IS NULL;
)sql";

constexpr const char* kSignalSchema = R"sql(
CREATE TABLE IF NOT EXISTS local_features(
  entry_id    INTEGER PRIMARY KEY,
  keypoints   BLOB NOT NULL,
  descriptors BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings(
  entry_id INTEGER PRIMARY KEY,
  vector   BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entries_delete_signals AFTER DELETE ON entries BEGIN
  DELETE FROM local_features WHERE entry_id = old.id;
  DELETE FROM embeddings WHERE entry_id = old.id;
END;
)sql";

constexpr const char* kKnownSignals[] = {"pdq", "local", "embed"};

std::vector<std::string> split_signals(std::string_view s) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= s.size()) {
    const auto comma = s.find(',', at);
    const auto part = s.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at);
    if (!part.empty()) out.emplace_back(part);
    if (comma == std::string_view::npos) break;
    at = comma + 1;
  }
  return out;
}

std::string join_signals(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : ",") + x;
  return out;
}

// The signals in canonical order, or why they are not acceptable.
std::string validate_signals(const std::vector<std::string>& v) {
  for (const auto& x : v)
    if (std::find(std::begin(kKnownSignals), std::end(kKnownSignals), x) == std::end(kKnownSignals))
      return "unknown signal '" + x + "' (known: pdq, local, embed)";
  if (std::find(v.begin(), v.end(), "pdq") == v.end()) return "every bank holds the pdq signal";
  return {};
}

std::string float_blob(std::span<const float> v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  std::int64_t v = 0;
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || s.empty()) return std::nullopt;
  return v;
}

std::optional<std::uint64_t> parse_uint(std::string_view s) {
  std::uint64_t v = 0;
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || s.empty()) return std::nullopt;
  return v;
}

bool valid_index_type(std::string_view t) {
  return t == "auto" || t == "flat" || t == "multihash" || t == "compact";
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

bool is_sha256_hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::uintmax_t file_size_or_zero(const fs::path& p) {
  std::error_code ec;
  const auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

// The connection and the file name its errors are reported against.
struct Conn {
  sqlite3* db = nullptr;
  std::string path;

  [[noreturn]] void fail(int rc, const std::string& what) const {
    const int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
      throw Error(ErrorKind::Bank, path,
                  "the bank is locked by another process (still busy after " +
                      std::to_string(kBusyTimeoutMs / 1000) + " s)");
    if (primary == SQLITE_NOTADB)
      throw Error(ErrorKind::Bank, path, "not a hashwall bank: the file is not an SQLite database");
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    throw Error(ErrorKind::Bank, path, what.empty() ? msg : what + ": " + msg);
  }

  void exec(const char* sql) const {
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    if (err) sqlite3_free(err);
    if (rc != SQLITE_OK) fail(rc, "");
  }
};

class Stmt {
 public:
  Stmt(const Conn& c, const char* sql) : c_(c) {
    const int rc = sqlite3_prepare_v2(c.db, sql, -1, &s_, nullptr);
    if (rc != SQLITE_OK) c.fail(rc, "");
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, std::int64_t v) { return check(sqlite3_bind_int64(s_, i, v)); }
  Stmt& bind(int i, std::string_view v) {
    return check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  Stmt& bind(int i, const Hash256& h) {
    return check(sqlite3_bind_blob(s_, i, h.bytes.data(), static_cast<int>(h.bytes.size()),
                                   SQLITE_TRANSIENT));
  }
  Stmt& bind_null(int i) { return check(sqlite3_bind_null(s_, i)); }
  Stmt& bind_blob(int i, std::string_view v) {
    // An empty view may have a null data pointer, which SQLite would store as NULL.
    if (v.empty()) return check(sqlite3_bind_zeroblob(s_, i, 0));
    return check(sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }

  // True while there is a row.
  bool step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    c_.fail(rc, "");
  }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

  bool null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  std::int64_t i64(int col) const { return sqlite3_column_int64(s_, col); }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col)))
             : std::string();
  }
  std::string_view blob(int col) const {
    const void* p = sqlite3_column_blob(s_, col);
    const int n = sqlite3_column_bytes(s_, col);
    return p ? std::string_view(static_cast<const char*>(p), static_cast<std::size_t>(n))
             : std::string_view();
  }

 private:
  Stmt& check(int rc) {
    if (rc != SQLITE_OK) c_.fail(rc, "");
    return *this;
  }
  const Conn& c_;
  sqlite3_stmt* s_ = nullptr;
};

std::optional<Hash256> hash_from_blob(std::string_view b) {
  if (b.size() != 32) return std::nullopt;
  Hash256 h;
  std::memcpy(h.bytes.data(), b.data(), 32);
  return h;
}

constexpr const char* kEntryColumns = "id, sha256, pdq, quality, label, source, origin, added_at";

Entry entry_from_row(const Conn& c, const Stmt& s) {
  Entry e;
  e.id = s.i64(0);
  if (!s.null(1)) e.sha256 = s.text(1);
  const auto h = hash_from_blob(s.blob(2));
  if (!h)
    throw Error(ErrorKind::Bank, c.path,
                "entry " + std::to_string(e.id) + " is corrupt: its PDQ hash is " +
                    std::to_string(s.blob(2).size()) + " bytes, not 32 (run 'hashwall check')");
  e.pdq = *h;
  if (!s.null(3)) e.quality = static_cast<int>(s.i64(3));
  e.label = s.text(4);
  e.source = s.text(5);
  e.origin = s.text(6) == "imported" ? Origin::Imported : Origin::Indexed;
  e.added_at = s.i64(7);
  return e;
}

// RAII for a transaction: rolls back unless committed.
class Transaction {
 public:
  Transaction(const Conn& c, const char* begin) : c_(c) { c_.exec(begin); }
  ~Transaction() {
    if (open_) sqlite3_exec(c_.db, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    c_.exec("COMMIT");
    open_ = false;
  }

 private:
  const Conn& c_;
  bool open_ = true;
};

}  // namespace

const char* origin_name(Origin o) noexcept {
  return o == Origin::Imported ? "imported" : "indexed";
}

bool BankConfig::has(std::string_view signal) const {
  return std::find(signals.begin(), signals.end(), signal) != signals.end();
}

fs::path pdq_index_path(const fs::path& bank) { return fs::path(bank.string() + ".pdq-index"); }

namespace {

fs::path local_layout_path(const fs::path& bank) { return fs::path(bank.string() + ".local-index"); }

constexpr char kLocalMagic[8] = {'H', 'W', 'L', 'O', 'C', 'I', 'X', '1'};

// The local-feature IVF layout cache: magic, u64 generation, the layout, u64 FNV-1a of
// all before it (docs/BANK_FORMAT.md). Empty when missing, damaged or of another
// generation.
std::string read_local_layout(const fs::path& bank, std::uint64_t generation) {
  std::ifstream in(local_layout_path(bank), std::ios::binary);
  if (!in) return {};
  std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (b.size() < 24 || b.compare(0, 8, kLocalMagic, 8) != 0) return {};
  const auto u64 = [&](std::size_t at) { return get_le(b.data() + at); };
  if (u64(b.size() - 8) != fnv1a(reinterpret_cast<const std::uint8_t*>(b.data()), b.size() - 8)) return {};
  if (u64(8) != generation) return {};
  return b.substr(16, b.size() - 24);
}

void write_local_layout(const fs::path& bank, std::uint64_t generation, const std::string& layout) {
  std::string out(kLocalMagic, 8);
  put_le(out, generation);
  out += layout;
  put_le(out, fnv1a(reinterpret_cast<const std::uint8_t*>(out.data()), out.size()));
  write_file_atomically(local_layout_path(bank), out);
}

}  // namespace

struct Bank::Impl {
  fs::path path;
  OpenMode mode = OpenMode::ReadOnly;
  BankConfig config;
  int format_version = 0;
  Conn conn;

  // Lock order: db_mu before index_mu. db_mu guards the connection and the fields
  // below it; index_mu lets searches share the index while add() swaps or extends it.
  mutable std::mutex db_mu;
  mutable std::shared_mutex index_mu;
  mutable std::unique_ptr<PdqIndex> index;
  mutable std::uint64_t generation = 0;  // the bank generation `index` reflects
  mutable bool dirty = false;            // `index` differs from the cache file
  mutable std::int64_t data_version = -1;

  // The other signals' indexes: built at the first search that needs them, extended by
  // add(), rebuilt when the generation moved on (removals, other writers).
  bool signal_tables = false;  // false: a version-1 bank opened read-only
  mutable std::shared_mutex signals_mu;
  mutable std::unique_ptr<LocalIndex> local_index;
  mutable std::uint64_t local_gen = ~std::uint64_t{0};
  mutable bool local_dirty = false;  // local_index's IVF layout differs from its cache file
  mutable std::unique_ptr<EmbedIndex> embed_index;
  mutable std::uint64_t embed_gen = ~std::uint64_t{0};
  int embed_dim = 0;  // from the first stored vector; 0 while none

  ~Impl() {
    if (conn.db) sqlite3_close_v2(conn.db);
  }

  // ---- helpers; all expect db_mu held ---------------------------------------------

  std::optional<std::string> meta(const char* key) const {
    Stmt s(conn, "SELECT value FROM meta WHERE key = ?1");
    s.bind(1, std::string_view(key));
    if (!s.step() || s.null(0)) return std::nullopt;
    return s.text(0);
  }

  void set_meta(const char* key, const std::string& value) const {
    Stmt s(conn,
           "INSERT INTO meta(key, value) VALUES(?1, ?2) "
           "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    s.bind(1, std::string_view(key)).bind(2, std::string_view(value));
    s.step();
  }

  [[noreturn]] void bad_meta(const char* key) const {
    throw Error(ErrorKind::Bank, conn.path,
                std::string("corrupt bank: meta '") + key +
                    "' is missing or invalid (run 'hashwall check')");
  }

  std::uint64_t read_generation() const {
    const auto v = meta("generation");
    const auto g = v ? parse_uint(*v) : std::nullopt;
    if (!g) bad_meta("generation");
    return *g;
  }

  std::int64_t read_data_version() const {
    Stmt s(conn, "PRAGMA data_version");
    s.step();
    return s.i64(0);
  }

  std::int64_t count(const char* sql) const {
    Stmt s(conn, sql);
    return s.step() ? s.i64(0) : 0;
  }

  std::string type_for(std::int64_t entries) const {
    if (config.index_type != "auto") return config.index_type;
    return entries < config.multihash_min_entries ? "flat" : "multihash";
  }

  void require_writable() const {
    if (mode == OpenMode::ReadOnly)
      throw Error(ErrorKind::Bank, conn.path, "the bank was opened read-only");
  }

  // Every well-formed record, from one snapshot. Malformed rows are left out (check()
  // reports them) so that a damaged bank still opens and can be inspected.
  std::unique_ptr<PdqIndex> build_index(std::uint64_t* gen) const {
    Transaction read(conn, "BEGIN");
    *gen = read_generation();
    const auto total = count("SELECT count(*) FROM entries");
    auto idx = make_pdq_index(type_for(total));
    Stmt s(conn, "SELECT id, pdq FROM entries ORDER BY id");
    // One add for the whole table: the multihash index builds its posting lists once.
    std::vector<std::int64_t> ids;
    std::vector<Hash256> hashes;
    ids.reserve(static_cast<std::size_t>(total));
    hashes.reserve(static_cast<std::size_t>(total));
    while (s.step()) {
      const auto h = hash_from_blob(s.blob(1));
      if (!h) continue;
      ids.push_back(s.i64(0));
      hashes.push_back(*h);
    }
    idx->add(ids, hashes);
    read.commit();
    return idx;
  }

  void rebuild_index() const {
    std::uint64_t gen = 0;
    auto fresh = build_index(&gen);
    std::unique_lock lock(index_mu);
    index = std::move(fresh);
    generation = gen;
    dirty = true;
  }

  // Another connection (another process, or another Bank object) committed since we
  // last looked: bring the in-memory index up to date.
  void refresh_if_changed() const {
    const auto v = read_data_version();
    if (v == data_version) return;
    data_version = v;
    if (read_generation() != generation) rebuild_index();
  }

  void load_or_build_index() {
    std::uint64_t cached_gen = 0;
    auto cached = load_pdq_index(pdq_index_path(path), &cached_gen);
    {
      Transaction read(conn, "BEGIN");
      const auto gen = read_generation();
      Stmt s(conn, "SELECT count(*), coalesce(sum(length(pdq) = 32), 0) FROM entries");
      s.step();
      const auto all = s.i64(0), valid = s.i64(1);
      read.commit();
      if (cached && cached_gen == gen && cached->type() == type_for(all) &&
          cached->size() == static_cast<std::size_t>(valid)) {
        index = std::move(cached);
        generation = gen;
        dirty = false;
        data_version = read_data_version();
        return;
      }
    }
    rebuild_index();
    data_version = read_data_version();
  }

  void save_index_locked() {
    if (!dirty) return;
    // Another connection committed since our index was built: our picture is older than
    // the bank, so do not label a cache with it; the next open rebuilds.
    if (read_generation() != generation) return;
    std::shared_lock lock(index_mu);
    index->save(pdq_index_path(path), generation);
    dirty = false;
  }

  // Runs a write transaction whose body deletes rows and returns their ids; bumps the
  // generation if any went.
  template <class Body>
  std::int64_t remove_where(Body&& body) {
    require_writable();
    std::lock_guard lock(db_mu);
    std::vector<std::int64_t> removed;
    std::uint64_t gen_before = 0;
    try {
      Transaction tx(conn, "BEGIN IMMEDIATE");
      gen_before = read_generation();
      removed = body();
      if (!removed.empty()) set_meta("generation", std::to_string(gen_before + 1));
      tx.commit();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(ErrorKind::Bank, conn.path, e.what());
    }
    if (removed.empty()) return 0;
    const auto total = count("SELECT count(*) FROM entries");
    bool current;
    {
      std::shared_lock read(index_mu);
      current = generation == gen_before && index->type() == type_for(total);
    }
    if (current) {
      // Tombstones: milliseconds at 1M entries, where a rebuild from SQLite takes seconds.
      std::unique_lock write(index_mu);
      index->remove(removed);
      generation = gen_before + 1;
      dirty = true;
    } else {
      // Our index misses another writer's rows, or "auto" just went back to flat.
      rebuild_index();
    }
    return static_cast<std::int64_t>(removed.size());
  }

  // Takes db_mu itself (callers must not hold it). Rebuilds a derived signal index (local,
  // embed) from the records when the bank has changed since it was built; callers then
  // search it under a shared signals_mu lock.
  template <typename Index, typename Build>
  void make_fresh(std::unique_ptr<Index>& slot, std::uint64_t& slot_gen, Build build) {
    std::uint64_t gen = 0;
    {
      std::lock_guard lock(db_mu);
      refresh_if_changed();
      gen = generation;
    }
    {
      std::shared_lock read(signals_mu);
      if (slot && slot_gen == gen) return;
    }
    std::uint64_t built_gen = 0;
    std::unique_ptr<Index> idx;
    {
      std::lock_guard lock(db_mu);
      idx = build(&built_gen);
    }
    std::unique_lock write(signals_mu);
    slot = std::move(idx);
    slot_gen = built_gen;
  }

  std::unique_ptr<LocalIndex> build_local(std::uint64_t* gen) const {
    auto idx = std::make_unique<LocalIndex>();
    if (!signal_tables) return idx;
    Transaction read(conn, "BEGIN");
    *gen = read_generation();
    Stmt s(conn, "SELECT entry_id, keypoints, descriptors FROM local_features ORDER BY entry_id");
    while (s.step()) {
      try {
        idx->add(s.i64(0), decode_local(s.blob(1), s.blob(2), conn.path));
      } catch (const Error&) {
        // Damaged rows are left out here; check() names them.
      }
    }
    read.commit();
    // The IVF layout of this generation from the cache file, when there is one; else the
    // full build (the slow part: every row assigned to a list).
    const bool restored = idx->restore_layout(read_local_layout(path, *gen));
    if (!restored) idx->prepare();
    local_dirty = !restored && idx->type() != "flat";
    return idx;
  }

  // Expects db_mu held.
  void save_local_layout() {
    std::shared_lock read(signals_mu);
    if (!local_dirty || !local_index || local_gen != read_generation()) return;
    const std::string layout = local_index->layout();
    if (!layout.empty()) write_local_layout(path, local_gen, layout);
    local_dirty = false;
  }

  std::unique_ptr<EmbedIndex> build_embed(std::uint64_t* gen) const {
    Transaction read(conn, "BEGIN");
    *gen = read_generation();
    std::unique_ptr<EmbedIndex> idx;
    if (signal_tables) {
      Stmt s(conn, "SELECT entry_id, vector FROM embeddings ORDER BY entry_id");
      while (s.step()) {
        const auto b = s.blob(1);
        if (b.empty() || b.size() % sizeof(float) != 0) continue;
        const int dim = static_cast<int>(b.size() / sizeof(float));
        if (!idx) idx = std::make_unique<EmbedIndex>(dim);
        if (dim != idx->dim()) continue;
        std::vector<float> v(static_cast<std::size_t>(dim));
        std::memcpy(v.data(), b.data(), b.size());
        idx->add(s.i64(0), v);
      }
    }
    read.commit();
    if (!idx) idx = std::make_unique<EmbedIndex>(std::max(embed_dim, 1));
    idx->prepare();
    return idx;
  }

  void read_config() {
    const auto fv = meta("format_version");
    const auto v = fv ? parse_int(*fv) : std::nullopt;
    if (!v)
      throw Error(ErrorKind::Bank, conn.path, "not a hashwall bank: meta has no format_version");
    if (*v > kFormatVersion)
      throw Error(ErrorKind::Bank, conn.path,
                  "bank format version " + std::to_string(*v) +
                      " is newer than this hashwall understands (" +
                      std::to_string(kFormatVersion) + "); upgrade hashwall");
    if (*v < 1) bad_meta("format_version");
    format_version = static_cast<int>(*v);
    const auto int_meta = [&](const char* key, std::int64_t lo, std::int64_t hi) {
      const auto s = meta(key);
      const auto n = s ? parse_int(*s) : std::nullopt;
      if (!n || *n < lo || *n > hi) bad_meta(key);
      return *n;
    };
    config.pdq_threshold = static_cast<int>(int_meta("pdq_threshold", 0, 256));
    config.min_quality = static_cast<int>(int_meta("min_quality", 0, 100));
    config.multihash_min_entries = int_meta("multihash_min_entries", 0, INT64_MAX);
    const auto t = meta("index_type");
    if (!t || !valid_index_type(*t)) bad_meta("index_type");
    config.index_type = *t;
    read_generation();  // validates it
    // Version-1 banks predate these keys: PDQ only.
    if (const auto sg = meta("signals")) {
      config.signals = split_signals(*sg);
      if (!validate_signals(config.signals).empty()) bad_meta("signals");
    }
    if (meta("local_min_inliers")) config.local_min_inliers = static_cast<int>(int_meta("local_min_inliers", 3, 100000));
    if (const auto m = meta("embed_model")) config.embed_model = *m;
    if (const auto t2 = meta("embed_threshold")) {
      char* end = nullptr;
      config.embed_threshold = std::strtod(t2->c_str(), &end);
      if (end == t2->c_str() || *end != '\0' || !(config.embed_threshold >= -1 && config.embed_threshold <= 1))
        bad_meta("embed_threshold");
    }
    if (config.has("embed") && config.embed_model.empty()) bad_meta("embed_model");
    signal_tables =
        count("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'local_features'") > 0;
  }

  // A version-1 bank opened for writing gains the signal tables.
  void upgrade_if_old() {
    if (format_version >= 2 || mode == OpenMode::ReadOnly) return;
    Transaction tx(conn, "BEGIN IMMEDIATE");
    conn.exec(kSignalSchema);
    set_meta("format_version", std::to_string(kFormatVersion));
    tx.commit();
    format_version = kFormatVersion;
    signal_tables = true;
  }

  void create_schema(const BankConfig& cfg) {
    Transaction tx(conn, "BEGIN IMMEDIATE");
    // Someone may have created it between our look and our lock.
    if (count("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'") == 0) {
      if (count("SELECT count(*) FROM sqlite_master") != 0)
        throw Error(ErrorKind::Bank, conn.path,
                    "not a hashwall bank: an SQLite database without a meta table");
      conn.exec(kSchema);
      conn.exec(kSignalSchema);
      set_meta("format_version", std::to_string(kFormatVersion));
      set_meta("created_at", std::to_string(static_cast<std::int64_t>(std::time(nullptr))));
      set_meta("created_by", std::string("hashwall ") + HASHWALL_VERSION);
      set_meta("generation", "0");
      set_meta("signals", join_signals(cfg.signals));
      set_meta("local_min_inliers", std::to_string(cfg.local_min_inliers));
      if (cfg.has("embed")) {
        set_meta("embed_model", cfg.embed_model);
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.6f", cfg.embed_threshold);
        set_meta("embed_threshold", buf);
      }
      set_meta("pdq_threshold", std::to_string(cfg.pdq_threshold));
      set_meta("min_quality", std::to_string(cfg.min_quality));
      set_meta("index_type", cfg.index_type);
      set_meta("multihash_min_entries", std::to_string(cfg.multihash_min_entries));
    }
    tx.commit();
  }
};

Bank::Bank(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Bank::~Bank() {
  try {
    flush_index();
  } catch (...) {
    // A derived file: failing to write it costs a rebuild at the next open, nothing more.
  }
}

std::unique_ptr<Bank> Bank::open(const fs::path& path_in, OpenMode mode_in,
                                 const BankConfig& config_for_new_bank) {
  auto open_file = [&](const fs::path& path, OpenMode mode) -> std::unique_ptr<Bank> {
  std::error_code ec;
  const bool exists = fs::exists(path, ec);
  if (!exists && mode != OpenMode::Create) throw Error(ErrorKind::Bank, path.string(), kNoBank);
  if (exists && fs::is_directory(path, ec))
    throw Error(ErrorKind::Bank, path.string(), "not a hashwall bank: it is a directory");
  if (mode == OpenMode::Create) {
    const auto& c = config_for_new_bank;
    if (c.pdq_threshold < 0 || c.pdq_threshold > 256)
      throw Error(ErrorKind::Usage, "", "PDQ threshold must be within 0..256");
    if (c.min_quality < 0 || c.min_quality > 100)
      throw Error(ErrorKind::Usage, "", "minimum quality must be within 0..100");
    if (!valid_index_type(c.index_type))
      throw Error(ErrorKind::Usage, "",
                  "index type must be auto, flat, multihash or compact, not '" + c.index_type + "'");
    if (c.multihash_min_entries < 0)
      throw Error(ErrorKind::Usage, "", "multihash_min_entries must not be negative");
    if (const auto why = validate_signals(c.signals); !why.empty()) throw Error(ErrorKind::Usage, "", why);
    if (c.has("embed") && c.embed_model.empty())
      throw Error(ErrorKind::Usage, "", "the embed signal needs a model");
    if (c.local_min_inliers < 3) throw Error(ErrorKind::Usage, "", "local_min_inliers must be at least 3");
  }

  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->mode = mode;
  impl->conn.path = path.string();
  int flags = SQLITE_OPEN_NOMUTEX;  // Impl::db_mu serialises all use of the connection
  flags |= mode == OpenMode::ReadOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
  if (mode == OpenMode::Create) flags |= SQLITE_OPEN_CREATE;
  const int rc = sqlite3_open_v2(path.c_str(), &impl->conn.db, flags, nullptr);
  if (rc != SQLITE_OK) impl->conn.fail(rc, "cannot open the bank");
  sqlite3_extended_result_codes(impl->conn.db, 1);
  sqlite3_busy_timeout(impl->conn.db, kBusyTimeoutMs);

  std::lock_guard lock(impl->db_mu);
  // Look before writing anything: never turn someone else's database into WAL mode.
  const bool has_meta =
      impl->count("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'") > 0;
  bool create = false;
  if (!has_meta) {
    if (mode != OpenMode::Create || impl->count("SELECT count(*) FROM sqlite_master") != 0)
      throw Error(ErrorKind::Bank, path.string(),
                  impl->count("SELECT count(*) FROM sqlite_master") == 0
                      ? "not a hashwall bank: an empty SQLite database"
                      : "not a hashwall bank: an SQLite database without a meta table");
    create = true;
  }
  if (mode != OpenMode::ReadOnly) {
    // WAL: readers (scans, the server) never block the writer, and vice versa.
    impl->conn.exec("PRAGMA journal_mode = WAL");
    // FULL: a commit is on disk before add() returns, and so before an index cache
    // labelled with the new generation can be written (docs/BANK_FORMAT.md).
    impl->conn.exec("PRAGMA synchronous = FULL");
  }
  if (create) impl->create_schema(config_for_new_bank);
  impl->read_config();
  impl->upgrade_if_old();
  impl->load_or_build_index();
  return std::unique_ptr<Bank>(new Bank(std::move(impl)));
  };
  std::error_code ec;
  if (mode_in != OpenMode::Create || fs::exists(path_in, ec)) return open_file(path_in, mode_in);
  // A new bank is made complete under a temporary name and then linked into place, so a
  // crash during creation never leaves an empty database where the bank should be.
  const fs::path dir = path_in.has_parent_path() ? path_in.parent_path() : fs::path(".");
  const fs::path tmp = dir / ("." + path_in.filename().string() + ".creating-" + std::to_string(::getpid()));
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(tmp.string() + suffix, ec);
  open_file(tmp, OpenMode::Create).reset();
  fs::remove(pdq_index_path(tmp), ec);
  bool created = ::link(tmp.c_str(), path_in.c_str()) == 0;
  if (!created && errno != EEXIST) {
    // Filesystems without hard links: a rename (which could replace a bank created by
    // another process in the same instant; link() above is the no-clobber path).
    if (::rename(tmp.c_str(), path_in.c_str()) != 0) {
      const int e = errno;
      fs::remove(tmp, ec);
      throw Error(ErrorKind::Io, path_in.string(), std::string("cannot create the bank: ") + std::strerror(e));
    }
    created = true;
  }
  // Cache files left by an earlier bank of the same name describe other records; a new
  // bank starts at generation 0 again, so they must not be mistaken for its own.
  if (created)
    for (const auto& stale : {pdq_index_path(path_in), local_layout_path(path_in)}) fs::remove(stale, ec);
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(tmp.string() + suffix, ec);
  return open_file(path_in, OpenMode::ReadWrite);
}

const fs::path& Bank::path() const { return impl_->path; }
const BankConfig& Bank::config() const { return impl_->config; }

AddResult Bank::add(std::span<const NewEntry> entries) {
  auto& m = *impl_;
  m.require_writable();
  std::lock_guard lock(m.db_mu);
  AddResult r;
  r.ids.reserve(entries.size());
  r.was_duplicate.reserve(entries.size());
  std::vector<std::int64_t> new_ids;
  std::vector<Hash256> new_hashes;
  std::vector<std::size_t> new_inputs;  // which input each new id came from
  std::uint64_t gen_before = 0;
  try {
    Transaction tx(m.conn, "BEGIN IMMEDIATE");
    gen_before = m.read_generation();
    const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
    // Rows inserted earlier in this transaction are visible to these look-ups, so a
    // duplicate within the batch is caught the same way as one already in the bank.
    Stmt by_sha(m.conn, "SELECT id FROM entries WHERE sha256 = ?1");
    // INDEXED BY: left to itself, SQLite walks the sha256 UNIQUE index over every
    // imported (NULL) row, which makes large imports quadratic.
    Stmt by_hash(m.conn,
                 "SELECT id FROM entries INDEXED BY entries_unhashed WHERE sha256 IS NULL AND source = ?1 AND pdq = ?2 "
                 "AND origin = ?3 ORDER BY id LIMIT 1");
    Stmt insert(m.conn,
                "INSERT INTO entries(sha256, pdq, quality, label, source, origin, added_at) "
                "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    std::optional<Stmt> insert_local, insert_embed;
    if (m.signal_tables && m.config.has("local"))
      insert_local.emplace(m.conn, "INSERT INTO local_features(entry_id, keypoints, descriptors) VALUES(?1, ?2, ?3)");
    if (m.signal_tables && m.config.has("embed"))
      insert_embed.emplace(m.conn, "INSERT INTO embeddings(entry_id, vector) VALUES(?1, ?2)");
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const NewEntry& e = entries[i];
      const auto where = [&] { return "entry " + std::to_string(i + 1) + " of the batch: "; };
      if (e.quality && (*e.quality < 0 || *e.quality > 100))
        throw Error(ErrorKind::Bank, m.conn.path,
                    where() + "quality " + std::to_string(*e.quality) + " is outside 0..100");
      std::optional<std::string> sha;
      if (e.sha256) {
        sha = lower(*e.sha256);
        if (!is_sha256_hex(*sha))
          throw Error(ErrorKind::Bank, m.conn.path,
                      where() + "'" + *e.sha256 + "' is not a SHA-256 (64 hex characters)");
      }
      std::optional<std::int64_t> existing;
      Stmt& look = sha ? by_sha : by_hash;
      look.reset();
      if (sha) {
        by_sha.bind(1, std::string_view(*sha));
      } else {
        by_hash.bind(1, std::string_view(e.source))
            .bind(2, e.pdq)
            .bind(3, std::string_view(origin_name(e.origin)));
      }
      if (look.step()) existing = look.i64(0);
      if (existing) {
        r.ids.push_back(*existing);
        r.was_duplicate.push_back(true);
        ++r.duplicates;
        continue;
      }
      insert.reset();
      if (sha)
        insert.bind(1, std::string_view(*sha));
      else
        insert.bind_null(1);
      insert.bind(2, e.pdq);
      if (e.quality)
        insert.bind(3, static_cast<std::int64_t>(*e.quality));
      else
        insert.bind_null(3);
      insert.bind(4, std::string_view(e.label))
          .bind(5, std::string_view(e.source))
          .bind(6, std::string_view(origin_name(e.origin)))
          .bind(7, now);
      insert.step();
      const std::int64_t id = sqlite3_last_insert_rowid(m.conn.db);
      if (insert_local && e.local) {
        const cv::Mat d = e.local->descriptors.isContinuous() ? e.local->descriptors : e.local->descriptors.clone();
        if (d.rows != static_cast<int>(e.local->points.size()) || (d.rows > 0 && d.cols != kOrbBytes))
          throw Error(ErrorKind::Bank, m.conn.path, where() + "local features with mismatched descriptors");
        insert_local->reset();
        insert_local->bind(1, id)
            .bind_blob(2, encode_points(*e.local))
            .bind_blob(3, std::string_view(reinterpret_cast<const char*>(d.data), d.total()));
        insert_local->step();
      }
      if (insert_embed && !e.embedding.empty()) {
        if (m.embed_dim == 0) m.embed_dim = static_cast<int>(e.embedding.size());
        if (static_cast<int>(e.embedding.size()) != m.embed_dim)
          throw Error(ErrorKind::Bank, m.conn.path,
                      where() + "embedding of " + std::to_string(e.embedding.size()) + " values, the bank holds " +
                          std::to_string(m.embed_dim));
        insert_embed->reset();
        insert_embed->bind(1, id).bind_blob(2, float_blob(e.embedding));
        insert_embed->step();
      }
      r.ids.push_back(id);
      r.was_duplicate.push_back(false);
      ++r.added;
      new_ids.push_back(id);
      new_hashes.push_back(e.pdq);
      new_inputs.push_back(i);
    }
    if (r.added > 0) m.set_meta("generation", std::to_string(gen_before + 1));
    tx.commit();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorKind::Bank, m.conn.path, e.what());
  }
  if (r.added == 0) return r;

  const bool others_wrote = gen_before != m.generation;
  const auto total = m.count("SELECT count(*) FROM entries");
  bool type_changes;
  {
    std::shared_lock read(m.index_mu);
    type_changes = m.index->type() != m.type_for(total);
  }
  if (others_wrote || type_changes) {
    // Our index misses someone else's rows, or "auto" just crossed to multihash.
    m.rebuild_index();
  } else {
    std::unique_lock write(m.index_mu);
    m.index->add(new_ids, new_hashes);
    m.generation = gen_before + 1;
    m.dirty = true;
  }
  // Extend the other signals' indexes when they were current; otherwise the next search
  // rebuilds them.
  {
    std::unique_lock write(m.signals_mu);
    if (m.local_index && m.local_gen == gen_before) {
      for (std::size_t k = 0; k < new_ids.size(); ++k)
        if (const auto& f = entries[new_inputs[k]].local) m.local_index->add(new_ids[k], *f);
      m.local_index->prepare();
      m.local_gen = gen_before + 1;
      m.local_dirty = m.local_index->type() != "flat";
    }
    if (m.embed_index && m.embed_gen == gen_before) {
      bool ok = true;
      for (std::size_t k = 0; k < new_ids.size() && ok; ++k) {
        const auto& v = entries[new_inputs[k]].embedding;
        if (v.empty()) continue;
        if (static_cast<int>(v.size()) != m.embed_index->dim()) ok = false;
        else m.embed_index->add(new_ids[k], v);
      }
      if (ok) {
        m.embed_index->prepare();
        m.embed_gen = gen_before + 1;
      } else {
        m.embed_index.reset();
      }
    }
  }
  return r;
}

std::int64_t Bank::remove_ids(std::span<const std::int64_t> ids) {
  return impl_->remove_where([&] {
    Stmt s(impl_->conn, "DELETE FROM entries WHERE id = ?1 RETURNING id");
    std::vector<std::int64_t> gone;
    for (const auto id : ids) {
      s.reset();
      s.bind(1, id);
      while (s.step()) gone.push_back(s.i64(0));
    }
    return gone;
  });
}

void Bank::set_index(const std::string& type, std::optional<std::int64_t> multihash_min_entries) {
  auto& m = *impl_;
  m.require_writable();
  if (!valid_index_type(type))
    throw Error(ErrorKind::Usage, "", "index type must be auto, flat, multihash or compact, not '" + type + "'");
  if (multihash_min_entries && *multihash_min_entries < 0)
    throw Error(ErrorKind::Usage, "", "multihash_min_entries must not be negative");
  std::lock_guard lock(m.db_mu);
  {
    Transaction tx(m.conn, "BEGIN IMMEDIATE");
    m.set_meta("index_type", type);
    if (multihash_min_entries) m.set_meta("multihash_min_entries", std::to_string(*multihash_min_entries));
    tx.commit();
  }
  m.config.index_type = type;
  if (multihash_min_entries) m.config.multihash_min_entries = *multihash_min_entries;
  m.rebuild_index();  // marks the cache out of date: written at flush_index() or close
}

std::int64_t Bank::remove_label(const std::string& label) {
  return impl_->remove_where([&] {
    Stmt s(impl_->conn, "DELETE FROM entries WHERE label = ?1 RETURNING id");
    s.bind(1, std::string_view(label));
    std::vector<std::int64_t> gone;
    while (s.step()) gone.push_back(s.i64(0));
    return gone;
  });
}

std::int64_t Bank::remove_sha256(const std::string& sha256_hex) {
  const std::string sha = lower(sha256_hex);
  return impl_->remove_where([&] {
    Stmt s(impl_->conn, "DELETE FROM entries WHERE sha256 = ?1 RETURNING id");
    s.bind(1, std::string_view(sha));
    std::vector<std::int64_t> gone;
    while (s.step()) gone.push_back(s.i64(0));
    return gone;
  });
}

std::optional<Entry> Bank::get(std::int64_t id) const {
  std::lock_guard lock(impl_->db_mu);
  Stmt s(impl_->conn,
         (std::string("SELECT ") + kEntryColumns + " FROM entries WHERE id = ?1").c_str());
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return entry_from_row(impl_->conn, s);
}

std::optional<Entry> Bank::find_sha256(const std::string& sha256_hex) const {
  std::lock_guard lock(impl_->db_mu);
  Stmt s(impl_->conn,
         (std::string("SELECT ") + kEntryColumns + " FROM entries WHERE sha256 = ?1").c_str());
  s.bind(1, std::string_view(lower(sha256_hex)));
  if (!s.step()) return std::nullopt;
  return entry_from_row(impl_->conn, s);
}

void Bank::for_each(const std::function<bool(const Entry&)>& fn) const {
  // Page through by id so that fn runs without the lock held (it may call get(), or
  // take its time while worker threads search).
  const std::string sql = std::string("SELECT ") + kEntryColumns +
                          " FROM entries WHERE id > ?1 ORDER BY id LIMIT " + std::to_string(kChunk);
  std::int64_t after = std::numeric_limits<std::int64_t>::min();
  for (;;) {
    std::vector<Entry> page;
    {
      std::lock_guard lock(impl_->db_mu);
      Stmt s(impl_->conn, sql.c_str());
      s.bind(1, after);
      while (s.step()) page.push_back(entry_from_row(impl_->conn, s));
    }
    for (const auto& e : page)
      if (!fn(e)) return;
    if (page.size() < kChunk) return;
    after = page.back().id;
  }
}

std::vector<PdqMatch> Bank::search_pdq(std::span<const Hash256> queries, int max_distance) const {
  {
    std::lock_guard lock(impl_->db_mu);
    impl_->refresh_if_changed();
  }
  std::vector<std::vector<IndexHit>> per_query;
  {
    std::shared_lock lock(impl_->index_mu);
    per_query = impl_->index->range_search(queries, max_distance);
  }
  // One row per entry: its smallest distance, and the first query that reached it.
  std::unordered_map<std::int64_t, PdqMatch> best;
  for (std::size_t q = 0; q < per_query.size(); ++q) {
    for (const auto& h : per_query[q]) {
      auto [it, inserted] = best.try_emplace(h.id, PdqMatch{h.id, h.distance, static_cast<int>(q)});
      if (!inserted && h.distance < it->second.distance)
        it->second = PdqMatch{h.id, h.distance, static_cast<int>(q)};
    }
  }
  std::vector<PdqMatch> out;
  out.reserve(best.size());
  for (const auto& [id, m] : best) out.push_back(m);
  std::sort(out.begin(), out.end(), [](const PdqMatch& a, const PdqMatch& b) {
    return a.distance != b.distance ? a.distance < b.distance : a.id < b.id;
  });
  return out;
}

std::vector<LocalMatch> Bank::search_local(const LocalFeatures& query, const LocalVerifyParams& params) const {
  auto& m = *impl_;
  std::vector<LocalMatch> out;
  if (!m.config.has("local") || query.size() == 0) return out;
  m.make_fresh(m.local_index, m.local_gen, [&](std::uint64_t* g) { return m.build_local(g); });
  std::shared_lock read(m.signals_mu);
  for (const LocalCandidate& c : m.local_index->candidates(query)) {
    const auto f = m.local_index->features(c.id);
    if (!f) continue;
    out.push_back({c.id, c.votes, verify_local(query, *f, params)});
  }
  std::sort(out.begin(), out.end(), [](const LocalMatch& a, const LocalMatch& b) {
    return a.verification.inliers != b.verification.inliers ? a.verification.inliers > b.verification.inliers
                                                            : a.id < b.id;
  });
  return out;
}

std::vector<EmbedMatch> Bank::search_embed(std::span<const float> query, int k, float min_similarity) const {
  auto& m = *impl_;
  std::vector<EmbedMatch> out;
  if (!m.config.has("embed") || query.empty()) return out;
  m.make_fresh(m.embed_index, m.embed_gen, [&](std::uint64_t* g) { return m.build_embed(g); });
  std::shared_lock read(m.signals_mu);
  if (static_cast<int>(query.size()) != m.embed_index->dim() && m.embed_index->size() > 0)
    throw Error(ErrorKind::Usage, m.conn.path,
                "the query embedding has " + std::to_string(query.size()) + " values, the bank's " +
                    std::to_string(m.embed_index->dim()));
  for (const auto& h : m.embed_index->search(query, k, min_similarity)) out.push_back({h.id, h.similarity});
  return out;
}

BankStats Bank::stats() const {
  auto& m = *impl_;
  std::lock_guard lock(m.db_mu);
  m.refresh_if_changed();
  BankStats st;
  {
    Transaction read(m.conn, "BEGIN");
    Stmt s(m.conn,
           "SELECT count(*), coalesce(sum(origin = 'indexed'), 0), coalesce(sum(origin = "
           "'imported'), 0), "
           "coalesce(sum(quality < ?1), 0) FROM entries");
    s.bind(1, static_cast<std::int64_t>(m.config.min_quality));
    s.step();
    st.entries = s.i64(0);
    st.indexed = s.i64(1);
    st.imported = s.i64(2);
    st.low_quality = s.i64(3);
    st.labels = m.count("SELECT count(DISTINCT label) FROM entries WHERE label <> ''");
    st.generation = m.read_generation();
    if (m.signal_tables) {
      Stmt l(m.conn,
             "SELECT count(*), coalesce(sum(length(keypoints) / 4 - 1), 0), "
             "coalesce(sum(length(keypoints) + length(descriptors) + 16), 0) FROM local_features");
      l.step();
      st.local_entries = l.i64(0);
      st.local_keypoints = l.i64(1);
      st.local_db_bytes = static_cast<std::uintmax_t>(l.i64(2));
      Stmt e(m.conn, "SELECT count(*), coalesce(sum(length(vector) + 16), 0) FROM embeddings");
      e.step();
      st.embed_entries = e.i64(0);
      st.embed_db_bytes = static_cast<std::uintmax_t>(e.i64(1));
    }
    read.commit();
  }
  st.signals = m.config.signals;
  st.embed_model = m.config.embed_model;
  {
    std::shared_lock slock(m.signals_mu);
    if (m.local_index) {
      st.local_memory_bytes = m.local_index->memory_bytes();
      st.local_index_type = m.local_index->type();
    }
  }
  st.format_version = m.format_version;
  st.db_bytes = file_size_or_zero(m.path) + file_size_or_zero(fs::path(m.path.string() + "-wal"));
  st.index_cache_bytes = file_size_or_zero(pdq_index_path(m.path));
  std::shared_lock ilock(m.index_mu);
  st.index_type = m.index->type();
  st.index_memory_bytes = m.index->memory_bytes();
  return st;
}

namespace {

// Appends problem lines of one kind, summarising beyond kMaxListedProblems.
struct ProblemList {
  std::vector<std::string>& out;
  std::size_t n = 0;
  void add(std::string line) {
    if (n++ < kMaxListedProblems) out.push_back(std::move(line));
  }
  void finish(const std::string& kind) {
    if (n > kMaxListedProblems)
      out.push_back("... and " + std::to_string(n - kMaxListedProblems) + " more " + kind);
  }
};

std::set<std::int64_t> ids_within(const std::vector<std::pair<std::int64_t, Hash256>>& rows,
                                  const Hash256& q, int max_distance) {
  std::set<std::int64_t> out;
  for (const auto& [id, h] : rows)
    if (hamming(q, h) <= max_distance) out.insert(id);
  return out;
}

// Does `index` hold exactly the records' (id, hash) pairs? `rows` is in id order.
// Returns a description of the first difference, or an empty string.
std::string compare_contents(const PdqIndex& index,
                             const std::vector<std::pair<std::int64_t, Hash256>>& rows) {
  auto held = index.contents();
  std::sort(held.begin(), held.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  std::size_t i = 0;
  for (; i < held.size() && i < rows.size(); ++i) {
    if (held[i].first != rows[i].first)
      return "entry " + std::to_string(std::min(held[i].first, rows[i].first)) +
             " is in one of them only";
    if (held[i].second != rows[i].second)
      return "entry " + std::to_string(rows[i].first) + " has another hash than its record";
  }
  if (held.size() != rows.size())
    return "it holds " + std::to_string(held.size()) + " hashes for " + std::to_string(rows.size()) +
           " entries";
  return {};
}

// Does `index` agree with brute force over `rows` for a sample of entries?
// Returns a description of the first disagreement, or an empty string.
std::string verify_sample(const PdqIndex& index,
                          const std::vector<std::pair<std::int64_t, Hash256>>& rows,
                          int threshold) {
  if (rows.empty()) return {};
  const std::size_t step = std::max<std::size_t>(1, rows.size() / kCheckSamples);
  for (std::size_t i = 0; i < rows.size(); i += step) {
    const auto& [id, h] = rows[i];
    const auto hits = index.range_search(std::span(&h, 1), threshold).at(0);
    std::set<std::int64_t> got;
    bool self = false;
    for (const auto& hit : hits) {
      got.insert(hit.id);
      self = self || (hit.id == id && hit.distance == 0);
    }
    if (!self) return "entry " + std::to_string(id) + " is not found by its own hash";
    const auto want = ids_within(rows, h, threshold);
    if (got != want)
      return "searching for entry " + std::to_string(id) + " finds " + std::to_string(got.size()) +
             " entries, brute force over the records finds " + std::to_string(want.size());
  }
  return {};
}

}  // namespace

CheckReport Bank::check() const {
  auto& m = *impl_;
  CheckReport rep;
  auto& P = rep.problems;
  std::lock_guard lock(m.db_mu);
  try {
    m.refresh_if_changed();
  } catch (const Error& e) {
    P.push_back(std::string("cannot read the bank: ") + e.reason());
  }

  {
    Stmt s(m.conn, "PRAGMA integrity_check");
    ProblemList list{P};
    while (s.step())
      if (s.text(0) != "ok") list.add("SQLite integrity check: " + s.text(0));
    list.finish("SQLite integrity problems");
  }

  // Meta: re-read rather than trusting what open() parsed.
  const auto meta_int = [&](const char* key, std::int64_t lo, std::int64_t hi) {
    const auto v = m.meta(key);
    const auto n = v ? parse_int(*v) : std::nullopt;
    if (!n || *n < lo || *n > hi)
      P.push_back(std::string("meta '") + key + "' is " + (v ? "'" + *v + "'" : "missing") +
                  " (expected a number in " + std::to_string(lo) + ".." + std::to_string(hi) + ")");
  };
  meta_int("format_version", 1, kFormatVersion);
  meta_int("created_at", 0, INT64_MAX);
  meta_int("pdq_threshold", 0, 256);
  meta_int("min_quality", 0, 100);
  meta_int("multihash_min_entries", 0, INT64_MAX);
  if (const auto t = m.meta("index_type"); !t || !valid_index_type(*t))
    P.push_back("meta 'index_type' is missing or not auto/flat/multihash/compact");
  if (const auto sg = m.meta("signals"); !sg || sg->find("pdq") == std::string::npos)
    P.push_back("meta 'signals' is missing or does not list pdq");
  const auto gen_text = m.meta("generation");
  const auto db_gen_parsed = gen_text ? parse_uint(*gen_text) : std::nullopt;
  if (!db_gen_parsed) P.push_back("meta 'generation' is missing or not a number");
  const bool have_gen = db_gen_parsed.has_value();
  const std::uint64_t bank_gen = db_gen_parsed.value_or(0);

  // Records.
  std::vector<std::pair<std::int64_t, Hash256>> rows;
  std::int64_t total = 0;
  {
    Stmt s(m.conn,
           "SELECT id, pdq, typeof(pdq), quality, typeof(quality), origin, sha256 FROM entries "
           "ORDER BY id");
    ProblemList list{P};
    while (s.step()) {
      ++total;
      const auto id = std::to_string(s.i64(0));
      if (const auto h = hash_from_blob(s.blob(1)); h && s.text(2) == "blob")
        rows.emplace_back(s.i64(0), *h);
      else
        list.add("entry " + id + ": PDQ hash is a " + s.text(2) + " of " +
                 std::to_string(s.blob(1).size()) + " bytes (expected a 32-byte blob)");
      if (!s.null(3) && (s.text(4) != "integer" || s.i64(3) < 0 || s.i64(3) > 100))
        list.add("entry " + id + ": quality '" + s.text(3) + "' is not an integer in 0..100");
      if (const auto o = s.text(5); o != "indexed" && o != "imported")
        list.add("entry " + id + ": origin '" + o + "' is neither indexed nor imported");
      if (!s.null(6) && !is_sha256_hex(s.text(6)))
        list.add("entry " + id + ": sha256 '" + s.text(6) + "' is not 64 lowercase hex characters");
    }
    list.finish("damaged entries");
  }

  // The other signals' records: each must decode as build_local()/build_embed() read it
  // (a damaged row is left out of the search, so it is named here).
  std::size_t local_rows = 0;
  if (m.signal_tables) {
    {
      Stmt s(m.conn, "SELECT entry_id, keypoints, descriptors FROM local_features ORDER BY entry_id");
      ProblemList list{P};
      while (s.step()) {
        try {
          const LocalFeatures f = decode_local(s.blob(1), s.blob(2), m.conn.path);
          if (f.descriptors.rows == static_cast<int>(f.size()) && (f.size() == 0 || f.descriptors.cols == kOrbBytes))
            local_rows += f.size();
          else
            list.add("entry " + std::to_string(s.i64(0)) + ": local features have " + std::to_string(f.size()) +
                     " keypoints but " + std::to_string(f.descriptors.rows) + " descriptors");
        } catch (const Error& e) {
          list.add("entry " + std::to_string(s.i64(0)) + ": local features: " + e.reason());
        }
      }
      list.finish("damaged local-feature rows");
    }
    {
      Stmt s(m.conn, "SELECT entry_id, vector FROM embeddings ORDER BY entry_id");
      ProblemList list{P};
      std::size_t dim = 0;
      while (s.step()) {
        const auto b = s.blob(1);
        const auto id = std::to_string(s.i64(0));
        if (b.empty() || b.size() % sizeof(float) != 0) {
          list.add("entry " + id + ": embedding of " + std::to_string(b.size()) + " bytes (not a float vector)");
          continue;
        }
        if (dim == 0) dim = b.size() / sizeof(float);
        if (b.size() / sizeof(float) != dim) {
          list.add("entry " + id + ": embedding of " + std::to_string(b.size() / sizeof(float)) +
                   " dimensions where the others have " + std::to_string(dim));
          continue;
        }
        std::vector<float> v(dim);
        std::memcpy(v.data(), b.data(), b.size());
        if (!std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); }))
          list.add("entry " + id + ": embedding holds a value that is not a finite number");
      }
      list.finish("damaged embeddings");
    }
    for (const char* table : {"local_features", "embeddings"}) {
      const std::string sql = std::string("SELECT count(*) FROM ") + table + " WHERE entry_id NOT IN (SELECT id FROM entries)";
      Stmt s(m.conn, sql.c_str());
      if (s.step() && s.i64(0) > 0)
        P.push_back(std::to_string(s.i64(0)) + " rows of " + table + " belong to no entry");
    }
  }

  // The index in use against the records.
  {
    std::shared_lock ilock(m.index_mu);
    if (m.index->size() != static_cast<std::size_t>(total))
      P.push_back("the PDQ index holds " + std::to_string(m.index->size()) +
                  " hashes but the bank has " + std::to_string(total) + " entries");
    std::string why = compare_contents(*m.index, rows);
    if (why.empty()) why = verify_sample(*m.index, rows, m.config.pdq_threshold);
    if (!why.empty()) P.push_back("the PDQ index disagrees with the records: " + why);
  }

  // The cache file: a derived file, only a problem if it would be trusted while wrong.
  const auto cache = pdq_index_path(m.path);
  std::error_code ec;
  if (fs::exists(cache, ec) && have_gen) {
    std::uint64_t cache_gen = 0;
    const auto cached = load_pdq_index(cache, &cache_gen);
    if (!cached) {
      rep.notes.push_back(
          "the index cache " + cache.string() +
          " is unreadable or damaged; it is rebuilt from the records at the next open");
    } else if (cache_gen < bank_gen) {
      rep.notes.push_back("the index cache is at generation " + std::to_string(cache_gen) +
                          ", the bank at " + std::to_string(bank_gen) +
                          ": it is rebuilt at the next open");
    } else if (cache_gen > bank_gen) {
      rep.notes.push_back("the index cache claims generation " + std::to_string(cache_gen) +
                          ", newer than the bank's " + std::to_string(bank_gen) +
                          " (bank restored from a backup?); it is ignored and rewritten");
    } else {
      std::string why = compare_contents(*cached, rows);
      if (why.empty()) why = verify_sample(*cached, rows, m.config.pdq_threshold);
      if (!why.empty())
        P.push_back("the index cache " + cache.string() +
                    " carries the bank's generation but disagrees with the records (" + why +
                    "); delete it to have it rebuilt");
    }
  }

  // The local-feature layout cache: derived, checksummed and refused at load when it does
  // not fit, so any finding here is a note: it is rebuilt at the next local search.
  const auto layout_file = local_layout_path(m.path);
  if (fs::exists(layout_file, ec) && have_gen) {
    const std::string layout = read_local_layout(m.path, bank_gen);
    if (layout.empty()) {
      rep.notes.push_back("the local-feature layout cache " + layout_file.string() +
                          " is damaged or of another generation; it is rebuilt at the next local search");
    } else if (const std::string why = LocalIndex::layout_mismatch(layout, local_rows, LocalIndexParams{});
               !why.empty()) {
      rep.notes.push_back("the local-feature layout cache " + layout_file.string() + " does not fit the records (" +
                          why + "); it is rebuilt at the next local search");
    }
  }

  rep.ok = P.empty();
  return rep;
}

void Bank::flush_index() {
  auto& m = *impl_;
  std::lock_guard lock(m.db_mu);
  try {
    m.save_index_locked();
    m.save_local_layout();
  } catch (...) {
    // A read-only bank may sit where we cannot write; its cache is a courtesy.
    if (m.mode != OpenMode::ReadOnly) throw;
  }
}

}  // namespace hashwall
