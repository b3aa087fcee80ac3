// The learned embedding: the shipped ONNX model loads in OpenCV, computes what the
// training script computed, and a bank refuses queries made with another model.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <sstream>

#include "bank/bank.hpp"
#include "core/error.hpp"
#include "embed/embed_signal.hpp"
#include "embed/embedder.hpp"
#include "image/load.hpp"
#include "match/matcher.hpp"
#include "support.hpp"

using namespace hashwall;
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

fs::path shipped_model() { return hwtest::source_dir() / "models" / "hashwall-embed-v1.onnx"; }

float dot(const std::vector<float>& a, const std::vector<float>& b) {
  float s = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) s += a[i] * b[i];
  return s;
}

std::vector<float> embed_file(const Embedder& e, const fs::path& p) {
  LoadOptions o;
  o.mode = DecodeMode::Exact;
  return e.embed(load_image(p, o).pixels);
}

}  // namespace

TEST_CASE("the shipped model loads with OpenCV and matches the training script's embeddings",
          "[embed]") {
  const auto model = shipped_model();
  REQUIRE(fs::exists(model));
  const auto e = Embedder::load(model);
  const fs::path ref_file = hwtest::source_dir() / "tests" / "data" / "embed" / "reference.txt";
  std::ifstream in(ref_file);
  REQUIRE(in);
  std::string header;
  std::getline(in, header);
  // The reference was written for this very file: a retrained model needs new references.
  CHECK_THAT(header, Catch::Contains("model=" + e->sha256()));
  CHECK_THAT(header, Catch::Contains("size=" + std::to_string(e->config().input_size)));
  CHECK(e->model_id() == "hashwall-embed-v1.onnx@" + e->sha256());

  int photos = 0;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string rel;
    ls >> rel;
    std::vector<float> want;
    for (float v; ls >> v;) want.push_back(v);
    const auto got = embed_file(*e, hwtest::source_dir() / "samples" / rel);
    INFO(rel);
    REQUIRE(got.size() == want.size());
    REQUIRE(static_cast<int>(got.size()) == e->dim());
    float worst = 0;
    for (std::size_t i = 0; i < got.size(); ++i)
      worst = std::max(worst, std::abs(got[i] - want[i]));
    CHECK(worst < 1e-3f);
    CHECK(dot(got, got) == Approx(1.0).epsilon(1e-4));
    ++photos;
  }
  CHECK(photos >= 3);
}

TEST_CASE("embeddings of an edited copy stay closer than those of other photos", "[embed]") {
  const auto e = Embedder::load(shipped_model());
  const auto bank_dir = hwtest::source_dir() / "samples" / "bank";
  const auto uploads = hwtest::source_dir() / "samples" / "uploads";
  const auto original = embed_file(*e, bank_dir / "mate_Aqua.jpg");
  const auto copy = embed_file(*e, uploads / "mate_Aqua--jpeg30.jpg");
  const float same = dot(original, copy);
  CHECK(same >= static_cast<float>(e->config().threshold));
  for (const char* other :
       {"mate_LadyBird.jpg", "skimage_chelsea.jpg", "lomiri_Bridge_by_Sander_Klootwijk.jpg"}) {
    INFO(other);
    const float s = dot(original, embed_file(*e, bank_dir / other));
    CHECK(s < static_cast<float>(e->config().threshold));
    CHECK(s < same);
  }
  // Grey input works too (the model sees three equal channels).
  cv::Mat grey(200, 300, CV_8UC1, cv::Scalar(128));
  CHECK(static_cast<int>(e->embed(grey).size()) == e->dim());
}

