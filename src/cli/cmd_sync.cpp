// `hashwall sync`: pulls a list of another organisation's bank into this one (issue #17,
// exchange/sync.hpp, docs/EXCHANGE.md).
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <memory>
#include <thread>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/error.hpp"
#include "core/text.hpp"
#include "exchange/sync.hpp"
#include "server/auth.hpp"

namespace hashwall::cli {

namespace {

struct SyncArgs {
  std::string bank, seal_key_file, from, token_file, list, into, ca_file;
  int watch = 0;
  std::size_t page = kFeedPageDefault;
  int timeout = 30;
  bool json_out = false, jsonl_out = false;
};

json report_json(const SyncReport& r) {
  return {{"peer", r.peer},
          {"checkpoint", r.checkpoint},
          {"pages", r.pages},
          {"list_created", r.list_created},
          {"added", r.applied.added},
          {"duplicates", r.applied.duplicates},
          {"in_other_list", r.applied.in_other_list},
          {"removed", r.applied.removed},
          {"disabled", r.applied.disabled},
          {"enabled", r.applied.enabled},
          {"refused", r.applied.refused},
          {"list_changes", r.list_changes},
          {"peer_bank", r.peer_bank},
          {"restarted", r.restarted}};
}

void print_report(const SyncArgs& a, const SyncReport& r) {
  std::fprintf(
      stderr,
      "sync: %s list '%s' -> '%s': %lld added, %lld already here, %lld removed, %lld "
      "disabled, %lld enabled (%lld page%s%s)\n",
      escape_control(r.peer).c_str(), a.list.c_str(), a.into.c_str(),
      static_cast<long long>(r.applied.added), static_cast<long long>(r.applied.duplicates),
      static_cast<long long>(r.applied.removed), static_cast<long long>(r.applied.disabled),
      static_cast<long long>(r.applied.enabled), static_cast<long long>(r.pages),
      r.pages == 1 ? "" : "s", r.list_created ? "; list created" : "");
  if (r.applied.refused > 0)
    std::fprintf(stderr, "sync: %lld malformed changes from the peer were left out\n",
                 static_cast<long long>(r.applied.refused));
  if (r.restarted)
    std::fprintf(stderr,
                 "sync: started again from a snapshot: the peer's bank is another one, or was "
                 "restored (entries it no longer lists stay here: see docs/EXCHANGE.md)\n");
  if (r.list_changes > 0)
    std::fprintf(stderr, "sync: the list was disabled or enabled as the peer's was\n");
  if (r.applied.in_other_list > 0)
    std::fprintf(stderr, "sync: %lld of them were already in another list here, and stay there\n",
                 static_cast<long long>(r.applied.in_other_list));
}

int run_sync(SyncArgs a) {
  if (a.into.empty()) a.into = a.list;
  if (a.watch < 0) throw Error(ErrorKind::Usage, "", "--watch takes seconds, 1 or more");
  if (a.page < 1 || a.page > kFeedPageMax)
    throw Error(ErrorKind::Usage, "", "--page must be 1 to " + std::to_string(kFeedPageMax));
  SyncOptions opt;
  opt.url = a.from;
  opt.token = server::read_secret_file(a.token_file, "token file");
  opt.list = a.list;
  opt.into = a.into;
  opt.page = a.page;
  opt.timeout_seconds = a.timeout;
  opt.ca_file = a.ca_file;
  peer_of(opt.url);  // a bad URL fails before the bank is opened
  // Like index and import, a sync into a bank that is not there yet creates it.
  auto bank = Bank::open(a.bank, OpenMode::Create, {}, read_seal_key(a.seal_key_file));
  install_signal_handlers();
  auto& stop = stop_requested();
  const bool tty = isatty(2);
  for (;;) {
    try {
      const auto rep = sync_once(
          *bank, opt,
          [&](const SyncReport& r) {
            if (tty && !a.json_out && !a.jsonl_out)
              std::fprintf(stderr, "\rsync: %lld pages, %lld added, %lld removed   ",
                           static_cast<long long>(r.pages), static_cast<long long>(r.applied.added),
                           static_cast<long long>(r.applied.removed));
          },
          &stop);
      if (tty && !a.json_out && !a.jsonl_out) std::fprintf(stderr, "\r\033[K");
      if (a.json_out && a.watch == 0)
        std::cout << dump_json(report_json(rep), 2) << '\n';
      else if (a.json_out || a.jsonl_out)
        std::cout << dump_json(report_json(rep)) << std::endl;
      else
        print_report(a, rep);
    } catch (const Error& e) {
      // Watching, a peer that is down, a dropped connection, or this bank busy with another
      // writer (a large import) is waited out: the next pass resumes from the checkpoint.
      // Anything else (a wrong option or list, a damaged bank, a wrong seal key) ends it.
      const bool busy =
          e.kind() == ErrorKind::Bank &&
          (store_unreachable(e) || e.reason().find("is locked by") != std::string::npos);
      if (a.watch == 0 || (e.kind() != ErrorKind::Io && e.kind() != ErrorKind::Format && !busy))
        throw;
      std::fprintf(stderr, "hashwall: %s (trying again in %d s)\n", e.what(), a.watch);
    }
    if (stop.load()) throw Error(ErrorKind::Interrupted, "", "interrupted; the checkpoint is kept");
    if (a.watch == 0) return kExitOk;
    for (int waited = 0; waited < a.watch * 10 && !stop.load(); ++waited)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stop.load()) return kExitOk;  // stopped while waiting: nothing half done
  }
}

}  // namespace

