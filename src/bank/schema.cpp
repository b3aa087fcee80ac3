// The SQLite store's schema, the configuration a bank records in meta, and the in-place
// upgrades from older format versions (docs/BANK_FORMAT.md).
#include <cstdio>
#include <cstdlib>
#include <ctime>

#include "bank/bank_impl.hpp"

#ifndef HASHWALL_VERSION
#define HASHWALL_VERSION "unknown"
#endif

namespace hashwall {

namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE meta(
  key   TEXT PRIMARY KEY,
  value TEXT
);
CREATE TABLE entries(
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  sha256   TEXT UNIQUE
           CHECK (sha256 IS NULL OR (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*')),
  pdq      BLOB NOT NULL CHECK (typeof(pdq) = 'blob' AND length(pdq) = 32),
  quality  INTEGER CHECK (quality IS NULL OR (typeof(quality) = 'integer' AND quality BETWEEN 0 AND 100)),
  label    TEXT NOT NULL DEFAULT '',
  source   TEXT NOT NULL DEFAULT '',
  origin   TEXT NOT NULL CHECK (origin IN ('indexed', 'imported')),
  added_at INTEGER NOT NULL
);
CREATE INDEX entries_label ON entries(label);
CREATE INDEX entries_unhashed ON entries(source, pdq) WHERE sha256 IS NULL;
)sql";

constexpr const char* kSignalSchema = R"sql(
CREATE TABLE IF NOT EXISTS local_features(
  entry_id    INTEGER PRIMARY KEY,
  keypoints   BLOB NOT NULL,
  descriptors BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings(
  entry_id INTEGER PRIMARY KEY,
  vector   BLOB NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entries_delete_signals AFTER DELETE ON entries BEGIN
  DELETE FROM local_features WHERE entry_id = old.id;
  DELETE FROM embeddings WHERE entry_id = old.id;
END;
)sql";

// Format 3: the records of registered signals (signal/signal.hpp), one row per signal and
// entry, in the signal's own serialised form.
constexpr const char* kRowsSchema = R"sql(
CREATE TABLE IF NOT EXISTS signal_rows(
  signal   TEXT NOT NULL,
  entry_id INTEGER NOT NULL,
  record   BLOB NOT NULL,
  PRIMARY KEY (signal, entry_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS signal_rows_entry ON signal_rows(entry_id);
CREATE TRIGGER IF NOT EXISTS entries_delete_signal_rows AFTER DELETE ON entries BEGIN
  DELETE FROM signal_rows WHERE entry_id = old.id;
END;
)sql";

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
  }
  for (const auto& name : c.signals)
    if (const Signal* s = find_signal(name))
      if (auto why = s->validate(decision_params(*s, c)); !why.empty())
        return "signal '" + name + "': " + why;
  return {};
}

void Bank::Impl::read_config() {
  const auto fv = meta("format_version");
  const auto v = fv ? parse_int(*fv) : std::nullopt;
  if (!v)
    throw Error(ErrorKind::Bank, conn.path, "not a hashwall bank: meta has no format_version");
  if (*v > kFormatVersion)
    throw Error(ErrorKind::Bank, conn.path,
                "bank format version " + std::to_string(*v) +
                    " is newer than this hashwall understands (" + std::to_string(kFormatVersion) +
                    "); upgrade hashwall");
  if (*v < 1) bad_meta("format_version");
  format_version = static_cast<int>(*v);
  const auto int_meta = [&](const char* key, std::int64_t lo, std::int64_t hi) {
    const auto s = meta(key);
    const auto n = s ? parse_int(*s) : std::nullopt;
    if (!n || *n < lo || *n > hi) bad_meta(key);
    return *n;
  };
  config.pdq_threshold = static_cast<int>(int_meta("pdq_threshold", 0, 256));
  config.min_quality = static_cast<int>(int_meta("min_quality", 0, 100));
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
        throw Error(ErrorKind::Bank, conn.path,
                    "the bank records the signal '" + name +
                        "', which this hashwall does not have (it has: " + known_signals() + ")");
    if (!validate_signals(config.signals).empty()) bad_meta("signals");
  }
  // Registered signals: records computed as this build computes them, and the decision
  // the bank was built with.
  for (const auto& name : config.signals) {
    const Signal* s = find_signal(name);
    if (!s) continue;
    const auto key = compute_key(name);
    const auto recorded_text = meta(key);
    const auto recorded = recorded_text ? parse_params(*recorded_text) : std::nullopt;
    if (!recorded) bad_meta(key.c_str());
    if (*recorded != s->compute_params())
      throw Error(ErrorKind::Bank, conn.path,
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
  if (const auto m = meta("embed_model")) config.embed_model = *m;
  if (const auto t2 = meta("embed_threshold")) {
    char* end = nullptr;
    config.embed_threshold = std::strtod(t2->c_str(), &end);
    if (end == t2->c_str() || *end != '\0' ||
        !(config.embed_threshold >= -1 && config.embed_threshold <= 1))
      bad_meta("embed_threshold");
  }
  if (config.has("embed") && config.embed_model.empty()) bad_meta("embed_model");
  signal_tables =
      count("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'local_features'") >
      0;
  rows_table =
      count("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'signal_rows'") > 0;
}

void Bank::Impl::upgrade_if_old() {
  if (format_version >= kFormatVersion || mode == OpenMode::ReadOnly) return;
  // Each step only adds tables (IF NOT EXISTS): the records already there keep their form,
  // so the bank answers exactly as before.
  Transaction tx(conn, "BEGIN IMMEDIATE");
  conn.exec(kSignalSchema);  // 1 -> 2
  conn.exec(kRowsSchema);    // 2 -> 3
  set_meta("format_version", std::to_string(kFormatVersion));
  tx.commit();
  format_version = kFormatVersion;
  signal_tables = true;
  rows_table = true;
}

void Bank::Impl::create_schema(const BankConfig& cfg) {
  Transaction tx(conn, "BEGIN IMMEDIATE");
  // Someone may have created it between our look and our lock.
  if (count("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'") == 0) {
    if (count("SELECT count(*) FROM sqlite_master") != 0)
      throw Error(ErrorKind::Bank, conn.path,
                  "not a hashwall bank: an SQLite database without a meta table");
    conn.exec(kSchema);
    conn.exec(kSignalSchema);
    conn.exec(kRowsSchema);
    set_meta("format_version", std::to_string(kFormatVersion));
    set_meta("created_at", std::to_string(static_cast<std::int64_t>(std::time(nullptr))));
    set_meta("created_by", std::string("hashwall ") + HASHWALL_VERSION);
    set_meta("generation", "0");
    set_meta("signals", join_signals(cfg.signals));
    set_meta("local_min_inliers", std::to_string(cfg.local_min_inliers));
    for (const auto& name : cfg.signals)
      if (const Signal* s = find_signal(name)) {
        set_meta(compute_key(name), params_text(s->compute_params()));
        set_meta(decision_key(name), params_text(decision_params(*s, cfg)));
      }
    if (cfg.has("embed")) {
      set_meta("embed_model", cfg.embed_model);
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6f", cfg.embed_threshold);
      set_meta("embed_threshold", buf);
    }
    set_meta("pdq_threshold", std::to_string(cfg.pdq_threshold));
    set_meta("min_quality", std::to_string(cfg.min_quality));
    set_meta("index_type", cfg.index_type);
    set_meta("multihash_min_entries", std::to_string(cfg.multihash_min_entries));
  }
  tx.commit();
}

}  // namespace hashwall