TEST_CASE("a file that is not a model is refused with a clear error", "[embed]") {
  hwtest::TempDir tmp;
  const auto bad = tmp / "not-a-model.onnx";
  std::ofstream(bad) << "this is not protobuf";
  // The error names the file as given and says what is wrong with it.
  const auto error_of = [](const fs::path& p) -> std::optional<Error> {
    try {
      Embedder::load(p);
    } catch (const Error& e) {
      return e;
    }
    return std::nullopt;
  };
  const auto not_model = error_of(bad);
  REQUIRE(not_model);
  CHECK(not_model->kind() == ErrorKind::Format);
  CHECK(not_model->file() == bad.string());
  CHECK_THAT(not_model->reason(), Catch::StartsWith("OpenCV could not load the ONNX model"));
  const auto missing = error_of(tmp / "missing.onnx");
  REQUIRE(missing);
  CHECK(missing->kind() == ErrorKind::Io);
  CHECK(missing->file() == (tmp / "missing.onnx").string());
  CHECK_THAT(missing->reason(), Catch::Contains("No such file"));
}

TEST_CASE("the bank searches embeddings and keeps them across reopening", "[embed][bank]") {
  hwtest::TempDir tmp;
  BankConfig cfg;
  cfg.signals = {"pdq", "embed"};
  cfg.embed_model = "test@0000";
  cfg.embed_threshold = 0.5;
  std::vector<std::vector<float>> vecs = {{1, 0, 0, 0}, {0, 1, 0, 0}, {0, 0, 0.6f, 0.8f}};
  {
    auto bank = Bank::open(tmp / "b.db", OpenMode::Create, cfg);
    std::vector<NewEntry> es;
    for (std::size_t i = 0; i < vecs.size(); ++i) {
      NewEntry e;
      e.pdq = Hash256{};
      e.sha256 = std::string(64, static_cast<char>('a' + i));
      e.label = "v" + std::to_string(i);
      e.records["embed"] = embedding_record(vecs[i]);
      es.push_back(std::move(e));
    }
    bank->add(es);
  }
  auto bank = Bank::open(tmp / "b.db", OpenMode::ReadOnly);
  CHECK(bank->config().embed_model == "test@0000");
  const auto st = bank->stats();
  REQUIRE(st.registered.size() == 1);
  CHECK(st.registered[0].name == "embed");
  CHECK(st.registered[0].entries == 3);
  const SignalQuery q{{embedding_record(std::vector<float>{0, 0, 0.8f, 0.6f})}};
  // Margin 0: the bank's threshold, 0.5.
  const auto found = bank->search_signal("embed", q, 0.0, 5);
  REQUIRE(found.size() == 1);
  CHECK(bank->get(found[0].id)->label == "v2");
  CHECK(found[0].evidence["similarity"].get<double>() == Approx(0.96).epsilon(1e-4));
  CHECK(found[0].margin == Approx((0.96 - 0.5) / 0.5).epsilon(1e-4));
  const SignalParams strict{{"threshold", "0.970000"}};
  CHECK(bank->search_signal("embed", q, 0.0, 5, &strict).empty());
}

TEST_CASE("a bank built with one model refuses queries with another", "[embed][cli]") {
  const auto samples = hwtest::source_dir() / "samples";
  hwtest::TempDir tmp;
  const auto q = [](const fs::path& p) { return "'" + p.string() + "'"; };
  const auto bank = tmp / "bank.db";
  auto idx = hwtest::run_hashwall("index " + q(samples / "bank") + " --bank " + q(bank) +
                                  " --signals pdq,embed --model " + q(shipped_model()) + " -q");
  INFO(idx.err);
  REQUIRE(idx.exit_code == 0);
  const auto upload = samples / "uploads" / "mate_Aqua--jpeg30.jpg";
  auto ok = hwtest::run_hashwall("query " + q(upload) + " --bank " + q(bank) + " --json");
  INFO(ok.out << ok.err);
  REQUIRE(ok.exit_code == 1);  // 1: a match
  const json j = json::parse(ok.out);
  CHECK(j["matches"][0]["similarity"].get<double>() >= j["embed_threshold"].get<double>());

  // The same network under another file (a retrained v2 would be this): other bytes,
  // other SHA-256, so the bank refuses rather than compare vectors of two models.
  const auto other = tmp / "hashwall-embed-v2.onnx";
  fs::copy_file(shipped_model(), other);
  {
    std::ofstream(other, std::ios::app | std::ios::binary) << std::string("\xa0\x06\x01", 3);
  }  // an unknown protobuf field
  auto refused =
      hwtest::run_hashwall("query " + q(upload) + " --bank " + q(bank) + " --model " + q(other));
  CHECK(refused.exit_code == 2);
  CHECK_THAT(refused.err, Catch::Contains("model"));
  CHECK_THAT(refused.err, Catch::Contains("hashwall-embed-v1.onnx"));

  // PDQ alone still answers with that bank, whatever model is around.
  auto pdq = hwtest::run_hashwall("query " + q(upload) + " --bank " + q(bank) +
                                  " --signals pdq --model " + q(other));
  CHECK(pdq.exit_code == 1);
}

