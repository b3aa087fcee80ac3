// The SQLite store's schema, by format version, and the in-place upgrades between them
// (docs/BANK_FORMAT.md).
#include "bank/sqlite.hpp"
#include "bank/store.hpp"

namespace hashwall::sqlite {

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE meta(
  key   TEXT PRIMARY KEY,
  value TEXT
);
CREATE TABLE entries(
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  sha256   TEXT UNIQUE
           CHECK (sha256 IS NULL OR (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*')),
  pdq      BLOB CHECK (pdq IS NULL OR (typeof(pdq) = 'blob' AND length(pdq) = 32)),
  quality  INTEGER CHECK (quality IS NULL OR (typeof(quality) = 'integer' AND quality BETWEEN 0 AND 100)),
  label    TEXT NOT NULL DEFAULT '',
  source   TEXT NOT NULL DEFAULT '',
  origin   TEXT NOT NULL CHECK (origin IN ('indexed', 'imported')),
  added_at INTEGER NOT NULL
);
CREATE INDEX entries_label ON entries(label);
CREATE INDEX entries_unhashed ON entries(source, pdq) WHERE sha256 IS NULL;
)sql";

// Format 2: the built-in signals' tables.
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

// Format 3: the records of registered signals (signal/signal.hpp), one row per signal and
// entry in the signal's own serialised form, and the change log: one row per generation.
constexpr const char* kFormat3Schema = R"sql(
CREATE TABLE IF NOT EXISTS signal_rows(
  signal   TEXT NOT NULL,
  entry_id INTEGER NOT NULL,
  record   BLOB NOT NULL,
  PRIMARY KEY (signal, entry_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS signal_rows_entry ON signal_rows(entry_id);
CREATE TRIGGER IF NOT EXISTS entries_delete_signal_rows AFTER DELETE ON entries BEGIN
  DELETE FROM signal_rows WHERE entry_id = old.id;
END;
CREATE TABLE IF NOT EXISTS changes(
  generation INTEGER PRIMARY KEY,
  op         TEXT NOT NULL CHECK (op IN ('add', 'remove')),
  ids        BLOB NOT NULL
);
)sql";

// Format 4: each entry's digest (bank/digests.hpp), written with it. No trigger: a removal
// reads the digests it takes out (Store::take_digests) to subtract them from the records
// digest, and an entry deleted behind the bank's back leaves its digest as an orphan row.
constexpr const char* kFormat4Schema = R"sql(
CREATE TABLE IF NOT EXISTS entry_digests(
  entry_id INTEGER PRIMARY KEY,
  digest   BLOB NOT NULL
);
)sql";

// Format 5 (issue #17): named lists, each entry's list, state and provenance, and the
// audit log. Entries of an older bank move into list 1, "default" (a block list), so the
// bank answers as before. list_id has no REFERENCES: SQLite cannot add one to a column of
// an existing table with a non-NULL default; Bank::add checks it and `check` counts
// entries whose list is missing.
// Which peers list an entry (exchange/feed.hpp): a sync's claims. Part of format 5; a
// format-5 bank made before it gets it at its first read-write open (add_claims_table).
constexpr const char* kClaimsSchema = R"sql(
CREATE TABLE IF NOT EXISTS entry_claims(
  peer        TEXT NOT NULL,
  external_id TEXT NOT NULL,
  entry_id    INTEGER NOT NULL,
  PRIMARY KEY (peer, external_id)
);
CREATE INDEX IF NOT EXISTS entry_claims_entry ON entry_claims(entry_id);
)sql";

constexpr const char* kFormat5Lists = R"sql(
CREATE TABLE IF NOT EXISTS lists(
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  name            TEXT NOT NULL UNIQUE,
  kind            TEXT NOT NULL CHECK (kind IN ('block', 'allow')),
  disabled_reason TEXT,
  disabled_until  INTEGER,
  description     TEXT NOT NULL DEFAULT '',
  organisation    TEXT NOT NULL DEFAULT '',
  terms           TEXT NOT NULL DEFAULT '',
  created_at      INTEGER NOT NULL
);
INSERT OR IGNORE INTO lists(id, name, kind, created_at) VALUES(1, 'default', 'block', 0);
CREATE TABLE IF NOT EXISTS audit(
  id     INTEGER PRIMARY KEY AUTOINCREMENT,
  at     INTEGER NOT NULL,
  actor  TEXT NOT NULL,
  action TEXT NOT NULL,
  list   TEXT NOT NULL DEFAULT '',
  ids    BLOB NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT ''
);
)sql";
constexpr const char* kFormat5Entries = R"sql(
ALTER TABLE entries ADD COLUMN list_id INTEGER NOT NULL DEFAULT 1;
ALTER TABLE entries ADD COLUMN disabled_reason TEXT;
ALTER TABLE entries ADD COLUMN disabled_until INTEGER;
ALTER TABLE entries ADD COLUMN added_by TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN peer TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN external_id TEXT NOT NULL DEFAULT '';
CREATE INDEX IF NOT EXISTS entries_list ON entries(list_id);
CREATE INDEX IF NOT EXISTS entries_peer ON entries(peer, external_id) WHERE peer <> '';
)sql";

