// PDQ on the Signal interface (pdq/pdq_signal.hpp): records, query forms, the decision and
// its quality gate, compare(), and its index against the bank's own PDQ index.
#include <catch2/catch.hpp>
#include <random>
#include <set>

#include "bank/bank.hpp"
#include "core/error.hpp"
#include "image/load.hpp"
#include "match/matcher.hpp"
#include "pdq/pdq_signal.hpp"
#include "support.hpp"

using namespace hashwall;
using hwtest::random_hash;

namespace {

Hash256 flip(Hash256 h, int n) {
  for (int i = 0; i < n; ++i) h.bytes[i / 8] ^= static_cast<std::uint8_t>(1u << (i % 8));
  return h;
}

}  // namespace

TEST_CASE("a PDQ record holds the hash and the quality and malformed ones are named",
          "[pdq][signal]") {
  register_builtin_signals();
  const Signal* s = find_signal("pdq");
  REQUIRE(s);
  CHECK(s->name() == "pdq");
  std::mt19937_64 rng(1);
  const Hash256 h = random_hash(rng);
  const SignalRecord r = pdq_record(h, 73);
  CHECK(r.size() == kPdqRecordBytes);
  CHECK(pdq_record_hash(r) == h);
  CHECK(pdq_record_quality(r) == 73);
  CHECK(s->check_record(r).empty());
  CHECK_FALSE(pdq_record_quality(pdq_record(h, std::nullopt)).has_value());
  CHECK(s->check_record(pdq_record(h, std::nullopt)).empty());
  CHECK_THAT(s->check_record(r.substr(0, 32)), Catch::Contains("33 bytes, not 32"));
  SignalRecord bad = r;
  bad[32] = static_cast<char>(101);
  CHECK_THAT(s->check_record(bad), Catch::Contains("quality 101 is outside 0..100"));
  CHECK_FALSE(pdq_record_hash("short").has_value());
}

TEST_CASE("PDQ's decision is checked and its gate keeps featureless queries and entries out",
          "[pdq][signal]") {
  register_builtin_signals();
  const Signal& s = *find_signal("pdq");
  const SignalParams d = s.decision_defaults();
  CHECK(d.at("threshold") == "31");
  CHECK(d.at("min_quality") == "50");
  CHECK(s.validate(d).empty());
  CHECK_THAT(s.validate({{"threshold", "257"}, {"min_quality", "50"}}),
             Catch::Contains("threshold must be an integer within 0..256"));
  CHECK_THAT(s.validate({{"threshold", "31"}, {"min_quality", "-1"}}),
             Catch::Contains("min_quality"));
  CHECK_THAT(s.validate({{"threshold", "31"}, {"min_quality", "50"}, {"dihedral", "maybe"}}),
             Catch::Contains("dihedral must be yes or no"));
  CHECK_THAT(s.validate({{"threshold", "31"}, {"min_quality", "50"}, {"radius", "3"}}),
             Catch::Contains("unknown parameter 'radius'"));

  std::mt19937_64 rng(2);
  PdqDihedralResult q;
  for (auto& h : q.hashes) h = random_hash(rng);
  q.quality = 49;
  CHECK_FALSE(s.may_decide(pdq_query(q), d));
  q.quality = 50;
  CHECK(s.may_decide(pdq_query(q), d));
  CHECK_FALSE(s.may_decide_for(pdq_record(q.hashes[0], 49), d));
  CHECK(s.may_decide_for(pdq_record(q.hashes[0], 50), d));
  CHECK(s.may_decide_for(pdq_record(q.hashes[0], std::nullopt), d));  // imported, vetted
  CHECK_FALSE(
      s.may_decide_for(pdq_record(q.hashes[0], 80), {{"threshold", "31"}, {"min_quality", "90"}}));
}

