// The bank: its records, the source of truth, in a store (an SQLite file in WAL mode, or a
// PostgreSQL database shared by many nodes: store.hpp), plus the derived search indexes,
// cached next to the file or in the cache folder (see docs/BANK_FORMAT.md).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "hash/hash256.hpp"
#include "hash/pdq.hpp"
#include "local/local_features.hpp"
#include "pdq/pdq_index.hpp"
#include "signal/signal.hpp"

namespace hashwall {

// Stored strings are bounded: a label names a case (a short id), a source a file path
// (PATH_MAX) or a list's name for an item. Longer ones are refused by add(), so that a
// stored string never becomes a large answer to a small request.
inline constexpr std::size_t kMaxLabelBytes = 1024;
inline constexpr std::size_t kMaxSourceBytes = 4096;

enum class Origin { Indexed, Imported };
const char* origin_name(Origin) noexcept;

// Named lists inside a bank (issue #17; HMA calls them banks): every entry belongs to one.
// A `block` list's entries are what the bank exists to find; an `allow` list's are known
// harmless photos (or known collisions) that turn a match on them into "allowed". A list,
// like an entry, can be disabled (with a reason, optionally until a time) without being
// deleted: its entries then never decide. Every bank has list 1, "default", a block list
// that entries without --list go to (and that format-4 banks' entries move into).
inline constexpr std::int64_t kDefaultListId = 1;
inline constexpr const char* kDefaultListName = "default";
inline constexpr std::size_t kMaxBankListNameBytes = 64;  // [A-Za-z0-9._-], see valid_list_name
inline constexpr std::size_t kMaxListTextBytes = 4096;    // description, organisation, terms
inline constexpr std::size_t kMaxReasonBytes = 1024;      // a disable's or an audit row's reason
enum class ListKind { Block, Allow };
const char* list_kind_name(ListKind) noexcept;  // "block", "allow"
std::optional<ListKind> parse_list_kind(std::string_view) noexcept;
// A list name: 1..64 of letters, digits, '.', '_', '-', not starting with '-' (it appears
// in URLs, command lines and file names unescaped).
bool valid_list_name(std::string_view) noexcept;

// Disabled (an entry or a list): why and until when (unix seconds; none: until enabled).
struct Disabled {
  std::string reason;  // non-empty
  std::optional<std::int64_t> until;
  bool in_force(std::int64_t now) const { return !until || *until > now; }
};

struct ListInfo {
  std::int64_t id = 0;
  std::string name;
  ListKind kind = ListKind::Block;
  std::optional<Disabled> disabled;
  std::string description, organisation, terms;
  std::int64_t created_at = 0;
  std::int64_t entries = 0;  // filled by Bank::lists()
};

// Who made a change and why, for the audit log: a token's name ("token:NAME") or the user
// at the command line ("cli:USER").
struct Actor {
  std::string name;
  std::string reason;  // optional, at most kMaxReasonBytes
};

// One row of the audit log: every add, remove, disable, enable and list change.
struct AuditEvent {
  std::int64_t id = 0;  // grows; Bank::audit(after) pages by it
  std::int64_t at = 0;  // unix seconds
  std::string actor;
  std::string action;  // "add", "remove", "disable", "enable", "list-create", "list-change"
  std::string list;    // the list the change was in, when one
  std::vector<std::int64_t> ids;  // the entries it touched (none for a list change)
  std::string reason;
  std::string detail;  // a short JSON object with the rest (e.g. a list's new settings)
};

// A reviewer's decision on a match (issue #17): the list owner's feedback, and with a false
// positive optionally the query put on an allow list (Bank::record_verdict).
enum class ReviewVerdict { Confirmed, FalsePositive };
const char* review_verdict_name(ReviewVerdict) noexcept;  // "confirmed", "false-positive"
std::optional<ReviewVerdict> parse_review_verdict(std::string_view) noexcept;
struct Review {
  std::string query_sha256;  // the query file's SHA-256, 64 hex
  std::int64_t entry = 0;    // the entry it matched
  ReviewVerdict kind = ReviewVerdict::Confirmed;
};
struct ReviewResult {
  std::int64_t audit_id = 0;
  std::optional<std::int64_t> allow_entry;  // the allow entry made for it
};

// A peer's claim on an entry: the peer lists it under its id external_id (exchange/feed).
struct EntryClaim {
  std::string peer, external_id;
  std::int64_t entry_id = 0;
};

struct NewEntry {
  std::optional<std::string> sha256;  // 64 lowercase hex of the file bytes; absent for imports
  // The PDQ hash; absent for an entry of a file-hash list (format 6), which has md5 or
  // sha256 instead. An entry has at least one of the three.
  std::optional<Hash256> pdq;
  std::optional<std::string> md5;  // 32 lowercase hex of the file bytes: file-hash lists
  std::optional<int> quality;      // 0..100; absent when an imported list carried none
  std::string label;
  std::string source;  // file path, or the name given in an imported list
  Origin origin = Origin::Indexed;
  std::int64_t list_id = kDefaultListId;  // the list it goes in (Bank::list)
  // Provenance: who added it, from which peer (a sync's source) and its id there.
  std::string added_by, peer, external_id;
  // The records of the signals other than pdq (whose record is `pdq` and `quality` above;
  // signal/signal.hpp: "local",
  // local/local_signal.hpp; "embed", embed/embed_signal.hpp; registered ones), by signal
  // name, present when the entry was made from an image (imported hash lists carry PDQ
  // only); a signal the bank does not record is ignored, one it records but the entry
  // lacks is simply absent.
  std::map<std::string, SignalRecord> records;
};

struct Entry : NewEntry {
  std::int64_t id = 0;
  std::int64_t added_at = 0;  // unix seconds
  // Read with the entry from its list's row: the list's name, kind and state.
  std::string list_name = kDefaultListName;
  ListKind list_kind = ListKind::Block;
  std::optional<Disabled> list_disabled;
  std::optional<Disabled> disabled;  // the entry's own state
  // Whether it may decide now: neither it nor its list is disabled at `now`.
  bool enabled_at(std::int64_t now) const {
    return !(disabled && disabled->in_force(now)) &&
           !(list_disabled && list_disabled->in_force(now));
  }
};

// Recorded in the bank so it is never queried with other settings than built it.
struct BankConfig {
  int pdq_threshold = kPdqMatchThreshold;
  int min_quality = kPdqMinQuality;
  std::string index_type = "auto";  // "auto", "flat", "multihash" or "compact"
  // "auto" switches to multihash from here: at 10k entries an 8-hash query costs 0.17 ms
  // flat vs 0.012 ms multihash, at 100k 1.8 ms vs 0.08 ms (docs/BENCHMARKS.md), while
  // multihash's fixed 4 MB of key offsets is 400 B per entry at 10k (flat: 40 B).
  std::int64_t multihash_min_entries = 20000;
  // Which signals entries carry: "pdq" always; "local" (ORB keypoints, src/local) and
  // "embed" (learned embedding, src/embed) on request, and any registered signal
  // (signal/signal.hpp) by its name.
  std::vector<std::string> signals = {"pdq"};
  // Registered signals' decision parameters (Signal::decision_defaults when not given),
  // by signal name; recorded at creation and read back from the bank. A bank's config()
  // also lists the built-in signals' here (pdq, local, embed), read from their own keys
  // above; a new bank takes those from the fields.
  std::map<std::string, SignalParams> signal_params;
  int local_min_inliers = kLocalMinInliers;  // geometric inliers for a local-feature match
  std::string embed_model;     // "<file name>@<sha256 of the model file>" when embed is on
  double embed_threshold = 0;  // cosine similarity for an embedding match

