// Small value helpers shared by the bank and its SQLite store (private to src/bank):
// numbers from meta text, hashes from blobs, file sizes.
#pragma once

#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string_view>

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

}  // namespace hashwall::bank_detail
