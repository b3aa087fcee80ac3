// Private to src/bank: the state behind a Bank and the helpers its files share
// (bank.cpp: lifecycle, writes, searches; indexes.cpp: the derived indexes and their cache
// files; schema.cpp: schema, configuration and migrations; check.cpp: stats and check).
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "bank/bank.hpp"
#include "bank/digests.hpp"
#include "bank/store.hpp"
#include "bank/values.hpp"
#include "core/error.hpp"

namespace hashwall {

namespace bank_detail {

namespace fs = std::filesystem;

// Formats (kFormatVersion, store.hpp): 1: PDQ only. 2: adds the local_features and
// embeddings tables. 3: adds signal_rows (the records of registered signals,
// signal/signal.hpp, with their parameters in meta) and the change log. An older bank
// opened for writing is upgraded in place; read-only, it simply lacks those tables.
// Rows per round trip when reading the whole table (for_each, index rebuilds).
constexpr std::size_t kChunk = 4096;
// check(): how many entries are re-searched by brute force, and how many problem lines
// of one kind are listed before they are summarised.
constexpr std::size_t kCheckSamples = 32;
constexpr std::size_t kMaxListedProblems = 20;
// Generations the change log keeps: a write of one entry logs about 30 bytes, so the
// default bounds the log near 3 MB of single adds, while a reader more than 100,000 writes
// behind (a replica that was down for days) rebuilds from the records instead.
constexpr std::uint64_t kChangeLogKeep = 100000;
// Meta of a bank that migrate_bank is still filling (migrate.cpp): refused by Bank::open.
inline constexpr const char* kMigratingKey = "migrating";

inline std::vector<std::string> split_signals(std::string_view s) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= s.size()) {
    const auto comma = s.find(',', at);
    const auto part =
        s.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at);
    if (!part.empty()) out.emplace_back(part);
    if (comma == std::string_view::npos) break;
    at = comma + 1;
  }
  return out;
}

inline std::string join_signals(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : ",") + x;
  return out;
}

// The signals in canonical order, or why they are not acceptable.
inline std::string validate_signals(const std::vector<std::string>& v) {
  if (auto why = unknown_signal(v); !why.empty()) return why;
  if (std::find(v.begin(), v.end(), "pdq") == v.end()) return "every bank holds the pdq signal";
  return {};
}

inline bool valid_index_type(std::string_view t) {
  return t == "auto" || t == "flat" || t == "multihash" || t == "compact";
}

inline std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

inline bool is_lower_hex(std::string_view s, std::size_t digits) {
  return s.size() == digits && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}
inline bool is_sha256_hex(std::string_view s) { return is_lower_hex(s, 64); }
inline bool is_md5_hex(std::string_view s) { return is_lower_hex(s, 32); }

// Why a new bank's settings are not acceptable ("" when they are): signals, and registered
// signals' parameters (bank/config.cpp).
std::string validate_new_config(const BankConfig& c);
// SHA-256 (hex) over the settings that decide a match (thresholds, signals and their
// parameters, creation time) as `meta` reads them: recorded at creation as
// settings_sha256, compared by check() (bank/config.cpp).
std::string settings_digest(
    const std::vector<std::string>& signals,
    const std::function<std::optional<std::string>(const std::string&)>& meta);
// The meta a new bank starts with (bank/config.cpp).
std::vector<std::pair<std::string, std::string>> initial_meta(const BankConfig& c,
                                                              const Digester& digester);

// Meta keys of a registered signal's parameters.
inline std::string compute_key(const std::string& signal) {
  return "signal." + signal + ".compute";
}
inline std::string decision_key(const std::string& signal) {
  return "signal." + signal + ".decision";
}

// What a bank's index caches are named after (Bank::Impl::cache_base): the file itself, or
// for a PostgreSQL bank (`where`: its name without password) a name in the cache folder.
fs::path cache_base_for(const fs::path& location, const std::string& where);
fs::path postgresql_cache_base(const std::string& where);

// A signal index's cache file next to the bank, "<bank>.<signal>-index" (SignalIndex::cache;
// bank/indexes.cpp): read back only for the generation it was written at, "" otherwise.
fs::path signal_cache_path(const fs::path& bank, const std::string& signal);
std::string read_signal_cache(const fs::path& bank, const std::string& signal,
                              std::uint64_t generation);
void write_signal_cache(const fs::path& bank, const std::string& signal, std::uint64_t generation,
                        const std::string& bytes);

}  // namespace bank_detail

using namespace bank_detail;

struct Bank::Impl {
  fs::path path;  // as given: a file, or a PostgreSQL address
  // What the index caches are named after: the bank file itself, or for a PostgreSQL bank
  // a name in the cache folder (bank_cache_base, bank.cpp).
  fs::path cache_base;
  OpenMode mode = OpenMode::ReadOnly;
  BankConfig config;
  std::unique_ptr<Store> store;
  std::string where;  // the name errors are reported against (store->where())

