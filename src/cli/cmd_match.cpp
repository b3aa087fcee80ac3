// hashwall query (one file, detailed) and hashwall scan (many files, a report).
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "cli/draw.hpp"
#include "cli/report.hpp"
#include "cli/signals.hpp"
#include "core/error.hpp"
#include "core/text.hpp"
#include "match/video_check.hpp"

namespace hashwall::cli {

namespace {

struct MatchArgs {
  std::vector<std::string> paths;
  std::string bank;
  std::optional<int> threshold;
  std::optional<int> min_quality;
  int top = 10;
  bool no_dihedral = false;
  bool no_exif = false;
  std::uint64_t max_pixels = 200'000'000;
  std::string signals;  // empty: all the bank has
  std::string model;
  std::optional<int> min_inliers;
  std::optional<double> embed_threshold;
  std::vector<std::string> lists;  // only these lists' entries take part
  // query
  bool json_out = false;
  bool near_misses = false;
  std::string draw;
  double fps = 1;    // videos: frames checked a second
  double scene = 0;  // videos: also frames after a scene change (0: off)
  std::optional<double> vpdq_query_percent, vpdq_entry_percent;  // video entries' rule
  // scan
  bool jsonl = false;
  bool csv = false;
  bool all_files = false;
  bool quiet = false;
  bool only_matches = false;
  std::string output;
  int jobs = 0;
};

MatchOptions match_options(const MatchArgs& a) {
  MatchOptions o;
  o.threshold = a.threshold;
  o.min_quality = a.min_quality;
  o.top = a.top;
  o.dihedral = !a.no_dihedral;
  if (!a.signals.empty()) o.signals = parse_signals(a.signals);
  o.local_min_inliers = a.min_inliers;
  o.embed_threshold = a.embed_threshold;
  o.near_misses = a.near_misses;
  o.lists = a.lists;
  // vPDQ's two shares, over the bank's recorded ones (a bank without videos refuses them).
  if (a.vpdq_query_percent || a.vpdq_entry_percent)
    o.decisions["vpdq"] = vpdq_shares(a.vpdq_query_percent, a.vpdq_entry_percent);
  return o;
}

void add_match_options(CLI::App* cmd, MatchArgs& a) {
  cmd->add_option("-b,--bank", a.bank, kBankHelp)->required()->envname("HASHWALL_BANK");
  cmd->add_option("-t,--threshold", a.threshold,
                  "PDQ match distance, 0-256 (default: the bank's, normally " +
                      std::to_string(kPdqMatchThreshold) + " as Meta recommends)")
      ->check(CLI::Range(0, 256));
  cmd->add_option("--min-quality", a.min_quality,
                  "Minimum PDQ quality on both sides (default: the bank's, normally 50)")
      ->check(CLI::Range(0, 100));
  cmd->add_option("--list", a.lists,
                  "Look only in this list (repeatable; default: every list; see 'hashwall list')");
  cmd->add_option("-k,--top", a.top, "Report at most K matching entries per file")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--no-dihedral", a.no_dihedral,
                "Do not try the rotated/flipped variants of the query");
  cmd->add_flag("--no-exif-orientation", a.no_exif, "Ignore EXIF orientation tags");
  cmd->add_option("--max-pixels", a.max_pixels, "Refuse images with more pixels than this")
      ->capture_default_str();
  cmd->add_option(
      "--signals", a.signals,
      "Only these of the bank's signals decide, e.g. pdq or pdq,embed (default: all it has)");
  cmd->add_option("--model", a.model,
                  "Embedding model (default: the shipped one; must be the bank's)");
  cmd->add_option("--min-inliers", a.min_inliers,
                  "Local features: geometric inliers for a match (default: the bank's)")
      ->check(CLI::Range(3, 100000));
  cmd->add_option("--embed-threshold", a.embed_threshold,
                  "Embedding: cosine similarity for a match (default: the bank's, calibrated)")
      ->check(CLI::Range(-1.0, 1.0));
  cmd->add_option("--fps", a.fps,
                  "Videos and animations: frames checked a second (0: every frame); each is "
                  "checked as a photo, and each matching entry reported once with its times")
      ->capture_default_str()
      ->check([](const std::string& v) -> std::string {
        const double f = std::atof(v.c_str());
        return f == 0 || (f >= 0.001 && f <= 240) ? "" : "--fps is 0 (every frame) or 0.001 to 240";
      });
  cmd->add_option("--vpdq-query-percent", a.vpdq_query_percent,
                  "Video entries: the share of this video's distinct frames that must match one of "
                  "the entry's (vPDQ; default: the bank's, 80)")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--vpdq-entry-percent", a.vpdq_entry_percent,
                  "Video entries: the share of the entry's distinct frames this video must match "
                  "(default: the bank's, 0: a clip of a longer video matches; 50: at least half "
                  "of it)")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--scene", a.scene,
                  "Videos: also check a frame whose picture changed by more than T since the last "
                  "frame checked (0..1, the mean grey difference; 0.1 catches a cut between "
                  "unrelated pictures), so that a scene shorter than 1/--fps is not skipped "
                  "(default: off)")
      ->check(CLI::Range(0.0, 1.0));
}

