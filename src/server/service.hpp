// What the HTTP service does, without HTTP: each endpoint is a function from the request's
// bytes and parameters to a status and a JSON body. The transport (server.cpp) only moves
// bytes, enforces the queue and authentication, and counts. Tests call this directly.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bank/bank.hpp"
#include "hash/hash256.hpp"
#include "match/fingerprint.hpp"
#include "match/flood.hpp"
#include "match/matcher.hpp"
#include "server/auth.hpp"
#include "server/hash_body.hpp"
#include "server/metrics.hpp"

namespace hashwall::server {

using json = nlohmann::ordered_json;
using Params = std::multimap<std::string, std::string>;  // URL query parameters

struct Reply {
  int status = 200;
  json body;
  std::vector<std::pair<std::string, std::string>> headers;
};
// {"error": message, "code": status}
Reply error_reply(int status, std::string message);
// Runs a handler. An Error becomes its status (400, 404, 413, 503, ...); any other
// exception (OpenCV's, std::bad_alloc) a 500 of the same shape: a client always gets JSON.
Reply guarded(const std::function<Reply()>& handler, int retry_after_seconds);
// `text` with each absolute file path cut to its last component ("/srv/banks/cases.db:
// busy" -> "cases.db: busy"): no path of the server's reaches a client (#15), whether it
// names the bank, a model or a library's source file in an exception message.
std::string without_paths(std::string_view text);

struct ServiceLimits {
  std::uint64_t max_pixels = 200'000'000;  // as the CLI's --max-pixels
  std::uint64_t max_body_bytes = 25'000'000;
  // Videos and animated GIF/PNG on /v1/match (told apart by their bytes, is_video_bytes),
  // checked frame by frame as `query` checks them (match/video_check.hpp) within
  // max_processing, up to this many bytes: their own limit, so that /v1/match takes a body
  // of the larger of the two and an image is still held to max_body_bytes. 0: no videos
  // (one is then matched by its bytes only). `serve --max-video-body`.
  std::uint64_t max_video_bytes = 32'000'000;
  // The largest body /v1/match accepts (the other endpoints: max_body_bytes).
  std::uint64_t max_match_body() const { return std::max(max_body_bytes, max_video_bytes); }
  std::size_t max_hashes = 10'000;  // hashes in one /v1/match/hash or /v1/entries body
  int retry_after_seconds = 1;      // sent with 503
  // Work on one request (decode, fingerprint, search) past this gets 503 at the next
  // stage boundary, before anything is written; zero: no limit. `serve --timeout`.
  std::chrono::microseconds max_processing{std::chrono::seconds(10)};
  // What a client may ask of a match (#15: a threshold of 256 with min_quality 0 and a
  // large top read a whole bank out): looser than the bank's own threshold and minimum
  // quality only up to these (unset: the bank's recorded values), at most max_top hits.
  // `serve --max-threshold`, `--min-quality-floor`, `--max-top`.
  std::optional<int> max_threshold;
  std::optional<int> min_quality_floor;
  int max_top = 100;
  // The largest answer the service builds: a hash request asking for more (10,000 hashes,
  // each with up to `top` hits and their kilobyte labels) gets 400 instead of an answer of
  // gigabytes. `serve --max-response`.
  std::size_t max_response_bytes = 16'000'000;
  // The flood guard (match/flood.hpp): an entry matching too large a share of the queries
  // is disabled with reason "flood". `serve --flood-share`, `--flood-window`, ...
  FloodOptions flood;
};
// Most hits an admin may ask for (admins are not held to the ceilings above).
inline constexpr int kAdminMaxTop = 1000;

// Which signals images are fingerprinted with (cli::signal_setup builds them from the
// bank): queries take more keypoints and the mirror image, entries the bank's share.
// The embedder they point to must outlive the service.
struct ServiceSignals {
  FingerprintOptions query;
  FingerprintOptions add;
};

// Who asks for a write and where it goes: the audit log's actor ("token:NAME") and reason,
// and the list new entries go to (default: "default").
struct WriteContext {
  Actor who;
  std::string list;
};

class Service {
 public:
  // The bank must outlive the service. `writable`: the bank was opened read-write.
  Service(Bank& bank, ServiceLimits limits, Metrics& metrics, bool writable,
          ServiceSignals signals = {});

