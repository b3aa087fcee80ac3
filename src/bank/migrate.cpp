// Moving a bank between stores (SQLite file <-> PostgreSQL): every record as it is, under
// the same ids, with the same settings, checksums, seal and generation (bank.hpp,
// migrate_bank).
#include "bank/bank.hpp"
#include "bank/bank_impl.hpp"
#include "bank/store.hpp"
#include "core/error.hpp"

namespace hashwall {

namespace {

std::unique_ptr<Store> open_store_at(const fs::path& where, OpenMode mode,
                                     const std::vector<std::pair<std::string, std::string>>& meta,
                                     bool* created) {
  if (is_postgresql_location(where.native()))
    return open_postgresql_store(where.native(), mode, meta, created);
  return open_sqlite_store(where, mode, meta, created);
}

}  // namespace

MigrateReport migrate_bank(const fs::path& from, const fs::path& to,
                           const std::function<void(std::int64_t, std::int64_t)>& progress) {
  MigrateReport rep;
  // The source must be a bank this hashwall reads whole (Bank::open checks its settings).
  Bank::open(from, OpenMode::ReadOnly).reset();
  auto src = open_store_at(from, OpenMode::ReadOnly, {}, nullptr);
  rep.from = src->where();
  if (src->format_version() != kFormatVersion)
    throw Error(ErrorKind::Bank, rep.from,
                "bank format " + std::to_string(src->format_version()) +
                    ": open it for writing once (e.g. 'hashwall reindex') to bring it to format " +
                    std::to_string(kFormatVersion) + ", then migrate");
  auto read = src->begin_read();
  auto meta = src->all_meta();
  std::uint64_t generation = 0;
  for (auto& [k, v] : meta) {
    if (k == "generation") generation = parse_uint(v).value_or(0);
  }
  // The change log starts afresh at the copied generation: readers of the new bank load it
  // whole once.
  for (auto& [k, v] : meta)
    if (k == "changes_from") v = std::to_string(generation);
  // Until the copy commits, the new bank says it is unfinished and Bank::open refuses it.
  meta.emplace_back(kMigratingKey, "1");
  bool created = false;
  auto dst = open_store_at(to, OpenMode::Create, meta, &created);
  rep.to = dst->where();
  if (!created)
    throw Error(ErrorKind::Bank, rep.to,
                "a bank is already there: migrate writes a new bank only (remove it first: the "
                "file, or in PostgreSQL its tables meta, entries, local_features, embeddings, "
                "signal_rows, changes, entry_digests, lists, audit and entry_claims)");
  // Caches left by an earlier bank of that name describe other records (as Bank::open
  // clears them for a bank it creates).
  {
    std::error_code ec;
    const fs::path base = cache_base_for(to, rep.to);
    fs::remove(pdq_index_path(base), ec);
    for (const auto& [k, v] : meta)
      if (k == "signals")
        for (const auto& name : split_signals(v)) fs::remove(signal_cache_path(base, name), ec);
  }
  const std::int64_t total = src->count_entries();
  {
    auto write = dst->begin_write();
    // The lists first (entries name them), under their own ids; list 1 the new bank has.
    for (const auto& l : src->lists(false)) {
      if (l.id == kDefaultListId)
        dst->update_list(l);
      else
        dst->insert_list(l);
    }
    std::int64_t after = 0;
    // A format-5 bank made before claims (opened read-only here, so not upgraded) has its
    // synced entries' first claims in their provenance (sqlite_schema.cpp).
    std::vector<EntryClaim> seed;
    for (;;) {
      const auto page = src->entries_after(after, kChunk);
      if (page.empty()) break;
      for (const auto& e : page) {
        dst->insert_entry_as(e);
        if (!e.peer.empty() && !e.external_id.empty())
          seed.push_back({e.peer, e.external_id, e.id});
      }
      after = page.back().id;
      rep.entries += static_cast<std::int64_t>(page.size());
      if (progress) progress(rep.entries, total);
    }
    src->scan_all_records([&](const std::string& signal, std::int64_t id, std::string_view r) {
      dst->insert_record(signal, id, r);
      ++rep.records;
    });
    src->scan_digests([&](std::int64_t id, std::string_view d) {
      dst->insert_digest(id, d);
      ++rep.digests;
    });
    {
      std::vector<EntryClaim> claims;
      src->scan_claims([&](const EntryClaim& c) { claims.push_back(c); });
      dst->add_claims(claims.empty() ? seed : claims);
    }
    for (std::int64_t audit_after = 0;;) {
      const auto rows = src->audit_after(audit_after, kChunk);
      for (const auto& e : rows) dst->append_audit(e);
      if (rows.size() < kChunk) break;
      audit_after = rows.back().id;
    }
    dst->raise_id_high_water(src->id_high_water());
    dst->erase_meta(kMigratingKey);
    write->commit();
  }
  read->commit();
  rep.generation = generation;
  return rep;
}

}  // namespace hashwall
