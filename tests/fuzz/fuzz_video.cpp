// libFuzzer: video bytes -> FFmpeg's demuxers and decoders -> RGB frames -> vPDQ, as
// `hash --vpdq` does for every file (src/video). The bytes go through a file, as FFmpeg
// reads them in hashwall. The first byte picks every frame or one a second, and whether
// frames are downsampled. Bad input must come back as hashwall::Error; anything else
// escaping (or a sanitizer report, a hang past the decode budget, an allocation over
// -rss_limit_mb) is a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "core/error.hpp"
#include "video/vpdq.hpp"

using namespace hashwall;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string path = [] {
    const char* shm = "/dev/shm";
    return std::string(access(shm, W_OK) == 0 ? shm : "/tmp") + "/hashwall-fuzz-video-" +
           std::to_string(getpid());
  }();
  if (size == 0) return 0;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) __builtin_trap();
  std::fwrite(data + 1, 1, size - 1, f);
  std::fclose(f);
  VideoReadOptions o;
  o.seconds_per_frame = data[0] & 1 ? 1.0 : 0.0;
  if (data[0] & 2) o.width = o.height = 32;
  // Small bounds keep each run short; they are the same checks as the defaults.
  o.limits.max_frames = 500;
  o.limits.max_frame_pixels = 1 << 20;
  o.limits.max_decode_s = 5;
  o.limits.max_duration_s = 600;
  try {
    (void)vpdq_hash_video(path, o);
  } catch (const Error&) {
  }
  return 0;
}
