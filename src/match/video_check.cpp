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
#include "hash/pdq.hpp"
#include "image/load.hpp"
#include "image/probe.hpp"
#include "video/vpdq.hpp"
#include "video/vpdq_record.hpp"

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
  if (e != ".gif" && e != ".png" && e != ".apng" && e != ".webp") return false;
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

NewEntry video_entry(const fs::path& file, const VideoLimits& limits,
                     const std::atomic<bool>* stop) {
  VideoReadOptions ro;
  ro.limits = limits;
  ro.stop = stop;
  VideoInfo info;
  const auto frames = vpdq_hash_video(file, ro, &info);
  VpdqVideo v;
  v.frames = prune_vpdq(frames, kVpdqPruneDistance);
  if (v.frames.size() > kMaxVpdqRecordFrames)
    throw Error(ErrorKind::TooLarge, file.string(),
                std::to_string(v.frames.size()) + " distinct frames, more than the " +
                    std::to_string(kMaxVpdqRecordFrames) + " a video entry holds");
  const double last = frames.empty() ? 0 : frames.back().timestamp;
  v.duration_s = std::max(info.duration_s, last + (info.frame_rate > 0 ? 1 / info.frame_rate : 0));
  NewEntry e;
  e.records["vpdq"] = encode_vpdq_record(v);
  return e;
}

bool is_video_bytes(std::span<const std::uint8_t> b) {
  const auto at = [&](std::size_t off, std::string_view sig) {
    return b.size() >= off + sig.size() &&
           std::equal(sig.begin(), sig.end(), b.begin() + static_cast<std::ptrdiff_t>(off),
                      [](char c, std::uint8_t x) { return static_cast<std::uint8_t>(c) == x; });
  };
  if (at(4, "ftyp")) {
    // HEIF/AVIF still images share the box structure; their major brand says so.
    static const char* const kImageBrands[] = {"heic", "heix", "heim", "heis", "hevc",
                                               "hevx", "mif1", "msf1", "avif", "avis"};
    for (const char* brand : kImageBrands)
      if (at(8, brand)) return false;
    return true;
  }
  if (at(4, "moov") || at(4, "mdat") || at(4, "wide") || at(4, "free")) return true;  // QuickTime
  if (at(0, "\x1A\x45\xDF\xA3")) return true;                                         // Matroska
  if (at(0, "RIFF") && at(8, "AVI ")) return true;
  if (at(0, "FLV\x01") || at(0, "OggS")) return true;
  if (at(0, "\x30\x26\xB2\x75\x8E\x66\xCF\x11")) return true;       // ASF (WMV)
  if (at(0, std::string_view("\x00\x00\x01\xBA", 4))) return true;  // MPEG program stream
  if (b.size() >= 377 && b[0] == 0x47 && b[188] == 0x47 && b[376] == 0x47) return true;  // TS
  const ImageProbe head = probe_image(b.first(std::min<std::size_t>(b.size(), 4096)));
  if (head.format == ImageFormat::Gif) return gif_images(b, 2) >= 2;
  return head.animated;
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

    // Against the bank's videos (vpdq entries): the sampled frames' vPDQ hashes, as Meta's
    // vPDQ hashes a frame (at its own size), matched as one query after the last frame.
    const bool video_entries = matcher.uses("vpdq");
    std::vector<VpdqFrame> vframes;

    VideoReadOptions ro;
    ro.by_time = true;
    ro.seconds_per_frame = vo.seconds_per_frame;
    ro.scene_change = vo.scene_change;
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
      if (video_entries) {
        const PdqResult h = pdq_hash_rgb24(f.rgb, f.height, f.width, f.stride);
        vframes.push_back({f.number, h.quality, h.hash, f.timestamp});
      }
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
    std::optional<Error> failure;
    try {
      info = read_video(file, ro, on_frame);
    } catch (const Error& e) {
      // Known photos already seen are reported whatever comes after them; so are known
      // videos, when the frames read before the failure match one.
      if (e.kind() == ErrorKind::Interrupted || (seen.empty() && vframes.empty())) throw;
      v.incomplete = e.what();
      failure = e;
      info.frames = v.frames_checked;
    }
    if (!vframes.empty()) {
      VpdqVideo query;
      const double end = vframes.back().timestamp + vo.seconds_per_frame;
      query.duration_s = info.duration_s > 0 && v.incomplete.empty()
                             ? std::max(info.duration_s, vframes.back().timestamp)
                             : end;
      // Not pruned: the query's share counts its unique frames, as vPDQ's rule does.
      query.frames = std::move(vframes);
      Fingerprint vf;
      vf.registered["pdq"] = {};  // no photo hash: only the frames are asked about
      vf.registered["vpdq"].forms.push_back(encode_vpdq_record(query));
      MatchResult vm = matcher.match(vf);
      if (!params) params = vm;
      // The report names vpdq among the signals that took part, with its rule.
      if (std::find(vm.signals.begin(), vm.signals.end(), "vpdq") != vm.signals.end() &&
          std::find(params->signals.begin(), params->signals.end(), "vpdq") ==
              params->signals.end()) {
        params->signals.emplace_back("vpdq");
        params->registered_params["vpdq"] = vm.registered_params["vpdq"];
      }
      for (MatchHit& h : vm.hits) {
        if (!h.matched || h.allow) continue;
        const auto ev = h.registered.find("vpdq");
        if (ev == h.registered.end()) continue;
        std::vector<std::pair<double, double>> times;
        for (const auto& span : ev->second.detail.value("query_times", nlohmann::json::array()))
          times.emplace_back(span.at(0).get<double>(), span.at(1).get<double>());
        const auto matched = ev->second.detail.value("query_matched", std::int64_t{0});
        const auto it = seen.find(h.entry.id);
        if (it == seen.end()) {
          Seen& s = seen[h.entry.id];
          s.times = std::move(times);
          s.frames = matched;
          s.best_time = s.times.empty() ? 0 : s.times.front().first;
          s.best = std::move(h);
          continue;
        }
        // An animation indexed with its first frame's PDQ hash and its frames' vPDQ: one
        // hit, with both signals' evidence and the union of their times.
        Seen& s = it->second;
        s.best.registered["vpdq"] = ev->second;
        if (std::find(s.best.signals_matched.begin(), s.best.signals_matched.end(), "vpdq") ==
            s.best.signals_matched.end())
          s.best.signals_matched.emplace_back("vpdq");
        s.best.score = joint_score(s.best);
        s.frames = std::max(s.frames, matched);
        s.times.insert(s.times.end(), times.begin(), times.end());
        std::sort(s.times.begin(), s.times.end());
        std::vector<std::pair<double, double>> joined;
        for (const auto& t : s.times)
          if (!joined.empty() && t.first <= joined.back().second)
            joined.back().second = std::max(joined.back().second, t.second);
          else
            joined.push_back(t);
        s.times = std::move(joined);
      }
    }
    if (seen.empty() && failure) throw *failure;
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
    r.failure = e;
  } catch (const std::exception& e) {
    r.error = r.file + ": " + e.what();
  }
  return r;
}

}  // namespace hashwall
