// Known photos inside videos and animated GIFs (src/match/video_check.cpp): found with the
// right entry and the right times, and unrelated videos never match.
#include <webp/encode.h>
#include <webp/mux.h>

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libswscale/swscale.h>
}

#include <catch2/catch.hpp>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <sstream>

#include "bank/bank.hpp"
#include "hash/pdq.hpp"
#include "match/matcher.hpp"
#include "match/video_check.hpp"
#include "support.hpp"
#include "video/video.hpp"
#include "video/vpdq.hpp"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

const cv::Size kCanvas(640, 360);

cv::Mat read(const fs::path& p) {
  cv::Mat m = cv::imread(p.string(), cv::IMREAD_COLOR);
  REQUIRE(!m.empty());
  return m;
}

// `img` scaled by `scale` of the largest size that fits `canvas`, on black, with its top
// left corner at `at` (centred when at.x < 0).
cv::Mat place(const cv::Mat& img, double scale = 1.0, cv::Point at = {-1, -1},
              cv::Mat background = {}) {
  cv::Mat canvas =
      background.empty() ? cv::Mat(kCanvas, CV_8UC3, cv::Scalar::all(0)) : background.clone();
  const double fit = std::min(static_cast<double>(kCanvas.width) / img.cols,
                              static_cast<double>(kCanvas.height) / img.rows) *
                     scale;
  cv::Mat small;
  cv::resize(img, small,
             cv::Size(std::max(1, static_cast<int>(img.cols * fit)),
                      std::max(1, static_cast<int>(img.rows * fit))),
             0, 0, cv::INTER_AREA);
  if (at.x < 0) at = {(kCanvas.width - small.cols) / 2, (kCanvas.height - small.rows) / 2};
  small.copyTo(canvas(cv::Rect(at, small.size())));
  return canvas;
}

// `img` at `scale` of the size that fits the canvas, in its bottom right corner (10 px in)
// over `background`.
cv::Mat in_corner(const cv::Mat& img, double scale, const cv::Mat& background) {
  const double fit = std::min(static_cast<double>(kCanvas.width) / img.cols,
                              static_cast<double>(kCanvas.height) / img.rows) *
                     scale;
  const cv::Size size(static_cast<int>(img.cols * fit), static_cast<int>(img.rows * fit));
  return place(img, scale, {kCanvas.width - size.width - 10, kCanvas.height - size.height - 10},
               background);
}

// Each picture for `seconds` at `fps`, MPEG-4 in MP4 (OpenCV's FFmpeg writer).
void write_video(const fs::path& out, const std::vector<cv::Mat>& pictures, double seconds,
                 int fps = 5) {
  cv::VideoWriter w(out.string(), cv::VideoWriter::fourcc('m', 'p', '4', 'v'), fps, kCanvas);
  REQUIRE(w.isOpened());
  for (const auto& p : pictures)
    for (int i = 0; i < static_cast<int>(seconds * fps); ++i) w.write(p);
}

// An animated GIF (FFmpeg's encoder, 3-3-2 colour with dithering), one picture a second,
// or each from its time in `seconds` (a picture lasts until the next one's time).
void write_gif(const fs::path& out, const std::vector<cv::Mat>& pictures,
               const std::vector<int>& seconds = {}) {
  const int w = pictures.at(0).cols, h = pictures.at(0).rows;
  AVFormatContext* oc = nullptr;
  REQUIRE(avformat_alloc_output_context2(&oc, nullptr, "gif", out.c_str()) >= 0);
  const AVCodec* codec = avcodec_find_encoder(AV_CODEC_ID_GIF);
  REQUIRE(codec);
  AVStream* st = avformat_new_stream(oc, nullptr);
  AVCodecContext* c = avcodec_alloc_context3(codec);
  c->width = w;
  c->height = h;
  c->pix_fmt = AV_PIX_FMT_RGB8;
  c->time_base = {1, 1};
  REQUIRE(avcodec_open2(c, codec, nullptr) >= 0);
  REQUIRE(avcodec_parameters_from_context(st->codecpar, c) >= 0);
  st->time_base = c->time_base;
  REQUIRE(avio_open(&oc->pb, out.c_str(), AVIO_FLAG_WRITE) >= 0);
  REQUIRE(avformat_write_header(oc, nullptr) >= 0);
  SwsContext* sws = sws_getContext(w, h, AV_PIX_FMT_BGR24, w, h, AV_PIX_FMT_RGB8, SWS_BICUBIC,
                                   nullptr, nullptr, nullptr);
  AVPacket* pkt = av_packet_alloc();
  const auto drain = [&] {
    while (avcodec_receive_packet(c, pkt) == 0) {
      av_packet_rescale_ts(pkt, c->time_base, st->time_base);
      pkt->stream_index = st->index;
      REQUIRE(av_interleaved_write_frame(oc, pkt) >= 0);
    }
  };
  for (std::size_t i = 0; i < pictures.size(); ++i) {
    AVFrame* f = av_frame_alloc();
    f->format = AV_PIX_FMT_RGB8;
    f->width = w;
    f->height = h;
    REQUIRE(av_frame_get_buffer(f, 0) >= 0);
    const std::uint8_t* src[1] = {pictures[i].data};
    const int src_stride[1] = {static_cast<int>(pictures[i].step)};
    sws_scale(sws, src, src_stride, 0, h, f->data, f->linesize);
    f->pts = seconds.empty() ? static_cast<std::int64_t>(i) : seconds.at(i);
    REQUIRE(avcodec_send_frame(c, f) >= 0);
    av_frame_free(&f);
    drain();
  }
  avcodec_send_frame(c, nullptr);
  drain();
  av_write_trailer(oc);
  av_packet_free(&pkt);
  sws_freeContext(sws);
  avcodec_free_context(&c);
  avio_closep(&oc->pb);
  avformat_free_context(oc);
}

