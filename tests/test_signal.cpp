// The Signal interface (src/signal), proven from outside src/: a test-only signal (the mean
// colour of a 2 x 2 grid) is defined and registered here, and must then be indexed, stored,
// matched, reported by `query --json` and over HTTP, counted by `stats` and checked by
// `check`, with no file under src/ knowing it.
#include <httplib.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <set>
#include <thread>

#include "bank/bank.hpp"
#include "bank/store.hpp"
#include "cli/app.hpp"
#include "cli/signals.hpp"
#include "core/error.hpp"
#include "image/load.hpp"
#include "server/server.hpp"
#include "signal/signal.hpp"
#include "support.hpp"

using namespace hashwall;
using hwtest::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

// ---- the test-only signal ---------------------------------------------------------------

constexpr std::size_t kCells = 4;  // 2 x 2
constexpr std::size_t kRecordBytes = kCells * 3;

// Mean B, G, R of each cell of a 2 x 2 grid, row by row.
std::string mean_colour(const cv::Mat& image) {
  cv::Mat bgr = image;
  if (image.channels() == 1) cv::cvtColor(image, bgr, cv::COLOR_GRAY2BGR);
  cv::Mat small;
  cv::resize(bgr, small, cv::Size(2, 2), 0, 0, cv::INTER_AREA);
  std::string out;
  for (int y = 0; y < 2; ++y)
    for (int x = 0; x < 2; ++x) {
      const auto px = small.at<cv::Vec3b>(y, x);
      for (int c = 0; c < 3; ++c) out.push_back(static_cast<char>(px[c]));
    }
  return out;
}

// The left and right cells swapped: the mean colour of the mirror image.
std::string mirrored(const std::string& r) {
  std::string out = r;
  for (std::size_t row = 0; row < 2; ++row)
    for (std::size_t c = 0; c < 3; ++c)
      std::swap(out[(row * 2) * 3 + c], out[(row * 2 + 1) * 3 + c]);
  return out;
}

int l1(std::string_view a, std::string_view b) {
  int d = 0;
  for (std::size_t i = 0; i < kRecordBytes; ++i)
    d += std::abs(int(static_cast<unsigned char>(a[i])) - int(static_cast<unsigned char>(b[i])));
  return d;
}

class MeanColourIndex : public SignalIndex {
 public:
  std::string type() const override { return "flat"; }
  void add(std::int64_t id, std::string_view record) override {
    if (record.size() != kRecordBytes) throw std::runtime_error("not a mean-colour record");
    rows_.emplace_back(id, std::string(record));
  }
  void remove(std::span<const std::int64_t> ids) override {
    std::erase_if(rows_, [&](const auto& r) {
      return std::find(ids.begin(), ids.end(), r.first) != ids.end();
    });
  }
  std::vector<SignalMatch> search(const SignalQuery& q, const SignalParams& decision,
                                  double min_margin, std::size_t k) const override {
    const int max_distance = std::stoi(decision.at("max_distance"));
    std::vector<SignalMatch> out;
    for (const auto& [id, rec] : rows_) {
      int best = -1, form = 0;
      for (std::size_t f = 0; f < q.forms.size(); ++f) {
        if (q.forms[f].size() != kRecordBytes) continue;
        const int d = l1(q.forms[f], rec);
        if (best < 0 || d < best) best = d, form = static_cast<int>(f);
      }
      if (best < 0) continue;
      const double margin =
          std::clamp(double(max_distance - best) / std::max(max_distance, 1), -1.0, 1.0);
      if (margin < min_margin) continue;
      SignalMatch m;
      m.id = id;
      m.margin = margin;
      m.form = form;
      m.evidence = {{"distance", best}};
      out.push_back(std::move(m));
    }
    std::sort(out.begin(), out.end(), [](const SignalMatch& a, const SignalMatch& b) {
      return a.margin != b.margin ? a.margin > b.margin : a.id < b.id;
    });
    if (out.size() > k) out.resize(k);
    return out;
  }
  std::size_t size() const override { return rows_.size(); }
  std::size_t memory_bytes() const override { return rows_.size() * (8 + kRecordBytes); }

