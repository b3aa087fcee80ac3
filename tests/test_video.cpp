// Videos (src/video): reading frames through FFmpeg, vPDQ against Meta's vectors, and
// hostile or broken files refused with one clear error.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <sstream>

#include "core/error.hpp"
#include "hash/pdq.hpp"
#include "support.hpp"
#include "video/video.hpp"
#include "video/vpdq.hpp"

using namespace hashwall;
namespace fs = std::filesystem;

namespace {

struct RefFrame {
  std::string number, quality, hex, timestamp;
};

std::vector<RefFrame> read_reference(const fs::path& p) {
  std::ifstream in(p);
  std::vector<RefFrame> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::stringstream s(line);
    RefFrame f;
    std::getline(s, f.number, ',');
    std::getline(s, f.quality, ',');
    std::getline(s, f.hex, ',');
    std::getline(s, f.timestamp, ',');
    out.push_back(f);
  }
  return out;
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream s(line);
  std::string part;
  while (std::getline(s, part, ',')) out.push_back(part);
  return out;
}

// A slideshow of samples/bank: each photo for `per_photo` frames at `fps`, MJPEG in AVI
// (OpenCV's own writer), frames `size`. Returns the photos in order.
std::vector<cv::Mat> write_slideshow(const fs::path& out, int fps, int per_photo, cv::Size size) {
  std::vector<cv::Mat> shown;
  cv::VideoWriter w(out.string(), cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), fps, size);
  REQUIRE(w.isOpened());
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(hwtest::source_dir() / "samples" / "bank"))
    files.push_back(e.path());
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    cv::Mat img = cv::imread(f.string(), cv::IMREAD_COLOR), frame;
    REQUIRE(!img.empty());
    cv::resize(img, frame, size, 0, 0, cv::INTER_AREA);
    shown.push_back(frame);
    for (int i = 0; i < per_photo; ++i) w.write(frame);
  }
  return shown;
}

}  // namespace

TEST_CASE("vPDQ of Meta's sample videos agrees with Meta's hashes frame for frame",
          "[video][vpdq][slow]") {
  HW_REQUIRE_SHARED(shared);
  const fs::path v = shared / "vpdq-vectors";
  // Every video downsampled to 128x128 (cheap), and two at their own size (SD and HD).
  // The rule is Meta's (vpdq/cpp/regtest.py): same frames and timestamps, every frame
  // within the match distance when both qualities are at least 50. The tighter bounds
  // are what this implementation gives (docs/VIDEO.md): a wrong colour order or scaler
  // stays under 31 bits on many frames, but not under these.
  struct Case {
    std::string video;
    int size;
    int max_distance;  // over frames whose qualities are both >= 50
    double max_mean;   // over all frames
  };
  const std::vector<Case> cases = {
      {"chair-19-sd-bar", 128, 12, 3},      {"chair-20-sd-bar", 128, 12, 3},
      {"chair-22-sd-grey-bar", 128, 12, 3}, {"doorknob-hd-no-bar", 128, 31, 10},
      {"pattern-hd-no-bar", 128, 16, 5},    {"pattern-sd-grey-bar", 128, 14, 5},
      {"chair-20-sd-bar", 0, 6, 1.5},       {"pattern-hd-no-bar", 0, 6, 1.5}};
  for (const auto& c : cases) {
    INFO(c.video << " at " << (c.size ? "128x128" : "its own size"));
    const auto ref = read_reference(v / "hashes" / (c.video + (c.size ? "-128x128" : "") + ".txt"));
    REQUIRE(!ref.empty());
    VideoReadOptions o;
    o.width = o.height = c.size;
    VideoInfo info;
    const auto got = vpdq_hash_video(v / "videos" / (c.video + ".mp4"), o, &info);
    REQUIRE(got.size() == ref.size());
    CHECK(info.frames == static_cast<std::int64_t>(ref.size()));
    int worst = 0;
    double sum = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      const auto line = split(vpdq_line(got[i]));
      REQUIRE(line.size() == 4);
      CHECK(line[0] == ref[i].number);
      CHECK(line[3] == ref[i].timestamp);
      const auto want = Hash256::from_hex(ref[i].hex);
      REQUIRE(want);
      const int d = hamming(got[i].hash, *want);
      sum += d;
      if (got[i].quality >= 50 && std::stoi(ref[i].quality) >= 50) worst = std::max(worst, d);
    }
    CHECK(worst <= c.max_distance);
    CHECK(sum / static_cast<double>(got.size()) <= c.max_mean);
  }
}