std::vector<fs::path> sorted_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

// `scan --jsonl` of one file: its JSON line.
json scan_one(const std::string& bank, const fs::path& file, const std::string& extra = "") {
  const auto r = hwtest::run_hashwall("scan --bank '" + bank + "' --jsonl -q " + extra + " '" +
                                      file.string() + "'");
  INFO(r.err);
  REQUIRE((r.exit_code == 0 || r.exit_code == 1));
  return json::parse(r.out);
}

// The entries a report names, by source file name, with their time ranges.
std::map<std::string, json> hits_by_source(const json& report) {
  std::map<std::string, json> out;
  for (const auto& m : report["matches"])
    out[fs::path(m["source"].get<std::string>()).filename().string()] = m;
  return out;
}

// Whether some reported range overlaps [from, to].
bool seen_between(const json& hit, double from, double to) {
  for (const auto& t : hit["times"])
    if (t[0].get<double>() <= to && t[1].get<double>() >= from) return true;
  return false;
}

}  // namespace

TEST_CASE("two known photos in a slideshow are found with their times and nothing else",
          "[video][match]") {
  // samples/: the bank's six photos; the slideshow shows the three unrelated uploads, two
  // of the known photos (one of them an edited upload), and the unrelated ones again.
  hwtest::TempDir dir;
  const auto samples = hwtest::source_dir() / "samples";
  const std::string bank = (dir / "bank.db").string();
  REQUIRE(
      hwtest::run_hashwall("index '" + (samples / "bank").string() + "' --bank '" + bank + "' -q")
          .exit_code == 0);
  const auto up = samples / "uploads";
  const std::vector<cv::Mat> shows = {
      place(read(up / "unrelated--skimage_coffee.jpg")),
      place(read(up / "unrelated--mate_Storm.jpg")),
      place(read(samples / "bank" / "skimage_chelsea.jpg")),  // 4-6 s
      place(read(up / "unrelated--lomiri_aitzgorri_by_Aitzol_Berasategi.jpg")),
      place(read(up / "mate_Aqua--jpeg30.jpg")),  // 8-10 s
      place(read(up / "unrelated--skimage_coffee.jpg"))};
  // (Catch runs the case once per SECTION: each section makes only its own video.)
  SECTION("as an MP4, 2 s a picture") {
    const auto video = dir / "slides.mp4";
    write_video(video, shows, 2.0);
    const json r = scan_one(bank, video);
    INFO(r.dump(1));
    CHECK(r["status"] == "match");
    const auto hits = hits_by_source(r);
    REQUIRE(hits.size() == 2);
    REQUIRE(hits.count("skimage_chelsea.jpg"));
    REQUIRE(hits.count("mate_Aqua.jpg"));
    CHECK(seen_between(hits.at("skimage_chelsea.jpg"), 4, 5.9));
    CHECK_FALSE(seen_between(hits.at("skimage_chelsea.jpg"), 0, 3.9));
    CHECK_FALSE(seen_between(hits.at("skimage_chelsea.jpg"), 6.1, 12));
    CHECK(seen_between(hits.at("mate_Aqua.jpg"), 8, 9.9));
    CHECK_FALSE(seen_between(hits.at("mate_Aqua.jpg"), 0, 7.9));
    CHECK(r["video"]["frames_checked"] == 12);  // 12 s at 1 a second
    CHECK(r["video"]["frames_decoded"] == 60);
  }

  SECTION("the same video as an animated GIF, one picture a second") {
    std::vector<cv::Mat> small;
    for (const auto& s : shows) {
      cv::Mat m;
      cv::resize(s, m, cv::Size(320, 180), 0, 0, cv::INTER_AREA);
      small.push_back(m);
    }
    const auto gif = dir / "slides.gif";
    write_gif(gif, small);
    const json g = scan_one(bank, gif);
    INFO(g.dump(1));
    const auto ghits = hits_by_source(g);
    CHECK(g["status"] == "match");
    REQUIRE(ghits.size() == 2);
    CHECK(seen_between(ghits.at("skimage_chelsea.jpg"), 2, 2));
    CHECK(seen_between(ghits.at("mate_Aqua.jpg"), 4, 4));
    CHECK(g["video"]["codec"] == "gif");
  }

  SECTION("a GIF whose pictures last different times: each found at its own time") {
    std::vector<cv::Mat> small;
    for (const int k : {0, 2, 1}) {
      cv::Mat m;
      cv::resize(shows[static_cast<std::size_t>(k)], m, cv::Size(320, 180), 0, 0, cv::INTER_AREA);
      small.push_back(m);
    }
    // coffee for 3 s, Chelsea (known) for 1 s, Storm for 2 s: frame numbers would put
    // Chelsea at 2 s (vPDQ's n / average rate); its presentation time is 3 s.
    const auto gif = dir / "uneven.gif";
    write_gif(gif, small, {0, 3, 4});
    const json g = scan_one(bank, gif);
    INFO(g.dump(1));
    const auto ghits = hits_by_source(g);
    REQUIRE(ghits.size() == 1);
    REQUIRE(ghits.count("skimage_chelsea.jpg"));
    CHECK(seen_between(ghits.at("skimage_chelsea.jpg"), 3, 3));
    CHECK_FALSE(seen_between(ghits.at("skimage_chelsea.jpg"), 0, 2.9));
  }

  SECTION("a video of the unrelated photos only matches nothing") {
    const auto other = dir / "other.mp4";
    write_video(other, {shows[0], shows[1], shows[3]}, 2.0);
    const auto res =
        hwtest::run_hashwall("scan --bank '" + bank + "' --fps 0 -q '" + other.string() + "'");
    CHECK(res.exit_code == 0);
  }
}

