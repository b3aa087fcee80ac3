// What a bank holds (stats) and whether it is whole (check): SQLite's integrity check,
// meta, every record and signal row, the index in use and the cache files against the
// records.
#include <set>

#include "bank/bank_impl.hpp"

namespace hashwall {

std::string Bank::index_cache_refused() const { return impl_->cache_refused; }

BankStats Bank::stats() const {
  auto& m = *impl_;
  std::lock_guard lock(m.db_mu);
  m.refresh_if_changed(true);
  BankStats st;
  {
    auto read = m.store->begin_read();
    const EntryCounts c = m.store->entry_counts(m.config.min_quality);
    st.entries = c.entries;
    st.indexed = c.indexed;
    st.imported = c.imported;
    st.low_quality = c.low_quality;
    st.disabled = c.disabled;
    st.flood_quarantined = c.flood;
    st.labels = c.labels;
    st.generation = m.read_generation();
    for (const auto& name : m.config.signals) {
      if (!m.registered.count(name)) continue;
      BankStats::Registered r;
      r.name = name;
      r.params = m.config.signal_params.at(name);
      const RowCounts rc = m.store->record_counts(name);
      r.entries = rc.rows;
      r.items = rc.items;
      r.db_bytes = rc.bytes;
      st.registered.push_back(std::move(r));
    }
    read->commit();
  }
  st.signals = m.config.signals;
  st.embed_model = m.config.embed_model;
  {
    std::shared_lock slock(m.signals_mu);
    for (auto& r : st.registered)
      if (const auto& reg = m.registered.at(r.name); reg.index) {
        r.memory_bytes = reg.index->memory_bytes();
        r.index_type = reg.index->type();
      }
  }
  st.format_version = m.store->format_version();
  st.index_rebuilds = m.rebuilds;
  st.changes_followed = m.followed;
  st.index_cache_refused = m.cache_refused;
  st.db_bytes = m.store->bytes_on_disk();
  st.index_cache_bytes = file_size_or_zero(pdq_index_path(m.cache_base));
  std::shared_lock ilock(m.index_mu);
  st.index_type = m.index->type();
  st.index_memory_bytes = m.index->memory_bytes();
  return st;
}

namespace {

// Appends problem lines of one kind, summarising beyond kMaxListedProblems.
struct ProblemList {
  std::vector<std::string>& out;
  std::size_t n = 0;
  void add(std::string line) {
    if (n++ < kMaxListedProblems) out.push_back(std::move(line));
  }
  void finish(const std::string& kind) {
    if (n > kMaxListedProblems)
      out.push_back("... and " + std::to_string(n - kMaxListedProblems) + " more " + kind);
  }
};

std::set<std::int64_t> ids_within(const std::vector<std::pair<std::int64_t, Hash256>>& rows,
                                  const Hash256& q, int max_distance) {
  std::set<std::int64_t> out;
  for (const auto& [id, h] : rows)
    if (hamming(q, h) <= max_distance) out.insert(id);
  return out;
}

// Does `index` hold exactly the records' (id, hash) pairs? `rows` is in id order.
// Returns a description of the first difference, or an empty string.
std::string compare_contents(const PdqIndex& index,
                             const std::vector<std::pair<std::int64_t, Hash256>>& rows) {
  auto held = index.contents();
  std::sort(held.begin(), held.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  std::size_t i = 0;
  for (; i < held.size() && i < rows.size(); ++i) {
    if (held[i].first != rows[i].first)
      return "entry " + std::to_string(std::min(held[i].first, rows[i].first)) +
             " is in one of them only";
    if (held[i].second != rows[i].second)
      return "entry " + std::to_string(rows[i].first) + " has another hash than its record";
  }
  if (held.size() != rows.size())
    return "it holds " + std::to_string(held.size()) + " hashes for " +
           std::to_string(rows.size()) + " entries";
  return {};
}

// Does `index` agree with brute force over `rows` for a sample of entries?
// Returns a description of the first disagreement, or an empty string.
std::string verify_sample(const PdqIndex& index,
                          const std::vector<std::pair<std::int64_t, Hash256>>& rows,
                          int threshold) {
  if (rows.empty()) return {};
  const std::size_t step = std::max<std::size_t>(1, rows.size() / kCheckSamples);
  for (std::size_t i = 0; i < rows.size(); i += step) {
    const auto& [id, h] = rows[i];
    const auto hits = index.range_search(std::span(&h, 1), threshold).at(0);
    std::set<std::int64_t> got;
    bool self = false;
    for (const auto& hit : hits) {
      got.insert(hit.id);
      self = self || (hit.id == id && hit.distance == 0);
    }
    if (!self) return "entry " + std::to_string(id) + " is not found by its own hash";
    const auto want = ids_within(rows, h, threshold);
    if (got != want)
      return "searching for entry " + std::to_string(id) + " finds " + std::to_string(got.size()) +
             " entries, brute force over the records finds " + std::to_string(want.size());
  }
  return {};
}

}  // namespace

// The entries' digests against what is stored, the records and PDQ digests in meta against
// the entries, and the seal against the key (bank/digests.hpp).
void Bank::Impl::check_digests(bool have_table,
                               const std::vector<std::pair<std::int64_t, Digest>>& recomputed,
                               const std::vector<std::pair<std::int64_t, Hash256>>& rows,
                               CheckReport& rep) const {
  const Impl& m = *this;
  auto& P = rep.problems;
  if (!have_table) {
    rep.notes.push_back(
        "the bank's entries carry no checksums (made before format 4; opened read-only, so "
        "not upgraded): edits of stored labels, hashes and features cannot be detected");
    return;
  }
  const auto from_text = m.meta("digests_from");
  const auto from = from_text ? parse_int(*from_text) : std::nullopt;
  if (!from) {
    P.push_back("meta 'digests_from' is missing or not a number");
    return;
  }
  const bool keyed_bank = !m.seal_key_id.empty();
  const bool right_key = keyed_bank && m.digester.key_id() == m.seal_key_id;
  // A keyed bank's digests are HMACs: only its key recomputes them; an unkeyed bank's are
  // not HMACs, so a key given for it recomputes nothing comparable.
  const bool can_verify = keyed_bank ? right_key : !m.digester.keyed();
  if (keyed_bank && !m.digester.keyed())
    rep.notes.push_back("the bank is sealed with a key (key id " + m.seal_key_id +
                        "): give it (--seal-key FILE) to verify the entries' checksums and the "
                        "seal");
  else if (keyed_bank && !right_key)
    P.push_back("the key given is not the bank's (its key id is " + m.digester.key_id() +
                ", the bank's " + m.seal_key_id + "): its checksums and seal cannot be verified");
  else if (!keyed_bank && m.digester.keyed())
    P.push_back(
        "the bank has no keyed seal, but a key was given: it was not created with one, or its "
        "seal was removed");

  // A keyed bank is created at format 4, so every entry must carry a checksum: a raised
  // digests_from would otherwise pass off inserted entries as older than checksums.
  if (keyed_bank && *from != 0)
    P.push_back("meta 'digests_from' is " + std::to_string(*from) +
                " in a bank sealed with a key, which has checksums from its first entry (0)");

  std::map<std::int64_t, Digest> stored;
  Digest sum;
  m.store->scan_digests([&](std::int64_t id, std::string_view b) {
    if (const auto d = Digest::from_bytes(b)) {
      stored.emplace(id, *d);
      sum += *d;
    } else {
      P.push_back("entry " + std::to_string(id) + ": its checksum is not 32 bytes");
    }
  });
  std::int64_t older = 0;
  {
    ProblemList list{P};
    for (const auto& [id, d] : recomputed) {
      const auto it = stored.find(id);
      if (it == stored.end()) {
        if (id < *from)
          ++older;
        else
          list.add("entry " + std::to_string(id) +
                   " has no checksum although it was added after checksums began (an entry "
                   "inserted behind the bank's back?)");
      } else if (can_verify && it->second != d) {
        list.add("entry " + std::to_string(id) +
                 ": what is stored (its label, source, hashes, features or signal records) "
                 "differs from the checksum written when it was added");
      }
    }
    list.finish("entries whose checksums disagree");
  }
  if (older > 0)
    rep.notes.push_back(std::to_string(older) +
                        " entries were added before the bank had checksums (format 4); "
                        "edits of them cannot be detected");

  const auto records = m.meta("records_digest");
  const auto want = records ? Digest::from_hex(*records) : std::nullopt;
  if (!want)
    P.push_back("meta 'records_digest' is missing or not 64 hex characters");
  else if (*want != sum)
    P.push_back(
        "the entries' checksums do not add up to the bank's records digest: entries were "
        "removed or added behind the bank's back");

  if (const auto pdq_text = m.meta("pdq_digest")) {
    Digest pdq;
    for (const auto& [id, h] : rows) pdq += pdq_term(id, h);
    const auto pdq_want = Digest::from_hex(*pdq_text);
    if (!pdq_want || *pdq_want != pdq)
      P.push_back(
          "the PDQ hashes do not add up to the bank's PDQ digest (meta 'pdq_digest'): hashes "
          "were edited, or entries removed or added, behind the bank's back");
  } else {
    P.push_back("meta 'pdq_digest' is missing");
  }

  if (keyed_bank && right_key) {
    const auto seal = m.meta("seal");
    const auto settings = m.meta("settings_sha256");
    if (!seal || !settings || !want || *seal != m.digester.seal(*settings, *want))
      P.push_back(
          "the seal does not match the bank's settings and records digest: the bank was "
          "changed by someone without its key");
  }
}

CheckReport Bank::check() const {
  auto& m = *impl_;
  CheckReport rep;
  auto& P = rep.problems;
  std::lock_guard lock(m.db_mu);
  try {
    m.refresh_if_changed(true);
  } catch (const Error& e) {
    P.push_back(std::string("cannot read the bank: ") + e.reason());
  }
  // One snapshot for every read below: the sums in meta and the rows they sum must be of
  // the same generation, whatever another writer commits meanwhile.
  auto snapshot = m.store->begin_read();

  {
    ProblemList list{P};
    for (auto& line : m.store->integrity_problems()) list.add("SQLite integrity check: " + line);
    list.finish("SQLite integrity problems");
  }

  // Meta: re-read rather than trusting what open() parsed.
  const auto meta_int = [&](const char* key, std::int64_t lo, std::int64_t hi) {
    const auto v = m.meta(key);
    const auto n = v ? parse_int(*v) : std::nullopt;
    if (!n || *n < lo || *n > hi)
      P.push_back(std::string("meta '") + key + "' is " + (v ? "'" + *v + "'" : "missing") +
                  " (expected a number in " + std::to_string(lo) + ".." + std::to_string(hi) + ")");
  };
  meta_int("format_version", 1, kFormatVersion);
  meta_int("created_at", 0, INT64_MAX);
  meta_int("pdq_threshold", 0, 256);
  meta_int("min_quality", 0, 100);
  meta_int("multihash_min_entries", 0, INT64_MAX);
  if (const auto t = m.meta("index_type"); !t || !valid_index_type(*t))
    P.push_back("meta 'index_type' is missing or not auto/flat/multihash/compact");
  if (const auto sg = m.meta("signals"); !sg || sg->find("pdq") == std::string::npos)
    P.push_back("meta 'signals' is missing or does not list pdq");
  // The settings that decide, against the seal recorded when the bank was created: a
  // threshold edited in meta changes every answer while the records stay intact.
  if (const auto sealed = m.meta("settings_sha256")) {
    const auto now =
        settings_digest(m.config.signals, [&](const std::string& k) { return m.meta(k); });
    if (now != *sealed)
      P.push_back(
          "the bank's settings (pdq_threshold, min_quality, signals, local_min_inliers, "
          "embed_model, embed_threshold, signal parameters, created_at) differ from those it was "
          "created with (settings_sha256): meta was edited, so its answers are not the ones it "
          "was built to give");
  } else {
    rep.notes.push_back(
        "the bank's settings are not sealed (made before format 3): edits to its thresholds in "
        "meta cannot be detected");
  }
  const auto gen_text = m.meta("generation");
  const auto db_gen_parsed = gen_text ? parse_uint(*gen_text) : std::nullopt;
  if (!db_gen_parsed) P.push_back("meta 'generation' is missing or not a number");
  const bool have_gen = db_gen_parsed.has_value();
  const std::uint64_t bank_gen = db_gen_parsed.value_or(0);

  // Records. Each entry's digest is recomputed from what is stored, part by part, in
  // `recomputed` (id order, as the scans are); compared with the stored digests below.
  std::vector<std::pair<std::int64_t, Digest>> recomputed;
  const auto digest_of = [&](std::int64_t id) -> Digest* {
    const auto it = std::lower_bound(recomputed.begin(), recomputed.end(), id,
                                     [](const auto& a, std::int64_t b) { return a.first < b; });
    return it != recomputed.end() && it->first == id ? &it->second : nullptr;
  };
  const bool digests = m.store->has_digest_table();
  const auto add_part = [&](std::string_view tag, std::int64_t id, std::string_view bytes) {
    if (!digests) return;
    if (Digest* d = digest_of(id)) *d += m.digester.part(tag, id, bytes);
  };
  std::vector<std::pair<std::int64_t, Hash256>> rows;
  std::int64_t total = 0, without_pdq = 0;  // without_pdq: file-hash entries (format 6)
  std::set<std::int64_t> bare;              // entries without a PDQ hash, SHA-256 or MD5
  {
    ProblemList list{P};
    m.store->scan_raw_entries([&](const RawEntry& e) {
      ++total;
      const auto id = std::to_string(e.id);
      if (digests) {
        Digest d = m.digester.part(kEntryPart, e.id,
                                   entry_row_payload(e.sha256.value_or(""), e.pdq,
                                                     e.quality ? std::to_string(*e.quality) : "",
                                                     e.label, e.source, e.origin, e.added_at));
        if (e.md5) d += m.digester.part(kMd5Part, e.id, *e.md5);
        recomputed.emplace_back(e.id, d);
      }
      // Format 6: an entry of a file-hash list has no PDQ hash, and an SHA-256 or MD5.
      if (e.pdq_type == "null") {
        ++without_pdq;
        // ... or a video's vPDQ record alone (an imported vPDQ file): looked at below.
        if (!e.sha256 && !e.md5) bare.insert(e.id);
      } else if (const auto h = hash_from_blob(e.pdq); h && e.pdq_type == "blob") {
        rows.emplace_back(e.id, *h);
      } else {
        list.add("entry " + id + ": PDQ hash is a " + e.pdq_type + " of " +
                 std::to_string(e.pdq.size()) + " bytes (expected a 32-byte blob)");
      }
      if (e.md5 && !is_md5_hex(*e.md5))
        list.add("entry " + id + ": md5 '" + *e.md5 + "' is not 32 lowercase hex characters");
      if (e.quality && (e.quality_type != "integer" || *e.quality < 0 || *e.quality > 100))
        list.add("entry " + id + ": quality '" + e.quality_text + "' is not an integer in 0..100");
      if (e.origin != "indexed" && e.origin != "imported")
        list.add("entry " + id + ": origin '" + e.origin + "' is neither indexed nor imported");
      if (e.sha256 && !is_sha256_hex(*e.sha256))
        list.add("entry " + id + ": sha256 '" + *e.sha256 + "' is not 64 lowercase hex characters");
    });
    list.finish("damaged entries");
  }

  // The records of the signals other than pdq (local, embed, registered ones): each
  // must be one of the bank's signals, read as its signal reads it and compare with the
  // signal's first record (a damaged row is left out of the search, so it is named here).
  std::map<std::string, std::int64_t> items;  // in the rows each index takes
  {
    ProblemList list{P};
    std::set<std::string> foreign;
    std::map<std::string, std::string> first;
    m.store->scan_all_records([&](const std::string& name, std::int64_t id, std::string_view rec) {
      add_part(record_part(name), id, rec);
      const auto reg = m.registered.find(name);
      if (reg == m.registered.end()) {
        foreign.insert(name);
        return;
      }
      const Signal& sig = *reg->second.signal;
      auto why = sig.check_record(rec);
      if (why.empty()) {
        auto& sample = first[name];
        if (sample.empty()) sample = rec;
        why = sig.comparable(sample, rec);
      }
      if (!why.empty()) {
        list.add("entry " + std::to_string(id) + ": " + name + " record: " + why);
      } else {
        items[name] += sig.record_items(rec);
        bare.erase(id);  // a well-formed record of one of the bank's signals finds it
      }
    });
    list.finish("damaged signal records");
    ProblemList bare_list{P};
    for (const auto id : bare)
      bare_list.add("entry " + std::to_string(id) +
                    ": it has no PDQ hash, SHA-256, MD5 or signal record");
    bare_list.finish("entries with nothing to be found by");
    for (const auto& name : foreign)
      P.push_back("signal_rows holds records of '" + name +
                  "', which is not one of the bank's signals");
  }
  // Rows of any signal table that belong to no entry.
  for (auto& line : m.store->orphan_rows()) P.push_back(std::move(line));
  // Every entry made from an image has a row of each built-in signal the bank records: a
  // deleted row would silently take the entry out of that signal's search.
  for (const char* sig : {"local", "embed"}) {
    if (!m.config.has(sig)) continue;
    ProblemList list{P};
    for (const auto id : m.store->indexed_without(sig))
      list.add("entry " + std::to_string(id) + " was indexed from an image but has no " + sig +
               " row");
    list.finish(std::string("entries without a ") + sig + " row");
  }

  m.check_digests(digests, recomputed, rows, rep);

  // The index in use against the records.
  {
    std::shared_lock ilock(m.index_mu);
    if (m.index->size() != static_cast<std::size_t>(total - without_pdq))
      P.push_back("the PDQ index holds " + std::to_string(m.index->size()) +
                  " hashes but the bank has " + std::to_string(total - without_pdq) +
                  " entries with one");
    std::string why = compare_contents(*m.index, rows);
    if (why.empty()) why = verify_sample(*m.index, rows, m.config.pdq_threshold);
    if (!why.empty()) P.push_back("the PDQ index disagrees with the records: " + why);
  }

  // The cache file: a derived file, only a problem if it would be trusted while wrong.
  const auto cache = pdq_index_path(m.cache_base);
  std::error_code ec;
  if (fs::exists(cache, ec) && have_gen) {
    std::uint64_t cache_gen = 0;
    const auto cached = load_pdq_index(cache, &cache_gen);
    if (!cached) {
      rep.notes.push_back(
          "the index cache " + cache.string() +
          " is unreadable or damaged; it is rebuilt from the records at the next open");
    } else if (cache_gen < bank_gen) {
      rep.notes.push_back("the index cache is at generation " + std::to_string(cache_gen) +
                          ", the bank at " + std::to_string(bank_gen) +
                          ": it is rebuilt at the next open");
    } else if (cache_gen > bank_gen) {
      rep.notes.push_back("the index cache claims generation " + std::to_string(cache_gen) +
                          ", newer than the bank's " + std::to_string(bank_gen) +
                          " (bank restored from a backup?); it is ignored and rewritten");
    } else {
      std::string why = compare_contents(*cached, rows);
      if (why.empty()) why = verify_sample(*cached, rows, m.config.pdq_threshold);
      if (!why.empty())
        P.push_back("the index cache " + cache.string() +
                    " carries the bank's generation but disagrees with the records (" + why +
                    "); delete it to have it rebuilt");
    }
  }

  // The signal indexes' cache files (the local-feature layout): derived, checksummed and
  // refused at load when they do not fit, so any finding here is a note: the index is
  // rebuilt at its next search.
  for (const auto& [name, reg] : m.registered) {
    const auto file = signal_cache_path(m.cache_base, name);
    if (!have_gen || !fs::exists(file, ec)) continue;
    const std::string bytes = read_signal_cache(m.cache_base, name, bank_gen);
    if (bytes.empty()) {
      rep.notes.push_back("the " + name + " index cache " + file.string() +
                          " is damaged or of another generation; it is rebuilt at the next " +
                          name + " search");
    } else if (const std::string why = reg.signal->check_cache(bytes, items[name]); !why.empty()) {
      rep.notes.push_back("the " + name + " index cache " + file.string() +
                          " does not fit the records (" + why + "); it is rebuilt at the next " +
                          name + " search");
    }
  }

  snapshot->commit();
  rep.ok = P.empty();
  return rep;
}

}  // namespace hashwall