void register_sync(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<SyncArgs>();
  auto* cmd = app.add_subcommand(
      "sync", "Pull a list of another organisation's bank (its 'hashwall serve') into this bank");
  cmd->add_option("-b,--bank", a->bank, kBankHelp)->envname("HASHWALL_BANK")->required();
  cmd->add_option("--from", a->from, "The peer's address: http(s)://HOST:PORT[/PREFIX]")
      ->required();
  cmd->add_option("--token-file", a->token_file,
                  "A file holding a read token of the peer's server (never on the command line)")
      ->required();
  cmd->add_option("--list", a->list, "The peer's list to pull")->required();
  cmd->add_option("--into", a->into, "This bank's list to pull it into (default: the same name)");
  cmd->add_option("--watch", a->watch,
                  "Keep pulling every SECONDS (until Ctrl-C or SIGTERM); a peer that is down "
                  "is tried again at the next interval");
  cmd->add_option("--page", a->page, "Changes per request (default 1000, at most 5000)");
  cmd->add_option("--timeout", a->timeout, "Seconds to connect and for each read (default 30)");
  cmd->add_option("--ca-file", a->ca_file, "For https: the CA certificate to trust");
  add_seal_key_option(cmd, a->seal_key_file, "needed when the bank is sealed with one");
  cmd->add_flag("--json", a->json_out,
                "Print the result as one JSON document (a line per pass with --watch)");
  cmd->add_flag("--jsonl", a->jsonl_out, "Print one JSON line per pass");
  cmd->footer(
      "The peer's list arrives as it is there: its entries (PDQ hashes, labels, their\n"
      "disabled state), then every later add, removal, disable and enable. Entries keep the\n"
      "peer and their id there (provenance), so the peer's removals and disables apply to\n"
      "the entries taken from it, never to this bank's own. A new local list is created like\n"
      "the peer's (kind, description, organisation, terms); an existing one must be of the\n"
      "same kind. Where it has got to is kept in the bank: a sync that is killed, or loses\n"
      "its connection, goes on from there with nothing lost and nothing added twice. The\n"
      "token needs the read role on the peer's server (serve --tokens).\n\n"
      "Examples:\n"
      "  hashwall sync --bank ours.db --from https://hashes.partner.org --token-file partner.token "
      "--list ncii\n"
      "  hashwall sync --bank ours.db --from http://10.0.0.5:8080 --token-file t --list ncii "
      "--into partner-ncii --watch 300\n\n"
      "Exit codes: 0 done (or stopped while waiting with --watch), 2 error (the peer cannot be\n"
      "reached, refuses the token, has no such list; the local list is of the other kind),\n"
      "130 interrupted during a pass (what was applied is kept, with its checkpoint).");
  cmd->callback([a, &exit_code] { exit_code = run_sync(*a); });
}

}  // namespace hashwall::cli
