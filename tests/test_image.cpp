// Image loading: formats, bad input, limits, EXIF orientation.
#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.hpp"
#include "image/load.hpp"
#include "image/probe.hpp"
#include "support.hpp"

using namespace hashwall;

namespace {

std::vector<std::uint8_t> encode(const cv::Mat& img, const std::string& ext,
                                 std::vector<int> params = {}) {
  std::vector<std::uint8_t> buf;
  REQUIRE(cv::imencode(ext, img, buf, params));
  return buf;
}

cv::Mat gradient(int w, int h) {
  cv::Mat img(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) img.at<cv::Vec3b>(y, x) = cv::Vec3b(x * 255 / w, y * 255 / h, 100);
  return img;
}

ErrorKind error_kind_of(const std::vector<std::uint8_t>& bytes, LoadOptions opt = {}) {
  try {
    decode_image(bytes, "x", opt);
  } catch (const Error& e) {
    CHECK(e.file() == "x");
    CHECK_FALSE(e.reason().empty());
    return e.kind();
  }
  FAIL("no error thrown");
  return ErrorKind::Usage;
}

// A big-endian EXIF APP1 segment holding only the orientation tag.
std::vector<std::uint8_t> with_orientation(std::vector<std::uint8_t> jpeg, int orientation) {
  const std::uint8_t app1[] = {
      0xFF, 0xE1, 0x00, 34, 'E', 'x', 'i', 'f', 0, 0,
      'M',  'M',  0,    42, 0,   0,   0,   8,   0, 1,
      0x01, 0x12, 0,    3,  0,   0,   0,   1,   0, static_cast<std::uint8_t>(orientation),
      0,    0,    0,    0,  0,   0};
  jpeg.insert(jpeg.begin() + 2, std::begin(app1), std::end(app1));
  return jpeg;
}

}  // namespace

TEST_CASE("JPEG PNG WebP TIFF BMP and PNM images decode to the same size", "[image]") {
  const cv::Mat img = gradient(120, 80);
  for (const std::string ext : {".jpg", ".png", ".webp", ".tiff", ".bmp", ".ppm"}) {
    INFO(ext);
    LoadOptions opt;
    opt.mode = DecodeMode::Exact;
    const auto r = decode_image(encode(img, ext), "x" + ext, opt);
    CHECK(r.width == 120);
    CHECK(r.height == 80);
    CHECK(r.pixels.cols == 120);
    CHECK(r.sha256.size() == 64);
  }
}

TEST_CASE("grey 16-bit alpha and 1x1 images are accepted", "[image]") {
  cv::Mat grey(50, 60, CV_8UC1, cv::Scalar(90));
  CHECK(decode_image(encode(grey, ".png"), "g", {}).pixels.channels() == 1);
  cv::Mat deep(50, 60, CV_16UC3, cv::Scalar(1000, 30000, 60000));
  CHECK(decode_image(encode(deep, ".png"), "d", {}).pixels.depth() == CV_8U);
  cv::Mat alpha(50, 60, CV_8UC4, cv::Scalar(1, 2, 3, 4));
  CHECK(decode_image(encode(alpha, ".png"), "a", {}).pixels.channels() == 3);
  cv::Mat one(1, 1, CV_8UC3, cv::Scalar(5, 6, 7));
  CHECK(decode_image(encode(one, ".png"), "1", {}).width == 1);
}

TEST_CASE("an empty file and a text file are refused as not images", "[image]") {
  CHECK(error_kind_of({}) == ErrorKind::Format);
  const std::string text = "hello, I am not a JPEG\n";
  CHECK(error_kind_of(std::vector<std::uint8_t>(text.begin(), text.end())) == ErrorKind::Format);
}

TEST_CASE("a truncated JPEG is refused at every cut never padded with grey", "[image]") {
  const auto full = encode(gradient(200, 150), ".jpg");
  REQUIRE(decode_image(full, "ok", {}).width == 200);
  for (std::size_t cut :
       {std::size_t{3}, std::size_t{20}, full.size() / 4, full.size() / 2, full.size() - 2}) {
    INFO("cut at " << cut);
    std::vector<std::uint8_t> part(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(cut));
    CHECK(error_kind_of(part) == ErrorKind::Corrupt);
  }
}

