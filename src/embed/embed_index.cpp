#include "embed/embed_index.hpp"

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>

#include <algorithm>

#include "core/error.hpp"

namespace hashwall {

namespace {
using faiss_idx = faiss::Index::idx_t;
// HNSW: 32 links per node is FAISS's usual choice for ~100-d vectors; efSearch 64 keeps
// recall near 1 for the few nearest neighbours the matcher asks for.
constexpr int kHnswM = 32;
constexpr int kEfSearch = 64;
}  // namespace

EmbedIndex::EmbedIndex(int dim, std::size_t hnsw_min_entries)
    : dim_(dim), hnsw_min_(hnsw_min_entries) {}
EmbedIndex::~EmbedIndex() = default;

void EmbedIndex::add(std::int64_t id, std::span<const float> v) {
  if (static_cast<int>(v.size()) != dim_)
    throw Error(ErrorKind::Usage, "",
                "embedding of " + std::to_string(v.size()) + " values, the index holds " +
                    std::to_string(dim_));
  vectors_.insert(vectors_.end(), v.begin(), v.end());
  ids_.push_back(id);
}

std::string EmbedIndex::type() const { return size() >= hnsw_min_ ? "hnsw32" : "flat-ip"; }

std::size_t EmbedIndex::memory_bytes() const {
  std::size_t b = vectors_.capacity() * sizeof(float) + ids_.capacity() * sizeof(std::int64_t);
  b += indexed_ * static_cast<std::size_t>(dim_) * sizeof(float);  // FAISS's own copy
  if (dynamic_cast<const faiss::IndexHNSWFlat*>(index_.get()))
    b += indexed_ * (kHnswM * 2 * sizeof(int) + 16);
  return b;
}

void EmbedIndex::prepare() {
  const bool want_hnsw = size() >= hnsw_min_;
  const bool is_hnsw = dynamic_cast<const faiss::IndexHNSWFlat*>(index_.get()) != nullptr;
  if (!index_ || want_hnsw != is_hnsw) {
    if (want_hnsw) {
      auto h = std::make_unique<faiss::IndexHNSWFlat>(dim_, kHnswM, faiss::METRIC_INNER_PRODUCT);
      h->hnsw.efSearch = kEfSearch;
      index_ = std::move(h);
    } else {
      index_ = std::make_unique<faiss::IndexFlatIP>(dim_);
    }
    indexed_ = 0;
  }
  if (indexed_ < size()) {
    index_->add(static_cast<faiss_idx>(size() - indexed_),
                vectors_.data() + indexed_ * static_cast<std::size_t>(dim_));
    indexed_ = size();
  }
}

void EmbedIndex::remove(std::span<const std::int64_t> ids) {
  std::vector<std::int64_t> gone(ids.begin(), ids.end());
  std::sort(gone.begin(), gone.end());
  const auto dim = static_cast<std::size_t>(dim_);
  std::size_t kept = 0;
  for (std::size_t row = 0; row < ids_.size(); ++row) {
    if (std::binary_search(gone.begin(), gone.end(), ids_[row])) continue;
    if (kept != row) {
      ids_[kept] = ids_[row];
      std::copy_n(vectors_.begin() + static_cast<std::ptrdiff_t>(row * dim), dim,
                  vectors_.begin() + static_cast<std::ptrdiff_t>(kept * dim));
    }
    ++kept;
  }
  if (kept == ids_.size()) return;
  ids_.resize(kept);
  vectors_.resize(kept * dim);
  // FAISS's flat and HNSW indexes cannot drop rows in place: built again (what a removal
  // cost before, from the records).
  index_.reset();
  indexed_ = 0;
  prepare();
}

std::vector<EmbedHit> EmbedIndex::search(std::span<const float> q, int k,
                                         float min_similarity) const {
  std::vector<EmbedHit> out;
  if (!index_ || indexed_ == 0 || k <= 0 || static_cast<int>(q.size()) != dim_) return out;
  const auto kk =
      static_cast<faiss_idx>(std::min<std::size_t>(static_cast<std::size_t>(k), indexed_));
  std::vector<float> sim(static_cast<std::size_t>(kk));
  std::vector<faiss_idx> lab(static_cast<std::size_t>(kk));
  index_->search(1, q.data(), kk, sim.data(), lab.data());
  for (faiss_idx i = 0; i < kk; ++i) {
    const auto at = static_cast<std::size_t>(i);
    if (lab[at] < 0 || sim[at] < min_similarity) continue;
    out.push_back({ids_[static_cast<std::size_t>(lab[at])], sim[at]});
  }
  return out;
}

}  // namespace hashwall
