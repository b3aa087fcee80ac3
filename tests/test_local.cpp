// The local-feature signal: ORB keypoints, their storage, and the geometric check that
// finds a known photo inside a crop, a captioned copy or a screenshot.
#include <catch2/catch.hpp>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "bank/bank.hpp"
#include "core/error.hpp"
#include "core/file.hpp"
#include "local/local_features.hpp"
#include "local/local_signal.hpp"
#include "match/matcher.hpp"
#include "support.hpp"

using namespace hashwall;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

cv::Mat sample(const std::string& name) {
  const auto p = hwtest::source_dir() / "samples" / "bank" / name;
  cv::Mat m = cv::imread(p.string(), cv::IMREAD_COLOR);
  REQUIRE_FALSE(m.empty());
  return m;
}

// The photo's centre keeping `keep` of each side, shown under a white caption bar a
// quarter of its height, the whole re-encoded as JPEG quality 70 (a typical meme repost).
cv::Mat captioned_crop(const cv::Mat& photo, double keep) {
  const int w = static_cast<int>(photo.cols * keep), h = static_cast<int>(photo.rows * keep);
  const cv::Mat crop = photo(cv::Rect((photo.cols - w) / 2, (photo.rows - h) / 2, w, h));
  cv::Mat out(h + h / 4, w, CV_8UC3, cv::Scalar(255, 255, 255));
  crop.copyTo(out(cv::Rect(0, h / 4, w, h)));
  cv::putText(out, "WHEN THE CAT SEES IT", cv::Point(10, h / 6), cv::FONT_HERSHEY_DUPLEX, 1.2,
              cv::Scalar(0, 0, 0), 2);
  std::vector<std::uint8_t> jpg;
  cv::imencode(".jpg", out, jpg, {cv::IMWRITE_JPEG_QUALITY, 70});
  return cv::imdecode(jpg, cv::IMREAD_COLOR);
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

LocalFeatures entry_features(const cv::Mat& m) {
  const LocalParams p;
  return extract_local(m, p.entry_keypoints, p.entry_side);
}

LocalFeatures query_features(const cv::Mat& m, bool mirror = false) {
  const LocalParams p;
  return extract_local(m, p.query_keypoints, query_long_side(m.cols, m.rows, p.query_side), mirror,
                       p.query_grid);
}

}  // namespace

TEST_CASE("ORB features are bounded and survive the bank's encoding", "[local]") {
  const cv::Mat photo = sample("skimage_chelsea.jpg");
  const LocalFeatures f = entry_features(photo);
  CHECK(f.size() > 100);
  CHECK(f.size() <= 256);
  CHECK(f.descriptors.rows == static_cast<int>(f.size()));
  CHECK(f.descriptors.cols == kOrbBytes);
  CHECK(std::max(f.width, f.height) <= 640);

  const std::string points = encode_points(f);
  const std::string_view desc(reinterpret_cast<const char*>(f.descriptors.data),
                              f.size() * kOrbBytes);
  const LocalFeatures back = decode_local(points, desc, "entry 1");
  REQUIRE(back.size() == f.size());
  CHECK(back.width == f.width);
  CHECK(back.height == f.height);
  for (std::size_t i = 0; i < f.size(); ++i) {
    CHECK(std::abs(back.points[i].x - f.points[i].x) < 1e-4f);
    CHECK(std::abs(back.points[i].y - f.points[i].y) < 1e-4f);
  }
  CHECK(cv::norm(back.descriptors, f.descriptors, cv::NORM_HAMMING) == 0);

  // Queries take more keypoints, spread over the image (half of them tile by tile).
  const LocalFeatures qf = query_features(photo);
  CHECK(qf.size() > f.size());
  CHECK(qf.size() <= 1024);
  int quadrants[4] = {0, 0, 0, 0};
  for (const auto& p : qf.points) ++quadrants[(p.x >= 0.5f ? 1 : 0) + (p.y >= 0.5f ? 2 : 0)];
  for (int n : quadrants) CHECK(n >= 64);

  // Tiny images have no keypoints, and say so by being empty rather than failing.
  const cv::Mat tiny(40, 40, CV_8UC3, cv::Scalar(10, 20, 30));
  CHECK(entry_features(tiny).size() == 0);
}