  // Lock order: db_mu before index_mu. db_mu guards the store and the fields
  // below it; index_mu lets searches share the index while add() swaps or extends it.
  mutable std::mutex db_mu;
  mutable std::shared_mutex index_mu;
  mutable std::unique_ptr<PdqIndex> index;
  mutable std::uint64_t generation = 0;  // the bank generation `index` reflects
  mutable bool dirty = false;            // `index` differs from the cache file
  mutable std::uint64_t rebuilds = 0;    // BankStats::index_rebuilds
  mutable std::uint64_t followed = 0;    // BankStats::changes_followed
  std::string cache_refused;             // BankStats::index_cache_refused
  // has_md5_entries() as of `generation` (a look-up per query otherwise, under db_mu).
  mutable std::optional<std::uint64_t> md5_checked_at;
  mutable bool md5_any = false;

  // Tamper evidence (bank/digests.hpp): the key given to open() (none: plain SHA-256),
  // and the id of the key the bank was sealed with ("" for an unkeyed bank).
  Digester digester;
  std::string seal_key_id;

  // The other signals' indexes: built at the first search that needs them, extended by
  // add(), rebuilt when the generation moved on (removals, other writers).
  mutable std::shared_mutex signals_mu;
  // Why entries with local features may not be added (recorded parameters differ from
  // this build's, bank/config.cpp); empty when they may.
  std::string local_params_mismatch;
  // The signals the bank records besides pdq (whose index is `index` above; signal/signal.hpp:
  // local, embed and the registered ones), each with its index; guarded by signals_mu.
  struct Registered {
    const Signal* signal = nullptr;
    std::unique_ptr<SignalIndex> index;
    std::uint64_t gen = ~std::uint64_t{0};
    bool cache_dirty = false;  // the index's cache() differs from its cache file
    // A record of the bank's, for Signal::comparable(): the first one this Bank added or
    // read; guarded by db_mu.
    std::string sample;
  };
  mutable std::map<std::string, Registered> registered;

  // ---- helpers; all expect db_mu held ---------------------------------------------

  std::optional<std::string> meta(const std::string& key) const { return store->meta(key); }
  void set_meta(const std::string& key, const std::string& value) const {
    store->set_meta(key, value);
  }

  [[noreturn]] void bad_meta(const char* key) const {
    throw Error(ErrorKind::Bank, where,
                std::string("corrupt bank: meta '") + key +
                    "' is missing or invalid (run 'hashwall check')");
  }

  std::uint64_t read_generation() const {
    const auto v = meta("generation");
    const auto g = v ? parse_uint(*v) : std::nullopt;
    if (!g) bad_meta("generation");
    return *g;
  }

  std::string type_for(std::int64_t entries) const {
    if (config.index_type != "auto") return config.index_type;
    return entries < config.multihash_min_entries ? "flat" : "multihash";
  }

  void require_writable() const {
    if (mode == OpenMode::ReadOnly)
      throw Error(ErrorKind::Bank, where, "the bank was opened read-only");
  }
  // For writes of records (not of the index type, which decides nothing).
  void require_key() const {
    // A write without the key would leave the seal behind the records: refused before it.
    if (!seal_key_id.empty() && digester.key_id() != seal_key_id)
      throw Error(ErrorKind::Usage, where,
                  "the bank is sealed with a key (key id " + seal_key_id +
                      "): writing to it needs that key (--seal-key FILE)");
  }

  // ---- digests (bank/bank.cpp); inside the write transaction -------------------------

  // Adds `plus` to and takes `minus` from the records digest, likewise for the PDQ
  // digest, and renews the seal of a keyed bank.
  void update_digests(const Digest& plus, const Digest& minus, const Digest& pdq_plus,
                      const Digest& pdq_minus) const;

  // ---- the derived indexes (bank/indexes.cpp) ---------------------------------------

  // Every well-formed record, from one snapshot. Malformed rows are left out (check()
  // reports them) so that a damaged bank still opens and can be inspected.
  std::unique_ptr<PdqIndex> build_index(std::uint64_t* gen) const;
  void rebuild_index() const;
  // Another connection (another process, or another Bank object) committed since we
  // last looked: bring the in-memory indexes up to date, from the change log when it
  // reaches back to their generation, else by a rebuild.
  // `strict`: a store that cannot be reached throws (Bank::catch_up, stats, check); else
  // (searches) the indexes in memory answer as they are, and the next call looks again.
  void refresh_if_changed(bool strict = false) const;
  // Applies the changes after `generation` to the PDQ index and the registered signals'
  // indexes; false when the log cannot bring them up to date (then nothing was changed).
  bool follow_changes() const;
  // Logs a write's change (its ids) at generation gen_after, bumping the generation;
  // inside the write transaction.
  void log_write(ChangeOp op, const std::vector<std::int64_t>& ids, std::uint64_t gen_after) const;
  // Appends an audit row (inside the write's transaction; lists.cpp); a no-op on a store
  // without format 5's tables.
  std::int64_t audit_write(const std::string& action, const std::string& list,
                           std::vector<std::int64_t> ids, const Actor& who,
                           const std::string& detail = {}) const;
  void load_or_build_index();
  // Gives a bank upgraded to format 4 its PDQ digest (bank/bank.cpp).
  void start_pdq_digest();
  void save_index_locked();
  // Writes the cache files of the signal indexes that changed; expects db_mu held.
  void save_signal_caches();
  std::unique_ptr<SignalIndex> build_registered(const std::string& name, std::uint64_t* gen) const;

