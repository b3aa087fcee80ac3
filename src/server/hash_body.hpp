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
#include "hashlist/hashlist.hpp"

namespace hashwall::server {

// One hash sent by a client that hashes on its side (StopNCII model).
struct HashItem {
  Hash256 hash;
  std::optional<int> quality;  // unknown: trusted, as imported lists are
  std::string name;            // client's reference, echoed back / stored as source
  // A file's MD5 or SHA-256 instead of a PDQ hash (JSON {"md5": hex} or {"sha256": hex}):
  // exact copies, as file-hash lists hold them.
  ListSignal signal = ListSignal::Pdq;
  std::string file_hash{};  // lowercase hex
};

struct ParsedHashes {
  std::vector<HashItem> items;
  std::string label;   // JSON bodies: "label"
  std::string source;  // JSON bodies: "source"
  std::string error;   // non-empty: the body is malformed, and why
};

// Accepted forms:
//   JSON:  {"hash": "<hex>", "quality": 90}
//          {"hashes": ["<hex>", {"pdq": "<hex>", "quality": 80, "name": "x"},
//                      {"md5": "<32 hex>"}, {"sha256": "<64 hex>"}], "label": ..}
//          ["<hex>", ...]
//   text/csv: Meta's pdq-photo-hasher CSV (hash,quality,name)
//   other text: one hex hash per line ('#' comments, blank lines ignored)
// At most max_items hashes; none is an error. Never throws on any input.
ParsedHashes parse_hash_body(std::string_view body, std::string_view content_type,
                             std::size_t max_items);

}  // namespace hashwall::server
