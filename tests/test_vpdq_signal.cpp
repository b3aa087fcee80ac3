// The vpdq signal (src/video/vpdq_signal.cpp, vpdq_record.cpp): records that round-trip and
// refuse every damage, Meta's vpdq-hash-video text read back, and the frame index held to
// the brute-force rule (vpdq_compare) in both its forms (flat, multi-index hashing).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "bank/bank.hpp"
#include "support.hpp"
#include "video/vpdq_record.hpp"
#include "video/vpdq_signal.hpp"

using namespace hashwall;

namespace {

Hash256 random_hash(std::mt19937_64& rng) {
  Hash256 h;
  for (auto& b : h.bytes) b = static_cast<std::uint8_t>(rng());
  return h;
}

Hash256 flip(Hash256 h, int bits, std::mt19937_64& rng) {
  std::set<int> at;
  while (static_cast<int>(at.size()) < bits) at.insert(static_cast<int>(rng() % 256));
  for (const int b : at)
    h.bytes[static_cast<std::size_t>(b / 8)] ^= static_cast<std::uint8_t>(1u << (b % 8));
  return h;
}

// A video of `scenes` scenes, each `len` frames a few bits apart, at 10 frames a second.
VpdqVideo random_video(std::mt19937_64& rng, int scenes, int len) {
  VpdqVideo v;
  std::int64_t n = 0;
  for (int s = 0; s < scenes; ++s) {
    const Hash256 base = random_hash(rng);
    for (int i = 0; i < len; ++i, ++n)
      v.frames.push_back({n, static_cast<int>(40 + rng() % 61),
                          flip(base, static_cast<int>(rng() % 12), rng), n / 10.0});
  }
  v.duration_s = n / 10.0;
  return v;
}

}  // namespace

TEST_CASE("a vPDQ record round-trips, and every damaged form of it is refused", "[vpdq]") {
  std::mt19937_64 rng(7);
  const VpdqVideo v = random_video(rng, 3, 4);
  const std::string rec = encode_vpdq_record(v);
  CHECK(rec.size() == 13 + 41 * v.frames.size());
  const auto back = decode_vpdq_record(rec);
  REQUIRE(back);
  REQUIRE(back->frames.size() == v.frames.size());
  for (std::size_t i = 0; i < v.frames.size(); ++i) {
    CHECK(back->frames[i].hash == v.frames[i].hash);
    CHECK(back->frames[i].quality == v.frames[i].quality);
    CHECK(back->frames[i].frame_number == v.frames[i].frame_number);
    CHECK(back->frames[i].timestamp == Approx(v.frames[i].timestamp));
  }
  CHECK(back->duration_s == Approx(v.duration_s));
  const VpdqSignal sig;
  CHECK(sig.check_record(rec).empty());
  CHECK(sig.record_items(rec) == static_cast<std::int64_t>(v.frames.size()));
  for (std::size_t n = 0; n < rec.size(); ++n) CHECK_FALSE(decode_vpdq_record(rec.substr(0, n)));
  CHECK_FALSE(decode_vpdq_record(rec + "x"));
  std::string bad = rec;
  bad[0] = 'X';
  CHECK(sig.check_record(bad).find("HWVQ") != std::string::npos);
  bad = rec;
  bad[4] = 2;
  CHECK(sig.check_record(bad).find("version 2") != std::string::npos);
  bad = rec;
  bad[13 + 32] = static_cast<char>(101);  // the first frame's quality
  CHECK(sig.check_record(bad).find("quality") != std::string::npos);
  bad = rec;
  bad[13 + 41 + 37] = 0;  // the second frame's time, low byte: now before the first's?
  bad[13 + 37] = static_cast<char>(0xff);
  bad[13 + 38] = static_cast<char>(0xff);
  CHECK(sig.check_record(bad).find("back in time") != std::string::npos);
  // More frames than a record holds: refused when made, and when read.
  VpdqVideo huge;
  huge.frames.resize(kMaxVpdqRecordFrames + 1);
  CHECK_THROWS_AS(encode_vpdq_record(huge), Error);
  bad = rec;
  bad[5] = bad[6] = bad[7] = static_cast<char>(0xff);
  CHECK(sig.check_record(bad).find("more than") != std::string::npos);
}

