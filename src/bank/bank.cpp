// The bank: records in a store (SQLite or PostgreSQL: the truth) plus the derived indexes and their
// cache files. The on-disk format, and why it is so, is in docs/BANK_FORMAT.md. This file: opening
// and creating a bank, writes, look-ups and searches.
#include "bank/bank.hpp"

#include <openssl/evp.h>
#include <unistd.h>

#include <cstdlib>
#include <ctime>
#include <limits>
#include <map>
#include <set>
#include <unordered_map>

#include "bank/bank_impl.hpp"
#include "embed/embed_signal.hpp"
#include "local/local_signal.hpp"
#include "pdq/pdq_signal.hpp"
#include "video/vpdq_signal.hpp"

namespace hashwall {

bool BankConfig::has(std::string_view signal) const {
  return std::find(signals.begin(), signals.end(), signal) != signals.end();
}

void register_builtin_signals() {
  register_pdq_signal();
  register_local_signal();
  register_embed_signal();
  register_vpdq_signal();
}

fs::path pdq_index_path(const fs::path& bank) { return fs::path(bank.string() + ".pdq-index"); }

namespace {

// Entries a write sends to its store at once: one round trip each for a remote store.
// Typically a few hundred KB of statement parameters; at worst (4 KB sources and 1 KB
// labels, hex-encoded for PostgreSQL) about 50 MB, well inside its 1 GB limit.
constexpr std::size_t kAddChunk = 5000;

fs::path cache_folder() {
  const auto env = [](const char* name) -> std::string {
    const char* v = std::getenv(name);
    return v ? v : "";
  };
  if (const auto dir = env("HASHWALL_CACHE_DIR"); !dir.empty()) return dir;
  if (const auto xdg = env("XDG_CACHE_HOME"); !xdg.empty()) return fs::path(xdg) / "hashwall";
  if (const auto home = env("HOME"); !home.empty()) return fs::path(home) / ".cache" / "hashwall";
  return fs::temp_directory_path() / ("hashwall-cache-" + std::to_string(::getuid()));
}

}  // namespace

namespace bank_detail {

fs::path cache_base_for(const fs::path& location, const std::string& where) {
  return is_postgresql_location(location.native()) ? postgresql_cache_base(where) : location;
}

// A PostgreSQL bank's caches: "<cache folder>/pg-<16 hex of SHA-256 of its address>", the
// address without its password (pg.hpp). The caches are checked against the bank's
// generation and digests before use (load_or_build_index), so a stale or foreign one costs
// a rebuild, never a wrong answer.
fs::path postgresql_cache_base(const std::string& where) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(where.data(), where.size(), md, &n, EVP_sha256(), nullptr);
  static const char* hex = "0123456789abcdef";
  std::string name = "pg-";
  for (unsigned i = 0; i < 8; ++i) {
    name += hex[md[i] >> 4];
    name += hex[md[i] & 15];
  }
  const fs::path dir = cache_folder();
  std::error_code ec;
  // Owner only: the caches hold every hash of the bank.
  if (fs::create_directories(dir, ec)) fs::permissions(dir, fs::perms::owner_all, ec);
  return dir / name;
}

}  // namespace bank_detail

