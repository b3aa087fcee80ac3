// The matching decision: thresholds, quality gates, exact files, dihedral variants.
#include <catch2/catch.hpp>
#include <cmath>
#include <random>
#include <set>

#include "bank/bank.hpp"
#include "embed/embed_signal.hpp"
#include "match/matcher.hpp"
#include "support.hpp"

using namespace hashwall;
using hwtest::random_hash;

namespace {

Hash256 flip_bits(Hash256 h, int n, std::mt19937_64& rng) {
  std::vector<int> bits(256);
  for (int i = 0; i < 256; ++i) bits[i] = i;
  std::shuffle(bits.begin(), bits.end(), rng);
  for (int i = 0; i < n; ++i)
    h.bytes[bits[i] / 8] ^= static_cast<std::uint8_t>(1u << (bits[i] % 8));
  return h;
}

Fingerprint query_of(const Hash256& h, int quality, std::string sha = "") {
  Fingerprint f;
  f.sha256 = std::move(sha);
  f.pdq.quality = quality;
  std::mt19937_64 rng(99);
  for (auto& v : f.pdq.hashes) v = random_hash(rng);  // variants far from everything
  f.pdq.hashes[0] = h;
  return f;
}

struct Fixture {
  hwtest::TempDir tmp;
  std::unique_ptr<Bank> bank;
  std::mt19937_64 rng{42};
  Hash256 a, low;
  Fixture() {
    bank = Bank::open(tmp / "b.db", OpenMode::Create);
    a = random_hash(rng);
    low = random_hash(rng);
    std::vector<NewEntry> es(3);
    es[0].pdq = a;
    es[0].quality = 100;
    es[0].sha256 = std::string(64, 'a');
    es[0].label = "known";
    es[1].pdq = low;
    es[1].quality = 20;  // too featureless to trust
    es[1].sha256 = std::string(64, 'b');
    es[2].pdq = random_hash(rng);
    es[2].origin = Origin::Imported;  // no quality: trusted as shared
    bank->add(es);
  }
};

}  // namespace

TEST_CASE("a query within the threshold matches and one beyond it does not", "[match]") {
  Fixture f;
  const Matcher m(*f.bank, {});
  const auto near = m.match(query_of(flip_bits(f.a, 31, f.rng), 100));
  REQUIRE(near.verdict == Verdict::Match);
  CHECK(near.hits.at(0).distance() == 31);
  CHECK(near.hits[0].entry.label == "known");
  CHECK_FALSE(near.hits[0].exact);
  CHECK(near.threshold == 31);
  CHECK(m.match(query_of(flip_bits(f.a, 32, f.rng), 100)).verdict == Verdict::NoMatch);
  MatchOptions loose;
  loose.threshold = 40;
  CHECK(Matcher(*f.bank, loose).match(query_of(flip_bits(f.a, 32, f.rng), 100)).verdict ==
        Verdict::Match);
}

TEST_CASE("a low-quality query is undecided never a silent no-match", "[match]") {
  Fixture f;
  const Matcher m(*f.bank, {});
  const auto r = m.match(query_of(f.a, 49));
  CHECK(r.verdict == Verdict::LowQuality);
  CHECK(r.hits.empty());
}

TEST_CASE("a low-quality entry is never matched by PDQ and an imported one without quality is",
          "[match]") {
  Fixture f;
  const Matcher m(*f.bank, {});
  CHECK(m.match(query_of(f.low, 100)).verdict == Verdict::NoMatch);
  Hash256 imported;
  f.bank->for_each([&](const Entry& e) {
    if (e.origin == Origin::Imported) imported = *e.pdq;
    return true;
  });
  CHECK(m.match(query_of(imported, 100)).verdict == Verdict::Match);
}

TEST_CASE("a byte-identical file matches as exact whatever its quality", "[match]") {
  Fixture f;
  const Matcher m(*f.bank, {});
  const auto r = m.match(query_of(random_hash(f.rng), 10, std::string(64, 'b')));
  REQUIRE(r.verdict == Verdict::Match);
  CHECK(r.hits.at(0).exact);
  const auto r2 = m.match(query_of(f.a, 100, std::string(64, 'a')));
  REQUIRE(r2.hits.size() == 1);  // the exact hit and the PDQ hit are one entry
  CHECK(r2.hits[0].exact);
  CHECK(r2.hits[0].distance() == 0);
}

