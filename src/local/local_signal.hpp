// The local features as a Signal (signal/signal.hpp): ORB keypoints verified by a RANSAC
// similarity fit. Its record is local_record() of an entry's features (the bank keeps it in
// the local_features table, as format 2 did), its query forms the features of the image as
// given and of its mirror image (form 1), its index a LocalIndex (votes, then RANSAC), its
// decision a number of geometric inliers.
#pragma once

#include <memory>
#include <string>

#include "local/local_features.hpp"
#include "local/local_index.hpp"
#include "signal/signal.hpp"

namespace hashwall {

class LocalSignal final : public Signal {
 public:
  explicit LocalSignal(LocalParams params = {}, LocalIndexParams index = {});

  std::string name() const override { return "local"; }
  std::string summary() const override;
  int min_decode_side() const override { return params_.min_decode_side; }
  // How entries' features are computed (local_entry_params). A bank that recorded others
  // refuses new entries but still answers queries (a query's features are its own).
  SignalParams compute_params() const override { return local_entry_params(params_); }
  SignalParams decision_defaults() const override;  // {"min_inliers": "12"}
  std::string validate(const SignalParams& decision) const override;
  std::optional<SignalRecord> compute(const LoadedImage& image) const override;
  // The image as given, then its mirror image: binary descriptors are not mirror-invariant.
  // The mirror image is tried only when the photo as given found nothing, and a search
  // verifies a bounded set of candidates (LocalIndexParams::max_candidates).
  SignalQuery compute_query(const LoadedImage& image) const override;
  bool tries_forms_in_turn() const override { return true; }
  bool returns_all_candidates() const override { return true; }
  std::string check_record(std::string_view record) const override;
  std::unique_ptr<SignalIndex> make_index() const override;
  std::int64_t record_items(std::string_view record) const override;  // keypoints
  std::string check_cache(std::string_view cache, std::int64_t items) const override;

  const LocalParams& params() const { return params_; }

 private:
  LocalParams params_;
  LocalIndexParams index_;
};

// Registers the bank's instance under "local" (idempotent).
void register_local_signal();

// A query's features as one of its forms, and back (floats kept exactly, unlike a stored
// record's 16-bit points; the mirror flag kept). Throws Error{Usage} for bytes that are not
// such a form.
std::string local_query_form(const LocalFeatures& f);
LocalFeatures decode_local_query_form(std::string_view form);

// The decision's inliers, and back: nullopt unless an integer within 3..100000.
std::optional<int> min_inliers_of(const SignalParams& decision);

// Inliers n past the threshold m on the signals' shared scale: (n - m) / n when n >= m,
// else (n - m) / m (n = 2m gives 0.5, n -> inf gives 1, n = 0 gives -1).
double inliers_margin(int inliers, int min_inliers);

}  // namespace hashwall
