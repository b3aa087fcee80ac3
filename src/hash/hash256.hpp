// A 256-bit perceptual hash (PDQ) and its textual form.
//
// Byte order: bytes[0] holds the first two hex characters of Meta's printed form, so
// hex <-> bytes is a plain conversion and the bytes can be handed to FAISS binary
// indexes as they are (Hamming distance does not depend on bit order).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace hashwall {

struct Hash256 {
  std::array<std::uint8_t, 32> bytes{};

  // Meta numbers PDQ bits 0..255 as (row * 16 + column) of the 16x16 DCT and prints
  // the sixteen 16-bit words from word 15 down to word 0 (pdq/cpp/common/pdqhashtypes).
  void set_bit(int k) noexcept {
    const int word = k >> 4, bit = k & 15;
    const int byte = 2 * (15 - word) + (bit >= 8 ? 0 : 1);
    bytes[byte] |= static_cast<std::uint8_t>(1u << (bit & 7));
  }
  bool bit(int k) const noexcept {
    const int word = k >> 4, b = k & 15;
    const int byte = 2 * (15 - word) + (b >= 8 ? 0 : 1);
    return (bytes[byte] >> (b & 7)) & 1u;
  }

  std::string hex() const;  // 64 lowercase hex characters, as Meta prints it
  // Parses exactly 64 hex characters (either case); nullopt on anything else.
  static std::optional<Hash256> from_hex(std::string_view text);

  friend bool operator==(const Hash256&, const Hash256&) = default;
  friend auto operator<=>(const Hash256&, const Hash256&) = default;
};

int hamming(const Hash256& a, const Hash256& b) noexcept;

}  // namespace hashwall
