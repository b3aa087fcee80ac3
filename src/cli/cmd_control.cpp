// `list` (named lists: show, create, change, disable, enable), `disable` / `enable` (entries,
// without deleting them) and `log` (the audit log): issue #17's controls.
#include <ctime>
#include <iostream>
#include <memory>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/error.hpp"
#include "core/text.hpp"

namespace hashwall::cli {

namespace {

struct ControlArgs {
  std::string bank;
  std::string seal_key_file;
  bool json_out = false, jsonl_out = false;
  // list create / change
  std::string name, kind, description, organisation, terms;
  // disable / enable
  std::vector<std::int64_t> ids;
  std::vector<std::string> labels, sha256s;
  std::string reason, until;
  // log
  std::int64_t after = 0;
  std::size_t limit = 100;
};

json list_json(const ListInfo& l) {
  return {{"id", l.id},
          {"name", l.name},
          {"kind", list_kind_name(l.kind)},
          {"enabled", !l.disabled || !l.disabled->in_force(std::time(nullptr))},
          {"disabled", disabled_json(l.disabled)},
          {"entries", l.entries},
          {"description", l.description},
          {"organisation", l.organisation},
          {"terms", l.terms},
          {"created_at", l.created_at}};
}

std::string format_time(std::int64_t t) {
  const std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string describe_disabled(const Disabled& d) {
  return "disabled: " + escape_control(d.reason) +
         (d.until ? " (until " + format_time(*d.until) + ")" : "");
}

void print_list(const ListInfo& l) {
  std::cout << l.name << "  " << list_kind_name(l.kind) << ", " << l.entries
            << (l.entries == 1 ? " entry" : " entries");
  if (l.disabled)
    std::cout << (l.disabled->in_force(std::time(nullptr)) ? ", " : ", expired: ")
              << describe_disabled(*l.disabled);
  std::cout << '\n';
  if (!l.organisation.empty())
    std::cout << "    organisation  " << escape_control(l.organisation) << '\n';
  if (!l.description.empty())
    std::cout << "    description   " << escape_control(l.description) << '\n';
  if (!l.terms.empty()) std::cout << "    terms         " << escape_control(l.terms) << '\n';
}

int run_list_show(const ControlArgs& a) {
  auto bank = Bank::open(a.bank, OpenMode::ReadOnly);
  const auto lists = bank->lists();
  if (a.json_out) {
    json j = json::array();
    for (const auto& l : lists) j.push_back(list_json(l));
    std::cout << dump_json(json{{"lists", j}}, 2) << '\n';
    return kExitOk;
  }
  for (const auto& l : lists) print_list(l);
  return kExitOk;
}

std::optional<ListKind> kind_of(const std::string& s) {
  if (s.empty()) return std::nullopt;
  const auto k = parse_list_kind(s);
  if (!k) throw Error(ErrorKind::Usage, "", "--kind must be block or allow, not '" + s + "'");
  return k;
}

int print_changed_list(const ControlArgs& a, const Bank& bank, const std::string& name,
                       const char* what) {
  std::optional<ListInfo> l;
  for (const auto& have : bank.lists())
    if (have.name == name) l = have;
  if (!l) throw Error(ErrorKind::Bank, "", "the list '" + name + "' went away meanwhile");
  if (a.json_out)
    std::cout << dump_json(json{{what, list_json(*l)}}, 2) << '\n';
  else
    std::fprintf(stderr, "%s list '%s'\n", what, name.c_str());
  return kExitOk;
}

int run_list_create(const ControlArgs& a) {
  // Not Create: a mistyped --bank must not make a new bank ('hashwall init' does).
  auto bank = Bank::open(a.bank, OpenMode::ReadWrite, {}, read_seal_key(a.seal_key_file));
  ListInfo spec;
  spec.name = a.name;
  spec.kind = kind_of(a.kind).value_or(ListKind::Block);
  spec.description = a.description;
  spec.organisation = a.organisation;
  spec.terms = a.terms;
  bank->create_list(spec, cli_actor(a.reason));
  return print_changed_list(a, *bank, a.name, "created");
}

int run_list_change(const ControlArgs& a, const char* how) {
  auto bank = Bank::open(a.bank, OpenMode::ReadWrite, {}, read_seal_key(a.seal_key_file));
  Bank::ListChange c;
  const std::string verb = how;
  if (verb == "disabled") {
    c.disable = Disabled{a.reason, std::nullopt};
    if (!a.until.empty()) c.disable->until = parse_until(a.until);
  } else if (verb == "enabled") {
    c.enable = true;
  } else {
    c.kind = kind_of(a.kind);
    if (!a.description.empty()) c.description = a.description;
    if (!a.organisation.empty()) c.organisation = a.organisation;
    if (!a.terms.empty()) c.terms = a.terms;
    if (!c.kind && !c.description && !c.organisation && !c.terms)
      throw Error(ErrorKind::Usage, "",
                  "say what to change: --kind, --description, --organisation or --terms");
  }
  bank->change_list(a.name, c, cli_actor(a.reason));
  return print_changed_list(a, *bank, a.name, how);
}

// The entries --id, --label and --sha256 name (ids that do not exist are kept: the bank
// counts those that do).
std::vector<std::int64_t> named_entries(const Bank& bank, const ControlArgs& a) {
  std::vector<std::int64_t> ids = a.ids;
  for (const auto& s : a.sha256s)
    if (const auto e = bank.find_sha256(s)) ids.push_back(e->id);
  if (!a.labels.empty())
    bank.for_each([&](const Entry& e) {
      if (std::find(a.labels.begin(), a.labels.end(), e.label) != a.labels.end())
        ids.push_back(e.id);
      return true;
    });
  return ids;
}

int run_entry_state(const ControlArgs& a, bool disable) {
  if (a.ids.empty() && a.labels.empty() && a.sha256s.empty())
    throw Error(ErrorKind::Usage, "", "say which entries: --id, --label or --sha256");
  auto bank = Bank::open(a.bank, OpenMode::ReadWrite, {}, read_seal_key(a.seal_key_file));
  const auto ids = named_entries(*bank, a);
  std::optional<Disabled> state;
  if (disable) {
    state = Disabled{a.reason, std::nullopt};
    if (!a.until.empty()) state->until = parse_until(a.until);
  }
  const auto n = bank->set_disabled(ids, state, cli_actor(a.reason));
  if (a.json_out)
    std::cout << dump_json(json{{disable ? "disabled" : "enabled", n}}, 2) << '\n';
  else
    std::fprintf(stderr, "%s %lld entr%s\n", disable ? "disabled" : "enabled",
                 static_cast<long long>(n), n == 1 ? "y" : "ies");
  return kExitOk;
}

// An audit row's detail: the JSON object it holds, or its text when it is not one.
json detail_json(const std::string& d) {
  if (d.empty()) return nullptr;
  json j = json::parse(d, nullptr, false);
  return j.is_discarded() ? json(d) : j;
}

json audit_json(const AuditEvent& e) {
  return {{"id", e.id},       {"at", e.at},         {"time", format_time(e.at)},
          {"actor", e.actor}, {"action", e.action}, {"list", e.list},
          {"ids", e.ids},     {"reason", e.reason}, {"detail", detail_json(e.detail)}};
}

int run_log(const ControlArgs& a) {
  auto bank = Bank::open(a.bank, OpenMode::ReadOnly);
  const auto rows = bank->audit(a.after, a.limit);
  if (a.json_out) {
    json j = json::array();
    for (const auto& e : rows) j.push_back(audit_json(e));
    std::cout << dump_json(json{{"events", j}, {"next", rows.empty() ? a.after : rows.back().id}},
                           2)
              << '\n';
    return kExitOk;
  }
  for (const auto& e : rows) {
    if (a.jsonl_out) {
      std::cout << dump_json(audit_json(e)) << '\n';
      continue;
    }
    std::cout << e.id << "  " << format_time(e.at) << "  " << escape_control(e.actor) << "  "
              << e.action;
    if (!e.list.empty()) std::cout << "  list " << e.list;
    if (!e.ids.empty()) {
      std::cout << "  " << e.ids.size() << (e.ids.size() == 1 ? " entry " : " entries ");
      for (std::size_t i = 0; i < e.ids.size() && i < 10; ++i)
        std::cout << (i ? "," : "") << e.ids[i];
      if (e.ids.size() > 10) std::cout << ",...";
    }
    if (!e.reason.empty()) std::cout << "  \"" << escape_control(e.reason) << '"';
    std::cout << '\n';
  }
  return kExitOk;
}

void bank_options(CLI::App* cmd, ControlArgs& a, bool writes, bool required = true) {
  auto* bank = cmd->add_option("-b,--bank", a.bank, kBankHelp)->envname("HASHWALL_BANK");
  if (required) bank->required();
  cmd->add_flag("--json", a.json_out, "Print one JSON document");
  if (writes) add_seal_key_option(cmd, a.seal_key_file, "needed when the bank is sealed with one");
}

// A `list` subcommand's --bank and --json may also be given before it ("list --bank B
// create x").
ControlArgs& inherit(ControlArgs& c, const ControlArgs& parent) {
  if (c.bank.empty()) c.bank = parent.bank;
  if (c.bank.empty()) throw Error(ErrorKind::Usage, "", "--bank is required");
  c.json_out = c.json_out || parent.json_out;
  return c;
}

}  // namespace

void register_control(CLI::App& app, int& exit_code) {
  {
    auto* list = app.add_subcommand("list", "Show, create, change, disable or enable named lists");
    auto a = std::make_shared<ControlArgs>();
    list->add_option("-b,--bank", a->bank, kBankHelp)->envname("HASHWALL_BANK");
    list->add_flag("--json", a->json_out, "Print one JSON document");
    list->require_subcommand(0, 1);
    list->footer(
        "Every entry of a bank belongs to one list. A block list's entries are what the bank\n"
        "exists to find; an allow list's are known harmless photos or known collisions: a query\n"
        "that matches an allow-list entry at least as strongly as its best block-list entry is\n"
        "reported as 'allowed', not as a match (exit code 4). A disabled list's entries never\n"
        "decide. Entries go to a list with 'index --list' and 'import --list'; 'query', 'scan'\n"
        "and 'serve' take --list to look in some lists only. Every bank has the block list\n"
        "'default'. Every change is in the audit log ('hashwall log').\n\n"
        "Examples:\n"
        "  hashwall list --bank cases.db\n"
        "  hashwall list create partner-ncii --bank cases.db --organisation \"Partner NGO\" "
        "--terms \"no redistribution\"\n"
        "  hashwall list create harmless --kind allow --bank cases.db\n"
        "  hashwall list disable partner-ncii --bank cases.db --reason \"under review\" --until "
        "+7d\n"
        "  hashwall list enable partner-ncii --bank cases.db\n\n"
        "Exit codes: 0 done, 2 error (no such list, a name taken, a bad name or time).");
    list->callback([list, a, &exit_code] {
      if (!list->get_subcommands().empty()) return;
      if (a->bank.empty()) throw Error(ErrorKind::Usage, "", "--bank is required");
      exit_code = run_list_show(*a);
    });
    const auto texts = [](CLI::App* cmd, ControlArgs& x) {
      cmd->add_option("--description", x.description, "What the list holds");
      cmd->add_option("--organisation", x.organisation, "The organisation it comes from");
      cmd->add_option("--terms", x.terms, "The terms it is shared under");
    };
    {
      auto c = std::make_shared<ControlArgs>();
      auto* cmd = list->add_subcommand("create", "Create a list");
      cmd->add_option("name", c->name, "Its name: letters, digits, '.', '_', '-' (64 at most)")
          ->required();
      bank_options(cmd, *c, true, false);
      cmd->add_option("--kind", c->kind, "block (default) or allow");
      texts(cmd, *c);
      cmd->add_option("--reason", c->reason, "Why, for the audit log");
      cmd->callback([a, c, &exit_code] { exit_code = run_list_create(inherit(*c, *a)); });
    }
    {
      auto c = std::make_shared<ControlArgs>();
      auto* cmd = list->add_subcommand("change", "Change a list's kind or texts");
      cmd->add_option("name", c->name, "The list")->required();
      bank_options(cmd, *c, true, false);
      cmd->add_option("--kind", c->kind, "block or allow");
      texts(cmd, *c);
      cmd->add_option("--reason", c->reason, "Why, for the audit log");
      cmd->callback(
          [a, c, &exit_code] { exit_code = run_list_change(inherit(*c, *a), "changed"); });
    }
    {
      auto c = std::make_shared<ControlArgs>();
      auto* cmd = list->add_subcommand("disable", "Disable a list: its entries never decide");
      cmd->add_option("name", c->name, "The list")->required();
      bank_options(cmd, *c, true, false);
      cmd->add_option("--reason", c->reason, "Why (required; in the audit log)")->required();
      cmd->add_option("--until", c->until,
                      "Until when: unix seconds, 2027-01-31, 2027-01-31T12:00:00Z or +7d "
                      "(default: until enabled)");
      cmd->callback(
          [a, c, &exit_code] { exit_code = run_list_change(inherit(*c, *a), "disabled"); });
    }
    {
      auto c = std::make_shared<ControlArgs>();
      auto* cmd = list->add_subcommand("enable", "Enable a disabled list again");
      cmd->add_option("name", c->name, "The list")->required();
      bank_options(cmd, *c, true, false);
      cmd->add_option("--reason", c->reason, "Why, for the audit log");
      cmd->callback(
          [a, c, &exit_code] { exit_code = run_list_change(inherit(*c, *a), "enabled"); });
    }
  }
  for (const bool disable : {true, false}) {
    auto a = std::make_shared<ControlArgs>();
    auto* cmd = app.add_subcommand(
        disable ? "disable" : "enable",
        disable ? "Disable entries without deleting them: they never decide until enabled"
                : "Enable disabled entries again");
    bank_options(cmd, *a, true);
    cmd->add_option("--id", a->ids, "Entry id (repeatable)");
    cmd->add_option("--label", a->labels, "Every entry with this label (repeatable)");
    cmd->add_option("--sha256", a->sha256s,
                    "The entry indexed from the file with this SHA-256 (repeatable)");
    auto* reason =
        cmd->add_option("--reason", a->reason,
                        disable ? "Why (required; in the audit log)" : "Why, for the audit log");
    if (disable) {
      reason->required();
      cmd->add_option("--until", a->until,
                      "Until when: unix seconds, 2027-01-31, 2027-01-31T12:00:00Z or +7d "
                      "(default: until enabled)");
    }
    cmd->footer(disable
                    ? "A disabled entry stays in the bank, its indexes and its exports' history, "
                      "but\nno query is decided by it, and it is never reported. Use it for an "
                      "entry under\nreview, or one that matches what it should not; 'hashwall "
                      "remove' deletes.\n\n"
                      "Examples:\n  hashwall disable --bank cases.db --id 12 --reason \"collides "
                      "with a logo\"\n"
                      "  hashwall disable --bank cases.db --label case-17 --reason review "
                      "--until 2027-01-31\n\n"
                      "Exit codes: 0 done (the count says how many existed), 2 error."
                    : "Examples:\n  hashwall enable --bank cases.db --id 12\n\n"
                      "Exit codes: 0 done (the count says how many existed), 2 error.");
    cmd->callback([a, disable, &exit_code] { exit_code = run_entry_state(*a, disable); });
  }
  {
    auto a = std::make_shared<ControlArgs>();
    auto* cmd = app.add_subcommand("log", "Show the audit log: who changed what, when and why");
    cmd->add_option("-b,--bank", a->bank, kBankHelp)->required()->envname("HASHWALL_BANK");
    cmd->add_flag("--json", a->json_out, "Print one JSON document ({events, next})");
    cmd->add_flag("--jsonl", a->jsonl_out, "Print one JSON object per event");
    cmd->add_option("--after", a->after, "Only events after this id (paging: the last id seen)")
        ->check(CLI::NonNegativeNumber);
    cmd->add_option("--limit", a->limit, "At most this many events (default 100)")
        ->check(CLI::Range(1, 100000));
    cmd->footer(
        "Every add, remove, disable, enable and list change is logged with the token or\n"
        "command-line user that made it, its time, the entries it touched and its reason.\n"
        "Events are numbered; page with --after the last number seen.\n\n"
        "Examples:\n  hashwall log --bank cases.db\n"
        "  hashwall log --bank cases.db --after 120 --jsonl\n\n"
        "Exit codes: 0 done, 2 error.");
    cmd->callback([a, &exit_code] { exit_code = run_log(*a); });
  }
}

}  // namespace hashwall::cli