  // check()'s part about digests and the seal (bank/check.cpp): `recomputed` holds each
  // entry's digest from what is stored, `rows` the valid PDQ hashes, both in id order.
  void check_digests(bool have_table,
                     const std::vector<std::pair<std::int64_t, Digest>>& recomputed,
                     const std::vector<std::pair<std::int64_t, Hash256>>& rows,
                     CheckReport& rep) const;

  // ---- configuration (bank/config.cpp) -----------------------------------------------

  void read_config();

  // Runs a write transaction whose body deletes rows and returns their ids; bumps the
  // generation if any went.
  template <class Body>
  std::int64_t remove_where(Body&& body, const Actor& who) {
    require_writable();
    require_key();
    std::lock_guard lock(db_mu);
    std::vector<std::int64_t> removed;
    std::uint64_t gen_before = 0;
    try {
      auto tx = store->begin_write();
      gen_before = read_generation();
      Digest gone, pdq_gone;
      std::map<std::int64_t, std::vector<std::int64_t>> by_list;  // one audit row per list
      for (const RemovedEntry& r : body()) {
        removed.push_back(r.id);
        by_list[r.list_id].push_back(r.id);
        if (const auto h = hash_from_blob(r.pdq)) pdq_gone += pdq_term(r.id, *h);
      }
      if (store->has_list_tables()) store->drop_claims_of(removed);
      for (const auto& d : store->take_digests(removed))
        if (const auto v = Digest::from_bytes(d)) gone += *v;
      if (!removed.empty()) {
        log_write(ChangeOp::Remove, removed, gen_before + 1);
        update_digests({}, gone, {}, pdq_gone);
        // Each row names its list: a sync's feed (exchange/feed.hpp) passes on a list's
        // removals by it, the entries being gone.
        std::map<std::int64_t, std::string> names;
        if (store->has_list_tables())
          for (auto& l : store->lists(false)) names[l.id] = std::move(l.name);
        for (auto& [list_id, ids] : by_list) {
          const auto n = names.find(list_id);
          audit_write("remove", n == names.end() ? "" : n->second, std::move(ids), who);
        }
      }
      tx->commit();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      throw Error(ErrorKind::Bank, where, e.what());
    }
    if (removed.empty()) return 0;
    const auto total = store->count_valid_pdq();  // what the index holds (build_index)
    bool current;
    {
      std::shared_lock read(index_mu);
      current = generation == gen_before && index->type() == type_for(total);
    }
    if (current) {
      // Tombstones: milliseconds at 1M entries, where a rebuild from SQLite takes seconds.
      std::unique_lock write(index_mu);
      index->remove(removed);
      generation = gen_before + 1;
      dirty = true;
    } else {
      // Our index misses another writer's rows, or "auto" just went back to flat.
      rebuild_index();
    }
    {
      // The signals' indexes that were current and remove in place follow; the others are
      // rebuilt at their next search.
      std::unique_lock write(signals_mu);
      for (auto& [name, r] : registered)
        if (r.index && r.gen == gen_before && r.index->can_remove()) {
          r.index->remove(removed);
          r.gen = gen_before + 1;
          r.cache_dirty = true;
        }
    }
    return static_cast<std::int64_t>(removed.size());
  }

  // Takes db_mu itself (callers must not hold it). Rebuilds a derived signal index (local,
  // embed) from the records when the bank has changed since it was built; callers then
  // search it under a shared signals_mu lock.
  template <typename Index, typename Build>
  void make_fresh(std::unique_ptr<Index>& slot, std::uint64_t& slot_gen, Build build) {
    std::uint64_t gen = 0;
    {
      std::lock_guard lock(db_mu);
      refresh_if_changed();
      gen = generation;
    }
    {
      std::shared_lock read(signals_mu);
      if (slot && slot_gen == gen) return;
    }
    std::uint64_t built_gen = 0;
    std::unique_ptr<Index> idx;
    {
      std::lock_guard lock(db_mu);
      idx = build(&built_gen);
    }
    std::unique_lock write(signals_mu);
    slot = std::move(idx);
    slot_gen = built_gen;
  }
};

}  // namespace hashwall
