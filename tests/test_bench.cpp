// The benchmark's pure parts (metrics, edits) and a tiny run of both benches.
#include <algorithm>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>

#include "bench/edits.hpp"
#include "bench/metrics.hpp"
#include "bench/robustness.hpp"
#include "bench/speed.hpp"
#include "core/error.hpp"
#include "support.hpp"

using namespace hashwall::bench;
namespace fs = std::filesystem;

namespace {

// A photo-like test image: smooth gradients with a few shapes, so PDQ's quality is high.
cv::Mat test_image(int w = 320, int h = 240) {
  cv::Mat img(h, w, CV_8UC3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      img.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<std::uint8_t>(x * 255 / w),
                                          static_cast<std::uint8_t>(y * 255 / h), 128);
  cv::circle(img, cv::Point(w / 3, h / 2), h / 4, cv::Scalar(20, 200, 40), cv::FILLED);
  cv::rectangle(img, cv::Rect(w / 2, h / 5, w / 4, h / 3), cv::Scalar(250, 30, 90), cv::FILLED);
  return img;
}

std::vector<fs::path> sample_bank() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(hwtest::source_dir() / "samples" / "bank"))
    out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("micro-AP and recall at precision match a hand-computed example", "[bench]") {
  // Queries 0 and 1 have true references 10 and 20; query 2 is a distractor.
  const GroundTruth truth = {10, 20, -1};
  const std::vector<Prediction> preds = {{1, 30, 0.6},
                                         {0, 10, 0.9},
                                         {2, 10, 0.8},
                                         {1, 20, 0.7},
                                         {0, 10, 0.1} /* duplicate pair: best kept */};
  // Ranked: T(0.9) F(0.8) T(0.7) F(0.6) -> AP = (1/1 + 2/3) / 2.
  CHECK(micro_ap(preds, truth) == Approx((1.0 + 2.0 / 3.0) / 2.0));
  const auto p100 = recall_at_precision(preds, truth, 1.0);
  CHECK(p100.reached);
  CHECK(p100.recall == Approx(0.5));
  CHECK(p100.score == Approx(0.9));
  const auto p60 = recall_at_precision(preds, truth, 0.6);
  CHECK(p60.recall == Approx(1.0));
  CHECK(p60.score == Approx(0.7));
  const auto curve = pr_curve(preds, truth);
  REQUIRE(curve.size() == 4);
  CHECK(curve[1].precision == Approx(0.5));
  CHECK(positives(truth) == 2);
}

TEST_CASE("ties are ranked pessimistically and missing queries lower micro-AP", "[bench]") {
  const GroundTruth truth = {10, -1, 11};
  // Same score for a true and a false pair: the false one counts first (ISC2021).
  const std::vector<Prediction> preds = {{0, 10, 0.5}, {1, 10, 0.5}};
  CHECK(micro_ap(preds, truth) == Approx(0.5 * 0.5));  // one of two positives, at precision 1/2
  CHECK_FALSE(recall_at_precision(preds, truth, 0.9).reached);
  CHECK(micro_ap({}, truth) == 0.0);
  CHECK(micro_ap(preds, GroundTruth{-1, -1}) == 0.0);
}