TEST_CASE("malformed local-feature blobs are reported as corrupt", "[local]") {
  const std::string points_ok = std::string(4, '\x10') + std::string(8, '\x01');  // 2 points
  const std::string desc_ok(2 * kOrbBytes, '\x55');
  CHECK(decode_local(points_ok, desc_ok, "entry 7").size() == 2);
  for (const auto& [pts, desc] : std::vector<std::pair<std::string, std::string>>{
           {"", ""},
           {std::string(7, '\x01'), ""},
           {points_ok, std::string(kOrbBytes, '\x55')},
           {std::string(4, '\0') + std::string(4, '\x01'), std::string(kOrbBytes, '\x55')}}) {
    try {
      decode_local(pts, desc, "entry 7");
      FAIL("expected an Error");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Corrupt);
      CHECK_THAT(e.what(), Catch::Contains("entry 7"));
    }
  }
}

TEST_CASE("a captioned crop is verified and located and unrelated photos are not", "[local]") {
  const cv::Mat photo = sample("skimage_chelsea.jpg");
  const LocalFeatures entry = entry_features(photo);
  const cv::Mat meme = captioned_crop(photo, 0.7);
  const LocalVerifyParams params;

  const LocalVerification v = verify_local(query_features(meme), entry, params);
  INFO("inliers " << v.inliers << " of " << v.correspondences);
  REQUIRE(v.matched);
  CHECK(v.inliers >= params.min_inliers);
  CHECK(v.rotation_deg == Approx(0).margin(2));
  // The known photo, cropped to 70 %, shown 1:1 in the meme: its full frame maps to
  // 1/0.7 of the meme's width, centred; the top edge sits above the caption's bottom.
  // Query height H = 1.25 h with h = 0.7 R (R the photo's height); the crop starts h/4
  // down, so the full photo's top edge is at (h/4 - 0.15 R) / H and it spans R / H.
  const double R = photo.rows, h = static_cast<int>(photo.rows * 0.7), H = meme.rows;
  const double full_w = 1.0 / 0.7;
  CHECK(v.region[0].x == Approx(0.5 - full_w / 2).margin(0.03));
  CHECK(v.region[1].x == Approx(0.5 + full_w / 2).margin(0.03));
  CHECK(v.region[0].y == Approx((h / 4 - 0.15 * R) / H).margin(0.03));
  CHECK(v.region[3].y - v.region[0].y == Approx(R / H).margin(0.03));

  // Unrelated photos: the geometric check keeps them far below the threshold.
  for (const char* other :
       {"mate_Aqua.jpg", "lomiri_Bridge_by_Sander_Klootwijk.jpg", "skimage_camera.png"}) {
    const LocalVerification u =
        verify_local(query_features(meme), entry_features(sample(other)), params);
    INFO(other << ": inliers " << u.inliers);
    CHECK_FALSE(u.matched);
    CHECK(u.inliers < params.min_inliers);
  }
}

