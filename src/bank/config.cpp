// The configuration a bank records in meta (docs/BANK_FORMAT.md, "Meta keys"): what a new
// bank writes, and reading it back, registered signals' parameters included.
#include <openssl/sha.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>

#include "bank/bank_impl.hpp"
#include "embed/embed_signal.hpp"
#include "local/local_signal.hpp"

#ifndef HASHWALL_VERSION
#define HASHWALL_VERSION "unknown"
#endif

namespace hashwall {

// A bank's name for its peers (meta bank_id): 128 random bits, hex. A sync keeps it with
// its checkpoint, so a peer's bank replaced or rebuilt under the same address is noticed.
std::string new_bank_id() {
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 4; ++i) {
    const std::uint32_t v = rd();
    for (int k = 0; k < 8; ++k) out += kHex[(v >> (4 * k)) & 15];
  }
  return out;
}

namespace {

// A built-in signal's decision as a bank's config() lists it (read_config), from the fields.
SignalParams builtin_decision(const std::string& name, const BankConfig& c) {
  if (name == "pdq")
    return {{"min_quality", std::to_string(c.min_quality)},
            {"threshold", std::to_string(c.pdq_threshold)}};
  if (name == "local") return {{"min_inliers", std::to_string(c.local_min_inliers)}};
  return {{"threshold", threshold_text(c.embed_threshold)}};
}

// A registered signal's decision parameters: its defaults, overridden by those given.
SignalParams decision_params(const Signal& s, const BankConfig& cfg) {
  SignalParams p = s.decision_defaults();
  if (const auto it = cfg.signal_params.find(s.name()); it != cfg.signal_params.end())
    for (const auto& [k, v] : it->second) p[k] = v;
  return p;
}

}  // namespace

std::string bank_detail::validate_new_config(const BankConfig& c) {
  if (auto why = validate_signals(c.signals); !why.empty()) return why;
  for (const auto& [name, params] : c.signal_params) {
    const Signal* s = find_signal(name);
    if (!s || !c.has(name))
      return "parameters given for '" + name + "', which is not one of the bank's signals";
    // A config copied from a bank's config() lists the built-in signals' decisions too:
    // accepted where they say what the fields say.
    if (is_builtin_signal(name) && params != builtin_decision(name, c))
      return "the built-in signal '" + name +
             "' takes its settings from BankConfig's fields (pdq_threshold, min_quality, "
             "local_min_inliers, embed_threshold), not from signal_params";
  }
  for (const auto& name : c.signals)
    if (const Signal* s = find_signal(name); s && !is_builtin_signal(name))
      if (auto why = s->validate(decision_params(*s, c)); !why.empty())
        return "signal '" + name + "': " + why;
  return {};
}

void Bank::Impl::read_config() {
  const auto int_meta = [&](const char* key, std::int64_t lo, std::int64_t hi) {
    const auto s = meta(key);
    const auto n = s ? parse_int(*s) : std::nullopt;
    if (!n || *n < lo || *n > hi) bad_meta(key);
    return *n;
  };
  config.pdq_threshold = static_cast<int>(int_meta("pdq_threshold", 0, 256));
  config.min_quality = static_cast<int>(int_meta("min_quality", 0, 100));
  // PDQ's decision (pdq/pdq_signal.hpp), under the keys every format has had.
  config.signal_params["pdq"] = {{"min_quality", std::to_string(config.min_quality)},
                                 {"threshold", std::to_string(config.pdq_threshold)}};
  config.multihash_min_entries = int_meta("multihash_min_entries", 0, INT64_MAX);
  const auto t = meta("index_type");
  if (!t || !valid_index_type(*t)) bad_meta("index_type");
  config.index_type = *t;
  read_generation();  // validates it
  // Version-1 banks predate these keys: PDQ only.
  if (const auto sg = meta("signals")) {
    config.signals = split_signals(*sg);
    for (const auto& name : config.signals)
      if (!is_builtin_signal(name) && !find_signal(name))
        throw Error(ErrorKind::Bank, where,
                    "the bank records the signal '" + name +
                        "', which this hashwall does not have (it has: " + known_signals() + ")");
    if (!validate_signals(config.signals).empty()) bad_meta("signals");
  }
  // Local features: entries computed as this build computes them, or no more entries
  // (queries stay fine: a query's features are its own). Banks from before format 3 did
  // not record them.
  if (config.has("local"))
    if (const auto text = meta(compute_key("local"))) {
      const auto recorded = parse_params(*text);
      if (!recorded) bad_meta(compute_key("local").c_str());
      if (*recorded != local_entry_params())
        local_params_mismatch = "the bank's local features were computed with " + *text +
                                ", this hashwall computes them with " +
                                params_text(local_entry_params()) +
                                "; adding entries would mix two kinds in one bank (build a new "
                                "bank for new entries)";
    }
  // Registered signals: records computed as this build computes them, and the decision
  // the bank was built with.
  for (const auto& name : config.signals) {
    const Signal* s = find_signal(name);
    if (!s || is_builtin_signal(name)) continue;  // embed: below, under its format-2 keys
    const auto key = compute_key(name);
    const auto recorded_text = meta(key);
    const auto recorded = recorded_text ? parse_params(*recorded_text) : std::nullopt;
    if (!recorded) bad_meta(key.c_str());
    if (*recorded != s->compute_params())
      throw Error(ErrorKind::Bank, where,
                  "the bank's '" + name + "' records were computed with " + *recorded_text +
                      ", this hashwall computes them with " + params_text(s->compute_params()) +
                      "; build a new bank for this version (its records would not compare)");
    const auto dkey = decision_key(name);
    const auto dtext = meta(dkey);
    const auto decision = dtext ? parse_params(*dtext) : std::nullopt;
    if (!decision || !s->validate(*decision).empty()) bad_meta(dkey.c_str());
    config.signal_params[name] = *decision;
    registered[name].signal = s;
  }
  if (meta("local_min_inliers"))
    config.local_min_inliers = static_cast<int>(int_meta("local_min_inliers", 3, 100000));
  if (config.has("local")) {
    // On the Signal interface (local/local_signal.hpp); its decision is the inlier count.
    config.signal_params["local"] = {{"min_inliers", std::to_string(config.local_min_inliers)}};
    registered["local"].signal = find_signal("local");
  }
  if (const auto m = meta("embed_model")) config.embed_model = *m;
  if (const auto t2 = meta("embed_threshold")) {
    char* end = nullptr;
    config.embed_threshold = std::strtod(t2->c_str(), &end);
    if (end == t2->c_str() || *end != '\0' ||
        !(config.embed_threshold >= -1 && config.embed_threshold <= 1))
      bad_meta("embed_threshold");
  }
  if (config.has("embed")) {
    if (config.embed_model.empty()) bad_meta("embed_model");
    // On the Signal interface (embed/embed_signal.hpp); its decision is the threshold.
    config.signal_params["embed"] = {{"threshold", threshold_text(config.embed_threshold)}};
    registered["embed"].signal = find_signal("embed");
  }
}

