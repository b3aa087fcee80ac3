// Hostile and odd inputs (tests/data/bad/, made by tools/make_bad_inputs.py, plus cases
// made here at run time), fed to the real binary. Every case asserts its exact outcome:
// the error line naming the file and the reason, or the correct result; always within a
// time bound, a memory bound, and with the bank unchanged where the operation failed.
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <sstream>

#include "hash/hash256.hpp"
#include "support.hpp"

using hwtest::RunResult;
using hwtest::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const fs::path& bad_dir() {
  static const fs::path dir = hwtest::source_dir() / "tests" / "data" / "bad";
  return dir;
}
std::string q(const fs::path& p) { return "'" + p.string() + "'"; }

// Every run is killed after this long: a hang is a failure, not a stuck CI job.
constexpr int kTimeLimitSeconds = 60;
// The memory bound for any one command on these small inputs (sanitizer builds included).
constexpr long kMaxRssKiB = 1024 * 1024;

RunResult run_bounded(const std::string& args) {
  const auto t0 = std::chrono::steady_clock::now();
  RunResult r = hwtest::run_shell("timeout -s KILL " + std::to_string(kTimeLimitSeconds) + " '" +
                                  hwtest::hashwall_binary().string() + "' " + args);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(args);
  CHECK(r.exit_code != 128 + 9);  // killed by the time limit
  CHECK(secs < kTimeLimitSeconds);
  return r;
}

// Largest resident set of any child this test process has waited for (each test case
// runs in its own process under ctest).
long max_child_rss_kib() {
  rusage ru{};
  getrusage(RUSAGE_CHILDREN, &ru);
  return ru.ru_maxrss;
}

// `hashwall hash` prints "hex,quality,name".
struct HashLine {
  hashwall::Hash256 hash;
  int quality = -1;
};
HashLine hash_of(const fs::path& file) {
  const RunResult r = run_bounded("hash " + q(file));
  INFO(file << ": " << r.err);
  REQUIRE(r.exit_code == 0);
  const auto hash = hashwall::Hash256::from_hex(r.out.substr(0, 64));
  REQUIRE(hash);
  return {*hash, std::stoi(r.out.substr(65, r.out.find(',', 65) - 65))};
}

// What a bank holds, to compare before and after a failed operation.
std::string bank_snapshot(const fs::path& bank) {
  const RunResult st = hwtest::run_hashwall("stats --json --bank " + q(bank));
  const RunResult ex = hwtest::run_hashwall("export --format pdq-csv --bank " + q(bank));
  REQUIRE(st.exit_code == 0);
  REQUIRE(ex.exit_code == 0);
  return std::to_string(json::parse(st.out)["entries"].get<long>()) + "\n" + ex.out;
}

// The images in tests/data/bad/ that must be refused, with the exact reason.
const std::map<std::string, std::string>& refused_images() {
  static const std::map<std::string, std::string> m = {
      {"empty.jpg", "empty file"},
      {"text.jpg", "not an image (unrecognised format)"},
      {"truncated-at-00001.jpg", "not an image (unrecognised format)"},
      {"truncated-at-00002.jpg", "not an image (unrecognised format)"},
      {"truncated-at-00003.jpg", "truncated JPEG: no end-of-image marker"},
      {"truncated-at-00020.jpg", "truncated JPEG: no end-of-image marker"},
      {"truncated-at-00150.jpg", "truncated JPEG: a header segment runs past the end of the file"},
      {"truncated-at-01677.jpg", "truncated JPEG: no end-of-image marker"},
      {"truncated-at-03353.jpg", "truncated JPEG: no end-of-image marker"},
      {"truncated-at-03354.jpg", "truncated JPEG: no end-of-image marker"},
      {"truncated-at-00008.png", "truncated PNG: no IHDR header"},
      {"truncated-at-00020.png", "truncated PNG: no IHDR header"},
      {"truncated-at-00033.png", "truncated PNG: no IEND chunk"},
      {"truncated-at-00060.png", "truncated PNG: no IEND chunk"},
      {"truncated-at-07489.png", "truncated PNG: no IEND chunk"},
      {"truncated-at-14967.png", "truncated PNG: no IEND chunk"},
      {"truncated-at-14978.png", "truncated PNG: no IEND chunk"},
      {"bomb-100000x100000.png", "image is 100000x100000 (10000 MP), over the limit of 200 MP"},
      {"bomb-65000x65000.jpg", "image is 65000x65000 (4225 MP), over the limit of 200 MP"},
      {"bomb-30000x30000.tif", "image is 30000x30000 (900 MP), over the limit of 200 MP"},
      {"animated.webp", "unsupported format: animated webp"},
  };
  return m;
}