TEST_CASE("the nearest dihedral variant decides and is named", "[match]") {
  Fixture f;
  Fingerprint q = query_of(random_hash(f.rng), 100);
  q.pdq.hashes[static_cast<int>(Dihedral::FlipY)] = flip_bits(f.a, 5, f.rng);
  const auto r = Matcher(*f.bank, {}).match(q);
  REQUIRE(r.verdict == Verdict::Match);
  CHECK(r.hits[0].variant() == Dihedral::FlipY);
  CHECK(r.hits[0].distance() == 5);
  MatchOptions no_dihedral;
  no_dihedral.dihedral = false;
  CHECK(Matcher(*f.bank, no_dihedral).match(q).verdict == Verdict::NoMatch);
}

TEST_CASE("at most top hits are reported nearest first", "[match]") {
  hwtest::TempDir tmp;
  auto bank = Bank::open(tmp / "b.db", OpenMode::Create);
  std::mt19937_64 rng(5);
  const Hash256 centre = random_hash(rng);
  std::vector<NewEntry> es;
  for (int d = 20; d >= 1; --d) {
    NewEntry e;
    e.pdq = Hash256{};
    e.pdq = flip_bits(centre, d, rng);
    e.quality = 90;
    e.sha256 = std::string(63, 'c') + static_cast<char>('a' + d % 6);
    e.sha256->replace(0, 2, std::to_string(10 + d));
    es.push_back(e);
  }
  bank->add(es);
  MatchOptions o;
  o.top = 5;
  const auto r = Matcher(*bank, o).match(query_of(centre, 100));
  REQUIRE(r.hits.size() == 5);
  for (std::size_t i = 0; i < r.hits.size(); ++i)
    CHECK(r.hits[i].distance() == static_cast<int>(i) + 1);
}

TEST_CASE("each signal's margin is 0 at its threshold and 1 at certainty", "[match][score]") {
  CHECK(pdq_margin(31, 31) == Approx(0));
  CHECK(pdq_margin(0, 31) == Approx(1));
  CHECK(pdq_margin(62, 31) == Approx(-1));
  CHECK(pdq_margin(200, 31) == Approx(-1));  // clipped
  CHECK(embed_margin(0.75, 0.75) == Approx(0));
  CHECK(embed_margin(0.875, 0.75) == Approx(0.5));
  CHECK(embed_margin(0.5, 0.75) == Approx(-1));
  CHECK(local_margin(12, 12) == Approx(0));
  CHECK(local_margin(24, 12) == Approx(0.5));
  CHECK(local_margin(6, 12) == Approx(-0.5));
  CHECK(local_margin(1000, 12) < 1.0);
  MatchHit h;
  h.registered["pdq"] = {pdq_margin(15, 31), 0, {{"distance", 15}}, {}};  // PDQ margin 16/31
  h.registered["local"] = {0.5, 0, {{"inliers", 24}}, {}};                // local margin 0.5
  CHECK(h.distance() == 15);
  CHECK(joint_score(h) == Approx(16.0 / 31 + 0.05));
  h.registered["pdq"].decides = false;
  CHECK(joint_score(h) == Approx(0.5));  // PDQ may not decide: local alone
  h.registered["pdq"].decides = true;
  h.exact = true;
  CHECK(joint_score(h) == Approx(1.0 + 0.1 * (16.0 / 31) + 0.05));
}

TEST_CASE("hits carry the joint score and are sorted by it", "[match][score]") {
  Fixture f;
  const Matcher m(*f.bank, {});
  const auto r = m.match(query_of(flip_bits(f.a, 10, f.rng), 100));
  REQUIRE(r.hits.size() == 1);
  CHECK(r.hits[0].matched);
  CHECK(r.hits[0].score == Approx(21.0 / 31));
  const auto at_threshold = m.match(query_of(flip_bits(f.a, 31, f.rng), 100));
  REQUIRE(at_threshold.hits.size() == 1);
  CHECK(at_threshold.hits[0].score == Approx(0).margin(1e-12));
  // An exact file comes first and scores at least 1.
  const auto exact = m.match(query_of(flip_bits(f.a, 3, f.rng), 100, std::string(64, 'a')));
  REQUIRE(exact.hits.size() == 1);
  CHECK(exact.hits[0].exact);
  CHECK(exact.hits[0].score >= 1.0);
}

