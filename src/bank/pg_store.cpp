// The PostgreSQL store (pg_store_impl.hpp): connecting, the schema, transactions, meta,
// following other writers (LISTEN/NOTIFY), sizes and health. A bank is the set of
// hashwall's tables in one database's current schema (search_path; `options=-csearch_path=X`
// in the address puts several banks in one database).
#include <memory>
#include <string>
#include <string_view>

#include "bank/pg.hpp"
#include "bank/pg_store_impl.hpp"
#include "bank/store.hpp"
#include "bank/values.hpp"
#include "core/error.hpp"

namespace hashwall {

namespace pg {

namespace {

using bank_detail::parse_int;

// Format 4's tables (sqlite_schema.cpp) in PostgreSQL's types. The foreign keys take an
// entry's signal rows with it, as the SQLite triggers do; entry_digests has none, as there:
// a removal reads the digests it takes out (Store::take_digests). Labels and sources are
// bytea: a file name need not be UTF-8 (nor a label free of NUL), and text would refuse
// or cut what SQLite keeps byte for byte. The unhashed look-up goes by PDQ hash (32
// bytes): a btree key holding a 4 KB source would pass PostgreSQL's index row limit.
constexpr const char* kSchema = R"sql(
CREATE TABLE meta(
  key   text PRIMARY KEY,
  value text
);
CREATE TABLE entries(
  id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sha256   text UNIQUE CHECK (sha256 IS NULL OR sha256 ~ '^[0-9a-f]{64}$'),
  pdq      bytea NOT NULL CHECK (octet_length(pdq) = 32),
  quality  integer CHECK (quality IS NULL OR quality BETWEEN 0 AND 100),
  label    bytea NOT NULL DEFAULT '',
  source   bytea NOT NULL DEFAULT '',
  origin   text NOT NULL CHECK (origin IN ('indexed', 'imported')),
  added_at bigint NOT NULL
);
CREATE INDEX entries_label ON entries(label);
CREATE INDEX entries_unhashed ON entries(pdq) WHERE sha256 IS NULL;
CREATE TABLE local_features(
  entry_id    bigint PRIMARY KEY REFERENCES entries(id) ON DELETE CASCADE,
  keypoints   bytea NOT NULL,
  descriptors bytea NOT NULL
);
CREATE TABLE embeddings(
  entry_id bigint PRIMARY KEY REFERENCES entries(id) ON DELETE CASCADE,
  vector   bytea NOT NULL
);
CREATE TABLE signal_rows(
  signal   text NOT NULL,
  entry_id bigint NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
  record   bytea NOT NULL,
  PRIMARY KEY (signal, entry_id)
);
CREATE INDEX signal_rows_entry ON signal_rows(entry_id);
CREATE TABLE changes(
  generation bigint PRIMARY KEY,
  op         text NOT NULL CHECK (op IN ('add', 'remove')),
  ids        bytea NOT NULL
);
CREATE TABLE entry_digests(
  entry_id bigint PRIMARY KEY,
  digest   bytea NOT NULL
);
)sql";

// hashwall's tables, as a text[] literal for `= ANY($1::text[])`.
constexpr const char* kTables =
    "{meta,entries,local_features,embeddings,signal_rows,changes,"
    "entry_digests}";

// Any constant: the advisory lock two processes creating the same bank take in turn.
constexpr std::int64_t kCreateLock = 0x68617368'77616c6c;  // "hashwall"

class PgTransaction : public Store::Transaction {
 public:
  // `begin`: the statements that open it (BEGIN, and for a writer its lock). `flag`: the
  // store's "a transaction is open", held for the transaction's life.
  PgTransaction(Conn& c, bool& flag, const std::vector<std::string>& begin) : c_(c), flag_(flag) {
    flag_ = true;
    try {
      for (const auto& s : begin) c_.run(s);
    } catch (...) {
      rollback();
      throw;
    }
  }
  ~PgTransaction() override {
    if (open_) rollback();
  }
  void commit() override {
    open_ = false;
    flag_ = false;
    // COMMIT of a transaction a failed statement aborted "succeeds" as ROLLBACK: that is
    // a failure here, never a silent loss of the write.
    PGresult* r = PQexec(c_.raw(), "COMMIT");
    const bool ok =
        r && PQresultStatus(r) == PGRES_COMMAND_OK && std::string_view(PQcmdStatus(r)) == "COMMIT";
    if (!ok) {
      std::unique_ptr<PGresult, decltype(&PQclear)> hold(r, &PQclear);
      if (r && PQresultStatus(r) == PGRES_COMMAND_OK)
        throw Error(ErrorKind::Bank, c_.where(),
                    "the transaction was rolled back (an earlier statement in it failed)");
      c_.fail("", r);
    }
    PQclear(r);
  }