TEST_CASE("a generated slideshow gives every frame with its number and timestamp", "[video]") {
  hwtest::TempDir dir;
  const auto path = dir / "slides.avi";
  const auto shown = write_slideshow(path, 10, 10, cv::Size(320, 240));
  std::vector<VideoFrame> seen;
  std::vector<std::vector<std::uint8_t>> pixels;
  VideoReadOptions o;
  const auto info = read_video(path, o, [&](const VideoFrame& f) {
    seen.push_back(f);
    pixels.emplace_back(f.rgb, f.rgb + f.stride * static_cast<std::size_t>(f.height));
  });
  CHECK(info.width == 320);
  CHECK(info.height == 240);
  CHECK(info.frame_rate == Approx(10));
  CHECK(info.codec == "mjpeg");
  REQUIRE(info.frames == static_cast<std::int64_t>(shown.size() * 10));
  REQUIRE(seen.size() == shown.size() * 10);
  for (std::size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i].number == static_cast<std::int64_t>(i));
    CHECK(seen[i].timestamp == Approx(static_cast<double>(i) / 10));
  }
  // Each frame is the photo shown then: its PDQ (RGB from the video) is near the PDQ of
  // the photo at that size, and far from the other photos'.
  for (std::size_t k = 0; k < shown.size(); ++k) {
    INFO("photo " << k);
    const std::size_t i = k * 10 + 5;
    const PdqResult fromvideo =
        pdq_hash_rgb24(pixels[i].data(), seen[i].height, seen[i].width, seen[i].stride);
    for (std::size_t j = 0; j < shown.size(); ++j) {
      const int d = hamming(fromvideo.hash, pdq_hash(shown[j]).hash);
      if (j == k)
        CHECK(d <= 16);
      else
        CHECK(d > 31);
    }
  }

  SECTION("one frame a second, and downsampled") {
    VideoReadOptions every_second;
    every_second.seconds_per_frame = 1;
    every_second.width = every_second.height = 128;
    std::vector<std::int64_t> numbers;
    read_video(path, every_second, [&](const VideoFrame& f) {
      CHECK(f.width == 128);
      CHECK(f.height == 128);
      CHECK(f.stride == 128 * 3);
      numbers.push_back(f.number);
    });
    CHECK(numbers == std::vector<std::int64_t>{0, 10, 20, 30, 40, 50});
  }
}

TEST_CASE("every frame of an animated GIF is read with its time", "[video]") {
  // tests/data/video/anim-3.gif (tools/make_test_gif.py): a checkerboard, two colour
  // halves, a disc; 0.5 s each.
  const auto gif = hwtest::source_dir() / "tests" / "data" / "video" / "anim-3.gif";
  VideoInfo info;
  const auto frames = vpdq_hash_video(gif, {}, &info);
  CHECK(info.codec == "gif");
  CHECK(info.width == 32);
  REQUIRE(frames.size() == 3);
  for (std::size_t i = 0; i < 3; ++i) CHECK(frames[i].timestamp == Approx(0.5 * i));
  // Three different pictures: three different hashes.
  CHECK(hamming(frames[0].hash, frames[2].hash) > 31);
  CHECK(hamming(frames[0].hash, frames[1].hash) > 31);
  CHECK(hamming(frames[1].hash, frames[2].hash) > 31);
}