TEST_CASE("near misses are reported with a negative score and never decide", "[match][score]") {
  Fixture f;
  MatchOptions o;
  o.near_misses = true;
  const Matcher m(*f.bank, o);
  const auto miss = m.match(query_of(flip_bits(f.a, 40, f.rng), 100));
  CHECK(miss.verdict == Verdict::NoMatch);
  REQUIRE(miss.hits.size() == 1);
  CHECK_FALSE(miss.hits[0].matched);
  CHECK(miss.hits[0].signals_matched.empty());
  CHECK(miss.hits[0].score == Approx(-9.0 / 31));
  CHECK(miss.hits[0].entry.label == "known");
  // Beyond twice the threshold nothing is reported.
  CHECK(m.match(query_of(flip_bits(f.a, 63, f.rng), 100)).hits.empty());
  // A match stays a match, and the low-quality entry stays out even as a near miss.
  const auto hit = m.match(query_of(flip_bits(f.a, 31, f.rng), 100));
  CHECK(hit.verdict == Verdict::Match);
  REQUIRE_FALSE(hit.hits.empty());
  CHECK(hit.hits[0].matched);
  CHECK(m.match(query_of(flip_bits(f.low, 20, f.rng), 100)).hits.empty());
  // Without the option the same near miss is not reported at all.
  CHECK(Matcher(*f.bank, {}).match(query_of(flip_bits(f.a, 40, f.rng), 100)).hits.empty());
}

namespace {

// A bank with PDQ and embeddings (4-dimensional, threshold 0.5) and a query whose
// entries are found by one signal, by both, or by an identical file.
struct MergeFixture {
  hwtest::TempDir tmp;
  std::unique_ptr<Bank> bank;
  std::mt19937_64 rng{7};
  Fingerprint q;
  std::int64_t both = 0, embed_only = 0, pdq_only = 0, neither = 0, exact = 0;
  MergeFixture() {
    BankConfig cfg;
    cfg.signals = {"pdq", "embed"};
    cfg.embed_model = "test@0000";
    cfg.embed_threshold = 0.5;
    bank = Bank::open(tmp / "b.db", OpenMode::Create, cfg);
    q = query_of(random_hash(rng), 100, std::string(64, 'e'));
    q.registered["embed"].forms = {embedding_record(std::vector<float>{1, 0, 0, 0})};
    std::vector<NewEntry> es(5);
    const auto unit = [](float cos) {
      return std::vector<float>{cos, std::sqrt(1 - cos * cos), 0, 0};
    };
    es[0].pdq = flip_bits(q.pdq.hashes[0], 5, rng);  // PDQ margin 26/31 and embedding 1.0
    es[0].records["embed"] = embedding_record(unit(1.0f));
    es[1].pdq = random_hash(rng);  // embedding only: margin (0.8 - 0.5) / 0.5 = 0.6
    es[1].records["embed"] = embedding_record(unit(0.8f));
    es[2].pdq = flip_bits(q.pdq.hashes[0], 20, rng);  // PDQ only: margin 11/31
    es[2].records["embed"] = embedding_record(unit(0.0f));
    es[3].pdq = random_hash(rng);  // nothing: far hash, similarity 0.3
    es[3].records["embed"] = embedding_record(unit(0.3f));
    es[4].pdq = random_hash(rng);  // the very file: far hash, orthogonal embedding
    es[4].records["embed"] = embedding_record(unit(0.0f));
    es[4].sha256 = q.sha256;
    for (std::size_t i = 0; i < es.size(); ++i) {
      es[i].quality = 100;
      es[i].label = "e" + std::to_string(i);
      if (!es[i].sha256) es[i].sha256 = std::string(64, static_cast<char>('a' + i));
    }
    const auto ids = bank->add(es).ids;
    both = ids[0], embed_only = ids[1], pdq_only = ids[2], neither = ids[3], exact = ids[4];
  }
  const MatchHit* hit(const MatchResult& r, std::int64_t id) const {
    for (const auto& h : r.hits)
      if (h.entry.id == id) return &h;
    return nullptr;
  }
};

}  // namespace

