// read_video (video.hpp): FFmpeg's demuxer and decoder, one thread, and swscale to RGB24.
#include "video/video.hpp"

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/log.h>
#include <libswscale/swscale.h>
}
#include <webp/demux.h>

#include <chrono>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
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

// Whether the file is an animated WebP (RIFF, WEBP, a VP8X chunk with the animation
// flag): FFmpeg 5.1 cannot decode those, libwebp's demuxer can.
bool is_animated_webp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  char b[21] = {};
  if (!in.read(b, sizeof b)) return false;
  return std::memcmp(b, "RIFF", 4) == 0 && std::memcmp(b + 8, "WEBPVP8X", 8) == 0 &&
         (static_cast<unsigned char>(b[20]) & 0x02) != 0;
}

struct WebpDecoderFree {
  void operator()(WebPAnimDecoder* d) const { WebPAnimDecoderDelete(d); }
};
struct WebpDemuxFree {
  void operator()(WebPDemuxer* d) const { WebPDemuxDelete(d); }
};

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

  VideoInfo info;
  // Frames n with n a multiple of this reach the callback (not by_time): set once the
  // frame rate is known.
  std::int64_t every = 1;
  const auto set_every = [&] {
    every = o.seconds_per_frame > 0
                ? std::max<std::int64_t>(
                      1, static_cast<std::int64_t>(o.seconds_per_frame * info.frame_rate))
                : 1;
  };
  const bool scaled = o.width > 0 && o.height > 0;
  SwsContext* sws_raw = nullptr;
  std::unique_ptr<SwsContext, SwsFree> sws;
  std::vector<std::uint8_t> rgb;
  double next_time = 0;  // by_time: the next sampling time
  // scene_change: a grey thumbnail of each decoded frame, and of the last frame taken.
  constexpr int kThumbW = 64, kThumbH = 36;
  // (every frame is taken anyway without a sampling interval)
  const bool scenes = o.by_time && o.scene_change > 0 && o.seconds_per_frame > 0;
  // A scene frame comes at least this long after the last frame taken: a slow pan crosses
  // the threshold every few frames, and each frame taken costs a full check.
  const double scene_gap = std::min(0.2, o.seconds_per_frame / 2);
  double taken_at = -1e9;
  SwsContext* thumb_raw = nullptr;
  std::unique_ptr<SwsContext, SwsFree> thumb_sws;
  // (64 spare bytes: swscale's writes may run past the last row; see the RGB buffer below)
  std::vector<std::uint8_t> thumb(kThumbW * kThumbH + 64), taken_thumb;
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
    constexpr std::size_t kPixels = kThumbW * kThumbH;
    for (std::size_t i = 0; i < kPixels; ++i)
      sum += static_cast<std::uint64_t>(std::abs(int{thumb[i]} - int{taken_thumb[i]}));
    return static_cast<double>(sum) / (255.0 * static_cast<double>(kPixels)) > o.scene_change;
  };

  // One decoded frame, FFmpeg's or libwebp's: numbered, timed (`pts`: its presentation
  // time in seconds, when known), held to the bounds, selected, converted, handed over.
  const auto handle = [&](const AVFrame& f, std::optional<double> pts) {
    const std::int64_t n = info.frames++;
    check_watch(n);
    if (info.frames > lim.max_frames)
      throw Error(ErrorKind::TooLarge, where,
                  "more than " + std::to_string(lim.max_frames) + " frames");
    const int fw = f.width, fh = f.height;
    if (fw <= 0 || fh <= 0 || static_cast<std::int64_t>(fw) * fh > lim.max_frame_pixels)
      throw Error(
          ErrorKind::TooLarge, where,
          "frame " + std::to_string(n) + " is " + std::to_string(fw) + "x" + std::to_string(fh));
    // vPDQ's time (number / rate), or the frame's presentation time (VideoReadOptions).
    double t = static_cast<double>(n) / info.frame_rate;
    if (o.by_time && pts) t = *pts;
    if (t > lim.max_duration_s)
      throw Error(
          ErrorKind::TooLarge, where,
          "frames past " + std::to_string(static_cast<long long>(lim.max_duration_s)) + " s");
    if (o.by_time) {
      // The first frame at or after each sampling time (a picture held for seconds in one
      // frame of a variable-rate file or a GIF is still taken), and with scene_change a
      // frame whose picture changed since the last one taken.
      if (scenes) make_thumb(f, n);
      if (o.seconds_per_frame > 0) {
        if (t < next_time) {
          if (!scenes || t < taken_at + scene_gap || !changed()) return;
        } else {
          next_time = (std::floor(t / o.seconds_per_frame) + 1) * o.seconds_per_frame;
        }
      }
      if (scenes) taken_thumb = thumb;
      taken_at = t;
    } else if (n % every != 0) {
      return;
    }
    const int ow = scaled ? o.width : fw, oh = scaled ? o.height : fh;
    // vPDQ's conversion: RGB24 with SWS_AREA, from whatever the decoder gave.
    sws_raw = sws_getCachedContext(sws_raw, fw, fh, static_cast<AVPixelFormat>(f.format), ow, oh,
                                   AV_PIX_FMT_RGB24, SWS_AREA, nullptr, nullptr, nullptr);
    sws.release();
    sws.reset(sws_raw);
    if (!sws_raw)
      throw Error(ErrorKind::Format, where,
                  "cannot convert frame " + std::to_string(n) + " to RGB");
    // swscale's SIMD writes run up to a vector past a row's last pixel: rows padded to a
    // multiple of 64 bytes and 64 bytes spare after the last (a 202-px-wide frame, 606
    // bytes a row, was written past its buffer: found by valgrind on a portrait video).
    const std::size_t stride = (static_cast<std::size_t>(ow) * 3 + 63) / 64 * 64;
    rgb.resize(stride * static_cast<std::size_t>(oh) + 64);
    std::uint8_t* dst[4] = {rgb.data(), nullptr, nullptr, nullptr};
    const int dst_stride[4] = {static_cast<int>(stride), 0, 0, 0};
    if (sws_scale(sws_raw, f.data, f.linesize, 0, fh, dst, dst_stride) != oh)
      throw Error(ErrorKind::Corrupt, where,
                  "cannot convert frame " + std::to_string(n) + " to RGB");
    on_frame(VideoFrame{n, t, ow, oh, stride, rgb.data()});
  };

  if (is_animated_webp(path)) {
    // An animated WebP, through libwebp's demuxer and animation decoder (FFmpeg 5.1
    // decodes only still WebP): the canvas size, frame count and length are read from the
    // container and bounded before the decoder allocates its canvas.
    std::string data;
    {
      std::ifstream in(path, std::ios::binary);
      data.assign(std::istreambuf_iterator<char>(in), {});
    }
    const WebPData wd{reinterpret_cast<const std::uint8_t*>(data.data()), data.size()};
    std::unique_ptr<WebPDemuxer, WebpDemuxFree> demux(WebPDemux(&wd));
    if (!demux) throw Error(ErrorKind::Format, where, "not an animated WebP libwebp can read");
    info.width = static_cast<int>(WebPDemuxGetI(demux.get(), WEBP_FF_CANVAS_WIDTH));
    info.height = static_cast<int>(WebPDemuxGetI(demux.get(), WEBP_FF_CANVAS_HEIGHT));
    const auto frames = static_cast<std::int64_t>(WebPDemuxGetI(demux.get(), WEBP_FF_FRAME_COUNT));
    info.codec = "webp";
    info.container = "webp";
    if (info.width <= 0 || info.height <= 0 || frames <= 0)
      throw Error(ErrorKind::Format, where, "a WebP animation without frames");
    if (static_cast<std::int64_t>(info.width) * info.height > lim.max_frame_pixels)
      throw Error(ErrorKind::TooLarge, where,
                  std::to_string(info.width) + "x" + std::to_string(info.height) +
                      " frames are larger than " + std::to_string(lim.max_frame_pixels) +
                      " pixels");
    if (frames > lim.max_frames)
      throw Error(ErrorKind::TooLarge, where,
                  "more than " + std::to_string(lim.max_frames) + " frames");
    std::int64_t total_ms = 0;
    WebPIterator it;
    if (WebPDemuxGetFrame(demux.get(), 1, &it)) {
      do total_ms += std::max(0, it.duration);
      while (WebPDemuxNextFrame(&it));
      WebPDemuxReleaseIterator(&it);
    }
    info.duration_s = static_cast<double>(total_ms) / 1000.0;
    if (info.duration_s > lim.max_duration_s)
      throw Error(ErrorKind::TooLarge, where,
                  "a duration of " + std::to_string(static_cast<long long>(info.duration_s)) +
                      " s is longer than " +
                      std::to_string(static_cast<long long>(lim.max_duration_s)) + " s");
    // The average rate, as for a video (10 a second when the frames give no time).
    info.frame_rate = total_ms > 0 ? static_cast<double>(frames) * 1000.0 / total_ms : 10.0;
    set_every();
    WebPAnimDecoderOptions dopts;
    if (!WebPAnimDecoderOptionsInit(&dopts)) throw std::bad_alloc();
    dopts.color_mode = MODE_RGBA;
    dopts.use_threads = 0;
    std::unique_ptr<WebPAnimDecoder, WebpDecoderFree> dec(WebPAnimDecoderNew(&wd, &dopts));
    if (!dec) throw Error(ErrorKind::Format, where, "not an animated WebP libwebp can decode");
    std::unique_ptr<AVFrame, FrameFree> canvas(av_frame_alloc());
    if (!canvas) throw std::bad_alloc();
    // libwebp's canvas is exactly w x h x 4 bytes; swscale may read a vector past a row:
    // each frame is copied into rows padded as the RGB buffer's are.
    const std::size_t row = static_cast<std::size_t>(info.width) * 4;
    const std::size_t padded_row = (row + 63) / 64 * 64;
    std::vector<std::uint8_t> padded(padded_row * static_cast<std::size_t>(info.height) + 64);
    int start_ms = 0;
    while (WebPAnimDecoderHasMoreFrames(dec.get())) {
      check_watch(info.frames);
      std::uint8_t* buf = nullptr;
      int end_ms = 0;  // libwebp gives each frame's end: the next one's start
      if (!WebPAnimDecoderGetNext(dec.get(), &buf, &end_ms))
        throw Error(ErrorKind::Corrupt, where,
                    "cannot decode frame " + std::to_string(info.frames));
      for (int y = 0; y < info.height; ++y)
        std::memcpy(padded.data() + static_cast<std::size_t>(y) * padded_row,
                    buf + static_cast<std::size_t>(y) * row, row);
      canvas->format = AV_PIX_FMT_RGBA;
      canvas->width = info.width;
      canvas->height = info.height;
      canvas->data[0] = padded.data();
      canvas->linesize[0] = static_cast<int>(padded_row);
      handle(*canvas, start_ms / 1000.0);
      start_ms = end_ms;
    }
    check_watch(info.frames);
    return info;
  }

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

  set_every();
  std::unique_ptr<AVPacket, PacketFree> pkt(av_packet_alloc());
  std::unique_ptr<AVFrame, FrameFree> frame(av_frame_alloc());
  if (!pkt || !frame) throw std::bad_alloc();

  const auto take_frames = [&] {
    for (;;) {
      const int err = avcodec_receive_frame(dec.get(), frame.get());
      if (err == AVERROR(EAGAIN) || err == AVERROR_EOF) return;
      if (err < 0)
        throw Error(
            ErrorKind::Corrupt, where,
            "cannot decode frame " + std::to_string(info.frames) + " (" + av_reason(err) + ")");
      std::optional<double> pts;
      if (frame->best_effort_timestamp != AV_NOPTS_VALUE) {
        const std::int64_t start = stream->start_time != AV_NOPTS_VALUE ? stream->start_time : 0;
        pts = std::max(0.0, static_cast<double>(frame->best_effort_timestamp - start) *
                                av_q2d(stream->time_base));
      }
      handle(*frame, pts);
      av_frame_unref(frame.get());
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
