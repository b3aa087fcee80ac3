// The SQLite store: a bank file in WAL mode (docs/BANK_FORMAT.md), opened or created,
// its transactions, format, meta and sizes. With sqlite_records.cpp (the entries, the
// signals' records, the digests and the change log) and sqlite_schema.cpp (the schema and
// its migrations), every SQL statement of hashwall is here; sqlite_store_impl.hpp declares
// the store they share.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bank/sqlite.hpp"
#include "bank/sqlite_store_impl.hpp"
#include "bank/store.hpp"
#include "bank/values.hpp"
#include "core/error.hpp"

namespace hashwall {

namespace sqlite {

namespace {

using bank_detail::file_size_or_zero;
using bank_detail::parse_int;

class SqliteTransaction : public Store::Transaction {
 public:
  SqliteTransaction(const Conn& c, const char* begin) : tx_(c, begin) {}
  void commit() override { tx_.commit(); }

 private:
  sqlite::Transaction tx_;
};

}  // namespace

SqliteStore::~SqliteStore() {
  if (conn_.db) sqlite3_close_v2(conn_.db);
}

// Opens (and with `create`, fills an empty database with the schema and meta).
void SqliteStore::open(const fs::path& path, OpenMode mode, bool create_allowed,
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
                    " is newer than this hashwall understands (" + std::to_string(kFormatVersion) +
                    "); upgrade hashwall");
  if (*v < 1)
    throw Error(ErrorKind::Bank, conn_.path,
                "corrupt bank: meta 'format_version' is missing or invalid (run 'hashwall "
                "check')");
  format_version_ = static_cast<int>(*v);
  look_at_tables();
  data_version_ = read_data_version();
}

std::unique_ptr<Store::Transaction> SqliteStore::begin_read() {
  reset_cached();
  return std::make_unique<SqliteTransaction>(conn_, "BEGIN");
}

std::unique_ptr<Store::Transaction> SqliteStore::begin_write() {
  reset_cached();
  return std::make_unique<SqliteTransaction>(conn_, "BEGIN IMMEDIATE");
}

void SqliteStore::upgrade() {
  if (mode_ == OpenMode::ReadOnly) return;
  if (format_version_ < kFormatVersion) {
    sqlite::upgrade_schema(conn_);
    format_version_ = kFormatVersion;
    look_at_tables();
  }
  // Format 5 banks made before entry_claims came (or upgraded by an older hashwall between
  // our open and its lock) get it, seeded from their synced entries (sqlite_schema.cpp).
  if (!claims_table_) {
    sqlite::add_claims_table(conn_);
    look_at_tables();
  }
}

bool SqliteStore::changed_elsewhere() {
  const auto v = read_data_version();
  if (v == data_version_) return false;
  data_version_ = v;
  // A writer may have upgraded an older bank meanwhile: read its entries as format 5 from
  // then on (lists, states), or allow lists would block and disabled entries decide.
  if ((!list_tables_ && has_table("lists") && has_table("audit")) ||
      (!md5_column_ && meta("format_version") != std::to_string(format_version_))) {
    look_at_tables();
    if (const auto fv = meta("format_version"))
      format_version_ = static_cast<int>(parse_int(*fv).value_or(format_version_));
  }
  return true;
}

std::optional<std::string> SqliteStore::meta(const std::string& key) {
  Stmt s(conn_, "SELECT value FROM meta WHERE key = ?1");
  s.bind(1, std::string_view(key));
  if (!s.step() || s.null(0)) return std::nullopt;
  return s.text(0);
}

void SqliteStore::set_meta(const std::string& key, const std::string& value) {
  Stmt s(conn_,
         "INSERT INTO meta(key, value) VALUES(?1, ?2) "
         "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  s.bind(1, std::string_view(key)).bind(2, std::string_view(value));
  s.step();
}

std::vector<std::pair<std::string, std::string>> SqliteStore::all_meta() {
  std::vector<std::pair<std::string, std::string>> out;
  Stmt s(conn_, "SELECT key, value FROM meta WHERE value IS NOT NULL ORDER BY key");
  while (s.step()) out.emplace_back(s.text(0), s.text(1));
  return out;
}

void SqliteStore::erase_meta(const std::string& key) {
  Stmt s(conn_, "DELETE FROM meta WHERE key = ?1");
  s.bind(1, std::string_view(key));
  s.step();
}

std::int64_t SqliteStore::count_entries() { return count("SELECT count(*) FROM entries"); }

std::int64_t SqliteStore::count_valid_pdq() {
  return count("SELECT coalesce(sum(length(pdq) = 32), 0) FROM entries");
}

bool SqliteStore::has_md5_entries() {
  return md5_column_ && count("SELECT EXISTS(SELECT 1 FROM entries WHERE md5 IS NOT NULL)") > 0;
}

EntryCounts SqliteStore::entry_counts(int min_quality) {
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
  if (list_tables_) {
    c.disabled = count("SELECT count(*) FROM entries WHERE disabled_reason IS NOT NULL");
    c.flood = count("SELECT count(*) FROM entries WHERE disabled_reason = 'flood'");
  }
  return c;
}

// Bytes: the blobs plus 16 for the key and row overhead.
RowCounts SqliteStore::record_counts(const std::string& signal) {
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

std::uintmax_t SqliteStore::bytes_on_disk() {
  return file_size_or_zero(path_) + file_size_or_zero(fs::path(path_.string() + "-wal"));
}

std::vector<std::string> SqliteStore::integrity_problems() {
  std::vector<std::string> out;
  Stmt s(conn_, "PRAGMA integrity_check");
  while (s.step())
    if (s.text(0) != "ok") out.push_back(s.text(0));
  return out;
}

std::vector<std::int64_t> SqliteStore::indexed_without(const std::string& signal) {
  std::vector<std::int64_t> out;
  if (!signal_tables_) return out;
  const char* sql =
      signal == "local"
          ? "SELECT id FROM entries WHERE origin = 'indexed' AND pdq IS NOT NULL AND id "
            "NOT IN (SELECT entry_id FROM local_features) ORDER BY id"
          : "SELECT id FROM entries WHERE origin = 'indexed' AND pdq IS NOT NULL AND id "
            "NOT IN (SELECT entry_id FROM embeddings) ORDER BY id";
  Stmt s(conn_, sql);
  while (s.step()) out.push_back(s.i64(0));
  return out;
}

std::vector<std::string> SqliteStore::orphan_rows() {
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
  if (list_tables_) {
    // No foreign key in SQLite (sqlite_schema.cpp): such entries read as disabled.
    const auto n =
        count("SELECT count(*) FROM entries WHERE list_id NOT IN (SELECT id FROM lists)");
    if (n > 0) out.push_back(std::to_string(n) + " entries name a list that does not exist");
  }
  return out;
}

void SqliteStore::reset_cached() {
  for (auto* slot : {&by_sha_, &by_hash_, &insert_, &insert_local_, &insert_embed_, &insert_row_})
    if (*slot) (*slot)->reset();
}

std::int64_t SqliteStore::count(const char* sql) const {
  Stmt s(conn_, sql);
  return s.step() ? s.i64(0) : 0;
}

bool SqliteStore::has_table(const char* name) const {
  Stmt s(conn_, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1");
  s.bind(1, std::string_view(name));
  return s.step() && s.i64(0) > 0;
}

void SqliteStore::look_at_tables() {
  signal_tables_ = has_table("local_features");
  record_table_ = has_table("signal_rows") && has_table("changes");
  digest_table_ = has_table("entry_digests");
  list_tables_ = has_table("lists") && has_table("audit");
  claims_table_ = has_table("entry_claims");
  md5_column_ = count("SELECT count(*) FROM pragma_table_info('entries') WHERE name = 'md5'") > 0;
}

std::int64_t SqliteStore::read_data_version() const { return count("PRAGMA data_version"); }

}  // namespace sqlite

namespace {

namespace fs = std::filesystem;

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
    auto store = std::make_unique<sqlite::SqliteStore>();
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
