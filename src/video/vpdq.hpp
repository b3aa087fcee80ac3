// vPDQ, Meta's video hash (ThreatExchange vpdq/): the PDQ hash and quality of a video's
// frames, every frame or one per interval, at the video's size or downsampled, written one
// line a frame as `frame_number,quality,pdq_hex,timestamp_seconds` (vpdq-hash-video's
// output; timestamps with three decimals).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "hash/hash256.hpp"
#include "video/video.hpp"

namespace hashwall {

struct VpdqFrame {
  std::int64_t frame_number = 0;
  int quality = 0;
  Hash256 hash;
  double timestamp = 0;  // seconds
};

// The frames `options` selects (video.hpp: seconds_per_frame, width x height), hashed as
// Meta's vPDQ hashes them (pdq_hash_rgb24). `info`, when given, gets what was learnt of
// the stream. Throws Error as read_video does.
std::vector<VpdqFrame> vpdq_hash_video(const std::filesystem::path& path,
                                       const VideoReadOptions& options, VideoInfo* info = nullptr);

// One line of vpdq-hash-video's output, without the line break.
std::string vpdq_line(const VpdqFrame& f);

}  // namespace hashwall