constexpr double kCornerScale = 0.4;

TEST_CASE("a known photo seen before a video fails is still reported, the failure noted",
          "[video][match]") {
  // Cutting or damaging the tail of a video must not hide what came before it: here the
  // check stops at its frame bound, after the known photo's frames.
  hwtest::TempDir dir;
  const auto samples = hwtest::source_dir() / "samples";
  const cv::Mat chelsea = read(samples / "bank" / "skimage_chelsea.jpg");
  auto bank = hashwall::Bank::open((dir / "bank.db").string(), hashwall::OpenMode::Create);
  hashwall::NewEntry e;
  e.pdq = hashwall::Hash256{};
  e.pdq = hashwall::pdq_hash(chelsea).hash;
  e.quality = hashwall::pdq_hash(chelsea).quality;
  e.source = "chelsea";
  REQUIRE(bank->add(std::span(&e, 1)).added == 1);
  const hashwall::Matcher matcher(*bank, {});
  cv::Mat frame, other;
  cv::resize(chelsea, frame, kCanvas, 0, 0, cv::INTER_AREA);
  cv::resize(read(samples / "uploads" / "unrelated--mate_Storm.jpg"), other, kCanvas, 0, 0,
             cv::INTER_AREA);
  const auto video = dir / "v.mp4";
  write_video(video, {frame, other, other, other}, 1.0);  // 4 s
  hashwall::VideoCheckOptions o;  // PDQ only (no other signal set up): one a second
  o.max_checked_frames = 2;
  const auto r = hashwall::check_video(video, matcher, {}, o);
  INFO(r.error);
  REQUIRE(r.error.empty());
  REQUIRE(r.video);
  CHECK(r.result.verdict == hashwall::Verdict::Match);
  REQUIRE(r.result.hits.size() == 1);
  CHECK(r.result.hits[0].entry.source == "chelsea");
  CHECK(r.video->incomplete.find("more than 2 frames") != std::string::npos);

  // Without a match before the failure, the failure is the report.
  write_video(video, {other, other, other, frame}, 1.0);
  const auto r2 = hashwall::check_video(video, matcher, {}, o);
  CHECK(r2.error.find("more than 2 frames") != std::string::npos);
  CHECK(r2.result.hits.empty());
}

// The bank of the ../shared cases, made once per process (CTest runs one case a process):
// 80 photos (sun_hays80); everything else shown comes from bsds500, which it does not hold.
struct SharedVideoCase {
  fs::path shared;
  hwtest::TempDir dir;
  std::string bank;
  std::vector<fs::path> known, others;
  static std::string name(const fs::path& p) { return p.filename().string(); }
};
const SharedVideoCase& shared_case(const fs::path& shared) {
  static SharedVideoCase c;
  if (c.bank.empty()) {
    c.shared = shared;
    const auto known_dir = shared / "photos" / "sun_hays80";
    const std::string bank = (c.dir / "bank.db").string();
    REQUIRE(hwtest::run_hashwall("index '" + known_dir.string() + "' --bank '" + bank + "' -q")
                .exit_code == 0);
    c.known = sorted_files(known_dir);
    c.others = sorted_files(shared / "photos" / "bsds500");
    REQUIRE(c.known.size() >= 20);
    REQUIRE(c.others.size() >= 200);
    c.bank = bank;
  }
  return c;
}

TEST_CASE("a slideshow of 30 photos finds the 2 known ones at their times",
          "[video][match][shared][slow]") {
  HW_REQUIRE_SHARED(shared);
  const auto& c = shared_case(shared);
  [[maybe_unused]] const auto& known = c.known;
  [[maybe_unused]] const auto& others = c.others;
  [[maybe_unused]] const auto& bank = c.bank;
  [[maybe_unused]] const auto& dir = c.dir;
  [[maybe_unused]] const auto name = &SharedVideoCase::name;
  std::vector<cv::Mat> shows;
  for (int i = 0; i < 30; ++i)
    shows.push_back(place(read(i == 7 ? known[3] : i == 19 ? known[11] : others[i])));
  const auto video = dir / "slides.mp4";
  write_video(video, shows, 2.0);
  const json r = scan_one(bank, video);
  INFO(r.dump(1));
  const auto hits = hits_by_source(r);
  REQUIRE(hits.size() == 2);
  REQUIRE(hits.count(name(known[3])));
  REQUIRE(hits.count(name(known[11])));
  CHECK(seen_between(hits.at(name(known[3])), 14, 15.9));
  CHECK_FALSE(seen_between(hits.at(name(known[3])), 0, 13.9));
  CHECK_FALSE(seen_between(hits.at(name(known[3])), 16.1, 60));
  CHECK(seen_between(hits.at(name(known[11])), 38, 39.9));
}