 private:
  std::vector<std::pair<std::int64_t, std::string>> rows_;
};

class MeanColour : public Signal {
 public:
  std::string name() const override { return "mean-colour"; }
  std::string summary() const override { return "test only: the mean colour of a 2x2 grid"; }
  bool wants_colour() const override { return true; }
  SignalParams compute_params() const override { return {{"grid", "2x2"}, {"version", "1"}}; }
  SignalParams decision_defaults() const override { return {{"max_distance", "40"}}; }
  std::string validate(const SignalParams& p) const override {
    const auto it = p.find("max_distance");
    if (it == p.end()) return "max_distance is missing";
    try {
      const int v = std::stoi(it->second);
      if (v < 0 || v > 255 * int(kRecordBytes)) return "max_distance is out of range";
    } catch (const std::exception&) {
      return "max_distance is not a number";
    }
    return {};
  }
  std::optional<SignalRecord> compute(const LoadedImage& image) const override {
    return mean_colour(image.colour());
  }
  SignalQuery compute_query(const LoadedImage& image) const override {
    const auto r = mean_colour(image.colour());
    return SignalQuery{{r, mirrored(r)}};
  }
  std::string check_record(std::string_view record) const override {
    return record.size() == kRecordBytes
               ? ""
               : std::to_string(record.size()) + " bytes, not " + std::to_string(kRecordBytes);
  }
  std::unique_ptr<SignalIndex> make_index() const override {
    return std::make_unique<MeanColourIndex>();
  }
};

// The one registration line.
const SignalRegistration kMeanColour(std::make_shared<MeanColour>());

// ---- running the CLI in this process --------------------------------------------------

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// hashwall ARGS, run by cli::run in this process (where the signal is registered), with
// its standard output captured.
hwtest::RunResult in_process(std::vector<std::string> args) {
  args.insert(args.begin(), "hashwall");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  TempDir tmp;
  const auto out_file = tmp / "stdout";
  std::cout.flush();
  std::fflush(stdout);
  const int saved = ::dup(1);
  std::FILE* f = std::fopen(out_file.c_str(), "w");
  REQUIRE(f);
  ::dup2(::fileno(f), 1);
  hwtest::RunResult r;
  r.exit_code = cli::run(static_cast<int>(argv.size()), argv.data());
  std::cout.flush();
  std::fflush(stdout);
  ::dup2(saved, 1);
  ::close(saved);
  std::fclose(f);
  r.out = slurp(out_file);
  return r;
}

fs::path sample(const std::string& name) {
  const auto bank = hwtest::source_dir() / "samples" / "bank" / name;
  return fs::exists(bank) ? bank : hwtest::source_dir() / "samples" / "uploads" / name;
}

const json* hit_for(const json& report, const std::string& source_name) {
  for (const auto& m : report["matches"])
    if (fs::path(m["source"].get<std::string>()).filename() == source_name) return &m;
  return nullptr;
}

bool has(const json& list, const std::string& x) {
  return std::find(list.begin(), list.end(), x) != list.end();
}

}  // namespace

