// The SQLite store: a bank file in WAL mode (docs/BANK_FORMAT.md). With sqlite_schema.cpp
// (the schema and its migrations), every SQL statement of hashwall is here.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "bank/sqlite.hpp"
#include "bank/store.hpp"
#include "bank/values.hpp"
#include "core/error.hpp"
#include "local/local_features.hpp"

namespace hashwall {

namespace {

namespace fs = std::filesystem;

// The signals whose records live in the tables of format 2 (`embeddings`; `local_features`,
// a record split into its keypoint and descriptor blobs, local/local_features.hpp) rather
// than in signal_rows (format 3).
constexpr const char* kEmbedSignal = "embed";
constexpr const char* kLocalSignal = "local";
using bank_detail::file_size_or_zero;
using bank_detail::hash_from_blob;
using bank_detail::parse_int;
using bank_detail::parse_uint;
using sqlite::Conn;
using sqlite::Stmt;

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

// The change log's id lists: ascending ids as LEB128 varints of their differences, so a
// batch of consecutive ids costs a byte each.
std::string encode_ids(std::vector<std::int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  std::string out;
  std::uint64_t prev = 0;
  for (const auto id : ids) {
    std::uint64_t d = static_cast<std::uint64_t>(id) - prev;
    prev = static_cast<std::uint64_t>(id);
    do {
      const auto byte = static_cast<std::uint8_t>(d & 0x7f);
      d >>= 7;
      out.push_back(static_cast<char>(byte | (d ? 0x80 : 0)));
    } while (d);
  }
  return out;
}

std::optional<std::vector<std::int64_t>> decode_ids(std::string_view b) {
  std::vector<std::int64_t> out;
  std::uint64_t prev = 0, d = 0;
  int shift = 0;
  for (const char c : b) {
    const auto byte = static_cast<std::uint8_t>(c);
    if (shift > 63) return std::nullopt;
    d |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    shift += 7;
    if (byte & 0x80) continue;
    prev += d;
    out.push_back(static_cast<std::int64_t>(prev));
    d = 0;
    shift = 0;
  }
  if (shift != 0) return std::nullopt;
  return out;
}

class SqliteTransaction : public Store::Transaction {
 public:
  SqliteTransaction(const Conn& c, const char* begin) : tx_(c, begin) {}
  void commit() override { tx_.commit(); }

 private:
  sqlite::Transaction tx_;
};

class SqliteStore : public Store {
 public:
  ~SqliteStore() override {
    if (conn_.db) sqlite3_close_v2(conn_.db);
  }

  // Opens (and with `create`, fills an empty database with the schema and meta).
  void open(const fs::path& path, OpenMode mode, bool create_allowed,
            const std::vector<std::pair<std::string, std::string>>& initial_meta) {
    path_ = path;
    mode_ = mode;
    conn_.path = path.string();
    int flags = SQLITE_OPEN_NOMUTEX;  // the Bank serialises all use of the connection
    flags |= mode == OpenMode::ReadOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (create_allowed) flags |= SQLITE_OPEN_CREATE;
    const int rc = sqlite3_open_v2(path.c_str(), &conn_.db, flags, nullptr);
    if (rc != SQLITE_OK) conn_.fail(rc, "cannot open the bank");
    sqlite3_extended_result_codes(conn_.db, 1);
    sqlite3_busy_timeout(conn_.db, sqlite::kBusyTimeoutMs);

    // Look before writing anything: never turn someone else's database into WAL mode.
    bool create = false;
    if (!has_table("meta")) {
      const bool empty = count("SELECT count(*) FROM sqlite_master") == 0;
      if (!create_allowed || !empty)
        throw Error(ErrorKind::Bank, conn_.path,
                    empty ? "not a hashwall bank: an empty SQLite database"
                          : "not a hashwall bank: an SQLite database without a meta table");
      create = true;
    }
    if (mode != OpenMode::ReadOnly) {
      // WAL: readers (scans, the server) never block the writer, and vice versa.
      conn_.exec("PRAGMA journal_mode = WAL");
      // FULL: a commit is on disk before add() returns, and so before an index cache
      // labelled with the new generation can be written (docs/BANK_FORMAT.md).
      conn_.exec("PRAGMA synchronous = FULL");
    }
    if (create) sqlite::create_schema(conn_, initial_meta);

    const auto fv = meta("format_version");
    const auto v = fv ? parse_int(*fv) : std::nullopt;
    if (!v)
      throw Error(ErrorKind::Bank, conn_.path, "not a hashwall bank: meta has no format_version");
    if (*v > kFormatVersion)
      throw Error(ErrorKind::Bank, conn_.path,
                  "bank format version " + std::to_string(*v) +
                      " is newer than this hashwall understands (" +
                      std::to_string(kFormatVersion) + "); upgrade hashwall");
    if (*v < 1)
      throw Error(ErrorKind::Bank, conn_.path,
                  "corrupt bank: meta 'format_version' is missing or invalid (run 'hashwall "
                  "check')");
    format_version_ = static_cast<int>(*v);
    look_at_tables();
    data_version_ = read_data_version();
  }