TEST_CASE("a known photo small in a corner of a video is found while it is shown",
          "[video][match][shared][slow]") {
  HW_REQUIRE_SHARED(shared);
  const auto& c = shared_case(shared);
  [[maybe_unused]] const auto& known = c.known;
  [[maybe_unused]] const auto& others = c.others;
  [[maybe_unused]] const auto& bank = c.bank;
  [[maybe_unused]] const auto& dir = c.dir;
  [[maybe_unused]] const auto name = &SharedVideoCase::name;
  std::vector<cv::Mat> shows;
  for (int i = 0; i < 6; ++i) {
    cv::Mat bg = place(read(others[40 + i]));
    shows.push_back(i >= 2 && i < 4 ? in_corner(read(known[5]), kCornerScale, bg) : bg);
  }
  const auto video = dir / "corner.mp4";
  write_video(video, shows, 2.0);
  const json r = scan_one(bank, video);
  INFO(r.dump(1));
  const auto hits = hits_by_source(r);
  REQUIRE(hits.size() == 1);
  REQUIRE(hits.count(name(known[5])));
  CHECK(seen_between(hits.at(name(known[5])), 4, 7.9));
  CHECK_FALSE(seen_between(hits.at(name(known[5])), 0, 3.9));
}

TEST_CASE("a letterboxed captioned copy in a video is found", "[video][match][shared][slow]") {
  HW_REQUIRE_SHARED(shared);
  const auto& c = shared_case(shared);
  [[maybe_unused]] const auto& known = c.known;
  [[maybe_unused]] const auto& others = c.others;
  [[maybe_unused]] const auto& bank = c.bank;
  [[maybe_unused]] const auto& dir = c.dir;
  [[maybe_unused]] const auto name = &SharedVideoCase::name;
  cv::Mat framed = place(read(known[8]), 0.8);
  cv::rectangle(framed, cv::Rect(0, 300, kCanvas.width, 60), cv::Scalar(255, 255, 255), cv::FILLED);
  cv::putText(framed, "you will not believe this", {20, 342}, cv::FONT_HERSHEY_SIMPLEX, 1.1,
              cv::Scalar(0, 0, 0), 3);
  const auto video = dir / "caption.mp4";
  write_video(video, {place(read(others[60])), framed, place(read(others[61]))}, 3.0);
  const json r = scan_one(bank, video);
  INFO(r.dump(1));
  const auto hits = hits_by_source(r);
  REQUIRE(hits.size() == 1);
  REQUIRE(hits.count(name(known[8])));
  CHECK(seen_between(hits.at(name(known[8])), 3, 5.9));
}

TEST_CASE("an animated GIF of a known photo is found on its frames",
          "[video][match][shared][slow]") {
  HW_REQUIRE_SHARED(shared);
  const auto& c = shared_case(shared);
  [[maybe_unused]] const auto& known = c.known;
  [[maybe_unused]] const auto& others = c.others;
  [[maybe_unused]] const auto& bank = c.bank;
  [[maybe_unused]] const auto& dir = c.dir;
  [[maybe_unused]] const auto name = &SharedVideoCase::name;
  std::vector<cv::Mat> pics;
  for (const auto& p : {others[70], known[14], known[14], others[71]}) {
    cv::Mat m;
    cv::resize(place(read(p)), m, cv::Size(400, 225), 0, 0, cv::INTER_AREA);
    pics.push_back(m);
  }
  const auto gif = dir / "anim.gif";
  write_gif(gif, pics);
  const json r = scan_one(bank, gif);
  INFO(r.dump(1));
  const auto hits = hits_by_source(r);
  REQUIRE(hits.size() == 1);
  REQUIRE(hits.count(name(known[14])));
  CHECK(seen_between(hits.at(name(known[14])), 1, 2));
  CHECK_FALSE(seen_between(hits.at(name(known[14])), 3, 3));
}

TEST_CASE("a video of 100 unrelated photos matches nothing at any frame",
          "[video][match][shared][slow]") {
  HW_REQUIRE_SHARED(shared);
  const auto& c = shared_case(shared);
  [[maybe_unused]] const auto& known = c.known;
  [[maybe_unused]] const auto& others = c.others;
  [[maybe_unused]] const auto& bank = c.bank;
  [[maybe_unused]] const auto& dir = c.dir;
  [[maybe_unused]] const auto name = &SharedVideoCase::name;
  // docs/VIDEO.md measures more (Meta's sample videos: 2,383 frames); this keeps CI short.
  std::vector<cv::Mat> shows;
  for (int i = 100; i < 200 && i < static_cast<int>(others.size()); ++i)
    shows.push_back(place(read(others[i])));
  const auto video = dir / "unrelated.mp4";
  write_video(video, shows, 1.0, 1);
  const json r = scan_one(bank, video, "--fps 0");
  INFO(r.dump(1));
  CHECK(r["status"] == "no-match");
  CHECK(r["video"]["frames_checked"] == static_cast<int>(shows.size()));
}