TEST_CASE("every edit makes a valid image of plausible size the same for the same seed",
          "[bench]") {
  const cv::Mat img = test_image();
  const std::vector<cv::Mat> others = {test_image(200, 300), test_image(300, 300),
                                       test_image(240, 160)};
  std::vector<std::string> names;
  for (const auto& e : edit_registry()) {
    INFO(e.name);
    names.push_back(e.name);
    const cv::Mat a = apply_edit(img, e, 42, others);
    REQUIRE(!a.empty());
    CHECK(a.type() == CV_8UC3);
    CHECK(a.cols >= 32);
    CHECK(a.rows >= 32);
    CHECK(a.cols <= 4 * img.cols);
    CHECK(a.rows <= 4 * img.cols);
    const cv::Mat b = apply_edit(img, e, 42, others);
    REQUIRE(a.size() == b.size());
    CHECK(cv::norm(a, b, cv::NORM_INF) == 0);
    const auto bytes = encode_upload(a, e);
    const cv::Mat back = cv::imdecode(bytes, cv::IMREAD_COLOR);
    CHECK(back.size() == a.size());
    CHECK(find_edit(e.name) != nullptr);
  }
  std::sort(names.begin(), names.end());
  CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
  CHECK(names.size() >= 50);
  // Random edits depend on the seed.
  const EditSpec* noise = find_edit("noise-gauss-s20");
  REQUIRE(noise);
  CHECK(cv::norm(apply_edit(img, *noise, 1), apply_edit(img, *noise, 2), cv::NORM_INF) > 0);
  // Without other photos, the collage still works (the photo itself stands in).
  CHECK(!apply_edit(img, *find_edit("collage-2x2"), 1).empty());
  CHECK_THROWS_AS(apply_edit(cv::Mat(), *noise, 1), hashwall::Error);
}

TEST_CASE("a tiny robustness run reports every signal edit and family", "[bench]") {
  hwtest::TempDir tmp;
  RobustnessOptions o;
  o.files = sample_bank();
  o.known = 3;
  o.edits = {"reencode-q90", "flip-h", "crop-50"};
  o.max_side = 640;
  o.jobs = 2;
  o.work_dir = tmp.path();
  const RobustnessReport r = run_robustness(o);
  CHECK(r.known == 3);
  CHECK(r.distractors == static_cast<std::int64_t>(o.files.size()) - 3);
  CHECK(r.queries == 3 * static_cast<std::int64_t>(o.files.size()));
  // PDQ, PDQ+dihedral, PHash, local (the default bank signals are pdq,local), combined.
  REQUIRE(r.signals.size() == 5);
  CHECK(r.signals[0].name == "PDQ");
  CHECK(r.signals[3].name == "local");
  CHECK(r.signals[4].name == "combined");
  REQUIRE(r.edits.size() == 3);
  CHECK(r.families.size() == 3);  // jpeg, dihedral, crop
  REQUIRE(r.pr_curves.size() == 5);
  // The local features find the mirrored copy (mirror side) and the re-encoded one.
  CHECK(r.edits[0].signals[3].recall == 1.0);
  CHECK(r.edits[1].signals[3].recall == 1.0);
  // A re-encoded copy is caught by every PDQ signal; a mirrored one only with dihedral.
  CHECK(r.edits[0].signals[0].recall == 1.0);
  CHECK(r.edits[1].signals[0].caught == 0);
  CHECK(r.edits[1].signals[1].recall == 1.0);
  for (const auto& s : r.overall.signals) CHECK(s.false_matches == 0);
  CHECK(r.overall.signals[1].micro_ap > 0.5);
  const auto j = robustness_json(r);
  CHECK(j["edits"].size() == 3);
  CHECK(j["signals"][1]["pr_curve"]["points"].size() > 0);
  const std::string md = robustness_markdown(r);
  CHECK(md.find("| flip-h | dihedral |") != std::string::npos);
  CHECK(fs::is_empty(tmp.path()));  // the temporary bank is gone
  CHECK(r.corpus_copies.empty());   // the samples are distinct photos
}