Bank::Bank(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Bank::~Bank() {
  try {
    flush_index();
  } catch (...) {
    // A derived file: failing to write it costs a rebuild at the next open, nothing more.
  }
}

std::unique_ptr<Bank> Bank::open(const fs::path& path, OpenMode mode,
                                 const BankConfig& config_for_new_bank,
                                 const std::string& seal_key) {
  // The built-in signals on the Signal interface, before any bank names them.
  register_builtin_signals();
  std::error_code ec;
  if (mode == OpenMode::Create) {
    const auto& c = config_for_new_bank;
    if (c.pdq_threshold < 0 || c.pdq_threshold > 256)
      throw Error(ErrorKind::Usage, "", "PDQ threshold must be within 0..256");
    if (c.min_quality < 0 || c.min_quality > 100)
      throw Error(ErrorKind::Usage, "", "minimum quality must be within 0..100");
    if (!valid_index_type(c.index_type))
      throw Error(
          ErrorKind::Usage, "",
          "index type must be auto, flat, multihash or compact, not '" + c.index_type + "'");
    if (c.multihash_min_entries < 0)
      throw Error(ErrorKind::Usage, "", "multihash_min_entries must not be negative");
    if (const auto why = validate_new_config(c); !why.empty())
      throw Error(ErrorKind::Usage, "", why);
    if (c.has("embed") && c.embed_model.empty())
      throw Error(ErrorKind::Usage, "", "the embed signal needs a model");
    if (c.local_min_inliers < 3)
      throw Error(ErrorKind::Usage, "", "local_min_inliers must be at least 3");
  }
  auto impl = std::make_unique<Impl>();
  impl->path = path;
  impl->mode = mode == OpenMode::Create ? OpenMode::ReadWrite : mode;
  impl->digester = Digester(seal_key);
  bool created = false;
  const auto meta = initial_meta(config_for_new_bank, impl->digester);
  if (is_postgresql_location(path.native())) {
    impl->store = open_postgresql_store(path.native(), mode, meta, &created);
    impl->cache_base = cache_base_for(path, impl->store->where());
  } else {
    impl->store = open_sqlite_store(path, mode, meta, &created);
    impl->cache_base = path;
  }
  impl->where = impl->store->where();
  if (impl->store->meta(kMigratingKey))
    throw Error(ErrorKind::Bank, impl->where,
                "a migration into this bank did not finish ('hashwall migrate'): remove it and "
                "migrate again");
  impl->seal_key_id = impl->store->meta("seal_key_id").value_or("");
  // A key that is not the bank's would seal what it writes with the wrong key; read-only,
  // check() says so instead.
  if (impl->mode == OpenMode::ReadWrite && !seal_key.empty() &&
      impl->digester.key_id() != impl->seal_key_id)
    throw Error(ErrorKind::Usage, impl->where,
                impl->seal_key_id.empty()
                    ? "the bank has no keyed seal: a key is only given to a bank created with "
                      "one"
                    : "the key given is not the bank's (its key id is " + impl->digester.key_id() +
                          ", the bank's " + impl->seal_key_id + ")");
  // Cache files left by an earlier bank of the same name describe other records; a new
  // bank starts at generation 0 again, so they must not be mistaken for its own.
  if (created) {
    fs::remove(pdq_index_path(impl->cache_base), ec);
    for (const auto& name : config_for_new_bank.signals)
      fs::remove(signal_cache_path(impl->cache_base, name), ec);
  }
  std::lock_guard lock(impl->db_mu);
  impl->read_config();  // a bank with damaged settings is refused before any upgrade
  impl->store->upgrade();
  impl->start_pdq_digest();
  // Banks made before bank_id came get one at their first read-write open.
  if (mode != OpenMode::ReadOnly && !impl->meta("bank_id")) {
    auto tx = impl->store->begin_write();
    if (!impl->meta("bank_id")) impl->set_meta("bank_id", new_bank_id());
    tx->commit();
  }
  impl->load_or_build_index();
  return std::unique_ptr<Bank>(new Bank(std::move(impl)));
}

const fs::path& Bank::path() const { return impl_->path; }
const BankConfig& Bank::config() const { return impl_->config; }
const std::string& Bank::seal_key_id() const { return impl_->seal_key_id; }
std::string Bank::bank_id() const {
  std::lock_guard lock(impl_->db_mu);
  return impl_->meta("bank_id").value_or("");
}

AddResult Bank::add(std::span<const NewEntry> entries, const Actor& who,
                    const std::string& claim_peer) {
  auto& m = *impl_;
  m.require_writable();
  m.require_key();
  if (!m.local_params_mismatch.empty() && m.config.has("local") &&
      std::any_of(entries.begin(), entries.end(),
                  [](const NewEntry& e) { return e.records.count("local") > 0; }))
    throw Error(ErrorKind::Bank, m.where, m.local_params_mismatch);
  std::lock_guard lock(m.db_mu);
  AddResult r;
  std::vector<std::int64_t> new_ids, pdq_ids;  // pdq_ids: those with a PDQ hash
  std::vector<Hash256> new_hashes;
  std::vector<std::size_t> new_inputs;  // which input each new id came from
  std::uint64_t gen_before = 0;
  try {
    auto tx = m.store->begin_write();
    gen_before = m.read_generation();
    const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
    const bool record_rows = m.store->has_record_table() && !m.registered.empty();
    const bool digests = m.store->has_digest_table();
    std::map<std::string, std::string> samples;  // Registered::sample, kept once committed
    // Each entry's list must exist; the audit row names the list when the batch has one.
    std::map<std::int64_t, std::string> list_names;
    std::map<std::int64_t, ListKind> list_kinds;
    for (auto& l : m.store->lists(false)) {
      list_kinds[l.id] = l.kind;
      list_names[l.id] = std::move(l.name);
    }
    std::set<std::int64_t> lists_added_to;
    Digest batch, batch_minus, pdq_batch;
    // The entries go to the store in chunks, one round trip a chunk for a remote store
    // (Store::existing_ids, insert_entries, insert_digests).
    r.ids.resize(entries.size(), 0);
    r.was_duplicate.resize(entries.size(), false);
    for (std::size_t at = 0; at < entries.size(); at += kAddChunk) {
      const std::size_t end = std::min(entries.size(), at + kAddChunk);
      std::vector<Store::NewRow> rows;
      rows.reserve(end - at);
      for (std::size_t i = at; i < end; ++i) {
        const NewEntry& e = entries[i];
        const auto where = [&] { return "entry " + std::to_string(i + 1) + " of the batch: "; };
        if (e.label.size() > kMaxLabelBytes || e.source.size() > kMaxSourceBytes)
          throw Error(
              ErrorKind::Usage, m.where,
              where() + (e.label.size() > kMaxLabelBytes
                             ? "label of " + std::to_string(e.label.size()) +
                                   " bytes is longer than " + std::to_string(kMaxLabelBytes)
                             : "source of " + std::to_string(e.source.size()) +
                                   " bytes is longer than " + std::to_string(kMaxSourceBytes)));
        if (!list_names.count(e.list_id))
          throw Error(ErrorKind::Usage, m.where,
                      where() + "there is no list " + std::to_string(e.list_id));
        if (e.added_by.size() > kMaxSourceBytes || e.peer.size() > kMaxSourceBytes ||
            e.external_id.size() > kMaxSourceBytes)
          throw Error(ErrorKind::Usage, m.where,
                      where() + "added_by, peer or external id longer than " +
                          std::to_string(kMaxSourceBytes) + " bytes");
        if (e.quality && (*e.quality < 0 || *e.quality > 100))
          throw Error(ErrorKind::Bank, m.where,
                      where() + "quality " + std::to_string(*e.quality) + " is outside 0..100");
        std::optional<std::string> sha, md5;
        if (e.sha256) {
          sha = lower(*e.sha256);
          if (!is_sha256_hex(*sha))
            throw Error(ErrorKind::Bank, m.where,
                        where() + "'" + *e.sha256 + "' is not a SHA-256 (64 hex characters)");
        }
        if (e.md5) {
          md5 = lower(*e.md5);
          if (!is_md5_hex(*md5))
            throw Error(ErrorKind::Bank, m.where,
                        where() + "'" + *e.md5 + "' is not an MD5 (32 hex characters)");
        }
        // A video imported from its vPDQ hashes has only its record (the "vpdq" signal's).
        // ... a record of one of the bank's signals, which add_records() stores.
        const bool stored_record =
            record_rows && std::any_of(e.records.begin(), e.records.end(), [&](const auto& r) {
              return m.registered.count(r.first) > 0;
            });
        if (!e.pdq && !sha && !md5 && !stored_record)
          throw Error(ErrorKind::Bank, m.where,
                      where() + "it has no PDQ hash, SHA-256, MD5 or signal record to be found by");
        rows.push_back({&e, std::move(sha), std::move(md5)});
      }
      // Rows inserted by earlier chunks of this transaction are visible to the look-up; a
      // duplicate within the chunk names the chunk's first copy, as it would have been
      // found had the copies come one at a time.
      // Rows with only a signal record (an imported vPDQ file) are not looked up: nothing
      // the store indexes names them (`import` drops a file imported before by its frames).
      std::vector<Store::NewRow> lookup;
      std::vector<std::size_t> lookup_row;
      for (std::size_t k = 0; k < rows.size(); ++k)
        if (rows[k].entry->pdq || rows[k].sha256 || rows[k].md5) {
          lookup.push_back(rows[k]);
          lookup_row.push_back(k);
        }
      std::vector<std::optional<std::int64_t>> existing(rows.size());
      {
        const auto found = m.store->existing_ids(lookup);
        for (std::size_t p = 0; p < lookup.size(); ++p) existing[lookup_row[p]] = found.at(p);
      }
      // A row with both a SHA-256 and an MD5 (a peer's entry) duplicates an entry with
      // either: the MD5 is unique too.
      for (std::size_t k = 0; k < rows.size(); ++k)
        if (!existing[k] && rows[k].sha256 && rows[k].md5)
          existing[k] = m.store->id_of_md5(*rows[k].md5);
      std::unordered_map<std::string, std::size_t> first_copy;  // duplicate key -> row
      std::vector<std::size_t> copy_of(rows.size());
      std::vector<Store::NewRow> fresh;
      std::vector<std::size_t> fresh_rows;  // which row each of `fresh` is
      for (std::size_t k = 0; k < rows.size(); ++k) {
        copy_of[k] = k;
        if (existing[k]) continue;
        const NewEntry& e = *rows[k].entry;
        std::vector<std::string> keys;
        if (rows[k].sha256) keys.push_back("s" + *rows[k].sha256);
        if (rows[k].md5) keys.push_back("m" + *rows[k].md5);
        if (keys.empty() && e.pdq)
          keys.push_back("u" + std::string(origin_name(e.origin)) + '\n' +
                         std::string(hash_bytes(*e.pdq)) + e.source);
        if (keys.empty()) {
          std::string key = "r" + e.source;
          for (const auto& [name, rec] : e.records) key += '\n' + name + '\n' + rec;
          keys.push_back(std::move(key));
        }
        const auto seen = std::find_if(keys.begin(), keys.end(), [&](const std::string& key) {
          return first_copy.count(key);
        });
        if (seen != keys.end()) {
          const std::size_t first = first_copy.at(*seen);
          copy_of[k] = first;
          // A file-hash row, then the same file with its PDQ hash, for the same list: the
          // entry is made from the later row, as it would be completed had the rows come
          // one at a time (the earlier row becomes its copy).
          if (!rows[first].entry->pdq && e.pdq && rows[first].entry->list_id == e.list_id) {
            for (std::size_t j = 0; j < k; ++j)  // the first row and its copies so far
              if (copy_of[j] == first && !existing[j]) copy_of[j] = k;
            copy_of[k] = k;
            for (auto& [key, at] : first_copy)
              if (at == first) at = k;
            for (auto& key : keys) first_copy.emplace(std::move(key), k);
            const auto at = static_cast<std::size_t>(
                std::find(fresh_rows.begin(), fresh_rows.end(), first) - fresh_rows.begin());
            fresh[at] = rows[k];
            fresh_rows[at] = k;
          }
          continue;
        }
        for (auto& key : keys) first_copy.emplace(std::move(key), k);
        fresh.push_back(rows[k]);
        fresh_rows.push_back(k);
      }
      const auto fresh_ids = m.store->insert_entries(fresh, now);
      std::vector<std::int64_t> chunk_ids(rows.size(), 0);  // the new entries' ids, by row
      for (std::size_t p = 0; p < fresh_rows.size(); ++p)
        chunk_ids[fresh_rows[p]] = fresh_ids.at(p);
      std::vector<std::int64_t> digest_ids;  // the entries this chunk added, with their digests
      std::vector<std::string> digest_rows;
      // The entry's records of the bank's registered signals, each checked, stored and
      // added to its digest.
      const auto add_records = [&](std::int64_t id, const NewEntry& e, Digest& digest,
                                   const auto& where) {
        if (!record_rows) return;
        for (const auto& [name, record] : e.records) {
          const auto reg = m.registered.find(name);
          if (reg == m.registered.end()) continue;  // not one of the bank's signals
          const Signal& sig = *reg->second.signal;
          if (const auto why = sig.check_record(record); !why.empty())
            throw Error(ErrorKind::Bank, m.where, where() + name + " record: " + why);
          // A record must compare with the bank's others (e.g. vectors of one length).
          auto& sample = samples[name];
          if (sample.empty()) sample = reg->second.sample;
          if (sample.empty()) {
            // The bank's first well-formed record, as build_registered() and check() take
            // it (a damaged first row is skipped: rare, and read once per process).
            if (auto first = m.store->first_record(name); first && sig.check_record(*first).empty())
              sample = std::move(*first);
            else if (first)
              m.store->scan_records(name, [&](std::int64_t, std::string_view r) {
                if (sample.empty() && sig.check_record(r).empty()) sample = r;
              });
          }
          if (!sample.empty())
            if (const auto why = sig.comparable(sample, record); !why.empty())
              throw Error(ErrorKind::Bank, m.where, where() + name + " record: " + why);
          if (sample.empty()) sample = record;
          m.store->insert_record(name, id, record);
          digest += m.digester.part(record_part(name), id, record);
        }
      };
      for (std::size_t k = 0; k < rows.size(); ++k) {
        const std::size_t i = at + k;
        const auto where = [&] { return "entry " + std::to_string(i + 1) + " of the batch: "; };
        // The same file as an entry of a file-hash list (same SHA-256 or MD5, no PDQ hash),
        // now indexed: that entry gains the PDQ hash and the signals' records, so that
        // near copies are found too; it keeps its list, label and source.
        if (existing[k] && copy_of[k] == k && rows[k].entry->pdq &&
            (rows[k].sha256 || rows[k].md5)) {
          const NewEntry& e = *rows[k].entry;
          // Only in the list the row is for: a PDQ hash never joins another list (an allow
          // or a disabled one) behind the caller's back; that is the duplicate path below.
          if (const auto had = m.store->get(*existing[k]);
              had && !had->pdq && had->list_id == e.list_id &&
              m.store->complete_entry_pdq(had->id, *e.pdq, e.quality)) {
            const std::int64_t id = had->id;
            const auto payload = [&](std::string_view pdq, const std::optional<int>& q) {
              return entry_row_payload(had->sha256.value_or(""), pdq, q ? std::to_string(*q) : "",
                                       had->label, had->source, origin_name(had->origin),
                                       had->added_at);
            };
            const Digest old_part = m.digester.part(kEntryPart, id, payload({}, had->quality));
            Digest added = m.digester.part(kEntryPart, id, payload(hash_bytes(*e.pdq), e.quality));
            add_records(id, e, added, where);
            if (digests) {
              // An entry from before digests_from has no digest row: it stays without one.
              const auto old = m.store->take_digests(std::span(&id, 1));
              if (!old.empty()) {
                if (auto d = Digest::from_bytes(old.front())) {
                  *d -= old_part;
                  *d += added;
                  m.store->insert_digest(id, d->bytes());
                  batch += added;
                  batch_minus += old_part;
                } else {
                  m.store->insert_digest(id, old.front());  // damaged: left for check
                }
              }
              pdq_batch += pdq_term(id, *e.pdq);
            }
            r.ids[i] = id;
            ++r.added;
            new_ids.push_back(id);
            pdq_ids.push_back(id);
            new_hashes.push_back(*e.pdq);
            new_inputs.push_back(i);
            lists_added_to.insert(had->list_id);
            continue;
          }
        }
        if (existing[k] || copy_of[k] != k) {
          r.ids[i] = existing[k] ? *existing[k] : chunk_ids[copy_of[k]];
          if (existing[k] && list_names.size() > 1)
            if (const auto had = m.store->get(*existing[k]);
                had && had->list_id != rows[k].entry->list_id)
              ++r.in_other_list;
          r.was_duplicate[i] = true;
          ++r.duplicates;
          continue;
        }
        const NewEntry& e = *rows[k].entry;
        const std::optional<std::string>& sha = rows[k].sha256;
        const std::int64_t id = chunk_ids[k];
        // Each part is hashed as it is stored (check() hashes what it reads back).
        Digest digest = m.digester.part(
            kEntryPart, id,
            entry_row_payload(sha.value_or(""), e.pdq ? hash_bytes(*e.pdq) : std::string_view(),
                              e.quality ? std::to_string(*e.quality) : "", e.label, e.source,
                              origin_name(e.origin), now));
        if (rows[k].md5) digest += m.digester.part(kMd5Part, id, *rows[k].md5);
        add_records(id, e, digest, where);
        if (digests) {
          digest_ids.push_back(id);
          digest_rows.push_back(digest.bytes());
          batch += digest;
          if (e.pdq) pdq_batch += pdq_term(id, *e.pdq);
        }
        r.ids[i] = id;
        ++r.added;
        new_ids.push_back(id);
        if (e.pdq) {
          pdq_ids.push_back(id);
          new_hashes.push_back(*e.pdq);
        }
        new_inputs.push_back(i);
        lists_added_to.insert(e.list_id);
      }
      if (digests) m.store->insert_digests(digest_ids, digest_rows);
    }
    if (!claim_peer.empty() && m.store->has_list_tables()) {
      std::vector<EntryClaim> claims;
      for (std::size_t i = 0; i < entries.size(); ++i) {
        if (entries[i].external_id.empty()) continue;
        if (r.was_duplicate[i]) {
          const auto had = m.store->get(r.ids[i]);
          if (!had || had->list_kind != list_kinds[entries[i].list_id]) continue;
        }
        claims.push_back({claim_peer, entries[i].external_id, r.ids[i]});
      }
      m.store->add_claims(claims);
    }
    if (r.added > 0) {
      m.log_write(ChangeOp::Add, new_ids, gen_before + 1);
      if (digests) m.update_digests(batch, batch_minus, pdq_batch, {});
      m.audit_write("add", lists_added_to.size() == 1 ? list_names[*lists_added_to.begin()] : "",
                    new_ids, who);
    }
    tx->commit();
    for (auto& [name, sample] : samples)
      if (m.registered.at(name).sample.empty()) m.registered.at(name).sample = std::move(sample);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorKind::Bank, m.where, e.what());
  }
  if (r.added == 0) return r;

  const bool others_wrote = gen_before != m.generation;
  bool type_changes;
  {
    // The entries after this add, from the index (a count(*) costs O(n) in PostgreSQL, per
    // write and per replica following it); rows with a malformed hash are not in it.
    std::shared_lock read(m.index_mu);
    const auto total = static_cast<std::int64_t>(m.index->size() + pdq_ids.size());
    type_changes = m.index->type() != m.type_for(total);
  }
  if (others_wrote || type_changes) {
    // Our index misses someone else's rows, or "auto" just crossed to multihash.
    m.rebuild_index();
  } else {
    std::unique_lock write(m.index_mu);
    m.index->add(pdq_ids, new_hashes);
    m.generation = gen_before + 1;
    m.dirty = true;
  }
  // Extend the other signals' indexes when they were current; otherwise the next search
  // rebuilds them.
  {
    std::unique_lock write(m.signals_mu);
    for (auto& [name, reg] : m.registered) {
      if (!reg.index || reg.gen != gen_before) continue;
      for (std::size_t k = 0; k < new_ids.size(); ++k) {
        const auto& recs = entries[new_inputs[k]].records;
        if (const auto it = recs.find(name); it != recs.end()) try {
            reg.index->add(new_ids[k], it->second);
          } catch (const std::exception&) {
            // Left out, as build_registered() leaves it out; check() names it.
          }
      }
      reg.index->prepare();
      reg.gen = gen_before + 1;
      reg.cache_dirty = true;
    }
  }
  return r;
}

