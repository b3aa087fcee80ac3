// hashwall init / stats / remove / reindex / check / migrate.
#include <chrono>
#include <cstdio>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "cli/signals.hpp"
#include "core/error.hpp"

namespace hashwall::cli {

namespace {

struct AdminArgs {
  std::string bank;
  BankConfig config;
  std::string signals, model;
  std::optional<int> min_inliers;
  std::optional<std::int64_t> multihash_from;
  bool json_out = false;
  std::vector<std::int64_t> ids;
  std::vector<std::string> labels;
  std::vector<std::string> sha256s;
  std::string seal_key_file;
  std::string reason;
};

bool bank_exists(const std::string& where) {
  if (!is_postgresql_location(where)) return fs::exists(where);
  try {
    Bank::open(where, OpenMode::ReadOnly).reset();
    return true;
  } catch (const Error& e) {
    if (e.reason().starts_with("no bank here")) return false;
    throw;
  }
}

int run_init(const AdminArgs& a) {
  if (bank_exists(a.bank))
    throw Error(ErrorKind::Usage, a.bank,
                "already exists; its settings are fixed when it is created");
  const auto bank = Bank::open(a.bank, OpenMode::Create,
                               new_bank_config(a.config, a.signals, a.model, a.min_inliers),
                               read_seal_key(a.seal_key_file));
  const BankConfig& c = bank->config();
  std::string sig;
  for (const auto& s : c.signals) sig += (sig.empty() ? "" : ",") + s;
  std::fprintf(stderr, "created bank %s: signals %s, PDQ threshold %d, min quality %d, index %s\n",
               a.bank.c_str(), sig.c_str(), c.pdq_threshold, c.min_quality, c.index_type.c_str());
  return kExitOk;
}

// The local index holds each descriptor twice (its rows for verification, FAISS's copy),
// a row -> entry map and the keypoint coordinates (src/local/local_index.cpp).
std::uintmax_t local_memory_estimate(const BankStats::Registered& s) {
  return static_cast<std::uintmax_t>(s.items) *
             (2 * kOrbBytes + sizeof(std::int64_t) + 2 * sizeof(float)) +
         static_cast<std::uintmax_t>(s.entries) * 96;
}

int run_stats(const AdminArgs& a) {
  const auto bank = Bank::open(a.bank, OpenMode::ReadOnly);
  const BankStats s = bank->stats();
  const BankConfig& c = bank->config();
  if (a.json_out) {
    json j;
    j["bank"] = a.bank;
    j["format_version"] = s.format_version;
    j["seal_key_id"] = bank->seal_key_id();
    j["entries"] = s.entries;
    j["indexed"] = s.indexed;
    j["imported"] = s.imported;
    j["labels"] = s.labels;
    j["low_quality"] = s.low_quality;
    j["disabled"] = s.disabled;
    j["flood_quarantined"] = s.flood_quarantined;
    j["signals"] = s.signals;
    // The signals whose records sit beside the entry row (local, embed, registered ones).
    for (const auto& r : s.registered) {
      json params = json::object();
      for (const auto& [k, v] : r.params) params[k] = v;
      j[r.name] = {
          {"entries", r.entries},
          {"params", params},
          {"db_bytes", r.db_bytes},
          {"db_bytes_per_entry",
           r.entries ? static_cast<double>(r.db_bytes) / static_cast<double>(r.entries) : 0.0}};
      if (r.name == "embed") {
        j[r.name]["model"] = c.embed_model;
        j[r.name]["threshold"] = c.embed_threshold;
      }
      if (r.name == "local") {
        j[r.name]["keypoints"] = r.items;
        j[r.name]["min_inliers"] = c.local_min_inliers;
        j[r.name]["memory_bytes_estimate"] = local_memory_estimate(r);
        j[r.name]["memory_bytes_per_entry"] =
            r.entries
                ? static_cast<double>(local_memory_estimate(r)) / static_cast<double>(r.entries)
                : 0.0;
      }
    }
    j["pdq_threshold"] = c.pdq_threshold;
    j["min_quality"] = c.min_quality;
    j["index_type"] = s.index_type;
    j["index_config"] = c.index_type;
    j["generation"] = s.generation;
    j["db_bytes"] = s.db_bytes;
    j["index_cache_bytes"] = s.index_cache_bytes;
    j["index_memory_bytes"] = s.index_memory_bytes;
    j["bytes_per_entry"] =
        s.entries ? static_cast<double>(s.db_bytes) / static_cast<double>(s.entries) : 0.0;
    std::cout << dump_json(j, 2) << '\n';
  } else {
    std::cout << "bank            " << a.bank << " (format " << s.format_version << ")\n"
              << "entries         " << s.entries << " (" << s.indexed << " indexed, " << s.imported
              << " imported)\n"
              << "labels          " << s.labels << "\n"
              << "low quality     " << s.low_quality << " (below " << c.min_quality
              << ", never matched by PDQ)\n"
              << "disabled        " << s.disabled << " (" << s.flood_quarantined
              << " quarantined by the flood guard: 'hashwall log', 'hashwall enable')\n"
              << "signals         pdq (threshold " << c.pdq_threshold << ", min quality "
              << c.min_quality << ")\n";
    for (const auto& r : s.registered) {
      if (r.name == "local") {
        std::cout << "                local: " << r.entries << " entries, " << r.items
                  << " keypoints, match at >= " << c.local_min_inliers << " inliers; "
                  << (r.entries ? r.db_bytes / static_cast<std::uintmax_t>(r.entries) : 0)
                  << " bytes/entry on disk, ~"
                  << (r.entries ? local_memory_estimate(r) / static_cast<std::uintmax_t>(r.entries)
                                : 0)
                  << " bytes/entry in memory when loaded\n";
        continue;
      }
      std::string params = r.name == "embed" ? "model " + c.embed_model : "";
      for (const auto& [k, v] : r.params) params += (params.empty() ? "" : ", ") + k + " " + v;
      std::cout << "                " << r.name << ": " << r.entries << " entries"
                << (params.empty() ? "" : " (" + params + ")") << "; "
                << (r.entries ? r.db_bytes / static_cast<std::uintmax_t>(r.entries) : 0)
                << " bytes/entry on disk\n";
    }
    std::cout << "index           " << s.index_type << " (config: " << c.index_type << "), "
              << s.index_memory_bytes / 1024 << " KiB in memory\n"
              << "on disk         " << s.db_bytes
              << (is_postgresql_location(a.bank) ? " bytes PostgreSQL" : " bytes SQLite");
    if (s.entries)
      std::cout << " (" << s.db_bytes / static_cast<std::uintmax_t>(s.entries) << " bytes/entry)";
    std::cout << ", " << s.index_cache_bytes << " bytes index cache\n";
  }
  return kExitOk;
}

int run_remove(const AdminArgs& a) {
  if (a.ids.empty() && a.labels.empty() && a.sha256s.empty())
    throw Error(ErrorKind::Usage, "", "say what to remove: --id, --label or --sha256");
  auto bank = Bank::open(a.bank, OpenMode::ReadWrite, {}, read_seal_key(a.seal_key_file));
  std::int64_t removed = 0;
  const Actor who = cli_actor(a.reason);
  if (!a.ids.empty()) removed += bank->remove_ids(a.ids, who);
  for (const auto& l : a.labels) removed += bank->remove_label(l, who);
  for (const auto& s : a.sha256s) removed += bank->remove_sha256(s, who);
  bank->flush_index();
  if (a.json_out)
    std::cout << dump_json(json{{"removed", removed}, {"bank_entries", bank->stats().entries}}, 2)
              << '\n';
  else
    std::fprintf(stderr, "removed %lld entr%s\n", static_cast<long long>(removed),
                 removed == 1 ? "y" : "ies");
  return kExitOk;
}

int run_reindex(const AdminArgs& a) {
  auto bank = Bank::open(a.bank, OpenMode::ReadWrite);
  const std::string was = bank->stats().index_type, was_config = bank->config().index_type;
  const auto t0 = std::chrono::steady_clock::now();
  bank->set_index(a.config.index_type, a.multihash_from);
  bank->flush_index();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const BankStats s = bank->stats();
  const double per =
      s.entries ? static_cast<double>(s.index_memory_bytes) / static_cast<double>(s.entries) : 0.0;
  if (a.json_out) {
    std::cout << dump_json(json{{"bank", a.bank},
                                {"index_config", bank->config().index_type},
                                {"index_type", s.index_type},
                                {"previous_index_config", was_config},
                                {"previous_index_type", was},
                                {"multihash_min_entries", bank->config().multihash_min_entries},
                                {"entries", s.entries},
                                {"seconds", secs},
                                {"index_memory_bytes", s.index_memory_bytes},
                                {"memory_bytes_per_entry", per}},
                           2)
              << '\n';
  } else {
    std::fprintf(stderr,
                 "%s: PDQ index %s (config %s; was %s, config %s), %lld entries, built in %.2f s, "
                 "%.1f bytes/entry in memory\n",
                 a.bank.c_str(), s.index_type.c_str(), bank->config().index_type.c_str(),
                 was.c_str(), was_config.c_str(), static_cast<long long>(s.entries), secs, per);
  }
  return kExitOk;
}

int run_check(const AdminArgs& a) {
  const auto bank = Bank::open(a.bank, OpenMode::ReadOnly, {}, read_seal_key(a.seal_key_file));
  const CheckReport r = bank->check();
  if (a.json_out) {
    std::cout << dump_json(json{{"bank", a.bank},
                                {"ok", r.ok},
                                {"problems", r.problems},
                                {"notes", r.notes},
                                {"seal_key_id", bank->seal_key_id()}},
                           2)
              << '\n';
  } else {
    for (const auto& p : r.problems) std::cout << "problem: " << p << '\n';
    for (const auto& n : r.notes) std::cout << "note: " << n << '\n';
    std::cout << a.bank << ": " << (r.ok ? "ok" : "DAMAGED") << " (" << bank->stats().entries
              << " entries)\n";
  }
  return r.ok ? kExitOk : kExitError;
}

struct MigrateArgs {
  std::string from, to, seal_key_file;
  bool json_out = false;
};

int run_migrate(const MigrateArgs& a) {
  const auto started = std::chrono::steady_clock::now();
  Progress progress("migrate", 0, !a.json_out);
  const MigrateReport rep = migrate_bank(a.from, a.to, [&](std::int64_t done, std::int64_t) {
    progress.update(static_cast<std::size_t>(done));
  });
  progress.finish();
  // Both sides checked whole (records, checksums, digests, seal with its key), and the
  // digests over every record compared: equal digests, equal banks.
  const std::string key = read_seal_key(a.seal_key_file);
  const auto source = Bank::open(a.from, OpenMode::ReadOnly, {}, key);
  const auto target = Bank::open(a.to, OpenMode::ReadOnly, {}, key);
  const CheckReport from_check = source->check(), to_check = target->check();
  const auto st_from = source->stats(), st_to = target->stats();
  std::vector<std::string> problems;
  for (const auto& p : from_check.problems) problems.push_back(rep.from + ": " + p);
  for (const auto& p : to_check.problems) problems.push_back(rep.to + ": " + p);
  if (st_from.entries != st_to.entries || st_from.generation != st_to.generation)
    problems.push_back("the new bank holds " + std::to_string(st_to.entries) +
                       " entries at generation " + std::to_string(st_to.generation) + ", the old " +
                       std::to_string(st_from.entries) + " at " +
                       std::to_string(st_from.generation));
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (a.json_out) {
    std::cout << dump_json(json{{"from", rep.from},
                                {"to", rep.to},
                                {"entries", rep.entries},
                                {"records", rep.records},
                                {"digests", rep.digests},
                                {"generation", rep.generation},
                                {"ok", problems.empty()},
                                {"problems", problems},
                                {"seconds", seconds}},
                           2)
              << '\n';
  } else {
    for (const auto& p : problems) std::cout << "problem: " << p << '\n';
    std::cout << "migrated " << rep.entries << " entries (" << rep.records
              << " signal records) from " << rep.from << " to " << rep.to << " in "
              << format_duration(seconds)
              << "; check of both banks: " << (problems.empty() ? "ok" : "FAILED") << '\n';
  }
  return problems.empty() ? kExitOk : kExitError;
}

}  // namespace

void register_admin(CLI::App& app, int& exit_code) {
  {
    auto a = std::make_shared<MigrateArgs>();
    auto* cmd = app.add_subcommand(
        "migrate", "Copy a bank into a new one in another store (SQLite <-> PostgreSQL)");
    cmd->add_option("--from", a->from, "The bank to copy: a file or a postgresql:// address")
        ->required();
    cmd->add_option("--to", a->to,
                    "Where the new bank goes: a file or a postgresql:// address (must hold no "
                    "bank yet; a PostgreSQL database must exist)")
        ->required();
    add_seal_key_option(cmd, a->seal_key_file,
                        "verifies both banks' checksums and seal with it after the copy");
    cmd->add_flag("--json", a->json_out, "Print the result as JSON");
    cmd->footer(
        "Every entry keeps its id, every signal's records, the settings, checksums and seal, and\n"
        "the generation: the new bank answers every query as the old one. The copy reads one\n"
        "snapshot of the source (which may stay in use) and writes in one transaction; until it\n"
        "commits the new bank is marked unfinished and nothing opens it. Afterwards both banks\n"
        "are checked whole. A running 'serve' keeps its bank: point it at the new one and\n"
        "restart it. The password of a PostgreSQL bank goes in ~/.pgpass or PGPASSFILE, never in\n"
        "the address (docs/DEPLOY.md).\n\n"
        "Examples:\n"
        "  hashwall migrate --from cases.db --to postgresql://hashwall@db.internal/hashwall\n"
        "  hashwall migrate --from postgresql://hashwall@db.internal/hashwall --to copy.db "
        "--json\n\n"
        "Exit codes: 0 copied and both banks check ok, 2 error (the target holds a bank, a\n"
        "store is unreachable, or a check failed).");
    cmd->callback([a, &exit_code] { exit_code = run_migrate(*a); });
  }
  {
    auto a = std::make_shared<AdminArgs>();
    auto* cmd = app.add_subcommand("init", "Create an empty bank with chosen settings");
    cmd->add_option("-b,--bank", a->bank, std::string(kBankHelp) + " to create")
        ->required()
        ->envname("HASHWALL_BANK");
    cmd->add_option("--pdq-threshold", a->config.pdq_threshold,
                    "PDQ match distance recorded in the bank")
        ->capture_default_str()
        ->check(CLI::Range(0, 256));
    cmd->add_option("--min-quality", a->config.min_quality,
                    "Minimum PDQ quality for a match, on both sides")
        ->capture_default_str()
        ->check(CLI::Range(0, 100));
    cmd->add_option("--index", a->config.index_type,
                    "PDQ search index: flat (exact scan, 36 B/entry), multihash (exact, "
                    "sub-linear, fastest, ~100 B/entry), compact (exact, sub-linear, ~62 B/entry: "
                    "the large-bank choice on little memory), auto (flat below --multihash-from "
                    "entries, multihash from there)")
        ->capture_default_str()
        ->check(CLI::IsMember({"auto", "flat", "multihash", "compact"}));
    cmd->add_option("--multihash-from", a->config.multihash_min_entries,
                    "With --index auto: entries from which multihash is used")
        ->capture_default_str();
    cmd->add_option(
        "--signals", a->signals,
        std::string("Signals the bank's entries carry (default: ") + kDefaultSignals + ")");
    cmd->add_option("--model", a->model,
                    "Embedding model (default: the shipped models/hashwall-embed-v1.onnx)");
    cmd->add_option("--min-inliers", a->min_inliers,
                    "Geometric inliers a local-feature match needs (default " +
                        std::to_string(kLocalMinInliers) + ")")
        ->check(CLI::Range(3, 100000));
    cmd->footer(
        "A bank records the settings that built it, so it is never queried with other ones by\n"
        "accident ('query --threshold' still overrides for one query, and says so in its output).\n"
        "'index' and 'import' create a bank with the defaults when it does not exist.\n\n"
        "With --seal-key, every entry's checksum is keyed and the bank carries a seal over its\n"
        "settings and records: whoever holds the key (a partner you share the bank with) can\n"
        "verify with 'check --seal-key' that nobody without it changed the bank. Writing to it\n"
        "then needs the key too. Make one with: (umask 077; head -c 32 /dev/urandom | base64 "
        "> bank.key)\n\n"
        "Examples:\n  hashwall init --bank strict.db --pdq-threshold 24 --index multihash\n"
        "  hashwall init --bank shared.db --seal-key bank.key\n\n"
        "Exit codes: 0 created, 2 error (e.g. the file exists).");
    add_seal_key_option(cmd, a->seal_key_file, "seals the new bank with it");
    cmd->callback([a, &exit_code] { exit_code = run_init(*a); });
  }
  {
    auto a = std::make_shared<AdminArgs>();
    auto* cmd = app.add_subcommand("stats", "Show what a bank holds and how it is configured");
    cmd->add_option("-b,--bank", a->bank, kBankHelp)->required()->envname("HASHWALL_BANK");
    cmd->add_flag("--json", a->json_out, "Print one JSON document");
    cmd->footer("Example:\n  hashwall stats --bank cases.db --json\n\nExit codes: 0 ok, 2 error.");
    cmd->callback([a, &exit_code] { exit_code = run_stats(*a); });
  }
  {
    auto a = std::make_shared<AdminArgs>();
    auto* cmd = app.add_subcommand("remove", "Remove entries by id, label or SHA-256");
    cmd->add_option("-b,--bank", a->bank, kBankHelp)->required()->envname("HASHWALL_BANK");
    cmd->add_option("--id", a->ids, "Entry id (repeatable)");
    cmd->add_option("--label", a->labels, "Every entry with this label (repeatable)");
    cmd->add_option("--sha256", a->sha256s,
                    "The entry indexed from the file with this SHA-256 (repeatable)");
    cmd->add_option("--reason", a->reason, "Why, for the audit log ('hashwall log')");
    add_seal_key_option(cmd, a->seal_key_file, "needed when the bank is sealed with one");
    cmd->add_flag("--json", a->json_out, "Print the result as JSON");
    cmd->footer(
        "Examples:\n  hashwall remove --bank cases.db --id 12 --id 13\n"
        "  hashwall remove --bank cases.db --label case-17\n\nExit codes: 0 done (even if nothing "
        "matched), 2 error.");
    cmd->callback([a, &exit_code] { exit_code = run_remove(*a); });
  }
  {
    auto a = std::make_shared<AdminArgs>();
    auto* cmd = app.add_subcommand(
        "reindex", "Change a bank's PDQ search index type and rebuild it (records untouched)");
    cmd->add_option("-b,--bank", a->bank, kBankHelp)->required()->envname("HASHWALL_BANK");
    cmd->add_option(
           "--index", a->config.index_type,
           "flat, multihash, compact or auto (see 'hashwall init --help' for what each costs)")
        ->required()
        ->check(CLI::IsMember({"auto", "flat", "multihash", "compact"}));
    cmd->add_option(
           "--multihash-from", a->multihash_from,
           "With --index auto: entries from which multihash is used (default: keep the bank's)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_flag("--json", a->json_out, "Print the result as JSON");
    cmd->footer(
        "The PDQ index is derived from the records: changing it changes what a search costs in\n"
        "time and memory, never what it finds (every type is exact). The choice is recorded in\n"
        "the bank, and the index cache next to it is rewritten. Open connections (a running\n"
        "'serve') keep their index until they reopen the bank.\n\n"
        "Example:\n  hashwall reindex --bank big.db --index compact   # ~62 instead of ~100 "
        "bytes/entry\n\n"
        "Exit codes: 0 done, 2 error (e.g. the bank is missing or read-only).");
    cmd->callback([a, &exit_code] { exit_code = run_reindex(*a); });
  }
  {
    auto a = std::make_shared<AdminArgs>();
    auto* cmd =
        app.add_subcommand("check",
                           "Verify a bank's integrity (its store, every signal's records, the "
                           "search index and its caches)");
    cmd->add_option("-b,--bank", a->bank, kBankHelp)->required()->envname("HASHWALL_BANK");
    add_seal_key_option(cmd, a->seal_key_file,
                        "verifies the entries' checksums and the seal of a bank sealed with it");
    cmd->add_flag("--json", a->json_out, "Print the result as JSON");
    cmd->footer(
        "Besides SQLite's own check (a SQLite bank), every entry's stored values are compared with "
        "the checksum\n"
        "written when it was added, the checksums with the bank's records digest, the settings\n"
        "with those it was created with, and the index caches with the records. A bank created\n"
        "with --seal-key is verified with its key: only the key's holder could have changed it\n"
        "so that this still passes (docs/BANK_FORMAT.md, \"Checksums and seal\"). Notes are\n"
        "harmless findings (an out-of-date cache, entries older than checksums).\n\n"
        "Examples:\n  hashwall check --bank cases.db\n"
        "  hashwall check --bank partner.db --seal-key partner.key --json\n\n"
        "Exit codes: 0 consistent, 2 damaged, altered, unreadable, or the wrong key.");
    cmd->callback([a, &exit_code] { exit_code = run_check(*a); });
  }
}

}  // namespace hashwall::cli
