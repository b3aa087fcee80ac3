// The Store: where a bank's records live (entries, each signal's rows, meta, the generation
// and the change log), behind one interface. The Bank above it owns the decisions (what
// is a duplicate, which records are valid, the derived indexes and their caches) and
// talks to its records only through this class, so a store is a small, mechanical thing:
// SQLite's (sqlite_store.cpp) is the first; PostgreSQL's (pg_store.cpp) implements the
// same verbs in its own dialect. No SQL and no SQLite type appears outside the store.
//
// A Store is not thread-safe: the Bank serialises all use of it (Bank::Impl::db_mu).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bank/bank.hpp"
#include "hash/hash256.hpp"

namespace hashwall {

// What one write did, as the change log keeps it. Every write that changes the records
// bumps the generation by one and logs its change in the same transaction, so a reader at
// generation g brings its indexes to the current generation by applying the changes after
// g (Bank::Impl::refresh_if_changed) instead of rebuilding them.
enum class ChangeOp { Add, Remove };
struct Change {
  std::uint64_t generation = 0;  // the generation the write produced
  ChangeOp op = ChangeOp::Add;
  std::vector<std::int64_t> ids;  // the entries added or removed
};

// An entry's fields as stored, before the Bank validates them (check()).
struct RawEntry {
  std::int64_t id = 0;
  std::string pdq;                 // 32 bytes when well formed
  std::string pdq_type = "blob";   // the stored value's type, as the engine names it ("null")
  std::optional<std::string> md5;  // format 6
  std::optional<std::int64_t> quality;
  std::string quality_type = "integer";
  std::string quality_text;
  std::string origin;
  std::optional<std::string> sha256;
  std::string label, source;
  std::int64_t added_at = 0;
};

// An entry a removal took out, with its PDQ hash as stored (the PDQ digest subtracts it;
// empty for an entry without one).
struct RemovedEntry {
  std::int64_t id = 0;
  std::string pdq;
  std::int64_t list_id = kDefaultListId;  // the audit log names the list it left
};

struct EntryCounts {
  std::int64_t entries = 0, indexed = 0, imported = 0, low_quality = 0, labels = 0;
  std::int64_t disabled = 0, flood = 0;  // entries disabled; of them, by the flood guard
};

// One signal's rows: how many, how many items in them (keypoints), their bytes.
struct RowCounts {
  std::int64_t rows = 0;
  std::int64_t items = 0;
  std::uintmax_t bytes = 0;
};

class Store {
 public:
  virtual ~Store() = default;

  // A transaction: rolled back when destroyed uncommitted. A read transaction sees one
  // snapshot; a write transaction excludes other writers (waiting for them up to a busy
  // timeout, then Error{Bank} "locked").
  class Transaction {
   public:
    virtual ~Transaction() = default;
    virtual void commit() = 0;
  };
  virtual std::unique_ptr<Transaction> begin_read() = 0;
  virtual std::unique_ptr<Transaction> begin_write() = 0;

  // The file or address errors name.
  virtual const std::string& where() const = 0;
  // The records' format (docs/BANK_FORMAT.md); older formats are upgraded by upgrade().
  virtual int format_version() const = 0;
  // Brings an older format up to date in place (read-write stores only); a no-op when
  // current. Never changes what the bank answers.
  virtual void upgrade() = 0;
  // Whether the store has the tables of format 2 (local features, embeddings) and 3
  // (registered signals' rows): an older bank opened read-only lacks them.
  virtual bool has_signal_tables() const = 0;
  virtual bool has_record_table() const = 0;
  // Whether the store has format 4's table of entry digests (bank/digests.hpp).
  virtual bool has_digest_table() const = 0;
  // Whether another connection committed since the last call (cheap; no read of data).
  virtual bool changed_elsewhere() = 0;

  // ---- meta -----------------------------------------------------------------------
  virtual std::optional<std::string> meta(const std::string& key) = 0;
  virtual void set_meta(const std::string& key, const std::string& value) = 0;