namespace {

// A picture no bank holds: coloured shapes from `seed`, softened a little as a camera would.
cv::Mat made_picture(unsigned seed) {
  cv::RNG rng(seed);
  cv::Mat m(kCanvas, CV_8UC3,
            cv::Scalar(rng.uniform(0, 255), rng.uniform(0, 255), rng.uniform(0, 255)));
  for (int i = 0; i < 14; ++i) {
    const cv::Scalar c(rng.uniform(0, 255), rng.uniform(0, 255), rng.uniform(0, 255));
    const cv::Point p(rng.uniform(0, kCanvas.width), rng.uniform(0, kCanvas.height));
    if (i % 2)
      cv::circle(m, p, rng.uniform(10, 120), c, cv::FILLED);
    else
      cv::rectangle(m, p, p + cv::Point(rng.uniform(20, 260), rng.uniform(20, 160)), c, cv::FILLED);
  }
  cv::GaussianBlur(m, m, cv::Size(5, 5), 0);
  return m;
}

void write_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

// The vpdq evidence of a report's hit.
json vpdq_of(const json& hit) { return hit["evidence"]["vpdq"]["detail"]; }

}  // namespace

TEST_CASE("a clip of an indexed video is found in another video, with its times in both",
          "[video][match][vpdq]") {
  // The known video: 12 pictures, 2 s each (24 s at 5 frames a second). The clip: its
  // pictures 4 to 7 (8 s to 16 s), re-encoded smaller at another frame rate.
  hwtest::TempDir dir;
  const auto samples = hwtest::source_dir() / "samples";
  std::vector<cv::Mat> pictures;
  for (const auto& p : sorted_files(samples / "bank")) pictures.push_back(place(read(p)));
  for (unsigned s = 1; pictures.size() < 12; ++s) pictures.push_back(made_picture(s));
  const auto known = dir / "known.mp4";
  write_video(known, pictures, 2.0);
  const std::string bank = (dir / "videos.db").string();
  const auto idx = hwtest::run_hashwall("index '" + known.string() + "' --bank '" + bank +
                                        "' --signals pdq,vpdq -q --json");
  INFO(idx.err);
  REQUIRE(idx.exit_code == 0);
  CHECK(json::parse(idx.out)["added"] == 1);

  std::vector<cv::Mat> clip_pictures;
  for (int i = 4; i < 8; ++i) {
    cv::Mat small;
    cv::resize(pictures[static_cast<std::size_t>(i)], small, cv::Size(480, 270), 0, 0,
               cv::INTER_AREA);
    cv::Mat back(kCanvas, CV_8UC3, cv::Scalar::all(0));
    cv::resize(small, back, kCanvas, 0, 0, cv::INTER_LINEAR);  // down and up again: softer
    clip_pictures.push_back(back);
  }
  const auto clip = dir / "clip.mp4";
  write_video(clip, clip_pictures, 2.0, 12);

  const auto query_json = [&](const std::string& b, const fs::path& f) {
    const auto r = hwtest::run_hashwall("query '" + f.string() + "' --bank '" + b + "' --json");
    INFO(r.err);
    REQUIRE((r.exit_code == 0 || r.exit_code == 1));
    return json::parse(r.out);
  };

  SECTION("the clip: the known video, at 8 s to 16 s of it and all of the clip") {
    const json r = query_json(bank, clip);
    INFO(r.dump(1));
    REQUIRE(r["status"] == "match");
    REQUIRE(r["matches"].size() == 1);
    const json& hit = r["matches"][0];
    CHECK(hit["signal"] == "vpdq");
    CHECK(fs::path(hit["source"].get<std::string>()).filename() == "known.mp4");
    const json ev = vpdq_of(hit);
    CHECK(ev["query_percent"].get<double>() >= 80);
    CHECK(ev["entry_percent"].get<double>() < 50);  // a third of the known video
    REQUIRE(ev["entry_times"].size() == 1);
    CHECK(ev["entry_times"][0][0].get<double>() == Approx(8).margin(0.5));
    CHECK(ev["entry_times"][0][1].get<double>() == Approx(16).margin(1.1));
    CHECK(seen_between(hit, 0, 1));
    CHECK(seen_between(hit, 6, 7));
  }

  SECTION("the whole video re-encoded: most of the entry's frames") {
    const auto again = dir / "again.mp4";
    write_video(again, pictures, 2.0, 8);
    const json r = query_json(bank, again);
    REQUIRE(r["matches"].size() == 1);
    CHECK(vpdq_of(r["matches"][0])["entry_percent"].get<double>() >= 80);
  }

  SECTION("unrelated videos match nothing, nor does a photo of a frame") {
    std::vector<cv::Mat> other;
    for (unsigned s = 100; s < 112; ++s) other.push_back(made_picture(s));
    const auto unrelated = dir / "unrelated.mp4";
    write_video(unrelated, other, 2.0);
    CHECK(query_json(bank, unrelated)["status"] == "no-match");
    // The known video's own pictures as photos: a video entry holds no photo hash.
    const auto still = dir / "still.png";
    cv::imwrite(still.string(), pictures[5]);
    CHECK(query_json(bank, still)["status"] == "no-match");
  }

  SECTION("exported as vPDQ files and threatexchange lines, imported elsewhere: still found") {
    const auto out = dir / "exported";
    REQUIRE(
        hwtest::run_hashwall("export --bank '" + bank + "' --format vpdq -o '" + out.string() + "'")
            .exit_code == 0);
    const auto files = sorted_files(out);
    REQUIRE(files.size() == 1);
    const std::string other = (dir / "imported.db").string();
    auto imp = hwtest::run_hashwall("import '" + files[0].string() + "' --bank '" + other +
                                    "' --format vpdq --json");
    INFO(imp.err);
    REQUIRE(imp.exit_code == 0);
    CHECK(json::parse(imp.out)["added"] == 1);
    // The same file again: the bank holds it already.
    imp = hwtest::run_hashwall("import '" + files[0].string() + "' --bank '" + other +
                               "' --format vpdq --json");
    CHECK(json::parse(imp.out)["added"] == 0);
    json r = query_json(other, clip);
    REQUIRE(r["matches"].size() == 1);
    CHECK(r["matches"][0]["signal"] == "vpdq");
    CHECK(vpdq_of(r["matches"][0])["entry_times"][0][0].get<double>() == Approx(8).margin(0.5));

    const auto te = hwtest::run_hashwall("export --bank '" + bank + "' --format threatexchange");
    REQUIRE(te.exit_code == 0);
    CHECK(te.out.rfind("vpdq [\"", 0) == 0);
    const auto list = dir / "list.txt";
    write_text(list, te.out);
    const std::string third = (dir / "third.db").string();
    REQUIRE(hwtest::run_hashwall("import '" + list.string() + "' --bank '" + third +
                                 "' --format threatexchange")
                .exit_code == 0);
    r = query_json(third, clip);
    REQUIRE(r["matches"].size() == 1);
    CHECK(r["matches"][0]["signal"] == "vpdq");

    // Meta's format from `hash --vpdq`, every frame, imported: found as well.
    const auto h = hwtest::run_hashwall("hash --vpdq '" + known.string() + "'");
    REQUIRE(h.exit_code == 0);
    const auto meta = dir / "known.txt";
    write_text(meta, h.out);
    const std::string fourth = (dir / "fourth.db").string();
    REQUIRE(
        hwtest::run_hashwall("import '" + meta.string() + "' --bank '" + fourth + "' --format vpdq")
            .exit_code == 0);
    CHECK(query_json(fourth, clip)["status"] == "match");
    CHECK(hwtest::run_hashwall("check --bank '" + fourth + "'").exit_code == 0);
  }

  SECTION("removed, it is found no more; the bank checks clean throughout") {
    CHECK(hwtest::run_hashwall("check --bank '" + bank + "'").exit_code == 0);
    const json r = query_json(bank, clip);
    REQUIRE(r["matches"].size() == 1);
    const auto id = r["matches"][0]["id"].get<std::int64_t>();
    REQUIRE(
        hwtest::run_hashwall("remove --bank '" + bank + "' --id " + std::to_string(id)).exit_code ==
        0);
    CHECK(query_json(bank, clip)["status"] == "no-match");
    CHECK(hwtest::run_hashwall("check --bank '" + bank + "'").exit_code == 0);
    // Indexed again: a new entry, found again.
    REQUIRE(
        hwtest::run_hashwall("index '" + known.string() + "' --bank '" + bank + "' -q").exit_code ==
        0);
    CHECK(query_json(bank, clip)["status"] == "match");
  }

  SECTION("a bank without the vpdq signal refuses a video by name, and goes on") {
    const std::string photos = (dir / "photos.db").string();
    const auto r = hwtest::run_hashwall("index '" + known.string() + "' '" +
                                        (samples / "bank" / "mate_Aqua.jpg").string() +
                                        "' --bank '" + photos + "' --signals pdq -q");
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("known.mp4: a video, and this bank keeps no videos") != std::string::npos);
    CHECK(hwtest::run_hashwall("stats --bank '" + photos + "' --json").out.find("\"entries\": 1") !=
          std::string::npos);
    // In a folder, a video is passed over in such a bank, as before video banks.
    const auto folder = dir / "folder";
    fs::create_directories(folder);
    fs::copy_file(known, folder / "known.mp4");
    fs::copy_file(samples / "bank" / "mate_LadyBird.jpg", folder / "ladybird.jpg");
    const auto walked =
        hwtest::run_hashwall("index '" + folder.string() + "' --bank '" + photos + "' -q --json");
    INFO(walked.err);
    CHECK(walked.exit_code == 0);
    CHECK(json::parse(walked.out)["added"] == 1);
    // A threatexchange list's vpdq lines are of a type this bank does not match: refused
    // by name, or left out and counted with --skip-unsupported.
    const auto te = hwtest::run_hashwall("export --bank '" + bank + "' --format threatexchange");
    const auto list = dir / "videos.txt";
    write_text(list, te.out + "pdq " + std::string(64, 'a') + "\n");
    auto imp = hwtest::run_hashwall("import '" + list.string() + "' --bank '" + photos +
                                    "' --format threatexchange");
    CHECK(imp.exit_code == 2);
    CHECK(imp.err.find("signal type 'vpdq' is not one this bank matches") != std::string::npos);
    imp = hwtest::run_hashwall("import '" + list.string() + "' --bank '" + photos +
                               "' --format threatexchange --skip-unsupported --json");
    INFO(imp.err);
    REQUIRE(imp.exit_code == 0);
    const json ji = json::parse(imp.out);
    CHECK(ji["added"] == 1);
    CHECK(ji["skipped"]["vpdq"] == 1);
  }
}