  // POST /v1/match: one image's bytes. Parameters: threshold, min_quality, top, dihedral.
  // What the answer shows of each entry depends on the caller's role (auth.hpp): below
  // read, only the entry id and the signal that decided.
  // A video (is_video_bytes) is checked frame by frame and against the bank's videos; its
  // answer has "video" with the times each entry shows.
  Reply match_image(std::span<const std::uint8_t> bytes, const std::string& name,
                    const Params& params, Role role = Role::Match) const;
  // POST /v1/match/hash
  Reply match_hashes(std::string_view body, std::string_view content_type, const Params& params,
                     Role role = Role::Match) const;
  // POST /v1/entries with an image
  Reply add_image(std::span<const std::uint8_t> bytes, const std::string& name,
                  const std::string& label, const std::string& source,
                  const WriteContext& ctx = {});
  // POST /v1/entries with hashes (JSON or text, as parse_hash_body)
  Reply add_hashes(std::string_view body, std::string_view content_type, const std::string& label,
                   const std::string& source, const WriteContext& ctx = {});
  // DELETE /v1/entries/{id}
  Reply remove_entry(std::string_view id_text, const WriteContext& ctx = {});
  // GET /v1/audit: the audit log's events after `after`, at most `limit` (1..1000).
  Reply audit(const Params& params) const;
  // GET /v1/changes: a page of one list's change feed (exchange/feed.hpp). Parameters:
  // list (required), after (a cursor: 0 to start), limit (1..kFeedPageMax).
  Reply changes(const Params& params) const;
  // POST /v1/verdicts: a reviewer's verdict on a match (Bank::record_verdict), a JSON body
  // {"entry", "query_sha256", "verdict", "reason"?, "allow_list"?, "pdq"?, "quality"?}.
  Reply verdict(std::string_view body, const WriteContext& ctx);
  // GET /v1/lists: every list with its kind, state, texts and number of entries.
  Reply lists() const;
  // POST /v1/lists: a new list from a JSON body {"name", "kind"?: "block"|"allow",
  // "description"?, "organisation"?, "terms"?}; 201 with the list.
  Reply create_list(std::string_view body, const WriteContext& ctx);
  // POST /v1/lists/NAME (action ""): its kind and texts from a JSON body with any of
  // "kind", "description", "organisation", "terms"; action "disable" with {"reason",
  // "until"?} (unix seconds, in the future), action "enable" with an empty body or {}.
  Reply change_list(const std::string& name, const std::string& action, std::string_view body,
                    const WriteContext& ctx);
  // POST /v1/entries/ID/disable ({"reason", "until"?}) or /enable (`enable`).
  Reply set_entry_state(std::string_view id_text, bool enable, std::string_view body,
                        const WriteContext& ctx);
  Reply health() const;
  // `extra` (server settings, uptime) is merged into the body.
  Reply stats(const json& extra) const;

  Bank& bank() { return bank_; }
  const ServiceLimits& limits() const { return limits_; }

 private:
  Bank& bank_;
  ServiceLimits limits_;
  Metrics& metrics_;
  bool writable_;
  ServiceSignals signals_;
  mutable std::mutex write_mu_;  // one API write at a time (SQLite takes one writer anyway)
  std::unique_ptr<FloodGuard> flood_;
  mutable std::atomic<std::int64_t> flood_quarantined_{0};
  mutable std::atomic<int> video_checks_{0};  // match_video calls running
  // Counts a decided query for the flood guard, and quarantines what it reports.
  void watch_flood(const MatchResult& m, const Hash256& query) const;
  // match_image's video path.
  Reply match_video(std::span<const std::uint8_t> bytes, const std::string& name,
                    const MatchOptions& mo, Role role) const;
  // An error message when a list the options name is not in the bank.
  std::optional<std::string> known_lists(const MatchOptions& o) const;
  // The id of the list a write goes to; nullopt (and `err` set) when it is not there.
  std::optional<std::int64_t> list_for_write(const WriteContext& ctx, Reply& err) const;
};

}  // namespace hashwall::server