  bool has(std::string_view signal) const;
};

struct AddResult {
  std::int64_t added = 0;
  std::int64_t duplicates = 0;      // skipped: same SHA-256 (or same imported hash+source)
  std::vector<std::int64_t> ids;    // one per input: new id, or the existing entry's id
  std::vector<bool> was_duplicate;  // one per input
  // Duplicates whose stored entry is in another list than the input asked for: left where
  // they are (an entry is in one list), and counted so the caller can say so.
  std::int64_t in_other_list = 0;
};

struct BankStats {
  std::int64_t entries = 0;
  std::int64_t indexed = 0;
  std::int64_t imported = 0;
  std::int64_t labels = 0;
  std::int64_t low_quality = 0;        // entries with quality < min_quality
  std::int64_t disabled = 0;           // entries disabled (their own state; lists' aside)
  std::int64_t flood_quarantined = 0;  // of them, disabled by the flood guard (reason "flood")
  std::string index_type;              // the index actually in use
  std::uint64_t generation = 0;
  // Since this Bank was opened: full rebuilds of the PDQ index from the records, and
  // generations brought in from the change log instead (other writers' adds and removals).
  std::uint64_t index_rebuilds = 0;
  std::uint64_t changes_followed = 0;
  // Why the index cache file was not used although its header fitted this bank (another
  // bank's cache copied over it, altered hashes): a sample of the records was not found in
  // it under their own hashes. The index was rebuilt from the records instead; `check`
  // compares the whole cache. "" when nothing was refused.
  std::string index_cache_refused;
  std::uintmax_t db_bytes = 0;
  std::uintmax_t index_cache_bytes = 0;
  std::size_t index_memory_bytes = 0;
  int format_version = 0;
  std::vector<std::string> signals;
  std::string embed_model;
  // The signals whose records sit beside the entry row (local, embed, registered ones; pdq's
  // figures are the fields above), in the bank's order.
  struct Registered {
    std::string name;
    std::int64_t entries = 0;      // entries with a record
    std::int64_t items = 0;        // in those records (local: keypoints; else one each)
    std::uintmax_t db_bytes = 0;   // their share of the database
    std::size_t memory_bytes = 0;  // the index, when built (0 until a query needs it)
    std::string index_type;        // "" until built
    SignalParams params;           // decision parameters in use
  };
  std::vector<Registered> registered;
};

struct CheckReport {
  bool ok = true;
  std::vector<std::string> problems;  // empty when ok
  std::vector<std::string> notes;     // harmless findings, e.g. an older index cache
};

enum class OpenMode { ReadOnly, ReadWrite, Create /* read-write, created if missing */ };

class Bank {
 public:
  // Throws Error{Bank} for a missing bank (unless Create), a file that is not a bank, a
  // bank of a newer format version, or a busy/locked database after the busy timeout.
  // `seal_key` (docs/BANK_FORMAT.md, "Checksums and seal"): a new bank is sealed with it;
  // an existing one needs its own key to be written to (Error{Usage} for another key),
  // and check() verifies the seal with it.
  static std::unique_ptr<Bank> open(const std::filesystem::path& path, OpenMode mode,
                                    const BankConfig& config_for_new_bank = {},
                                    const std::string& seal_key = {});
  ~Bank();
  Bank(const Bank&) = delete;
  Bank& operator=(const Bank&) = delete;