  // Every meta row, by key (migrate copies them).
  virtual std::vector<std::pair<std::string, std::string>> all_meta() = 0;
  virtual void erase_meta(const std::string& key) = 0;

  // ---- writes (inside begin_write) --------------------------------------------------
  virtual std::optional<std::int64_t> id_of_sha256(std::string_view sha256) = 0;
  // The entry with this MD5 (format 6; none before).
  virtual std::optional<std::int64_t> id_of_md5(std::string_view md5) = 0;
  // The entry without a SHA-256 with this source, PDQ hash and origin (an imported list
  // read twice), lowest id first.
  virtual std::optional<std::int64_t> id_of_unhashed(std::string_view source, const Hash256& pdq,
                                                     Origin origin) = 0;
  // Returns the new entry's id; ids only grow.
  // sha256 and md5 as checked and lowercased (NewRow), not as given in `e`.
  virtual std::int64_t insert_entry(const NewEntry& e, const std::optional<std::string>& sha256,
                                    const std::optional<std::string>& md5,
                                    std::int64_t added_at) = 0;

  // Batch forms of the three verbs above and of insert_digest, for adds of thousands of
  // entries (an import of millions): a remote store answers a batch in one round trip
  // where the single verbs take one per row. Duplicates *within* a batch are the caller's
  // to drop. The defaults call the single verbs, which is as fast for a local store.
  struct NewRow {
    const NewEntry* entry = nullptr;
    std::optional<std::string> sha256;  // lower-case hex, checked
    std::optional<std::string> md5;     // lower-case hex, checked
  };
  // Of each row, the id of the entry already stored that it duplicates (id_of_sha256 when
  // it has a SHA-256, else id_of_md5 when it has an MD5, else id_of_unhashed).
  virtual std::vector<std::optional<std::int64_t>> existing_ids(std::span<const NewRow> rows) {
    std::vector<std::optional<std::int64_t>> out;
    out.reserve(rows.size());
    for (const auto& r : rows)
      out.push_back(r.sha256 ? id_of_sha256(*r.sha256)
                    : r.md5  ? id_of_md5(*r.md5)
                             : id_of_unhashed(r.entry->source, *r.entry->pdq, r.entry->origin));
    return out;
  }
  // The new entries' ids, growing in the rows' order.
  virtual std::vector<std::int64_t> insert_entries(std::span<const NewRow> rows,
                                                   std::int64_t added_at) {
    std::vector<std::int64_t> out;
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(insert_entry(*r.entry, r.sha256, r.md5, added_at));
    return out;
  }
  virtual void insert_digests(std::span<const std::int64_t> ids,
                              std::span<const std::string> digests) {
    for (std::size_t i = 0; i < ids.size(); ++i) insert_digest(ids[i], digests[i]);
  }
  // An entry copied from another bank with its own id and time (migrate): ids stay the
  // entries' names across stores.
  virtual void insert_entry_as(const Entry& e) = 0;
  // The highest id ever given (removed entries' included: ids are never reused), and
  // raising it to `id` when lower, so that the next new entry gets a larger one.
  virtual std::int64_t id_high_water() = 0;
  virtual void raise_id_high_water(std::int64_t id) = 0;
  // A signal's record (signal/signal.hpp). "embed" and "local" keep their format-2 tables
  // (a local record is stored as its two blobs); the other signals share one.
  virtual void insert_record(const std::string& signal, std::int64_t id,
                             std::string_view record) = 0;
  // Each returns the entries it removed; an entry's signal rows go with it, its digest
  // does not (take_digests).
  virtual std::vector<RemovedEntry> remove_ids(std::span<const std::int64_t> ids) = 0;
  virtual std::vector<RemovedEntry> remove_label(const std::string& label) = 0;
  virtual std::vector<RemovedEntry> remove_sha256(const std::string& sha256) = 0;
  // An entry's digest (32 bytes), written with it.
  virtual void insert_digest(std::int64_t id, std::string_view digest) = 0;
  // Deletes the digests of these entries and returns those there were.
  virtual std::vector<std::string> take_digests(std::span<const std::int64_t> ids) = 0;
  // Gives an entry without a PDQ hash (a file-hash list's) its PDQ hash and quality: the
  // same file, indexed. False when it has one already (or is gone).
  virtual bool complete_entry_pdq(std::int64_t id, const Hash256& pdq,
                                  std::optional<int> quality) = 0;
  virtual void log_change(const Change& change) = 0;
  // Drops the log's rows up to generation `through` and records that the log is complete
  // from there (a reader at an older generation then rebuilds); a no-op when it already
  // starts there or later.
  virtual void prune_changes(std::uint64_t through) = 0;