TEST_CASE("Meta's vpdq-hash-video text and python-threatexchange's JSON are read back", "[vpdq]") {
  const std::string h0(64, 'a'), h1 = std::string(63, 'b') + "c";
  const auto p = parse_vpdq_text("\xEF\xBB\xBF# a comment\r\n0,100," + h0 + ",0.000\r\n\n1,49," +
                                 h1 + ",0.033\n");
  CHECK(p.errors.empty());
  REQUIRE(p.video.frames.size() == 2);
  CHECK(p.video.frames[1].frame_number == 1);
  CHECK(p.video.frames[1].quality == 49);
  CHECK(p.video.frames[1].timestamp == Approx(0.033));
  CHECK(p.video.frames[0].hash.hex() == h0);
  const auto bad = parse_vpdq_text("0,100," + h0 + "\n1,101," + h0 + ",1\n2,1,xyz,2\n3,1," + h0 +
                                   ",-1\n-4,1," + h0 + ",1\n5,50," + h0 + ",5\n");
  REQUIRE(bad.errors.size() == 5);
  CHECK(bad.errors[0].first == 1);
  CHECK(bad.errors[0].second.find("4 fields") != std::string::npos);
  CHECK(bad.errors[1].second.find("quality") != std::string::npos);
  CHECK(bad.errors[2].second.find("PDQ hash") != std::string::npos);
  CHECK(bad.errors[3].second.find("timestamp") != std::string::npos);
  CHECK(bad.errors[4].second.find("frame number") != std::string::npos);
  CHECK(bad.video.frames.size() == 1);

  std::string why;
  const auto j = parse_vpdq_json("[\"" + h0 + ",100,0.000\", \"" + h1 + ",80,1.5\"]", &why);
  REQUIRE(j);
  REQUIRE(j->frames.size() == 2);
  CHECK(j->frames[1].quality == 80);
  CHECK(j->frames[1].timestamp == Approx(1.5));
  CHECK(vpdq_json(*j) == "[\"" + h0 + ",100,0.000\",\"" + h1 + ",80,1.500\"]");
  CHECK_FALSE(parse_vpdq_json("{}", &why));
  CHECK_FALSE(parse_vpdq_json("[1]", &why));
  CHECK_FALSE(parse_vpdq_json("[\"" + h0 + ",100\"]", &why));
  CHECK_FALSE(parse_vpdq_json("[\"" + h0 + ",100,0,1\"]", &why));
  CHECK_FALSE(parse_vpdq_json("[\"" + h0 + ",-1,0\"]", &why));
}

TEST_CASE("pruning drops a frame within the distance of the last one kept", "[vpdq]") {
  std::mt19937_64 rng(3);
  const Hash256 a = random_hash(rng);
  std::vector<VpdqFrame> f = {{0, 100, a, 0},
                              {1, 100, flip(a, 6, rng), 0.1},    // within 6: dropped
                              {2, 100, flip(a, 7, rng), 0.2},    // 7 from the first: kept
                              {3, 100, random_hash(rng), 0.3}};  // far: kept
  const auto kept = prune_vpdq(f, 6);
  REQUIRE(kept.size() == 3);
  CHECK(kept[0].frame_number == 0);
  CHECK(kept[1].frame_number == 2);
  CHECK(kept[2].frame_number == 3);
  VpdqVideo v;
  v.frames = kept;
  v.duration_s = 0.4;
  // Spans: a kept frame runs to the next one; the last to the end.
  CHECK(vpdq_spans(v, {true, false, true}) ==
        std::vector<std::pair<double, double>>{{0, 0.2}, {0.3, 0.4}});
  CHECK(vpdq_spans(v, {false, true, true}) == std::vector<std::pair<double, double>>{{0.2, 0.4}});
}