  const std::filesystem::path& path() const;
  const BankConfig& config() const;
  // The id of the key the bank is sealed with (bank/digests.hpp); "" when it has none.
  const std::string& seal_key_id() const;
  // The bank's name for its peers (meta bank_id, 32 hex; kept by migrate); "" for an older
  // bank opened read-only.
  std::string bank_id() const;

  // One transaction for the whole batch: either all of it is committed or none. Each
  // entry's list must exist (Error{Usage} names the entry). The audit log gets one row per
  // write, naming `who`.
  //
  // With `claim_peer` (a sync, exchange/feed.hpp), every input is claimed by that peer
  // under its external_id in the same transaction: a new entry, or the entry it duplicates
  // when that one is in a list of the same kind (a block peer never keeps an allow entry
  // alive, nor the other way round).
  AddResult add(std::span<const NewEntry> entries, const Actor& who = {},
                const std::string& claim_peer = {});
  std::int64_t remove_ids(std::span<const std::int64_t> ids, const Actor& who = {});
  std::int64_t remove_label(const std::string& label, const Actor& who = {});
  std::int64_t remove_sha256(const std::string& sha256_hex, const Actor& who = {});

  // ---- lists, entry state and the audit log (bank/lists.cpp) -----------------------
  // Every list, by id, with its number of entries.
  std::vector<ListInfo> lists() const;
  // A list by name; nullopt when there is none.
  std::optional<ListInfo> list(const std::string& name) const;
  // A new list from spec's name, kind and texts (Error{Usage}: a bad or taken name, a text
  // longer than kMaxListTextBytes). Returns it with its id.
  ListInfo create_list(const ListInfo& spec, const Actor& who);
  // Changes a list (Error{Usage}: no such list). Fields left empty stay as they are;
  // `disable` disables it, `enable` enables it (not both).
  struct ListChange {
    std::optional<ListKind> kind;
    std::optional<std::string> description, organisation, terms;
    std::optional<Disabled> disable;
    bool enable = false;
  };
  ListInfo change_list(const std::string& name, const ListChange& change, const Actor& who);
  // Disables (`state`) or enables (nullopt) these entries; returns how many exist. A
  // disabled entry stays in the bank and its indexes but never decides (Entry::enabled_at).
  std::int64_t set_disabled(std::span<const std::int64_t> ids, const std::optional<Disabled>& state,
                            const Actor& who);
  // The audit log's rows with id > after, oldest first, at most limit.
  std::vector<AuditEvent> audit(std::int64_t after, std::size_t limit) const;
  // The highest audit id so far (0: none).
  std::int64_t audit_high_water() const;
  // A reviewer's verdict on a match of a query (its file's SHA-256) with entry v.entry,
  // appended to the audit log (action "verdict", detail {"verdict", "query_sha256", ...}).
  // With `allow` (a false positive only), the query's fingerprint is first added as that
  // entry, to its list, which must be an allow list: from then on such matches are
  // "allowed". Error{Usage}: no such entry, a bad SHA-256, a block list, or a query the
  // bank already holds in another list.
  ReviewResult record_verdict(const Review& v, const NewEntry* allow, const Actor& who);