TEST_CASE("the bank stores local features and finds a mirrored crop among its entries",
          "[local][bank]") {
  hwtest::TempDir tmp;
  BankConfig cfg;
  cfg.signals = {"pdq", "local"};
  const std::vector<std::string> names = {"skimage_chelsea.jpg", "mate_Aqua.jpg",
                                          "mate_LadyBird.jpg",
                                          "lomiri_Bridge_by_Sander_Klootwijk.jpg"};
  {
    auto bank = Bank::open(tmp / "b.db", OpenMode::Create, cfg);
    std::vector<NewEntry> es;
    for (const auto& n : names) {
      NewEntry e;
      e.pdq = Hash256{};
      e.sha256 = std::string(64, static_cast<char>('a' + es.size()));
      e.quality = 100;
      e.label = n;
      e.records["local"] = local_record(entry_features(sample(n)));
      es.push_back(std::move(e));
    }
    bank->add(es);
  }
  // Reopened: the features come back from SQLite, not from memory.
  auto bank = Bank::open(tmp / "b.db", OpenMode::ReadOnly);
  CHECK(bank->config().has("local"));
  const auto st = bank->stats();
  REQUIRE(st.registered.size() == 1);
  CHECK(st.registered[0].name == "local");
  CHECK(st.registered[0].entries == static_cast<std::int64_t>(names.size()));

  cv::Mat flipped;
  cv::flip(captioned_crop(sample("mate_LadyBird.jpg"), 0.75), flipped, 1);
  // As given, the mirrored copy finds nothing; its mirror image finds the ladybird.
  const auto form = [](const LocalFeatures& f) { return SignalQuery{{local_query_form(f)}}; };
  CHECK(bank->search_signal("local", form(query_features(flipped)), 0.0, 10).empty());
  const auto found = bank->search_signal("local", form(query_features(flipped, true)), 0.0, 10);
  REQUIRE_FALSE(found.empty());
  CHECK(found[0].margin >= 0);
  CHECK(found[0].evidence.at("mirrored").get<bool>());
  CHECK(bank->get(found[0].id)->label == "mate_LadyBird.jpg");

  // The matcher does the same on its own and says which signal decided.
  Fingerprint fp;
  fp.pdq.quality = 100;
  for (auto& h : fp.pdq.hashes) h.bytes.fill(0x5a);  // far from every entry's PDQ (all zero)
  fp.registered["local"].forms = {local_query_form(query_features(flipped)),
                                  local_query_form(query_features(flipped, true))};
  const MatchResult r = Matcher(*bank, {}).match(fp);
  REQUIRE(r.verdict == Verdict::Match);
  REQUIRE(r.hits.size() >= 1);
  CHECK(r.hits[0].signal == "local");
  CHECK(r.hits[0].local_mirrored());
  CHECK(r.hits[0].inliers().value_or(0) >= r.local_min_inliers);
  CHECK(r.hits[0].registered.at("local").form == 1);  // the mirror image
  CHECK(r.hits[0].entry.label == "mate_LadyBird.jpg");

  // Restricted to PDQ, the same query is not a match.
  MatchOptions only_pdq;
  only_pdq.signals = {"pdq"};
  CHECK(Matcher(*bank, only_pdq).match(fp).verdict == Verdict::NoMatch);
}

