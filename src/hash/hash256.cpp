#include "hash/hash256.hpp"

#include <bit>

namespace hashwall {

std::string Hash256::hex() const {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(64, '0');
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    out[2 * i] = kDigits[bytes[i] >> 4];
    out[2 * i + 1] = kDigits[bytes[i] & 15];
  }
  return out;
}

namespace {
int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::optional<Hash256> Hash256::from_hex(std::string_view text) {
  if (text.size() != 64) return std::nullopt;
  Hash256 h;
  for (std::size_t i = 0; i < 32; ++i) {
    const int hi = hex_value(text[2 * i]), lo = hex_value(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    h.bytes[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return h;
}

int hamming(const Hash256& a, const Hash256& b) noexcept {
  int d = 0;
  for (std::size_t i = 0; i < a.bytes.size(); i += 8) {
    std::uint64_t x = 0, y = 0;
    for (int k = 0; k < 8; ++k) {
      x = x << 8 | a.bytes[i + k];
      y = y << 8 | b.bytes[i + k];
    }
    d += std::popcount(x ^ y);
  }
  return d;
}

}  // namespace hashwall