 private:
  void rollback() noexcept {
    open_ = false;
    flag_ = false;
    if (!c_.ok()) return;  // the server rolls back what a lost connection left open
    PGresult* r = PQexec(c_.raw(), "ROLLBACK");
    PQclear(r);
  }
  Conn& c_;
  bool& flag_;
  bool open_ = true;
};

}  // namespace

void PgStore::open(const std::string& conninfo, OpenMode mode, bool create_allowed,
                   const std::vector<std::pair<std::string, std::string>>& initial_meta,
                   bool* created) {
  where_ = redacted_location(conninfo);
  mode_ = mode;
  conn_ = std::make_unique<Conn>(conninfo, where_);
  session_setup();
  if (!has_meta_table()) {
    if (!create_allowed)
      throw Error(ErrorKind::Bank, where_,
                  "no bank here (create one with 'hashwall index' or 'hashwall import')");
    create_schema(initial_meta, created);
  }
  const auto fv = meta("format_version");
  const auto v = fv ? parse_int(*fv) : std::nullopt;
  if (!v) throw Error(ErrorKind::Bank, where_, "not a hashwall bank: meta has no format_version");
  if (*v > kFormatVersion)
    throw Error(ErrorKind::Bank, where_,
                "bank format version " + std::to_string(*v) +
                    " is newer than this hashwall understands (" + std::to_string(kFormatVersion) +
                    "); upgrade hashwall");
  if (*v < kFormatVersion)
    throw Error(ErrorKind::Bank, where_,
                "corrupt bank: a PostgreSQL bank of format " + std::to_string(*v) +
                    " (PostgreSQL banks start at format 4)");
  format_version_ = static_cast<int>(*v);
}

bool PgStore::has_meta_table() {
  return count(
             "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND "
             "tablename = 'meta'") != 0;
}

void PgStore::session_setup() {
  // Readers of a read-only bank cannot write even by mistake; writers wait for each other
  // at most kLockTimeoutS (begin_write).
  if (mode_ == OpenMode::ReadOnly) conn_->run("SET default_transaction_read_only = on");
  // A statement never hangs the bank (its lock is held meanwhile): the longest is a page of
  // a scan or a batch's insert.
  conn_->run("SET statement_timeout = '120s'");
  conn_->run(std::string("LISTEN ") + kChannel);
}

void PgStore::ensure_connected() {
  if (conn_->ok() || in_transaction()) return;
  conn_->reconnect();
  session_setup();
  missed_ = true;
}

void PgStore::create_schema(const std::vector<std::pair<std::string, std::string>>& initial_meta,
                            bool* created) {
  PgTransaction tx(*conn_, tx_open_, {"BEGIN"});
  q("SELECT pg_advisory_xact_lock($1)", {num(kCreateLock)});
  // Someone may have created it between our look and our lock.
  if (has_meta_table()) return;
  if (count("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename "
            "= ANY($1::text[])",
            {text(kTables)}) != 0)
    throw Error(ErrorKind::Bank, where_,
                "not a hashwall bank: hashwall's tables without its meta table");
  conn_->run(kSchema);
  set_meta("format_version", std::to_string(kFormatVersion));
  set_meta("changes_from", "0");
  set_meta("digests_from", "0");
  for (const auto& [k, v] : initial_meta) set_meta(k, v);
  tx.commit();
  if (created) *created = true;
}

std::unique_ptr<Store::Transaction> PgStore::begin_read() {
  ensure_connected();
  return std::make_unique<PgTransaction>(
      *conn_, tx_open_,
      std::vector<std::string>{"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"});
}

std::unique_ptr<Store::Transaction> PgStore::begin_write() {
  ensure_connected();
  // One writer at a time, as in SQLite: the lock conflicts with itself and not with readers.
  // READ COMMITTED: each statement after the lock sees every write committed before it.
  return std::make_unique<PgTransaction>(
      *conn_, tx_open_,
      std::vector<std::string>{"BEGIN ISOLATION LEVEL READ COMMITTED",
                               "SET LOCAL lock_timeout = '" + std::to_string(kLockTimeoutS) + "s'",
                               "LOCK TABLE meta IN SHARE ROW EXCLUSIVE MODE"});
}

bool PgStore::changed_elsewhere() {
  using std::chrono::steady_clock;
  if (in_transaction()) return false;
  const auto now = steady_clock::now();
  if (!conn_->ok() || PQconsumeInput(conn_->raw()) == 0) {
    // Lost: reconnect and look, as a notification may have been missed. While the server
    // stays away, one try a second; the calls in between fail at once with its reason.
    if (!failed_connect_.empty() && now - last_failed_connect_ < std::chrono::seconds(1))
      throw Error(ErrorKind::Bank, where_, failed_connect_);
    try {
      conn_->reconnect();
      session_setup();
    } catch (const Error& e) {
      last_failed_connect_ = now;
      failed_connect_ = e.reason();
      throw;
    }
    failed_connect_.clear();
    missed_ = false;
    last_look_ = now;
    return true;
  }
  bool any = std::exchange(missed_, false);
  while (PGnotify* n = PQnotifies(conn_->raw())) {
    any = true;
    PQfreemem(n);
  }
  // NOTIFY arrives a moment after the writer's commit, and a refresh that failed after the
  // notifications were read would forget them: once a second the caller looks at the
  // generation anyway (one query), which also finds a connection that died silently.
  if (now - last_look_ >= std::chrono::seconds(1)) any = true;
  if (any) last_look_ = now;
  return any;
}

std::optional<std::string> PgStore::meta(const std::string& key) {
  const auto r = q("SELECT value FROM meta WHERE key = $1", {text(key)});
  if (r.rows() == 0 || r.null(0, 0)) return std::nullopt;
  return r.text(0, 0);
}

void PgStore::set_meta(const std::string& key, const std::string& value) {
  q("INSERT INTO meta(key, value) VALUES($1, $2) ON CONFLICT(key) DO UPDATE SET value = "
    "excluded.value",
    {text(key), text(value)});
}

std::vector<std::pair<std::string, std::string>> PgStore::all_meta() {
  const auto r = q("SELECT key, value FROM meta WHERE value IS NOT NULL ORDER BY key");
  std::vector<std::pair<std::string, std::string>> out;
  for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.text(i, 0), r.text(i, 1));
  return out;
}

