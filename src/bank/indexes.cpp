// The bank's derived indexes: the PDQ index and its cache file, the indexes of the signals
// besides pdq (local, embed, registered ones) built from the records, and their
// cache files (the local features' IVF layout; docs/BANK_FORMAT.md). All are rebuilt from
// the records when missing or stale.
#include <algorithm>
#include <fstream>
#include <iterator>
#include <random>
#include <set>

#include "bank/bank_impl.hpp"
#include "core/file.hpp"

namespace hashwall {

namespace bank_detail {

fs::path signal_cache_path(const fs::path& bank, const std::string& signal) {
  return fs::path(bank.string() + "." + signal + "-index");
}

// The magic of the first such file, the local features' (".local-index"), kept for all.
constexpr char kCacheMagic[8] = {'H', 'W', 'L', 'O', 'C', 'I', 'X', '1'};

// A signal index's cache file: magic, u64 generation, the bytes, u64 FNV-1a of all before
// it (docs/BANK_FORMAT.md). Empty when missing, damaged or of another generation.
std::string read_signal_cache(const fs::path& bank, const std::string& signal,
                              std::uint64_t generation) {
  std::ifstream in(signal_cache_path(bank, signal), std::ios::binary);
  if (!in) return {};
  std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (b.size() < 24 || b.compare(0, 8, kCacheMagic, 8) != 0) return {};
  const auto u64 = [&](std::size_t at) { return get_le(b.data() + at); };
  if (u64(b.size() - 8) != fnv1a(reinterpret_cast<const std::uint8_t*>(b.data()), b.size() - 8))
    return {};
  if (u64(8) != generation) return {};
  return b.substr(16, b.size() - 24);
}

void write_signal_cache(const fs::path& bank, const std::string& signal, std::uint64_t generation,
                        const std::string& bytes) {
  std::string out(kCacheMagic, 8);
  put_le(out, generation);
  out += bytes;
  put_le(out, fnv1a(reinterpret_cast<const std::uint8_t*>(out.data()), out.size()));
  write_file_atomically(signal_cache_path(bank, signal), out);
}

}  // namespace bank_detail

std::unique_ptr<PdqIndex> Bank::Impl::build_index(std::uint64_t* gen) const {
  auto read = store->begin_read();
  *gen = read_generation();
  // The index holds the entries with a PDQ hash (not a file-hash list's): its type is
  // chosen by their number, as add() and follow_changes() count them (the index's size).
  const auto total = store->count_valid_pdq();
  auto idx = make_pdq_index(type_for(total));
  // One add for the whole table: the multihash index builds its posting lists once.
  std::vector<std::int64_t> ids;
  std::vector<Hash256> hashes;
  ids.reserve(static_cast<std::size_t>(total));
  hashes.reserve(static_cast<std::size_t>(total));
  store->scan_pdq([&](std::int64_t id, std::string_view blob) {
    const auto h = hash_from_blob(blob);
    if (!h) return;
    ids.push_back(id);
    hashes.push_back(*h);
  });
  idx->add(ids, hashes);
  read->commit();
  return idx;
}

void Bank::Impl::rebuild_index() const {
  std::uint64_t gen = 0;
  auto fresh = build_index(&gen);
  std::unique_lock lock(index_mu);
  index = std::move(fresh);
  generation = gen;
  dirty = true;
  ++rebuilds;
}

void Bank::Impl::log_write(ChangeOp op, const std::vector<std::int64_t>& ids,
                           std::uint64_t gen_after) const {
  store->log_change(Change{gen_after, op, ids});
  set_meta("generation", std::to_string(gen_after));
  // The log keeps the last change_log_keep generations (meta; kChangeLogKeep when absent),
  // so it stays bounded; a reader further behind rebuilds, as it would without a log.
  const auto keep_text = meta("change_log_keep");
  const auto keep = keep_text ? parse_uint(*keep_text) : std::nullopt;
  const std::uint64_t k = keep && *keep > 0 ? *keep : kChangeLogKeep;
  if (gen_after > k) store->prune_changes(gen_after - k);
}

bool Bank::Impl::follow_changes() const {
  auto read = store->begin_read();
  const std::uint64_t now = read_generation();
  if (now < generation) return false;  // restored from a backup?
  const auto changes = store->changes_since(generation);
  if (!changes) return false;
  // The log must hold every generation in between, each once.
  std::uint64_t expect = generation + 1;
  for (const auto& c : *changes) {
    if (c.generation != expect) return false;
    ++expect;
  }
  if (expect != now + 1) return false;
  // The net effect: entries added and still there, entries removed that we hold. Ids are
  // never reused, so an id added and removed within the span simply drops out.
  std::set<std::int64_t> added, removed;
  for (const auto& c : *changes)
    for (const auto id : c.ids) {
      if (c.op == ChangeOp::Add) {
        added.insert(id);
      } else if (!added.erase(id)) {
        removed.insert(id);
      }
    }
  const std::vector<std::int64_t> add_ids(added.begin(), added.end());
  const std::vector<std::int64_t> remove_list(removed.begin(), removed.end());
  std::vector<std::int64_t> ids;
  std::vector<Hash256> hashes;
  store->scan_pdq(
      [&](std::int64_t id, std::string_view blob) {
        if (const auto h = hash_from_blob(blob)) {
          ids.push_back(id);
          hashes.push_back(*h);
        }
      },
      std::span<const std::int64_t>(add_ids));
  // The signals' indexes at our generation follow too (unless a removal would need a
  // rebuild); the others are rebuilt at their next search.
  std::map<std::string, std::vector<std::pair<std::int64_t, std::string>>> records;
  {
    std::shared_lock lock(signals_mu);
    for (const auto& [name, reg] : registered)
      if (reg.index && reg.gen == generation && (remove_list.empty() || reg.index->can_remove())) {
        auto& rows = records[name];
        store->scan_records(
            name, [&](std::int64_t id, std::string_view rec) { rows.emplace_back(id, rec); },
            std::span<const std::int64_t>(add_ids));
      }
  }
  read->commit();
  {
    std::unique_lock write(index_mu);
    // The entries after these changes, from the index, as add() counts them.
    const auto live = index->size();
    const auto total =
        static_cast<std::int64_t>(live + ids.size() - std::min(remove_list.size(), live));
    if (index->type() != type_for(total)) return false;  // "auto" crossed a boundary
    if (!remove_list.empty()) index->remove(remove_list);
    if (!ids.empty()) index->add(ids, hashes);
  }
  std::unique_lock write(signals_mu);
  for (auto& [name, rows] : records) {
    auto& reg = registered.at(name);
    if (!reg.index || reg.gen != generation) continue;
    if (!remove_list.empty()) reg.index->remove(remove_list);
    for (const auto& [id, rec] : rows) try {
        reg.index->add(id, rec);
      } catch (const std::exception&) {
        // Left out, as build_registered() leaves it out; check() names it.
      }
    reg.index->prepare();
    reg.gen = now;
    reg.cache_dirty = true;
  }
  followed += now - generation;
  generation = now;
  dirty = true;
  return true;
}

void Bank::Impl::refresh_if_changed(bool strict) const {
  try {
    if (!store->changed_elsewhere()) return;
    if (read_generation() == generation) return;
    if (!follow_changes()) rebuild_index();
  } catch (const Error& e) {
    if (strict || !store_unreachable(e)) throw;
  }
}

namespace {

// A cache whose header fits this bank (generation, type, size) can still hold another
// bank's index (files copied about) or altered hashes. Before it is trusted, a sample of
// the records (the first ones and some from random places) must each be found in it under
// their own hash; `check` compares the whole. "" when they are, else which was not.
// Called inside the caller's read transaction.
std::string cache_disagrees(const PdqIndex& cached, Store& store, std::int64_t entries) {
  std::vector<Entry> sample;
  const auto take = [&](std::int64_t after, std::size_t n) {
    try {
      for (auto& e : store.entries_after(after, n)) sample.push_back(std::move(e));
    } catch (const Error&) {
      // a malformed PDQ blob: not in the index either; check() names it
    }
  };
  take(0, 8);
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_int_distribution<std::int64_t> where(0, std::max<std::int64_t>(1, 2 * entries));
  for (int i = 0; i < 24; ++i) take(where(rng), 1);
  for (const Entry& e : sample) {
    if (!e.pdq) continue;  // a file-hash entry: not in the PDQ index
    const auto hits = cached.range_search(std::span(&*e.pdq, 1), 0);
    const bool found = std::any_of(hits[0].begin(), hits[0].end(),
                                   [&](const IndexHit& h) { return h.id == e.id; });
    if (!found) return "entry " + std::to_string(e.id) + " is not in it under its own hash";
  }
  return {};
}

// The whole cache against the PDQ digest the writers keep in meta (bank/digests.hpp): every
// (id, hash) pair it holds is summed; one altered, missing or extra pair shows. "" when it
// adds up.
std::string cache_digest_disagrees(const PdqIndex& cached, std::string_view want_hex) {
  const auto want = Digest::from_hex(want_hex);
  if (!want) return "the bank's PDQ digest is damaged";
  Digest got;
  cached.for_each([&](std::int64_t id, const Hash256& h) { got += pdq_term(id, h); });
  return got == *want ? "" : "its hashes do not add up to the bank's PDQ digest";
}

}  // namespace

void Bank::Impl::load_or_build_index() {
  std::uint64_t cached_gen = 0;
  auto cached = load_pdq_index(pdq_index_path(cache_base), &cached_gen);
  {
    auto read = store->begin_read();
    const auto gen = read_generation();
    const auto all = store->count_entries(), valid = store->count_valid_pdq();
    bool use = cached && cached_gen == gen && cached->type() == type_for(valid) &&
               cached->size() == static_cast<std::size_t>(valid);
    // Same read transaction: the digest (or, in a bank without one, the sample) is of the
    // records at this generation.
    if (use) {
      const auto pdq_digest = meta("pdq_digest");
      cache_refused = pdq_digest ? cache_digest_disagrees(*cached, *pdq_digest)
                                 : cache_disagrees(*cached, *store, all);
    }
    read->commit();
    if (use && cache_refused.empty()) {
      index = std::move(cached);
      generation = gen;
      dirty = false;
      return;
    }
    if (!cache_refused.empty())
      cache_refused = "the index cache " + pdq_index_path(cache_base).string() +
                      " disagrees with the records (" + cache_refused +
                      "): it was not used; run 'hashwall check'";
  }
  // The store took its data version when it opened, before this build: a commit made
  // meanwhile is seen at the next refresh, not swallowed.
  rebuild_index();
}

void Bank::Impl::save_index_locked() {
  if (!dirty) return;
  // Another connection committed since our index was built: our picture is older than
  // the bank, so do not label a cache with it; the next open rebuilds.
  if (read_generation() != generation) return;
  std::shared_lock lock(index_mu);
  index->save(pdq_index_path(cache_base), generation);
  dirty = false;
}

void Bank::Impl::save_signal_caches() {
  const std::uint64_t now = read_generation();
  std::unique_lock lock(signals_mu);
  for (auto& [name, reg] : registered) {
    if (!reg.cache_dirty || !reg.index || reg.gen != now) continue;
    const std::string bytes = reg.index->cache();
    if (!bytes.empty()) write_signal_cache(cache_base, name, reg.gen, bytes);
    reg.cache_dirty = false;
  }
}

std::unique_ptr<SignalIndex> Bank::Impl::build_registered(const std::string& name,
                                                          std::uint64_t* gen) const {
  auto& reg = registered.at(name);
  auto idx = reg.signal->make_index();
  auto read = store->begin_read();
  *gen = read_generation();
  store->scan_records(name, [&](std::int64_t id, std::string_view record) {
    // Malformed rows, and rows that do not compare with the others, are left out here;
    // check() names them.
    if (!reg.signal->check_record(record).empty()) return;
    if (reg.sample.empty()) reg.sample = record;
    if (!reg.signal->comparable(reg.sample, record).empty()) return;
    try {
      idx->add(id, record);
    } catch (const std::exception&) {
    }
  });
  read->commit();
  // What the cache file of this generation holds (the local IVF layout), when it fits;
  // else the full build (for local the slow part: every row assigned to a list).
  const std::string cached = read_signal_cache(cache_base, name, *gen);
  const bool restored = !cached.empty() && idx->restore(cached);
  if (!restored) idx->prepare();
  reg.cache_dirty = !restored;
  return idx;
}

}  // namespace hashwall
