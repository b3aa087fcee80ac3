// Hash lists exchanged with other organisations: Meta's pdq-photo-hasher CSV
// (`hash,quality,name`), ThreatExchange/HMA signal lines (`pdq <hex>`), and plain hex
// (one hash per line). Pure: text in, values out.
#pragma once

#include <cstddef>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "hash/hash256.hpp"

namespace hashwall {

// The longest name a pdq-csv line may carry: the longest source a bank stores
// (bank.hpp kMaxSourceBytes).
inline constexpr std::size_t kMaxListNameBytes = 4096;

enum class ListFormat { PdqCsv, Hma, Hex };
// "pdq-csv", "hma", "hex"; nullopt otherwise.
std::optional<ListFormat> parse_list_format(std::string_view name);
const char* list_format_name(ListFormat) noexcept;

struct ListItem {
  Hash256 hash;
  std::optional<int> quality;  // pdq-csv only
  std::string name;            // pdq-csv third field; empty otherwise
  int line = 0;                // 1-based line number in the input
};

struct ListError {
  int line = 0;        // 1-based
  std::string reason;  // e.g. "hash has 63 hex characters, expected 64"
};

struct ParsedList {
  std::vector<ListItem> items;
  std::vector<ListError> errors;  // every bad line, not only the first
};

// Tolerates a UTF-8 BOM, CRLF line ends, blank lines, and leading/trailing spaces.
// Lines starting with '#' are comments. Upper-case hex is accepted.
ParsedList parse_hash_list(std::string_view text, ListFormat format);

void write_hash_list(std::ostream& out, ListFormat format, std::span<const ListItem> items);

}  // namespace hashwall