void PgStore::erase_meta(const std::string& key) {
  q("DELETE FROM meta WHERE key = $1", {text(key)});
}

Result PgStore::q(const std::string& sql, const std::vector<Param>& params) {
  ensure_connected();
  return conn_->exec(sql, params);
}

std::int64_t PgStore::count(const std::string& sql, const std::vector<Param>& params) {
  const auto r = q(sql, params);
  return r.rows() > 0 && !r.null(0, 0) ? r.i64(0, 0) : 0;
}

std::int64_t PgStore::count_entries() { return count("SELECT count(*) FROM entries"); }

std::int64_t PgStore::count_valid_pdq() {
  return count("SELECT count(*) FROM entries WHERE octet_length(pdq) = 32");
}

EntryCounts PgStore::entry_counts(int min_quality) {
  const auto r =
      q("SELECT count(*), count(*) FILTER (WHERE origin = 'indexed'), count(*) FILTER (WHERE "
        "origin = 'imported'), count(*) FILTER (WHERE quality < $1::integer) FROM entries",
        {num(min_quality)});
  EntryCounts c;
  c.entries = r.i64(0, 0);
  c.indexed = r.i64(0, 1);
  c.imported = r.i64(0, 2);
  c.low_quality = r.i64(0, 3);
  c.labels = count("SELECT count(DISTINCT label) FROM entries WHERE label <> ''::bytea");
  return c;
}

