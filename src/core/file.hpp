// Helpers for hashwall's derived cache files (the PDQ and local-feature index caches):
// a checksum and an atomic write.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>

namespace hashwall {

// FNV-1a, 64 bit: catches a flipped or torn byte anywhere in a cache file. Not a defence
// against tampering (caches are derived data; the SQLite file is the truth).
std::uint64_t fnv1a(const std::uint8_t* p, std::size_t n) noexcept;

// Writes `bytes` to a temporary file next to `file`, fsyncs it, renames it over `file`
// and fsyncs the folder: after a crash there is the old file or the whole new one.
// Throws Error{Io} naming `file`.
void write_file_atomically(const std::filesystem::path& file, const std::string& bytes);

}  // namespace hashwall