TEST_CASE("the local IVF layout is cached next to the bank and a damaged cache is rebuilt",
          "[local][bank]") {
  hwtest::TempDir tmp;
  const auto path = tmp / "b.db";
  const auto cache = fs::path(path.string() + ".local-index");
  BankConfig cfg;
  cfg.signals = {"pdq", "local"};
  {
    // Four real photos plus 76 entries of random descriptors: 20k rows, an IVF index.
    auto bank = Bank::open(path, OpenMode::Create, cfg);
    std::vector<NewEntry> es;
    for (const char* n :
         {"skimage_chelsea.jpg", "mate_Aqua.jpg", "mate_LadyBird.jpg", "skimage_camera.png"}) {
      NewEntry e;
      e.pdq = Hash256{};
      e.sha256 = std::string(63, '0') + static_cast<char>('a' + es.size());
      e.label = n;
      e.records["local"] = local_record(entry_features(sample(n)));
      es.push_back(std::move(e));
    }
    cv::RNG rng(5);
    for (int i = 0; i < 76; ++i) {
      NewEntry e;
      e.pdq = Hash256{};
      e.sha256 = std::string(62, '1') + std::to_string(10 + i);
      LocalFeatures f;
      f.width = 640;
      f.height = 480;
      f.descriptors.create(256, kOrbBytes, CV_8U);
      rng.fill(f.descriptors, cv::RNG::UNIFORM, 0, 256);
      for (int k = 0; k < 256; ++k)
        f.points.emplace_back(rng.uniform(0.f, 1.f), rng.uniform(0.f, 1.f));
      e.records["local"] = local_record(f);
      es.push_back(std::move(e));
    }
    bank->add(es);
  }
  cv::Mat flipped;
  cv::flip(captioned_crop(sample("mate_LadyBird.jpg"), 0.75), flipped, 1);
  const LocalFeatures query = query_features(flipped, true);
  const auto search = [&](const Bank& b) {
    const auto found = b.search_signal("local", SignalQuery{{local_query_form(query)}}, 0.0, 10);
    REQUIRE_FALSE(found.empty());
    CHECK(found[0].margin >= 0);
    CHECK(b.get(found[0].id)->label == "mate_LadyBird.jpg");
    return std::make_pair(found[0].evidence.at("votes").get<int>(),
                          found[0].evidence.at("inliers").get<int>());
  };

  // First search: the full build; closing writes the layout.
  std::pair<int, int> built;
  {
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    built = search(*bank);
    const auto st = bank->stats();
    REQUIRE(st.registered.size() == 1);
    CHECK(st.registered[0].index_type.rfind("ivf", 0) == 0);
  }
  REQUIRE(fs::exists(cache));
  const std::string written = slurp(cache);
  const auto stamp = fs::last_write_time(cache);

  // A new process restores it: the same lists, so the same votes, and nothing to rewrite.
  {
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    CHECK(search(*bank) == built);
  }
  CHECK(fs::last_write_time(cache) == stamp);

  const auto layout_notes = [&] {
    std::vector<std::string> out;
    const auto rep = Bank::open(path, OpenMode::ReadOnly)->check();
    CHECK(rep.ok);  // a cache is derived: never a problem of the bank
    for (const auto& n : rep.notes)
      if (n.find("local index cache") != std::string::npos) out.push_back(n);
    return out;
  };
  CHECK(layout_notes().empty());

  // A checksummed layout of this generation that puts a row in a list that does not
  // exist: check says so, and the bank builds the lists again instead of trusting it.
  {
    std::string bad = written;
    const std::size_t nlist = get_le(bad.data() + 16 + 4, 4);
    const std::size_t first_row = 16 + 8 + nlist * kOrbBytes + 8;
    bad[first_row] = bad[first_row + 1] = static_cast<char>(0xff);
    bad.resize(bad.size() - 8);
    put_le(bad, fnv1a(reinterpret_cast<const std::uint8_t*>(bad.data()), bad.size()));
    std::ofstream(cache, std::ios::binary | std::ios::trunc) << bad;
    const auto notes = layout_notes();
    REQUIRE(notes.size() == 1);
    CHECK_THAT(notes[0],
               Catch::Contains("does not fit the records") && Catch::Contains("does not exist"));
    {
      auto bank = Bank::open(path, OpenMode::ReadOnly);
      CHECK(search(*bank) == built);
    }
    CHECK(slurp(cache) == written);
  }

  // A flipped byte: the checksum refuses the file, the index is built again (same
  // answer) and a good cache replaces the damaged one.
  std::string damaged = written;
  damaged[damaged.size() / 2] = static_cast<char>(damaged[damaged.size() / 2] ^ 0x10);
  std::ofstream(cache, std::ios::binary | std::ios::trunc) << damaged;
  {
    const auto notes = layout_notes();
    REQUIRE(notes.size() == 1);
    CHECK_THAT(notes[0], Catch::Contains("damaged"));
  }
  {
    auto bank = Bank::open(path, OpenMode::ReadOnly);
    CHECK(search(*bank) == built);
  }
  CHECK(slurp(cache) == written);

  // A new bank under the same name never inherits the old bank's cache.
  fs::remove(path);
  for (const char* suffix : {"-wal", "-shm"}) fs::remove(path.string() + suffix);
  Bank::open(path, OpenMode::Create, cfg).reset();
  CHECK_FALSE(fs::exists(cache));
}

