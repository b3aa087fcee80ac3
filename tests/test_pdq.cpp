// PDQ: conformance with Meta's reference output, dihedral variants, hex, quality.
#include <catch2/catch.hpp>
#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>

#include "hash/pdq.hpp"
#include "image/load.hpp"
#include "support.hpp"

using namespace hashwall;

namespace {

std::vector<std::vector<std::string>> read_csv(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::vector<std::vector<std::string>> rows;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<std::string> f;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) f.push_back(cell);
    rows.push_back(f);
  }
  return rows;
}

// A smooth but structured synthetic photo (no shared data needed).
cv::Mat synthetic_photo(int w, int h, unsigned seed) {
  std::mt19937 rng(seed);
  cv::Mat small(8, 8, CV_8UC3);
  cv::randu(small, 0, 255);
  cv::Mat img;
  cv::resize(small, img, cv::Size(w, h), 0, 0, cv::INTER_CUBIC);
  for (int k = 0; k < 12; ++k) {
    cv::Point c(static_cast<int>(rng() % w), static_cast<int>(rng() % h));
    cv::circle(img, c, 10 + static_cast<int>(rng() % (w / 4)),
               cv::Scalar(rng() % 255, rng() % 255, rng() % 255), -1, cv::LINE_AA);
  }
  return img;
}

}  // namespace

TEST_CASE("hex hashes round-trip and reject malformed text", "[pdq]") {
  const std::string hex = "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
  auto h = Hash256::from_hex(hex);
  REQUIRE(h);
  CHECK(h->hex() == hex);
  std::string upper = hex;
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  CHECK(Hash256::from_hex(upper) == h);
  CHECK_FALSE(Hash256::from_hex(hex.substr(1)));
  CHECK_FALSE(Hash256::from_hex(hex + "0"));
  CHECK_FALSE(Hash256::from_hex("g" + hex.substr(1)));
}

TEST_CASE("Hamming distance counts differing bits", "[pdq]") {
  Hash256 a, b;
  CHECK(hamming(a, b) == 0);
  b.set_bit(0);
  b.set_bit(255);
  b.set_bit(100);
  CHECK(hamming(a, b) == 3);
  CHECK(b.bit(100));
  CHECK_FALSE(b.bit(101));
  // Meta's layout: bit 0 is the lowest bit of the last printed word.
  Hash256 c;
  c.set_bit(0);
  CHECK(c.hex().substr(60) == "0001");
  Hash256 d;
  d.set_bit(255);
  CHECK(d.hex().substr(0, 4) == "8000");
}

TEST_CASE("a featureless image has quality 0 and a textured one a high quality", "[pdq]") {
  cv::Mat flat(300, 400, CV_8UC3, cv::Scalar(120, 130, 140));
  CHECK(pdq_hash(flat).quality == 0);
  CHECK(pdq_hash(synthetic_photo(400, 300, 1)).quality >= 50);
}

TEST_CASE("the dihedral variants from the DCT match hashing the transformed image", "[pdq]") {
  // Decimation samples sit half a pixel off-centre, so a transformed image's hash can
  // differ from the variant by a few bits; far below the 31-bit match threshold.
  const cv::Mat img =
      cv::imread((hwtest::source_dir() / "samples/bank/mate_LadyBird.jpg").string());
  REQUIRE_FALSE(img.empty());
  const auto r = pdq_hash_dihedral(img);
  struct Case {
    Dihedral d;
    cv::Mat m;
  };
  cv::Mat rot90, rot180, rot270, fx, fy, tr, atr;
  cv::rotate(img, rot90, cv::ROTATE_90_COUNTERCLOCKWISE);
  cv::rotate(img, rot180, cv::ROTATE_180);
  cv::rotate(img, rot270, cv::ROTATE_90_CLOCKWISE);
  cv::flip(img, fx, 0);  // Meta's flip-x mirrors about the x axis (top <-> bottom)
  cv::flip(img, fy, 1);
  cv::transpose(img, tr);
  cv::rotate(tr, atr, cv::ROTATE_180);
  const Case cases[] = {{Dihedral::Rotate90, rot90},   {Dihedral::Rotate180, rot180},
                        {Dihedral::Rotate270, rot270}, {Dihedral::FlipX, fx},
                        {Dihedral::FlipY, fy},         {Dihedral::FlipPlus1, tr},
                        {Dihedral::FlipMinus1, atr}};
  for (const auto& c : cases) {
    INFO(dihedral_name(c.d));
    const auto direct = pdq_hash(c.m);
    const int d = hamming(direct.hash, r.hashes[static_cast<int>(c.d)]);
    INFO("distance " << d);
    // Measured on this photo: 0 for the transpose, 10 per mirrored axis (so 20 for
    // rotate-180 and flip-minus1): the sampling grid is not symmetric under mirroring.
    CHECK(d <= 24);
    // ...and is far from the untransformed hash, so the check means something.
    CHECK(hamming(direct.hash, r.hashes[0]) > 60);
  }
}

TEST_CASE("exact mode reproduces Meta's reference hashes bit for bit", "[pdq][shared]") {
  HW_REQUIRE_SHARED(shared);
  const auto dir = shared / "pdq-vectors";
  const auto rows = read_csv(dir / "expected.csv");
  REQUIRE(rows.size() >= 14);
  LoadOptions opt;
  opt.mode = DecodeMode::Exact;
  for (const auto& row : rows) {
    REQUIRE(row.size() == 3);
    INFO(row[2]);
    const auto img = load_image(dir / "images" / row[2], opt);
    const auto r = pdq_hash(img.pixels, PdqPreprocess::Reference);
    CHECK(r.hash.hex() == row[0]);
    CHECK(r.quality == std::stoi(row[1]));
  }
}

TEST_CASE("the 8 dihedral hashes of the reference photo equal Meta's", "[pdq][shared]") {
  HW_REQUIRE_SHARED(shared);
  const auto dir = shared / "pdq-vectors";
  const auto rows = read_csv(dir / "expected-dihedral.csv");
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0].size() == 10);
  LoadOptions opt;
  opt.mode = DecodeMode::Exact;
  const auto img = load_image(dir / "images" / rows[0][9], opt);
  const auto r = pdq_hash_dihedral(img.pixels, PdqPreprocess::Reference);
  for (int t = 0; t < kDihedralCount; ++t) {
    INFO(dihedral_name(static_cast<Dihedral>(t)));
    CHECK(r.hashes[t].hex() == rows[0][t]);
  }
  CHECK(r.quality == std::stoi(rows[0][8]));
}

TEST_CASE("fast mode stays within 8 bits of the reference for quality 80 and up", "[pdq][shared]") {
  HW_REQUIRE_SHARED(shared);
  const auto dir = shared / "pdq-vectors";
  LoadOptions fast;
  fast.mode = DecodeMode::Fast;
  for (const auto& row : read_csv(dir / "expected.csv")) {
    const auto ref = Hash256::from_hex(row[0]);
    REQUIRE(ref);
    const auto img = load_image(dir / "images" / row[2], fast);
    const auto r = pdq_hash(img.pixels, PdqPreprocess::Fast);
    const int d = hamming(r.hash, *ref);
    INFO(row[2] << " fast-mode distance " << d << " quality " << r.quality);
    if (std::stoi(row[1]) >= 80) CHECK(d <= 8);
  }
}
