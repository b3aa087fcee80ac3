// One file checked against the bank and its JSON form: one shape for the CLI's --json
// and the HTTP service's answers (docs/cli-formats.md, docs/API.md).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "bank/bank.hpp"
#include "image/load.hpp"
#include "match/fingerprint.hpp"
#include "match/matcher.hpp"

namespace hashwall {

// Where a video's matching entry appears (check_video, video_check.hpp).
struct VideoAppearance {
  std::int64_t entry_id = 0;
  // Time ranges in seconds, from the first to the last sampled frame of each run of
  // sampled frames that matched (a run ends where a sampled frame did not).
  std::vector<std::pair<double, double>> times;
  std::int64_t frames = 0;  // sampled frames that matched it
  double best_time = 0;     // the frame whose evidence the hit carries
};

struct VideoSummary {
  int width = 0, height = 0;
  double frame_rate = 0, duration_s = 0;
  std::string codec;
  std::int64_t frames_decoded = 0, frames_checked = 0;
  double seconds_per_frame = 0;
  std::vector<VideoAppearance> appearances;  // one per hit, in the hits' order
  // Why the check stopped before the end, when it found matches first (else the report
  // is an error); empty when the whole video was checked.
  std::string incomplete;
};

struct FileReport {
  std::string file;
  std::optional<Fingerprint> fp;  // absent on error
  MatchResult result;
  std::string error;                  // non-empty when the file could not be checked
  std::optional<Error> failure;       // that error as thrown (kind, reason), when one was
  std::optional<VideoSummary> video;  // a video or an animated image
  // Matched by its bytes alone (SHA-256 or MD5: an entry of a file-hash list, or a file
  // indexed before), with nothing decoded: a video, or a file the image loader refuses
  // (an unknown format, too many pixels). `fp` has the digests and no PDQ hash.
  bool known_file = false;
};

// A file that could not be loaded or decoded may still be a bank entry's by its bytes:
// then `r` becomes that match (known_file), and its error is dropped.
void known_by_bytes(FileReport& r, const std::filesystem::path& file, bool md5,
                    const Matcher& matcher);
void known_by_digests(FileReport& r, const std::string& sha256, const std::string& md5,
                      const Matcher& matcher);
// Loads, fingerprints and matches one file; failures are reported in `error`, not thrown
// (unless the file is known by its bytes: known_by_bytes).
FileReport check_file(const std::filesystem::path& file, const LoadOptions& opt,
                      const Matcher& matcher, const FingerprintOptions& fp = {});

nlohmann::ordered_json report_json(const FileReport& r);
// An entry's or a list's state: {"reason", "until"}, or null when enabled.
nlohmann::ordered_json disabled_json(const std::optional<Disabled>& d);
nlohmann::ordered_json entry_json(const Entry& e);
nlohmann::ordered_json hit_json(const MatchHit& h);

}  // namespace hashwall