// Format 6 (issue #17): entries of file-hash lists, with an MD5 or a SHA-256 of the file
// and no PDQ hash. Older banks' pdq column is NOT NULL; SQLite cannot drop a constraint
// with ALTER TABLE, and rebuilding the table would copy every row, so the column's
// definition is rewritten in place (sqlite.org/lang_altertable.html, section 7: allowed
// for a change that no stored row can violate, as dropping NOT NULL is).
constexpr std::string_view kPdqColumn4 =
    "pdq      BLOB NOT NULL CHECK (typeof(pdq) = 'blob' AND length(pdq) = 32)";
constexpr std::string_view kPdqColumn6 =
    "pdq      BLOB CHECK (pdq IS NULL OR (typeof(pdq) = 'blob' AND length(pdq) = 32))";
constexpr const char* kFormat6Entries = R"sql(
ALTER TABLE entries ADD COLUMN md5 TEXT
  CHECK (md5 IS NULL OR (length(md5) = 32 AND md5 NOT GLOB '*[^0-9a-f]*'));
CREATE UNIQUE INDEX IF NOT EXISTS entries_md5 ON entries(md5) WHERE md5 IS NOT NULL;
)sql";

void set_meta(const Conn& c, const std::string& key, const std::string& value) {
  Stmt s(c,
         "INSERT INTO meta(key, value) VALUES(?1, ?2) "
         "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  s.bind(1, std::string_view(key)).bind(2, std::string_view(value));
  s.step();
}

std::int64_t count(const Conn& c, const char* sql) {
  Stmt s(c, sql);
  return s.step() ? s.i64(0) : 0;
}

// Inside the upgrade's transaction: pdq may be NULL from here on.
void relax_pdq_column(const Conn& c) {
  Stmt read(c, "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'entries'");
  if (!read.step()) throw Error(ErrorKind::Bank, c.path, "not a hashwall bank: no entries table");
  std::string sql = read.text(0);
  read.reset();
  if (sql.find(kPdqColumn6) != std::string::npos) return;
  const auto at = sql.find(kPdqColumn4);
  if (at == std::string::npos)
    throw Error(ErrorKind::Bank, c.path,
                "cannot upgrade to format 6: the entries table's pdq column is not as hashwall "
                "made it");
  sql.replace(at, kPdqColumn4.size(), kPdqColumn6);
  const auto version = count(c, "PRAGMA schema_version");
  c.exec("PRAGMA writable_schema = ON");
  {
    Stmt w(c, "UPDATE sqlite_master SET sql = ?1 WHERE type = 'table' AND name = 'entries'");
    w.bind(1, std::string_view(sql));
    w.step();
  }
  // A new schema version makes every connection read the schema again.
  c.exec(("PRAGMA schema_version = " + std::to_string(version + 1)).c_str());
  c.exec("PRAGMA writable_schema = OFF");
  // A build of SQLite in defensive mode ignores writable_schema: then nothing changed, and
  // the upgrade must not go on as if it had.
  if (count(c, "SELECT \"notnull\" FROM pragma_table_info('entries') WHERE name = 'pdq'") != 0)
    throw Error(ErrorKind::Bank, c.path,
                "cannot upgrade to format 6: this SQLite refused to change the pdq column "
                "(defensive mode?)");
}

}  // namespace