TEST_CASE("a known photo shown for less than the sampling interval is found with --scene",
          "[video][match]") {
  // One frame (0.2 s) of a known photo between two unrelated ones, at 5 frames a second:
  // once a second the check looks at 0, 1 and 2 s and misses it at 1.2 s; a scene change
  // takes it.
  hwtest::TempDir dir;
  const auto samples = hwtest::source_dir() / "samples";
  const std::string bank = (dir / "bank.db").string();
  REQUIRE(hwtest::run_hashwall("index '" + (samples / "bank").string() + "' --bank '" + bank +
                               "' --signals pdq -q")
              .exit_code == 0);
  // Each picture fills the frame (PDQ alone: no letterbox bars to see past).
  const auto fill = [](const cv::Mat& m) {
    cv::Mat out;
    cv::resize(m, out, kCanvas, 0, 0, cv::INTER_AREA);
    return out;
  };
  const cv::Mat coffee = fill(read(samples / "uploads" / "unrelated--skimage_coffee.jpg"));
  const cv::Mat storm = fill(read(samples / "uploads" / "unrelated--mate_Storm.jpg"));
  std::vector<cv::Mat> shows(6, coffee);
  shows.push_back(fill(read(samples / "bank" / "skimage_chelsea.jpg")));
  for (int i = 0; i < 6; ++i) shows.push_back(storm);
  const auto video = dir / "flash.mp4";
  write_video(video, shows, 0.2, 5);  // one frame each: 2.6 s in all
  const json plain = scan_one(bank, video);
  CHECK(plain["status"] == "no-match");
  const json scene = scan_one(bank, video, "--scene 0.1");
  INFO(scene.dump(1));
  REQUIRE(scene["status"] == "match");
  const auto hits = hits_by_source(scene);
  REQUIRE(hits.size() == 1);
  REQUIRE(hits.count("skimage_chelsea.jpg"));
  CHECK(seen_between(hits.at("skimage_chelsea.jpg"), 1.1, 1.3));
  // The frames the changes brought in are counted: the two cuts, to and from the photo.
  CHECK(scene["video"]["frames_checked"].get<int>() ==
        plain["video"]["frames_checked"].get<int>() + 2);
}