TEST_CASE("a photo that is a copy of another in the corpus is left out of the run", "[bench]") {
  hwtest::TempDir tmp;
  const fs::path corpus = tmp / "corpus", work = tmp / "work";
  fs::create_directories(corpus);
  fs::create_directories(work);
  std::vector<fs::path> files;
  for (const auto& f : sample_bank()) {
    fs::copy_file(f, corpus / f.filename());
    files.push_back(corpus / f.filename());
  }
  // A half-size re-encoded copy of the first sample: the matcher finds one in the other.
  const cv::Mat first = cv::imread(files[0].string());
  REQUIRE_FALSE(first.empty());
  cv::Mat half;
  cv::resize(first, half, cv::Size(first.cols / 2, first.rows / 2), 0, 0, cv::INTER_AREA);
  const fs::path copy = corpus / "zz-copy.jpg";
  REQUIRE(cv::imwrite(copy.string(), half, {cv::IMWRITE_JPEG_QUALITY, 85}));
  files.push_back(copy);
  RobustnessOptions o;
  o.files = files;
  o.known = 3;
  o.edits = {"reencode-q90"};
  o.max_side = 640;
  o.jobs = 2;
  o.work_dir = work;
  const RobustnessReport r = run_robustness(o);
  REQUIRE(r.corpus_copies.size() == 1);
  const std::set<std::string> pair = {fs::path(r.corpus_copies[0].first).filename().string(),
                                      fs::path(r.corpus_copies[0].second).filename().string()};
  CHECK(pair == std::set<std::string>{files[0].filename().string(), "zz-copy.jpg"});
  CHECK(r.known + r.distractors == static_cast<std::int64_t>(files.size()) - 1);
  for (const auto& s : r.overall.signals) CHECK(s.false_matches == 0);
  CHECK(robustness_json(r)["corpus_copies"].size() == 1);
  CHECK(robustness_markdown(r).find("Left out as copies") != std::string::npos);
  CHECK(fs::is_empty(work));
}

TEST_CASE("a small run over a large folder fingerprints only the photos it needs", "[bench]") {
  hwtest::TempDir tmp;
  const fs::path corpus = tmp / "corpus", work = tmp / "work";
  fs::create_directories(corpus);
  fs::create_directories(work);
  cv::RNG rng(11);
  std::vector<fs::path> files;
  for (int i = 0; i < 40; ++i) {
    cv::Mat img = test_image(160, 120);
    for (int k = 0; k < 6; ++k)
      cv::circle(img, cv::Point(rng.uniform(0, 160), rng.uniform(0, 120)), rng.uniform(5, 40),
                 cv::Scalar(rng.uniform(0, 256), rng.uniform(0, 256), rng.uniform(0, 256)),
                 cv::FILLED);
    files.push_back(corpus / ("p" + std::to_string(i) + ".png"));
    REQUIRE(cv::imwrite(files.back().string(), img));
  }
  RobustnessOptions o;
  o.files = files;
  o.known = 2;
  o.distractors = 1;
  o.edits = {"reencode-q90"};
  o.signals = {"pdq"};
  o.work_dir = work;
  std::size_t looked_at = 0;
  o.progress = [&](const char* phase, std::size_t, std::size_t total) {
    // One batch here: its size is the photos fingerprinted (3 needed plus a margin).
    if (std::string(phase) == "looking for copies inside the corpus")
      looked_at = std::max(looked_at, total);
  };
  const RobustnessReport r = run_robustness(o);
  CHECK(r.known == 2);
  CHECK(r.distractors == 1);
  CHECK(looked_at > 0);
  CHECK(looked_at < files.size() / 2);
}