void create_schema(const Conn& c,
                   const std::vector<std::pair<std::string, std::string>>& initial_meta) {
  Transaction tx(c, "BEGIN IMMEDIATE");
  // Someone may have created it between our look and our lock.
  if (count(c, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'") == 0) {
    if (count(c, "SELECT count(*) FROM sqlite_master") != 0)
      throw Error(ErrorKind::Bank, c.path,
                  "not a hashwall bank: an SQLite database without a meta table");
    c.exec(kSchema);
    c.exec(kSignalSchema);
    c.exec(kFormat3Schema);
    c.exec(kFormat4Schema);
    c.exec(kFormat5Lists);
    c.exec(kFormat5Entries);
    c.exec(kClaimsSchema);
    c.exec(kFormat6Entries);
    set_meta(c, "format_version", std::to_string(kFormatVersion));
    set_meta(c, "changes_from", "0");
    set_meta(c, "digests_from", "0");
    for (const auto& [k, v] : initial_meta) set_meta(c, k, v);
  }
  tx.commit();
}

void add_claims_table(const Conn& c) {
  Transaction tx(c, "BEGIN IMMEDIATE");
  // Made by another process meanwhile: its claims may have changed since, leave them.
  if (count(c,
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
            "'entry_claims'") == 0) {
    c.exec(kClaimsSchema);
    // The entries synced before claims existed: their own peer and external id.
    c.exec(
        "INSERT OR IGNORE INTO entry_claims(peer, external_id, entry_id) "
        "SELECT peer, external_id, id FROM entries WHERE peer <> ''");
  }
  tx.commit();
}

void upgrade_schema(const Conn& c) {
  // Each step only adds tables (IF NOT EXISTS) and columns with defaults: the records
  // already there keep their form, so the bank answers exactly as before.
  Transaction tx(c, "BEGIN IMMEDIATE");
  // Another process may have upgraded it between our open and our lock, and written since:
  // upgrading again would reset what that upgrade began (records_digest, digests_from).
  {
    Stmt v(c, "SELECT value FROM meta WHERE key = 'format_version'");
    if (v.step() && v.text(0) == std::to_string(kFormatVersion)) return;
  }
  c.exec(kSignalSchema);  // 1 -> 2
  const bool had_log = count(c,
                             "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name "
                             "= 'changes'") != 0;
  c.exec(kFormat3Schema);  // 2 -> 3
  if (!had_log) {
    // The change log starts now: readers at an older generation rebuild.
    Stmt g(c, "SELECT coalesce((SELECT value FROM meta WHERE key = 'generation'), '0')");
    g.step();
    set_meta(c, "changes_from", g.text(0));
  }
  if (count(c,
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = "
            "'entry_digests'") == 0) {
    c.exec(kFormat4Schema);  // 3 -> 4
    // Entries from here on carry digests; the ones already there do not (check notes
    // them). Ids only grow (AUTOINCREMENT), so every later entry's id is at least this.
    Stmt next(c, "SELECT coalesce(max(id), 0) + 1 FROM entries");
    next.step();
    set_meta(c, "digests_from", next.text(0));
    set_meta(c, "records_digest", std::string(64, '0'));
  }
  c.exec(kFormat5Lists);  // 4 -> 5
  if (count(c, "SELECT count(*) FROM pragma_table_info('entries') WHERE name = 'list_id'") == 0)
    c.exec(kFormat5Entries);
  c.exec(kClaimsSchema);
  if (count(c, "SELECT count(*) FROM pragma_table_info('entries') WHERE name = 'md5'") == 0) {
    relax_pdq_column(c);  // 5 -> 6
    c.exec(kFormat6Entries);
  }
  set_meta(c, "format_version", std::to_string(kFormatVersion));
  tx.commit();
}

}  // namespace hashwall::sqlite
