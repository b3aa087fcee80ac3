// vPDQ (vpdq.hpp).
#include "video/vpdq.hpp"

#include <cstdio>

#include "hash/pdq.hpp"

namespace hashwall {

std::vector<VpdqFrame> vpdq_hash_video(const std::filesystem::path& path,
                                       const VideoReadOptions& options, VideoInfo* info) {
  std::vector<VpdqFrame> out;
  const VideoInfo got = read_video(path, options, [&](const VideoFrame& f) {
    const PdqResult r = pdq_hash_rgb24(f.rgb, f.height, f.width, f.stride);
    out.push_back({f.number, r.quality, r.hash, f.timestamp});
  });
  if (info) *info = got;
  return out;
}

std::string vpdq_line(const VpdqFrame& f) {
  // vpdq-hash-video: the timestamp with std::setprecision(3) in fixed notation.
  char ts[64];
  std::snprintf(ts, sizeof ts, "%.3f", f.timestamp);
  return std::to_string(f.frame_number) + ',' + std::to_string(f.quality) + ',' + f.hash.hex() +
         ',' + ts;
}

}  // namespace hashwall
