// check_video (video_check.hpp): frames -> fingerprints -> the matcher, merged per entry.
#include "match/video_check.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <opencv2/imgproc.hpp>

#include "core/error.hpp"
#include "image/load.hpp"
#include "image/probe.hpp"

namespace hashwall {

namespace fs = std::filesystem;

namespace {

std::string lower_extension(const fs::path& p) {
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  return e;
}

// The SHA-256 of a file of any size, read in 1 MB pieces.
std::string file_sha256(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(ErrorKind::Io, file.string(), "cannot read");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) throw std::bad_alloc();
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0)
      EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) throw Error(ErrorKind::Io, file.string(), "read failed");
  unsigned char md[32];
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &n);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

}  // namespace

const std::vector<std::string>& video_extensions() {
  static const std::vector<std::string> ext = {".mp4", ".m4v", ".mov",  ".webm", ".mkv",
                                               ".avi", ".mpg", ".mpeg", ".ts",   ".3gp",
                                               ".flv", ".wmv", ".ogv"};
  return ext;
}

bool is_video_file(const fs::path& path) {
  const std::string e = lower_extension(path);
  const auto& v = video_extensions();
  if (std::find(v.begin(), v.end(), e) != v.end()) return true;
  if (e != ".gif" && e != ".png" && e != ".apng" && e != ".webp") return false;
  // An animation is a video; a still image stays an image. APNG and WebP say so in their
  // headers (probe_image); a GIF only by holding a second frame.
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::vector<std::uint8_t> head(std::size_t{1} << 20);
  in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<std::size_t>(std::max<std::streamsize>(in.gcount(), 0)));
  const ImageProbe p = probe_image(head);
  if (p.format != ImageFormat::Gif) return p.animated;
  VideoReadOptions o;
  o.limits.max_frames = 1;
  o.limits.max_decode_s = 10;
  try {
    read_video(path, o, [](const VideoFrame&) {});
  } catch (const Error& err) {
    return err.kind() == ErrorKind::TooLarge;  // a second frame
  }
  return false;
}

FileReport check_video(const fs::path& file, const Matcher& matcher, const FingerprintOptions& fpo,
                       const VideoCheckOptions& vo) {
  FileReport r;
  r.file = file.string();
  try {
    VideoSummary v;
    v.seconds_per_frame = vo.seconds_per_frame;
    struct Seen {
      MatchHit best;
      double best_time = 0;
      std::int64_t last_sample = -2;  // the sampled frame that last matched it
      std::vector<std::pair<double, double>> times;
      std::int64_t frames = 0;
    };
    std::map<std::int64_t, Seen> seen;
    std::optional<Fingerprint> first_fp, best_fp;
    double best_score = 0;
    std::optional<MatchResult> params;  // the thresholds in use, from the first frame
    std::int64_t low_quality = 0;

    VideoReadOptions ro;
    ro.seconds_per_frame = vo.seconds_per_frame;
    ro.limits = vo.limits;
    ro.stop = vo.stop;
    const VideoInfo info = read_video(file, ro, [&](const VideoFrame& f) {
      const std::int64_t sample = v.frames_checked++;
      if (v.frames_checked > vo.max_checked_frames)
        throw Error(ErrorKind::TooLarge, file.string(),
                    "more than " + std::to_string(vo.max_checked_frames) +
                        " frames to check (check fewer frames a second)");
      cv::Mat rgb(f.height, f.width, CV_8UC3, const_cast<std::uint8_t*>(f.rgb), f.stride);
      LoadedImage img;
      cv::cvtColor(rgb, img.pixels, cv::COLOR_RGB2BGR);
      img.width = f.width;
      img.height = f.height;
      // A small frame (SD and below) is enlarged for the local features, to the area a
      // photo query gets (800 x 800 px): a known photo shown small inside it then keeps
      // enough keypoints at a scale the entry's can meet (docs/VIDEO.md). PDQ and the
      // embedding take the frame as it is.
      constexpr double kLocalArea = 800.0 * 800.0;
      if (const double area = static_cast<double>(f.width) * f.height; area < kLocalArea / 2) {
        const double k = std::sqrt(kLocalArea / area);
        cv::resize(img.pixels, img.detail, cv::Size(), k, k, cv::INTER_CUBIC);
      }
      // No SHA-256: a frame is not the file (the file's own goes in the report).
      Fingerprint fp = fingerprint(img, DecodeMode::Fast, fpo);
      MatchResult m = matcher.match(fp);
      if (!first_fp) first_fp = fp;
      if (m.verdict == Verdict::LowQuality) ++low_quality;
      const bool matched = m.verdict == Verdict::Match;
      if (!params) params = m;
      if (!matched) return;
      // A frame too featureless for PDQ (a fade, a black or blurred frame: quality under
      // the bank's minimum) is too featureless for the embedding alone: there only local
      // features (geometrically verified) or PDQ may decide. Without this rule 26 of 2,383
      // frames of Meta's sample videos, all in one fade to black, matched dark photos of a
      // 500-photo bank by the embedding (docs/VIDEO.md).
      const bool featureless = fp.pdq.quality < m.min_quality;
      for (MatchHit& h : m.hits) {
        if (!h.matched || h.allow) continue;
        if (featureless && h.signals_matched == std::vector<std::string>{"embed"}) continue;
        Seen& s = seen[h.entry.id];
        if (!best_fp || h.score > best_score) {
          best_score = h.score;
          best_fp = fp;
        }
        if (s.frames == 0 || h.score > s.best.score) {
          s.best_time = f.timestamp;
          s.best = std::move(h);
        }
        ++s.frames;
        if (s.last_sample == sample - 1)
          s.times.back().second = f.timestamp;
        else
          s.times.emplace_back(f.timestamp, f.timestamp);
        s.last_sample = sample;
      }
    });
    v.width = info.width;
    v.height = info.height;
    v.frame_rate = info.frame_rate;
    v.duration_s = info.duration_s;
    v.codec = info.codec;
    v.frames_decoded = info.frames;

    r.result = params ? *params : MatchResult{};
    r.result.hits.clear();
    for (auto& [id, s] : seen) r.result.hits.push_back(s.best);
    std::sort(r.result.hits.begin(), r.result.hits.end(), [](const MatchHit& a, const MatchHit& b) {
      return a.score != b.score ? a.score > b.score : a.entry.id < b.entry.id;
    });
    const int top = std::max(matcher.options().top, 1);
    if (static_cast<int>(r.result.hits.size()) > top)
      r.result.hits.resize(static_cast<std::size_t>(top));
    for (const MatchHit& h : r.result.hits) {
      const Seen& s = seen.at(h.entry.id);
      v.appearances.push_back({h.entry.id, s.times, s.frames, s.best_time});
    }
    // Too featureless to decide only when every frame was.
    r.result.verdict = !r.result.hits.empty() ? Verdict::Match
                       : low_quality == v.frames_checked && v.frames_checked > 0
                           ? Verdict::LowQuality
                           : Verdict::NoMatch;
    r.fp = best_fp ? best_fp : first_fp;
    if (r.fp) r.fp->sha256 = file_sha256(file);
    r.video = std::move(v);
  } catch (const Error& e) {
    r.error = e.what();
  } catch (const std::exception& e) {
    r.error = r.file + ": " + e.what();
  }
  return r;
}

}  // namespace hashwall