  // ---- reads ----------------------------------------------------------------------
  // Throw Error{Bank} for an entry whose PDQ hash is not 32 bytes.
  virtual std::optional<Entry> get(std::int64_t id) = 0;
  virtual std::optional<Entry> find_sha256(std::string_view sha256) = 0;
  virtual std::optional<Entry> find_md5(std::string_view md5) = 0;
  // Entries with id > after, in id order, at most limit.
  virtual std::vector<Entry> entries_after(std::int64_t after, std::size_t limit) = 0;
  // The changes after generation `after`, oldest first; nullopt when the log does not
  // reach back that far (a bank upgraded from format 2, or a pruned log): rebuild then.
  virtual std::optional<std::vector<Change>> changes_since(std::uint64_t after) = 0;

  // Every row, in id order; with `only`, just the rows of those ids (none for an empty list).
  using RowFn = std::function<void(std::int64_t id, std::string_view bytes)>;
  using IdFilter = std::optional<std::span<const std::int64_t>>;
  virtual void scan_pdq(const RowFn& fn, IdFilter only = std::nullopt) = 0;
  virtual void scan_records(const std::string& signal, const RowFn& fn,
                            IdFilter only = std::nullopt) = 0;
  // Every signal's records (those insert_record wrote), by signal then id.
  virtual void scan_all_records(const std::function<void(const std::string& signal, std::int64_t id,
                                                         std::string_view record)>& fn) = 0;
  // The signal's record with the lowest entry id; nullopt when it has none.
  virtual std::optional<std::string> first_record(const std::string& signal) = 0;
  virtual void scan_raw_entries(const std::function<void(const RawEntry&)>& fn) = 0;
  // Every entry digest, in id order (none before format 4).
  virtual void scan_digests(const RowFn& fn) = 0;