void Bank::Impl::update_digests(const Digest& plus, const Digest& minus, const Digest& pdq_plus,
                                const Digest& pdq_minus) const {
  const auto read = [&](const char* key) {
    const auto v = meta(key);
    const auto d = v ? Digest::from_hex(*v) : std::nullopt;
    if (!d) bad_meta(key);
    return *d;
  };
  Digest records = read("records_digest");
  records += plus;
  records -= minus;
  set_meta("records_digest", records.hex());
  Digest pdq = read("pdq_digest");
  pdq += pdq_plus;
  pdq -= pdq_minus;
  set_meta("pdq_digest", pdq.hex());
  if (digester.keyed()) {
    const auto settings = meta("settings_sha256");
    if (!settings) bad_meta("settings_sha256");
    set_meta("seal", digester.seal(*settings, records));
  }
}

void Bank::Impl::start_pdq_digest() {
  // A bank upgraded to format 4 gets its PDQ digest from the records once, here; a new
  // bank starts with it. Read-only, an older bank simply has none (the cache is then
  // checked on a sample).
  if (mode == OpenMode::ReadOnly || !store->has_digest_table() || meta("pdq_digest")) return;
  auto tx = store->begin_write();
  if (!meta("pdq_digest")) {
    Digest sum;
    store->scan_pdq([&](std::int64_t id, std::string_view blob) {
      if (const auto h = hash_from_blob(blob)) sum += pdq_term(id, *h);
    });
    set_meta("pdq_digest", sum.hex());
  }
  tx->commit();
}

