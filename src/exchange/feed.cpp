// A list's change feed: read from the bank's entries and audit log, written as JSON, read
// back and applied to another bank (feed.hpp).
#include "exchange/feed.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <tuple>

#include "core/error.hpp"

namespace hashwall {

using nlohmann::json;

namespace {

// What an item may take in the page's JSON, at most (every byte of a text escaped as
// \u00XX), so that a page stays under the byte budget the server gives it.
std::size_t item_bytes(const FeedItem& it) {
  std::size_t n = 320;
  if (it.entry) {
    n += 6 * (it.entry->label.size() + it.entry->source.size());
    if (it.entry->disabled) n += 6 * it.entry->disabled->reason.size();
  }
  if (it.state) n += 6 * it.state->reason.size();
  return n;
}

// The flood guard's quarantine is this server's traffic's verdict, not the list owner's:
// peers get the entry as enabled (they run their own guard), so that a flood provoked at
// one member does not switch an entry off at all.
void local_state_off(Entry& e) {
  if (e.disabled && e.disabled->reason == "flood") e.disabled.reset();
}

// The item one id of an audit row gives the list (nullopt: none). A removal's entries are
// gone: the row names their list (rows written before it did name none, and pass on every
// id; a sync ignores ids it never took). An add or a state change sends the entry as it is
// now: one added and removed since is left out (its removal follows), one disabled since
// is sent disabled (and its disable follows).
std::optional<FeedItem> item_of(const Bank& bank, const ListInfo& list, const AuditEvent& row,
                                std::int64_t id) {
  if (row.action == "remove") return FeedItem{FeedItem::Op::Remove, id, std::nullopt, std::nullopt};
  auto e = bank.get(id);
  if (!e || e->list_id != list.id) return std::nullopt;
  local_state_off(*e);
  if (row.action == "add") return FeedItem{FeedItem::Op::Add, e->id, std::move(*e), std::nullopt};
  return FeedItem{FeedItem::Op::State, e->id, std::nullopt, e->disabled};
}

// Whether a row's ids may concern the list: adds, removals and entry state changes that
// are not marked as another list's.
bool row_concerns(const AuditEvent& row, const ListInfo& list) {
  const bool entries = row.action == "add" || row.action == "remove" ||
                       ((row.action == "disable" || row.action == "enable") && !row.ids.empty());
  return entries && (row.list.empty() || row.list == list.name || row.action == "disable" ||
                     row.action == "enable");
}

// Gives the entries taken from `peer` under these external ids the states asked for,
// one write per distinct state, skipping those already in it (a page read again).
void set_states(Bank& bank, const std::string& peer,
                const std::vector<std::pair<std::string, const std::optional<Disabled>*>>& want,
                const Actor& who, ApplyReport& rep) {
  if (want.empty()) return;
  std::map<std::string, const std::optional<Disabled>*> by_ext(want.begin(), want.end());
  std::vector<std::string> ext;
  for (const auto& [x, d] : by_ext) ext.push_back(x);
  using Key = std::tuple<bool, std::string, std::optional<std::int64_t>>;
  std::map<Key, std::vector<std::int64_t>> groups;
  const auto claimed = bank.ids_from_peer(peer, ext);
  std::vector<std::int64_t> ids;
  for (const auto& [x, id] : claimed) ids.push_back(id);
  const auto counts = bank.claim_counts(ids);
  for (std::size_t i = 0; i < claimed.size(); ++i) {
    const auto& [x, id] = claimed[i];
    // Only an entry this peer alone vouches for, and that came from a sync: another
    // peer's listing, or the bank's own entry, is not the peer's to disable or enable.
    if (counts[i] != 1) continue;
    const auto e = bank.get(id);
    if (!e || e->peer.empty()) continue;
    // A state set here (a reviewer's disable, the flood guard) is this bank's decision: the
    // peer changes only states it set itself, whose reason says so.
    const std::string mine = "peer " + peer + ": ";
    if (e->disabled && !e->disabled->reason.starts_with(mine)) continue;
    const auto& d = *by_ext.at(x);
    const std::string reason = d ? (mine + d->reason).substr(0, kMaxReasonBytes) : "";
    const bool same =
        d ? (e->disabled && e->disabled->reason == reason && e->disabled->until == d->until)
          : !e->disabled;
    if (same) continue;
    groups[Key{d.has_value(), reason, d ? d->until : std::nullopt}].push_back(id);
  }
  for (const auto& [key, ids] : groups) {
    const auto& [off, reason, until] = key;
    const auto state = off ? std::optional<Disabled>(Disabled{reason, until}) : std::nullopt;
    (off ? rep.disabled : rep.enabled) += bank.set_disabled(ids, state, who);
  }
}

}  // namespace

FeedPage read_feed(const Bank& bank, const std::string& list_name, std::string_view after,
                   std::size_t limit, std::size_t max_bytes) {
  if (limit < 1 || limit > kFeedPageMax)
    throw Error(
        ErrorKind::Usage, "",
        "limit must be 1 to " + std::to_string(kFeedPageMax) + ", not " + std::to_string(limit));
  auto cursor = parse_cursor(after);
  if (!cursor)
    throw Error(ErrorKind::Usage, "",
                "'" + std::string(after.substr(0, kMaxCursorBytes)) +
                    "' is not a cursor of this feed (0 to start, or a page's 'next')");
  const auto list = bank.list(list_name);
  if (!list) throw Error(ErrorKind::Usage, "", "there is no list '" + list_name + "'");
  FeedPage page;
  page.after = std::string(after);
  page.list = *list;
  page.bank = bank.bank_id();
  FeedCursor c = *cursor;
  std::size_t bytes = 0;
  if (c.snapshot) {
    // Changes from the snapshot's start on are read from the log afterwards.
    if (c.audit < 0) c.audit = bank.audit_high_water();
    auto entries = bank.list_entries(list->id, c.entry, limit);
    const bool full = entries.size() == limit;
    bool cut = false;
    for (auto& e : entries) {
      local_state_off(e);
      FeedItem it{FeedItem::Op::Add, e.id, std::move(e), std::nullopt};
      bytes += item_bytes(it);
      if (bytes > max_bytes && !page.items.empty()) {
        cut = true;
        break;
      }
      page.items.push_back(std::move(it));
    }
    if (full || cut)
      c.entry = page.items.back().id;
    else
      c = FeedCursor{false, c.audit + 1, 0, 0};
    page.next = cursor_text(c);
    page.more = true;  // the log after the snapshot, or its next page
    return page;
  }
  // A cursor past the log's end belongs to another bank, or to this one before it was
  // restored from a backup: the caller must start again (Error{Usage} names it).
  if (c.audit > bank.audit_high_water() + 1)
    throw Error(ErrorKind::Usage, "",
                "cursor '" + std::string(after.substr(0, kMaxCursorBytes)) +
                    "' is past the end of this bank's log (was the bank restored or "
                    "replaced?): start again from 0");
  // The log: rows from c.audit on, skipping the ids of the first that were sent. Each id
  // looked at counts against the limit, sent or not, and a row of another list or without
  // entries costs one, so a page's work is bounded. Resuming inside a row reads that row
  // only.
  std::size_t budget = limit;
  const std::size_t row_limit = c.skip > 0 ? 1 : std::min<std::size_t>(limit, 1000);
  const auto rows = bank.audit(c.audit - 1, row_limit);
  bool stopped = false;
  for (const auto& row : rows) {
    std::size_t k = row.id == c.audit
                        ? std::min<std::size_t>(static_cast<std::size_t>(c.skip), row.ids.size())
                        : 0;
    if (!row_concerns(row, *list)) {
      --budget;
      k = row.ids.size();
    }
    for (; k < row.ids.size() && budget > 0; ++k, --budget) {
      auto it = item_of(bank, *list, row, row.ids[k]);
      if (!it) continue;
      const std::size_t b = item_bytes(*it);
      if (bytes + b > max_bytes && !page.items.empty()) break;
      bytes += b;
      page.items.push_back(std::move(*it));
    }
    if (k < row.ids.size()) {
      c = FeedCursor{false, row.id, 0, static_cast<std::int64_t>(k)};
      stopped = true;
      break;
    }
    if (row.ids.empty() && row_concerns(row, *list)) --budget;
    c = FeedCursor{false, row.id + 1, 0, 0};
    if (budget == 0) {
      stopped = true;
      break;
    }
  }
  page.next = cursor_text(c);
  page.more = !rows.empty() && (stopped || rows.size() == row_limit);
  return page;
}

ApplyReport apply_feed(Bank& bank, const FeedPage& page, const std::string& peer, std::int64_t into,
                       const Actor& who) {
  ApplyReport rep;
  rep.refused = page.refused;
  // Runs of the same operation go to the bank together, in the page's order (an add, then
  // the removal of the same entry, must stay in that order).
  std::size_t i = 0;
  const auto& items = page.items;
  while (i < items.size()) {
    std::size_t j = i;
    while (j < items.size() && items[j].op == items[i].op) ++j;
    switch (items[i].op) {
      case FeedItem::Op::Add: {
        std::vector<NewEntry> batch;
        for (std::size_t k = i; k < j; ++k) {
          const Entry& e = *items[k].entry;
          NewEntry n;
          n.sha256 = e.sha256;
          n.pdq = e.pdq;
          n.md5 = e.md5;
          n.quality = e.quality;
          n.label = e.label.substr(0, kMaxLabelBytes);
          n.source = e.source.substr(0, kMaxSourceBytes);
          n.origin = e.origin;
          n.list_id = into;
          n.added_by = who.name;
          n.peer = peer;
          n.external_id = std::to_string(items[k].id);
          batch.push_back(std::move(n));
        }
        // Every entry the peer lists is claimed by it, in the add's transaction: a new one,
        // or one held already in a list of the same kind (a removal by one peer then leaves
        // what another lists).
        const auto r = bank.add(batch, who, peer);
        rep.added += r.added;
        rep.duplicates += r.duplicates;
        rep.in_other_list += r.in_other_list;
        // Entries that came disabled: disabled here too (only those taken from the peer).
        std::vector<std::pair<std::string, const std::optional<Disabled>*>> want;
        for (std::size_t k = i; k < j; ++k)
          if (items[k].entry->disabled)
            want.emplace_back(std::to_string(items[k].id), &items[k].entry->disabled);
        set_states(bank, peer, want, who, rep);
        break;
      }
      case FeedItem::Op::Remove: {
        std::vector<std::string> ext;
        for (std::size_t k = i; k < j; ++k) ext.push_back(std::to_string(items[k].id));
        rep.removed += bank.release_claims(peer, ext, who);
        break;
      }
      case FeedItem::Op::State: {
        std::vector<std::pair<std::string, const std::optional<Disabled>*>> want;
        for (std::size_t k = i; k < j; ++k)
          want.emplace_back(std::to_string(items[k].id), &items[k].state);
        set_states(bank, peer, want, who, rep);
        break;
      }
    }
    i = j;
  }
  return rep;
}

}  // namespace hashwall