namespace {

// An animated WebP (libwebp's animation encoder), each picture for its duration in ms.
void write_webp(const fs::path& out, const std::vector<cv::Mat>& pictures,
                const std::vector<int>& durations_ms) {
  const int w = pictures.at(0).cols, h = pictures.at(0).rows;
  WebPAnimEncoderOptions eo;
  REQUIRE(WebPAnimEncoderOptionsInit(&eo));
  WebPAnimEncoder* enc = WebPAnimEncoderNew(w, h, &eo);
  REQUIRE(enc);
  int t = 0;
  for (std::size_t i = 0; i < pictures.size(); ++i) {
    WebPPicture pic;
    REQUIRE(WebPPictureInit(&pic));
    pic.width = w;
    pic.height = h;
    pic.use_argb = 1;
    REQUIRE(WebPPictureImportBGR(&pic, pictures[i].data, static_cast<int>(pictures[i].step)));
    WebPConfig cfg;
    REQUIRE(WebPConfigInit(&cfg));
    cfg.quality = 90;
    REQUIRE(WebPAnimEncoderAdd(enc, &pic, t, &cfg));
    WebPPictureFree(&pic);
    t += durations_ms.at(i);
  }
  REQUIRE(WebPAnimEncoderAdd(enc, nullptr, t, nullptr));
  WebPData data;
  WebPDataInit(&data);
  REQUIRE(WebPAnimEncoderAssemble(enc, &data));
  std::ofstream(out, std::ios::binary)
      .write(reinterpret_cast<const char*>(data.bytes), static_cast<std::streamsize>(data.size));
  WebPDataClear(&data);
  WebPAnimEncoderDelete(enc);
}

}  // namespace