  std::unique_ptr<Transaction> begin_read() override {
    reset_cached();
    return std::make_unique<SqliteTransaction>(conn_, "BEGIN");
  }
  std::unique_ptr<Transaction> begin_write() override {
    reset_cached();
    return std::make_unique<SqliteTransaction>(conn_, "BEGIN IMMEDIATE");
  }
  const std::string& where() const override { return conn_.path; }
  int format_version() const override { return format_version_; }
  bool has_signal_tables() const override { return signal_tables_; }
  bool has_record_table() const override { return record_table_; }
  bool has_digest_table() const override { return digest_table_; }

  void upgrade() override {
    if (format_version_ >= kFormatVersion || mode_ == OpenMode::ReadOnly) return;
    sqlite::upgrade_schema(conn_);
    format_version_ = kFormatVersion;
    look_at_tables();
  }

  bool changed_elsewhere() override {
    const auto v = read_data_version();
    if (v == data_version_) return false;
    data_version_ = v;
    return true;
  }

  std::optional<std::string> meta(const std::string& key) override {
    Stmt s(conn_, "SELECT value FROM meta WHERE key = ?1");
    s.bind(1, std::string_view(key));
    if (!s.step() || s.null(0)) return std::nullopt;
    return s.text(0);
  }

  void set_meta(const std::string& key, const std::string& value) override {
    Stmt s(conn_,
           "INSERT INTO meta(key, value) VALUES(?1, ?2) "
           "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    s.bind(1, std::string_view(key)).bind(2, std::string_view(value));
    s.step();
  }

  std::optional<std::int64_t> id_of_sha256(std::string_view sha) override {
    auto& s = stmt(by_sha_, "SELECT id FROM entries WHERE sha256 = ?1");
    s.bind(1, sha);
    return first_id(s);
  }

  std::optional<std::int64_t> id_of_unhashed(std::string_view source, const Hash256& pdq,
                                             Origin origin) override {
    // INDEXED BY: left to itself, SQLite walks the sha256 UNIQUE index over every
    // imported (NULL) row, which makes large imports quadratic.
    auto& s = stmt(by_hash_,
                   "SELECT id FROM entries INDEXED BY entries_unhashed WHERE sha256 IS NULL AND "
                   "source = ?1 AND pdq = ?2 AND origin = ?3 ORDER BY id LIMIT 1");
    s.bind(1, source).bind(2, pdq).bind(3, std::string_view(origin_name(origin)));
    return first_id(s);
  }

  std::int64_t insert_entry(const NewEntry& e, const std::optional<std::string>& sha,
                            std::int64_t added_at) override {
    auto& s = stmt(insert_,
                   "INSERT INTO entries(sha256, pdq, quality, label, source, origin, added_at) "
                   "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (sha)
      s.bind(1, std::string_view(*sha));
    else
      s.bind_null(1);
    s.bind(2, e.pdq);
    if (e.quality)
      s.bind(3, static_cast<std::int64_t>(*e.quality));
    else
      s.bind_null(3);
    s.bind(4, std::string_view(e.label))
        .bind(5, std::string_view(e.source))
        .bind(6, std::string_view(origin_name(e.origin)))
        .bind(7, added_at);
    s.step();
    s.reset();
    return sqlite3_last_insert_rowid(conn_.db);
  }

  void insert_record(const std::string& signal, std::int64_t id, std::string_view record) override {
    if (signal == kLocalSignal) {
      const auto blobs = split_local_record(record);
      if (!blobs) throw Error(ErrorKind::Bank, where(), "a local record that is not two blobs");
      auto& s =
          stmt(insert_local_,
               "INSERT INTO local_features(entry_id, keypoints, descriptors) VALUES(?1, ?2, ?3)");
      s.bind(1, id).bind_blob(2, blobs->first).bind_blob(3, blobs->second);
      s.step();
      s.reset();
      return;
    }
    // The embedding keeps the table it has had since format 2.
    if (signal == kEmbedSignal) {
      auto& s = stmt(insert_embed_, "INSERT INTO embeddings(entry_id, vector) VALUES(?1, ?2)");
      s.bind(1, id).bind_blob(2, record);
      s.step();
      s.reset();
      return;
    }
    auto& s =
        stmt(insert_row_, "INSERT INTO signal_rows(signal, entry_id, record) VALUES(?1, ?2, ?3)");
    s.bind(1, std::string_view(signal)).bind(2, id).bind_blob(3, record);
    s.step();
    s.reset();
  }

  std::vector<RemovedEntry> remove_ids(std::span<const std::int64_t> ids) override {
    Stmt s(conn_, "DELETE FROM entries WHERE id = ?1 RETURNING id, pdq");
    std::vector<RemovedEntry> gone;
    for (const auto id : ids) {
      s.reset();
      s.bind(1, id);
      while (s.step()) gone.push_back({s.i64(0), std::string(s.blob(1))});
    }
    return gone;
  }

  void insert_digest(std::int64_t id, std::string_view digest) override {
    if (!digest_table_) return;  // cannot happen read-write: upgrade() made the table
    auto& s = stmt(insert_digest_, "INSERT INTO entry_digests(entry_id, digest) VALUES(?1, ?2)");
    s.bind(1, id).bind_blob(2, digest);
    s.step();
    s.reset();
  }

  std::vector<std::string> take_digests(std::span<const std::int64_t> ids) override {
    std::vector<std::string> out;
    if (!digest_table_) return out;
    Stmt s(conn_, "DELETE FROM entry_digests WHERE entry_id = ?1 RETURNING digest");
    for (const auto id : ids) {
      s.reset();
      s.bind(1, id);
      while (s.step()) out.emplace_back(s.blob(0));
    }
    return out;
  }

  std::vector<RemovedEntry> remove_label(const std::string& label) override {
    Stmt s(conn_, "DELETE FROM entries WHERE label = ?1 RETURNING id, pdq");
    s.bind(1, std::string_view(label));
    std::vector<RemovedEntry> gone;
    while (s.step()) gone.push_back({s.i64(0), std::string(s.blob(1))});
    return gone;
  }

  std::vector<RemovedEntry> remove_sha256(const std::string& sha) override {
    Stmt s(conn_, "DELETE FROM entries WHERE sha256 = ?1 RETURNING id, pdq");
    s.bind(1, std::string_view(sha));
    std::vector<RemovedEntry> gone;
    while (s.step()) gone.push_back({s.i64(0), std::string(s.blob(1))});
    return gone;
  }

  void log_change(const Change& c) override {
    if (!record_table_) return;  // cannot happen read-write: upgrade() made the table
    Stmt s(conn_, "INSERT INTO changes(generation, op, ids) VALUES(?1, ?2, ?3)");
    s.bind(1, static_cast<std::int64_t>(c.generation))
        .bind(2, std::string_view(c.op == ChangeOp::Add ? "add" : "remove"))
        .bind_blob(3, encode_ids(c.ids));
    s.step();
  }

  void prune_changes(std::uint64_t through) override {
    if (!record_table_) return;
    const auto from_text = meta("changes_from");
    const auto from = from_text ? parse_uint(*from_text) : std::nullopt;
    if (from && *from >= through) return;
    Stmt s(conn_, "DELETE FROM changes WHERE generation <= ?1");
    s.bind(1, static_cast<std::int64_t>(through));
    s.step();
    set_meta("changes_from", std::to_string(through));
  }

  std::optional<Entry> get(std::int64_t id) override {
    Stmt s(conn_, (std::string("SELECT ") + kEntryColumns + " FROM entries WHERE id = ?1").c_str());
    s.bind(1, id);
    if (!s.step()) return std::nullopt;
    return entry_from_row(conn_, s);
  }

  std::optional<Entry> find_sha256(std::string_view sha) override {
    Stmt s(conn_,
           (std::string("SELECT ") + kEntryColumns + " FROM entries WHERE sha256 = ?1").c_str());
    s.bind(1, sha);
    if (!s.step()) return std::nullopt;
    return entry_from_row(conn_, s);
  }

  std::vector<Entry> entries_after(std::int64_t after, std::size_t limit) override {
    const std::string sql = std::string("SELECT ") + kEntryColumns +
                            " FROM entries WHERE id > ?1 ORDER BY id LIMIT " +
                            std::to_string(limit);
    Stmt s(conn_, sql.c_str());
    s.bind(1, after);
    std::vector<Entry> page;
    while (s.step()) page.push_back(entry_from_row(conn_, s));
    return page;
  }

  std::optional<std::vector<Change>> changes_since(std::uint64_t after) override {
    if (!record_table_) return std::nullopt;
    const auto from_text = meta("changes_from");
    const auto from = from_text ? parse_int(*from_text) : std::nullopt;
    if (!from || after < static_cast<std::uint64_t>(*from)) return std::nullopt;
    Stmt s(conn_,
           "SELECT generation, op, ids FROM changes WHERE generation > ?1 ORDER BY generation");
    s.bind(1, static_cast<std::int64_t>(after));
    std::vector<Change> out;
    while (s.step()) {
      Change c;
      c.generation = static_cast<std::uint64_t>(s.i64(0));
      c.op = s.text(1) == "add" ? ChangeOp::Add : ChangeOp::Remove;
      auto ids = decode_ids(s.blob(2));
      if (!ids) return std::nullopt;  // damaged: the caller rebuilds
      c.ids = std::move(*ids);
      out.push_back(std::move(c));
    }
    return out;
  }

  void scan_pdq(const RowFn& fn, IdFilter only) override {
    scan_ids("SELECT id, pdq FROM entries ORDER BY id", "SELECT id, pdq FROM entries WHERE id = ?1",
             fn, only, {});
  }

  void scan_records(const std::string& signal, const RowFn& fn, IdFilter only) override {
    if (signal == kLocalSignal) {
      if (!signal_tables_) return;
      const auto joined = [&](std::int64_t id, std::string_view kp, std::string_view desc) {
        fn(id, local_record(kp, desc));
      };
      if (!only) {
        Stmt s(conn_,
               "SELECT entry_id, keypoints, descriptors FROM local_features ORDER BY entry_id");
        while (s.step()) joined(s.i64(0), s.blob(1), s.blob(2));
        return;
      }
      Stmt s(conn_,
             "SELECT entry_id, keypoints, descriptors FROM local_features WHERE entry_id = ?1");
      for (const auto id : *only) {
        s.reset();
        s.bind(1, id);
        while (s.step()) joined(s.i64(0), s.blob(1), s.blob(2));
      }
      return;
    }
    if (signal == kEmbedSignal) {
      if (!signal_tables_) return;
      scan_ids("SELECT entry_id, vector FROM embeddings ORDER BY entry_id",
               "SELECT entry_id, vector FROM embeddings WHERE entry_id = ?1", fn, only, {});
      return;
    }
    if (!record_table_) return;
    scan_ids("SELECT entry_id, record FROM signal_rows WHERE signal = ?2 ORDER BY entry_id",
             "SELECT entry_id, record FROM signal_rows WHERE entry_id = ?1 AND signal = ?2", fn,
             only, signal);
  }

  void scan_all_records(
      const std::function<void(const std::string&, std::int64_t, std::string_view)>& fn) override {
    if (signal_tables_) {
      const std::string embed = kEmbedSignal, local = kLocalSignal;
      scan_records(embed, [&](std::int64_t id, std::string_view r) { fn(embed, id, r); }, {});
      scan_records(local, [&](std::int64_t id, std::string_view r) { fn(local, id, r); }, {});
    }
    if (!record_table_) return;
    Stmt s(conn_, "SELECT signal, entry_id, record FROM signal_rows ORDER BY signal, entry_id");
    while (s.step()) fn(s.text(0), s.i64(1), s.blob(2));
  }

  std::optional<std::string> first_record(const std::string& signal) override {
    std::optional<std::string> out;
    const auto one = [&](std::int64_t, std::string_view r) { out = std::string(r); };
    if (signal == kEmbedSignal) {
      if (!signal_tables_) return out;
      Stmt s(conn_, "SELECT entry_id, vector FROM embeddings ORDER BY entry_id LIMIT 1");
      if (s.step()) one(s.i64(0), s.blob(1));
    } else if (signal == kLocalSignal) {
      if (!signal_tables_) return out;
      Stmt s(conn_,
             "SELECT entry_id, keypoints, descriptors FROM local_features ORDER BY entry_id "
             "LIMIT 1");
      if (s.step()) out = local_record(s.blob(1), s.blob(2));
    } else if (record_table_) {
      Stmt s(
          conn_,
          "SELECT entry_id, record FROM signal_rows WHERE signal = ?1 ORDER BY entry_id LIMIT 1");
      s.bind(1, std::string_view(signal));
      if (s.step()) one(s.i64(0), s.blob(1));
    }
    return out;
  }

  void scan_raw_entries(const std::function<void(const RawEntry&)>& fn) override {
    Stmt s(conn_,
           "SELECT id, pdq, typeof(pdq), quality, typeof(quality), origin, sha256, label, source, "
           "added_at FROM entries ORDER BY id");
    while (s.step()) {
      RawEntry e;
      e.id = s.i64(0);
      e.pdq = std::string(s.blob(1));
      e.pdq_type = s.text(2);
      if (!s.null(3)) {
        e.quality = s.i64(3);
        e.quality_type = s.text(4);
        e.quality_text = s.text(3);
      }
      e.origin = s.text(5);
      if (!s.null(6)) e.sha256 = s.text(6);
      e.label = s.text(7);
      e.source = s.text(8);
      e.added_at = s.i64(9);
      fn(e);
    }
  }

  void scan_digests(const RowFn& fn) override {
    if (!digest_table_) return;
    Stmt s(conn_, "SELECT entry_id, digest FROM entry_digests ORDER BY entry_id");
    while (s.step()) fn(s.i64(0), s.blob(1));
  }

  std::int64_t count_entries() override { return count("SELECT count(*) FROM entries"); }
  std::int64_t count_valid_pdq() override {
    return count("SELECT coalesce(sum(length(pdq) = 32), 0) FROM entries");
  }

  EntryCounts entry_counts(int min_quality) override {
    Stmt s(conn_,
           "SELECT count(*), coalesce(sum(origin = 'indexed'), 0), coalesce(sum(origin = "
           "'imported'), 0), coalesce(sum(quality < ?1), 0) FROM entries");
    s.bind(1, static_cast<std::int64_t>(min_quality));
    s.step();
    EntryCounts c;
    c.entries = s.i64(0);
    c.indexed = s.i64(1);
    c.imported = s.i64(2);
    c.low_quality = s.i64(3);
    c.labels = count("SELECT count(DISTINCT label) FROM entries WHERE label <> ''");
    return c;
  }

  // Bytes: the blobs plus 16 for the key and row overhead.
  RowCounts record_counts(const std::string& signal) override {
    RowCounts c;
    if (signal == kLocalSignal) {
      // Items: keypoints (the keypoint blob holds the working size, then 4 bytes a point).
      if (!signal_tables_) return c;
      Stmt s(conn_,
             "SELECT count(*), coalesce(sum(length(keypoints) / 4 - 1), 0), "
             "coalesce(sum(length(keypoints) + length(descriptors) + 16), 0) FROM local_features");
      s.step();
      c.rows = s.i64(0);
      c.items = s.i64(1);
      c.bytes = static_cast<std::uintmax_t>(s.i64(2));
      return c;
    }
    if (signal == kEmbedSignal) {
      if (!signal_tables_) return c;
      Stmt s(conn_, "SELECT count(*), coalesce(sum(length(vector) + 16), 0) FROM embeddings");
      s.step();
      c.rows = c.items = s.i64(0);
      c.bytes = static_cast<std::uintmax_t>(s.i64(1));
      return c;
    }
    if (!record_table_) return c;
    Stmt s(conn_,
           "SELECT count(*), coalesce(sum(length(record) + 16), 0) FROM signal_rows "
           "WHERE signal = ?1");
    s.bind(1, std::string_view(signal));
    s.step();
    c.rows = c.items = s.i64(0);
    c.bytes = static_cast<std::uintmax_t>(s.i64(1));
    return c;
  }

  std::uintmax_t bytes_on_disk() override {
    return file_size_or_zero(path_) + file_size_or_zero(fs::path(path_.string() + "-wal"));
  }

  std::vector<std::string> integrity_problems() override {
    std::vector<std::string> out;
    Stmt s(conn_, "PRAGMA integrity_check");
    while (s.step())
      if (s.text(0) != "ok") out.push_back(s.text(0));
    return out;
  }

  std::vector<std::int64_t> indexed_without(const std::string& signal) override {
    std::vector<std::int64_t> out;
    if (!signal_tables_) return out;
    const char* sql = signal == "local"
                          ? "SELECT id FROM entries WHERE origin = 'indexed' AND id NOT IN "
                            "(SELECT entry_id FROM local_features) ORDER BY id"
                          : "SELECT id FROM entries WHERE origin = 'indexed' AND id NOT IN "
                            "(SELECT entry_id FROM embeddings) ORDER BY id";
    Stmt s(conn_, sql);
    while (s.step()) out.push_back(s.i64(0));
    return out;
  }

  std::vector<std::string> orphan_rows() override {
    std::vector<std::string> out;
    std::vector<const char*> tables;
    if (signal_tables_) tables = {"local_features", "embeddings"};
    if (record_table_) tables.push_back("signal_rows");
    if (digest_table_) tables.push_back("entry_digests");
    for (const char* table : tables) {
      const std::string sql = std::string("SELECT count(*) FROM ") + table +
                              " WHERE entry_id NOT IN (SELECT id FROM entries)";
      const auto n = count(sql.c_str());
      if (n > 0) out.push_back(std::to_string(n) + " rows of " + table + " belong to no entry");
    }
    return out;
  }

 private:
  fs::path path_;
  OpenMode mode_ = OpenMode::ReadOnly;
  Conn conn_;
  int format_version_ = 0;
  bool signal_tables_ = false;
  bool record_table_ = false;
  bool digest_table_ = false;
  std::int64_t data_version_ = -1;
  // Statements of the add() loop, prepared once per connection.
  std::unique_ptr<Stmt> by_sha_, by_hash_, insert_, insert_local_, insert_embed_, insert_row_,
      insert_digest_;

  Stmt& stmt(std::unique_ptr<Stmt>& slot, const char* sql) {
    if (!slot) slot = std::make_unique<Stmt>(conn_, sql);
    slot->reset();
    return *slot;
  }

  // The first row's id, and the statement reset at once: a cached statement left on a row
  // would keep this connection on its snapshot (no other writer seen, every later write
  // transaction refused as busy).
  static std::optional<std::int64_t> first_id(Stmt& s) {
    std::optional<std::int64_t> id;
    if (s.step()) id = s.i64(0);
    s.reset();
    return id;
  }

  void reset_cached() {
    for (auto* slot : {&by_sha_, &by_hash_, &insert_, &insert_local_, &insert_embed_, &insert_row_})
      if (*slot) (*slot)->reset();
  }

  std::int64_t count(const char* sql) const {
    Stmt s(conn_, sql);
    return s.step() ? s.i64(0) : 0;
  }

  bool has_table(const char* name) const {
    Stmt s(conn_, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1");
    s.bind(1, std::string_view(name));
    return s.step() && s.i64(0) > 0;
  }

  void look_at_tables() {
    signal_tables_ = has_table("local_features");
    record_table_ = has_table("signal_rows") && has_table("changes");
    digest_table_ = has_table("entry_digests");
  }

  std::int64_t read_data_version() const { return count("PRAGMA data_version"); }

  // All rows (`all_sql`), or those of the ids in `only` (`one_sql`, ?1 = id), with ?2 bound
  // to `arg` when given.
  void scan_ids(const char* all_sql, const char* one_sql, const RowFn& fn, IdFilter only,
                std::optional<std::string> arg) {
    if (!only) {
      Stmt s(conn_, all_sql);
      if (arg) s.bind(2, std::string_view(*arg));
      while (s.step()) fn(s.i64(0), s.blob(1));
      return;
    }
    Stmt s(conn_, one_sql);
    for (const auto id : *only) {
      s.reset();
      s.bind(1, id);
      if (arg) s.bind(2, std::string_view(*arg));
      while (s.step()) fn(s.i64(0), s.blob(1));
    }
  }
};

}  // namespace

std::unique_ptr<Store> open_sqlite_store(
    const fs::path& path, OpenMode mode,
    const std::vector<std::pair<std::string, std::string>>& initial_meta, bool* created) {
  if (created) *created = false;
  const auto open_file = [&](const fs::path& p, OpenMode m, bool create_allowed) {
    std::error_code ec;
    const bool exists = fs::exists(p, ec);
    if (!exists && !create_allowed)
      throw Error(ErrorKind::Bank, p.string(),
                  "no bank here (create one with 'hashwall index' or 'hashwall import')");
    if (exists && fs::is_directory(p, ec))
      throw Error(ErrorKind::Bank, p.string(), "not a hashwall bank: it is a directory");
    auto store = std::make_unique<SqliteStore>();
    store->open(p, m, create_allowed, initial_meta);
    return store;
  };
  std::error_code ec;
  if (mode != OpenMode::Create || fs::exists(path, ec))
    return open_file(path, mode == OpenMode::Create ? OpenMode::ReadWrite : mode,
                     mode == OpenMode::Create);
  // A new bank is made complete under a temporary name and then linked into place, so a
  // crash during creation never leaves an empty database where the bank should be.
  const fs::path dir = path.has_parent_path() ? path.parent_path() : fs::path(".");
  const fs::path tmp =
      dir / ("." + path.filename().string() + ".creating-" + std::to_string(::getpid()));
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(tmp.string() + suffix, ec);
  // The file first, readable by its owner only (less where the umask says so): SQLite
  // would make it 0644, and gives its -wal and -shm files the database's mode.
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0)
    throw Error(ErrorKind::Io, path.string(),
                std::string("cannot create the bank: ") + std::strerror(errno));
  ::close(fd);
  open_file(tmp, OpenMode::Create, true).reset();
  bool made = ::link(tmp.c_str(), path.c_str()) == 0;
  if (!made && errno != EEXIST) {
    // Filesystems without hard links: a rename (which could replace a bank created by
    // another process in the same instant; link() above is the no-clobber path).
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const int e = errno;
      fs::remove(tmp, ec);
      throw Error(ErrorKind::Io, path.string(),
                  std::string("cannot create the bank: ") + std::strerror(e));
    }
    made = true;
  }
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(tmp.string() + suffix, ec);
  if (created) *created = made;
  return open_file(path, OpenMode::ReadWrite, false);
}

}  // namespace hashwall
