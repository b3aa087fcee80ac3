// read_video (video.hpp): FFmpeg's demuxer and decoder, one thread, and swscale to RGB24.
#include "video/video.hpp"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>
}

#include <chrono>
#include <climits>
#include <cmath>
#include <memory>
#include <mutex>
#include <system_error>
#include <vector>

#include "core/error.hpp"

namespace hashwall {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string av_reason(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, buf, sizeof buf);
  return buf;
}

struct FormatCloser {
  void operator()(AVFormatContext* c) const { avformat_close_input(&c); }
};
struct CodecCloser {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct PacketFree {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct FrameFree {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct SwsFree {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};

// What FFmpeg's blocking reads poll (AVIOInterruptCB): the decode budget and the stop flag,
// so that a container that makes the demuxer wait or loop cannot hold the caller.
struct Watch {
  Clock::time_point deadline;
  const std::atomic<bool>* stop = nullptr;
  bool expired() const { return Clock::now() > deadline; }
  bool stopped() const { return stop && stop->load(); }
};
int interrupt_cb(void* opaque) {
  const auto* w = static_cast<const Watch*>(opaque);
  return w->expired() || w->stopped() ? 1 : 0;
}

}  // namespace

VideoInfo read_video(const fs::path& path, const VideoReadOptions& o,
                     const std::function<void(const VideoFrame&)>& on_frame) {
  const std::string where = path.string();
  const VideoLimits& lim = o.limits;
  // FFmpeg's own messages would go to stderr from library code; its failures come back
  // as error codes, which the errors below carry. (A process-wide setting: set once.)
  static std::once_flag quiet;
  std::call_once(quiet, [] { av_log_set_level(AV_LOG_QUIET); });

  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw Error(ErrorKind::Io, where, ec ? ec.message() : "not a regular file");
  const auto bytes = fs::file_size(path, ec);
  if (ec) throw Error(ErrorKind::Io, where, ec.message());
  if (bytes == 0) throw Error(ErrorKind::Format, where, "empty file");
  if (bytes > lim.max_bytes)
    throw Error(ErrorKind::TooLarge, where,
                std::to_string(bytes) + " bytes is more than the " + std::to_string(lim.max_bytes) +
                    " a video may have");

  Watch watch{Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(lim.max_decode_s)),
              o.stop};
  const auto check_watch = [&](std::int64_t frames) {
    if (watch.stopped()) throw Error(ErrorKind::Interrupted, where, "interrupted");
    if (watch.expired())
      throw Error(ErrorKind::TooLarge, where,
                  "decoding took more than " + std::to_string(static_cast<int>(lim.max_decode_s)) +
                      " s (" + std::to_string(frames) + " frames read)");
  };

  AVFormatContext* raw = avformat_alloc_context();
  if (!raw) throw std::bad_alloc();
  raw->interrupt_callback.callback = interrupt_cb;
  raw->interrupt_callback.opaque = &watch;
  // Only the file itself: a name like "concat:a|b" or a playlist that names other files
  // or URLs must not make FFmpeg open them.
  AVDictionary* open_opts = nullptr;
  av_dict_set(&open_opts, "protocol_whitelist", "file", 0);
  const int opened = avformat_open_input(&raw, path.c_str(), nullptr, &open_opts);
  av_dict_free(&open_opts);
  if (const int err = opened; err < 0) {
    check_watch(0);
    throw Error(ErrorKind::Format, where, "not a video FFmpeg can read (" + av_reason(err) + ")");
  }
  std::unique_ptr<AVFormatContext, FormatCloser> fmt(raw);
  // Probing decodes a few frames: under the same frame-size bound as the decoding below.
  std::vector<AVDictionary*> probe_opts(fmt->nb_streams, nullptr);
  for (auto& d : probe_opts)
    av_dict_set_int(&d, "max_pixels", std::min<std::int64_t>(lim.max_frame_pixels, INT_MAX), 0);
  const int probed = avformat_find_stream_info(fmt.get(), probe_opts.data());
  for (auto& d : probe_opts) av_dict_free(&d);
  if (const int err = probed; err < 0) {
    check_watch(0);
    // The decoder refused to probe frames over the size bound: say so, not "unreadable".
    for (unsigned i = 0; i < fmt->nb_streams; ++i) {
      const AVCodecParameters* cp = fmt->streams[i]->codecpar;
      if (cp->codec_type == AVMEDIA_TYPE_VIDEO &&
          static_cast<std::int64_t>(cp->width) * cp->height > lim.max_frame_pixels)
        throw Error(ErrorKind::TooLarge, where,
                    std::to_string(cp->width) + "x" + std::to_string(cp->height) +
                        " frames are larger than " + std::to_string(lim.max_frame_pixels) +
                        " pixels");
    }
    check_watch(0);
    throw Error(ErrorKind::Format, where, "no stream information (" + av_reason(err) + ")");
  }

