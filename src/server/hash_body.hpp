// The body of a hash request to `hashwall serve` (POST /v1/match/hash, POST /v1/entries
// with hashes), parsed without HTTP, SQLite or pixels: pure, so that it is fuzzed on its
// own (tests/fuzz/fuzz_http.cpp).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hash/hash256.hpp"

namespace hashwall::server {

// One hash sent by a client that hashes on its side (StopNCII model).
struct HashItem {
  Hash256 hash;
  std::optional<int> quality;  // unknown: trusted, as imported lists are
  std::string name;            // client's reference, echoed back / stored as source
};

struct ParsedHashes {
  std::vector<HashItem> items;
  std::string label;   // JSON bodies: "label"
  std::string source;  // JSON bodies: "source"
  std::string error;   // non-empty: the body is malformed, and why
};

// Accepted forms:
//   JSON:  {"hash": "<hex>", "quality": 90}
//          {"hashes": ["<hex>", {"pdq": "<hex>", "quality": 80, "name": "x"}], "label": ..}
//          ["<hex>", ...]
//   text/csv: Meta's pdq-photo-hasher CSV (hash,quality,name)
//   other text: one hex hash per line ('#' comments, blank lines ignored)
// At most max_items hashes; none is an error. Never throws on any input.
ParsedHashes parse_hash_body(std::string_view body, std::string_view content_type,
                             std::size_t max_items);

}  // namespace hashwall::server
