// The PostgreSQL store's lists, entry state and audit log (format 5, pg_store.cpp's schema).
#include <algorithm>

#include "bank/pg.hpp"
#include "bank/pg_store_impl.hpp"
#include "bank/store.hpp"
#include "bank/values.hpp"
#include "core/error.hpp"

namespace hashwall::pg {

namespace {

using bank_detail::decode_ids;
using bank_detail::encode_ids;

// Ids per statement, as pg_records.cpp sends them.
constexpr std::size_t kIdChunk = 10000;

std::string ids_literal(std::span<const std::int64_t> ids) {
  std::string out = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out + "}";
}

}  // namespace

std::vector<ListInfo> PgStore::lists(bool counts) {
  std::vector<ListInfo> out;
  if (!list_tables_) return out;  // format 4: Bank::lists() answers
  const auto r =
      q(counts ? "SELECT l.id, l.name, l.kind, l.disabled_reason, l.disabled_until, "
                 "l.description, l.organisation, l.terms, l.created_at, coalesce(c.n, 0)::bigint "
                 "FROM lists l LEFT JOIN (SELECT list_id, count(*) AS n FROM entries GROUP BY "
                 "list_id) c ON c.list_id = l.id ORDER BY l.id"
               : "SELECT id, name, kind, disabled_reason, disabled_until, description, "
                 "organisation, terms, created_at, 0::bigint FROM lists ORDER BY id");
  for (int i = 0; i < r.rows(); ++i) {
    ListInfo l;
    l.id = r.i64(i, 0);
    l.name = r.text(i, 1);
    l.kind = r.text(i, 2) == "allow" ? ListKind::Allow : ListKind::Block;
    if (!r.null(i, 3)) {
      l.disabled = Disabled{r.text(i, 3), std::nullopt};
      if (!r.null(i, 4)) l.disabled->until = r.i64(i, 4);
    }
    l.description = r.text(i, 5);
    l.organisation = r.text(i, 6);
    l.terms = r.text(i, 7);
    l.created_at = r.i64(i, 8);
    l.entries = r.i64(i, 9);
    out.push_back(std::move(l));
  }
  return out;
}

std::int64_t PgStore::insert_list(const ListInfo& l) {
  const std::vector<Param> p{text(l.name),
                             text(list_kind_name(l.kind)),
                             l.disabled ? blob(l.disabled->reason) : none(),
                             l.disabled && l.disabled->until ? num(*l.disabled->until) : none(),
                             blob(l.description),
                             blob(l.organisation),
                             blob(l.terms),
                             num(l.created_at)};
  if (l.id <= 0)
    return q("INSERT INTO lists(name, kind, disabled_reason, disabled_until, description, "
             "organisation, terms, created_at) VALUES($1, $2, $3, $4::bigint, $5, $6, $7, "
             "$8::bigint) RETURNING id",
             p)
        .i64(0, 0);
  auto with_id = p;
  with_id.push_back(num(l.id));
  q("INSERT INTO lists(name, kind, disabled_reason, disabled_until, description, organisation, "
    "terms, created_at, id) VALUES($1, $2, $3, $4::bigint, $5, $6, $7, $8::bigint, $9::bigint)",
    with_id);
  // An explicit id does not move the identity's sequence: keep it past the ids written.
  q("SELECT setval(pg_get_serial_sequence('lists', 'id'), greatest((SELECT max(id) FROM lists), "
    "1))");
  return l.id;
}

void PgStore::update_list(const ListInfo& l) {
  q("UPDATE lists SET kind = $2, disabled_reason = $3, disabled_until = $4::bigint, description "
    "= $5, organisation = $6, terms = $7 WHERE id = $1::bigint",
    {num(l.id), text(list_kind_name(l.kind)), l.disabled ? blob(l.disabled->reason) : none(),
     l.disabled && l.disabled->until ? num(*l.disabled->until) : none(), blob(l.description),
     blob(l.organisation), blob(l.terms)});
}

std::vector<std::int64_t> PgStore::set_entries_disabled(std::span<const std::int64_t> ids,
                                                        const std::optional<Disabled>& state) {
  std::vector<std::int64_t> out;
  for (std::size_t at = 0; at < ids.size(); at += kIdChunk) {
    const auto r =
        q("UPDATE entries SET disabled_reason = $2, disabled_until = $3::bigint WHERE id = "
          "ANY($1::bigint[]) RETURNING id",
          {text(ids_literal(ids.subspan(at, std::min(kIdChunk, ids.size() - at)))),
           state ? blob(state->reason) : none(),
           state && state->until ? num(*state->until) : none()});
    for (int i = 0; i < r.rows(); ++i) out.push_back(r.i64(i, 0));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::int64_t PgStore::append_audit(const AuditEvent& e) {
  const std::vector<Param> p{num(e.at),     blob(e.actor),           text(e.action),
                             text(e.list),  blob(encode_ids(e.ids)), blob(e.reason),
                             blob(e.detail)};
  if (e.id <= 0)
    return q("INSERT INTO audit(at, actor, action, list, ids, reason, detail) VALUES($1::bigint, "
             "$2, $3, $4, $5, $6, $7) RETURNING id",
             p)
        .i64(0, 0);
  auto with_id = p;
  with_id.push_back(num(e.id));
  q("INSERT INTO audit(at, actor, action, list, ids, reason, detail, id) VALUES($1::bigint, $2, "
    "$3, $4, $5, $6, $7, $8::bigint)",
    with_id);
  q("SELECT setval(pg_get_serial_sequence('audit', 'id'), greatest((SELECT max(id) FROM audit), "
    "1))");
  return e.id;
}

std::int64_t PgStore::audit_high_water() {
  if (!list_tables_) return 0;
  return q("SELECT coalesce(max(id), 0)::bigint FROM audit", {}).i64(0, 0);
}

std::vector<AuditEvent> PgStore::audit_after(std::int64_t after, std::size_t limit) {
  std::vector<AuditEvent> out;
  if (!list_tables_) return out;
  const auto r =
      q("SELECT id, at, actor, action, list, ids, reason, detail FROM audit WHERE id > $1::bigint "
        "ORDER BY id LIMIT $2::bigint",
        {num(after), num(static_cast<std::int64_t>(limit))});
  for (int i = 0; i < r.rows(); ++i) {
    AuditEvent e;
    e.id = r.i64(i, 0);
    e.at = r.i64(i, 1);
    e.actor = r.text(i, 2);
    e.action = r.text(i, 3);
    e.list = r.text(i, 4);
    auto ids = decode_ids(r.bytes(i, 5));
    if (!ids)
      throw Error(ErrorKind::Bank, where(),
                  "audit row " + std::to_string(e.id) + " is corrupt (run 'hashwall check')");
    e.ids = std::move(*ids);
    e.reason = r.text(i, 6);
    e.detail = r.text(i, 7);
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace hashwall::pg
