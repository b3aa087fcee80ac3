// The SQLite store's records (sqlite_store_impl.hpp): the entries, each signal's records
// (the local features and the embedding in their tables of format 2, other signals in
// signal_rows), the digests, and the change log with its delta-coded id lists: their
// writes, reads and scans.
#include <algorithm>
#include <limits>

#include "bank/sqlite.hpp"
#include "bank/sqlite_store_impl.hpp"
#include "bank/store.hpp"
#include "bank/values.hpp"
#include "core/error.hpp"
#include "local/local_features.hpp"

namespace hashwall::sqlite {

namespace {

using bank_detail::decode_ids;
using bank_detail::encode_ids;
using bank_detail::hash_from_blob;
using bank_detail::parse_int;
using bank_detail::parse_uint;

// An entry's columns (SqliteStore::entry_select), in entry_from_row's order: the row's own,
// then its list's (format 5), then its MD5 (format 6).
constexpr const char* kEntryColumns5 =
    "e.id, e.sha256, e.pdq, e.quality, e.label, e.source, e.origin, e.added_at, e.list_id, "
    "e.added_by, e.peer, e.external_id, e.disabled_reason, e.disabled_until, l.name, l.kind, "
    "l.disabled_reason, l.disabled_until, ";
constexpr const char* kEntryFrom5 = " FROM entries e LEFT JOIN lists l ON l.id = e.list_id";
constexpr const char* kEntryColumns4 =
    "e.id, e.sha256, e.pdq, e.quality, e.label, e.source, e.origin, e.added_at, 1, '', '', '', "
    "NULL, NULL, 'default', 'block', NULL, NULL, NULL FROM entries e";

std::optional<Disabled> disabled_from(const Stmt& s, int reason, int until) {
  if (s.null(reason)) return std::nullopt;
  Disabled d{s.text(reason), std::nullopt};
  if (!s.null(until)) d.until = s.i64(until);
  return d;
}

Entry entry_from_row(const Conn& c, const Stmt& s) {
  Entry e;
  e.id = s.i64(0);
  if (!s.null(1)) e.sha256 = s.text(1);
  if (!s.null(18)) e.md5 = s.text(18);
  if (!s.null(2)) {
    const auto h = hash_from_blob(s.blob(2));
    if (!h)
      throw Error(ErrorKind::Bank, c.path,
                  "entry " + std::to_string(e.id) + " is corrupt: its PDQ hash is " +
                      std::to_string(s.blob(2).size()) + " bytes, not 32 (run 'hashwall check')");
    e.pdq = *h;
  }
  // An entry without a PDQ hash, SHA-256 or MD5 is a video imported from its vPDQ hashes
  // (its record says so; check() names one without).
  if (!s.null(3)) e.quality = static_cast<int>(s.i64(3));
  e.label = s.text(4);
  e.source = s.text(5);
  e.origin = s.text(6) == "imported" ? Origin::Imported : Origin::Indexed;
  e.added_at = s.i64(7);
  e.list_id = s.i64(8);
  e.added_by = s.text(9);
  e.peer = s.text(10);
  e.external_id = s.text(11);
  e.disabled = disabled_from(s, 12, 13);
  // A list that is missing (check counts such entries) decides nothing: disabled.
  if (s.null(14)) {
    e.list_name.clear();
    e.list_disabled = Disabled{"its list " + std::to_string(e.list_id) + " is missing", {}};
    return e;
  }
  e.list_name = s.text(14);
  e.list_kind = s.text(15) == "allow" ? ListKind::Allow : ListKind::Block;
  e.list_disabled = disabled_from(s, 16, 17);
  return e;
}

}  // namespace

std::optional<std::int64_t> SqliteStore::id_of_sha256(std::string_view sha) {
  auto& s = stmt(by_sha_, "SELECT id FROM entries WHERE sha256 = ?1");
  s.bind(1, sha);
  return first_id(s);
}

std::optional<std::int64_t> SqliteStore::id_of_md5(std::string_view md5) {
  if (!md5_column_) return std::nullopt;
  auto& s = stmt(by_md5_, "SELECT id FROM entries WHERE md5 = ?1");
  s.bind(1, md5);
  return first_id(s);
}

std::optional<std::int64_t> SqliteStore::id_of_unhashed(std::string_view source, const Hash256& pdq,
                                                        Origin origin) {
  // INDEXED BY: left to itself, SQLite walks the sha256 UNIQUE index over every
  // imported (NULL) row, which makes large imports quadratic.
  auto& s = stmt(by_hash_,
                 "SELECT id FROM entries INDEXED BY entries_unhashed WHERE sha256 IS NULL AND "
                 "source = ?1 AND pdq = ?2 AND origin = ?3 ORDER BY id LIMIT 1");
  s.bind(1, source).bind(2, pdq).bind(3, std::string_view(origin_name(origin)));
  return first_id(s);
}

std::int64_t SqliteStore::insert_entry(const NewEntry& e, const std::optional<std::string>& sha,
                                       const std::optional<std::string>& md5,
                                       std::int64_t added_at) {
  // A read-write store is always at the newest format: upgrade() ran at open.
  if (!md5_column_) throw Error(ErrorKind::Bank, where(), "the bank is not upgraded to format 6");
  auto& s = stmt(insert_,
                 "INSERT INTO entries(sha256, pdq, quality, label, source, origin, added_at, "
                 "list_id, added_by, peer, external_id, md5) "
                 "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
  if (sha)
    s.bind(1, std::string_view(*sha));
  else
    s.bind_null(1);
  if (e.pdq)
    s.bind(2, *e.pdq);
  else
    s.bind_null(2);
  if (e.quality)
    s.bind(3, static_cast<std::int64_t>(*e.quality));
  else
    s.bind_null(3);
  s.bind(4, std::string_view(e.label))
      .bind(5, std::string_view(e.source))
      .bind(6, std::string_view(origin_name(e.origin)))
      .bind(7, added_at)
      .bind(8, e.list_id)
      .bind(9, std::string_view(e.added_by))
      .bind(10, std::string_view(e.peer))
      .bind(11, std::string_view(e.external_id));
  if (md5)
    s.bind(12, std::string_view(*md5));
  else
    s.bind_null(12);
  s.step();
  s.reset();
  return sqlite3_last_insert_rowid(conn_.db);
}

void SqliteStore::insert_entry_as(const Entry& e) {
  Stmt s(conn_,
         "INSERT INTO entries(id, sha256, pdq, quality, label, source, origin, added_at, list_id, "
         "added_by, peer, external_id, disabled_reason, disabled_until, md5) "
         "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)");
  s.bind(1, e.id);
  if (e.sha256)
    s.bind(2, std::string_view(*e.sha256));
  else
    s.bind_null(2);
  if (e.pdq)
    s.bind(3, *e.pdq);
  else
    s.bind_null(3);
  if (e.md5)
    s.bind(15, std::string_view(*e.md5));
  else
    s.bind_null(15);
  if (e.quality)
    s.bind(4, static_cast<std::int64_t>(*e.quality));
  else
    s.bind_null(4);
  s.bind(5, std::string_view(e.label))
      .bind(6, std::string_view(e.source))
      .bind(7, std::string_view(origin_name(e.origin)))
      .bind(8, e.added_at)
      .bind(9, e.list_id)
      .bind(10, std::string_view(e.added_by))
      .bind(11, std::string_view(e.peer))
      .bind(12, std::string_view(e.external_id));
  if (e.disabled) {
    s.bind(13, std::string_view(e.disabled->reason));
    if (e.disabled->until)
      s.bind(14, *e.disabled->until);
    else
      s.bind_null(14);
  } else {
    s.bind_null(13).bind_null(14);
  }
  s.step();
}

std::string SqliteStore::entry_select() const {
  if (!list_tables_) return std::string("SELECT ") + kEntryColumns4;
  return std::string("SELECT ") + kEntryColumns5 + (md5_column_ ? "e.md5" : "NULL") + kEntryFrom5;
}

// AUTOINCREMENT keeps the highest id ever given in sqlite_sequence.
std::int64_t SqliteStore::id_high_water() {
  Stmt s(conn_,
         "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0), "
         "coalesce((SELECT max(id) FROM entries), 0))");
  return s.step() ? s.i64(0) : 0;
}

void SqliteStore::raise_id_high_water(std::int64_t id) {
  if (id <= id_high_water()) return;
  Stmt del(conn_, "DELETE FROM sqlite_sequence WHERE name = 'entries'");
  del.step();
  Stmt s(conn_, "INSERT INTO sqlite_sequence(name, seq) VALUES('entries', ?1)");
  s.bind(1, id);
  s.step();
}

void SqliteStore::insert_record(const std::string& signal, std::int64_t id,
                                std::string_view record) {
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

std::vector<RemovedEntry> SqliteStore::remove_ids(std::span<const std::int64_t> ids) {
  Stmt s(conn_, "DELETE FROM entries WHERE id = ?1 RETURNING id, pdq, list_id");
  std::vector<RemovedEntry> gone;
  for (const auto id : ids) {
    s.reset();
    s.bind(1, id);
    while (s.step()) gone.push_back({s.i64(0), std::string(s.blob(1)), s.i64(2)});
  }
  return gone;
}

void SqliteStore::insert_digest(std::int64_t id, std::string_view digest) {
  if (!digest_table_) return;  // cannot happen read-write: upgrade() made the table
  auto& s = stmt(insert_digest_, "INSERT INTO entry_digests(entry_id, digest) VALUES(?1, ?2)");
  s.bind(1, id).bind_blob(2, digest);
  s.step();
  s.reset();
}

std::vector<std::string> SqliteStore::take_digests(std::span<const std::int64_t> ids) {
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

bool SqliteStore::complete_entry_pdq(std::int64_t id, const Hash256& pdq,
                                     std::optional<int> quality) {
  Stmt s(conn_, "UPDATE entries SET pdq = ?1, quality = ?2 WHERE id = ?3 AND pdq IS NULL");
  s.bind(1, pdq);
  if (quality)
    s.bind(2, static_cast<std::int64_t>(*quality));
  else
    s.bind_null(2);
  s.bind(3, id);
  s.step();
  return sqlite3_changes(conn_.db) > 0;
}

std::vector<RemovedEntry> SqliteStore::remove_label(const std::string& label) {
  Stmt s(conn_, "DELETE FROM entries WHERE label = ?1 RETURNING id, pdq, list_id");
  s.bind(1, std::string_view(label));
  std::vector<RemovedEntry> gone;
  while (s.step()) gone.push_back({s.i64(0), std::string(s.blob(1)), s.i64(2)});
  return gone;
}

std::vector<RemovedEntry> SqliteStore::remove_sha256(const std::string& sha) {
  Stmt s(conn_, "DELETE FROM entries WHERE sha256 = ?1 RETURNING id, pdq, list_id");
  s.bind(1, std::string_view(sha));
  std::vector<RemovedEntry> gone;
  while (s.step()) gone.push_back({s.i64(0), std::string(s.blob(1)), s.i64(2)});
  return gone;
}

void SqliteStore::log_change(const Change& c) {
  if (!record_table_) return;  // cannot happen read-write: upgrade() made the table
  Stmt s(conn_, "INSERT INTO changes(generation, op, ids) VALUES(?1, ?2, ?3)");
  s.bind(1, static_cast<std::int64_t>(c.generation))
      .bind(2, std::string_view(c.op == ChangeOp::Add ? "add" : "remove"))
      .bind_blob(3, encode_ids(c.ids));
  s.step();
}

void SqliteStore::prune_changes(std::uint64_t through) {
  if (!record_table_) return;
  const auto from_text = meta("changes_from");
  const auto from = from_text ? parse_uint(*from_text) : std::nullopt;
  if (from && *from >= through) return;
  Stmt s(conn_, "DELETE FROM changes WHERE generation <= ?1");
  s.bind(1, static_cast<std::int64_t>(through));
  s.step();
  set_meta("changes_from", std::to_string(through));
}

std::optional<Entry> SqliteStore::get(std::int64_t id) {
  Stmt s(conn_, (entry_select() + " WHERE e.id = ?1").c_str());
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return entry_from_row(conn_, s);
}

std::optional<Entry> SqliteStore::find_sha256(std::string_view sha) {
  Stmt s(conn_, (entry_select() + " WHERE e.sha256 = ?1").c_str());
  s.bind(1, sha);
  if (!s.step()) return std::nullopt;
  return entry_from_row(conn_, s);
}

std::optional<Entry> SqliteStore::find_md5(std::string_view md5) {
  if (!md5_column_) return std::nullopt;
  Stmt s(conn_, (entry_select() + " WHERE e.md5 = ?1").c_str());
  s.bind(1, md5);
  if (!s.step()) return std::nullopt;
  return entry_from_row(conn_, s);
}

std::vector<Entry> SqliteStore::entries_after(std::int64_t after, std::size_t limit) {
  const std::string sql =
      entry_select() + " WHERE e.id > ?1 ORDER BY e.id LIMIT " + std::to_string(limit);
  Stmt s(conn_, sql.c_str());
  s.bind(1, after);
  std::vector<Entry> page;
  while (s.step()) page.push_back(entry_from_row(conn_, s));
  return page;
}

std::vector<Entry> SqliteStore::list_entries_after(std::int64_t list_id, std::int64_t after,
                                                   std::size_t limit) {
  if (!list_tables_)
    return list_id == kDefaultListId ? entries_after(after, limit) : std::vector<Entry>{};
  const std::string sql = entry_select() +
                          " WHERE e.list_id = ?1 AND e.id > ?2 ORDER BY e.id LIMIT " +
                          std::to_string(limit);
  Stmt s(conn_, sql.c_str());
  s.bind(1, list_id).bind(2, after);
  std::vector<Entry> page;
  while (s.step()) page.push_back(entry_from_row(conn_, s));
  return page;
}

std::optional<std::vector<Change>> SqliteStore::changes_since(std::uint64_t after) {
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

void SqliteStore::scan_pdq(const RowFn& fn, IdFilter only) {
  // Entries of file-hash lists (format 6) have no PDQ hash: not in the PDQ index.
  scan_ids("SELECT id, pdq FROM entries WHERE pdq IS NOT NULL ORDER BY id",
           "SELECT id, pdq FROM entries WHERE id = ?1 AND pdq IS NOT NULL", fn, only, {});
}

void SqliteStore::scan_records(const std::string& signal, const RowFn& fn, IdFilter only) {
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
           "SELECT entry_id, record FROM signal_rows WHERE entry_id = ?1 AND signal = ?2", fn, only,
           signal);
}

void SqliteStore::scan_all_records(
    const std::function<void(const std::string&, std::int64_t, std::string_view)>& fn) {
  if (signal_tables_) {
    const std::string embed = kEmbedSignal, local = kLocalSignal;
    scan_records(embed, [&](std::int64_t id, std::string_view r) { fn(embed, id, r); }, {});
    scan_records(local, [&](std::int64_t id, std::string_view r) { fn(local, id, r); }, {});
  }
  if (!record_table_) return;
  Stmt s(conn_, "SELECT signal, entry_id, record FROM signal_rows ORDER BY signal, entry_id");
  while (s.step()) fn(s.text(0), s.i64(1), s.blob(2));
}

std::optional<std::string> SqliteStore::first_record(const std::string& signal) {
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
    Stmt s(conn_,
           "SELECT entry_id, record FROM signal_rows WHERE signal = ?1 ORDER BY entry_id LIMIT 1");
    s.bind(1, std::string_view(signal));
    if (s.step()) one(s.i64(0), s.blob(1));
  }
  return out;
}

void SqliteStore::scan_raw_entries(const std::function<void(const RawEntry&)>& fn) {
  const std::string sql =
      "SELECT id, pdq, typeof(pdq), quality, typeof(quality), origin, sha256, label, source, "
      "added_at, " +
      std::string(md5_column_ ? "md5" : "NULL") + " FROM entries ORDER BY id";
  Stmt s(conn_, sql.c_str());
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
    if (!s.null(10)) e.md5 = s.text(10);
    fn(e);
  }
}

void SqliteStore::scan_digests(const RowFn& fn) {
  if (!digest_table_) return;
  Stmt s(conn_, "SELECT entry_id, digest FROM entry_digests ORDER BY entry_id");
  while (s.step()) fn(s.i64(0), s.blob(1));
}

Stmt& SqliteStore::stmt(std::unique_ptr<Stmt>& slot, const char* sql) {
  if (!slot) slot = std::make_unique<Stmt>(conn_, sql);
  slot->reset();
  return *slot;
}

// The first row's id, and the statement reset at once: a cached statement left on a row
// would keep this connection on its snapshot (no other writer seen, every later write
// transaction refused as busy).
std::optional<std::int64_t> SqliteStore::first_id(Stmt& s) {
  std::optional<std::int64_t> id;
  if (s.step()) id = s.i64(0);
  s.reset();
  return id;
}

// All rows (`all_sql`), or those of the ids in `only` (`one_sql`, ?1 = id), with ?2 bound
// to `arg` when given.
void SqliteStore::scan_ids(const char* all_sql, const char* one_sql, const RowFn& fn, IdFilter only,
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

}  // namespace hashwall::sqlite