TEST_CASE("the vPDQ index finds what the brute-force rule finds, flat and multi-index", "[vpdq]") {
  const int videos = GENERATE(12, 60);  // 60 x 400 frames: past kVpdqMultihashFrames
  std::mt19937_64 rng(static_cast<unsigned>(videos));
  const VpdqSignal sig;
  auto index = sig.make_index();
  std::map<std::int64_t, VpdqVideo> bank;
  for (int i = 1; i <= videos; ++i) {
    bank[i] = random_video(rng, 8, 50);
    index->add(i, encode_vpdq_record(bank[i]));
  }
  index->prepare();
  CHECK(index->type() == (videos * 400 >= 20000 ? "frames-multihash" : "frames-flat"));
  const SignalParams decision = sig.decision_defaults();
  const auto rule = *vpdq_rule_of(decision);

  // Queries: clips of an entry (some scenes, frames a few bits off, at another rate),
  // clips spliced from two entries, and unrelated videos.
  std::vector<VpdqVideo> queries;
  for (int q = 0; q < 24; ++q) {
    VpdqVideo clip;
    const auto& a = bank[1 + static_cast<std::int64_t>(rng() % videos)];
    const auto& b = bank[1 + static_cast<std::int64_t>(rng() % videos)];
    const std::size_t from = rng() % 200, n = 20 + rng() % 150;
    for (std::size_t i = from; i < std::min(a.frames.size(), from + n); i += 3) {
      VpdqFrame f = a.frames[i];
      f.hash = flip(f.hash, static_cast<int>(rng() % 24), rng);
      f.timestamp = clip.frames.size() * 0.3;
      clip.frames.push_back(f);
    }
    if (q % 3 == 1)  // a fifth from another video: still over 80 % when that one matches
      for (std::size_t i = 0; i < clip.frames.size() / 4; ++i) {
        VpdqFrame f = b.frames[i * 2];
        f.timestamp = clip.frames.size() * 0.3;
        clip.frames.push_back(f);
      }
    if (q % 3 == 2) clip = random_video(rng, 3, 20);
    clip.duration_s = clip.frames.size() * 0.3;
    queries.push_back(clip);
  }

  const auto check_all = [&] {
    for (const auto& q : queries) {
      const auto found = index->search(SignalQuery{{encode_vpdq_record(q)}}, decision, 0.0, 1000);
      std::map<std::int64_t, const SignalMatch*> by_id;
      for (const auto& m : found) by_id[m.id] = &m;
      for (const auto& [id, v] : bank) {
        const VpdqComparison c = vpdq_compare(q, v, rule);
        INFO("entry " << id << ": " << c.query_percent << " % / " << c.entry_percent << " %");
        REQUIRE(by_id.count(id) == (c.match ? 1u : 0u));
        if (!c.match) continue;
        const auto& ev = by_id.at(id)->evidence;
        CHECK(ev["query_frames"] == c.query_frames);
        CHECK(ev["entry_frames"] == c.entry_frames);
        CHECK(ev["query_matched"] == c.query_matched);
        CHECK(ev["entry_matched"] == c.entry_matched);
        CHECK(ev["distance"] == c.best_distance);
        CHECK(by_id.at(id)->margin == Approx(vpdq_margin(c.query_percent, c.entry_percent, rule)));
      }
    }
  };
  check_all();
  // Some clips of entries must be among the queries, or this proves little.
  int matched = 0;
  for (const auto& q : queries)
    matched += !index->search(SignalQuery{{encode_vpdq_record(q)}}, decision, 0.0, 10).empty();
  CHECK(matched >= 8);

  // After removals, and re-adding one: still the same answers.
  std::vector<std::int64_t> gone;
  for (std::int64_t id = 1; id <= videos; id += 3) gone.push_back(id);
  index->remove(gone);
  for (const auto id : gone) bank.erase(id);
  bank[1] = random_video(rng, 8, 50);
  index->add(1, encode_vpdq_record(bank[1]));
  index->prepare();
  check_all();
  CHECK(index->size() == bank.size());
}

TEST_CASE("the vpdq decision is checked, and its thresholds change the answer", "[vpdq]") {
  const VpdqSignal sig;
  CHECK(sig.validate(sig.decision_defaults()).empty());
  auto d = sig.decision_defaults();
  d["query_percent"] = "101";
  CHECK_FALSE(sig.validate(d).empty());
  d = sig.decision_defaults();
  d["distance"] = "x";
  CHECK_FALSE(sig.validate(d).empty());
  d = sig.decision_defaults();
  d["frames"] = "1";
  CHECK(sig.validate(d).find("unknown parameter") != std::string::npos);

  std::mt19937_64 rng(11);
  VpdqVideo entry = random_video(rng, 10, 10);
  for (auto& f : entry.frames) f.quality = 100;
  auto index = sig.make_index();
  index->add(5, encode_vpdq_record(entry));
  index->prepare();
  // A clip of 2 of its 10 scenes: the whole clip matches (100 % of the query), 20 % of
  // the entry's frames.
  VpdqVideo clip;
  clip.frames.assign(entry.frames.begin() + 30, entry.frames.begin() + 50);
  const SignalQuery q{{encode_vpdq_record(clip)}};
  auto found = index->search(q, sig.decision_defaults(), 0.0, 10);
  REQUIRE(found.size() == 1);
  CHECK(found[0].evidence["query_percent"] == 100.0);
  // 20 % of its unique frames (a frame hashed as another of its scene counts once).
  const VpdqComparison c = vpdq_compare(clip, entry, VpdqRule{});
  CHECK(c.entry_percent == Approx(20).margin(1.5));
  CHECK(found[0].evidence["entry_percent"].get<double>() ==
        Approx(std::round(c.entry_percent * 10) / 10));
  CHECK(found[0].evidence["entry_times"] == nlohmann::json::parse("[[3.0, 5.0]]"));
  d = sig.decision_defaults();
  d["entry_percent"] = "50";  // the entry must be half covered: a clip is not enough
  CHECK(index->search(q, d, 0.0, 10).empty());
  const auto near = index->search(q, d, -1.0, 10);  // a near miss, with a negative margin
  REQUIRE(near.size() == 1);
  CHECK(near[0].margin < 0);
  // Frames under the quality threshold take no part; a query with none left is not decided.
  d = sig.decision_defaults();
  d["min_quality"] = "100";
  VpdqVideo dull = clip;
  for (auto& f : dull.frames) f.quality = 99;
  CHECK_FALSE(sig.may_decide(SignalQuery{{encode_vpdq_record(dull)}}, d));
  CHECK(sig.may_decide(q, sig.decision_defaults()));
}