// The images in tests/data/bad/ that must hash (odd, but valid).
const std::vector<std::string>& accepted_images() {
  static const std::vector<std::string> v = {"1x1.jpg",
                                             "1x1.png",
                                             "4x4.png",
                                             "alpha.png",
                                             "animated.gif",
                                             "cmyk.jpg",
                                             "grey-16bit.png",
                                             "palette.png",
                                             "rgb-16bit.png",
                                             "png-named.jpg",
                                             "jpeg-named.png",
                                             "exif-orientation-0.jpg",
                                             "exif-orientation-9.jpg",
                                             "exif-orientation-65535.jpg",
                                             "exif-ifd-offset-past-end.jpg",
                                             "exif-ifd-count-65535.jpg"};
  return v;
}

}  // namespace

TEST_CASE("the bad-input corpus is complete and small", "[bad-input]") {
  REQUIRE(fs::is_directory(bad_dir()));
  std::uintmax_t total = 0;
  for (const auto& e : fs::directory_iterator(bad_dir())) total += e.file_size();
  CHECK(total < 1024 * 1024);
  for (const auto& [name, reason] : refused_images()) CHECK(fs::exists(bad_dir() / name));
  for (const auto& name : accepted_images()) CHECK(fs::exists(bad_dir() / name));
}

TEST_CASE("truncated empty bomb and animated-WebP files are refused naming file and reason",
          "[bad-input]") {
  for (const auto& [name, reason] : refused_images()) {
    const fs::path file = bad_dir() / name;
    const RunResult r = run_bounded("hash " + q(file));
    INFO(name << ": " << r.err);
    CHECK(r.exit_code == 2);
    CHECK(r.out.empty());
    CHECK_THAT(r.err, Catch::Contains("hashwall: " + file.string() + ": " + reason + "\n"));
  }
  CHECK(max_child_rss_kib() < kMaxRssKiB);
}

TEST_CASE("16-bit alpha palette CMYK and misnamed images hash like the plain picture",
          "[bad-input]") {
  const auto png = hash_of(bad_dir() / "png-named.jpg");  // a plain 8-bit BGR PNG
  CHECK(png.quality == 100);
  // Same pixels, another container or depth: bit-identical hash.
  CHECK(hash_of(bad_dir() / "rgb-16bit.png").hash == png.hash);
  CHECK(hash_of(bad_dir() / "alpha.png").hash == png.hash);  // alpha is dropped
  // Lossy or reduced variants of the same picture: well within the match threshold.
  CHECK(hashwall::hamming(hash_of(bad_dir() / "grey-16bit.png").hash, png.hash) <= 8);
  CHECK(hashwall::hamming(hash_of(bad_dir() / "cmyk.jpg").hash, png.hash) <= 16);
  // A palette image hashes as its expanded colours; an animated GIF as its first frame.
  // (Both are far from png.hash: 64- and 256-colour palettes reshape this noisy picture.)
  TempDir tmp;
  const cv::Mat expanded = cv::imread((bad_dir() / "palette.png").string(), cv::IMREAD_COLOR);
  REQUIRE(cv::imwrite((tmp / "expanded.png").string(), expanded));
  CHECK(hash_of(bad_dir() / "palette.png").hash == hash_of(tmp / "expanded.png").hash);
  cv::VideoCapture gif((bad_dir() / "animated.gif").string(), cv::CAP_FFMPEG);
  cv::Mat first;
  REQUIRE(gif.read(first));
  REQUIRE(cv::imwrite((tmp / "first-frame.png").string(), first));
  CHECK(hash_of(bad_dir() / "animated.gif").hash == hash_of(tmp / "first-frame.png").hash);
  // The format comes from the bytes, never the name.
  CHECK(hash_of(bad_dir() / "jpeg-named.txt").hash == hash_of(bad_dir() / "jpeg-named.png").hash);
  // Tiny images hash, with a quality that says they cannot be trusted.
  for (const char* tiny : {"1x1.jpg", "1x1.png", "4x4.png"}) {
    INFO(tiny);
    CHECK(hash_of(bad_dir() / tiny).quality < 50);
  }
  CHECK(max_child_rss_kib() < kMaxRssKiB);
}

