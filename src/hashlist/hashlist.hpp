// Hash lists exchanged with other organisations: Meta's pdq-photo-hasher CSV
// (`hash,quality,name`), python-threatexchange's signal-type lines (`pdq <hex>`,
// `video_md5 <hex>`, ...: what HMA and ThreatExchange's file exchange read), plain hex
// PDQ hashes, and MD5 / SHA-256 file-hash lists (one digest per line: exact copies, the
// form exchanges use for videos). Pure: text in, values out.
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

enum class ListFormat { PdqCsv, ThreatExchange, Hex, Md5, Sha256 };
// "pdq-csv", "threatexchange" (or its old name "hma"), "hex", "md5", "sha256"; nullopt
// otherwise.
std::optional<ListFormat> parse_list_format(std::string_view name);
const char* list_format_name(ListFormat) noexcept;

// What a list item is: a PDQ hash, the MD5 or SHA-256 of a file's bytes, or a video's vPDQ
// frame hashes (threatexchange only).
enum class ListSignal { Pdq, Md5, Sha256, Vpdq };

struct ListItem {
  Hash256 hash;                // signal Pdq
  std::optional<int> quality;  // pdq-csv only
  std::string name;            // pdq-csv third field; empty otherwise
  int line = 0;                // 1-based line number in the input
  ListSignal signal = ListSignal::Pdq;
  std::string file_hash{};  // signal Md5 or Sha256: 32 or 64 lowercase hex
  // signal Vpdq: python-threatexchange's serialisation, a JSON array of
  // "pdq_hex,quality,timestamp" strings, as the line carried it (read by parse_vpdq_json,
  // video/vpdq_record.hpp: this parser only checks it is a JSON array's text).
  std::string vpdq{};
};

struct ListError {
  int line = 0;        // 1-based
  std::string reason;  // e.g. "hash has 63 hex characters, expected 64"
  // threatexchange: a well-formed line of a signal type hashwall does not match (url,
  // raw_text, vpdq, ...), named here; an importer may choose to skip these.
  std::string unsupported_type;
};

struct ParsedList {
  std::vector<ListItem> items;
  std::vector<ListError> errors;  // every bad line, not only the first
};

// Tolerates a UTF-8 BOM, CRLF line ends, blank lines, and leading/trailing spaces.
// Lines starting with '#' are comments. Upper-case hex is accepted (and lowercased).
// threatexchange lines are `<type> <signal>`: pdq; photo_md5, video_md5 (MD5 of the
// file); video_sha256; vpdq (the rest of the line). Other types python-threatexchange
// writes are refused as unsupported_type.
ParsedList parse_hash_list(std::string_view text, ListFormat format);

// Whether a format can carry an item of this signal (pdq-csv and hex: PDQ only; md5 and
// sha256: their own; threatexchange: all four).
bool format_carries(ListFormat, ListSignal) noexcept;

// Items the format cannot carry (format_carries) are refused with Error{Usage}.
void write_hash_list(std::ostream& out, ListFormat format, std::span<const ListItem> items);

}  // namespace hashwall