  // The first video stream, as vPDQ takes it; a cover picture is not the video.
  int index = -1;
  for (unsigned i = 0; i < fmt->nb_streams; ++i) {
    const AVStream* s = fmt->streams[i];
    if (s->codecpar->codec_type == AVMEDIA_TYPE_VIDEO &&
        !(s->disposition & AV_DISPOSITION_ATTACHED_PIC)) {
      index = static_cast<int>(i);
      break;
    }
  }
  if (index < 0) throw Error(ErrorKind::Format, where, "no video stream");
  const AVStream* stream = fmt->streams[index];
  const AVCodecParameters* par = stream->codecpar;

  VideoInfo info;
  info.width = par->width;
  info.height = par->height;
  info.container = fmt->iformat && fmt->iformat->name ? fmt->iformat->name : "";
  info.codec = avcodec_get_name(par->codec_id);
  if (info.width <= 0 || info.height <= 0)
    // Some containers (AVI) leave the size to the decoder, whose probe above skips frames
    // over the bound.
    throw Error(ErrorKind::Format, where,
                "no frame size could be read (frames that do not decode, or larger than " +
                    std::to_string(lim.max_frame_pixels) + " pixels)");
  if (static_cast<std::int64_t>(info.width) * info.height > lim.max_frame_pixels)
    throw Error(ErrorKind::TooLarge, where,
                std::to_string(info.width) + "x" + std::to_string(info.height) +
                    " frames are larger than " + std::to_string(lim.max_frame_pixels) + " pixels");
  AVRational rate = stream->avg_frame_rate;
  if (rate.num <= 0 || rate.den <= 0) rate = stream->r_frame_rate;
  if (rate.num <= 0 || rate.den <= 0)
    throw Error(ErrorKind::Format, where, "the video stream has no frame rate");
  info.frame_rate = av_q2d(rate);
  if (fmt->duration > 0) info.duration_s = static_cast<double>(fmt->duration) / AV_TIME_BASE;
  if (info.duration_s > lim.max_duration_s)
    throw Error(ErrorKind::TooLarge, where,
                "a duration of " + std::to_string(static_cast<long long>(info.duration_s)) +
                    " s is longer than " +
                    std::to_string(static_cast<long long>(lim.max_duration_s)) + " s");

  const AVCodec* codec = avcodec_find_decoder(par->codec_id);
  if (!codec) throw Error(ErrorKind::Format, where, "no decoder for " + info.codec);
  std::unique_ptr<AVCodecContext, CodecCloser> dec(avcodec_alloc_context3(codec));
  if (!dec) throw std::bad_alloc();
  if (const int err = avcodec_parameters_to_context(dec.get(), par); err < 0)
    throw Error(ErrorKind::Format, where, "bad codec parameters (" + av_reason(err) + ")");
  dec->thread_count = 1;  // one core a file: files are the unit of parallelism
  // The decoder refuses a frame over the bound before allocating it.
  dec->max_pixels = std::min<std::int64_t>(lim.max_frame_pixels, INT_MAX);
  if (const int err = avcodec_open2(dec.get(), codec, nullptr); err < 0)
    throw Error(ErrorKind::Format, where,
                "cannot open the " + info.codec + " decoder (" + av_reason(err) + ")");