TEST_CASE("the signal registry refuses built-in, malformed and repeated names", "[signal]") {
  struct Named : MeanColour {
    std::string n;
    explicit Named(std::string name) : n(std::move(name)) {}
    std::string name() const override { return n; }
  };
  for (const char* bad :
       {"pdq", "local", "embed", "sha256", "", "Upper", "has space", "-x", "mean-colour"})
    CHECK_THROWS_AS(register_signal(std::make_shared<Named>(bad)), std::invalid_argument);
  CHECK(find_signal("mean-colour") != nullptr);
  CHECK(find_signal("nothing") == nullptr);
  CHECK_THAT(known_signals(),
             Catch::Contains("pdq, local, embed") && Catch::Contains("mean-colour"));
  CHECK(unknown_signal({"pdq", "mean-colour"}).empty());
  CHECK_THAT(unknown_signal({"pdq", "nothing"}), Catch::Contains("unknown signal 'nothing'"));
  CHECK(canonical_signals({"mean-colour", "embed", "pdq", "embed"}) ==
        std::vector<std::string>{"pdq", "embed", "mean-colour"});
  const SignalParams p{{"a", "1"}, {"b", "x;y=z\""}};
  CHECK(parse_params(params_text(p)) == p);
  CHECK_FALSE(parse_params("[1]"));
  CHECK_FALSE(parse_params("{\"a\": 1}"));
  CHECK_FALSE(parse_params("{"));
  CHECK_THAT(cli::signals_help(), Catch::Contains("mean-colour: test only"));
}