TEST_CASE("query reports the local evidence and --signals pdq turns it off", "[local][cli]") {
  const auto samples = hwtest::source_dir() / "samples";
  hwtest::TempDir tmp;
  const auto q = [](const fs::path& p) { return "'" + p.string() + "'"; };
  const auto bank = tmp / "bank.db";
  auto idx = hwtest::run_hashwall("index " + q(samples / "bank") + " --bank " + q(bank) +
                                  " --signals pdq,local -q");
  INFO(idx.err);
  REQUIRE(idx.exit_code == 0);
  const auto meme = samples / "uploads" / "skimage_chelsea--caption.jpg";

  auto r = hwtest::run_hashwall("query " + q(meme) + " --bank " + q(bank) + " --json");
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 1);  // 1: a match
  const json j = json::parse(r.out);
  REQUIRE(j["match"].get<bool>());
  const json& hit = j["matches"][0];
  CHECK(hit["signal"] == "local");
  CHECK(fs::path(hit["source"].get<std::string>()).filename() == "skimage_chelsea.jpg");
  CHECK(hit["inliers"].get<int>() >= j["local_min_inliers"].get<int>());
  REQUIRE(hit["region"].size() == 4);
  // The caption bar sits on top: the photo's top edge is well below the query's.
  CHECK(hit["region"][0][1].get<double>() > 0.1);

  // --draw: the query next to the entry's source file, inliers joined by lines.
  const auto picture = tmp / "why.png";
  auto drawn =
      hwtest::run_hashwall("query " + q(meme) + " --bank " + q(bank) + " --draw " + q(picture));
  INFO(drawn.err);
  CHECK(drawn.exit_code == 1);
  CHECK_THAT(drawn.err, Catch::Contains("drew the match"));
  const cv::Mat pic = cv::imread(picture.string(), cv::IMREAD_COLOR);
  REQUIRE_FALSE(pic.empty());
  const cv::Mat query_img = cv::imread(meme.string(), cv::IMREAD_COLOR);
  // Two panels at one height: wider than the query alone would be at that height.
  CHECK(pic.cols > query_img.cols * (pic.rows - 40) / query_img.rows + 100);

  auto pdq_only =
      hwtest::run_hashwall("query " + q(meme) + " --bank " + q(bank) + " --signals pdq --json");
  CHECK(pdq_only.exit_code == 0);
  CHECK_FALSE(json::parse(pdq_only.out)["match"].get<bool>());

  // A bank made without local features says so when asked for them.
  const auto plain = tmp / "plain.db";
  REQUIRE(hwtest::run_hashwall("index " + q(samples / "bank") + " --bank " + q(plain) +
                               " --signals pdq -q")
              .exit_code == 0);
  auto refuse =
      hwtest::run_hashwall("query " + q(meme) + " --bank " + q(plain) + " --signals pdq,local");
  CHECK(refuse.exit_code == 2);
  CHECK_THAT(refuse.err, Catch::Contains("local"));
  auto st = hwtest::run_hashwall("stats --bank " + q(bank) + " --json");
  REQUIRE(st.exit_code == 0);
  const json s = json::parse(st.out);
  INFO(st.out);
  CHECK(s["local"]["entries"].get<int>() == 6);
  CHECK(s["local"]["db_bytes_per_entry"].get<double>() > 1000);
}

TEST_CASE("query --draw reads an entry's source through the loader and its limits",
          "[local][cli]") {
  // Security review finding 8: --draw opened whatever file sat at a recorded source path
  // with cv::imread and no pixel limit.
  const auto samples = hwtest::source_dir() / "samples";
  hwtest::TempDir tmp;
  const auto q = [](const fs::path& p) { return "'" + p.string() + "'"; };
  const auto known = tmp / "known.jpg";
  fs::copy_file(samples / "bank" / "skimage_chelsea.jpg", known);
  const auto bank = tmp / "bank.db";
  REQUIRE(
      hwtest::run_hashwall("index " + q(known) + " --bank " + q(bank) + " --signals pdq,local -q")
          .exit_code == 0);
  // The file at the recorded path is now a 4-megapixel image.
  fs::remove(known);
  cv::imwrite(known.string(), cv::Mat(2000, 2000, CV_8UC3, cv::Scalar(40, 80, 120)));
  const auto meme = samples / "uploads" / "skimage_chelsea--caption.jpg";
  const auto picture = tmp / "why.png";
  const auto drawn = hwtest::run_hashwall("query " + q(meme) + " --bank " + q(bank) +
                                          " --max-pixels 1000000 --draw " + q(picture));
  INFO(drawn.err);
  CHECK(drawn.exit_code == 1);
  const cv::Mat pic = cv::imread(picture.string(), cv::IMREAD_COLOR);
  REQUIRE_FALSE(pic.empty());
  const cv::Mat query_img = cv::imread(meme.string(), cv::IMREAD_COLOR);
  // One panel: the source over the limit was left out, not decoded.
  CHECK(pic.cols <= query_img.cols * (pic.rows - 40) / query_img.rows + 2);
}