  const std::int64_t every =
      o.seconds_per_frame > 0
          ? std::max<std::int64_t>(1,
                                   static_cast<std::int64_t>(o.seconds_per_frame * info.frame_rate))
          : 1;
  const bool scaled = o.width > 0 && o.height > 0;
  std::unique_ptr<AVPacket, PacketFree> pkt(av_packet_alloc());
  std::unique_ptr<AVFrame, FrameFree> frame(av_frame_alloc());
  if (!pkt || !frame) throw std::bad_alloc();
  SwsContext* sws_raw = nullptr;
  std::unique_ptr<SwsContext, SwsFree> sws;
  std::vector<std::uint8_t> rgb;
  double next_time = 0;  // by_time: the next sampling time
  // scene_change: a grey thumbnail of each decoded frame, and of the last frame taken.
  constexpr int kThumbW = 64, kThumbH = 36;
  const bool scenes = o.by_time && o.scene_change > 0;
  SwsContext* thumb_raw = nullptr;
  std::unique_ptr<SwsContext, SwsFree> thumb_sws;
  std::vector<std::uint8_t> thumb(kThumbW * kThumbH), taken_thumb;
  const auto make_thumb = [&](const AVFrame& f, std::int64_t n) {
    thumb_raw = sws_getCachedContext(thumb_raw, f.width, f.height,
                                     static_cast<AVPixelFormat>(f.format), kThumbW, kThumbH,
                                     AV_PIX_FMT_GRAY8, SWS_AREA, nullptr, nullptr, nullptr);
    thumb_sws.release();
    thumb_sws.reset(thumb_raw);
    std::uint8_t* dst[4] = {thumb.data(), nullptr, nullptr, nullptr};
    const int dst_stride[4] = {kThumbW, 0, 0, 0};
    if (!thumb_raw ||
        sws_scale(thumb_raw, f.data, f.linesize, 0, f.height, dst, dst_stride) != kThumbH)
      throw Error(ErrorKind::Corrupt, where, "cannot convert frame " + std::to_string(n));
  };
  const auto changed = [&] {
    if (taken_thumb.empty()) return true;
    std::uint64_t sum = 0;
    for (std::size_t i = 0; i < thumb.size(); ++i)
      sum += static_cast<std::uint64_t>(std::abs(int{thumb[i]} - int{taken_thumb[i]}));
    return static_cast<double>(sum) / (255.0 * static_cast<double>(thumb.size())) > o.scene_change;
  };