std::int64_t Bank::remove_ids(std::span<const std::int64_t> ids, const Actor& who) {
  return impl_->remove_where([&] { return impl_->store->remove_ids(ids); }, who);
}

void Bank::set_index(const std::string& type, std::optional<std::int64_t> multihash_min_entries) {
  auto& m = *impl_;
  m.require_writable();
  if (!valid_index_type(type))
    throw Error(ErrorKind::Usage, "",
                "index type must be auto, flat, multihash or compact, not '" + type + "'");
  if (multihash_min_entries && *multihash_min_entries < 0)
    throw Error(ErrorKind::Usage, "", "multihash_min_entries must not be negative");
  std::lock_guard lock(m.db_mu);
  {
    auto tx = m.store->begin_write();
    m.set_meta("index_type", type);
    if (multihash_min_entries)
      m.set_meta("multihash_min_entries", std::to_string(*multihash_min_entries));
    tx->commit();
  }
  m.config.index_type = type;
  if (multihash_min_entries) m.config.multihash_min_entries = *multihash_min_entries;
  m.rebuild_index();  // marks the cache out of date: written at flush_index() or close
}

std::int64_t Bank::remove_label(const std::string& label, const Actor& who) {
  return impl_->remove_where([&] { return impl_->store->remove_label(label); }, who);
}