TEST_CASE(
    "the local features are a signal on the Signal interface: removals rebuild the index "
    "and a caller's inlier count is checked",
    "[local][bank][signal]") {
  hwtest::TempDir tmp;
  BankConfig cfg;
  cfg.signals = {"pdq", "local"};
  auto bank = Bank::open(tmp / "b.db", OpenMode::Create, cfg);
  std::vector<NewEntry> es;
  for (const char* n : {"mate_LadyBird.jpg", "skimage_chelsea.jpg"}) {
    NewEntry e;
    e.pdq = Hash256{};
    e.sha256 = std::string(64, static_cast<char>('a' + es.size()));
    e.label = n;
    e.records["local"] = local_record(entry_features(sample(n)));
    es.push_back(std::move(e));
  }
  const auto ids = bank->add(es).ids;
  const SignalQuery q{
      {local_query_form(query_features(captioned_crop(sample("mate_LadyBird.jpg"), 0.75))),
       local_query_form(query_features(sample("mate_LadyBird.jpg"), true))}};
  // Built at the first search; the photo as given matched, so the mirror form was not
  // tried.
  auto found = bank->search_signal("local", q, 0.0, 10);
  REQUIRE(found.size() == 1);
  CHECK(found[0].id == ids[0]);
  CHECK(found[0].form == 0);
  CHECK(found[0].margin ==
        Approx(inliers_margin(found[0].evidence.at("inliers").get<int>(), kLocalMinInliers)));
  CHECK(found[0].extra.at("inlier_pairs").size() ==
        found[0].evidence.at("inliers").get<std::size_t>());
  // The IVF cannot drop rows in place: the removal leaves the index to be rebuilt, and the
  // next search no longer finds the entry.
  CHECK(bank->remove_ids(std::vector<std::int64_t>{ids[0]}) == 1);
  CHECK(bank->search_signal("local", q, 0.0, 10).empty());
  // A stricter decision than the bank's, and one the signal refuses.
  bank->add(std::span(&es[0], 1));
  Fingerprint fp;
  fp.pdq.hashes.fill(Hash256{});
  fp.registered["local"] = q;
  MatchOptions strict;
  strict.local_min_inliers = 100000;
  CHECK(Matcher(*bank, strict).match(fp).verdict == Verdict::NoMatch);
  CHECK(Matcher(*bank, {}).match(fp).verdict == Verdict::Match);
  MatchOptions wrong;
  wrong.decisions["local"] = {{"min_inliers", "2"}};
  CHECK_THROWS_WITH(Matcher(*bank, wrong), Catch::Contains("min_inliers must be an integer"));

  // The mirror form is tried when the forms before it found no entry the caller keeps: a
  // disabled entry matched as given does not hide the entry the mirror image finds.
  cv::Mat flipped;
  cv::flip(captioned_crop(sample("mate_LadyBird.jpg"), 0.75), flipped, 1);
  Fingerprint two;
  two.pdq.hashes.fill(Hash256{});
  two.registered["local"].forms = {
      local_query_form(query_features(captioned_crop(sample("skimage_chelsea.jpg"), 0.75))),
      local_query_form(query_features(flipped, true))};
  const auto as_given = Matcher(*bank, {}).match(two);
  REQUIRE(as_given.verdict == Verdict::Match);
  CHECK(as_given.hits[0].entry.id == ids[1]);
  CHECK(as_given.hits.size() == 1);  // the mirror image was not needed
  MatchOptions lists;
  lists.entry_role = [&](const Entry& e) {
    return e.id == ids[1] ? EntryRole::Disabled : EntryRole::Block;
  };
  const auto mirrored = Matcher(*bank, lists).match(two);
  REQUIRE(mirrored.verdict == Verdict::Match);
  REQUIRE(mirrored.hits.size() == 1);
  CHECK(mirrored.hits[0].entry.label == "mate_LadyBird.jpg");
  CHECK(mirrored.hits[0].local_mirrored());
  CHECK(mirrored.hits[0].registered.at("local").form == 1);
}