// Bytes: the blobs plus 16 for the key and row overhead, as the SQLite store counts them.
RowCounts PgStore::record_counts(const std::string& signal) {
  RowCounts c;
  Result r;
  if (signal == "local")
    r =
        q("SELECT count(*), coalesce(sum(octet_length(keypoints) / 4 - 1), 0)::bigint, "
          "coalesce(sum(octet_length(keypoints) + octet_length(descriptors) + 16), 0)::bigint "
          "FROM local_features");
  else if (signal == "embed")
    r =
        q("SELECT count(*), count(*), coalesce(sum(octet_length(vector) + 16), 0)::bigint FROM "
          "embeddings");
  else
    r =
        q("SELECT count(*), count(*), coalesce(sum(octet_length(record) + 16), 0)::bigint FROM "
          "signal_rows WHERE signal = $1",
          {text(signal)});
  c.rows = r.i64(0, 0);
  c.items = r.i64(0, 1);
  c.bytes = static_cast<std::uintmax_t>(r.i64(0, 2));
  return c;
}

std::uintmax_t PgStore::bytes_on_disk() {
  return static_cast<std::uintmax_t>(
      count("SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c JOIN "
            "pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND "
            "c.relkind = 'r' AND c.relname = ANY($1::text[])",
            {text(kTables)}));
}

std::vector<std::int64_t> PgStore::indexed_without(const std::string& signal) {
  const std::string table = signal == "local" ? "local_features" : "embeddings";
  const auto r =
      q("SELECT id FROM entries e WHERE origin = 'indexed' AND NOT EXISTS (SELECT 1 "
        "FROM " +
        table + " s WHERE s.entry_id = e.id) ORDER BY id");
  std::vector<std::int64_t> out;
  for (int i = 0; i < r.rows(); ++i) out.push_back(r.i64(i, 0));
  return out;
}

std::vector<std::string> PgStore::orphan_rows() {
  // The foreign keys keep the signals' tables clean; the digests have none.
  std::vector<std::string> out;
  for (const char* table : {"local_features", "embeddings", "signal_rows", "entry_digests"}) {
    const auto n = count(std::string("SELECT count(*) FROM ") + table +
                         " t WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.id = t.entry_id)");
    if (n > 0) out.push_back(std::to_string(n) + " rows of " + table + " belong to no entry");
  }
  return out;
}

}  // namespace pg

bool is_postgresql_location(std::string_view location) {
  return location.starts_with("postgresql://") || location.starts_with("postgres://");
}

std::unique_ptr<Store> open_postgresql_store(
    const std::string& conninfo, OpenMode mode,
    const std::vector<std::pair<std::string, std::string>>& initial_meta, bool* created) {
  if (created) *created = false;
  auto store = std::make_unique<pg::PgStore>();
  store->open(conninfo, mode == OpenMode::Create ? OpenMode::ReadWrite : mode,
              mode == OpenMode::Create, initial_meta, created);
  return store;
}

}  // namespace hashwall