TEST_CASE("an animated WebP is read frame by frame at its own times, and a known photo in it found",
          "[video][match]") {
  // FFmpeg 5.1 decodes a WebP as a still; libwebp's demuxer reads the animation.
  hwtest::TempDir dir;
  const auto samples = hwtest::source_dir() / "samples";
  const auto fill = [](const cv::Mat& m) {
    cv::Mat out;
    cv::resize(m, out, cv::Size(320, 180), 0, 0, cv::INTER_AREA);
    return out;
  };
  const std::vector<cv::Mat> shows = {
      fill(read(samples / "uploads" / "unrelated--skimage_coffee.jpg")),
      fill(read(samples / "bank" / "skimage_chelsea.jpg")),
      fill(read(samples / "uploads" / "unrelated--mate_Storm.jpg"))};
  const auto webp = dir / "anim.webp";
  write_webp(webp, shows, {1000, 500, 1500});
  CHECK(hashwall::is_video_file(webp));
  const std::string head = [&] {
    std::ifstream in(webp, std::ios::binary);
    std::string b(64, '\0');
    in.read(b.data(), 64);
    return b;
  }();
  CHECK(hashwall::is_video_bytes(
      std::span(reinterpret_cast<const std::uint8_t*>(head.data()), head.size())));

  // By presentation time, every frame: 0, 1 and 1.5 s; by number (vPDQ): n at the average
  // rate, 3 frames in 3 s.
  hashwall::VideoReadOptions o;
  o.by_time = true;
  std::vector<std::pair<std::int64_t, double>> got;
  std::vector<hashwall::Hash256> hashes;
  const auto info = hashwall::read_video(webp, o, [&](const hashwall::VideoFrame& f) {
    got.emplace_back(f.number, f.timestamp);
    hashes.push_back(hashwall::pdq_hash_rgb24(f.rgb, f.height, f.width, f.stride).hash);
    CHECK(f.width == 320);
    CHECK(f.height == 180);
  });
  CHECK(info.codec == "webp");
  CHECK(info.frames == 3);
  CHECK(info.duration_s == Approx(3.0));
  CHECK(info.frame_rate == Approx(1.0));
  REQUIRE(got.size() == 3);
  CHECK(got[1].second == Approx(1.0));
  CHECK(got[2].second == Approx(1.5));
  // Each frame is the picture shown (lossy WebP moves a few bits).
  for (std::size_t i = 0; i < shows.size(); ++i) {
    cv::Mat rgb;
    cv::cvtColor(shows[i], rgb, cv::COLOR_BGR2RGB);
    CHECK(hashwall::hamming(
              hashes[i], hashwall::pdq_hash_rgb24(rgb.data, rgb.rows, rgb.cols, rgb.step).hash) <=
          20);
  }
  const auto vpdq = hashwall::vpdq_hash_video(webp, {});
  REQUIRE(vpdq.size() == 3);
  CHECK(vpdq[2].timestamp == Approx(2.0));

  const std::string bank = (dir / "bank.db").string();
  REQUIRE(hwtest::run_hashwall("index '" + (samples / "bank").string() + "' --bank '" + bank +
                               "' --signals pdq -q")
              .exit_code == 0);
  const json r = scan_one(bank, webp, "--fps 0");
  INFO(r.dump(1));
  REQUIRE(r["status"] == "match");
  const auto hits = hits_by_source(r);
  REQUIRE(hits.size() == 1);
  REQUIRE(hits.count("skimage_chelsea.jpg"));
  CHECK(seen_between(hits.at("skimage_chelsea.jpg"), 1.0, 1.0));
  CHECK_FALSE(seen_between(hits.at("skimage_chelsea.jpg"), 1.6, 3));
}

TEST_CASE("an animated GIF indexed into a video bank is a photo and a video at once",
          "[video][match][vpdq]") {
  // Its first frame's PDQ hash (a still of it is found) and its frames' vPDQ (a video of
  // it is found), in one entry; exported as both a pdq and a vpdq line.
  hwtest::TempDir dir;
  const auto samples = hwtest::source_dir() / "samples";
  std::vector<cv::Mat> shows;
  for (const char* f : {"skimage_chelsea.jpg", "mate_Aqua.jpg", "skimage_camera.png"}) {
    cv::Mat m;
    cv::resize(read(samples / "bank" / f), m, cv::Size(320, 180), 0, 0, cv::INTER_AREA);
    shows.push_back(m);
  }
  const auto gif = dir / "known.gif";
  write_gif(gif, shows);
  const std::string bank = (dir / "bank.db").string();
  REQUIRE(hwtest::run_hashwall("index '" + gif.string() + "' --bank '" + bank +
                               "' --signals pdq,vpdq -q")
              .exit_code == 0);
  const auto te = hwtest::run_hashwall("export --bank '" + bank + "' --format threatexchange");
  REQUIRE(te.exit_code == 0);
  CHECK(te.out.find("pdq ") != std::string::npos);
  CHECK(te.out.find("vpdq [\"") != std::string::npos);
  // A still of its first frame, and the same pictures as an MP4: both find it.
  const auto still = dir / "still.png";
  cv::imwrite(still.string(), shows[0]);
  const auto s =
      hwtest::run_hashwall("query '" + still.string() + "' --bank '" + bank + "' --json");
  CHECK(json::parse(s.out)["status"] == "match");
  std::vector<cv::Mat> big;
  for (const auto& m : shows) big.push_back(place(m));
  const auto mp4 = dir / "again.mp4";
  write_video(mp4, big, 1.0);
  const json v = scan_one(bank, mp4);
  INFO(v.dump(1));
  // One hit: its first frame's PDQ (the MP4's first picture) and vPDQ (all of it), merged.
  REQUIRE(v["matches"].size() == 1);
  CHECK(v["matches"][0]["signals_matched"] == json::parse(R"(["pdq", "vpdq"])"));
  CHECK(v["matches"][0]["evidence"].contains("vpdq"));
  CHECK(v["matches"][0]["evidence"].contains("pdq"));
  CHECK(v["signals"].dump().find("vpdq") != std::string::npos);
}
