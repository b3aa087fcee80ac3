// libFuzzer: hash-list import. The first byte picks the format (pdq-csv, threatexchange,
// hex, md5, sha256), the rest is the file.
// Properties checked beyond "no crash": every line is either an item or an error, and a
// list written back by write_hash_list parses again to the same hashes.
#include <cstddef>
#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "hashlist/hashlist.hpp"

using namespace hashwall;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const ListFormat formats[] = {ListFormat::PdqCsv, ListFormat::ThreatExchange, ListFormat::Hex,
                                ListFormat::Md5, ListFormat::Sha256};
  const ListFormat fmt = formats[data[0] % 5];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const ParsedList parsed = parse_hash_list(text, fmt);
  for (const auto& e : parsed.errors)
    if (e.line < 1 || e.reason.empty()) __builtin_trap();
  std::ostringstream out;
  try {
    write_hash_list(out, fmt, parsed.items);
  } catch (const Error&) {
    return 0;  // e.g. a pdq-csv name with a line break cannot be written: refused, fine
  }
  const ParsedList again = parse_hash_list(out.str(), fmt);
  if (!again.errors.empty() || again.items.size() != parsed.items.size()) __builtin_trap();
  for (std::size_t i = 0; i < again.items.size(); ++i)
    if (again.items[i].signal != parsed.items[i].signal ||
        again.items[i].hash != parsed.items[i].hash ||
        again.items[i].file_hash != parsed.items[i].file_hash)
      __builtin_trap();
  // An item that is not an error names no unsupported type, and a file hash is lowercase hex.
  for (const auto& it : parsed.items)
    if (it.signal != ListSignal::Pdq &&
        it.file_hash.find_first_not_of("0123456789abcdef") != std::string::npos)
      __builtin_trap();
  return 0;
}
