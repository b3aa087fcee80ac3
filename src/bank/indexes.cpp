// The bank's derived indexes: the PDQ index and its cache file, the local-feature and
// embedding indexes built from the records, and the local layout cache
// (docs/BANK_FORMAT.md). All are rebuilt from the records when missing or stale.
#include <fstream>
#include <iterator>

#include "bank/bank_impl.hpp"
#include "core/file.hpp"

namespace hashwall {

namespace bank_detail {

fs::path local_layout_path(const fs::path& bank) {
  return fs::path(bank.string() + ".local-index");
}

constexpr char kLocalMagic[8] = {'H', 'W', 'L', 'O', 'C', 'I', 'X', '1'};

// The local-feature IVF layout cache: magic, u64 generation, the layout, u64 FNV-1a of
// all before it (docs/BANK_FORMAT.md). Empty when missing, damaged or of another
// generation.
std::string read_local_layout(const fs::path& bank, std::uint64_t generation) {
  std::ifstream in(local_layout_path(bank), std::ios::binary);
  if (!in) return {};
  std::string b((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (b.size() < 24 || b.compare(0, 8, kLocalMagic, 8) != 0) return {};
  const auto u64 = [&](std::size_t at) { return get_le(b.data() + at); };
  if (u64(b.size() - 8) != fnv1a(reinterpret_cast<const std::uint8_t*>(b.data()), b.size() - 8))
    return {};
  if (u64(8) != generation) return {};
  return b.substr(16, b.size() - 24);
}

void write_local_layout(const fs::path& bank, std::uint64_t generation, const std::string& layout) {
  std::string out(kLocalMagic, 8);
  put_le(out, generation);
  out += layout;
  put_le(out, fnv1a(reinterpret_cast<const std::uint8_t*>(out.data()), out.size()));
  write_file_atomically(local_layout_path(bank), out);
}

}  // namespace bank_detail

std::unique_ptr<PdqIndex> Bank::Impl::build_index(std::uint64_t* gen) const {
  Transaction read(conn, "BEGIN");
  *gen = read_generation();
  const auto total = count("SELECT count(*) FROM entries");
  auto idx = make_pdq_index(type_for(total));
  Stmt s(conn, "SELECT id, pdq FROM entries ORDER BY id");
  // One add for the whole table: the multihash index builds its posting lists once.
  std::vector<std::int64_t> ids;
  std::vector<Hash256> hashes;
  ids.reserve(static_cast<std::size_t>(total));
  hashes.reserve(static_cast<std::size_t>(total));
  while (s.step()) {
    const auto h = hash_from_blob(s.blob(1));
    if (!h) continue;
    ids.push_back(s.i64(0));
    hashes.push_back(*h);
  }
  idx->add(ids, hashes);
  read.commit();
  return idx;
}

void Bank::Impl::rebuild_index() const {
  std::uint64_t gen = 0;
  auto fresh = build_index(&gen);
  std::unique_lock lock(index_mu);
  index = std::move(fresh);
  generation = gen;
  dirty = true;
}

void Bank::Impl::refresh_if_changed() const {
  const auto v = read_data_version();
  if (v == data_version) return;
  data_version = v;
  if (read_generation() != generation) rebuild_index();
}

void Bank::Impl::load_or_build_index() {
  std::uint64_t cached_gen = 0;
  auto cached = load_pdq_index(pdq_index_path(path), &cached_gen);
  {
    Transaction read(conn, "BEGIN");
    const auto gen = read_generation();
    Stmt s(conn, "SELECT count(*), coalesce(sum(length(pdq) = 32), 0) FROM entries");
    s.step();
    const auto all = s.i64(0), valid = s.i64(1);
    read.commit();
    if (cached && cached_gen == gen && cached->type() == type_for(all) &&
        cached->size() == static_cast<std::size_t>(valid)) {
      index = std::move(cached);
      generation = gen;
      dirty = false;
      data_version = read_data_version();
      return;
    }
  }
  rebuild_index();
  data_version = read_data_version();
}

void Bank::Impl::save_index_locked() {
  if (!dirty) return;
  // Another connection committed since our index was built: our picture is older than
  // the bank, so do not label a cache with it; the next open rebuilds.
  if (read_generation() != generation) return;
  std::shared_lock lock(index_mu);
  index->save(pdq_index_path(path), generation);
  dirty = false;
}

std::unique_ptr<LocalIndex> Bank::Impl::build_local(std::uint64_t* gen) const {
  auto idx = std::make_unique<LocalIndex>();
  if (!signal_tables) return idx;
  Transaction read(conn, "BEGIN");
  *gen = read_generation();
  Stmt s(conn, "SELECT entry_id, keypoints, descriptors FROM local_features ORDER BY entry_id");
  while (s.step()) {
    try {
      idx->add(s.i64(0), decode_local(s.blob(1), s.blob(2), conn.path));
    } catch (const Error&) {
      // Damaged rows are left out here; check() names them.
    }
  }
  read.commit();
  // The IVF layout of this generation from the cache file, when there is one; else the
  // full build (the slow part: every row assigned to a list).
  const bool restored = idx->restore_layout(read_local_layout(path, *gen));
  if (!restored) idx->prepare();
  local_dirty = !restored && idx->type() != "flat";
  return idx;
}

void Bank::Impl::save_local_layout() {
  std::shared_lock read(signals_mu);
  if (!local_dirty || !local_index || local_gen != read_generation()) return;
  const std::string layout = local_index->layout();
  if (!layout.empty()) write_local_layout(path, local_gen, layout);
  local_dirty = false;
}

std::unique_ptr<EmbedIndex> Bank::Impl::build_embed(std::uint64_t* gen) const {
  Transaction read(conn, "BEGIN");
  *gen = read_generation();
  std::unique_ptr<EmbedIndex> idx;
  if (signal_tables) {
    Stmt s(conn, "SELECT entry_id, vector FROM embeddings ORDER BY entry_id");
    while (s.step()) {
      const auto b = s.blob(1);
      if (b.empty() || b.size() % sizeof(float) != 0) continue;
      const int dim = static_cast<int>(b.size() / sizeof(float));
      if (!idx) idx = std::make_unique<EmbedIndex>(dim);
      if (dim != idx->dim()) continue;
      std::vector<float> v(static_cast<std::size_t>(dim));
      std::memcpy(v.data(), b.data(), b.size());
      idx->add(s.i64(0), v);
    }
  }
  read.commit();
  if (!idx) idx = std::make_unique<EmbedIndex>(std::max(embed_dim, 1));
  idx->prepare();
  return idx;
}

std::unique_ptr<SignalIndex> Bank::Impl::build_registered(const std::string& name,
                                                          std::uint64_t* gen) const {
  const auto& reg = registered.at(name);
  auto idx = reg.signal->make_index(config.signal_params.at(name));
  Transaction read(conn, "BEGIN");
  *gen = read_generation();
  if (rows_table) {
    Stmt s(conn, "SELECT entry_id, record FROM signal_rows WHERE signal = ?1 ORDER BY entry_id");
    s.bind(1, std::string_view(name));
    while (s.step()) {
      try {
        idx->add(s.i64(0), s.blob(1));
      } catch (const std::exception&) {
        // Damaged rows are left out here; check() names them.
      }
    }
  }
  read.commit();
  return idx;
}

}  // namespace hashwall