  // ---- what a sync between banks reads and writes (exchange/feed.hpp) -------------------
  // Entries of one list with id > after, in id order, at most limit.
  std::vector<Entry> list_entries(std::int64_t list_id, std::int64_t after,
                                  std::size_t limit) const;
  // Claims: which peers list an entry (add() with claim_peer makes them); the entries
  // `peer` claims under these external ids are (external id, entry id) pairs, by entry id.
  std::vector<std::pair<std::string, std::int64_t>> ids_from_peer(
      const std::string& peer, std::span<const std::string> external_ids) const;
  // Each entry's number of claims, in the order given.
  std::vector<std::int64_t> claim_counts(std::span<const std::int64_t> ids) const;
  // A peer known by its address until now gets its bank id's name ("bank:ID"): its claims
  // and its entries' provenance move there, in one transaction.
  void rekey_claims(const std::string& from, const std::string& to);
  // A peer's removal: drops its claims under these external ids, and removes the entries
  // left with no claim that came from a sync (never the bank's own), in one transaction.
  // Returns the entries removed.
  std::int64_t release_claims(const std::string& peer, std::span<const std::string> external_ids,
                              const Actor& who);
  // A sync's checkpoint, kept in the bank under `key` (nullopt: none yet), and setting it.
  std::optional<std::string> sync_checkpoint(const std::string& key) const;
  void set_sync_checkpoint(const std::string& key, const std::string& value);
  // Changes the PDQ search index ("auto", "flat", "multihash" or "compact", and with
  // "auto" the entry count from which multihash is used, when given), records it in the
  // bank and rebuilds the index from the records, which stay untouched. Other
  // connections keep their index until they reopen. Not to be called while other threads
  // use this Bank object (config() returns a reference).
  void set_index(const std::string& type,
                 std::optional<std::int64_t> multihash_min_entries = std::nullopt);

  std::optional<Entry> get(std::int64_t id) const;
  std::optional<Entry> find_sha256(const std::string& sha256_hex) const;
  // The entry with this file MD5 (an MD5 list's entry, format 6).
  std::optional<Entry> find_md5(const std::string& md5_hex) const;
  // Whether any entry has an MD5: then queries need their file's MD5 too
  // (LoadOptions::want_md5), which costs about 1.3 ms a MB.
  bool has_md5_entries() const;
  // Calls fn for every entry in id order; stops early when fn returns false.
  void for_each(const std::function<bool(const Entry&)>& fn) const;