TEST_CASE("a truncated PNG is refused", "[image]") {
  const auto full = encode(gradient(200, 150), ".png");
  std::vector<std::uint8_t> part(full.begin(),
                                 full.begin() + static_cast<std::ptrdiff_t>(full.size() / 2));
  CHECK(error_kind_of(part) == ErrorKind::Corrupt);
}

TEST_CASE("a decompression bomb is refused from its header before decoding", "[image]") {
  // A PNG header declaring 100,000 x 100,000 pixels followed by a tiny IDAT and IEND.
  auto png = encode(gradient(4, 4), ".png");
  // IHDR width/height live at bytes 16..23 (big-endian).
  const std::uint32_t big = 100000;
  for (int k = 0; k < 2; ++k)
    for (int b = 0; b < 4; ++b)
      png[16 + 4 * k + b] = static_cast<std::uint8_t>(big >> (24 - 8 * b));
  CHECK(error_kind_of(png) == ErrorKind::TooLarge);
  LoadOptions small;
  small.max_pixels = 100;
  CHECK(error_kind_of(encode(gradient(20, 20), ".jpg"), small) == ErrorKind::TooLarge);
}

TEST_CASE("a PNM header is read as OpenCV reads it so its size limit cannot be dodged", "[image]") {
  // Found by fuzz_image (an out-of-memory): "P6 144464&5445 ..." is 144464 x 5445 to
  // OpenCV, whose number reader consumes any one byte after a number. The probe once read
  // it as 144464 x 0, which passed the pixel limit, and OpenCV then allocated 2.4 GB.
  const auto file =
      hwtest::source_dir() / "tests" / "data" / "fuzz" / "pnm-size-after-nonspace-separator.ppm";
  std::ifstream in(file, std::ios::binary);
  const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                        std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() == 22);
  const ImageProbe p = probe_image(bytes);
  CHECK(p.width == 144464);
  CHECK(p.height == 5445);
  CHECK(error_kind_of(bytes) == ErrorKind::TooLarge);

  // The same separators on a small image: read like OpenCV, and decoded.
  const std::string small = "P5\n4&3 255\n" + std::string(12, '\x80');
  const std::vector<std::uint8_t> ok(small.begin(), small.end());
  CHECK(probe_image(ok).width == 4);
  CHECK(probe_image(ok).height == 3);
  CHECK(decode_image(ok, "x", {}).pixels.cols == 4);
  // A byte OpenCV refuses before a number is a malformed header; no size at all is refused
  // before any decoding.
  for (const std::string bad : {"P5\n&4 3 255\n", "P5\n", "P5 # only a comment\n"}) {
    INFO(bad);
    const std::vector<std::uint8_t> b(bad.begin(), bad.end());
    CHECK(error_kind_of(b) == ErrorKind::Corrupt);
  }
}

