// Search over learned embeddings (L2-normalised float vectors; similarity = inner product
// = cosine). FAISS IndexFlatIP while exhaustive search is cheap, IndexHNSWFlat beyond.
// Derived data: always rebuilt from the bank's records.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace faiss {
struct Index;
}

namespace hashwall {

struct EmbedHit {
  std::int64_t id;
  float similarity;
};

class EmbedIndex {
 public:
  // hnsw_min_entries: from this many entries an HNSW graph (M = 32) replaces the flat scan.
  EmbedIndex(int dim, std::size_t hnsw_min_entries = 200'000);
  ~EmbedIndex();
  EmbedIndex(const EmbedIndex&) = delete;
  EmbedIndex& operator=(const EmbedIndex&) = delete;

  int dim() const { return dim_; }
  // vector.size() must equal dim() (throws Error{Usage} otherwise).
  void add(std::int64_t id, std::span<const float> vector);
  std::size_t size() const { return ids_.size(); }
  std::string type() const;
  std::size_t memory_bytes() const;
  // Builds or extends the FAISS index; call after add() and before concurrent searches.
  void prepare();
  // Takes these entries out (ids it does not hold are ignored) and rebuilds the FAISS
  // index over the rest: searchable again when it returns.
  void remove(std::span<const std::int64_t> ids);
  // Up to k entries with similarity >= min_similarity, most similar first.
  std::vector<EmbedHit> search(std::span<const float> query, int k, float min_similarity) const;

 private:
  int dim_;
  std::size_t hnsw_min_;
  std::vector<float> vectors_;
  std::vector<std::int64_t> ids_;
  std::unique_ptr<faiss::Index> index_;
  std::size_t indexed_ = 0;
};

}  // namespace hashwall