TEST_CASE("merged hits: the first matching signal decides and every signal's evidence is kept",
          "[match]") {
  MergeFixture f;
  const MatchResult r = Matcher(*f.bank, {}).match(f.q);
  CHECK(r.verdict == Verdict::Match);
  CHECK(r.signals == std::vector<std::string>{"pdq", "embed"});
  REQUIRE(r.hits.size() == 4);
  CHECK(f.hit(r, f.neither) == nullptr);

  const MatchHit* ex = f.hit(r, f.exact);
  REQUIRE(ex);
  CHECK(ex->exact);
  CHECK(ex->signal == "sha256");
  CHECK(ex->signals_matched == std::vector<std::string>{"sha256"});

  const MatchHit* b = f.hit(r, f.both);
  REQUIRE(b);
  CHECK(b->signal == "pdq");
  CHECK(b->signals_matched == std::vector<std::string>{"pdq", "embed"});
  CHECK(b->distance() == 5);
  REQUIRE(b->similarity());
  CHECK(*b->similarity() == Approx(1.0));
  // Strongest margin (the embedding's, 1) plus a tenth of the other (PDQ's 26/31).
  CHECK(b->score == Approx(1.0 + 0.1 * 26.0 / 31));

  const MatchHit* e = f.hit(r, f.embed_only);
  REQUIRE(e);
  CHECK(e->signal == "embed");
  CHECK(e->signals_matched == std::vector<std::string>{"embed"});
  CHECK(*e->similarity() == Approx(0.8).margin(1e-6));
  // A hit found by another signal still carries its PDQ distance: the nearest of the
  // query's 8 variants.
  int nearest = 256;
  for (const auto& v : f.q.pdq.hashes) nearest = std::min(nearest, hamming(v, *e->entry.pdq));
  CHECK(e->distance() == nearest);
  CHECK(e->distance() > 31);
  CHECK(e->score == Approx(0.6).margin(1e-6));

  const MatchHit* p = f.hit(r, f.pdq_only);
  REQUIRE(p);
  CHECK(p->signal == "pdq");
  CHECK(p->signals_matched == std::vector<std::string>{"pdq"});
  CHECK(p->distance() == 20);
  CHECK_FALSE(p->similarity());  // below the embedding's reach: not searched up
  CHECK(p->score == Approx(11.0 / 31));

  // The identical file first, then by score.
  CHECK(r.hits[0].entry.id == f.exact);
  CHECK(r.hits[1].entry.id == f.both);
  CHECK(r.hits[2].entry.id == f.embed_only);
  CHECK(r.hits[3].entry.id == f.pdq_only);
}

TEST_CASE("a signal left out of the query neither decides nor adds evidence", "[match]") {
  MergeFixture f;
  MatchOptions pdq_only;
  pdq_only.signals = {"pdq"};
  const MatchResult r = Matcher(*f.bank, pdq_only).match(f.q);
  CHECK(r.signals == std::vector<std::string>{"pdq"});
  CHECK(f.hit(r, f.embed_only) == nullptr);
  const MatchHit* b = f.hit(r, f.both);
  REQUIRE(b);
  CHECK(b->signals_matched == std::vector<std::string>{"pdq"});
  CHECK_FALSE(b->similarity());
  CHECK(b->distance() == 5);
  CHECK(b->score == Approx(26.0 / 31));

  MatchOptions embed_only;
  embed_only.signals = {"embed"};
  const MatchResult e = Matcher(*f.bank, embed_only).match(f.q);
  CHECK(e.signals == std::vector<std::string>{"embed"});
  CHECK(f.hit(e, f.pdq_only) == nullptr);
  const MatchHit* eb = f.hit(e, f.both);
  REQUIRE(eb);
  CHECK(eb->signal == "embed");
  CHECK(eb->signals_matched == std::vector<std::string>{"embed"});
  CHECK(eb->distance() == 5);  // evidence, though PDQ may not decide
  // An identical file counts whichever signals are allowed.
  CHECK(f.hit(e, f.exact) != nullptr);
  CHECK(e.hits.front().entry.id == f.exact);
}

TEST_CASE("a query without an embedding is matched by PDQ alone in an embedding bank", "[match]") {
  MergeFixture f;
  f.q.registered.erase("embed");  // a bare hash sent by a client
  const MatchResult r = Matcher(*f.bank, {}).match(f.q);
  CHECK(r.signals == std::vector<std::string>{"pdq"});
  CHECK(f.hit(r, f.embed_only) == nullptr);
  REQUIRE(f.hit(r, f.both));
  CHECK(f.hit(r, f.both)->signals_matched == std::vector<std::string>{"pdq"});
}

