// The SQLite store's lists, entry state and audit log (format 5, sqlite_schema.cpp).
#include <algorithm>

#include "bank/sqlite.hpp"
#include "bank/sqlite_store_impl.hpp"
#include "bank/store.hpp"
#include "bank/values.hpp"
#include "core/error.hpp"

namespace hashwall::sqlite {

namespace {

using bank_detail::decode_ids;
using bank_detail::encode_ids;

void bind_disabled(Stmt& s, int reason, int until, const std::optional<Disabled>& d) {
  if (!d) {
    s.bind_null(reason).bind_null(until);
    return;
  }
  s.bind(reason, std::string_view(d->reason));
  if (d->until)
    s.bind(until, *d->until);
  else
    s.bind_null(until);
}

}  // namespace

std::vector<ListInfo> SqliteStore::lists(bool counts) {
  std::vector<ListInfo> out;
  if (!list_tables_) return out;  // format 4: Bank::lists() answers
  Stmt s(conn_,
         counts
             ? "SELECT l.id, l.name, l.kind, l.disabled_reason, l.disabled_until, "
               "l.description, l.organisation, l.terms, l.created_at, "
               "(SELECT count(*) FROM entries e WHERE e.list_id = l.id) FROM lists l ORDER BY l.id"
             : "SELECT id, name, kind, disabled_reason, disabled_until, description, "
               "organisation, terms, created_at, 0 FROM lists ORDER BY id");
  while (s.step()) {
    ListInfo l;
    l.id = s.i64(0);
    l.name = s.text(1);
    l.kind = s.text(2) == "allow" ? ListKind::Allow : ListKind::Block;
    if (!s.null(3)) {
      l.disabled = Disabled{s.text(3), std::nullopt};
      if (!s.null(4)) l.disabled->until = s.i64(4);
    }
    l.description = s.text(5);
    l.organisation = s.text(6);
    l.terms = s.text(7);
    l.created_at = s.i64(8);
    l.entries = s.i64(9);
    out.push_back(std::move(l));
  }
  return out;
}

std::int64_t SqliteStore::insert_list(const ListInfo& l) {
  Stmt s(conn_,
         "INSERT INTO lists(id, name, kind, disabled_reason, disabled_until, description, "
         "organisation, terms, created_at) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  if (l.id > 0)
    s.bind(1, l.id);
  else
    s.bind_null(1);
  s.bind(2, std::string_view(l.name)).bind(3, std::string_view(list_kind_name(l.kind)));
  bind_disabled(s, 4, 5, l.disabled);
  s.bind(6, std::string_view(l.description))
      .bind(7, std::string_view(l.organisation))
      .bind(8, std::string_view(l.terms))
      .bind(9, l.created_at);
  s.step();
  return sqlite3_last_insert_rowid(conn_.db);
}

void SqliteStore::update_list(const ListInfo& l) {
  Stmt s(conn_,
         "UPDATE lists SET kind = ?2, disabled_reason = ?3, disabled_until = ?4, description = "
         "?5, organisation = ?6, terms = ?7 WHERE id = ?1");
  s.bind(1, l.id).bind(2, std::string_view(list_kind_name(l.kind)));
  bind_disabled(s, 3, 4, l.disabled);
  s.bind(5, std::string_view(l.description))
      .bind(6, std::string_view(l.organisation))
      .bind(7, std::string_view(l.terms));
  s.step();
}

std::vector<std::int64_t> SqliteStore::set_entries_disabled(std::span<const std::int64_t> ids,
                                                            const std::optional<Disabled>& state) {
  Stmt s(conn_,
         "UPDATE entries SET disabled_reason = ?2, disabled_until = ?3 WHERE id = ?1 RETURNING id");
  std::vector<std::int64_t> out;
  for (const auto id : ids) {
    s.bind(1, id);
    bind_disabled(s, 2, 3, state);
    while (s.step()) out.push_back(s.i64(0));
    s.reset();
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::int64_t SqliteStore::append_audit(const AuditEvent& e) {
  Stmt s(conn_,
         "INSERT INTO audit(id, at, actor, action, list, ids, reason, detail) "
         "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (e.id > 0)
    s.bind(1, e.id);
  else
    s.bind_null(1);
  s.bind(2, e.at)
      .bind(3, std::string_view(e.actor))
      .bind(4, std::string_view(e.action))
      .bind(5, std::string_view(e.list))
      .bind_blob(6, encode_ids(e.ids))
      .bind(7, std::string_view(e.reason))
      .bind(8, std::string_view(e.detail));
  s.step();
  return sqlite3_last_insert_rowid(conn_.db);
}

std::vector<std::pair<std::string, std::int64_t>> SqliteStore::ids_from_peer(
    const std::string& peer, std::span<const std::string> external_ids) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  if (!claims_table_) return out;
  Stmt s(conn_, "SELECT entry_id FROM entry_claims WHERE peer = ?1 AND external_id = ?2");
  for (const auto& x : external_ids) {
    s.reset();
    s.bind(1, std::string_view(peer)).bind(2, std::string_view(x));
    while (s.step()) out.emplace_back(x, s.i64(0));
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  return out;
}

void SqliteStore::add_claims(std::span<const Claim> claims) {
  Stmt s(conn_,
         "INSERT INTO entry_claims(peer, external_id, entry_id) VALUES(?1, ?2, ?3) "
         "ON CONFLICT(peer, external_id) DO UPDATE SET entry_id = excluded.entry_id");
  for (const auto& c : claims) {
    s.reset();
    s.bind(1, std::string_view(c.peer))
        .bind(2, std::string_view(c.external_id))
        .bind(3, c.entry_id);
    s.step();
  }
}

std::vector<std::int64_t> SqliteStore::drop_claims(const std::string& peer,
                                                   std::span<const std::string> external_ids) {
  std::vector<std::int64_t> out;
  Stmt s(conn_, "DELETE FROM entry_claims WHERE peer = ?1 AND external_id = ?2 RETURNING entry_id");
  for (const auto& x : external_ids) {
    s.reset();
    s.bind(1, std::string_view(peer)).bind(2, std::string_view(x));
    while (s.step()) out.push_back(s.i64(0));
  }
  return out;
}

std::vector<std::int64_t> SqliteStore::claim_counts(std::span<const std::int64_t> ids) {
  std::vector<std::int64_t> out;
  out.reserve(ids.size());
  if (!claims_table_) return std::vector<std::int64_t>(ids.size(), 0);
  Stmt s(conn_, "SELECT count(*) FROM entry_claims WHERE entry_id = ?1");
  for (const auto id : ids) {
    s.reset();
    s.bind(1, id);
    out.push_back(s.step() ? s.i64(0) : 0);
  }
  return out;
}

void SqliteStore::drop_claims_of(std::span<const std::int64_t> ids) {
  if (!claims_table_) return;
  Stmt s(conn_, "DELETE FROM entry_claims WHERE entry_id = ?1");
  for (const auto id : ids) {
    s.reset();
    s.bind(1, id);
    s.step();
  }
}

void SqliteStore::rekey_claims(const std::string& from, const std::string& to) {
  if (!claims_table_ || from == to) return;
  Stmt a(conn_, "UPDATE OR IGNORE entry_claims SET peer = ?2 WHERE peer = ?1");
  a.bind(1, std::string_view(from)).bind(2, std::string_view(to));
  a.step();
  Stmt b(conn_, "DELETE FROM entry_claims WHERE peer = ?1");
  b.bind(1, std::string_view(from));
  b.step();
  Stmt c(conn_, "UPDATE entries SET peer = ?2 WHERE peer = ?1 AND peer <> ''");
  c.bind(1, std::string_view(from)).bind(2, std::string_view(to));
  c.step();
}

void SqliteStore::scan_claims(const std::function<void(const Claim&)>& fn) {
  if (!claims_table_) return;
  Stmt s(conn_, "SELECT peer, external_id, entry_id FROM entry_claims ORDER BY entry_id, peer");
  while (s.step()) fn(Claim{s.text(0), s.text(1), s.i64(2)});
}

std::int64_t SqliteStore::audit_high_water() {
  if (!list_tables_) return 0;
  Stmt s(conn_, "SELECT coalesce(max(id), 0) FROM audit");
  return s.step() ? s.i64(0) : 0;
}

std::vector<AuditEvent> SqliteStore::audit_after(std::int64_t after, std::size_t limit) {
  std::vector<AuditEvent> out;
  if (!list_tables_) return out;
  Stmt s(conn_, ("SELECT id, at, actor, action, list, ids, reason, detail FROM audit WHERE id > ?1 "
                 "ORDER BY id LIMIT " +
                 std::to_string(limit))
                    .c_str());
  s.bind(1, after);
  while (s.step()) {
    AuditEvent e;
    e.id = s.i64(0);
    e.at = s.i64(1);
    e.actor = s.text(2);
    e.action = s.text(3);
    e.list = s.text(4);
    auto ids = decode_ids(s.blob(5));
    if (!ids)
      throw Error(ErrorKind::Bank, where(),
                  "audit row " + std::to_string(e.id) + " is corrupt (run 'hashwall check')");
    e.ids = std::move(*ids);
    e.reason = s.text(6);
    e.detail = s.text(7);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace hashwall::sqlite
