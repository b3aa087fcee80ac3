// A list's change feed as it travels (feed.hpp): cursors, and pages as JSON and back. Pure:
// no bank is read here, so a peer's page (hostile input) is fuzzed on its own
// (tests/fuzz/fuzz_feed.cpp).
#include <algorithm>
#include <cctype>
#include <charconv>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "exchange/feed.hpp"

namespace hashwall {

using nlohmann::json;

namespace {

std::optional<std::int64_t> to_int(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  std::int64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  // Up to 2^62: a cursor's arithmetic (+1) never overflows.
  if (ec != std::errc() || p != s.data() + s.size() || v < 0 || v > (std::int64_t{1} << 62))
    return std::nullopt;
  return v;
}

// "A.B" -> (A, B)
std::optional<std::pair<std::int64_t, std::int64_t>> two_ints(std::string_view s) {
  const auto dot = s.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const auto a = to_int(s.substr(0, dot)), b = to_int(s.substr(dot + 1));
  if (!a || !b) return std::nullopt;
  return std::pair{*a, *b};
}

json disabled_json(const std::optional<Disabled>& d) {
  if (!d) return nullptr;
  json j = {{"reason", d->reason}};
  j["until"] = d->until ? json(*d->until) : json(nullptr);
  return j;
}

std::optional<Disabled> disabled_from(const std::string& where, const json& j) {
  if (j.is_null()) return std::nullopt;
  if (!j.is_object() || !j.contains("reason") || !j["reason"].is_string() ||
      j["reason"].get_ref<const std::string&>().empty())
    throw Error(ErrorKind::Usage, where,
                "a change's 'disabled' is not {\"reason\": ..., \"until\": ...}");
  Disabled d{j["reason"].get<std::string>().substr(0, kMaxReasonBytes), std::nullopt};
  if (j.contains("until") && !j["until"].is_null()) {
    if (!j["until"].is_number_integer())
      throw Error(ErrorKind::Usage, where, "a change's 'disabled.until' is not a whole number");
    d.until = j["until"].get<std::int64_t>();
  }
  return d;
}

}  // namespace

std::optional<FeedCursor> parse_cursor(std::string_view t) {
  if (t.empty() || t.size() > kMaxCursorBytes) return std::nullopt;
  FeedCursor c;
  if (t.front() == 's') {
    const auto ab = two_ints(t.substr(1));
    if (!ab) return std::nullopt;
    c.snapshot = true;
    c.audit = ab->first;
    c.entry = ab->second;
    return c;
  }
  c.snapshot = false;
  if (t.find('.') == std::string_view::npos) {
    const auto n = to_int(t);
    if (!n) return std::nullopt;
    if (*n == 0) {
      c.snapshot = true;  // audit = -1: take the log's high water when the read starts
      c.audit = -1;
      return c;
    }
    c.audit = *n + 1;
    return c;
  }
  const auto ab = two_ints(t);
  if (!ab || ab->first == 0) return std::nullopt;
  c.audit = ab->first;
  c.skip = ab->second;
  return c;
}

std::string cursor_text(const FeedCursor& c) {
  if (c.snapshot)
    return c.audit < 0 ? "0" : "s" + std::to_string(c.audit) + "." + std::to_string(c.entry);
  return std::to_string(c.audit) + "." + std::to_string(c.skip);
}

json feed_json(const FeedPage& page) {
  json items = json::array();
  for (const auto& it : page.items) {
    json j = {{"id", it.id}};
    switch (it.op) {
      case FeedItem::Op::Add: {
        const Entry& e = *it.entry;
        j["op"] = "add";
        j["pdq"] = e.pdq ? json(e.pdq->hex()) : json(nullptr);
        j["quality"] = e.quality ? json(*e.quality) : json(nullptr);
        j["sha256"] = e.sha256 ? json(*e.sha256) : json(nullptr);
        j["md5"] = e.md5 ? json(*e.md5) : json(nullptr);
        j["label"] = e.label;
        j["source"] = e.source;
        j["origin"] = origin_name(e.origin);
        j["added_at"] = e.added_at;
        j["disabled"] = disabled_json(e.disabled);
        break;
      }
      case FeedItem::Op::Remove:
        j["op"] = "remove";
        break;
      case FeedItem::Op::State:
        j["op"] = "state";
        j["disabled"] = disabled_json(it.state);
        break;
    }
    items.push_back(std::move(j));
  }
  json list = {{"name", page.list.name},
               {"kind", list_kind_name(page.list.kind)},
               {"description", page.list.description},
               {"organisation", page.list.organisation},
               {"terms", page.list.terms},
               {"disabled", disabled_json(page.list.disabled)}};
  return {{"bank", page.bank}, {"list", std::move(list)}, {"after", page.after},
          {"next", page.next}, {"more", page.more},       {"changes", std::move(items)}};
}

FeedPage parse_feed(const std::string& where, const json& j) {
  const auto bad = [&](const std::string& why) { return Error(ErrorKind::Usage, where, why); };
  const auto str = [&](const json& o, const char* key) -> std::string {
    if (!o.is_object() || !o.contains(key) || !o[key].is_string())
      throw bad(std::string("'") + key + "' is missing or not a string");
    return o[key].get<std::string>();
  };
  if (!j.is_object()) throw bad("the answer is not a JSON object");
  FeedPage page;
  if (!j.contains("list") || !j["list"].is_object()) throw bad("'list' is missing");
  const json& l = j["list"];
  page.list.name = str(l, "name");
  const auto kind = parse_list_kind(str(l, "kind"));
  if (!kind) throw bad("the list's kind is neither block nor allow");
  page.list.kind = *kind;
  page.list.description = str(l, "description").substr(0, kMaxListTextBytes);
  page.list.organisation = str(l, "organisation").substr(0, kMaxListTextBytes);
  page.list.terms = str(l, "terms").substr(0, kMaxListTextBytes);
  if (l.contains("disabled")) page.list.disabled = disabled_from(where, l["disabled"]);
  if (j.contains("bank") && j["bank"].is_string())
    page.bank = j["bank"].get<std::string>().substr(0, 64);
  page.after = str(j, "after");
  page.next = str(j, "next");
  if (!parse_cursor(page.next)) throw bad("'next' is not a cursor");
  if (!j.contains("more") || !j["more"].is_boolean()) throw bad("'more' is missing");
  page.more = j["more"].get<bool>();
  if (!j.contains("changes") || !j["changes"].is_array()) throw bad("'changes' is missing");
  if (j["changes"].size() > kFeedPageMax)
    throw bad("more than " + std::to_string(kFeedPageMax) + " changes in one page");
  std::size_t n = 0;
  for (const json& c : j["changes"]) {
    ++n;
    const auto at = [&](const std::string& why) {
      return bad("change " + std::to_string(n) + ": " + why);
    };
    if (!c.is_object() || !c.contains("id") || !c["id"].is_number_integer() ||
        c["id"].get<std::int64_t>() <= 0)
      throw at("no positive 'id'");
    FeedItem it;
    it.id = c["id"].get<std::int64_t>();
    const std::string op = str(c, "op");
    if (op == "remove") {
      it.op = FeedItem::Op::Remove;
    } else if (op == "state") {
      it.op = FeedItem::Op::State;
      it.state = disabled_from(where, c.value("disabled", json(nullptr)));
    } else if (op == "add") {
      it.op = FeedItem::Op::Add;
      Entry e;
      e.id = it.id;
      // An entry of a file-hash list (bank format 6) has no PDQ hash: null.
      if (c.contains("pdq") && !c["pdq"].is_null()) {
        const auto h = Hash256::from_hex(str(c, "pdq"));
        if (!h) throw at("'pdq' is not 64 hex characters");
        e.pdq = *h;
      }
      if (c.contains("quality") && !c["quality"].is_null()) {
        if (!c["quality"].is_number_integer() || c["quality"].get<std::int64_t>() < 0 ||
            c["quality"].get<std::int64_t>() > 100)
          throw at("'quality' is not 0 to 100");
        e.quality = c["quality"].get<int>();
      }
      // The file hashes, lowercased. A malformed one, or an entry with nothing to be found
      // by, leaves the entry out, counted: one bad entry must not hold the whole feed up.
      bool malformed = false;
      const auto file_hash = [&](const char* key,
                                 std::size_t digits) -> std::optional<std::string> {
        if (!c.contains(key) || c[key].is_null()) return std::nullopt;
        std::string h = str(c, key);
        std::transform(h.begin(), h.end(), h.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        if (h.size() != digits || h.find_first_not_of("0123456789abcdef") != std::string::npos) {
          malformed = true;
          return std::nullopt;
        }
        return h;
      };
      e.sha256 = file_hash("sha256", 64);
      e.md5 = file_hash("md5", 32);
      if (malformed || (!e.pdq && !e.sha256 && !e.md5)) {
        ++page.refused;
        continue;
      }
      e.label = str(c, "label");
      e.source = str(c, "source");
      const std::string origin = str(c, "origin");
      if (origin != "indexed" && origin != "imported")
        throw at("'origin' is not indexed or imported");
      e.origin = origin == "indexed" ? Origin::Indexed : Origin::Imported;
      e.disabled = disabled_from(where, c.value("disabled", json(nullptr)));
      it.entry = std::move(e);
    } else {
      throw at("'op' is not add, remove or state");
    }
    page.items.push_back(std::move(it));
  }
  return page;
}

}  // namespace hashwall