  const auto take_frames = [&] {
    for (;;) {
      const int err = avcodec_receive_frame(dec.get(), frame.get());
      if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return;
      if (err < 0)
        throw Error(
            ErrorKind::Corrupt, where,
            "cannot decode frame " + std::to_string(info.frames) + " (" + av_reason(err) + ")");
      const std::int64_t n = info.frames++;
      check_watch(n);
      if (info.frames > lim.max_frames)
        throw Error(ErrorKind::TooLarge, where,
                    "more than " + std::to_string(lim.max_frames) + " frames");
      const int fw = frame->width, fh = frame->height;
      if (fw <= 0 || fh <= 0 || static_cast<std::int64_t>(fw) * fh > lim.max_frame_pixels)
        throw Error(
            ErrorKind::TooLarge, where,
            "frame " + std::to_string(n) + " is " + std::to_string(fw) + "x" + std::to_string(fh));
      // vPDQ's time (number / rate), or the frame's presentation time (VideoReadOptions).
      double t = static_cast<double>(n) / info.frame_rate;
      if (o.by_time && frame->best_effort_timestamp != AV_NOPTS_VALUE) {
        const std::int64_t start = stream->start_time != AV_NOPTS_VALUE ? stream->start_time : 0;
        t = std::max(0.0, static_cast<double>(frame->best_effort_timestamp - start) *
                              av_q2d(stream->time_base));
      }
      if (t > lim.max_duration_s)
        throw Error(
            ErrorKind::TooLarge, where,
            "frames past " + std::to_string(static_cast<long long>(lim.max_duration_s)) + " s");
      if (o.by_time) {
        // The first frame at or after each sampling time (a picture held for seconds in one
        // frame of a variable-rate file or a GIF is still taken), and with scene_change a
        // frame whose picture changed since the last one taken.
        if (scenes) make_thumb(*frame, n);
        if (o.seconds_per_frame > 0) {
          if (t < next_time) {
            if (!scenes || !changed()) continue;
          } else {
            next_time = (std::floor(t / o.seconds_per_frame) + 1) * o.seconds_per_frame;
          }
        }
        if (scenes) taken_thumb = thumb;
      } else if (n % every != 0) {
        continue;
      }
      const int ow = scaled ? o.width : fw, oh = scaled ? o.height : fh;
      // vPDQ's conversion: RGB24 with SWS_AREA, from whatever the decoder gave.
      sws_raw = sws_getCachedContext(sws_raw, fw, fh, static_cast<AVPixelFormat>(frame->format), ow,
                                     oh, AV_PIX_FMT_RGB24, SWS_AREA, nullptr, nullptr, nullptr);
      sws.release();
      sws.reset(sws_raw);
      if (!sws_raw)
        throw Error(ErrorKind::Format, where,
                    "cannot convert frame " + std::to_string(n) + " to RGB");
      const std::size_t stride = static_cast<std::size_t>(ow) * 3;
      rgb.resize(stride * static_cast<std::size_t>(oh));
      std::uint8_t* dst[4] = {rgb.data(), nullptr, nullptr, nullptr};
      const int dst_stride[4] = {static_cast<int>(stride), 0, 0, 0};
      if (sws_scale(sws_raw, frame->data, frame->linesize, 0, fh, dst, dst_stride) != oh)
        throw Error(ErrorKind::Corrupt, where,
                    "cannot convert frame " + std::to_string(n) + " to RGB");
      av_frame_unref(frame.get());
      on_frame(VideoFrame{n, t, ow, oh, stride, rgb.data()});
    }
  };

  for (;;) {
    const int err = av_read_frame(fmt.get(), pkt.get());
    if (err == AVERROR_EOF) break;
    if (err < 0) {
      check_watch(info.frames);
      // A damaged or cut file: FFmpeg stops reading where it cannot go on.
      throw Error(
          ErrorKind::Corrupt, where,
          "cannot read past frame " + std::to_string(info.frames) + " (" + av_reason(err) + ")");
    }
    check_watch(info.frames);
    if (pkt->stream_index == index) {
      const int sent = avcodec_send_packet(dec.get(), pkt.get());
      av_packet_unref(pkt.get());
      if (sent < 0 && sent != AVERROR(EAGAIN))
        throw Error(ErrorKind::Corrupt, where,
                    "cannot decode after frame " + std::to_string(info.frames) + " (" +
                        av_reason(sent) + ")");
      take_frames();
    } else {
      av_packet_unref(pkt.get());
    }
  }
  // Interrupted reads end as end of file in some demuxers: a spent budget or a stop is
  // never taken for a whole video.
  check_watch(info.frames);
  // The frames the decoder still holds.
  avcodec_send_packet(dec.get(), nullptr);
  take_frames();
  check_watch(info.frames);
  if (info.frames == 0) throw Error(ErrorKind::Corrupt, where, "no frame could be decoded");
  return info;
}

}  // namespace hashwall
