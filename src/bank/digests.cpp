#include "bank/digests.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <cstring>

namespace hashwall::bank_detail {

namespace {

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

std::uint64_t get_u64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void put_field(std::string& out, std::string_view f) {
  put_u64(out, f.size());
  out.append(f);
}

Digest from_raw(const unsigned char* d) {
  Digest out;
  for (int i = 0; i < 4; ++i) out.lane[i] = get_u64(d + 8 * i);
  return out;
}

// SplitMix64's finaliser: a bijective mix with full avalanche.
std::uint64_t mix(std::uint64_t x) noexcept {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

Digest& Digest::operator+=(const Digest& o) noexcept {
  for (int i = 0; i < 4; ++i) lane[i] += o.lane[i];
  return *this;
}

Digest& Digest::operator-=(const Digest& o) noexcept {
  for (int i = 0; i < 4; ++i) lane[i] -= o.lane[i];
  return *this;
}

std::string Digest::bytes() const {
  std::string out;
  for (const auto v : lane) put_u64(out, v);
  return out;
}

std::string Digest::hex() const {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (const unsigned char c : bytes()) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::optional<Digest> Digest::from_bytes(std::string_view b) {
  if (b.size() != 32) return std::nullopt;
  return from_raw(reinterpret_cast<const unsigned char*>(b.data()));
}

std::optional<Digest> Digest::from_hex(std::string_view h) {
  if (h.size() != 64) return std::nullopt;
  unsigned char raw[32];
  for (std::size_t i = 0; i < 32; ++i) {
    int v = 0;
    for (int k = 0; k < 2; ++k) {
      const char c = h[2 * i + k];
      int d;
      if (c >= '0' && c <= '9')
        d = c - '0';
      else if (c >= 'a' && c <= 'f')
        d = c - 'a' + 10;
      else
        return std::nullopt;
      v = v * 16 + d;
    }
    raw[i] = static_cast<unsigned char>(v);
  }
  return from_raw(raw);
}

Digester::Digester(std::string key) : key_(std::move(key)) {
  if (key_.empty()) return;
  const std::string text = std::string("hashwall seal key\n") + key_;
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), d);
  key_id_ = Digest::from_bytes(std::string_view(reinterpret_cast<const char*>(d), 32))
                ->hex()
                .substr(0, 16);
}

Digest Digester::part(std::string_view tag, std::int64_t id, std::string_view bytes) const {
  std::string msg;
  msg.reserve(tag.size() + 9 + bytes.size());
  msg.append(tag);
  msg += '\0';
  put_u64(msg, static_cast<std::uint64_t>(id));
  msg.append(bytes);
  unsigned char d[EVP_MAX_MD_SIZE];
  if (keyed()) {
    unsigned int len = 0;
    HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
         reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), d, &len);
  } else {
    SHA256(reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), d);
  }
  return from_raw(d);
}

std::string Digester::seal(std::string_view settings_sha256, const Digest& records) const {
  if (!keyed()) return {};
  std::string msg = "hashwall seal 1\n";
  msg.append(settings_sha256);
  msg += '\n';
  msg += records.hex();
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
       reinterpret_cast<const unsigned char*>(msg.data()), msg.size(), d, &len);
  return from_raw(d).hex();
}

std::string entry_row_payload(std::string_view sha256, std::string_view pdq_bytes,
                              std::string_view quality, std::string_view label,
                              std::string_view source, std::string_view origin,
                              std::int64_t added_at) {
  std::string out;
  for (const auto f : {sha256, pdq_bytes, quality, label, source, origin}) put_field(out, f);
  put_field(out, std::to_string(added_at));
  return out;
}

Digest pdq_term(std::int64_t id, const Hash256& h) noexcept {
  std::uint64_t w[4];
  std::memcpy(w, h.bytes.data(), 32);
  Digest out;
  for (int lane = 0; lane < 4; ++lane) {
    std::uint64_t x = mix(static_cast<std::uint64_t>(id) ^ (0x9e3779b97f4a7c15ULL * (lane + 1)));
    for (int i = 0; i < 4; ++i) x = mix(x ^ w[(i + lane) & 3]);
    out.lane[lane] = x;
  }
  return out;
}

}  // namespace hashwall::bank_detail
