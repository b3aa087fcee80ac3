// PDQ as a Signal (signal/signal.hpp): Meta's 256-bit perceptual hash (hash/pdq.hpp) with
// its quality. Its record is the hash's 32 bytes and one quality byte (pdq_record); the
// bank keeps both in the entry's own row (entries.pdq, entries.quality), as every format
// has. Its query forms are the hashes of the 8 dihedral transforms of the image (form i is
// Dihedral i), its index a PdqIndex (pdq/pdq_index.hpp), its decision a Hamming distance
// and a quality gate, its evidence the distance and the transform that came nearest.
//
// The bank holds PDQ's index itself (bank/indexes.cpp): it is loaded at open, checked whole
// against the bank's PDQ digest and cached in "<bank>.pdq-index" (docs/BANK_FORMAT.md);
// searches go through pdq_search, the same code PdqSignalIndex runs.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hash/hash256.hpp"
#include "hash/pdq.hpp"
#include "pdq/pdq_index.hpp"
#include "signal/signal.hpp"

namespace hashwall {

class PdqSignal final : public Signal {
 public:
  // How images are prepared before hashing (hash/pdq.hpp): only compute() uses it.
  explicit PdqSignal(PdqPreprocess preprocess = PdqPreprocess::Fast) : preprocess_(preprocess) {}

  std::string name() const override { return "pdq"; }
  std::string summary() const override;
  // {"threshold": "31", "min_quality": "50"}; a caller may add "dihedral": "no" (only the
  // image as given is compared, not its 7 rotated and flipped forms). A bank records
  // threshold and min_quality in its meta (pdq_threshold, min_quality).
  SignalParams decision_defaults() const override;
  std::string validate(const SignalParams& decision) const override;
  std::optional<SignalRecord> compute(const LoadedImage& image) const override;
  SignalQuery compute_query(const LoadedImage& image) const override;  // 8 dihedral forms
  // A search returns every entry within reach, whatever k: the index's range search is
  // exact and cheap, and the matcher skips entries the quality gate keeps out.
  bool returns_all_candidates() const override { return true; }
  std::string check_record(std::string_view record) const override;
  std::unique_ptr<SignalIndex> make_index() const override;

  // Every hit reports its PDQ distance, whichever signal found it.
  bool compares_records() const override { return true; }
  std::optional<SignalMatch> compare(const SignalQuery& query, std::string_view record,
                                     const SignalParams& decision) const override;
  // The quality gate (pdq/README: a quality below 50 is not trusted): a query or an entry
  // whose quality is below min_quality may not let PDQ decide. An entry without a quality
  // (imported from a list that carried none) was vetted by whoever shared it and passes.
  bool may_decide(const SignalQuery& query, const SignalParams& decision) const override;
  bool may_decide_for(std::string_view record, const SignalParams& decision) const override;

 private:
  PdqPreprocess preprocess_;
};

// Registers the bank's instance under "pdq" (idempotent).
void register_pdq_signal();

// The record: 32 bytes of hash, then the quality (0..100, clamped; 255 for none).
inline constexpr std::size_t kPdqRecordBytes = 33;
SignalRecord pdq_record(const Hash256& hash, std::optional<int> quality);
// The hash and the quality of a record or query form (nullopt: not one).
std::optional<Hash256> pdq_record_hash(std::string_view record);
std::optional<int> pdq_record_quality(std::string_view record);
// A query's forms: the dihedral hashes in Dihedral order, each with the image's quality.
SignalQuery pdq_query(const PdqDihedralResult& hashes);

// The decision's values (nullopt when absent or out of range: threshold 0..256,
// min_quality 0..100, dihedral "yes" or "no", default yes).
std::optional<int> pdq_threshold_of(const SignalParams& decision);
std::optional<int> pdq_min_quality_of(const SignalParams& decision);
bool pdq_dihedral_of(const SignalParams& decision);

// Distance d past the threshold T on the signals' shared scale: (T - d) / T, clipped to
// -1..1 (T = 0: 1 for d = 0, else -1).
double pdq_margin(int distance, int threshold);

// Every entry of `index` whose margin under `decision` is at least min_margin (near
// misses: down to twice the threshold, at most 255), one per entry with its nearest form,
// nearest first, ties by id. Evidence: {"distance", "variant"}.
std::vector<SignalMatch> pdq_search(const PdqIndex& index, const SignalQuery& query,
                                    const SignalParams& decision, double min_margin);

// A PdqIndex on the SignalIndex interface (what PdqSignal::make_index returns).
class PdqSignalIndex final : public SignalIndex {
 public:
  explicit PdqSignalIndex(std::unique_ptr<PdqIndex> index) : index_(std::move(index)) {}
  std::string type() const override { return index_->type(); }
  void add(std::int64_t id, std::string_view record) override;
  void remove(std::span<const std::int64_t> ids) override { index_->remove(ids); }
  std::vector<SignalMatch> search(const SignalQuery& query, const SignalParams& decision,
                                  double min_margin, std::size_t k) const override;
  std::size_t size() const override { return index_->size(); }
  std::size_t memory_bytes() const override { return index_->memory_bytes(); }
  const PdqIndex& hashes() const { return *index_; }

 private:
  std::unique_ptr<PdqIndex> index_;
};

}  // namespace hashwall