TEST_CASE("compare gives the nearest dihedral form's distance and margin", "[pdq][signal]") {
  register_builtin_signals();
  const Signal& s = *find_signal("pdq");
  std::mt19937_64 rng(3);
  PdqDihedralResult q;
  for (auto& h : q.hashes) h = random_hash(rng);
  q.quality = 100;
  const SignalQuery forms = pdq_query(q);
  REQUIRE(forms.forms.size() == 8);
  const SignalRecord entry = pdq_record(flip(q.hashes[5], 7), 100);  // FlipY, 7 bits off
  const auto m = s.compare(forms, entry, s.decision_defaults());
  REQUIRE(m);
  CHECK(m->form == 5);
  CHECK(m->evidence.at("distance") == 7);
  CHECK(m->evidence.at("variant") == "flip-y");
  CHECK(m->margin == Approx(pdq_margin(7, 31)));
  // Without the dihedral forms only the image as given is compared.
  SignalParams plain = s.decision_defaults();
  plain["dihedral"] = "no";
  const auto m0 = s.compare(forms, entry, plain);
  REQUIRE(m0);
  CHECK(m0->form == 0);
  CHECK(m0->evidence.at("distance") == hamming(q.hashes[0], flip(q.hashes[5], 7)));
  CHECK(m0->margin < 0);
}

TEST_CASE("PDQ's signal index answers as the bank's PDQ index does, near misses included",
          "[pdq][signal][bank]") {
  hwtest::TempDir tmp;
  auto bank = Bank::open(tmp / "b.db", OpenMode::Create);
  const Signal& s = *find_signal("pdq");
  auto idx = s.make_index();
  std::mt19937_64 rng(4);
  std::vector<Hash256> hashes;
  std::vector<NewEntry> es;
  const Hash256 centre = random_hash(rng);
  for (int i = 0; i < 300; ++i) {
    NewEntry e;
    e.pdq = Hash256{};
    // A third near the centre (0..90 bits off), the rest anywhere.
    e.pdq = i % 3 == 0 ? flip(centre, (i * 7) % 91) : random_hash(rng);
    e.quality = 100;
    e.source = "e" + std::to_string(i);
    e.origin = Origin::Imported;
    es.push_back(e);
  }
  const auto added = bank->add(es);
  for (std::size_t i = 0; i < es.size(); ++i)
    idx->add(added.ids[i], pdq_record(*es[i].pdq, es[i].quality));
  CHECK(idx->size() == 300);
  PdqDihedralResult q;
  for (auto& h : q.hashes) h = random_hash(rng);
  q.hashes[3] = centre;
  q.quality = 100;
  const SignalQuery forms = pdq_query(q);
  for (const double min_margin : {0.0, -1.0, 0.5}) {
    const auto mine = idx->search(forms, s.decision_defaults(), min_margin, 10);
    const auto banks = bank->search_signal("pdq", forms, min_margin, 10);
    REQUIRE(mine.size() == banks.size());
    REQUIRE_FALSE(mine.empty());
    for (std::size_t i = 0; i < mine.size(); ++i) {
      CHECK(mine[i].id == banks[i].id);
      CHECK(mine[i].evidence == banks[i].evidence);
      CHECK(mine[i].margin >= min_margin);
    }
    // And as the bank's plain range search finds them.
    const int reach = min_margin < 0 ? 62 : min_margin > 0 ? 15 : 31;
    std::set<std::int64_t> want, got;
    for (const auto& m : bank->search_pdq(std::span(q.hashes.data(), 8), reach)) want.insert(m.id);
    for (const auto& m : mine) got.insert(m.id);
    CHECK(got == want);
  }
  // Removal in place.
  const auto before = idx->search(forms, s.decision_defaults(), 0, 10);
  REQUIRE_FALSE(before.empty());
  const std::int64_t gone = before.front().id;
  idx->remove(std::span(&gone, 1));
  for (const auto& m : idx->search(forms, s.decision_defaults(), 0, 10)) CHECK(m.id != gone);
  CHECK_THROWS_AS(idx->add(1000, "not a record"), Error);
  SignalQuery junk;
  junk.forms = {"xx"};
  CHECK_THROWS_AS(idx->search(junk, s.decision_defaults(), 0, 10), Error);
}

