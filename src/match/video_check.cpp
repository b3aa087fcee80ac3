// check_video (video_check.hpp): frames -> fingerprints -> the matcher, merged per entry.
#include "match/video_check.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <memory>
#include <opencv2/imgproc.hpp>
#include <span>

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

}  // namespace

const std::vector<std::string>& video_extensions() {
  static const std::vector<std::string> ext = {".mp4", ".m4v", ".mov",  ".webm", ".mkv",
                                               ".avi", ".mpg", ".mpeg", ".ts",   ".3gp",
                                               ".flv", ".wmv", ".ogv"};
  return ext;
}

namespace {

// The images in a GIF, counted up to `enough` from its block structure (header, logical
// screen descriptor and its colour table, then extensions and images, each image's data
// in sub-blocks); stops at the trailer, at the end of `b`, or at anything malformed.
int gif_images(std::span<const std::uint8_t> b, int enough) {
  if (b.size() < 13) return 0;
  std::size_t i = 13;
  if (b[10] & 0x80) i += std::size_t{3} << ((b[10] & 7) + 1);
  const auto skip_sub_blocks = [&] {
    while (i < b.size()) {
      const std::uint8_t n = b[i++];
      if (n == 0) return true;
      i += n;
    }
    return false;
  };
  int images = 0;
  while (i < b.size() && images < enough) {
    const std::uint8_t type = b[i++];
    if (type == 0x21) {  // extension: its label, then sub-blocks
      ++i;
      if (!skip_sub_blocks()) break;
    } else if (type == 0x2C) {  // image: descriptor, local colour table, LZW size, data
      if (i + 9 > b.size()) break;
      const std::uint8_t packed = b[i + 8];
      i += 9;
      if (packed & 0x80) i += std::size_t{3} << ((packed & 7) + 1);
      ++i;
      ++images;
      if (!skip_sub_blocks()) break;
    } else {
      break;  // the trailer (0x3B), or not a GIF block
    }
  }
  return images;
}

}  // namespace

bool is_video_file(const fs::path& path) {
  const std::string e = lower_extension(path);
  const auto& v = video_extensions();
  if (std::find(v.begin(), v.end(), e) != v.end()) return true;
  if (e != ".gif" && e != ".png" && e != ".apng") return false;
  // An animation is a video; a still image stays an image. An APNG says so in its header
  // (probe_image); a GIF only by holding a second image, found by walking its blocks.
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::vector<std::uint8_t> bytes;
  const auto read_up_to = [&](std::size_t n) {
    const std::size_t had = bytes.size();
    bytes.resize(n);
    in.read(reinterpret_cast<char*>(bytes.data() + had), static_cast<std::streamsize>(n - had));
    bytes.resize(had + static_cast<std::size_t>(in.gcount()));
  };
  read_up_to(4096);
  const ImageProbe head = probe_image(bytes);
  if (head.format != ImageFormat::Gif) return head.animated;
  // A GIF's second image may sit anywhere: read in doubling pieces (each walk is linear,
  // so the total stays linear) up to 64 MB; a longer still GIF is treated as an image.
  constexpr std::size_t kMaxRead = std::size_t{64} << 20;
  for (std::size_t n = std::size_t{1} << 16;; n = std::min(2 * n, kMaxRead)) {
    read_up_to(n);
    if (gif_images(bytes, 2) >= 2) return true;
    if (!in || bytes.size() >= kMaxRead) return false;
  }
}

FileReport check_video(const fs::path& file, const Matcher& matcher, const FingerprintOptions& fpo,
                       const VideoCheckOptions& vo) {
  FileReport r;
  r.file = file.string();
  try {
    VideoSummary v;
    v.seconds_per_frame = vo.seconds_per_frame;
    // A known file (an exchange's video_md5 or video_sha256 list, or a video indexed
    // before) is decided by its bytes alone, before any frame is decoded.
    const FileDigests digests = file_digests(file, vo.want_md5);
    known_by_digests(r, digests.sha256, digests.md5, matcher);
    if (r.known_file) {
      r.video = std::move(v);
      return r;
    }
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
    ro.by_time = true;
    ro.seconds_per_frame = vo.seconds_per_frame;
    ro.limits = vo.limits;
    ro.stop = vo.stop;
    VideoInfo info;
    const auto on_frame = [&](const VideoFrame& f) {
      const std::int64_t sample = v.frames_checked++;
      if (v.frames_checked > vo.max_checked_frames)
        throw Error(ErrorKind::TooLarge, file.string(),
                    "more than " + std::to_string(vo.max_checked_frames) +
                        " frames to check (check fewer frames a second)");
      v.width = f.width;
      v.height = f.height;
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
      const auto verified = [](const MatchHit& h) {
        for (const auto& name : h.signals_matched)
          if (name == "local" || name == "pdq" || name == "sha256") return true;
        return false;
      };
      for (MatchHit& h : m.hits) {
        if (!h.matched || h.allow) continue;
        if (featureless && !verified(h)) continue;
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
    };
    try {
      info = read_video(file, ro, on_frame);
    } catch (const Error& e) {
      // Known photos already seen are reported whatever comes after them.
      if (seen.empty() || e.kind() == ErrorKind::Interrupted) throw;
      v.incomplete = e.what();
      info.frames = v.frames_checked;
    }
    if (info.width > 0) {
      v.width = info.width;
      v.height = info.height;
    }
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
    if (r.fp) {
      r.fp->sha256 = digests.sha256;
      r.fp->md5 = digests.md5;
    }
    r.video = std::move(v);
  } catch (const Error& e) {
    r.error = e.what();
  } catch (const std::exception& e) {
    r.error = r.file + ": " + e.what();
  }
  return r;
}

}  // namespace hashwall