std::int64_t Bank::remove_sha256(const std::string& sha256_hex, const Actor& who) {
  const std::string sha = lower(sha256_hex);
  return impl_->remove_where([&] { return impl_->store->remove_sha256(sha); }, who);
}

std::optional<Entry> Bank::get(std::int64_t id) const {
  std::lock_guard lock(impl_->db_mu);
  return impl_->store->get(id);
}

std::optional<Entry> Bank::find_sha256(const std::string& sha256_hex) const {
  std::lock_guard lock(impl_->db_mu);
  return impl_->store->find_sha256(lower(sha256_hex));
}

std::optional<Entry> Bank::find_md5(const std::string& md5_hex) const {
  std::lock_guard lock(impl_->db_mu);
  return impl_->store->find_md5(lower(md5_hex));
}

bool Bank::has_md5_entries() const {
  auto& m = *impl_;
  std::lock_guard lock(m.db_mu);
  // Looked up again when the bank has changed: this process's writes, and another's once
  // followed (here, as a search would).
  m.refresh_if_changed();
  std::uint64_t gen = 0;
  {
    std::shared_lock read(m.index_mu);
    gen = m.generation;
  }
  if (m.md5_checked_at != gen) {
    m.md5_any = m.store->has_md5_entries();
    m.md5_checked_at = gen;
  }
  return m.md5_any;
}