TEST_CASE("absurd EXIF orientations and offsets are ignored a valid tag still applies",
          "[bad-input]") {
  const auto plain = hash_of(bad_dir() / "jpeg-named.png");  // the same JPEG without EXIF
  for (const char* name : {"exif-orientation-0.jpg", "exif-orientation-9.jpg",
                           "exif-orientation-65535.jpg", "exif-ifd-offset-past-end.jpg"}) {
    INFO(name);
    CHECK(hash_of(bad_dir() / name).hash == plain.hash);
  }
  // A directory that claims 65535 entries but holds one valid orientation (6: rotate 90
  // clockwise): the entry inside the file is honoured, the count is not trusted further.
  TempDir tmp;
  cv::Mat img = cv::imread((bad_dir() / "jpeg-named.png").string(), cv::IMREAD_COLOR);
  REQUIRE_FALSE(img.empty());
  cv::rotate(img, img, cv::ROTATE_90_CLOCKWISE);
  REQUIRE(cv::imwrite((tmp / "rotated.png").string(), img));
  CHECK(hashwall::hamming(hash_of(bad_dir() / "exif-ifd-count-65535.jpg").hash,
                          hash_of(tmp / "rotated.png").hash) <= 8);
}

TEST_CASE("indexing the bad corpus adds the valid images and names every refused file",
          "[bad-input]") {
  TempDir tmp;
  const auto bank = tmp / "bank.db";
  const RunResult r =
      run_bounded("index " + q(bad_dir()) + " --bank " + q(bank) + " --json -q -j 2");
  INFO(r.err);
  REQUIRE(r.exit_code == 3);  // finished, some files skipped
  const json j = json::parse(r.out);
  // animated.webp, which the image loader refuses, is a video: a new bank keeps videos
  // (vpdq), so it is indexed as one (its frames' vPDQ hashes, read through libwebp).
  CHECK(j["unreadable"].get<std::size_t>() == refused_images().size() - 1);
  // Every image file but the refused ones; jpeg-named.txt is not an image extension.
  CHECK(j["added"].get<std::size_t>() == accepted_images().size() + 1);
  std::string errors;
  for (const auto& e : j["errors"]) errors += e.get<std::string>() + "\n";
  for (const auto& [name, reason] : refused_images())
    if (name != "animated.webp")
      CHECK_THAT(errors, Catch::Contains((bad_dir() / name).string() + ": " + reason + "\n"));
  CHECK(hwtest::run_hashwall("check --bank " + q(bank)).exit_code == 0);
  CHECK(max_child_rss_kib() < kMaxRssKiB);
}

TEST_CASE("symlink loops FIFOs unreadable and non-UTF-8 names in an indexed folder",
          "[bad-input]") {
  TempDir tmp;
  const auto dir = tmp / "corpus";
  fs::create_directories(dir / "sub");
  const auto good = bad_dir() / "png-named.jpg";
  fs::copy_file(good, dir / "good.png");
  fs::create_directory_symlink("..", dir / "sub" / "loop");  // a directory cycle
  fs::create_symlink("self.jpg", dir / "self.jpg");          // a link to itself
  fs::create_symlink("nowhere.jpg", dir / "dangling.jpg");
  REQUIRE(mkfifo((dir / "fifo.jpg").c_str(), 0644) == 0);    // would block a plain open()
  const fs::path latin1 = dir / std::string("caf\xe9.jpg");  // ISO-8859-1, not UTF-8
  fs::copy_file(bad_dir() / "jpeg-named.png", latin1);
  const auto locked = dir / "locked.jpg";
  fs::copy_file(bad_dir() / "cmyk.jpg", locked);
  fs::permissions(locked, fs::perms::none);
  const bool root = ::geteuid() == 0;
  if (root) WARN("running as root: chmod 000 does not stop root reading; locked.jpg is readable");

  const auto bank = tmp / "bank.db";
  const RunResult r = run_bounded("index " + q(dir) + " --bank " + q(bank) + " --json -q");
  INFO(r.err);
  REQUIRE(r.exit_code == 3);
  const json j = json::parse(r.out);  // valid JSON despite the Latin-1 name
  std::string errors;
  for (const auto& e : j["errors"]) errors += e.get<std::string>() + "\n";
  CHECK_THAT(errors, Catch::Contains("self.jpg: cannot open: Too many levels of symbolic links"));
  CHECK_THAT(errors, Catch::Contains("dangling.jpg: cannot open: No such file or directory"));
  CHECK_THAT(errors, Catch::Contains("fifo.jpg: not a regular file"));
  if (!root) CHECK_THAT(errors, Catch::Contains("locked.jpg: cannot open: Permission denied"));
  // good.png, the Latin-1 name and (as root) locked.jpg; the loop is not followed, so
  // good.png is not found a second time through sub/loop.
  CHECK(j["added"].get<int>() == (root ? 3 : 2));
  CHECK(j["unreadable"].get<int>() == (root ? 3 : 4));
  const RunResult ex = hwtest::run_hashwall("export --format pdq-csv --bank " + q(bank));
  CHECK_THAT(ex.out, Catch::Contains(latin1.string()));  // the name kept byte for byte
  fs::permissions(locked, fs::perms::owner_all);
}