TEST_CASE("a tiny speed run finds every planted near-duplicate", "[bench]") {
  hwtest::TempDir tmp;
  SpeedOptions o;
  auto files = sample_bank();
  files.resize(2);
  o.hash_sets = {{"samples", files}};
  o.sizes = {2'000, 10'000};
  o.sqlite_max = 2'000;
  o.queries = 20;
  o.planted = 20;
  o.jobs = 2;
  o.work_dir = tmp.path();
  const SpeedReport r = run_speed(o);
  REQUIRE(r.hashing.size() == 2);  // fast and exact
  CHECK(r.hashing[0].files == 2);
  CHECK(r.hashing[0].total_ms > 0);
  CHECK(r.hashing[0].images_per_s_all > 0);
  REQUIRE(r.indexes.size() == 6);  // 2 sizes x flat, multihash, compact
  for (const auto& t : r.indexes) {
    INFO(t.type << " " << t.size << " " << t.skipped);
    REQUIRE(t.skipped.empty());
    CHECK(t.planted == 20);
    CHECK(t.planted_found == t.planted);
    CHECK(t.random_hits == 0);
    CHECK(t.samples == 20);
    CHECK(t.index_bytes_per_entry >= 32);
  }
  // Signals: ORB per photo timed; the local search needs 40 photos, and says so.
  REQUIRE(r.signal_costs.size() == 1);
  CHECK(r.signal_costs[0].files == 2);
  CHECK(r.signal_costs[0].local_entry_ms > 0);
  CHECK(r.signal_costs[0].local_query_ms > r.signal_costs[0].local_entry_ms);
  CHECK(r.local.empty());
  CHECK(std::any_of(r.notes.begin(), r.notes.end(), [](const std::string& n) {
    return n.find("40 corpus photos") != std::string::npos;
  }));
  REQUIRE(r.banks.size() == 1);
  CHECK(r.banks[0].planted_found == r.banks[0].planted);
  CHECK(r.banks[0].import_hashes_per_s > 0);
  const auto j = speed_json(r);
  CHECK(j["indexes"].size() == 6);
  CHECK(speed_markdown(r).find("| 10k | multihash |") != std::string::npos);
  CHECK(speed_markdown(r).find("| 10k | compact |") != std::string::npos);
  CHECK(fs::is_empty(tmp.path()));
}

TEST_CASE("bench robustness on the samples writes Markdown and JSON", "[bench]") {
  hwtest::TempDir tmp;
  const auto r = hwtest::run_hashwall(
      "bench robustness --corpus '" + (hwtest::source_dir() / "samples" / "bank").string() +
      "' --known 3 --edits reencode-q90,rotate-90 --max-side 512 -q --json --out '" +
      (tmp / "out").string() + "'");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto j = nlohmann::json::parse(r.out);
  CHECK(j["edits"].size() == 2);
  CHECK(fs::exists(tmp / "out" / "robustness.md"));
  CHECK(fs::exists(tmp / "out" / "robustness.json"));
  CHECK(hwtest::run_hashwall("bench robustness --corpus /nonexistent-dir -q").exit_code == 2);
  CHECK(hwtest::run_hashwall("bench robustness --corpus '" +
                             (hwtest::source_dir() / "samples").string() +
                             "' --edits no-such-edit -q")
            .exit_code == 2);
  CHECK(hwtest::run_hashwall("bench speed --sizes 10q --no-index-run").exit_code == 2);
}

TEST_CASE("local-feature search timing finds planted copies among fillers and no unrelated photo",
          "[bench][shared][slow]") {
  HW_REQUIRE_SHARED(shared);
  hwtest::TempDir tmp;
  SpeedOptions o;
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(shared / "photos" / "bsds500"))
    files.push_back(e.path());
  std::sort(files.begin(), files.end());
  files.resize(std::min<std::size_t>(files.size(), 80));
  o.hash_sets = {{"bsds500", files}};
  o.sizes = {};
  o.local_sizes = {2'000};
  o.signal_photos = 5;
  o.work_dir = tmp.path();
  const SpeedReport r = run_speed(o);
  REQUIRE(r.local.size() == 1);
  const LocalTiming& t = r.local[0];
  INFO(t.skipped);
  REQUIRE(t.skipped.empty());
  CHECK(t.planted == 20);
  CHECK(t.planted_found >= 18);  // crop to 70 % under a caption bar
  CHECK(t.unrelated == 20);
  CHECK(t.false_matches == 0);
  CHECK(t.blob_bytes_per_entry > 4000);
  CHECK(t.memory_bytes_per_entry > t.blob_bytes_per_entry);
  const auto md = speed_markdown(r);
  CHECK(md.find("Local-feature search") != std::string::npos);
}