void Bank::for_each(const std::function<bool(const Entry&)>& fn) const {
  // Page through by id so that fn runs without the lock held (it may call get(), or
  // take its time while worker threads search).
  std::int64_t after = std::numeric_limits<std::int64_t>::min();
  for (;;) {
    std::vector<Entry> page;
    {
      std::lock_guard lock(impl_->db_mu);
      page = impl_->store->entries_after(after, kChunk);
    }
    for (const auto& e : page)
      if (!fn(e)) return;
    if (page.size() < kChunk) return;
    after = page.back().id;
  }
}

std::uint64_t Bank::catch_up() const {
  auto& m = *impl_;
  {
    std::lock_guard lock(m.db_mu);
    m.refresh_if_changed(true);  // a store that cannot be read is reported, not skipped
  }
  for (auto& [name, reg] : m.registered)
    m.make_fresh(reg.index, reg.gen,
                 [&, n = name](std::uint64_t* g) { return m.build_registered(n, g); });
  std::lock_guard lock(m.db_mu);
  m.refresh_if_changed(true);
  return m.generation;
}

std::vector<PdqMatch> Bank::search_pdq(std::span<const Hash256> queries, int max_distance) const {
  {
    std::lock_guard lock(impl_->db_mu);
    impl_->refresh_if_changed();
  }
  std::vector<std::vector<IndexHit>> per_query;
  {
    std::shared_lock lock(impl_->index_mu);
    per_query = impl_->index->range_search(queries, max_distance);
  }
  return best_per_entry(per_query);
}