TEST_CASE(
    "a signal registered outside src/ is indexed, stored, matched and reported by query, stats "
    "and check",
    "[signal]") {
  TempDir tmp;
  const auto known = tmp / "known";
  fs::create_directory(known);
  for (const char* f :
       {"mate_LadyBird.jpg", "mate_Aqua.jpg", "lomiri_Bridge_by_Sander_Klootwijk.jpg"})
    fs::copy_file(sample(f), known / f);
  const std::string bank = (tmp / "bank.db").string();

  auto r =
      in_process({"index", known.string(), "--bank", bank, "--signals", "pdq,mean-colour", "-q"});
  REQUIRE(r.exit_code == 0);

  // stats counts the records and shows the recorded decision.
  r = in_process({"stats", "--bank", bank, "--json"});
  REQUIRE(r.exit_code == 0);
  const json st = json::parse(r.out);
  CHECK(st["format_version"] == kFormatVersion);
  CHECK(st["signals"] == json::array({"pdq", "mean-colour"}));
  CHECK(st["mean-colour"]["entries"] == 3);
  CHECK(st["mean-colour"]["params"]["max_distance"] == "40");
  CHECK(st["mean-colour"]["db_bytes"].get<double>() >= 3 * kRecordBytes);
  r = in_process({"stats", "--bank", bank});
  CHECK_THAT(r.out, Catch::Contains("mean-colour: 3 entries (max_distance 40)"));

  // The signal alone decides: an edited copy of a known photo matches the right entry, and
  // the mirror form finds the flipped one.
  struct Case {
    const char* upload;
    const char* known;
    int form;
  };
  for (const Case c : {Case{"mate_Aqua--jpeg30.jpg", "mate_Aqua.jpg", 0},
                       Case{"lomiri_Bridge_by_Sander_Klootwijk--resized40.jpg",
                            "lomiri_Bridge_by_Sander_Klootwijk.jpg", 0},
                       Case{"mate_LadyBird--flipped.jpg", "mate_LadyBird.jpg", 1}}) {
    INFO(c.upload);
    r = in_process(
        {"query", sample(c.upload).string(), "--bank", bank, "--json", "--signals", "mean-colour"});
    REQUIRE(r.exit_code == 1);
    const json rep = json::parse(r.out);
    CHECK(rep["signals"] == json::array({"mean-colour"}));
    CHECK(rep["signal_params"]["mean-colour"]["max_distance"] == "40");
    REQUIRE_FALSE(rep["matches"].empty());
    const json& top = rep["matches"][0];
    CHECK(fs::path(top["source"].get<std::string>()).filename() == c.known);
    CHECK(top["signal"] == "mean-colour");
    CHECK(top["signals_matched"] == json::array({"mean-colour"}));
    const json& ev = top["evidence"]["mean-colour"];
    CHECK(ev["margin"].get<double>() >= 0);
    CHECK(ev["form"] == c.form);
    CHECK(ev["detail"]["distance"].get<int>() <= 40);
    CHECK(top["score"].get<double>() == Approx(ev["margin"].get<double>()));
  }

  // A photo of another colour is not matched by it, and its near misses are negative.
  const auto green = tmp / "green.png";
  cv::imwrite(green.string(), cv::Mat(64, 64, CV_8UC3, cv::Scalar(0, 255, 0)));
  r = in_process({"query", green.string(), "--bank", bank, "--json", "--signals", "mean-colour"});
  CHECK(r.exit_code == 0);
  CHECK(json::parse(r.out)["matches"].empty());

  // With PDQ too: both signals' evidence, PDQ decides (it comes first), the score counts both.
  r = in_process({"query", sample("mate_Aqua--jpeg30.jpg").string(), "--bank", bank, "--json"});
  REQUIRE(r.exit_code == 1);
  {
    const json rep = json::parse(r.out);
    CHECK(rep["signals"] == json::array({"pdq", "mean-colour"}));
    const json* h = hit_for(rep, "mate_Aqua.jpg");
    REQUIRE(h);
    CHECK((*h)["signal"] == "pdq");
    CHECK((*h)["signals_matched"] == json::array({"pdq", "mean-colour"}));
    CHECK((*h)["evidence"].contains("mean-colour"));
  }

  // check reads every record as the signal does; a damaged one is named.
  r = in_process({"check", "--bank", bank});
  CHECK(r.exit_code == 0);
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(bank.c_str(), &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db,
                         "UPDATE signal_rows SET record = x'0102' WHERE entry_id = "
                         "(SELECT min(entry_id) FROM signal_rows)",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  const auto checked = hwtest::run_hashwall("check --bank " + bank);  // the real binary
  // The hashwall binary does not have the test signal: it refuses the bank, saying why.
  CHECK(checked.exit_code == 2);
  CHECK_THAT(checked.err, Catch::Contains("records the signal 'mean-colour'"));
  r = in_process({"check", "--bank", bank, "--json"});
  CHECK(r.exit_code != 0);
  CHECK_THAT(r.out, Catch::Contains("mean-colour record: 2 bytes, not 12"));

  // Removing an entry removes its record (here the damaged one), and the bank is whole again.
  {
    const auto b = Bank::open(bank, OpenMode::ReadWrite);
    const auto before = b->stats();
    REQUIRE(before.registered.size() == 1);
    CHECK(before.registered[0].entries == 3);
    std::vector<std::int64_t> ids;
    b->for_each([&](const Entry& e) { return ids.push_back(e.id), true; });
    REQUIRE(ids.size() == 3);
    CHECK(b->remove_ids(std::span(ids.data(), 1)) == 1);
    CHECK(b->stats().registered[0].entries == 2);
    const auto rep = b->check();
    INFO((rep.problems.empty() ? "" : rep.problems[0]));
    CHECK(rep.ok);
  }
}

TEST_CASE(
    "a registered signal's records are refused when malformed and its parameters when changed",
    "[signal]") {
  TempDir tmp;
  const auto path = tmp / "bank.db";
  BankConfig cfg;
  cfg.signals = {"pdq", "mean-colour"};
  cfg.signal_params["mean-colour"] = {{"max_distance", "7"}};
  {
    auto b = Bank::open(path, OpenMode::Create, cfg);
    CHECK(b->config().signal_params.at("mean-colour").at("max_distance") == "7");
    NewEntry e;
    e.pdq = Hash256{};
    e.source = "a";
    e.records["mean-colour"] = "short";
    CHECK_THROWS_WITH(b->add(std::span(&e, 1)),
                      Catch::Contains("mean-colour record: 5 bytes, not 12"));
    CHECK(b->stats().entries == 0);  // the batch was rolled back
    e.records["mean-colour"] = std::string(kRecordBytes, '\x10');
    REQUIRE(b->add(std::span(&e, 1)).added == 1);
    SignalQuery q{{std::string(kRecordBytes, '\x10')}};
    const auto found = b->search_signal("mean-colour", q, 0, 10);
    REQUIRE(found.size() == 1);
    CHECK(found[0].margin == 1.0);
    // A later add extends the index that is already built.
    NewEntry e2 = e;
    e2.source = "b";
    e2.records["mean-colour"] = std::string(kRecordBytes, '\x11');  // distance 12 > 7
    REQUIRE(b->add(std::span(&e2, 1)).added == 1);
    CHECK(b->search_signal("mean-colour", q, 0, 10).size() == 1);
    CHECK(b->search_signal("mean-colour", q, -1, 10).size() == 2);  // near misses reach 2x
  }
  // Invalid decision parameters, or parameters for a signal the bank does not have.
  BankConfig bad = cfg;
  bad.signal_params["mean-colour"] = {{"max_distance", "lots"}};
  CHECK_THROWS_WITH(Bank::open(tmp / "bad.db", OpenMode::Create, bad),
                    Catch::Contains("max_distance is not a number"));
  bad = cfg;
  bad.signals = {"pdq"};
  CHECK_THROWS_WITH(Bank::open(tmp / "bad.db", OpenMode::Create, bad),
                    Catch::Contains("not one of the bank's signals"));
  CHECK_FALSE(fs::exists(tmp / "bad.db"));

  // Records computed another way (a recorded compute parameter differs) are refused at open.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db,
                       "UPDATE meta SET value = '{\"grid\":\"3x3\",\"version\":\"1\"}' WHERE key = "
                       "'signal.mean-colour.compute'",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  CHECK_THROWS_WITH(Bank::open(path, OpenMode::ReadOnly),
                    Catch::Contains("records were computed with {\"grid\":\"3x3\"") &&
                        Catch::Contains("build a new bank"));
}

TEST_CASE("a registered signal matches over HTTP and is counted in /v1/stats", "[signal]") {
  TempDir tmp;
  const auto path = tmp / "bank.db";
  const auto r = in_process({"index", (hwtest::source_dir() / "samples" / "bank").string(),
                             "--bank", path.string(), "--signals", "pdq,mean-colour", "-q"});
  REQUIRE(r.exit_code == 0);
  auto bank = Bank::open(path, OpenMode::ReadWrite);
  server::ServerOptions o;
  o.port = 0;
  o.threads = 2;
  const auto query_sig = cli::signal_setup(*bank, {}, "", true);
  const auto add_sig = cli::signal_setup(*bank, {}, "", false);
  o.signals.query = query_sig.fingerprint;
  o.signals.add = add_sig.fingerprint;
  server::HttpServer srv(*bank, o);
  const int port = srv.bind();
  std::thread serving([&] { srv.run(); });
  httplib::Client c("127.0.0.1", port);
  c.set_read_timeout(60, 0);

  const std::string body = slurp(sample("mate_LadyBird--flipped.jpg"));
  auto res = c.Post("/v1/match", body, "application/octet-stream");
  REQUIRE(res);
  INFO(res->body);
  CHECK(res->status == 200);
  json rep = json::parse(res->body);
  CHECK(rep["match"] == true);
  const json* h = hit_for(rep, "mate_LadyBird.jpg");
  REQUIRE(h);
  CHECK(has((*h)["signals_matched"], "mean-colour"));
  CHECK((*h)["evidence"]["mean-colour"]["form"] == 1);

  // An image added over HTTP gets its record too.
  const auto green = tmp / "green.png";
  cv::imwrite(green.string(), cv::Mat(64, 64, CV_8UC3, cv::Scalar(0, 255, 0)));
  res = c.Post("/v1/entries?label=green", slurp(green), "application/octet-stream");
  REQUIRE(res);
  INFO(res->body);
  CHECK(res->status == 201);

  res = c.Get("/v1/stats");
  REQUIRE(res);
  const json st = json::parse(res->body);
  const json* reg = nullptr;
  for (const auto& s : st["signals"])
    if (s["name"] == "mean-colour") reg = &s;
  REQUIRE(reg);
  CHECK((*reg)["entries"] == 7);
  CHECK((*reg)["params"]["max_distance"] == "40");

  srv.stop();
  serving.join();
}

TEST_CASE("a registered signal wanting colour leaves every other signal's evidence unchanged",
          "[signal]") {
  TempDir tmp;
  const auto bank = (tmp / "bank.db").string();
  auto r = in_process({"index", (hwtest::source_dir() / "samples" / "bank").string(), "--bank",
                       bank, "--signals", "pdq,local,mean-colour", "-q"});
  REQUIRE(r.exit_code == 0);
  std::size_t compared = 0;
  for (const auto& upload : fs::directory_iterator(hwtest::source_dir() / "samples" / "uploads")) {
    if (upload.path().filename().string().rfind("broken", 0) == 0) continue;
    const auto ask = [&](const std::string& signals) {
      const auto a = in_process({"query", upload.path().string(), "--bank", bank, "--json",
                                 "--near-misses", "--top", "50", "--signals", signals});
      REQUIRE(a.exit_code < 2);
      std::map<std::int64_t, json> hits;
      const json doc = json::parse(a.out);
      for (const auto& m : doc["matches"]) hits[m["id"].get<std::int64_t>()] = m;
      return hits;
    };
    const auto with = ask("pdq,local,mean-colour");
    const auto without = ask("pdq,local");
    const auto alone = ask("mean-colour");
    for (const auto& [id, h] : without) {
      INFO(upload.path().filename() << " entry " << id);
      const auto it = with.find(id);
      REQUIRE(it != with.end());
      CHECK(h["distance"] == it->second["distance"]);
      CHECK(h["variant"] == it->second["variant"]);
      CHECK(h["inliers"] == it->second["inliers"]);
      CHECK(h["region"] == it->second["region"]);
      ++compared;
    }
    for (const auto& [id, h] : alone) {
      const auto it = with.find(id);
      if (it == with.end()) continue;
      CHECK(h["evidence"]["mean-colour"] == it->second["evidence"]["mean-colour"]);
      ++compared;
    }
  }
  CHECK(compared > 10);
}

TEST_CASE("a registered signal's index follows another connection's writes from the change log",
          "[signal]") {
  TempDir tmp;
  const auto path = tmp / "bank.db";
  BankConfig cfg;
  cfg.signals = {"pdq", "mean-colour"};
  auto writer = Bank::open(path, OpenMode::Create, cfg);
  const auto make = [](int n) {
    NewEntry e;
    e.pdq = Hash256{};
    e.source = "entry" + std::to_string(n);
    e.pdq = Hash256{};
    e.pdq->bytes[0] = static_cast<std::uint8_t>(n);
    e.records["mean-colour"] = std::string(kRecordBytes, '\x20');
    return e;
  };
  const auto first = writer->add(std::vector{make(1)}).ids;
  auto reader = Bank::open(path, OpenMode::ReadOnly);
  const SignalQuery q{{std::string(kRecordBytes, '\x20')}};
  const auto ids = [&] {
    std::set<std::int64_t> out;
    for (const auto& m : reader->search_signal("mean-colour", q, 0, 10)) out.insert(m.id);
    return out;
  };
  CHECK(ids() == std::set{first[0]});  // the index is built here
  const auto rebuilds = reader->stats().index_rebuilds;
  const auto second = writer->add(std::vector{make(2), make(3)}).ids;
  CHECK(writer->remove_ids(first) == 1);
  CHECK(ids() == std::set{second[0], second[1]});
  const auto st = reader->stats();
  CHECK(st.changes_followed == 2);
  CHECK(st.index_rebuilds == rebuilds);
  REQUIRE(st.registered.size() == 1);
  CHECK(st.registered[0].entries == 2);
}
