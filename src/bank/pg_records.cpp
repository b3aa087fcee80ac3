// The PostgreSQL store's records (pg_store_impl.hpp): the entries, each signal's records,
// the digests and the change log, as the SQLite store keeps them (sqlite_records.cpp) in
// PostgreSQL's dialect. Scans page through a table by id inside one read transaction, so
// a table of ten million rows never sits in memory whole.
#include <algorithm>
#include <limits>
#include <map>

#include "bank/pg.hpp"
#include "bank/pg_store_impl.hpp"
#include "bank/store.hpp"
#include "bank/values.hpp"
#include "core/error.hpp"
#include "local/local_features.hpp"

namespace hashwall::pg {

namespace {

using bank_detail::decode_ids;
using bank_detail::encode_ids;
using bank_detail::hash_bytes;
using bank_detail::hash_from_blob;

// An entry's columns (PgStore::entry_select), in entry_from_row's order: the row's own,
// then its list's (format 5), then its MD5 (format 6).
constexpr const char* kEntryColumns5 =
    "e.id, e.sha256, e.pdq, e.quality, e.label, e.source, e.origin, e.added_at, e.list_id, "
    "e.added_by, e.peer, e.external_id, e.disabled_reason, e.disabled_until, l.name, l.kind, "
    "l.disabled_reason, l.disabled_until, ";
constexpr const char* kEntryFrom5 = " FROM entries e LEFT JOIN lists l ON l.id = e.list_id";
constexpr const char* kEntryColumns4 =
    "e.id, e.sha256, e.pdq, e.quality, e.label, e.source, e.origin, e.added_at, 1::bigint, "
    "''::bytea, ''::bytea, ''::bytea, NULL::bytea, NULL::bigint, 'default'::text, "
    "'block'::text, NULL::bytea, NULL::bigint, NULL::text FROM entries e";
// Ids per statement when a list of ids is sent as one bigint[] parameter.
constexpr std::size_t kIdChunk = 10000;

std::optional<Disabled> disabled_from(const Result& r, int i, int reason, int until) {
  if (r.null(i, reason)) return std::nullopt;
  Disabled d{r.text(i, reason), std::nullopt};
  if (!r.null(i, until)) d.until = r.i64(i, until);
  return d;
}

Entry entry_from_row(const std::string& where, const Result& r, int i) {
  Entry e;
  e.id = r.i64(i, 0);
  if (!r.null(i, 1)) e.sha256 = r.text(i, 1);
  if (!r.null(i, 18)) e.md5 = r.text(i, 18);
  if (!r.null(i, 2)) {
    const auto h = hash_from_blob(r.bytes(i, 2));
    if (!h)
      throw Error(ErrorKind::Bank, where,
                  "entry " + std::to_string(e.id) + " is corrupt: its PDQ hash is " +
                      std::to_string(r.bytes(i, 2).size()) +
                      " bytes, not 32 (run 'hashwall check')");
    e.pdq = *h;
  }
  // An entry without a PDQ hash, SHA-256 or MD5 is a video imported from its vPDQ hashes
  // (its record says so; check() names one without).
  if (!r.null(i, 3)) e.quality = static_cast<int>(r.i64(i, 3));
  e.label = r.text(i, 4);
  e.source = r.text(i, 5);
  e.origin = r.text(i, 6) == "imported" ? Origin::Imported : Origin::Indexed;
  e.added_at = r.i64(i, 7);
  e.list_id = r.i64(i, 8);
  e.added_by = r.text(i, 9);
  e.peer = r.text(i, 10);
  e.external_id = r.text(i, 11);
  e.disabled = disabled_from(r, i, 12, 13);
  if (r.null(i, 14)) {  // cannot happen with the foreign key; as the SQLite store says
    e.list_name.clear();
    e.list_disabled = Disabled{"its list " + std::to_string(e.list_id) + " is missing", {}};
    return e;
  }
  e.list_name = r.text(i, 14);
  e.list_kind = r.text(i, 15) == "allow" ? ListKind::Allow : ListKind::Block;
  e.list_disabled = disabled_from(r, i, 16, 17);
  return e;
}

std::string id_array(std::span<const std::int64_t> ids) {
  std::string out = "{";
  for (std::size_t i = 0; i < ids.size(); ++i) out += (i ? "," : "") + std::to_string(ids[i]);
  return out + "}";
}

// A one-dimensional array literal for a text parameter ("{...}"), built element by element:
// bytea as "\\x<hex>", text of safe characters (sha256 hex, origin names) as it is.
class ArrayLiteral {
 public:
  void bytes(std::string_view b) {
    static constexpr char kHex[] = "0123456789abcdef";
    sep();
    s_ += "\"\\\\x";
    for (const unsigned char c : b) {
      s_ += kHex[c >> 4];
      s_ += kHex[c & 15];
    }
    s_ += '"';
  }
  void word(std::string_view w) {
    sep();
    s_ += w;
  }
  void null() { word("NULL"); }
  std::string done() const { return s_ + "}"; }
  bool empty() const { return s_.size() == 1; }