TEST_CASE("a video over a limit is refused at the limit plus one", "[video][limits]") {
  hwtest::TempDir dir;
  const auto path = dir / "slides.avi";
  write_slideshow(path, 10, 3, cv::Size(64, 48));  // 18 frames of 3072 pixels
  const auto count = [&](VideoLimits lim) {
    VideoReadOptions o;
    o.limits = lim;
    std::int64_t n = 0;
    read_video(path, o, [&](const VideoFrame&) { ++n; });
    return n;
  };
  const auto kind_of = [&](VideoLimits lim) {
    try {
      count(lim);
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(path.string()) != std::string::npos);
      return e.kind();
    }
    return ErrorKind::Usage;  // not refused
  };
  VideoLimits lim;
  lim.max_frames = 18;
  CHECK(count(lim) == 18);
  lim.max_frames = 17;
  CHECK(kind_of(lim) == ErrorKind::TooLarge);

  lim = {};
  lim.max_frame_pixels = 64 * 48;
  CHECK(count(lim) == 18);
  lim.max_frame_pixels = 64 * 48 - 1;
  // AVI leaves the frame size to the decoder, which does not decode a frame over the
  // bound: refused as a size that cannot be read, the bound named.
  const auto big = kind_of(lim);
  CHECK((big == ErrorKind::TooLarge || big == ErrorKind::Format));
  try {
    count(lim);
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find(std::to_string(64 * 48 - 1)) != std::string::npos);
  }

  lim = {};
  lim.max_bytes = fs::file_size(path);
  CHECK(count(lim) == 18);
  lim.max_bytes = fs::file_size(path) - 1;
  CHECK(kind_of(lim) == ErrorKind::TooLarge);

  lim = {};
  lim.max_duration_s = 1.0;  // 18 frames at 10 fps: 1.7 s
  CHECK(kind_of(lim) == ErrorKind::TooLarge);

  lim = {};
  lim.max_decode_s = 0;  // the budget is spent before the first frame
  CHECK(kind_of(lim) == ErrorKind::TooLarge);

  std::atomic<bool> stop{true};
  VideoReadOptions o;
  o.stop = &stop;
  CHECK_THROWS_MATCHES(
      read_video(path, o, [](const VideoFrame&) {}), Error,
      Catch::Predicate<Error>([](const Error& e) { return e.kind() == ErrorKind::Interrupted; }));
}

TEST_CASE("a file that is not a whole video gets one clear error", "[video][bad]") {
  hwtest::TempDir dir;
  const auto good = dir / "slides.avi";
  write_slideshow(good, 10, 3, cv::Size(64, 48));
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  const auto write = [&](const std::string& name, const std::string& content) {
    std::ofstream(dir / name, std::ios::binary) << content;
    return dir / name;
  };
  std::mt19937 rng(5);
  std::string noise(20000, '\0');
  for (auto& c : noise) c = static_cast<char>(rng());
  const std::map<std::string, fs::path> cases = {
      {"empty", write("empty.mp4", "")},
      {"noise", write("noise.mp4", noise)},
      {"text", write("notes.mp4", "just some text, not a video\n")},
      {"header only", write("head.avi", bytes.substr(0, 200))},
      {"missing", dir / "absent.mp4"},
      {"a directory", dir.path()},
  };
  for (const auto& [what, path] : cases) {
    INFO(what);
    try {
      read_video(path, {}, [](const VideoFrame&) {});
      FAIL("no error");
    } catch (const Error& e) {
      const std::string msg = e.what();
      CHECK(msg.find(path.string()) == 0);
      CHECK(msg.find('\n') == std::string::npos);
      CHECK(msg.size() < 300);
    }
  }
  // Cut anywhere after the header: either the frames before the cut, or an error; never
  // a crash, a hang, or frames invented past the cut.
  for (const std::size_t cut : {bytes.size() / 3, bytes.size() / 2, bytes.size() - 100}) {
    INFO("cut at " << cut);
    const auto p = write("cut.avi", bytes.substr(0, cut));
    std::int64_t n = 0;
    try {
      read_video(p, {}, [&](const VideoFrame&) { ++n; });
    } catch (const Error& e) {
      CHECK(std::string(e.what()).find(p.string()) == 0);
    }
    CHECK(n <= 18);
  }
}