TEST_CASE(
    "an entry below the quality gate found by another signal reports its distance "
    "without PDQ deciding",
    "[pdq][signal][match]") {
  hwtest::TempDir tmp;
  auto bank = Bank::open(tmp / "b.db", OpenMode::Create);
  std::mt19937_64 rng(5);
  NewEntry e;
  e.pdq = Hash256{};
  e.pdq = random_hash(rng);
  e.quality = 10;  // featureless
  e.sha256 = std::string(64, 'c');
  const auto id = bank->add(std::span(&e, 1)).ids.at(0);
  Fingerprint q;
  q.sha256 = *e.sha256;  // the same file: found by sha256
  q.pdq.hashes.fill(*e.pdq);
  q.pdq.quality = 100;
  const auto r = Matcher(*bank, {}).match(q);
  REQUIRE(r.hits.size() == 1);
  CHECK(r.hits[0].entry.id == id);
  CHECK(r.hits[0].signals_matched == std::vector<std::string>{"sha256"});
  CHECK(r.hits[0].distance() == 0);
  CHECK_FALSE(r.hits[0].registered.at("pdq").decides);
  CHECK(r.hits[0].score == Approx(1.0));  // the exact file alone: PDQ's margin does not count
  CHECK(r.registered_params.at("pdq").at("threshold") == "31");
  // Without the file match, PDQ alone may not find it.
  q.sha256.clear();
  const auto r2 = Matcher(*bank, {}).match(q);
  CHECK(r2.hits.empty());
  CHECK(r2.verdict == Verdict::NoMatch);
}

TEST_CASE("a threshold of 256 reaches the farthest hash and near misses stop at 255",
          "[pdq][signal]") {
  register_builtin_signals();
  const Signal& s = *find_signal("pdq");
  auto idx = s.make_index();
  std::mt19937_64 rng(6);
  const Hash256 h = random_hash(rng);
  Hash256 opposite = h;
  for (auto& b : opposite.bytes) b = static_cast<std::uint8_t>(~b);
  idx->add(1, pdq_record(opposite, 100));
  PdqDihedralResult q;
  q.hashes.fill(h);
  q.quality = 100;
  const SignalParams all = {{"threshold", "256"}, {"min_quality", "50"}};
  const auto found = idx->search(pdq_query(q), all, 0, 10);
  REQUIRE(found.size() == 1);
  CHECK(found[0].evidence.at("distance") == 256);
  CHECK(found[0].margin == Approx(0));
  CHECK(idx->search(pdq_query(q), all, -1, 10).empty());  // near misses: up to 255
  CHECK(idx->search(pdq_query(q), all, std::nan(""), 10).empty());
}

TEST_CASE(
    "a fingerprint computes PDQ once, as its decode mode asks, whatever signals it is "
    "given",
    "[pdq][signal]") {
  register_builtin_signals();
  LoadedImage img;
  img.pixels = cv::Mat(64, 64, CV_8UC1);
  cv::randu(img.pixels, 0, 255);
  img.width = img.height = 64;
  FingerprintOptions o;
  o.registered = {find_signal("pdq")};
  const Fingerprint f = fingerprint(img, DecodeMode::Exact, o);
  CHECK_FALSE(f.registered.count("pdq"));
  const auto exact = pdq_hash_dihedral(img.pixels, PdqPreprocess::Reference);
  CHECK(f.pdq.hashes == exact.hashes);
  CHECK(f.pdq.quality == exact.quality);
}

TEST_CASE(
    "a new bank may be made from an existing bank's config, and a contradicting "
    "built-in decision is refused",
    "[pdq][signal][bank]") {
  hwtest::TempDir tmp;
  BankConfig c;
  c.pdq_threshold = 20;
  c.signals = {"pdq", "local"};
  const auto first = Bank::open(tmp / "a.db", OpenMode::Create, c);
  CHECK(first->config().signal_params.at("pdq").at("threshold") == "20");
  const auto copy = Bank::open(tmp / "b.db", OpenMode::Create, first->config());
  CHECK(copy->config().pdq_threshold == 20);
  CHECK(copy->config().signal_params == first->config().signal_params);
  BankConfig wrong = first->config();
  wrong.signal_params["pdq"]["threshold"] = "25";  // the field says 20
  CHECK_THROWS_WITH(Bank::open(tmp / "c.db", OpenMode::Create, wrong),
                    Catch::Contains("takes its settings from BankConfig's fields"));
}