std::vector<SignalMatch> Bank::search_signal(const std::string& name, const SignalQuery& query,
                                             double min_margin, std::size_t k,
                                             const SignalParams* decision) const {
  auto& m = *impl_;
  if (name == "pdq") {
    // The bank's own PDQ index (bank/indexes.cpp), searched as PdqSignalIndex searches.
    if (query.forms.empty() || k == 0) return {};
    {
      std::lock_guard lock(m.db_mu);
      m.refresh_if_changed();
    }
    std::shared_lock lock(m.index_mu);
    try {
      return pdq_search(*m.index, query, decision ? *decision : m.config.signal_params.at(name),
                        min_margin);
    } catch (const Error& e) {
      if (!e.file().empty()) throw;
      throw Error(e.kind(), m.where, e.reason());
    }
  }
  const auto it = m.registered.find(name);
  if (it == m.registered.end() || query.forms.empty() || k == 0) return {};
  auto& reg = it->second;
  m.make_fresh(reg.index, reg.gen, [&](std::uint64_t* g) { return m.build_registered(name, g); });
  std::shared_lock read(m.signals_mu);
  try {
    // never dropped once built
    return reg.index->search(query, decision ? *decision : m.config.signal_params.at(name),
                             min_margin, k);
  } catch (const Error& e) {
    if (!e.file().empty()) throw;
    throw Error(e.kind(), m.where, e.reason());
  }
}

std::optional<SignalRecord> Bank::record(const std::string& name, const Entry& entry) const {
  auto& m = *impl_;
  if (!m.config.has(name)) return std::nullopt;
  if (name == "pdq") {  // in the entry's row; none in an entry of a file-hash list
    if (!entry.pdq) return std::nullopt;
    return pdq_record(*entry.pdq, entry.quality);
  }
  if (!m.registered.count(name)) return std::nullopt;
  std::optional<SignalRecord> out;
  std::lock_guard lock(m.db_mu);
  m.store->scan_records(
      name, [&](std::int64_t, std::string_view r) { out = SignalRecord(r); },
      std::span<const std::int64_t>(&entry.id, 1));
  return out;
}

void Bank::flush_index() {
  auto& m = *impl_;
  std::lock_guard lock(m.db_mu);
  try {
    m.save_index_locked();
    m.save_signal_caches();
  } catch (...) {
    // A read-only bank may sit where we cannot write; its cache is a courtesy.
    if (m.mode != OpenMode::ReadOnly) throw;
  }
}

}  // namespace hashwall
