// The learned embedding as a Signal (signal/signal.hpp): its record is the L2-normalised
// vector the model computes (float32, native byte order, as format 2 stored it), its index
// an EmbedIndex, its decision a cosine-similarity threshold.
//
// One class serves two roles: the bank's instance (registered by the bank, no model)
// checks records, builds the index and decides; a command's instance carries the model it
// computes with (EmbedSignal(model)). A bank records which model made its vectors
// (BankConfig::embed_model) and the command checks it against its model (same_model).
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "embed/embedder.hpp"
#include "signal/signal.hpp"

namespace hashwall {

class EmbedSignal final : public Signal {
 public:
  explicit EmbedSignal(std::shared_ptr<const Embedder> model = nullptr);

  std::string name() const override { return "embed"; }
  std::string summary() const override;
  bool wants_colour() const override { return true; }
  // {"threshold": cosine similarity}: the model's calibrated threshold when there is one.
  SignalParams decision_defaults() const override;
  std::string validate(const SignalParams& decision) const override;
  // Throws Error{Usage} without a model.
  std::optional<SignalRecord> compute(const LoadedImage& image) const override;
  std::string check_record(std::string_view record) const override;
  std::string comparable(std::string_view stored, std::string_view record) const override;
  std::unique_ptr<SignalIndex> make_index() const override;

  const Embedder* model() const { return model_.get(); }

 private:
  std::shared_ptr<const Embedder> model_;
};

// Registers the bank's instance under "embed" (idempotent).
void register_embed_signal();

// A vector as its record, and back (empty for a record that is not whole floats).
SignalRecord embedding_record(std::span<const float> vector);
std::vector<float> embedding_values(std::string_view record);

// The decision's threshold ("%.6f" text, as banks record it), and back: nullopt when the
// text is not a number within -1..1. exact_threshold_text: the same text when it reads
// back as this very value, else all the digits (a caller's --embed-threshold).
std::string threshold_text(double threshold);
std::string exact_threshold_text(double threshold);
std::optional<double> embed_threshold_of(const SignalParams& decision);

// A similarity's margin past the threshold on the signals' shared scale:
// (s - t) / (1 - t), clipped to -1..1 (s = 1 gives 1, s = 2t - 1 gives -1).
double similarity_margin(double similarity, double threshold);

}  // namespace hashwall
