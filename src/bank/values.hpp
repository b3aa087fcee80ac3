// Small value helpers shared by the bank and its stores (private to src/bank): numbers
// from meta text, hashes from blobs, file sizes, the change log's id lists.
#pragma once

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "hash/hash256.hpp"

namespace hashwall::bank_detail {

inline std::optional<std::int64_t> parse_int(std::string_view s) {
  std::int64_t v = 0;
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || s.empty()) return std::nullopt;
  return v;
}

inline std::optional<std::uint64_t> parse_uint(std::string_view s) {
  std::uint64_t v = 0;
  const auto* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || s.empty()) return std::nullopt;
  return v;
}

inline std::uintmax_t file_size_or_zero(const std::filesystem::path& p) {
  std::error_code ec;
  const auto n = std::filesystem::file_size(p, ec);
  return ec ? 0 : n;
}
inline std::optional<Hash256> hash_from_blob(std::string_view b) {
  if (b.size() != 32) return std::nullopt;
  Hash256 h;
  std::memcpy(h.bytes.data(), b.data(), 32);
  return h;
}

// A hash as it is stored: its 32 bytes.
inline std::string_view hash_bytes(const Hash256& h) {
  return std::string_view(reinterpret_cast<const char*>(h.bytes.data()), h.bytes.size());
}

// The change log's id lists: ascending ids as LEB128 varints of their differences, so a
// batch of consecutive ids costs a byte each.
inline std::string encode_ids(std::vector<std::int64_t> ids) {
  std::sort(ids.begin(), ids.end());
  std::string out;
  std::uint64_t prev = 0;
  for (const auto id : ids) {
    std::uint64_t d = static_cast<std::uint64_t>(id) - prev;
    prev = static_cast<std::uint64_t>(id);
    do {
      const auto byte = static_cast<std::uint8_t>(d & 0x7f);
      d >>= 7;
      out.push_back(static_cast<char>(byte | (d ? 0x80 : 0)));
    } while (d);
  }
  return out;
}

inline std::optional<std::vector<std::int64_t>> decode_ids(std::string_view b) {
  std::vector<std::int64_t> out;
  std::uint64_t prev = 0, d = 0;
  int shift = 0;
  for (const char c : b) {
    const auto byte = static_cast<std::uint8_t>(c);
    if (shift > 63) return std::nullopt;
    d |= static_cast<std::uint64_t>(byte & 0x7f) << shift;
    shift += 7;
    if (byte & 0x80) continue;
    prev += d;
    out.push_back(static_cast<std::int64_t>(prev));
    d = 0;
    shift = 0;
  }
  if (shift != 0) return std::nullopt;
  return out;
}

}  // namespace hashwall::bank_detail
