// The change feed of one list, as `GET /v1/changes` serves it and `hashwall sync` applies
// it (issue #17, docs/EXCHANGE.md): what another organisation's bank needs to hold the same
// entries as this list, and to keep holding them as they are added, removed, disabled and
// enabled here.
//
// A feed is read in pages, each naming the cursor to ask with next. A first read (cursor
// "0") is a snapshot: the list's entries as they are, paged by id, then the audit log's
// changes from the moment the snapshot began (so whatever changed while it was read comes
// again, and applying it again does nothing). Applying a page is idempotent: a sync that
// died before it recorded its checkpoint reads the same page again, and its adds find their
// entries already there, its removals find them gone.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bank/bank.hpp"

namespace hashwall {

// Changes per page: the default, and the most a caller may ask for (an entry is ~300 bytes
// of JSON: a full page is ~1.5 MB, under serve's default --max-response).
inline constexpr std::size_t kFeedPageDefault = 1000;
inline constexpr std::size_t kFeedPageMax = 5000;
// The longest cursor text accepted.
inline constexpr std::size_t kMaxCursorBytes = 64;

// Where a reader is in a list's feed. A snapshot cursor pages the entries (`entry`: the
// last id sent) and remembers the audit id it began at; an incremental one resumes the
// audit log at row `audit`, skipping its first `skip` ids (a row may hold a million).
struct FeedCursor {
  bool snapshot = true;
  std::int64_t audit = 0;
  std::int64_t entry = 0;
  std::int64_t skip = 0;
};
// "0" (from the start: a snapshot), "N" (after audit row N), "sA.E" (snapshot from audit A,
// after entry E) or "A.K" (audit row A, after its first K ids). nullopt for anything else.
std::optional<FeedCursor> parse_cursor(std::string_view text);
std::string cursor_text(const FeedCursor& c);

struct FeedItem {
  enum class Op { Add, Remove, State };
  Op op = Op::Add;
  std::int64_t id = 0;            // the entry's id in the serving bank
  std::optional<Entry> entry;     // Add: the entry as it is now (its state included)
  std::optional<Disabled> state;  // State: its state now (nullopt: enabled)
};

struct FeedPage {
  std::string bank;   // the serving bank's id (Bank::bank_id)
  ListInfo list;      // the list as it is now
  std::string after;  // the cursor asked with
  std::string next;   // the cursor to ask with next (== after when nothing was new)
  bool more = false;  // more is ready now: ask again at once
  std::vector<FeedItem> items;
  std::int64_t refused = 0;  // parse_feed: changes left out as malformed (a bad SHA-256)
};

// One page of the list `list`'s feed after `after`, at most `limit` items (1..
// kFeedPageMax). Throws Error{Usage} for a list the bank does not have or a cursor that
// is not one; Error{Bank} when the bank cannot be read.
// A page's JSON stays under max_bytes (counting every text as if escaped), with at least one
// change in it. A cursor past the end of the log (a bank restored or replaced) is
// Error{Usage} too.
inline constexpr std::size_t kFeedPageBytes = 4u << 20;
FeedPage read_feed(const Bank& bank, const std::string& list, std::string_view after,
                   std::size_t limit, std::size_t max_bytes = kFeedPageBytes);

// The page as JSON (docs/API.md, GET /v1/changes) and back. parse_feed throws
// Error{Usage} naming what is wrong with a page that is not one (`where`: its source).
nlohmann::json feed_json(const FeedPage& page);
FeedPage parse_feed(const std::string& where, const nlohmann::json& j);

struct ApplyReport {
  std::int64_t added = 0, duplicates = 0, removed = 0, disabled = 0, enabled = 0, refused = 0;
  std::int64_t in_other_list = 0;  // duplicates of entries held in another local list
};

// Applies a page to `bank`: adds go to the list `into` (an entry from `peer` keeps its id
// there as its external id) and each is claimed by `peer` (Bank::add_claims), a duplicate
// too; a removal drops the peer's claim and removes the entry only when no other peer
// claims it and it is not the bank's own; a state change applies only to an entry the
// peer alone claims and that came from a sync. Every write is attributed to `who`.
// Idempotent.
ApplyReport apply_feed(Bank& bank, const FeedPage& page, const std::string& peer, std::int64_t into,
                       const Actor& who);

}  // namespace hashwall