 private:
  void sep() { s_ += s_.size() > 1 ? "," : ""; }
  std::string s_ = "{";
};

// Calls fn(begin, end) for each chunk of n items that one statement takes.
template <class Fn>
void in_chunks(std::size_t n, Fn&& fn) {
  for (std::size_t at = 0; at < n; at += kIdChunk) fn(at, std::min(n, at + kIdChunk));
}

std::optional<std::int64_t> first_id(const Result& r) {
  if (r.rows() == 0) return std::nullopt;
  return r.i64(0, 0);
}

}  // namespace

std::optional<std::int64_t> PgStore::id_of_sha256(std::string_view sha) {
  return first_id(q("SELECT id FROM entries WHERE sha256 = $1", {text(sha)}));
}

std::optional<std::int64_t> PgStore::id_of_md5(std::string_view md5) {
  if (!md5_column_) return std::nullopt;
  return first_id(q("SELECT id FROM entries WHERE md5 = $1", {text(md5)}));
}

std::optional<std::int64_t> PgStore::id_of_unhashed(std::string_view source, const Hash256& pdq,
                                                    Origin origin) {
  return first_id(
      q("SELECT id FROM entries WHERE sha256 IS NULL AND source = $1 AND pdq = $2 "
        "AND origin = $3 ORDER BY id LIMIT 1",
        {blob(source), blob(hash_bytes(pdq)), text(origin_name(origin))}));
}

std::int64_t PgStore::insert_entry(const NewEntry& e, const std::optional<std::string>& sha,
                                   const std::optional<std::string>& md5, std::int64_t added_at) {
  const auto r =
      q("INSERT INTO entries(sha256, pdq, quality, label, source, origin, added_at, list_id, "
        "added_by, peer, external_id, md5) VALUES($1, $2, $3::integer, $4, $5, $6, $7::bigint, "
        "$8::bigint, $9, $10, $11, $12) RETURNING id",
        {sha ? text(*sha) : none(), e.pdq ? blob(hash_bytes(*e.pdq)) : none(),
         e.quality ? num(*e.quality) : none(), blob(e.label), blob(e.source),
         text(origin_name(e.origin)), num(added_at), num(e.list_id), blob(e.added_by), blob(e.peer),
         blob(e.external_id), md5 ? text(*md5) : none()});
  return r.i64(0, 0);
}

std::vector<std::optional<std::int64_t>> PgStore::existing_ids(std::span<const NewRow> rows) {
  std::vector<std::optional<std::int64_t>> out(rows.size());
  in_chunks(rows.size(), [&](std::size_t from, std::size_t to) {
    // Three look-ups, by SHA-256, by MD5 and by (source, pdq, origin), each one statement;
    // a row's ordinality in the arrays says which input it answers.
    ArrayLiteral shas, sha_at, md5s, md5_at, sources, pdqs, origins, unhashed_at;
    for (std::size_t i = from; i < to; ++i) {
      if (rows[i].sha256) {
        shas.word(*rows[i].sha256);
        sha_at.word(std::to_string(i));
      } else if (rows[i].md5) {
        md5s.word(*rows[i].md5);
        md5_at.word(std::to_string(i));
      } else {
        sources.bytes(rows[i].entry->source);
        pdqs.bytes(hash_bytes(*rows[i].entry->pdq));
        origins.word(origin_name(rows[i].entry->origin));
        unhashed_at.word(std::to_string(i));
      }
    }
    const auto take = [&](const Result& r) {
      for (int k = 0; k < r.rows(); ++k)
        out.at(static_cast<std::size_t>(r.i64(k, 0))) = r.i64(k, 1);
    };
    if (!sha_at.empty())
      take(
          q("SELECT u.at, min(e.id) FROM unnest($1::text[], $2::bigint[]) AS u(sha, at) "
            "JOIN entries e ON e.sha256 = u.sha GROUP BY u.at",
            {text(shas.done()), text(sha_at.done())}));
    if (!md5_at.empty() && md5_column_)
      take(
          q("SELECT u.at, min(e.id) FROM unnest($1::text[], $2::bigint[]) AS u(md5, at) "
            "JOIN entries e ON e.md5 = u.md5 GROUP BY u.at",
            {text(md5s.done()), text(md5_at.done())}));
    if (!unhashed_at.empty())
      take(q(
          "SELECT u.at, min(e.id) FROM unnest($1::bytea[], $2::bytea[], $3::text[], $4::bigint[]) "
          "AS u(source, pdq, origin, at) JOIN entries e ON e.sha256 IS NULL AND e.pdq = u.pdq "
          "AND e.source = u.source AND e.origin = u.origin GROUP BY u.at",
          {text(sources.done()), text(pdqs.done()), text(origins.done()),
           text(unhashed_at.done())}));
  });
  return out;
}

std::vector<std::int64_t> PgStore::insert_entries(std::span<const NewRow> rows,
                                                  std::int64_t added_at) {
  std::vector<std::int64_t> out;
  out.reserve(rows.size());
  in_chunks(rows.size(), [&](std::size_t from, std::size_t to) {
    // The ids first, from the identity's own sequence (so they grow in the rows' order
    // whatever order INSERT ... SELECT takes), then every row in one statement.
    const auto r =
        q("SELECT nextval(pg_get_serial_sequence('entries', 'id')::regclass) "
          "FROM generate_series(1, $1::bigint) ORDER BY 1",
          {num(static_cast<std::int64_t>(to - from))});
    ArrayLiteral ids, shas, pdqs, qualities, labels, sources, origins, lists, added_by, peers,
        external_ids, md5s;
    for (std::size_t i = from; i < to; ++i) {
      const NewEntry& e = *rows[i].entry;
      const std::int64_t id = r.i64(static_cast<int>(i - from), 0);
      out.push_back(id);
      ids.word(std::to_string(id));
      rows[i].sha256 ? shas.word(*rows[i].sha256) : shas.null();
      e.pdq ? pdqs.bytes(hash_bytes(*e.pdq)) : pdqs.null();
      rows[i].md5 ? md5s.word(*rows[i].md5) : md5s.null();
      e.quality ? qualities.word(std::to_string(*e.quality)) : qualities.null();
      labels.bytes(e.label);
      sources.bytes(e.source);
      origins.word(origin_name(e.origin));
      lists.word(std::to_string(e.list_id));
      added_by.bytes(e.added_by);
      peers.bytes(e.peer);
      external_ids.bytes(e.external_id);
    }
    q("INSERT INTO entries(id, sha256, pdq, quality, label, source, origin, list_id, added_by, "
      "peer, external_id, md5, added_at) OVERRIDING SYSTEM VALUE SELECT u.*, $13::bigint FROM "
      "unnest($1::bigint[], $2::text[], $3::bytea[], $4::integer[], $5::bytea[], $6::bytea[], "
      "$7::text[], $8::bigint[], $9::bytea[], $10::bytea[], $11::bytea[], $12::text[]) AS u",
      {text(ids.done()), text(shas.done()), text(pdqs.done()), text(qualities.done()),
       text(labels.done()), text(sources.done()), text(origins.done()), text(lists.done()),
       text(added_by.done()), text(peers.done()), text(external_ids.done()), text(md5s.done()),
       num(added_at)});
  });
  return out;
}

void PgStore::insert_digests(std::span<const std::int64_t> ids,
                             std::span<const std::string> digests) {
  in_chunks(ids.size(), [&](std::size_t from, std::size_t to) {
    ArrayLiteral digest_array;
    for (std::size_t i = from; i < to; ++i) digest_array.bytes(digests[i]);
    q("INSERT INTO entry_digests(entry_id, digest) SELECT * FROM unnest($1::bigint[], "
      "$2::bytea[])",
      {text(id_array(ids.subspan(from, to - from))), text(digest_array.done())});
  });
}

void PgStore::insert_entry_as(const Entry& e) {
  q("INSERT INTO entries(id, sha256, pdq, quality, label, source, origin, added_at, list_id, "
    "added_by, peer, external_id, disabled_reason, disabled_until, md5) OVERRIDING SYSTEM VALUE "
    "VALUES($1::bigint, $2, $3, $4::integer, $5, $6, $7, $8::bigint, $9::bigint, $10, $11, $12, "
    "$13, $14::bigint, $15)",
    {num(e.id), e.sha256 ? text(*e.sha256) : none(), e.pdq ? blob(hash_bytes(*e.pdq)) : none(),
     e.quality ? num(*e.quality) : none(), blob(e.label), blob(e.source),
     text(origin_name(e.origin)), num(e.added_at), num(e.list_id), blob(e.added_by), blob(e.peer),
     blob(e.external_id), e.disabled ? blob(e.disabled->reason) : none(),
     e.disabled && e.disabled->until ? num(*e.disabled->until) : none(),
     e.md5 ? text(*e.md5) : none()});
}

// The identity's sequence holds the highest id given (NULL before the first).
std::int64_t PgStore::id_high_water() {
  const auto r =
      q("SELECT greatest(coalesce(pg_sequence_last_value(pg_get_serial_sequence('entries', "
        "'id')::regclass), 0), coalesce((SELECT max(id) FROM entries), 0))::bigint");
  return r.i64(0, 0);
}

// Also after insert_entry_as, which does not move the sequence past the ids it wrote.
void PgStore::raise_id_high_water(std::int64_t id) {
  const auto r =
      q("SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence('entries', "
        "'id')::regclass), 0)::bigint, coalesce((SELECT max(id) FROM entries), 0)::bigint");
  const auto target = std::max(id, r.i64(0, 1));
  if (target <= 0 || target <= r.i64(0, 0)) return;
  q("SELECT setval(pg_get_serial_sequence('entries', 'id')::regclass, $1::bigint)", {num(target)});
}

void PgStore::insert_record(const std::string& signal, std::int64_t id, std::string_view record) {
  if (signal == "local") {
    const auto blobs = split_local_record(record);
    if (!blobs) throw Error(ErrorKind::Bank, where(), "a local record that is not two blobs");
    q("INSERT INTO local_features(entry_id, keypoints, descriptors) VALUES($1::bigint, $2, $3)",
      {num(id), blob(blobs->first), blob(blobs->second)});
    return;
  }
  if (signal == "embed") {
    q("INSERT INTO embeddings(entry_id, vector) VALUES($1::bigint, $2)", {num(id), blob(record)});
    return;
  }
  q("INSERT INTO signal_rows(signal, entry_id, record) VALUES($1, $2::bigint, $3)",
    {text(signal), num(id), blob(record)});
}

std::vector<RemovedEntry> PgStore::removed(const Result& r) {
  std::vector<RemovedEntry> gone;
  for (int i = 0; i < r.rows(); ++i) gone.push_back({r.i64(i, 0), r.text(i, 1), r.i64(i, 2)});
  std::sort(gone.begin(), gone.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return gone;
}

std::vector<RemovedEntry> PgStore::remove_ids(std::span<const std::int64_t> ids) {
  std::vector<RemovedEntry> gone;
  for (std::size_t at = 0; at < ids.size(); at += kIdChunk) {
    const auto part = ids.subspan(at, std::min(kIdChunk, ids.size() - at));
    for (auto& g :
         removed(q("DELETE FROM entries WHERE id = ANY($1::bigint[]) RETURNING id, pdq, list_id",
                   {text(id_array(part))})))
      gone.push_back(std::move(g));
  }
  return gone;
}

void PgStore::insert_digest(std::int64_t id, std::string_view digest) {
  q("INSERT INTO entry_digests(entry_id, digest) VALUES($1::bigint, $2)", {num(id), blob(digest)});
}

std::vector<std::string> PgStore::take_digests(std::span<const std::int64_t> ids) {
  std::vector<std::string> out;
  for (std::size_t at = 0; at < ids.size(); at += kIdChunk) {
    const auto part = ids.subspan(at, std::min(kIdChunk, ids.size() - at));
    const auto r =
        q("DELETE FROM entry_digests WHERE entry_id = ANY($1::bigint[]) RETURNING digest",
          {text(id_array(part))});
    for (int i = 0; i < r.rows(); ++i) out.push_back(r.text(i, 0));
  }
  return out;
}

std::vector<RemovedEntry> PgStore::remove_label(const std::string& label) {
  return removed(
      q("DELETE FROM entries WHERE label = $1 RETURNING id, pdq, list_id", {blob(label)}));
}

bool PgStore::complete_entry_pdq(std::int64_t id, const Hash256& pdq, std::optional<int> quality) {
  const auto r =
      q("UPDATE entries SET pdq = $1, quality = $2::integer WHERE id = $3::bigint AND pdq IS NULL "
        "RETURNING id",
        {blob(hash_bytes(pdq)), quality ? num(*quality) : none(), num(id)});
  return r.rows() > 0;
}

std::vector<RemovedEntry> PgStore::remove_sha256(const std::string& sha) {
  return removed(
      q("DELETE FROM entries WHERE sha256 = $1 RETURNING id, pdq, list_id", {text(sha)}));
}

void PgStore::log_change(const Change& c) {
  const auto gen = static_cast<std::int64_t>(c.generation);
  q("INSERT INTO changes(generation, op, ids) VALUES($1::bigint, $2, $3)",
    {num(gen), text(c.op == ChangeOp::Add ? "add" : "remove"), blob(encode_ids(c.ids))});
  // Delivered at commit, to every connection LISTENing (changed_elsewhere), this one too.
  q("SELECT pg_notify($1, $2)", {text(kChannel), text(std::to_string(gen))});
}

void PgStore::prune_changes(std::uint64_t through) {
  const auto from_text = meta("changes_from");
  const auto from = from_text ? bank_detail::parse_uint(*from_text) : std::nullopt;
  if (from && *from >= through) return;
  q("DELETE FROM changes WHERE generation <= $1::bigint",
    {num(static_cast<std::int64_t>(through))});
  set_meta("changes_from", std::to_string(through));
}

std::string PgStore::entry_select() const {
  if (!list_tables_) return std::string("SELECT ") + kEntryColumns4;
  return std::string("SELECT ") + kEntryColumns5 + (md5_column_ ? "e.md5" : "NULL::text") +
         kEntryFrom5;
}

std::optional<Entry> PgStore::get(std::int64_t id) {
  const auto r = q(entry_select() + " WHERE e.id = $1::bigint", {num(id)});
  if (r.rows() == 0) return std::nullopt;
  return entry_from_row(where(), r, 0);
}

std::optional<Entry> PgStore::find_sha256(std::string_view sha) {
  const auto r = q(entry_select() + " WHERE e.sha256 = $1", {text(sha)});
  if (r.rows() == 0) return std::nullopt;
  return entry_from_row(where(), r, 0);
}

std::optional<Entry> PgStore::find_md5(std::string_view md5) {
  if (!md5_column_) return std::nullopt;
  const auto r = q(entry_select() + " WHERE e.md5 = $1", {text(md5)});
  if (r.rows() == 0) return std::nullopt;
  return entry_from_row(where(), r, 0);
}

std::vector<Entry> PgStore::entries_after(std::int64_t after, std::size_t limit) {
  const auto r = q(entry_select() + " WHERE e.id > $1::bigint ORDER BY e.id LIMIT $2::bigint",
                   {num(after), num(static_cast<std::int64_t>(limit))});
  std::vector<Entry> page;
  for (int i = 0; i < r.rows(); ++i) page.push_back(entry_from_row(where(), r, i));
  return page;
}

std::vector<Entry> PgStore::list_entries_after(std::int64_t list_id, std::int64_t after,
                                               std::size_t limit) {
  if (!list_tables_)
    return list_id == kDefaultListId ? entries_after(after, limit) : std::vector<Entry>{};
  const auto r = q(entry_select() +
                       " WHERE e.list_id = $1::bigint AND e.id > $2::bigint ORDER BY e.id LIMIT "
                       "$3::bigint",
                   {num(list_id), num(after), num(static_cast<std::int64_t>(limit))});
  std::vector<Entry> page;
  for (int i = 0; i < r.rows(); ++i) page.push_back(entry_from_row(where(), r, i));
  return page;
}

std::vector<std::pair<std::string, std::int64_t>> PgStore::ids_from_peer(
    const std::string& peer, std::span<const std::string> external_ids) {
  std::vector<std::pair<std::string, std::int64_t>> out;
  if (!claims_table_) return out;
  in_chunks(external_ids.size(), [&](std::size_t from, std::size_t to) {
    ArrayLiteral xs;
    for (std::size_t i = from; i < to; ++i) xs.bytes(external_ids[i]);
    const auto r =
        q("SELECT external_id, entry_id FROM entry_claims WHERE peer = $1 AND "
          "external_id = ANY($2::bytea[])",
          {blob(peer), text(xs.done())});
    for (int i = 0; i < r.rows(); ++i) out.emplace_back(r.text(i, 0), r.i64(i, 1));
  });
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  return out;
}

void PgStore::add_claims(std::span<const Claim> claims) {
  in_chunks(claims.size(), [&](std::size_t from, std::size_t to) {
    ArrayLiteral peers, xs;
    std::vector<std::int64_t> ids;
    for (std::size_t i = from; i < to; ++i) {
      peers.bytes(claims[i].peer);
      xs.bytes(claims[i].external_id);
      ids.push_back(claims[i].entry_id);
    }
    q("INSERT INTO entry_claims(peer, external_id, entry_id) SELECT * FROM unnest($1::bytea[], "
      "$2::bytea[], $3::bigint[]) ON CONFLICT (peer, external_id) DO UPDATE SET entry_id = "
      "excluded.entry_id",
      {text(peers.done()), text(xs.done()), text(id_array(ids))});
  });
}

std::vector<std::int64_t> PgStore::drop_claims(const std::string& peer,
                                               std::span<const std::string> external_ids) {
  std::vector<std::int64_t> out;
  in_chunks(external_ids.size(), [&](std::size_t from, std::size_t to) {
    ArrayLiteral xs;
    for (std::size_t i = from; i < to; ++i) xs.bytes(external_ids[i]);
    const auto r =
        q("DELETE FROM entry_claims WHERE peer = $1 AND external_id = ANY($2::bytea[]) "
          "RETURNING entry_id",
          {blob(peer), text(xs.done())});
    for (int i = 0; i < r.rows(); ++i) out.push_back(r.i64(i, 0));
  });
  return out;
}

std::vector<std::int64_t> PgStore::claim_counts(std::span<const std::int64_t> ids) {
  std::vector<std::int64_t> out(ids.size(), 0);
  if (!claims_table_) return out;
  std::map<std::int64_t, std::int64_t> n;
  in_chunks(ids.size(), [&](std::size_t from, std::size_t to) {
    const auto r =
        q("SELECT entry_id, count(*)::bigint FROM entry_claims WHERE entry_id = "
          "ANY($1::bigint[]) GROUP BY entry_id",
          {text(id_array(ids.subspan(from, to - from)))});
    for (int i = 0; i < r.rows(); ++i) n[r.i64(i, 0)] = r.i64(i, 1);
  });
  for (std::size_t i = 0; i < ids.size(); ++i)
    if (const auto it = n.find(ids[i]); it != n.end()) out[i] = it->second;
  return out;
}

void PgStore::drop_claims_of(std::span<const std::int64_t> ids) {
  if (!claims_table_) return;
  in_chunks(ids.size(), [&](std::size_t from, std::size_t to) {
    q("DELETE FROM entry_claims WHERE entry_id = ANY($1::bigint[])",
      {text(id_array(ids.subspan(from, to - from)))});
  });
}

void PgStore::rekey_claims(const std::string& from, const std::string& to) {
  if (!claims_table_ || from == to) return;
  q("UPDATE entry_claims c SET peer = $2 WHERE c.peer = $1 AND NOT EXISTS (SELECT 1 FROM "
    "entry_claims d WHERE d.peer = $2 AND d.external_id = c.external_id)",
    {blob(from), blob(to)});
  q("DELETE FROM entry_claims WHERE peer = $1", {blob(from)});
  q("UPDATE entries SET peer = $2 WHERE peer = $1", {blob(from), blob(to)});
}

void PgStore::scan_claims(const std::function<void(const Claim&)>& fn) {
  if (!claims_table_) return;
  const auto r = q("SELECT peer, external_id, entry_id FROM entry_claims ORDER BY entry_id, peer");
  for (int i = 0; i < r.rows(); ++i) fn(Claim{r.text(i, 0), r.text(i, 1), r.i64(i, 2)});
}

std::optional<std::vector<Change>> PgStore::changes_since(std::uint64_t after) {
  const auto from_text = meta("changes_from");
  const auto from = from_text ? bank_detail::parse_int(*from_text) : std::nullopt;
  if (!from || after < static_cast<std::uint64_t>(*from)) return std::nullopt;
  const auto r =
      q("SELECT generation, op, ids FROM changes WHERE generation > $1::bigint ORDER BY generation",
        {num(static_cast<std::int64_t>(after))});
  std::vector<Change> out;
  for (int i = 0; i < r.rows(); ++i) {
    Change c;
    c.generation = static_cast<std::uint64_t>(r.i64(i, 0));
    c.op = r.text(i, 1) == "add" ? ChangeOp::Add : ChangeOp::Remove;
    auto ids = decode_ids(r.bytes(i, 2));
    if (!ids) return std::nullopt;  // damaged: the caller rebuilds
    c.ids = std::move(*ids);
    out.push_back(std::move(c));
  }
  return out;
}

void PgStore::paged(const std::string& sql, std::vector<Param> params, int id_col,
                    const std::function<void(const Result&, int)>& fn) {
  std::unique_ptr<Transaction> own;
  if (!in_transaction()) own = begin_read();
  const std::string page = sql + " LIMIT " + std::to_string(kPage);
  params.push_back(num(0));
  std::int64_t last = std::numeric_limits<std::int64_t>::min();
  for (;;) {
    params.back() = num(last);
    const auto r = q(page, params);
    for (int i = 0; i < r.rows(); ++i) fn(r, i);
    if (r.rows() < kPage) break;
    last = r.i64(r.rows() - 1, id_col);
  }
  if (own) own->commit();
}

void PgStore::by_ids(const std::string& sql, std::span<const std::int64_t> ids,
                     const std::vector<Param>& more,
                     const std::function<void(const Result&, int)>& fn) {
  for (std::size_t at = 0; at < ids.size(); at += kIdChunk) {
    std::vector<Param> params{text(id_array(ids.subspan(at, std::min(kIdChunk, ids.size() - at))))};
    params.insert(params.end(), more.begin(), more.end());
    const auto r = q(sql, params);
    for (int i = 0; i < r.rows(); ++i) fn(r, i);
  }
}

void PgStore::scan_pdq(const RowFn& fn, IdFilter only) {
  const auto row = [&](const Result& r, int i) { fn(r.i64(i, 0), r.bytes(i, 1)); };
  if (only)
    by_ids(
        "SELECT id, pdq FROM entries WHERE id = ANY($1::bigint[]) AND pdq IS NOT NULL ORDER BY id",
        *only, {}, row);
  else
    paged("SELECT id, pdq FROM entries WHERE id > $1::bigint AND pdq IS NOT NULL ORDER BY id", {},
          0, row);
}

void PgStore::scan_records(const std::string& signal, const RowFn& fn, IdFilter only) {
  if (signal == "local") {
    const auto row = [&](const Result& r, int i) {
      fn(r.i64(i, 0), local_record(r.bytes(i, 1), r.bytes(i, 2)));
    };
    if (only)
      by_ids(
          "SELECT entry_id, keypoints, descriptors FROM local_features WHERE entry_id = "
          "ANY($1::bigint[]) ORDER BY entry_id",
          *only, {}, row);
    else
      paged(
          "SELECT entry_id, keypoints, descriptors FROM local_features WHERE entry_id > "
          "$1::bigint ORDER BY entry_id",
          {}, 0, row);
    return;
  }
  const auto row = [&](const Result& r, int i) { fn(r.i64(i, 0), r.bytes(i, 1)); };
  if (signal == "embed") {
    if (only)
      by_ids(
          "SELECT entry_id, vector FROM embeddings WHERE entry_id = ANY($1::bigint[]) ORDER BY "
          "entry_id",
          *only, {}, row);
    else
      paged("SELECT entry_id, vector FROM embeddings WHERE entry_id > $1::bigint ORDER BY entry_id",
            {}, 0, row);
    return;
  }
  if (only)
    by_ids(
        "SELECT entry_id, record FROM signal_rows WHERE entry_id = ANY($1::bigint[]) AND signal "
        "= $2 ORDER BY entry_id",
        *only, {text(signal)}, row);
  else
    paged(
        "SELECT entry_id, record FROM signal_rows WHERE signal = $1 AND entry_id > $2::bigint "
        "ORDER BY entry_id",
        {text(signal)}, 0, row);
}

void PgStore::scan_all_records(
    const std::function<void(const std::string&, std::int64_t, std::string_view)>& fn) {
  std::unique_ptr<Transaction> own;
  if (!in_transaction()) own = begin_read();
  for (const std::string name : {"embed", "local"})
    scan_records(name, [&](std::int64_t id, std::string_view r) { fn(name, id, r); }, {});
  const auto names = q("SELECT DISTINCT signal FROM signal_rows ORDER BY signal");
  for (int i = 0; i < names.rows(); ++i) {
    const std::string name = names.text(i, 0);
    scan_records(name, [&](std::int64_t id, std::string_view r) { fn(name, id, r); }, {});
  }
  if (own) own->commit();
}

std::optional<std::string> PgStore::first_record(const std::string& signal) {
  Result r;
  if (signal == "embed")
    r = q("SELECT entry_id, vector FROM embeddings ORDER BY entry_id LIMIT 1");
  else if (signal == "local")
    r = q("SELECT entry_id, keypoints, descriptors FROM local_features ORDER BY entry_id LIMIT 1");
  else
    r = q("SELECT entry_id, record FROM signal_rows WHERE signal = $1 ORDER BY entry_id LIMIT 1",
          {text(signal)});
  if (r.rows() == 0) return std::nullopt;
  if (signal == "local") return local_record(r.bytes(0, 1), r.bytes(0, 2));
  return r.text(0, 1);
}

void PgStore::scan_raw_entries(const std::function<void(const RawEntry&)>& fn) {
  // PostgreSQL enforces the columns' types: a PDQ hash is always a bytea ("blob" in the
  // bank's words) and a quality an integer; check() still sees their lengths and ranges.
  paged(std::string("SELECT id, pdq, quality, origin, sha256, label, source, added_at, ") +
            (md5_column_ ? "md5" : "NULL::text") +
            " FROM entries WHERE id > $1::bigint ORDER BY id",
        {}, 0, [&](const Result& r, int i) {
          RawEntry e;
          e.id = r.i64(i, 0);
          e.pdq = r.text(i, 1);
          if (!r.null(i, 2)) {
            e.quality = r.i64(i, 2);
            e.quality_text = std::to_string(*e.quality);
          }
          e.origin = r.text(i, 3);
          if (!r.null(i, 4)) e.sha256 = r.text(i, 4);
          e.label = r.text(i, 5);
          e.source = r.text(i, 6);
          e.added_at = r.i64(i, 7);
          if (r.null(i, 1)) e.pdq_type = "null";
          if (!r.null(i, 8)) e.md5 = r.text(i, 8);
          fn(e);
        });
}

void PgStore::scan_digests(const RowFn& fn) {
  paged("SELECT entry_id, digest FROM entry_digests WHERE entry_id > $1::bigint ORDER BY entry_id",
        {}, 0, [&](const Result& r, int i) { fn(r.i64(i, 0), r.bytes(i, 1)); });
}

}  // namespace hashwall::pg