  // Every entry within max_distance of any query hash, one row per entry carrying its
  // best distance and which query produced it; nearest first, ties by id. Thread-safe.
  std::vector<PdqMatch> search_pdq(std::span<const Hash256> queries, int max_distance) const;

  // A search of one of the bank's signals (SignalIndex::search) under `decision` (nullptr:
  // the bank's recorded parameters): empty when the bank does not record that signal or the
  // query has no form. Thread-safe. pdq searches the PDQ index above (pdq_search); the
  // others' indexes are built from the records at their first search and kept current by
  // add(), the removals and the change log.
  std::vector<SignalMatch> search_signal(const std::string& name, const SignalQuery& query,
                                         double min_margin, std::size_t k,
                                         const SignalParams* decision = nullptr) const;

  // An entry's record of one of the bank's signals (pdq's is in the entry's row: pdq_record,
  // pdq/pdq_signal.hpp); nullopt when the bank does not record that signal or the entry has
  // no record of it. Thread-safe.
  std::optional<SignalRecord> record(const std::string& signal, const Entry& entry) const;

  // Brings every index of the bank up to its store's current generation (other writers'
  // adds and removals, from the change log) and builds those not built yet, as a search
  // would; returns the generation the indexes now hold. A replica's follower calls it
  // (serve: readiness.hpp). Thread-safe; throws Error{Bank} when the store cannot be read.
  std::uint64_t catch_up() const;

  BankStats stats() const;
  // BankStats::index_cache_refused, without the counting stats() does.
  std::string index_cache_refused() const;
  // SQLite integrity_check, schema, and index cache vs records.
  CheckReport check() const;
  // Writes the index cache if it is out of date (also done by the destructor).
  void flush_index();

 private:
  struct Impl;
  explicit Bank(std::unique_ptr<Impl>);
  std::unique_ptr<Impl> impl_;
};

// What migrate_bank copied.
struct MigrateReport {
  std::string from, to;  // the two banks' names (a PostgreSQL one without its password)
  std::int64_t entries = 0, records = 0, digests = 0;
  std::uint64_t generation = 0;
};

// Copies the bank at `from` into a new bank at `to`, from one store to another (an SQLite
// file, a postgresql:// address) or within one: the same entries under the same ids, every
// signal's records, the settings, checksums, seal and generation, read from one snapshot of
// the source and written in one transaction. Until that commits the new bank is marked
// unfinished and Bank::open refuses it, so a crash leaves no half-copied bank in use.
// Throws Error{Bank} when `to` already holds a bank. Answers of the two banks are then the
// same (tests/test_migrate.cpp); the caller runs check() on both.
MigrateReport migrate_bank(
    const std::filesystem::path& from, const std::filesystem::path& to,
    const std::function<void(std::int64_t done, std::int64_t total)>& progress = {});

// Whether a bank's location is a PostgreSQL address ("postgresql://" or "postgres://", a
// libpq URI: store.hpp) rather than a file.
bool is_postgresql_location(std::string_view location);

// Whether an error says the store's server cannot be reached (PostgreSQL: "cannot
// connect", "lost the connection"), as against a bank that is wrong: searches then answer
// from the indexes in memory, and a replica's follower reports it (Bank::catch_up).
inline bool store_unreachable(const Error& e) {
  return e.kind() == ErrorKind::Bank && (e.reason().starts_with("cannot connect") ||
                                         e.reason().starts_with("lost the connection"));
}

// Registers the built-in signals (pdq, local, embed) so that
// find_signal() knows them; idempotent. Bank::open calls it; so may anything that lists
// signals before opening a bank (--help).
void register_builtin_signals();

// A new random bank id (meta bank_id).
std::string new_bank_id();

// Where the index cache for a bank file lives: "<bank>.pdq-index".
std::filesystem::path pdq_index_path(const std::filesystem::path& bank);

}  // namespace hashwall