TEST_CASE("without --model a bank finds the model file it recorded not the newest default",
          "[embed][cli]") {
  const auto samples = hwtest::source_dir() / "samples";
  hwtest::TempDir tmp;
  const auto q = [](const fs::path& p) { return "'" + p.string() + "'"; };
  // A retrained model under its own file name (other bytes, other SHA-256).
  const auto v2 = tmp / "hashwall-embed-v2.onnx";
  fs::copy_file(shipped_model(), v2);
  { std::ofstream(v2, std::ios::app | std::ios::binary) << std::string("\xa0\x06\x01", 3); }
  const auto bank = tmp / "bank.db";
  auto idx = hwtest::run_hashwall("index " + q(samples / "bank") + " --bank " + q(bank) +
                                  " --signals pdq,embed --model " + q(v2) + " -q");
  INFO(idx.err);
  REQUIRE(idx.exit_code == 0);
  const auto upload = samples / "uploads" / "mate_Aqua--jpeg30.jpg";
  // Not next to the executable: the error names the bank's model, not the shipped v1.
  auto missing = hwtest::run_hashwall("query " + q(upload) + " --bank " + q(bank));
  CHECK(missing.exit_code == 2);
  CHECK_THAT(missing.err, Catch::Contains("hashwall-embed-v2.onnx"));
  // Found through HASHWALL_MODEL by its file name, and used.
  auto found =
      hwtest::run_shell("HASHWALL_MODEL=" + q(v2) + " '" + hwtest::hashwall_binary().string() +
                        "' query " + q(upload) + " --bank " + q(bank) + " --json");
  INFO(found.err);
  CHECK(found.exit_code == 1);
}

TEST_CASE("a model name recorded in a bank never becomes a path to open", "[embed]") {
  CHECK(hashwall::default_model_path("../../etc/passwd").empty());
  CHECK(hashwall::default_model_path("/etc/passwd").empty());
  CHECK(hashwall::default_model_path("..").empty());
  CHECK(hashwall::default_model_path("").empty());
  CHECK(hashwall::default_model_path("x/hashwall-embed-v1.onnx").empty());
  CHECK(hashwall::default_model_path("no-such-model.onnx").empty());
}

