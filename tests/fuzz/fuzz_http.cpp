// libFuzzer: the body of a hash request to `hashwall serve`. The first byte picks the
// Content-Type the client claimed; the rest is the body. parse_hash_body must never
// throw or crash, and what it returns must be consistent: an error and no items, or
// 1..max_items well-formed hashes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "server/hash_body.hpp"

using namespace hashwall;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  static constexpr std::string_view kTypes[] = {"application/json",
                                                "text/csv",
                                                "text/plain",
                                                "",
                                                "application/x-www-form-urlencoded",
                                                "application/json; charset=utf-8",
                                                "TEXT/CSV",
                                                "application/octet-stream"};
  const std::string_view type = kTypes[data[0] % std::size(kTypes)];
  const std::string_view body(reinterpret_cast<const char*>(data + 1), size - 1);
  constexpr std::size_t kMaxItems = 64;  // small, so that the limit is reached often
  const server::ParsedHashes r = server::parse_hash_body(body, type, kMaxItems);
  if (r.error.empty()) {
    if (r.items.empty() || r.items.size() > kMaxItems) __builtin_trap();
  } else if (!r.items.empty()) {
    __builtin_trap();
  }
  for (const auto& item : r.items) {
    const auto again = Hash256::from_hex(item.hash.hex());
    if (!again || !(*again == item.hash)) __builtin_trap();
    if (item.quality && (*item.quality < 0 || *item.quality > 100)) __builtin_trap();
  }
  return 0;
}