SignalSetup setup_for(const Bank& bank, const MatchArgs& a, LoadOptions& opt) {
  SignalSetup s =
      signal_setup(bank, a.signals.empty() ? std::vector<std::string>{} : parse_signals(a.signals),
                   a.model, true);
  s.apply(opt);
  return s;
}

// An index cache that disagreed with the records was not used (the answers come from an
// index rebuilt from the records); the operator hears of it, since it means the files
// were copied about or altered.
void warn_refused_cache(const Bank& bank) {
  if (const auto why = bank.index_cache_refused(); !why.empty())
    std::fprintf(stderr, "hashwall: warning: %s\n", escape_control(why).c_str());
}

// A file as query and scan check it: a video (or an animation) frame by frame, else an
// image.
FileReport check_any(const std::filesystem::path& file, const LoadOptions& opt,
                     const Matcher& matcher, const FingerprintOptions& fp, const MatchArgs& a) {
  if (!is_video_file(file)) return check_file(file, opt, matcher, fp);
  VideoCheckOptions vo;
  vo.seconds_per_frame = a.fps > 0 ? 1.0 / a.fps : 0;
  vo.scene_change = a.scene;
  vo.stop = &stop_requested();
  vo.want_md5 = opt.want_md5;
  return check_video(file, matcher, fp, vo);
}

int run_query(const MatchArgs& a) {
  const auto bank = Bank::open(a.bank, OpenMode::ReadOnly);
  warn_refused_cache(*bank);
  for (const auto& l : a.lists) list_id_of(*bank, l);  // a list that is not there is an error
  const Matcher matcher(*bank, match_options(a));
  LoadOptions opt = load_options(false, a.no_exif, a.max_pixels);
  opt.want_md5 = bank->has_md5_entries();
  const SignalSetup sig = setup_for(*bank, a, opt);
  const FileReport r = check_any(a.paths.at(0), opt, matcher, sig.fingerprint, a);
  if (!a.draw.empty() && r.video) {
    std::fprintf(stderr, "hashwall: --draw: not for videos yet\n");
  } else if (!a.draw.empty() && r.known_file) {
    std::fprintf(stderr, "hashwall: --draw: the file is known by its bytes; nothing to draw\n");
  } else if (!a.draw.empty()) {
    if (r.result.hits.empty())
      std::fprintf(stderr, "hashwall: --draw: no match to draw\n");
    else
      std::fprintf(stderr, "%s\n",
                   draw_match(a.paths.at(0), r.result.hits.front(), a.draw, opt).c_str());
  }
  if (a.json_out) {
    std::cout << dump_json(report_json(r), 2) << '\n';
  } else if (!r.error.empty()) {
    std::fprintf(stderr, "hashwall: %s\n", r.error.c_str());
  } else {
    print_human(std::cout, r, true);
  }
  Tally t;
  t.add(r);
  return t.exit_code();
}

int run_scan(const MatchArgs& a) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  if (a.jsonl && a.csv) throw Error(ErrorKind::Usage, "", "--jsonl and --csv exclude each other");
  const auto bank = Bank::open(a.bank, OpenMode::ReadOnly);
  warn_refused_cache(*bank);
  for (const auto& l : a.lists) list_id_of(*bank, l);  // a list that is not there is an error
  const Matcher matcher(*bank, match_options(a));
  std::vector<std::string> missing;
  const auto files = collect_files(a.paths, a.all_files, missing, true);
  LoadOptions opt = load_options(false, a.no_exif, a.max_pixels);
  // Looked at once: an MD5 list imported while the scan runs is used from the next scan.
  opt.want_md5 = bank->has_md5_entries();
  const SignalSetup sig = setup_for(*bank, a, opt);

  std::ofstream file_out;
  if (!a.output.empty()) {
    file_out.open(a.output, std::ios::trunc);
    if (!file_out) throw Error(ErrorKind::Io, a.output, "cannot write the report");
  }
  std::ostream& out = a.output.empty() ? std::cout : file_out;
  if (a.csv) print_csv_header(out);

  Tally tally;
  for (const auto& m : missing) {
    FileReport r;
    r.file = m.substr(0, m.find(':'));
    r.error = m;
    tally.add(r);
    if (a.jsonl)
      out << dump_json(report_json(r)) << '\n';
    else if (a.csv)
      print_csv(out, r);
    else
      print_human(out, r, false);
  }
  std::vector<FileReport> reports(files.size());
  // Progress only when the report does not go to the same terminal.
  Progress progress("scanning", files.size(),
                    !a.quiet && (!a.output.empty() || !::isatty(STDOUT_FILENO)));
  std::size_t done = 0;
  ordered_parallel(
      files.size(), a.jobs > 0 ? a.jobs : default_jobs(),
      [&](std::size_t i) { reports[i] = check_any(files[i], opt, matcher, sig.fingerprint, a); },
      [&](std::size_t i) {
        FileReport r = std::move(reports[i]);
        tally.add(r);
        ++done;
        const bool show = !a.only_matches || r.result.verdict == Verdict::Match || !r.error.empty();
        if (show) {
          if (a.jsonl)
            out << dump_json(report_json(r)) << '\n';
          else if (a.csv)
            print_csv(out, r);
          else
            print_human(out, r, false);
        }
        if (a.output.empty()) out.flush();
        progress.update(done, std::to_string(tally.matches) + " matched");
      },
      &stop_requested());
  progress.finish();
  out.flush();
  if (!out)
    throw Error(ErrorKind::Io, a.output.empty() ? "stdout" : a.output, "writing the report failed");
  const double secs = std::chrono::duration<double>(clock::now() - t0).count();
  if (!a.quiet)
    std::fprintf(
        stderr,
        "%s %zu files in %s: %zu matched, %zu no match, %zu undecided (low quality), %zu errors\n",
        stop_requested() ? "interrupted after" : "scanned", tally.files,
        format_duration(secs).c_str(), tally.matches, tally.no_match, tally.low_quality,
        tally.errors);
  if (stop_requested()) return kExitInterrupted;
  return tally.exit_code();
}

}  // namespace