TEST_CASE("pruning keeps a fade-in's first full-quality frame", "[vpdq]") {
  std::mt19937_64 rng(9);
  const Hash256 a = random_hash(rng);
  // A dark first frame (quality 10) and the same picture lit (2 bits away, quality 100):
  // the lit one stands for the scene, or the quality filter would drop it whole.
  const std::vector<VpdqFrame> f = {
      {0, 10, a, 0}, {1, 100, flip(a, 2, rng), 0.1}, {2, 100, flip(a, 3, rng), 0.2}};
  const auto kept = prune_vpdq(f, kVpdqPruneDistance);
  REQUIRE(kept.size() == 2);
  CHECK(kept[1].frame_number == 1);
}

TEST_CASE("video entries live in the bank: found, removed, checked, reopened", "[vpdq][stores]") {
  hwtest::TempDir tmp;
  const std::string path = hwtest::bank_location(tmp);
  BankConfig cfg;
  cfg.signals = {"pdq", "vpdq"};
  std::mt19937_64 rng(21);
  const VpdqVideo a = random_video(rng, 6, 30), b = random_video(rng, 6, 30);
  std::int64_t id_a = 0;
  {
    auto bank = Bank::open(path, OpenMode::Create, cfg);
    // An imported video: its record alone, nothing else to find it by.
    NewEntry e;
    e.records["vpdq"] = encode_vpdq_record(a);
    e.source = "a.txt";
    e.origin = Origin::Imported;
    NewEntry f = e;
    f.records["vpdq"] = encode_vpdq_record(b);
    f.source = "b.mp4";
    f.sha256 = std::string(64, 'b');
    f.origin = Origin::Indexed;
    const std::vector<NewEntry> batch = {e, f};
    const auto r = bank->add(batch);
    REQUIRE(r.added == 2);
    id_a = r.ids[0];
    // The same record and source twice in one batch: one entry (no store look-up names a
    // record, so across batches it is `import` that drops a video held already).
    const std::vector<NewEntry> twice = {e, e};
    const auto r2 = bank->add(twice);
    CHECK(r2.added == 1);
    CHECK(r2.ids[0] == r2.ids[1]);
    // A record of a signal the bank does not keep is nothing to be found by.
    NewEntry stray;
    stray.records["nosuch"] = "x";
    stray.source = "stray";
    CHECK_THROWS_WITH(bank->add(std::span(&stray, 1)),
                      Catch::Contains("no PDQ hash, SHA-256, MD5 or signal record"));
    const auto check = bank->check();
    INFO((check.problems.empty() ? "" : check.problems.front()));
    CHECK(check.ok);
  }
  auto bank = Bank::open(path, OpenMode::ReadWrite);
  VpdqVideo clip;
  clip.frames.assign(a.frames.begin() + 40, a.frames.begin() + 100);
  const SignalQuery q{{encode_vpdq_record(clip)}};
  auto found = bank->search_signal("vpdq", q, 0.0, 10);
  REQUIRE(!found.empty());
  CHECK(found[0].id == id_a);
  const auto e = bank->get(id_a);
  REQUIRE(e);
  CHECK_FALSE(e->pdq);
  CHECK_FALSE(e->sha256);
  REQUIRE(bank->record("vpdq", *e));
  CHECK(bank->stats().registered.size() >= 1);
  REQUIRE(bank->remove_ids(std::span(&id_a, 1)) == 1);
  found = bank->search_signal("vpdq", q, 0.0, 10);
  CHECK(
      std::none_of(found.begin(), found.end(), [&](const SignalMatch& m) { return m.id == id_a; }));
  CHECK(bank->check().ok);
}
