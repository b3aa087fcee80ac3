// Tamper evidence for a bank's records (#15, docs/BANK_FORMAT.md "Checksums and seal").
// Private to src/bank.
//
// Every stored part of an entry (its row in `entries`, its local features, its embedding,
// each registered signal's record) is hashed with its entry id and a tag naming the part;
// an entry's digest, written beside it at insert, is the sum of its parts' hashes, and the
// bank's records digest (meta) the sum of all entry digests, kept current by each write.
// Sums, not a hash chain, so that a removal subtracts what an insert added and neither
// needs the other entries. `check` recomputes both from what is stored.
//
// Unkeyed, a part's hash is SHA-256: edits made without knowing of the digests (a careless
// session in a database shell, a damaged disk, a changed label) are found, a forger who
// recomputes them is not. Keyed (a bank created with --seal-key), it is HMAC-SHA256 with the key,
// and meta's `seal` is an HMAC over the settings digest and the records digest: without the key
// nobody can add, alter or remove an entry, or edit a setting, so that the key's holder's check
// still passes.
//
// The PDQ digest is a faster, unkeyed checksum of the (id, hash) pairs alone, also kept in
// meta: an index cache must add up to it before a query trusts the cache.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "hash/hash256.hpp"

namespace hashwall::bank_detail {

// Four 64-bit lanes, each summed modulo 2^64.
struct Digest {
  std::array<std::uint64_t, 4> lane{};
  Digest& operator+=(const Digest& o) noexcept;
  Digest& operator-=(const Digest& o) noexcept;
  bool operator==(const Digest&) const = default;
  std::string bytes() const;  // 32 bytes, little endian lanes
  std::string hex() const;    // 64 hex characters
  static std::optional<Digest> from_bytes(std::string_view b);
  static std::optional<Digest> from_hex(std::string_view h);
};

class Digester {
 public:
  // An empty key: plain SHA-256.
  explicit Digester(std::string key = {});
  bool keyed() const noexcept { return !key_.empty(); }
  // "" unkeyed; else the key's id, 16 hex characters that name it without revealing it.
  const std::string& key_id() const noexcept { return key_id_; }

  // The hash of one stored part of entry `id`.
  Digest part(std::string_view tag, std::int64_t id, std::string_view bytes) const;
  // The seal (64 hex) over the settings digest and the records digest; keyed only.
  std::string seal(std::string_view settings_sha256, const Digest& records) const;

 private:
  std::string key_;
  std::string key_id_;
};

// The payload of an entry's `entries` row as part() hashes it: every field, each with its
// length, so that moving bytes between fields changes it. Optional fields are "" when
// absent (a present SHA-256 is 64 characters, a present quality a number).
std::string entry_row_payload(std::string_view sha256, std::string_view pdq_bytes,
                              std::string_view quality, std::string_view label,
                              std::string_view source, std::string_view origin,
                              std::int64_t added_at);

// Part tags.
inline constexpr std::string_view kEntryPart = "entry";
inline constexpr std::string_view kLocalPart = "local";
inline constexpr std::string_view kEmbedPart = "embed";
// Format 6: an entry's MD5 (32 hex), a part of its own so that the digests of entries
// without one are those of format 5.
inline constexpr std::string_view kMd5Part = "md5";
// A signal's record: "signal:NAME", except the local features and the embedding, whose
// parts were tagged "local" and "embed" before they moved onto the Signal interface (the
// tag is part of every stored digest; a local record is the payload the "local" part
// hashed: both blobs, each after its length).
inline std::string record_part(std::string_view signal) {
  return signal == kEmbedPart || signal == kLocalPart ? std::string(signal)
                                                      : "signal:" + std::string(signal);
}

// The PDQ digest's term for one (id, hash) pair.
Digest pdq_term(std::int64_t id, const Hash256& h) noexcept;

}  // namespace hashwall::bank_detail