TEST_CASE("hash --vpdq prints Meta's lines and refuses what it cannot do", "[video][cli]") {
  hwtest::TempDir dir;
  const auto path = dir / "slides.avi";
  write_slideshow(path, 10, 2, cv::Size(96, 64));
  auto r = hwtest::run_hashwall("hash --vpdq '" + path.string() + "'");
  REQUIRE(r.exit_code == 0);
  std::stringstream lines(r.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    const auto f = split(line);
    REQUIRE(f.size() == 4);
    CHECK(f[0] == std::to_string(n));
    CHECK(Hash256::from_hex(f[2]));
    char ts[32];
    std::snprintf(ts, sizeof ts, "%.3f", n / 10.0);
    CHECK(f[3] == ts);
    ++n;
  }
  CHECK(n == 12);

  r = hwtest::run_hashwall("hash --vpdq --seconds-per-hash 1 --vpdq-size 128 --json '" +
                           path.string() + "'");
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("\"frames_decoded\": 12") != std::string::npos);
  CHECK(r.out.find("\"frame\": 10") != std::string::npos);
  CHECK(r.out.find("\"frame\": 1,") == std::string::npos);

  r = hwtest::run_hashwall("hash --vpdq --output-dir '" + (dir / "out").string() + "' '" +
                           path.string() + "'");
  CHECK(r.exit_code == 0);
  CHECK(fs::exists(dir / "out" / "slides.avi.txt"));
  CHECK_FALSE(fs::exists(dir / "out" / "slides.avi.txt.tmp"));
  // The same name twice: the second is refused, not written over the first.
  r = hwtest::run_hashwall("hash --vpdq --output-dir '" + (dir / "out2").string() + "' '" +
                           path.string() + "' '" + path.string() + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("already written") != std::string::npos);
  CHECK(fs::exists(dir / "out2" / "slides.avi.txt"));

  CHECK(hwtest::run_hashwall("hash --vpdq a.mp4 b.mp4").exit_code == 2);  // where to?
  CHECK(hwtest::run_hashwall("hash --vpdq-size 128 '" + path.string() + "'").exit_code == 2);
  r = hwtest::run_hashwall("hash --vpdq '" + (dir / "absent.mp4").string() + "'");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("absent.mp4") != std::string::npos);
}

TEST_CASE("frames of widths whose rows swscale writes past are hashed inside their buffer",
          "[video]") {
  // A 202-px-wide frame is 606 bytes a row: swscale's vector writes ran past the last row
  // of an unpadded buffer and corrupted the heap (found by valgrind on a portrait video
  // scaled to 202x360; the process then aborted in malloc). ASan does not see inside
  // libswscale, so this case holds the sizes and their hashes; `valgrind hashwall_tests`
  // on it is the check of the writes. The hashes of a padded buffer are the pixels'.
  hwtest::TempDir dir;
  for (const cv::Size size : {cv::Size(202, 360), cv::Size(94, 66), cv::Size(330, 186)}) {
    const auto video = dir / ("w" + std::to_string(size.width) + ".avi");
    const auto shown = write_slideshow(video, 5, 2, size);
    hashwall::VideoReadOptions o;
    // Rows padded to 64 bytes, and the buffer past the last row: what swscale writes into.
    hashwall::read_video(video, o, [&](const hashwall::VideoFrame& f) {
      CHECK(f.stride % 64 == 0);
      CHECK(f.stride >= 3 * static_cast<std::size_t>(f.width));
    });
    std::vector<hashwall::VpdqFrame> frames;
    REQUIRE_NOTHROW(frames = hashwall::vpdq_hash_video(video, o));
    REQUIRE(frames.size() == 2 * shown.size());
    // Each frame's hash is near the hash of the picture written (MJPEG moves a few bits).
    cv::Mat rgb;
    cv::cvtColor(shown[0], rgb, cv::COLOR_BGR2RGB);
    const auto want = hashwall::pdq_hash_rgb24(rgb.data, rgb.rows, rgb.cols, rgb.step);
    CHECK(hashwall::hamming(frames[0].hash, want.hash) <= 16);
  }
}