TEST_CASE("malformed hash lists are refused line by line and leave the bank unchanged",
          "[bad-input]") {
  TempDir tmp;
  const auto bank = tmp / "bank.db";
  REQUIRE(hwtest::run_hashwall("import " + q(bad_dir() / "list-crlf.hex") +
                               " --format hex --bank " + q(bank))
              .exit_code == 0);
  const std::string before = bank_snapshot(bank);
  struct Case {
    const char* file;
    const char* format;
    std::vector<std::string> lines;  // expected "N: reason" lines, in order
  };
  const std::vector<Case> cases = {
      {"list-wrong-length.hex",
       "hex",
       {"2: hash has 63 hex characters, expected 64",
        "3: hash has 65 hex characters, expected 64"}},
      {"list-non-hex.hex", "hex", {"2: hash contains a non-hex character 'g' at column 11"}},
      {"list-0x-prefix.hex", "hex", {"1: hash contains a non-hex character 'x' at column 2"}},
      {"list-utf16.hex", "hex", {"1: hash contains a non-hex character '\\xFF' at column 1"}},
      {"list-bad-quality.csv",
       "pdq-csv",
       {"1: quality '101' is not an integer from 0 to 100",
        "2: quality '-1' is not an integer from 0 to 100"}},
      {"list-wrong-type.hma",
       "hma",
       {"1: unknown signal type 'md5' (hashwall matches pdq, photo_md5, video_md5, "
        "video_sha256 and vpdq)"}},
      {"list-binary.hex", "hex", {"1: hash contains a non-hex character '\\x00' at column 1"}},
      // A valid list in another format is refused as a whole, not half-read.
      {"list-crlf-bom.csv", "hex", {"1: hash contains a non-hex character ',' at column 65"}},
  };
  for (const auto& c : cases) {
    const fs::path file = bad_dir() / c.file;
    const RunResult r =
        run_bounded("import " + q(file) + " --format " + c.format + " --bank " + q(bank));
    INFO(c.file << ": " << r.err);
    CHECK(r.exit_code == 2);
    for (const auto& line : c.lines)
      CHECK_THAT(r.err, Catch::Contains(file.string() + ":" + line + "\n"));
    CHECK_THAT(r.err, Catch::Contains("nothing imported"));
    CHECK(bank_snapshot(bank) == before);
  }
}

TEST_CASE("CRLF BOM and repeated lines in hash lists import the right entries", "[bad-input]") {
  TempDir tmp;
  const auto bank = tmp / "bank.db";
  const auto import = [&](const char* file, const char* format) {
    const RunResult r = run_bounded("import " + q(bad_dir() / file) + " --format " + format +
                                    " --json --bank " + q(bank));
    INFO(file << ": " << r.err);
    REQUIRE(r.exit_code == 0);
    return json::parse(r.out);
  };
  CHECK(import("list-crlf.hex", "hex")["added"] == 2);
  CHECK(import("list-bom.hex", "hex")["added"] == 2);  // another list: other sources
  // Four lines, two distinct hashes (one written in upper case): two entries.
  const json dup = import("list-duplicates.hex", "hex");
  CHECK(dup["added"] == 2);
  CHECK(dup["duplicates"] == 2);
  const json csv = import("list-crlf-bom.csv", "pdq-csv");
  CHECK(csv["added"] == 2);
  const RunResult ex = hwtest::run_hashwall("export --format pdq-csv --bank " + q(bank));
  // Names survive exactly: no BOM, no CR, commas kept.
  CHECK_THAT(ex.out,
             Catch::Contains(
                 "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22,100,a.jpg\n"));
  CHECK_THAT(ex.out,
             Catch::Contains(
                 "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b23,80,b,c.jpg\n"));
  CHECK(ex.out.find('\r') == std::string::npos);
  // Importing the same list again adds nothing.
  CHECK(import("list-duplicates.hex", "hex")["added"] == 0);
}
