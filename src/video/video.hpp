// Videos and animated images, read through FFmpeg's libraries (libavformat, libavcodec,
// libswscale; Debian's FFmpeg 5.1): the frames of the first video stream in decode order,
// each with its number and timestamp, converted to packed RGB24, optionally downsampled.
// Frame numbers and timestamps follow Meta's vPDQ (vpdq/cpp): the n-th frame the decoder
// returns is frame n (from 0), at n / frame rate seconds, the frame rate being the
// stream's average (its base rate when the container gives none). An animated WebP, which
// FFmpeg 5.1 cannot decode, is read through libwebp's demuxer (libwebpdemux) the same way,
// each frame composited on its canvas as libwebp's animation decoder gives it.
//
// A video is untrusted input: every bound in VideoLimits is checked as the frames come,
// and a file that breaks one, or that FFmpeg cannot read, is refused with Error{kind,
// path, reason}: Format (not a video), Corrupt (a decoding failure), TooLarge (a limit),
// Interrupted (the stop flag).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace hashwall {

struct VideoLimits {
  std::uintmax_t max_bytes = 4ull << 30;          // the file's size
  double max_duration_s = 4 * 3600.0;             // by the container, or by the frames read
  std::int64_t max_frames = 2'000'000;            // decoded frames (4 h at 120 fps)
  std::int64_t max_frame_pixels = 7680LL * 4320;  // 8K UHD
  double max_decode_s = 900.0;                    // wall-clock time for the whole file
};

struct VideoReadOptions {
  // Which frames reach the callback: every frame when 0, else frame n when n is a multiple
  // of int(seconds_per_frame * frame rate) (at least 1), as vPDQ's secondsPerHash.
  double seconds_per_frame = 0;
  // Select and time frames by their presentation time instead: the first frame at or
  // after each multiple of seconds_per_frame, timestamped from the stream (what matching
  // wants for variable-rate video and GIFs; vPDQ keeps frame numbers).
  bool by_time = false;
  // With by_time: also a frame whose picture changed from the last frame taken by more
  // than this (the mean absolute difference of 64x36 grey thumbnails, 0..1: a cut between
  // two unrelated pictures is 0.15 to 0.4), so that a scene shorter than the sampling
  // interval is not skipped. 0: off.
  double scene_change = 0;
  // Frames scaled to this size (SWS_AREA, as vPDQ's downsampling) when both are > 0.
  int width = 0, height = 0;
  VideoLimits limits;
  const std::atomic<bool>* stop = nullptr;  // checked between frames and while reading
};

struct VideoInfo {
  int width = 0, height = 0;  // the stream's coded size
  double frame_rate = 0;
  double duration_s = 0;         // the container's, 0 when unknown
  std::string codec, container;  // FFmpeg's short names ("h264", "mov,mp4,m4a,3gp,3g2,mj2")
  std::int64_t frames = 0;       // decoded
};

struct VideoFrame {
  std::int64_t number = 0;
  double timestamp = 0;  // seconds: number / frame rate (by_time: the presentation time)
  int width = 0, height = 0;
  std::size_t stride = 0;             // bytes from one row to the next
  const std::uint8_t* rgb = nullptr;  // valid during the callback only
};

// Reads the video at `path`, calling `on_frame` for each selected frame; returns what it
// learned of the stream. Throws Error as described above; `on_frame` may throw too.
VideoInfo read_video(const std::filesystem::path& path, const VideoReadOptions& options,
                     const std::function<void(const VideoFrame&)>& on_frame);

}  // namespace hashwall