std::string bank_detail::settings_digest(
    const std::vector<std::string>& signals,
    const std::function<std::optional<std::string>(const std::string&)>& meta) {
  std::vector<std::string> keys = {"created_at",     "pdq_threshold",     "min_quality",
                                   "signals",        "local_min_inliers", "embed_model",
                                   "embed_threshold"};
  for (const auto& s : signals) {
    keys.push_back(compute_key(s));
    keys.push_back(decision_key(s));
  }
  std::string text;
  for (const auto& k : keys) {
    const auto v = meta(k);
    text += k + (v ? "=" + *v : " absent") + "\n";
  }
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), d);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : d) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> bank_detail::initial_meta(
    const BankConfig& cfg, const Digester& digester) {
  std::vector<std::pair<std::string, std::string>> m;
  m.emplace_back("created_at", std::to_string(static_cast<std::int64_t>(std::time(nullptr))));
  m.emplace_back("created_by", std::string("hashwall ") + HASHWALL_VERSION);
  m.emplace_back("bank_id", new_bank_id());
  m.emplace_back("generation", "0");
  m.emplace_back("signals", join_signals(cfg.signals));
  m.emplace_back("local_min_inliers", std::to_string(cfg.local_min_inliers));
  if (cfg.has("local")) m.emplace_back(compute_key("local"), params_text(local_entry_params()));
  for (const auto& name : cfg.signals)
    if (const Signal* s = find_signal(name); s && !is_builtin_signal(name)) {
      m.emplace_back(compute_key(name), params_text(s->compute_params()));
      m.emplace_back(decision_key(name), params_text(decision_params(*s, cfg)));
    }
  if (cfg.has("embed")) {
    m.emplace_back("embed_model", cfg.embed_model);
    m.emplace_back("embed_threshold", threshold_text(cfg.embed_threshold));
  }
  m.emplace_back("pdq_threshold", std::to_string(cfg.pdq_threshold));
  m.emplace_back("min_quality", std::to_string(cfg.min_quality));
  m.emplace_back("index_type", cfg.index_type);
  m.emplace_back("multihash_min_entries", std::to_string(cfg.multihash_min_entries));
  // The seal over the settings that decide (check() compares it).
  const auto digest = settings_digest(cfg.signals, [&](const std::string& key) {
    for (const auto& [k, v] : m)
      if (k == key) return std::optional<std::string>(v);
    return std::optional<std::string>();
  });
  m.emplace_back("settings_sha256", digest);
  // No entries yet: both digests are zero. A keyed bank names its key and seals both.
  const Digest none;
  m.emplace_back("records_digest", none.hex());
  m.emplace_back("pdq_digest", none.hex());
  if (digester.keyed()) {
    m.emplace_back("seal_key_id", digester.key_id());
    m.emplace_back("seal", digester.seal(digest, none));
  }
  return m;
}

}  // namespace hashwall
