// libFuzzer: a peer's change-feed page, as `hashwall sync` reads it from another
// organisation's server (GET /v1/changes): hostile input. Properties beyond "no crash":
// parse_feed either throws Error{Usage} or returns a page whose cursor parses, whose adds
// each have something to be found by, with at most kFeedPageMax changes; and a page it
// accepted, written back by feed_json, parses again to the same changes.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string_view>

#include "core/error.hpp"
#include "exchange/feed.hpp"

using namespace hashwall;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // nlohmann parses and frees nested JSON without recursion (tests/test_server.cpp, "a body
  // of deeply nested JSON"); sync parses a page the same way.
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return 0;
  FeedPage page;
  try {
    page = parse_feed("peer", j);
  } catch (const Error& e) {
    if (e.kind() != ErrorKind::Usage || e.reason().empty()) __builtin_trap();
    return 0;
  }
  if (!parse_cursor(page.next) || page.items.size() > kFeedPageMax) __builtin_trap();
  for (const auto& it : page.items)
    if (it.op == FeedItem::Op::Add &&
        (!it.entry || (!it.entry->pdq && !it.entry->sha256 && !it.entry->md5)))
      __builtin_trap();
  const FeedPage again = parse_feed("again", feed_json(page));
  if (again.items.size() != page.items.size() || again.next != page.next) __builtin_trap();
  for (std::size_t i = 0; i < page.items.size(); ++i) {
    const auto &a = page.items[i], &b = again.items[i];
    if (a.op != b.op || a.id != b.id) __builtin_trap();
    if (a.entry && (a.entry->pdq != b.entry->pdq || a.entry->md5 != b.entry->md5 ||
                    a.entry->sha256 != b.entry->sha256 || a.entry->label != b.entry->label))
      __builtin_trap();
  }
  return 0;
}
