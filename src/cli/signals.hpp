// Which signals a command computes: the bank's (or, for a new bank, --signals), narrowed
// by --signals on queries, with the embedding model found and checked against the bank.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "bank/bank.hpp"
#include "embed/embed_signal.hpp"
#include "embed/embedder.hpp"
#include "image/load.hpp"
#include "match/fingerprint.hpp"

namespace hashwall::cli {

inline constexpr const char* kDefaultSignals = "pdq,local,embed,vpdq";
// The --signals help: the built-in signals, then one line per registered signal.
std::string signals_help();

// "pdq,local" -> {"pdq", "local"} in canonical order (built-ins, then registered
// signals); throws Error{Usage} on unknown names.
std::vector<std::string> parse_signals(const std::string& list);

// Loads --model, or when `model` is empty the model file named `bank_model` (a bank's
// recorded "<file name>@<sha256>"; empty: the shipped default), with Error{Usage} naming
// the places looked at when it is not found.
std::unique_ptr<Embedder> load_model(const std::string& model, const std::string& bank_model = "");

struct SignalSetup {
  std::vector<std::string> signals;  // what is computed (and may decide)
  std::shared_ptr<const Embedder> embedder;
  std::shared_ptr<const EmbedSignal> embed;  // with the embedder; in fingerprint.registered
  FingerprintOptions fingerprint;
  // Colour for the embedding, a larger decode for local features.
  void apply(LoadOptions& o) const { prepare_load(o, fingerprint); }
};

// For adding to `bank`: all the signals it records. For queries: those it records,
// narrowed to `only` when given (a signal the bank lacks is an error). Throws
// Error{Bank} when the bank's embeddings came from another model than the one found.
// `reuse`: an embedder already loaded for this bank (serve's query and add setups share one).
SignalSetup signal_setup(const Bank& bank, const std::vector<std::string>& only,
                         const std::string& model, bool for_query,
                         std::shared_ptr<const Embedder> reuse = nullptr);

// vPDQ's decision parameters from --vpdq-query-percent and --vpdq-entry-percent (those
// given only), over a bank's recorded ones or into a new bank's.
SignalParams vpdq_shares(std::optional<double> query_percent, std::optional<double> entry_percent);

// Settings of a new bank from --signals (empty: kDefaultSignals), --model and
// --min-inliers: the model's id and calibrated threshold are recorded when embed is on.
BankConfig new_bank_config(BankConfig base, const std::string& signals, const std::string& model,
                           std::optional<int> min_inliers);

}  // namespace hashwall::cli
