// `hashwall sync`'s client side (sync.hpp): cpp-httplib (Debian's libcpp-httplib, built with
// OpenSSL) fetches GET /v1/changes pages; feed.cpp applies them.
#include "exchange/sync.hpp"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace hashwall {

namespace {

struct Url {
  std::string scheme, host, prefix;
  int port = 0;
};

Url parse_url(const std::string& url) {
  const auto bad = [&](const std::string& why) {
    return Error(ErrorKind::Usage, url.substr(0, 200), "not a peer's address: " + why);
  };
  Url u;
  const auto sep = url.find("://");
  if (sep == std::string::npos) throw bad("it needs http:// or https://");
  u.scheme = url.substr(0, sep);
  std::transform(u.scheme.begin(), u.scheme.end(), u.scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (u.scheme != "http" && u.scheme != "https") throw bad("it needs http:// or https://");
  std::string rest = url.substr(sep + 3);
  const auto slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos) u.prefix = rest.substr(slash);
  while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  if (hostport.find('@') != std::string::npos)
    throw bad("give the token with --token-file, not in the URL");
  if (u.prefix.find_first_of("?#") != std::string::npos) throw bad("no query or fragment, please");
  u.port = u.scheme == "https" ? 443 : 80;
  std::size_t colon = std::string::npos;
  if (!hostport.empty() && hostport.front() == '[') {  // [v6]:port
    const auto close = hostport.find(']');
    if (close == std::string::npos) throw bad("an unclosed '['");
    u.host = hostport.substr(1, close - 1);
    if (close + 1 < hostport.size()) {
      if (hostport[close + 1] != ':') throw bad("junk after ']'");
      colon = close + 1;
    }
  } else {
    colon = hostport.rfind(':');
    u.host = hostport.substr(0, colon);
  }
  if (colon != std::string::npos) {
    const std::string p = hostport.substr(colon + 1);
    if (p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), ::isdigit) ||
        std::stoi(p) < 1 || std::stoi(p) > 65535)
      throw bad("the port is not 1 to 65535");
    u.port = std::stoi(p);
  }
  if (u.host.empty()) throw bad("no host");
  std::transform(u.host.begin(), u.host.end(), u.host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return u;
}

std::string host_text(const Url& u) {
  return u.host.find(':') != std::string::npos ? "[" + u.host + "]" : u.host;
}

// The peer's reason from an error answer ({"error": "..."}), else the status line.
std::string reason_of(int status, const std::string& body) {
  const auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("error") && j["error"].is_string())
    return "HTTP " + std::to_string(status) + ": " + j["error"].get<std::string>().substr(0, 300);
  return "HTTP " + std::to_string(status);
}

}  // namespace

std::string peer_of(const std::string& url) {
  const Url u = parse_url(url);
  return u.scheme + "://" + host_text(u) + ":" + std::to_string(u.port) + u.prefix;
}