void register_query(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<MatchArgs>();
  auto* cmd = app.add_subcommand("query", "Check one image or video against a bank, with details");
  cmd->add_option("file", a->paths, "Image or video file")->required()->expected(1);
  add_match_options(cmd, *a);
  cmd->add_flag("--json", a->json_out, "Print one JSON document");
  cmd->add_flag(
      "--near-misses", a->near_misses,
      "Also list entries just past the thresholds (PDQ distance up to twice the threshold, "
      "similarity down to 2t-1, half the inliers), marked as near misses (JSON: near_miss, "
      "negative score); they never make a match or change the exit code");
  cmd->add_option(
      "--draw", a->draw,
      "Write a picture of the best match: the known photo's region and keypoint inliers in the "
      "query, next to the entry's source file when it is readable (PNG or JPEG by extension)");
  cmd->footer(
      std::string(
          "Check one image against the bank: every matching entry with its id, label, source,\n"
          "PDQ distance, which rotation/flip of the query matched, and whether the file is a\n"
          "byte-identical copy. A query whose PDQ quality is below the minimum is reported as\n"
          "too low quality to decide, never as a silent 'no match'.\n\n"
          "A video or an animated GIF/PNG (MP4, MOV, WebM, MKV, AVI, ...: docs/VIDEO.md) is\n"
          "checked frame by frame (--fps a second) as photos are; each matching entry is\n"
          "reported once, with the times where it appears and its best frame's evidence.") +
      "\n\n" +
      "Examples:\n"
      "  hashwall query upload.jpg --bank cases.db\n"
      "  hashwall query clip.mp4 --bank cases.db --fps 2 --json\n"
      "  hashwall query upload.jpg --bank cases.db --threshold 40 --json\n\n"
      "Exit codes: 0 no match, 1 match, 2 error (unreadable image or bank), 3 too low quality\n"
      "to decide.");
  cmd->callback([a, &exit_code] { exit_code = run_query(*a); });
}

void register_scan(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<MatchArgs>();
  auto* cmd =
      app.add_subcommand("scan", "Check files or folders against a bank and write a report");
  cmd->add_option("paths", a->paths, "Image or video files, or directories (walked recursively)")
      ->required();
  add_match_options(cmd, *a);
  cmd->add_flag(
      "--jsonl", a->jsonl,
      "One JSON object per line: {file, status, match, matches:[{id,label,source,distance,"
      "variant,exact,...}], pdq, quality, error}");
  cmd->add_flag("--csv", a->csv, "CSV, one row per (file, matching entry)");
  cmd->add_option("-o,--output", a->output, "Write the report to this file instead of stdout");
  cmd->add_flag("--only-matches", a->only_matches, "Report only matches and errors");
  cmd->add_flag("--all-files", a->all_files,
                "In directories, try every file, not only image extensions");
  cmd->add_option("-j,--jobs", a->jobs, "Threads (default: all cores)");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress and no summary on stderr");
  cmd->footer(
      std::string(
          "Check every image under the given paths against the bank, in parallel, writing one\n"
          "record per file in input order. Unreadable files are reported and the scan goes on.\n"
          "Videos and animated GIF/PNG are checked frame by frame (--fps), as `query` says.") +
      "\n\n" +
      "Examples:\n"
      "  hashwall scan uploads/ --bank cases.db\n"
      "  hashwall scan uploads/ --bank cases.db --jsonl -o report.jsonl\n"
      "  hashwall scan a.jpg b.jpg --bank cases.db --csv --only-matches\n\n"
      "Exit codes (as clamscan): 0 no match, 1 at least one match, 2 some file could not be\n"
      "checked (and none matched), 3 some file too low quality to decide (no match, no error),\n"
      "130 interrupted.");
  cmd->callback([a, &exit_code] { exit_code = run_scan(*a); });
}

}  // namespace hashwall::cli