TEST_CASE(
    "the embedding is a signal on the Signal interface: records of one length, removals "
    "followed, a caller's threshold checked",
    "[embed][bank][signal]") {
  hwtest::TempDir tmp;
  BankConfig cfg;
  cfg.signals = {"pdq", "embed"};
  cfg.embed_model = "test@0000";
  cfg.embed_threshold = 0.5;
  const auto entry = [](char c, std::vector<float> v) {
    NewEntry e;
    e.pdq = Hash256{};
    e.sha256 = std::string(64, c);
    e.label = std::string(1, c);
    e.records["embed"] = embedding_record(v);
    return e;
  };
  const SignalQuery q{{embedding_record(std::vector<float>{1, 0, 0, 0})}};
  std::int64_t near_id = 0;
  {
    auto bank = Bank::open(tmp / "b.db", OpenMode::Create, cfg);
    REQUIRE(find_signal("embed") != nullptr);
    const auto ids =
        bank->add(std::vector<NewEntry>{entry('a', {1, 0, 0, 0}), entry('b', {0.8f, 0.6f, 0, 0})})
            .ids;
    near_id = ids[1];
    // Built at the first search, then kept current by the removal (no rebuild).
    REQUIRE(bank->search_signal("embed", q, 0.0, 5).size() == 2);
    CHECK(bank->remove_ids(std::vector<std::int64_t>{ids[0]}) == 1);
    const auto after = bank->search_signal("embed", q, 0.0, 5);
    REQUIRE(after.size() == 1);
    CHECK(after[0].id == near_id);
    // A vector of another length cannot be compared with the bank's: refused, and the
    // batch with it is not written.
    try {
      bank->add(std::vector<NewEntry>{entry('c', {1, 0, 0, 0}), entry('d', {1, 0, 0})});
      FAIL("a 3-value embedding was added to a bank of 4-value ones");
    } catch (const Error& e) {
      CHECK(e.kind() == ErrorKind::Bank);
      CHECK_THAT(e.what(), Catch::Contains("entry 2 of the batch") &&
                               Catch::Contains("3 dimensions where the others have 4"));
    }
    CHECK(bank->stats().entries == 1);
  }
  // Reopened, the bank's records set the length (the first stored one).
  auto bank = Bank::open(tmp / "b.db", OpenMode::ReadWrite);
  CHECK_THROWS_WITH(bank->add(std::vector<NewEntry>{entry('e', {1, 0})}),
                    Catch::Contains("2 dimensions where the others have 4"));
  const auto st = bank->stats();
  REQUIRE(st.registered.size() == 1);
  CHECK(st.registered[0].params.at("threshold") == "0.500000");
  // The matcher's decision: the bank's threshold, a caller's stricter one, and one the
  // signal refuses.
  Fingerprint fp;
  fp.pdq.hashes.fill(Hash256{});
  fp.registered["embed"] = q;
  const auto result = Matcher(*bank, {}).match(fp);
  REQUIRE(result.hits.size() == 1);
  CHECK(result.hits[0].signal == "embed");
  CHECK(*result.hits[0].similarity() == Approx(0.8f));
  CHECK(result.hits[0].registered.at("embed").margin == Approx((0.8 - 0.5) / 0.5));
  CHECK(result.registered_params.at("embed").at("threshold") == "0.500000");
  MatchOptions strict;
  strict.decisions["embed"] = {{"threshold", "0.9"}};
  const auto none = Matcher(*bank, strict).match(fp);
  CHECK(none.verdict == Verdict::NoMatch);
  CHECK(none.embed_threshold == Approx(0.9));
  MatchOptions wrong;
  wrong.decisions["embed"] = {{"threshold", "2"}};
  CHECK_THROWS_WITH(Matcher(*bank, wrong), Catch::Contains("threshold must be a number"));
  // A similarity exactly at the threshold as a float matches, as the index compares them,
  // though 0.7f < 0.7 as doubles; a caller's threshold keeps all its digits.
  const auto at = bank->add(std::vector<NewEntry>{entry('f', {0.7f, std::sqrt(0.51f), 0, 0})});
  MatchOptions seven;
  seven.embed_threshold = 0.7;
  const auto r7 = Matcher(*bank, seven).match(fp);
  const auto hit7 = std::find_if(r7.hits.begin(), r7.hits.end(),
                                 [&](const MatchHit& h) { return h.entry.id == at.ids[0]; });
  REQUIRE(hit7 != r7.hits.end());
  CHECK(hit7->matched);
  CHECK(hit7->registered.at("embed").margin >= 0);
  MatchOptions fine;
  fine.embed_threshold = 0.8123456789;
  CHECK(Matcher(*bank, fine).match(fp).registered_params.at("embed").at("threshold") ==
        "0.81234567889999998");
  MatchOptions unknown;
  unknown.decisions["local"] = {{"min_inliers", "20"}};  // this bank has no local features
  CHECK_THROWS_WITH(Matcher(*bank, unknown), Catch::Contains("not one of the bank's signals"));
  // pdq is a signal on the interface too: its decision is checked and used.
  MatchOptions pdq;
  pdq.decisions["pdq"] = {{"threshold", "3"}};
  CHECK(Matcher(*bank, pdq).match(fp).threshold == 3);
  pdq.decisions["pdq"] = {{"threshold", "300"}};
  CHECK_THROWS_WITH(Matcher(*bank, pdq), Catch::Contains("threshold must be an integer"));
}