SyncReport sync_once(Bank& bank, const SyncOptions& opt,
                     const std::function<void(const SyncReport&)>& progress,
                     const std::atomic<bool>* stop) {
  const Url u = parse_url(opt.url);
  SyncReport rep;
  rep.peer = peer_of(opt.url);
  if (!valid_list_name(opt.list) || !valid_list_name(opt.into))
    throw Error(ErrorKind::Usage, "", "list names are letters, digits, '.', '_' or '-'");
  const std::string key = rep.peer + " " + opt.list + " " + opt.into;
  std::string cursor = bank.sync_checkpoint(key).value_or("0");
  const Actor who{"sync:" + rep.peer, ""};

  httplib::Client client(u.scheme + "://" + host_text(u) + ":" + std::to_string(u.port));
  client.set_connection_timeout(opt.timeout_seconds, 0);
  client.set_read_timeout(opt.timeout_seconds, 0);
  client.set_write_timeout(opt.timeout_seconds, 0);
  client.set_keep_alive(true);
  if (!opt.ca_file.empty()) client.set_ca_cert_path(opt.ca_file.c_str());
  if (u.scheme == "https") client.enable_server_certificate_verification(true);
  const httplib::Headers headers = {{"Authorization", "Bearer " + opt.token},
                                    {"Accept", "application/json"}};
  std::optional<std::int64_t> into_id;
  for (;;) {
    if (stop && stop->load()) break;
    const std::string path = u.prefix + "/v1/changes?list=" + opt.list + "&after=" + cursor +
                             "&limit=" + std::to_string(opt.page);
    std::string body;
    int status = 0;
    bool too_large = false;
    const auto res = client.Get(
        path, headers,
        [&](const httplib::Response& r) {
          status = r.status;
          return true;
        },
        [&](const char* data, std::size_t n) {
          if (body.size() + n > kMaxFeedAnswerBytes) {
            too_large = true;
            return false;
          }
          body.append(data, n);
          return true;
        });
    const std::string where = rep.peer + "/v1/changes";
    if (too_large)
      throw Error(ErrorKind::Format, where,
                  "the answer is larger than " + std::to_string(kMaxFeedAnswerBytes) + " bytes");
    if (!res) throw Error(ErrorKind::Io, where, "cannot fetch: " + httplib::to_string(res.error()));
    // A cursor past the end of the peer's log: its bank was restored from a backup, or
    // replaced. Start again from a snapshot (applying what is there again changes nothing).
    if (status == 400 && cursor != "0" && body.find("past the end") != std::string::npos &&
        !rep.restarted) {
      rep.restarted = true;
      cursor = "0";
      continue;
    }
    if (status != 200) throw Error(ErrorKind::Io, where, reason_of(status, body));
    const auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded()) throw Error(ErrorKind::Format, where, "the answer is not JSON");
    FeedPage page = parse_feed(where, j);
    if (page.list.name != opt.list)
      throw Error(ErrorKind::Format, where, "the answer is about list '" + page.list.name + "'");
    // Entries are claimed by the peer's bank (its id), not its address: a new address for
    // the same bank finds them claimed already; another bank at the old address is another
    // peer, whose log the old cursor means nothing in.
    const std::string bank_key = "bank " + key;
    const std::string peer_key = page.bank.empty() ? rep.peer : "bank:" + page.bank;
    if (const auto seen = bank.sync_checkpoint(bank_key); !seen || *seen != page.bank) {
      if (seen && !seen->empty() && cursor != "0") {
        if (rep.restarted)
          throw Error(ErrorKind::Io, where,
                      "the peer's bank changed twice in one pass (" + *seen + ", " + page.bank +
                          "): two banks answer at this address?");
        // From a snapshot of the new bank: the cursor is reset before the new id is kept, so
        // that a pass cut off now never reads the new log from the old cursor. The old
        // bank's entries stay here, claimed by it (a person decides: docs/EXCHANGE.md).
        bank.set_sync_checkpoint(key, "0");
        bank.set_sync_checkpoint(bank_key, page.bank);
        rep.restarted = true;
        cursor = "0";
        continue;
      }
      // First sight of the bank's id (a new sync, a sync begun before ids, or a peer bank
      // that had none): claims made under its address become the bank's.
      if (!page.bank.empty()) bank.rekey_claims(rep.peer, peer_key);
      bank.set_sync_checkpoint(bank_key, page.bank);
    }
    rep.peer_bank = page.bank;
    if (!into_id) {
      // The local list: as the peer describes its own, when it is new here; it must be of
      // the same kind (an allow list synced into a block list would block harmless photos).
      if (const auto have = bank.list(opt.into)) {
        if (have->kind != page.list.kind)
          throw Error(ErrorKind::Usage, bank.path().string(),
                      "list '" + opt.into + "' is a " + list_kind_name(have->kind) +
                          " list and the peer's '" + opt.list + "' a " +
                          list_kind_name(page.list.kind) + " list");
        into_id = have->id;
      } else {
        ListInfo spec;
        spec.name = opt.into;
        spec.kind = page.list.kind;
        spec.description = page.list.description;
        spec.organisation = page.list.organisation;
        spec.terms = page.list.terms;
        into_id = bank.create_list(spec, who).id;
        rep.list_created = true;
      }
    }
    // The peer's list switched off (or on again) since the last page: so is ours. Only a
    // change at the peer is followed: a local decision about the list (disabling it, or
    // enabling it again) stays until the peer changes its list's state once more, and the
    // peer enables only what it disabled (the reason names it).
    const std::string state_key = "list " + key;
    const std::string peer_state =
        (page.list.disabled ? "off " + page.list.disabled->reason : std::string("on"))
            .substr(0, kMaxReasonBytes);
    if (const auto last = bank.sync_checkpoint(state_key); !last || *last != peer_state) {
      const std::string mine = "peer " + peer_key + ": ";
      if (const auto local = bank.list(opt.into)) {
        Bank::ListChange ch;
        if (page.list.disabled && !local->disabled) {
          ch.disable = Disabled{(mine + page.list.disabled->reason).substr(0, kMaxReasonBytes),
                                page.list.disabled->until};
          bank.change_list(opt.into, ch, who);
          ++rep.list_changes;
        } else if (!page.list.disabled && local->disabled &&
                   local->disabled->reason.starts_with(mine)) {
          ch.enable = true;
          bank.change_list(opt.into, ch, who);
          ++rep.list_changes;
        }
      }
      bank.set_sync_checkpoint(state_key, peer_state);
    }
    const ApplyReport a = apply_feed(bank, page, peer_key, *into_id, who);
    rep.applied.refused += a.refused;
    rep.applied.added += a.added;
    rep.applied.duplicates += a.duplicates;
    rep.applied.removed += a.removed;
    rep.applied.disabled += a.disabled;
    rep.applied.enabled += a.enabled;
    rep.applied.in_other_list += a.in_other_list;
    if (page.next != cursor) bank.set_sync_checkpoint(key, page.next);
    cursor = page.next;
    rep.checkpoint = cursor;
    ++rep.pages;
    if (progress) progress(rep);
    if (!page.more) break;
  }
  rep.checkpoint = cursor;
  return rep;
}

}  // namespace hashwall