TEST_CASE("a 30-byte WebP VP8X header is probed without reading past the file", "[image]") {
  // Found by fuzz_image (ASan: heap-buffer-overflow): the 24-bit canvas height was read as
  // a 32-bit word, one byte past the end of a 30-byte file. The bytes sit in a vector of
  // exactly their size, so the sanitizer build catches any read beyond it.
  const auto file = hwtest::source_dir() / "tests" / "data" / "fuzz" / "webp-vp8x-30-bytes.webp";
  std::ifstream in(file, std::ios::binary);
  const std::string read((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::vector<std::uint8_t> bytes(read.begin(), read.end());  // allocated to its size
  REQUIRE(bytes.size() == 30);
  const ImageProbe p = probe_image(bytes);
  CHECK(p.format == ImageFormat::WebP);
  // Canvas bytes 24..26 and 27..29, little-endian, plus one.
  CHECK(p.width == 1 + (bytes[24] | bytes[25] << 8 | bytes[26] << 16));
  CHECK(p.height == 1 + (bytes[27] | bytes[28] << 8 | bytes[29] << 16));
  CHECK_THROWS_AS(decode_image(bytes, "x", {}), Error);
}

namespace {
// A little-endian, uncompressed, 8-bit grey TIFF of w x h pixels whose first directory
// holds `extra` entries (tag, type, value) after the width and height, in that order.
struct TiffEntry {
  std::uint16_t tag, type;
  std::uint32_t value;
};
std::vector<std::uint8_t> tiny_tiff(TiffEntry width, TiffEntry height,
                                    const std::vector<TiffEntry>& extra = {}) {
  std::vector<TiffEntry> e = {width, height};
  e.insert(e.end(), extra.begin(), extra.end());
  const std::uint32_t pixels = 4 * 3;
  const auto n = static_cast<std::uint32_t>(e.size() + 6);
  const std::uint32_t data = 8 + 2 + 12 * n + 4;
  for (const TiffEntry x : std::vector<TiffEntry>{
           {258, 3, 8}, {259, 3, 1}, {262, 3, 1}, {273, 4, data}, {278, 4, 3}, {279, 4, pixels}})
    e.push_back(x);
  std::vector<std::uint8_t> out = {'I', 'I', 42, 0, 8, 0, 0, 0};
  auto put = [&](std::uint32_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  };
  put(n, 2);
  for (const TiffEntry& x : e) {
    put(x.tag, 2);
    put(x.type, 2);
    put(1, 4);
    put(x.value, 4);
  }
  put(0, 4);  // no next directory
  for (std::uint32_t i = 0; i < pixels; ++i) out.push_back(static_cast<std::uint8_t>(20 * i));
  return out;
}
}  // namespace

TEST_CASE("a TIFF size given twice or in an odd field type cannot dodge the pixel limit",
          "[image]") {
  // Found by fuzz_image (an out-of-memory in CI): ImageWidth 30005 and ImageLength 30000,
  // then ImageWidth again as 1. libtiff keeps the first, the probe kept the last, and
  // OpenCV allocated 30005 x 30000 x 3 bytes.
  const auto file = hwtest::source_dir() / "tests" / "data" / "fuzz" / "tiff-duplicate-width.tif";
  std::ifstream in(file, std::ios::binary);
  const std::vector<std::uint8_t> found((std::istreambuf_iterator<char>(in)),
                                        std::istreambuf_iterator<char>());
  REQUIRE(found.size() == 119);
  CHECK(probe_image(found).width == 30005);
  CHECK(probe_image(found).height == 30000);
  CHECK(error_kind_of(found) == ErrorKind::TooLarge);

  // A well-formed one decodes, with its size read from SHORT or LONG fields.
  const auto ok = tiny_tiff({256, 3, 4}, {257, 4, 3});
  CHECK(probe_image(ok).width == 4);
  CHECK(probe_image(ok).height == 3);
  const auto img = decode_image(ok, "x", {});
  CHECK(img.pixels.cols == 4);
  CHECK(img.pixels.rows == 3);
  // A duplicate counts at its largest, in either order.
  CHECK(error_kind_of(tiny_tiff({256, 4, 30005}, {256, 3, 4}, {{257, 4, 30000}})) ==
        ErrorKind::TooLarge);
  CHECK(error_kind_of(tiny_tiff({256, 3, 4}, {256, 4, 30005}, {{257, 4, 30000}})) ==
        ErrorKind::TooLarge);
  // BYTE, SBYTE, SSHORT and SLONG are read too; a negative size or a type the probe
  // cannot read (RATIONAL, here) is refused before any decoding.
  CHECK(probe_image(tiny_tiff({256, 1, 4}, {257, 6, 3})).width == 4);
  CHECK(probe_image(tiny_tiff({256, 8, 30005}, {257, 9, 30000})).height == 30000);
  CHECK(error_kind_of(tiny_tiff({256, 8, 30005}, {257, 9, 30000})) == ErrorKind::TooLarge);
  CHECK(error_kind_of(tiny_tiff({256, 9, 0xFFFFFFFFu}, {257, 4, 3})) == ErrorKind::Corrupt);
  CHECK(error_kind_of(tiny_tiff({256, 5, 4}, {257, 4, 3})) == ErrorKind::Corrupt);
}

TEST_CASE("an OS/2 BMP header is read with its 16-bit sizes", "[image]") {
  // BITMAPCOREHEADER: 12 bytes, width and height as 16-bit words at file bytes 18 and 20.
  std::vector<std::uint8_t> bmp = {'B', 'M', 0, 0, 0, 0, 0, 0, 0, 0, 26, 0, 0, 0,  // file header
                                   12,  0,   0, 0, 2, 0, 2, 0, 1, 0, 24, 0};       // core header
  for (int row = 0; row < 2; ++row)
    for (const std::uint8_t v : {10, 20, 30, 40, 50, 60, 0, 0}) bmp.push_back(v);  // padded to 4
  const ImageProbe p = probe_image(bmp);
  CHECK(p.width == 2);
  CHECK(p.height == 2);
  const auto img = decode_image(bmp, "x", {});
  CHECK(img.pixels.cols == 2);
  CHECK(img.pixels.rows == 2);
  // 60000 x 60000 in the same 4 bytes is over the limit before any decoding.
  bmp[18] = bmp[20] = 0x60;
  bmp[19] = bmp[21] = 0xEA;
  CHECK(probe_image(bmp).width == 60000);
  CHECK(error_kind_of(bmp) == ErrorKind::TooLarge);
}

TEST_CASE("EXIF orientation is applied unless switched off", "[image]") {
  const auto jpeg = with_orientation(encode(gradient(120, 80), ".jpg"), 6);
  LoadOptions opt;
  opt.mode = DecodeMode::Exact;
  const auto rotated = decode_image(jpeg, "r", opt);
  CHECK(rotated.probe.orientation == 6);
  CHECK(rotated.pixels.cols == 80);
  CHECK(rotated.pixels.rows == 120);
  CHECK(rotated.width == 80);
  opt.exif_orientation = false;
  const auto stored = decode_image(jpeg, "r", opt);
  CHECK(stored.pixels.cols == 120);
  // An absurd orientation value is ignored, not trusted.
  CHECK(decode_image(with_orientation(encode(gradient(120, 80), ".jpg"), 200), "r", {})
            .probe.orientation == 1);
}

TEST_CASE("fast mode decodes a large JPEG at reduced scale", "[image]") {
  const auto jpeg = encode(gradient(2400, 1600), ".jpg");
  LoadOptions fast;
  const auto r = decode_image(jpeg, "big", fast);
  CHECK(r.width == 2400);
  CHECK(r.pixels.cols == 600);  // 1/4 scale: 1/8 would leave the short side under 256 px
  CHECK(r.pixels.channels() == 1);
}

TEST_CASE("files are read with clear errors for missing paths and directories", "[image]") {
  hwtest::TempDir tmp;
  CHECK_THROWS_AS(load_image(tmp / "nope.jpg", {}), Error);
  try {
    load_image(tmp.path(), {});
    FAIL("a directory was read as an image");
  } catch (const Error& e) {
    CHECK(e.reason() == "is a directory");
  }
}

TEST_CASE("a GIF is decoded from its first frame", "[image]") {
  // A 1x1 GIF89a.
  const std::uint8_t gif[] = {'G', 'I', 'F',  '8',  '9',  'a', 1,   0, 1,   0,    0x80,
                              0,   0,   0xff, 0xff, 0xff, 0,   0,   0, '!', 0xf9, 4,
                              1,   0,   0,    0,    0,    ',', 0,   0, 0,   0,    1,
                              0,   1,   0,    0,    2,    2,   'D', 1, 0,   ';'};
  const auto r =
      decode_image(std::vector<std::uint8_t>(std::begin(gif), std::end(gif)), "one.gif", {});
  CHECK(r.width == 1);
  CHECK(r.height == 1);
  CHECK(r.probe.format == ImageFormat::Gif);
}
