// Helpers for hashwall's derived cache files (the PDQ and local-feature index caches):
// little-endian integers, a checksum and an atomic write.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace hashwall {

// Appends the low `bytes` bytes of v, least significant first (1 <= bytes <= 8).
inline void put_le(std::string& out, std::uint64_t v, int bytes = 8) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// Reads `bytes` bytes at p written by put_le. The caller checks the bounds.
inline std::uint64_t get_le(const void* p, int bytes = 8) noexcept {
  const auto* b = static_cast<const std::uint8_t*>(p);
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | b[i];
  return v;
}

// FNV-1a, 64 bit: catches a flipped or torn byte anywhere in a cache file. Not a defence
// against tampering (caches are derived data; the SQLite file is the truth).
std::uint64_t fnv1a(const std::uint8_t* p, std::size_t n) noexcept;

// Writes `bytes` to a temporary file next to `file`, fsyncs it, renames it over `file`
// and fsyncs the folder: after a crash there is the old file or the whole new one.
// Throws Error{Io} naming `file`.
void write_file_atomically(const std::filesystem::path& file, const std::string& bytes);

}  // namespace hashwall
