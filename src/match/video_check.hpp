// Known photos inside videos and animated images (issue #18): the sampled frames of a
// video, each checked against the photo bank as a photo is (every signal the bank holds),
// and each matching entry reported once, with the times where it appears and the evidence
// of its best frame.
#pragma once

#include <atomic>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "match/fingerprint.hpp"
#include "match/matcher.hpp"
#include "match/report.hpp"
#include "video/video.hpp"

namespace hashwall {

struct VideoCheckOptions {
  // One frame every this many seconds (frames n with n a multiple of int(s * frame rate),
  // at least every frame); 1 by default, as the issue asks for matching.
  double seconds_per_frame = 1.0;
  // Also a frame whose picture changed this much since the last one checked
  // (VideoReadOptions::scene_change); 0: off.
  double scene_change = 0;
  VideoLimits limits;
  // Frames checked at most: a bound on the matching work (the longest video VideoLimits
  // lets through, 4 h, at one a second).
  std::int64_t max_checked_frames = 4 * 3600;
  const std::atomic<bool>* stop = nullptr;
  // Also the file's MD5, for banks with MD5 lists (Bank::has_md5_entries).
  bool want_md5 = false;
};

// Whether `path` is read as a video: by its extension (mp4, m4v, mov, webm, mkv, avi,
// mpg, mpeg, ts, 3gp, flv, wmv, ogv), or a GIF, PNG or WebP holding an animation (read
// from their block structure or header, no decoding).
bool is_video_file(const std::filesystem::path& path);
// Whether these bytes (a file's start, or all of it) are a video by their container's
// signature: MP4/MOV/3GP (an ISO "ftyp" box whose brand is not an image's: HEIF and AVIF
// are images), Matroska/WebM, AVI, FLV, MPEG-TS and -PS, Ogg, ASF/WMV; or a GIF or PNG
// holding an animation. For uploads, which have no trustworthy name.
bool is_video_bytes(std::span<const std::uint8_t> bytes);
// The extensions is_video_file knows (lower case, with the dot), for directory walks.
const std::vector<std::string>& video_extensions();

// A video as a bank entry (a video bank, issue #18): its vPDQ record, every frame hashed at
// its own size as Meta's vpdq-hash-video does by default, pruned of near-identical
// neighbours (kVpdqPruneDistance), under the "vpdq" signal; the caller adds the file's
// digests, label and list. Throws Error as read_video does, and Error{TooLarge} for more
// distinct frames than a record holds.
NewEntry video_entry(const std::filesystem::path& file, const VideoLimits& limits,
                     const std::atomic<bool>* stop);

// Checks a video: FileReport::video is set; `result` holds each matching entry once,
// with its best frame's evidence (highest score first); `fp` is the best frame's
// fingerprint (the first frame's when nothing matched), with the file's SHA-256.
// Failures are reported in `error`, not thrown; but a video that fails after some frames
// matched (a damaged tail, a limit reached) is reported as the match it is, with the
// failure in VideoSummary::incomplete: cutting a file must not hide a known photo in it.
FileReport check_video(const std::filesystem::path& file, const Matcher& matcher,
                       const FingerprintOptions& fp, const VideoCheckOptions& options);

}  // namespace hashwall
