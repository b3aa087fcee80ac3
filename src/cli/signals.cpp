#include "cli/signals.hpp"

#include <algorithm>
#include <cstdio>

#include "core/error.hpp"
#include "signal/signal.hpp"

namespace hashwall::cli {

std::string signals_help() {
  register_builtin_signals();
  // Every signal says what it finds itself.
  std::string out = "Signals:";
  for (const char* name : kBuiltinSignals)
    if (const Signal* s = find_signal(name)) out += "\n  " + s->name() + ": " + s->summary();
  for (const Signal* s : registered_signals()) out += "\n  " + s->name() + ": " + s->summary();
  return out +
         "\nA bank records the signals it was built with; PDQ lists imported from other\n"
         "organisations carry PDQ only.";
}

std::vector<std::string> parse_signals(const std::string& list) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at <= list.size()) {
    auto comma = list.find(',', at);
    if (comma == std::string::npos) comma = list.size();
    std::string s = list.substr(at, comma - at);
    s.erase(0, s.find_first_not_of(' '));
    s.erase(s.find_last_not_of(' ') + 1);
    if (!s.empty()) {
      if (const auto why = unknown_signal({s}); !why.empty())
        throw Error(ErrorKind::Usage, "", why + " in --signals");
      if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
    }
    at = comma + 1;
  }
  if (out.empty()) throw Error(ErrorKind::Usage, "", "--signals names no signal");
  return canonical_signals(out);  // as banks record them
}

std::unique_ptr<Embedder> load_model(const std::string& model, const std::string& bank_model) {
  std::filesystem::path p = model;
  std::string name = kDefaultModel;
  if (p.empty() && !bank_model.empty()) name = bank_model.substr(0, bank_model.rfind('@'));
  if (p.empty()) p = default_model_path(name);
  if (p.empty())
    throw Error(ErrorKind::Usage, "",
                "the embed signal needs its model: models/" + name +
                    " was not found next to the executable; pass --model FILE, set HASHWALL_MODEL, "
                    "or leave "
                    "embed out of --signals");
  return Embedder::load(p);
}

SignalSetup signal_setup(const Bank& bank, const std::vector<std::string>& only,
                         const std::string& model, bool for_query,
                         std::shared_ptr<const Embedder> reuse) {
  SignalSetup s;
  const BankConfig& c = bank.config();
  for (const auto& sig : only)
    if (!c.has(sig)) {
      std::string have;
      for (const auto& h : c.signals) have += (have.empty() ? "" : ",") + h;
      throw Error(ErrorKind::Usage, bank.path().string(),
                  "the bank has no '" + sig + "' signal (it was built with " + have + ")");
    }
  for (const auto& sig : c.signals)
    if (only.empty() || std::find(only.begin(), only.end(), sig) != only.end())
      s.signals.push_back(sig);
  const auto has = [&](const char* x) {
    return std::find(s.signals.begin(), s.signals.end(), x) != s.signals.end();
  };
  s.fingerprint.for_query = for_query;
  if (has("embed")) {
    s.embedder = reuse ? std::move(reuse)
                       : std::shared_ptr<const Embedder>(load_model(model, c.embed_model));
    if (!same_model(c.embed_model, *s.embedder))
      throw Error(ErrorKind::Bank, bank.path().string(),
                  "the bank's embeddings were made by model " + c.embed_model + ", not by " +
                      s.embedder->model_id() +
                      "; use that model (--model) or leave embed out (--signals pdq,local)");
    s.embed = std::make_shared<EmbedSignal>(s.embedder);
  }
  // The bank's instances compute (they need nothing more), except embed: its model.
  // fingerprint() skips pdq, which it computes itself as the decode mode asks.
  for (const auto& name : s.signals)
    if (name == "embed")
      s.fingerprint.registered.push_back(s.embed.get());
    else if (const Signal* sig = find_signal(name))
      s.fingerprint.registered.push_back(sig);
  return s;
}

SignalParams vpdq_shares(std::optional<double> query_percent, std::optional<double> entry_percent) {
  const auto text = [](double p) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", p);
    return std::string(buf);
  };
  SignalParams out;
  if (query_percent) out["query_percent"] = text(*query_percent);
  if (entry_percent) out["entry_percent"] = text(*entry_percent);
  return out;
}

BankConfig new_bank_config(BankConfig cfg, const std::string& signals, const std::string& model,
                           std::optional<int> min_inliers) {
  cfg.signals = parse_signals(signals.empty() ? kDefaultSignals : signals);
  if (min_inliers) cfg.local_min_inliers = *min_inliers;
  if (cfg.has("embed")) {
    const auto m = load_model(model);
    cfg.embed_model = m->model_id();
    cfg.embed_threshold = m->config().threshold;
  }
  return cfg;
}

}  // namespace hashwall::cli