TEST_CASE("a disabled entry never decides and is never reported, through any signal",
          "[match][lists]") {
  MergeFixture f;
  MatchOptions o;
  o.entry_role = [&](const Entry& e) {
    return e.id == f.both || e.id == f.exact ? EntryRole::Disabled : EntryRole::Block;
  };
  const MatchResult r = Matcher(*f.bank, o).match(f.q);
  CHECK(f.hit(r, f.both) == nullptr);   // found by PDQ and by the embedding
  CHECK(f.hit(r, f.exact) == nullptr);  // the identical file
  CHECK(f.hit(r, f.embed_only) != nullptr);
  CHECK(f.hit(r, f.pdq_only) != nullptr);
  CHECK(r.verdict == Verdict::Match);
  // Every entry disabled: no match at all.
  o.entry_role = [](const Entry&) { return EntryRole::Disabled; };
  const MatchResult none = Matcher(*f.bank, o).match(f.q);
  CHECK(none.hits.empty());
  CHECK(none.verdict == Verdict::NoMatch);
}

TEST_CASE(
    "a query matching an allowlisted entry at least as strongly as any blocking one is "
    "allowed, not matched",
    "[match][lists]") {
  MergeFixture f;
  const auto with_allowed = [&](std::set<std::int64_t> allowed) {
    MatchOptions o;
    o.entry_role = [allowed](const Entry& e) {
      return allowed.count(e.id) ? EntryRole::Allow : EntryRole::Block;
    };
    return Matcher(*f.bank, o).match(f.q);
  };
  // The identical file is the strongest hit: allowlisting it allows the query, and the
  // blocking hits are still shown beside it.
  MatchResult r = with_allowed({f.exact});
  CHECK(r.verdict == Verdict::Allowed);
  CHECK(std::string(verdict_name(r.verdict)) == "allowed");
  REQUIRE(f.hit(r, f.exact));
  CHECK(f.hit(r, f.exact)->allow);
  REQUIRE(f.hit(r, f.both));
  CHECK_FALSE(f.hit(r, f.both)->allow);
  // A weaker allowlisted entry does not hide a stronger blocking one.
  r = with_allowed({f.pdq_only});
  CHECK(r.verdict == Verdict::Match);
  CHECK(f.hit(r, f.pdq_only)->allow);
  // Every match allowlisted: allowed.
  r = with_allowed({f.exact, f.both, f.embed_only, f.pdq_only});
  CHECK(r.verdict == Verdict::Allowed);
  // Without a hook nothing changes.
  CHECK(Matcher(*f.bank, {}).match(f.q).verdict == Verdict::Match);
}

TEST_CASE("allowlisted and disabled entries never take a blocking entry's place at a small top",
          "[match][lists]") {
  MergeFixture f;
  MatchOptions o;
  o.top = 1;
  // A weak allowlisted PDQ match is found first; the blocking entry matches by embedding
  // only. It must still be found and decide.
  o.entry_role = [&](const Entry& e) {
    if (e.id == f.pdq_only) return EntryRole::Allow;
    if (e.id == f.exact || e.id == f.both) return EntryRole::Disabled;
    return EntryRole::Block;
  };
  MatchResult r = Matcher(*f.bank, o).match(f.q);
  CHECK(r.verdict == Verdict::Match);
  REQUIRE(r.hits.size() == 1);
  CHECK(r.hits[0].entry.id == f.embed_only);
  // A disabled entry nearer by embedding than the blocking one does not use up the search.
  o.signals = {"embed"};
  o.entry_role = [&](const Entry& e) {
    return e.id == f.both || e.id == f.exact ? EntryRole::Disabled : EntryRole::Block;
  };
  r = Matcher(*f.bank, o).match(f.q);
  CHECK(r.verdict == Verdict::Match);
  REQUIRE(r.hits.size() == 1);
  CHECK(r.hits[0].entry.id == f.embed_only);
}

TEST_CASE("a low-quality query is undecided only when PDQ alone could have decided", "[match]") {
  MergeFixture f;
  Fingerprint q = f.q;
  q.sha256.clear();
  q.pdq.quality = 10;
  q.registered["embed"].forms = {embedding_record(std::vector<float>{0, 0, 1, 0})};  // near nothing
  MatchOptions o;
  o.signals = {"pdq"};
  CHECK(Matcher(*f.bank, o).match(q).verdict == Verdict::LowQuality);
  o.signals = {"embed"};  // the embedding was searched and found nothing: a real no-match
  CHECK(Matcher(*f.bank, o).match(q).verdict == Verdict::NoMatch);
  o.signals = {"pdq", "embed"};
  CHECK(Matcher(*f.bank, o).match(q).verdict == Verdict::NoMatch);
}
