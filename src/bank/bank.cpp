// The bank: SQLite records (the truth) plus the derived indexes and their cache files.
// The on-disk format, and why it is so, is in docs/BANK_FORMAT.md. This file: opening and
// creating a bank, writes, look-ups and searches.
#include "bank/bank.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <limits>
#include <unordered_map>

#include "bank/bank_impl.hpp"

namespace hashwall {

const char* origin_name(Origin o) noexcept {
  return o == Origin::Imported ? "imported" : "indexed";
}

bool BankConfig::has(std::string_view signal) const {
  return std::find(signals.begin(), signals.end(), signal) != signals.end();
}

fs::path pdq_index_path(const fs::path& bank) { return fs::path(bank.string() + ".pdq-index"); }

Bank::Bank(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Bank::~Bank() {
  try {
    flush_index();
  } catch (...) {
    // A derived file: failing to write it costs a rebuild at the next open, nothing more.
  }
}

std::unique_ptr<Bank> Bank::open(const fs::path& path_in, OpenMode mode_in,
                                 const BankConfig& config_for_new_bank) {
  auto open_file = [&](const fs::path& path, OpenMode mode) -> std::unique_ptr<Bank> {
    std::error_code ec;
    const bool exists = fs::exists(path, ec);
    if (!exists && mode != OpenMode::Create) throw Error(ErrorKind::Bank, path.string(), kNoBank);
    if (exists && fs::is_directory(path, ec))
      throw Error(ErrorKind::Bank, path.string(), "not a hashwall bank: it is a directory");
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
    impl->mode = mode;
    impl->conn.path = path.string();
    int flags = SQLITE_OPEN_NOMUTEX;  // Impl::db_mu serialises all use of the connection
    flags |= mode == OpenMode::ReadOnly ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE;
    if (mode == OpenMode::Create) flags |= SQLITE_OPEN_CREATE;
    const int rc = sqlite3_open_v2(path.c_str(), &impl->conn.db, flags, nullptr);
    if (rc != SQLITE_OK) impl->conn.fail(rc, "cannot open the bank");
    sqlite3_extended_result_codes(impl->conn.db, 1);
    sqlite3_busy_timeout(impl->conn.db, kBusyTimeoutMs);

    std::lock_guard lock(impl->db_mu);
    // Look before writing anything: never turn someone else's database into WAL mode.
    const bool has_meta =
        impl->count("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'") >
        0;
    bool create = false;
    if (!has_meta) {
      if (mode != OpenMode::Create || impl->count("SELECT count(*) FROM sqlite_master") != 0)
        throw Error(ErrorKind::Bank, path.string(),
                    impl->count("SELECT count(*) FROM sqlite_master") == 0
                        ? "not a hashwall bank: an empty SQLite database"
                        : "not a hashwall bank: an SQLite database without a meta table");
      create = true;
    }
    if (mode != OpenMode::ReadOnly) {
      // WAL: readers (scans, the server) never block the writer, and vice versa.
      impl->conn.exec("PRAGMA journal_mode = WAL");
      // FULL: a commit is on disk before add() returns, and so before an index cache
      // labelled with the new generation can be written (docs/BANK_FORMAT.md).
      impl->conn.exec("PRAGMA synchronous = FULL");
    }
    if (create) impl->create_schema(config_for_new_bank);
    impl->read_config();
    impl->upgrade_if_old();
    impl->load_or_build_index();
    return std::unique_ptr<Bank>(new Bank(std::move(impl)));
  };
  std::error_code ec;
  if (mode_in != OpenMode::Create || fs::exists(path_in, ec)) return open_file(path_in, mode_in);
  // A new bank is made complete under a temporary name and then linked into place, so a
  // crash during creation never leaves an empty database where the bank should be.
  const fs::path dir = path_in.has_parent_path() ? path_in.parent_path() : fs::path(".");
  const fs::path tmp =
      dir / ("." + path_in.filename().string() + ".creating-" + std::to_string(::getpid()));
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(tmp.string() + suffix, ec);
  open_file(tmp, OpenMode::Create).reset();
  fs::remove(pdq_index_path(tmp), ec);
  bool created = ::link(tmp.c_str(), path_in.c_str()) == 0;
  if (!created && errno != EEXIST) {
    // Filesystems without hard links: a rename (which could replace a bank created by
    // another process in the same instant; link() above is the no-clobber path).
    if (::rename(tmp.c_str(), path_in.c_str()) != 0) {
      const int e = errno;
      fs::remove(tmp, ec);
      throw Error(ErrorKind::Io, path_in.string(),
                  std::string("cannot create the bank: ") + std::strerror(e));
    }
    created = true;
  }
  // Cache files left by an earlier bank of the same name describe other records; a new
  // bank starts at generation 0 again, so they must not be mistaken for its own.
  if (created)
    for (const auto& stale : {pdq_index_path(path_in), local_layout_path(path_in)})
      fs::remove(stale, ec);
  for (const char* suffix : {"", "-wal", "-shm", "-journal"}) fs::remove(tmp.string() + suffix, ec);
  return open_file(path_in, OpenMode::ReadWrite);
}

const fs::path& Bank::path() const { return impl_->path; }
const BankConfig& Bank::config() const { return impl_->config; }

AddResult Bank::add(std::span<const NewEntry> entries) {
  auto& m = *impl_;
  m.require_writable();
  std::lock_guard lock(m.db_mu);
  AddResult r;
  r.ids.reserve(entries.size());
  r.was_duplicate.reserve(entries.size());
  std::vector<std::int64_t> new_ids;
  std::vector<Hash256> new_hashes;
  std::vector<std::size_t> new_inputs;  // which input each new id came from
  std::uint64_t gen_before = 0;
  try {
    Transaction tx(m.conn, "BEGIN IMMEDIATE");
    gen_before = m.read_generation();
    const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
    // Rows inserted earlier in this transaction are visible to these look-ups, so a
    // duplicate within the batch is caught the same way as one already in the bank.
    Stmt by_sha(m.conn, "SELECT id FROM entries WHERE sha256 = ?1");
    // INDEXED BY: left to itself, SQLite walks the sha256 UNIQUE index over every
    // imported (NULL) row, which makes large imports quadratic.
    Stmt by_hash(m.conn,
                 "SELECT id FROM entries INDEXED BY entries_unhashed WHERE sha256 IS NULL AND "
                 "source = ?1 AND pdq = ?2 "
                 "AND origin = ?3 ORDER BY id LIMIT 1");
    Stmt insert(m.conn,
                "INSERT INTO entries(sha256, pdq, quality, label, source, origin, added_at) "
                "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    std::optional<Stmt> insert_local, insert_embed;
    if (m.signal_tables && m.config.has("local"))
      insert_local.emplace(
          m.conn,
          "INSERT INTO local_features(entry_id, keypoints, descriptors) VALUES(?1, ?2, ?3)");
    if (m.signal_tables && m.config.has("embed"))
      insert_embed.emplace(m.conn, "INSERT INTO embeddings(entry_id, vector) VALUES(?1, ?2)");
    std::optional<Stmt> insert_row;
    if (m.rows_table && !m.registered.empty())
      insert_row.emplace(m.conn,
                         "INSERT INTO signal_rows(signal, entry_id, record) VALUES(?1, ?2, ?3)");
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const NewEntry& e = entries[i];
      const auto where = [&] { return "entry " + std::to_string(i + 1) + " of the batch: "; };
      if (e.quality && (*e.quality < 0 || *e.quality > 100))
        throw Error(ErrorKind::Bank, m.conn.path,
                    where() + "quality " + std::to_string(*e.quality) + " is outside 0..100");
      std::optional<std::string> sha;
      if (e.sha256) {
        sha = lower(*e.sha256);
        if (!is_sha256_hex(*sha))
          throw Error(ErrorKind::Bank, m.conn.path,
                      where() + "'" + *e.sha256 + "' is not a SHA-256 (64 hex characters)");
      }
      std::optional<std::int64_t> existing;
      Stmt& look = sha ? by_sha : by_hash;
      look.reset();
      if (sha) {
        by_sha.bind(1, std::string_view(*sha));
      } else {
        by_hash.bind(1, std::string_view(e.source))
            .bind(2, e.pdq)
            .bind(3, std::string_view(origin_name(e.origin)));
      }
      if (look.step()) existing = look.i64(0);
      if (existing) {
        r.ids.push_back(*existing);
        r.was_duplicate.push_back(true);
        ++r.duplicates;
        continue;
      }
      insert.reset();
      if (sha)
        insert.bind(1, std::string_view(*sha));
      else
        insert.bind_null(1);
      insert.bind(2, e.pdq);
      if (e.quality)
        insert.bind(3, static_cast<std::int64_t>(*e.quality));
      else
        insert.bind_null(3);
      insert.bind(4, std::string_view(e.label))
          .bind(5, std::string_view(e.source))
          .bind(6, std::string_view(origin_name(e.origin)))
          .bind(7, now);
      insert.step();
      const std::int64_t id = sqlite3_last_insert_rowid(m.conn.db);
      if (insert_local && e.local) {
        const cv::Mat d = e.local->descriptors.isContinuous() ? e.local->descriptors
                                                              : e.local->descriptors.clone();
        if (d.rows != static_cast<int>(e.local->points.size()) ||
            (d.rows > 0 && d.cols != kOrbBytes))
          throw Error(ErrorKind::Bank, m.conn.path,
                      where() + "local features with mismatched descriptors");
        insert_local->reset();
        insert_local->bind(1, id)
            .bind_blob(2, encode_points(*e.local))
            .bind_blob(3, std::string_view(reinterpret_cast<const char*>(d.data), d.total()));
        insert_local->step();
      }
      if (insert_embed && !e.embedding.empty()) {
        if (m.embed_dim == 0) m.embed_dim = static_cast<int>(e.embedding.size());
        if (static_cast<int>(e.embedding.size()) != m.embed_dim)
          throw Error(ErrorKind::Bank, m.conn.path,
                      where() + "embedding of " + std::to_string(e.embedding.size()) +
                          " values, the bank holds " + std::to_string(m.embed_dim));
        insert_embed->reset();
        insert_embed->bind(1, id).bind_blob(2, float_blob(e.embedding));
        insert_embed->step();
      }
      if (insert_row)
        for (const auto& [name, record] : e.records) {
          const auto reg = m.registered.find(name);
          if (reg == m.registered.end()) continue;  // not one of the bank's signals
          if (const auto why = reg->second.signal->check_record(record); !why.empty())
            throw Error(ErrorKind::Bank, m.conn.path, where() + name + " record: " + why);
          insert_row->reset();
          insert_row->bind(1, std::string_view(name)).bind(2, id).bind_blob(3, record);
          insert_row->step();
        }
      r.ids.push_back(id);
      r.was_duplicate.push_back(false);
      ++r.added;
      new_ids.push_back(id);
      new_hashes.push_back(e.pdq);
      new_inputs.push_back(i);
    }
    if (r.added > 0) m.set_meta("generation", std::to_string(gen_before + 1));
    tx.commit();
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(ErrorKind::Bank, m.conn.path, e.what());
  }
  if (r.added == 0) return r;

  const bool others_wrote = gen_before != m.generation;
  const auto total = m.count("SELECT count(*) FROM entries");
  bool type_changes;
  {
    std::shared_lock read(m.index_mu);
    type_changes = m.index->type() != m.type_for(total);
  }
  if (others_wrote || type_changes) {
    // Our index misses someone else's rows, or "auto" just crossed to multihash.
    m.rebuild_index();
  } else {
    std::unique_lock write(m.index_mu);
    m.index->add(new_ids, new_hashes);
    m.generation = gen_before + 1;
    m.dirty = true;
  }
  // Extend the other signals' indexes when they were current; otherwise the next search
  // rebuilds them.
  {
    std::unique_lock write(m.signals_mu);
    if (m.local_index && m.local_gen == gen_before) {
      for (std::size_t k = 0; k < new_ids.size(); ++k)
        if (const auto& f = entries[new_inputs[k]].local) m.local_index->add(new_ids[k], *f);
      m.local_index->prepare();
      m.local_gen = gen_before + 1;
      m.local_dirty = m.local_index->type() != "flat";
    }
    if (m.embed_index && m.embed_gen == gen_before) {
      bool ok = true;
      for (std::size_t k = 0; k < new_ids.size() && ok; ++k) {
        const auto& v = entries[new_inputs[k]].embedding;
        if (v.empty()) continue;
        if (static_cast<int>(v.size()) != m.embed_index->dim())
          ok = false;
        else
          m.embed_index->add(new_ids[k], v);
      }
      if (ok) {
        m.embed_index->prepare();
        m.embed_gen = gen_before + 1;
      } else {
        m.embed_index.reset();
      }
    }
    for (auto& [name, reg] : m.registered) {
      if (!reg.index || reg.gen != gen_before) continue;
      try {
        for (std::size_t k = 0; k < new_ids.size(); ++k) {
          const auto& recs = entries[new_inputs[k]].records;
          if (const auto it = recs.find(name); it != recs.end())
            reg.index->add(new_ids[k], it->second);
        }
        reg.gen = gen_before + 1;
      } catch (const std::exception&) {
        reg.index.reset();  // rebuilt from the records at the next search
      }
    }
  }
  return r;
}

std::int64_t Bank::remove_ids(std::span<const std::int64_t> ids) {
  return impl_->remove_where([&] {
    Stmt s(impl_->conn, "DELETE FROM entries WHERE id = ?1 RETURNING id");
    std::vector<std::int64_t> gone;
    for (const auto id : ids) {
      s.reset();
      s.bind(1, id);
      while (s.step()) gone.push_back(s.i64(0));
    }
    return gone;
  });
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
    Transaction tx(m.conn, "BEGIN IMMEDIATE");
    m.set_meta("index_type", type);
    if (multihash_min_entries)
      m.set_meta("multihash_min_entries", std::to_string(*multihash_min_entries));
    tx.commit();
  }
  m.config.index_type = type;
  if (multihash_min_entries) m.config.multihash_min_entries = *multihash_min_entries;
  m.rebuild_index();  // marks the cache out of date: written at flush_index() or close
}

std::int64_t Bank::remove_label(const std::string& label) {
  return impl_->remove_where([&] {
    Stmt s(impl_->conn, "DELETE FROM entries WHERE label = ?1 RETURNING id");
    s.bind(1, std::string_view(label));
    std::vector<std::int64_t> gone;
    while (s.step()) gone.push_back(s.i64(0));
    return gone;
  });
}

std::int64_t Bank::remove_sha256(const std::string& sha256_hex) {
  const std::string sha = lower(sha256_hex);
  return impl_->remove_where([&] {
    Stmt s(impl_->conn, "DELETE FROM entries WHERE sha256 = ?1 RETURNING id");
    s.bind(1, std::string_view(sha));
    std::vector<std::int64_t> gone;
    while (s.step()) gone.push_back(s.i64(0));
    return gone;
  });
}

std::optional<Entry> Bank::get(std::int64_t id) const {
  std::lock_guard lock(impl_->db_mu);
  Stmt s(impl_->conn,
         (std::string("SELECT ") + kEntryColumns + " FROM entries WHERE id = ?1").c_str());
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return entry_from_row(impl_->conn, s);
}

std::optional<Entry> Bank::find_sha256(const std::string& sha256_hex) const {
  std::lock_guard lock(impl_->db_mu);
  Stmt s(impl_->conn,
         (std::string("SELECT ") + kEntryColumns + " FROM entries WHERE sha256 = ?1").c_str());
  s.bind(1, std::string_view(lower(sha256_hex)));
  if (!s.step()) return std::nullopt;
  return entry_from_row(impl_->conn, s);
}

void Bank::for_each(const std::function<bool(const Entry&)>& fn) const {
  // Page through by id so that fn runs without the lock held (it may call get(), or
  // take its time while worker threads search).
  const std::string sql = std::string("SELECT ") + kEntryColumns +
                          " FROM entries WHERE id > ?1 ORDER BY id LIMIT " + std::to_string(kChunk);
  std::int64_t after = std::numeric_limits<std::int64_t>::min();
  for (;;) {
    std::vector<Entry> page;
    {
      std::lock_guard lock(impl_->db_mu);
      Stmt s(impl_->conn, sql.c_str());
      s.bind(1, after);
      while (s.step()) page.push_back(entry_from_row(impl_->conn, s));
    }
    for (const auto& e : page)
      if (!fn(e)) return;
    if (page.size() < kChunk) return;
    after = page.back().id;
  }
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
  // One row per entry: its smallest distance, and the first query that reached it.
  std::unordered_map<std::int64_t, PdqMatch> best;
  for (std::size_t q = 0; q < per_query.size(); ++q) {
    for (const auto& h : per_query[q]) {
      auto [it, inserted] = best.try_emplace(h.id, PdqMatch{h.id, h.distance, static_cast<int>(q)});
      if (!inserted && h.distance < it->second.distance)
        it->second = PdqMatch{h.id, h.distance, static_cast<int>(q)};
    }
  }
  std::vector<PdqMatch> out;
  out.reserve(best.size());
  for (const auto& [id, m] : best) out.push_back(m);
  std::sort(out.begin(), out.end(), [](const PdqMatch& a, const PdqMatch& b) {
    return a.distance != b.distance ? a.distance < b.distance : a.id < b.id;
  });
  return out;
}

std::vector<LocalMatch> Bank::search_local(const LocalFeatures& query,
                                           const LocalVerifyParams& params) const {
  auto& m = *impl_;
  std::vector<LocalMatch> out;
  if (!m.config.has("local") || query.size() == 0) return out;
  m.make_fresh(m.local_index, m.local_gen, [&](std::uint64_t* g) { return m.build_local(g); });
  std::shared_lock read(m.signals_mu);
  return m.local_index->search(query, params);
}

std::vector<EmbedMatch> Bank::search_embed(std::span<const float> query, int k,
                                           float min_similarity) const {
  auto& m = *impl_;
  std::vector<EmbedMatch> out;
  if (!m.config.has("embed") || query.empty()) return out;
  m.make_fresh(m.embed_index, m.embed_gen, [&](std::uint64_t* g) { return m.build_embed(g); });
  std::shared_lock read(m.signals_mu);
  if (static_cast<int>(query.size()) != m.embed_index->dim() && m.embed_index->size() > 0)
    throw Error(ErrorKind::Usage, m.conn.path,
                "the query embedding has " + std::to_string(query.size()) + " values, the bank's " +
                    std::to_string(m.embed_index->dim()));
  for (const auto& h : m.embed_index->search(query, k, min_similarity))
    out.push_back({h.id, h.similarity});
  return out;
}

std::vector<SignalMatch> Bank::search_signal(const std::string& name, const SignalQuery& query,
                                             double min_margin, std::size_t k) const {
  auto& m = *impl_;
  const auto it = m.registered.find(name);
  if (it == m.registered.end() || query.forms.empty() || k == 0) return {};
  auto& reg = it->second;
  m.make_fresh(reg.index, reg.gen, [&](std::uint64_t* g) { return m.build_registered(name, g); });
  std::shared_lock read(m.signals_mu);
  return reg.index->search(query, min_margin, k);
}

void Bank::flush_index() {
  auto& m = *impl_;
  std::lock_guard lock(m.db_mu);
  try {
    m.save_index_locked();
    m.save_local_layout();
  } catch (...) {
    // A read-only bank may sit where we cannot write; its cache is a courtesy.
    if (m.mode != OpenMode::ReadOnly) throw;
  }
}

}  // namespace hashwall
