// `hashwall verdict`: a reviewer's decision on a match, in the audit log, and a false
// positive put on an allow list in the same step (issue #17, Bank::record_verdict).
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "cli/signals.hpp"
#include "core/error.hpp"
#include "match/fingerprint.hpp"

namespace hashwall::cli {

namespace {

struct VerdictArgs {
  std::string bank, seal_key_file, verdict, query, query_sha256, pdq, allow_list, label, reason;
  std::int64_t entry = 0;
  int quality = -1;
  bool json_out = false;
};

int run_verdict(const VerdictArgs& a) {
  const auto kind = parse_review_verdict(a.verdict);
  if (!kind)
    throw Error(
        ErrorKind::Usage, "",
        "--verdict must be confirmed or false-positive, not '" + a.verdict.substr(0, 40) + "'");
  if (a.query.empty() == a.query_sha256.empty())
    throw Error(ErrorKind::Usage, "", "say which query: --query FILE or --query-sha256 HEX");
  if (!a.allow_list.empty() && a.query.empty() && a.pdq.empty())
    throw Error(ErrorKind::Usage, "",
                "to allowlist the query give its file (--query) or its PDQ hash (--pdq)");
  if (a.allow_list.empty() && (!a.pdq.empty() || a.quality >= 0))
    throw Error(ErrorKind::Usage, "", "--pdq and --quality go with --allow-list");
  auto bank = Bank::open(a.bank, OpenMode::ReadWrite, {}, read_seal_key(a.seal_key_file));
  const Actor who = cli_actor(a.reason);
  Review v;
  v.entry = a.entry;
  v.kind = *kind;
  std::optional<NewEntry> allow;
  if (!a.query.empty()) {
    // The file: its SHA-256 names the query; allowlisted, its whole fingerprint (every
    // signal the bank records) is the allow entry, as `index` would make it.
    const SignalSetup sig = signal_setup(*bank, {}, {}, false);
    LoadOptions opt = load_options(false, false, 200'000'000);  // index's default --max-pixels
    sig.apply(opt);
    const auto bytes = read_file_bytes(a.query, opt.max_file_bytes);
    v.query_sha256 = sha256_hex(bytes);
    if (!a.allow_list.empty()) {
      const LoadedImage img = decode_image(bytes, a.query, opt, v.query_sha256);
      allow = entry_from(fingerprint(img, opt.mode, sig.fingerprint));
      allow->source = fs::absolute(a.query).lexically_normal().string();
      allow->origin = Origin::Indexed;
    }
  } else {
    v.query_sha256 = a.query_sha256;
    if (!a.allow_list.empty()) {
      // Only the hash: an imported entry (the SHA-256 too, so the very file is exact).
      const auto h = Hash256::from_hex(a.pdq);
      if (!h) throw Error(ErrorKind::Usage, "", "--pdq must be 64 hex characters");
      allow = NewEntry{};
      allow->pdq = *h;
      allow->sha256 = a.query_sha256;
      if (a.quality >= 0) allow->quality = a.quality;
      allow->source = "verdict";
      allow->origin = Origin::Imported;
    }
  }
  if (allow) {
    allow->list_id = list_id_of(*bank, a.allow_list);
    allow->label = a.label.empty() ? "false positive of entry " + std::to_string(a.entry) : a.label;
    allow->added_by = who.name;
  }
  const ReviewResult r = bank->record_verdict(v, allow ? &*allow : nullptr, who);
  if (a.json_out) {
    json j = {{"verdict", review_verdict_name(v.kind)},
              {"entry", v.entry},
              {"query_sha256", v.query_sha256},
              {"audit_id", r.audit_id}};
    j["allow_entry"] = r.allow_entry ? json(*r.allow_entry) : json(nullptr);
    if (r.allow_entry) j["allow_list"] = a.allow_list;
    std::cout << dump_json(j, 2) << '\n';
  } else {
    std::fprintf(stderr, "recorded: %s for entry %lld (audit event %lld)\n",
                 review_verdict_name(v.kind), static_cast<long long>(v.entry),
                 static_cast<long long>(r.audit_id));
    if (r.allow_entry)
      std::fprintf(stderr, "allowlisted: the query is entry %lld of allow list '%s'\n",
                   static_cast<long long>(*r.allow_entry), a.allow_list.c_str());
  }
  return kExitOk;
}

}  // namespace

void register_verdict(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<VerdictArgs>();
  auto* cmd = app.add_subcommand(
      "verdict", "Record a reviewer's decision on a match; allowlist a false positive in one step");
  cmd->add_option("-b,--bank", a->bank, kBankHelp)->envname("HASHWALL_BANK")->required();
  cmd->add_option("--entry", a->entry, "The entry the query matched (its id)")
      ->required()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--verdict", a->verdict, "confirmed or false-positive")->required();
  cmd->add_option("--query", a->query, "The query's file (its SHA-256 names it)");
  cmd->add_option("--query-sha256", a->query_sha256,
                  "Or the query file's SHA-256, as query/scan/serve report it");
  cmd->add_option("--allow-list", a->allow_list,
                  "A false positive: put the query on this allow list, so that such matches "
                  "are 'allowed' from now on");
  cmd->add_option("--pdq", a->pdq, "With --query-sha256 and --allow-list: the query's PDQ hash");
  cmd->add_option("--quality", a->quality, "With --pdq: its quality (0..100)")
      ->check(CLI::Range(0, 100));
  cmd->add_option("--label", a->label,
                  "The allow entry's label (default: 'false positive of entry N')");
  cmd->add_option("--reason", a->reason, "Why, for the audit log");
  add_seal_key_option(cmd, a->seal_key_file, "needed when the bank is sealed with one");
  cmd->add_flag("--json", a->json_out, "Print one JSON document");
  cmd->footer(
      "A verdict is the reviewer's decision on one match: the query (a file, named by its\n"
      "SHA-256) against the entry it matched. It goes to the audit log ('hashwall log',\n"
      "GET /v1/audit), where the list's owner can learn how its entries fare. A false\n"
      "positive can go on an allow list at once (--allow-list): the query's fingerprint\n"
      "becomes an entry of that list, and a match on it is then 'allowed' (exit code 4),\n"
      "not a match. The entry matched is not changed; disable it ('hashwall disable') when\n"
      "it matches too much.\n\n"
      "Examples:\n"
      "  hashwall verdict --bank cases.db --entry 12 --query upload.jpg --verdict confirmed\n"
      "  hashwall verdict --bank cases.db --entry 12 --query upload.jpg --verdict false-positive "
      "--allow-list harmless --reason \"logo, not a person\"\n"
      "  hashwall verdict --bank cases.db --entry 12 --query-sha256 2f1e... --pdq 6d9b... "
      "--verdict false-positive --allow-list harmless\n\n"
      "Exit codes: 0 recorded, 2 error (no such entry or list, a block list given as the\n"
      "allow list, a query already held in another list, an unreadable file).");
  cmd->callback([a, &exit_code] { exit_code = run_verdict(*a); });
}

}  // namespace hashwall::cli
