// `hashwall bench robustness`, the run (robustness.hpp): the corpus shuffled and split,
// copies inside it left out, the known photos indexed into a temporary bank, every photo
// edited and queried, each signal (robustness_signals.hpp) scored per edit, per family and
// overall. The output is robustness_report.cpp's.
#include "bench/robustness.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <mutex>
#include <numeric>
#include <opencv2/img_hash.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "bank/bank.hpp"
#include "bench/edits.hpp"
#include "bench/robustness_signals.hpp"
#include "core/error.hpp"
#include "core/parallel.hpp"
#include "embed/embed_signal.hpp"
#include "embed/embedder.hpp"
#include "image/load.hpp"
#include "local/local_signal.hpp"
#include "match/fingerprint.hpp"
#include "match/matcher.hpp"

namespace hashwall::bench {

using namespace robustness_detail;

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

cv::Mat cap_side(const cv::Mat& img, int max_side) {
  if (max_side <= 0 || std::max(img.cols, img.rows) <= max_side) return img;
  const double s = static_cast<double>(max_side) / std::max(img.cols, img.rows);
  cv::Mat out;
  cv::resize(img, out,
             cv::Size(std::max(1, static_cast<int>(img.cols * s)),
                      std::max(1, static_cast<int>(img.rows * s))),
             0, 0, cv::INTER_AREA);
  return out;
}

// Full-resolution colour pixels, orientation applied: the photo a user would edit.
cv::Mat load_colour(const fs::path& file, int max_side) {
  LoadOptions opt;
  opt.mode = DecodeMode::Exact;
  opt.want_color = true;
  cv::Mat px = load_image(file, opt).pixels;
  if (px.channels() == 1) cv::cvtColor(px, px, cv::COLOR_GRAY2BGR);
  if (px.channels() == 4) cv::cvtColor(px, px, cv::COLOR_BGRA2BGR);
  if (px.depth() != CV_8U) px.convertTo(px, CV_8U, px.depth() == CV_16U ? 1.0 / 257 : 1.0);
  return cap_side(px, max_side);
}

// Runs fn(i) for i in [0, n) on `jobs` threads; the calling thread reports progress.
void parallel_for(const char* phase, std::size_t n, int jobs, const RobustnessOptions& opt,
                  const std::function<void(std::size_t)>& fn) {
  std::size_t done = 0;
  ordered_parallel(
      n, jobs, fn,
      [&](std::size_t) {
        if (opt.progress) opt.progress(phase, ++done, n);
      },
      opt.stop);
  if (opt.progress) opt.progress(phase, done, n);
}

struct QueryRecord {
  int truth = -1;  // reference index, -1 for a distractor
  std::size_t edit = 0;
  std::vector<Outcome> outcomes;  // per signal
};

SignalScore score_rows(const std::vector<const QueryRecord*>& rows, std::size_t s,
                       double precision) {
  SignalScore sc;
  GroundTruth truth;
  std::vector<Prediction> preds;
  truth.reserve(rows.size());
  for (std::size_t q = 0; q < rows.size(); ++q) {
    const QueryRecord& r = *rows[q];
    const Outcome& o = r.outcomes[s];
    truth.push_back(r.truth);
    if (r.truth >= 0) {
      ++sc.positives;
      sc.caught += o.right;
    } else {
      ++sc.negatives;
      sc.false_matches += o.declared;
    }
    for (const auto& [ref, score] : o.top)
      preds.push_back({static_cast<std::int64_t>(q), ref, score});
  }
  sc.recall = sc.positives ? static_cast<double>(sc.caught) / static_cast<double>(sc.positives) : 0;
  sc.at_precision = recall_at_precision(preds, truth, precision);
  sc.micro_ap = micro_ap(preds, truth);
  return sc;
}

// Photos of the corpus that the matcher finds in an earlier photo (in the shuffled order)
// are left out: public sets share photos (Set5's "head" is Set14's "face", its
// "butterfly" a crop of "monarch"), and a query's match to the copy would count as false.
// Each photo is fingerprinted as an entry into a scratch bank and as a query against the
// photos before it. Only as many photos as the run needs (`need` kept ones) are looked
// at, a batch at a time, so a small run over a large folder stays small.
std::vector<fs::path> drop_corpus_copies(const std::vector<fs::path>& files, std::size_t need,
                                         const BankConfig& cfg, const FingerprintOptions& entry_fp,
                                         const FingerprintOptions& query_fp,
                                         const RobustnessOptions& opt,
                                         std::vector<std::pair<std::string, std::string>>& copies) {
  LoadOptions fast;
  FingerprintOptions qfp = query_fp;
  prepare_load(fast, qfp);
  const std::size_t n = files.size();
  const fs::path path = opt.work_dir / "bench-corpus.db";
  auto bank = Bank::open(path, OpenMode::Create, cfg);
  const Matcher matcher(*bank, MatchOptions{});
  std::map<std::int64_t, std::size_t> file_of_id;  // the first file with that entry
  std::vector<bool> kept;
  std::size_t nkept = 0;
  for (std::size_t done = 0; done < n && nkept < need;) {
    // Enough for what is still missing, plus a margin for copies among them.
    const std::size_t end = std::min(n, done + (need - nkept) + (need - nkept) / 10 + 8);
    std::vector<std::optional<NewEntry>> entries(end - done);
    std::vector<std::optional<Fingerprint>> queries(end - done);
    parallel_for("looking for copies inside the corpus", end - done, opt.jobs, opt,
                 [&](std::size_t k) {
                   try {
                     const LoadedImage img = load_image(files[done + k], fast);
                     entries[k] = entry_from(fingerprint(img, fast.mode, entry_fp));
                     queries[k] = fingerprint(img, fast.mode, qfp);
                   } catch (const Error&) {
                     // Unreadable: kept here, reported by the run that reads it.
                   }
                 });
    std::vector<NewEntry> add;
    std::vector<std::size_t> which;
    for (std::size_t k = 0; k < entries.size(); ++k)
      if (entries[k]) {
        add.push_back(std::move(*entries[k]));
        which.push_back(done + k);
      }
    const AddResult added = bank->add(add);
    for (std::size_t k = 0; k < which.size(); ++k) file_of_id.emplace(added.ids[k], which[k]);
    // For each new photo, the earlier photos it matches.
    std::vector<std::vector<std::size_t>> earlier(end - done);
    parallel_for("matching the corpus against itself", end - done, opt.jobs, opt,
                 [&](std::size_t k) {
                   if (!queries[k]) return;
                   for (const MatchHit& h : matcher.match(*queries[k]).hits) {
                     const auto it = file_of_id.find(h.entry.id);
                     if (it != file_of_id.end() && it->second < done + k)
                       earlier[k].push_back(it->second);
                   }
                 });
    for (std::size_t k = 0; k < earlier.size(); ++k) {
      const std::size_t i = done + k;
      kept.push_back(true);
      for (std::size_t j : earlier[k])
        if (kept[j]) {
          kept[i] = false;
          copies.emplace_back(files[i].string(), files[j].string());
          break;
        }
      nkept += kept[i];
    }
    done = end;
  }
  std::vector<fs::path> out;
  for (std::size_t i = 0; i < kept.size(); ++i)
    if (kept[i]) out.push_back(files[i]);
  bank.reset();
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm", ".pdq-index", ".local-index"})
    fs::remove(fs::path(path.string() + suffix), ec);
  return out;
}

}  // namespace