  // ---- lists, entry state and the audit log (format 5) ------------------------------
  // Whether the store has format 5's tables: an older bank opened read-only lacks them, and
  // reads as one "default" block list with every entry enabled.
  virtual bool has_list_tables() const = 0;
  // Every list, by id; with `counts`, each list's number of entries (a scan). None without
  // format 5's tables.
  virtual std::vector<ListInfo> lists(bool counts) = 0;
  // Inside begin_write: a new list (l.id 0: the next id; else that id, for migrate), its id.
  virtual std::int64_t insert_list(const ListInfo& l) = 0;
  // Sets the list l.id's kind, state and texts to l's.
  virtual void update_list(const ListInfo& l) = 0;
  // Sets these entries' state (nullopt: enabled); returns the ids that exist, ascending.
  virtual std::vector<std::int64_t> set_entries_disabled(std::span<const std::int64_t> ids,
                                                         const std::optional<Disabled>& state) = 0;
  // Appends a row (e.id 0: the next id; else that id, for migrate); returns its id.
  virtual std::int64_t append_audit(const AuditEvent& e) = 0;
  // Rows with id > after, oldest first, at most limit.
  virtual std::vector<AuditEvent> audit_after(std::int64_t after, std::size_t limit) = 0;
  // The highest audit id given so far (0: none).
  virtual std::int64_t audit_high_water() = 0;
  // Entries of one list with id > after, in id order, at most limit.
  virtual std::vector<Entry> list_entries_after(std::int64_t list_id, std::int64_t after,
                                                std::size_t limit) = 0;
  // Claims (table entry_claims): which peers list an entry, under which of their ids. A
  // sync claims every entry it brings, a new one or one the bank held already; a peer's
  // removal drops its claim, and the entry goes only when no claim is left (exchange/feed).
  using Claim = EntryClaim;
  // Inside begin_write; a claim already there is pointed at the new entry id.
  virtual void add_claims(std::span<const Claim> claims) = 0;
  // The entries `peer` claims under these external ids: (external id, entry id) pairs, by
  // entry id.
  virtual std::vector<std::pair<std::string, std::int64_t>> ids_from_peer(
      const std::string& peer, std::span<const std::string> external_ids) = 0;
  // Inside begin_write: drops peer's claims under these external ids; the entry ids they were
  // on.
  virtual std::vector<std::int64_t> drop_claims(const std::string& peer,
                                                std::span<const std::string> external_ids) = 0;
  // Each entry's number of claims, in the order given.
  virtual std::vector<std::int64_t> claim_counts(std::span<const std::int64_t> ids) = 0;
  // Inside begin_write: the claims on these entries (removed ones).
  virtual void drop_claims_of(std::span<const std::int64_t> ids) = 0;
  // Inside begin_write: claims and entries' provenance under peer `from` move to `to` (a
  // claim `to` already has stays as it is).
  virtual void rekey_claims(const std::string& from, const std::string& to) = 0;
  // Every claim, by entry id (migrate).
  virtual void scan_claims(const std::function<void(const Claim&)>& fn) = 0;

  // ---- sizes and health -------------------------------------------------------------
  virtual std::int64_t count_entries() = 0;
  virtual std::int64_t count_valid_pdq() = 0;
  // Whether any entry has an MD5 (format 6; an index look-up).
  virtual bool has_md5_entries() = 0;
  virtual EntryCounts entry_counts(int min_quality) = 0;
  virtual RowCounts record_counts(const std::string& signal) = 0;
  virtual std::uintmax_t bytes_on_disk() = 0;
  // The storage engine's own consistency check; empty when it finds nothing.
  virtual std::vector<std::string> integrity_problems() = 0;
  // "N rows of TABLE belong to no entry", for each table that has such rows.
  virtual std::vector<std::string> orphan_rows() = 0;
  // Indexed entries made from an image (with a PDQ hash: not a video's) without a row of the
  // built-in signal `signal`
  // ("local" or "embed"), in id order.
  virtual std::vector<std::int64_t> indexed_without(const std::string& signal) = 0;
};

// The SQLite store (sqlite_store.cpp): a bank file. Create makes a new bank atomically
// (built under a temporary name, then linked into place) with `initial_meta` as its meta;
// *created tells whether this call made it. Throws Error{Bank} for a missing bank (unless
// Create), a directory, a file that is not a bank, or a format newer than kFormatVersion.
std::unique_ptr<Store> open_sqlite_store(
    const std::filesystem::path& path, OpenMode mode,
    const std::vector<std::pair<std::string, std::string>>& initial_meta, bool* created);

// The PostgreSQL store (pg_store.cpp): a bank in a database's current schema, addressed by
// a libpq URI ("postgresql://user@host:port/db?sslmode=verify-full"). Create makes the
// tables in one transaction when the schema has none of them (the database must exist).
// Throws Error{Usage} for an address with a password in it (pg.hpp), Error{Bank} for an
// unreachable server (libpq's reason), a missing bank (unless Create), or tables that are
// not a bank.
std::unique_ptr<Store> open_postgresql_store(
    const std::string& conninfo, OpenMode mode,
    const std::vector<std::pair<std::string, std::string>>& initial_meta, bool* created);

// The newest format this hashwall reads and writes.
inline constexpr int kFormatVersion = 6;

}  // namespace hashwall