RobustnessReport run_robustness(const RobustnessOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<EditSpec> edits;
  if (opt.edits.empty()) {
    edits = edit_registry();
  } else {
    for (const auto& n : opt.edits) {
      const EditSpec* e = find_edit(n);
      if (!e) throw Error(ErrorKind::Usage, "", "unknown edit '" + n + "'");
      edits.push_back(*e);
    }
  }
  if (opt.known < 1) throw Error(ErrorKind::Usage, "", "--known must be at least 1");
  if (opt.files.size() < 2) throw Error(ErrorKind::Usage, "", "the corpus needs at least 2 photos");

  RobustnessReport rep;
  rep.seed = opt.seed;
  rep.max_side = opt.max_side;
  rep.precision_target = opt.precision_target;

  BankConfig bank_cfg;
  bank_cfg.signals = opt.signals;
  bank_cfg.local_min_inliers = opt.local_min_inliers;
  const bool has_local = bank_cfg.has("local"), has_embed = bank_cfg.has("embed");
  if (has_embed) {
    if (!opt.embedder) throw Error(ErrorKind::Usage, "", "the embed signal needs a model");
    bank_cfg.embed_model = opt.embedder->model_id();
    bank_cfg.embed_threshold = opt.embedder->config().threshold;
  }
  LoadOptions fast;  // the defaults: what index/query use
  FingerprintOptions entry_fp, query_fp;
  entry_fp.for_query = false;
  // The command's embedding signal: the bank's, with the model to compute with (not owned).
  std::shared_ptr<const EmbedSignal> embed;
  const LocalSignal local;
  if (has_local) entry_fp.registered.push_back(&local);
  if (has_embed) {
    embed = std::make_shared<EmbedSignal>(
        std::shared_ptr<const Embedder>(opt.embedder, [](const Embedder*) {}));
    entry_fp.registered.push_back(embed.get());
  }
  query_fp.registered = entry_fp.registered;
  prepare_load(fast, query_fp);

  // The split: a seeded shuffle, known photos first, after leaving out photos that are
  // copies of an earlier one (otherwise a right match would count as a false one).
  std::vector<fs::path> files = opt.files;
  std::sort(files.begin(), files.end());
  std::mt19937_64 rng(opt.seed);
  std::shuffle(files.begin(), files.end(), rng);
  // As many distinct photos as the run uses: the known ones and the distractors asked for.
  const std::size_t need = opt.distractors >= 0 ? static_cast<std::size_t>(opt.known) +
                                                      static_cast<std::size_t>(opt.distractors)
                                                : files.size();
  files = drop_corpus_copies(files, need, bank_cfg, entry_fp, query_fp, opt, rep.corpus_copies);
  if (files.size() < 2)
    throw Error(ErrorKind::Usage, "", "the corpus needs at least 2 distinct photos");
  const std::size_t nknown =
      std::min<std::size_t>(static_cast<std::size_t>(opt.known), files.size() - 1);
  std::size_t ndis = files.size() - nknown;
  if (opt.distractors >= 0) ndis = std::min(ndis, static_cast<std::size_t>(opt.distractors));
  files.resize(nknown + ndis);

  // The known photos go into a real bank, as `hashwall index` puts them.
  const fs::path bank_path = opt.work_dir / "bench-known.db";
  std::vector<std::optional<NewEntry>> entries(nknown);
  std::vector<cv::Mat> phashes(nknown);
  std::vector<std::string> errors(files.size());
  parallel_for("indexing known photos", nknown, opt.jobs, opt, [&](std::size_t i) {
    try {
      const LoadedImage img = load_image(files[i], fast);
      const Fingerprint f = fingerprint(img, fast.mode, entry_fp);
      NewEntry e = entry_from(f);
      e.label = "bench";
      e.source = files[i].string();
      entries[i] = std::move(e);
      cv::img_hash::pHash(img.pixels, phashes[i]);
    } catch (const Error& e) {
      errors[i] = e.what();
    }
  });
  auto bank = Bank::open(bank_path, OpenMode::Create, bank_cfg);
  rep.bank_signals = bank_cfg.signals;
  rep.embed_model = bank_cfg.embed_model;
  std::vector<NewEntry> to_add;
  std::vector<int> ref_of_file(files.size(), -1);
  std::vector<Reference> refs;
  for (std::size_t i = 0; i < nknown; ++i) {
    if (!entries[i]) continue;
    ref_of_file[i] = static_cast<int>(refs.size());
    refs.push_back({*entries[i]->pdq, phashes[i], 0});
    if (*entries[i]->quality < bank->config().min_quality) ++rep.known_low_quality;
    to_add.push_back(*entries[i]);
  }
  const AddResult added = bank->add(to_add);
  std::vector<int> ref_of_id;
  for (std::size_t r = 0; r < refs.size(); ++r) {
    refs[r].bank_id = added.ids[r];
    const auto id = static_cast<std::size_t>(added.ids[r]);
    if (ref_of_id.size() <= id) ref_of_id.resize(id + 1, -1);
    // Two known files with the same bytes share one entry: the first one keeps it.
    if (ref_of_id[id] < 0) ref_of_id[id] = static_cast<int>(r);
  }

  MatchOptions match_opt;
  match_opt.near_misses = true;  // ranked metrics reach past the thresholds
  match_opt.top = static_cast<int>(kTopPerQuery);
  const Matcher matcher(*bank, match_opt);
  std::vector<std::unique_ptr<BenchSignal>> signals;
  signals.push_back(std::make_unique<PdqSignal>(refs, bank->config().pdq_threshold, false));
  signals.push_back(std::make_unique<PdqSignal>(refs, bank->config().pdq_threshold, true));
  signals.push_back(std::make_unique<PhashSignal>(refs, opt.phash_threshold));
  if (has_embed)
    signals.push_back(std::make_unique<EmbedAlone>(*bank, ref_of_id, bank_cfg.embed_threshold));
  if (has_local)
    signals.push_back(std::make_unique<LocalAlone>(*bank, ref_of_id, bank_cfg.local_min_inliers));
  signals.push_back(std::make_unique<MatcherSignal>(matcher, *bank, ref_of_id));
  for (const auto& s : signals) rep.signals.push_back(s->info());

  // Other photos to paste into collages and over photos: distractors only, so a known
  // photo never appears inside another query.
  std::vector<cv::Mat> pool;
  for (std::size_t i = nknown; i < files.size() && pool.size() < 8; ++i) {
    try {
      pool.push_back(load_colour(files[i], 1024));
    } catch (const Error&) {
    }
  }

  std::vector<std::vector<QueryRecord>> records(files.size());
  parallel_for("editing and querying photos", files.size(), opt.jobs, opt, [&](std::size_t i) {
    if (!errors[i].empty()) return;
    if (i < nknown && ref_of_file[i] < 0) return;
    cv::Mat src;
    try {
      src = load_colour(files[i], opt.max_side);
    } catch (const Error& e) {
      errors[i] = e.what();
      return;
    }
    const int truth = ref_of_file[i];
    std::vector<cv::Mat> others;
    for (std::size_t k = 0; k < pool.size() && others.size() < 3; ++k) {
      const cv::Mat& o = pool[(i + k) % pool.size()];
      others.push_back(o);
    }
    auto& out = records[i];
    for (std::size_t e = 0; e < edits.size(); ++e) {
      const std::uint64_t seed = opt.seed * 0x9E3779B97F4A7C15ull + i * 1000003ull + e;
      const cv::Mat edited = apply_edit(src, edits[e], seed, others);
      const auto bytes = encode_upload(edited, edits[e]);
      const LoadedImage img = decode_image(bytes, edits[e].name, fast);
      const Fingerprint fp = fingerprint(img, fast.mode, query_fp);
      const Query q{fp, img.pixels};
      QueryRecord rec;
      rec.truth = truth;
      rec.edit = e;
      for (const auto& s : signals) rec.outcomes.push_back(s->evaluate(q, truth));
      out.push_back(std::move(rec));
    }
  });

  for (std::size_t i = 0; i < files.size(); ++i) {
    if (!errors[i].empty())
      rep.skipped.push_back(errors[i]);
    else if (i < nknown)
      ++rep.known;
    else
      ++rep.distractors;
  }

  std::vector<const QueryRecord*> all;
  std::vector<std::vector<const QueryRecord*>> by_edit(edits.size());
  for (const auto& v : records)
    for (const auto& r : v) {
      all.push_back(&r);
      by_edit[r.edit].push_back(&r);
    }
  rep.queries = static_cast<std::int64_t>(all.size());
  rep.max_distractor_score.assign(signals.size(), -1e9);
  for (const QueryRecord* r : all) {
    if (r->truth >= 0) continue;
    for (std::size_t k = 0; k < signals.size(); ++k)
      if (!r->outcomes[k].top.empty())
        rep.max_distractor_score[k] = std::max(
            rep.max_distractor_score[k], static_cast<double>(r->outcomes[k].top.front().second));
  }
  auto make_row = [&](std::string name, std::string family,
                      const std::vector<const QueryRecord*>& rows) {
    ResultRow row{std::move(name), std::move(family), {}};
    for (std::size_t s = 0; s < signals.size(); ++s)
      row.signals.push_back(score_rows(rows, s, opt.precision_target));
    return row;
  };
  std::vector<std::string> families;
  for (const auto& e : edits)
    if (std::find(families.begin(), families.end(), e.family) == families.end())
      families.push_back(e.family);
  for (std::size_t e = 0; e < edits.size(); ++e)
    rep.edits.push_back(make_row(edits[e].name, edits[e].family, by_edit[e]));
  for (const auto& f : families) {
    std::vector<const QueryRecord*> rows;
    for (std::size_t e = 0; e < edits.size(); ++e)
      if (edits[e].family == f) rows.insert(rows.end(), by_edit[e].begin(), by_edit[e].end());
    rep.families.push_back(make_row(f, f, rows));
  }
  rep.overall = make_row("all", "", all);
  for (std::size_t s = 0; s < signals.size(); ++s) {
    GroundTruth truth;
    std::vector<Prediction> preds;
    for (std::size_t q = 0; q < all.size(); ++q) {
      truth.push_back(all[q]->truth);
      for (const auto& [ref, score] : all[q]->outcomes[s].top)
        preds.push_back({static_cast<std::int64_t>(q), ref, score});
    }
    rep.pr_curves.push_back(thin_curve(pr_curve(preds, truth), 300));
  }
  bank.reset();
  std::error_code ec;
  fs::remove(bank_path, ec);
  fs::remove(pdq_index_path(bank_path), ec);
  for (const char* suffix : {"-wal", "-shm"}) fs::remove(bank_path.string() + suffix, ec);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace hashwall::bench
