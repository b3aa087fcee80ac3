// hashwall bench robustness | speed: what hashwall catches, misses and costs, measured on
// the user's own photos (docs/BENCHMARKS.md shows a run and how to read it).
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <opencv2/imgproc.hpp>
#include <thread>

#include "bench/edits.hpp"
#include "bench/robustness.hpp"
#include "bench/speed.hpp"
#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "cli/signals.hpp"
#include "core/error.hpp"

namespace hashwall::cli {

namespace {

// A temporary folder for the benchmark's banks, removed when done.
class WorkDir {
 public:
  WorkDir() {
    std::string tmpl = (fs::temp_directory_path() / "hashwall-bench-XXXXXX").string();
    if (!::mkdtemp(tmpl.data()))
      throw Error(ErrorKind::Io, tmpl, "cannot create a temporary folder");
    path_ = tmpl;
  }
  ~WorkDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_text(const fs::path& file, const std::string& text) {
  std::ofstream out(file, std::ios::binary);
  out << text;
  if (!out.flush()) throw Error(ErrorKind::Io, file.string(), "cannot write");
}

fs::path prepare_out(const std::string& out) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (!fs::is_directory(out)) throw Error(ErrorKind::Io, out, "cannot create the output folder");
  return out;
}

std::string machine_line() {
  std::string model;
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  return std::to_string(std::thread::hardware_concurrency()) + " hardware threads" +
         (model.empty() ? std::string() : ", " + model);
}

std::vector<std::int64_t> parse_sizes(const std::string& text) {
  std::vector<std::int64_t> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t comma = std::min(text.find(',', pos), text.size());
    std::string item = text.substr(pos, comma - pos);
    pos = comma + 1;
    if (item.empty()) continue;
    std::int64_t mul = 1;
    const char last = static_cast<char>(std::tolower(static_cast<unsigned char>(item.back())));
    if (last == 'k') mul = 1'000;
    if (last == 'm') mul = 1'000'000;
    if (mul != 1) item.pop_back();
    try {
      std::size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v <= 0) throw std::invalid_argument(item);
      out.push_back(v * mul);
    } catch (const std::exception&) {
      throw Error(ErrorKind::Usage, "", "--sizes: '" + text + "' is not a list like 10k,100k,1M");
    }
  }
  return out;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t comma = std::min(text.find(',', pos), text.size());
    if (comma > pos) out.push_back(text.substr(pos, comma - pos));
    pos = comma + 1;
  }
  return out;
}

std::vector<fs::path> corpus_files(const std::vector<std::string>& dirs) {
  std::vector<std::string> missing;
  auto files = collect_files(dirs, false, missing);
  if (!missing.empty()) throw Error(ErrorKind::Io, "", missing.front());
  return files;
}

// ---- robustness -------------------------------------------------------------------------

struct RobustArgs {
  std::vector<std::string> corpus;
  int known = 200;
  int distractors = -1;
  std::string edits;
  std::uint64_t seed = 1;
  int max_side = 2048;
  int phash_threshold = 10;
  int jobs = 0;
  std::string out;
  bool json_out = false;
  bool list_edits = false;
  std::string examples;
  bool quiet = false;
  std::string signals = kDefaultSignals;
  std::string model;
  int min_inliers = kLocalMinInliers;
};

int run_robustness_cmd(const RobustArgs& a) {
  if (a.list_edits) {
    for (const auto& e : bench::edit_registry())
      std::cout << e.family << '\t' << e.name << "\tJPEG q" << e.jpeg_quality << '\n';
    return kExitOk;
  }
  if (a.corpus.empty()) throw Error(ErrorKind::Usage, "", "--corpus is required");
  if (!a.examples.empty()) {
    // Every edit of one photo (the first of the corpus), as the uploads the bench makes.
    const auto files = corpus_files(a.corpus);
    if (files.empty()) throw Error(ErrorKind::Usage, "", "the corpus holds no image");
    LoadOptions lo;
    lo.mode = DecodeMode::Exact;
    lo.want_color = true;
    cv::Mat src = load_image(files.front(), lo).pixels;
    if (src.channels() == 1) cv::cvtColor(src, src, cv::COLOR_GRAY2BGR);
    std::vector<cv::Mat> others;
    for (std::size_t i = 1; i < files.size() && others.size() < 3; ++i) {
      cv::Mat o = load_image(files[i], lo).pixels;
      if (o.channels() == 1) cv::cvtColor(o, o, cv::COLOR_GRAY2BGR);
      others.push_back(o);
    }
    const fs::path dir = prepare_out(a.examples);
    for (const auto& e : bench::edit_registry()) {
      const auto bytes = bench::encode_upload(bench::apply_edit(src, e, a.seed, others), e);
      write_text(dir / (e.family + "--" + e.name + ".jpg"),
                 std::string(bytes.begin(), bytes.end()));
    }
    std::fprintf(stderr, "wrote %zu edits of %s into %s\n", bench::edit_registry().size(),
                 files.front().string().c_str(), a.examples.c_str());
    return kExitOk;
  }
  WorkDir work;
  bench::RobustnessOptions o;
  o.files = corpus_files(a.corpus);
  o.known = a.known;
  o.distractors = a.distractors;
  o.edits = split_list(a.edits);
  o.seed = a.seed;
  o.max_side = a.max_side;
  o.phash_threshold = a.phash_threshold;
  o.signals = parse_signals(a.signals);
  o.local_min_inliers = a.min_inliers;
  std::unique_ptr<Embedder> model;
  if (std::find(o.signals.begin(), o.signals.end(), "embed") != o.signals.end()) {
    model = load_model(a.model);
    o.embedder = model.get();
  }
  o.jobs = a.jobs > 0 ? a.jobs : default_jobs();
  o.work_dir = work.path();
  o.stop = &stop_requested();
  auto progress = std::make_shared<Progress>("bench", 0, !a.quiet);
  std::string last_phase;
  o.progress = [&](const char* phase, std::size_t done, std::size_t total) {
    if (phase != last_phase) {
      progress->finish();
      progress = std::make_shared<Progress>(phase, total, !a.quiet);
      last_phase = phase;
    }
    progress->update(done);
  };
  const bench::RobustnessReport rep = bench::run_robustness(o);
  progress->finish();

  std::string md = "### Robustness\n\nMachine: " + machine_line() + ". Corpus:";
  for (const auto& c : a.corpus) md += " `" + c + "`";
  md += " (" + std::to_string(o.files.size()) + " image files).\n\n" +
        bench::robustness_markdown(rep);
  json j = bench::robustness_json(rep);
  j["machine"] = machine_line();
  j["corpus"] = a.corpus;
  if (!a.out.empty()) {
    const fs::path dir = prepare_out(a.out);
    write_text(dir / "robustness.md", md);
    write_text(dir / "robustness.json", j.dump(1) + "\n");
  }
  if (a.json_out)
    std::cout << j.dump(2) << '\n';
  else
    std::cout << md;
  for (const auto& s : rep.skipped) std::fprintf(stderr, "hashwall: skipped %s\n", s.c_str());
  return kExitOk;
}

// ---- speed -------------------------------------------------------------------------------

struct SpeedArgs {
  std::vector<std::string> corpus;
  std::string sizes = "10k,100k,1M";
  std::string index_types = "flat,multihash,compact";
  int queries = 500;
  std::int64_t sqlite_max = 100'000;
  double max_seconds = 15;
  int jobs = 0;
  std::uint64_t seed = 1;
  std::string out;
  bool json_out = false;
  bool no_index_run = false;
  bool quiet = false;
  std::string local_sizes = "1k,10k,100k";
  std::string model;
  int signal_photos = 100;
};

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (const char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// `hashwall index` on a corpus, end to end (this very binary, in a child process).
json index_run(const std::string& corpus, const fs::path& work, int jobs) {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error(ErrorKind::Io, "/proc/self/exe", "cannot find the hashwall binary");
  const fs::path bank = work / "bench-index.db";
  const std::string cmd = shell_quote(self.string()) + " index " + shell_quote(corpus) +
                          " --bank " + shell_quote(bank.string()) + " --json -q -j " +
                          std::to_string(jobs) + " 2>/dev/null";
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw Error(ErrorKind::Io, corpus, "cannot run hashwall index");
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  ::pclose(p);
  for (const auto& f : {bank, pdq_index_path(bank), fs::path(bank.string() + "-wal"),
                        fs::path(bank.string() + "-shm")})
    fs::remove(f, ec);
  const json r = json::parse(out, nullptr, false);
  if (r.is_discarded() || !r.contains("files_per_second"))
    throw Error(ErrorKind::Io, corpus, "hashwall index gave no summary");
  return {{"corpus", corpus},
          {"files", r["processed"]},
          {"seconds", r["seconds"]},
          {"files_per_second", r["files_per_second"]},
          {"threads", jobs}};
}

int run_speed_cmd(const SpeedArgs& a) {
  WorkDir work;
  bench::SpeedOptions o;
  for (const auto& c : a.corpus)
    o.hash_sets.push_back({fs::path(c).lexically_normal().filename().string().empty()
                               ? fs::path(c).lexically_normal().parent_path().filename().string()
                               : fs::path(c).lexically_normal().filename().string(),
                           corpus_files({c})});
  o.sizes = a.sizes == "0" ? std::vector<std::int64_t>{} : parse_sizes(a.sizes);
  o.index_types = split_list(a.index_types);
  for (const auto& t : o.index_types) (void)make_pdq_index(t);  // Error{Usage} for a bad name
  o.queries = a.queries;
  o.sqlite_max = a.sqlite_max;
  o.max_seconds_per_case = a.max_seconds;
  o.jobs = a.jobs > 0 ? a.jobs : default_jobs();
  o.seed = a.seed;
  o.work_dir = work.path();
  o.stop = &stop_requested();
  o.local_sizes = a.local_sizes == "0" || a.local_sizes.empty() ? std::vector<std::int64_t>{}
                                                                : parse_sizes(a.local_sizes);
  o.signal_photos = a.signal_photos;
  std::unique_ptr<Embedder> embedder;
  try {
    embedder = load_model(a.model);
    o.embedder = embedder.get();
  } catch (const Error& e) {
    if (!a.model.empty()) throw;
    std::fprintf(stderr, "hashwall bench speed: no embedding timings: %s\n", e.what());
  }
  const bool tty = !a.quiet && ::isatty(STDERR_FILENO);
  o.progress = [tty](const std::string& what) {
    if (tty) std::fprintf(stderr, "\r\033[Kbench: %s...", what.c_str());
  };
  bench::SpeedReport rep = bench::run_speed(o);
  json runs = json::array();
  if (!a.no_index_run)
    for (const auto& c : a.corpus) {
      o.progress("hashwall index " + c);
      runs.push_back(index_run(c, work.path(), o.jobs));
    }
  if (tty) std::fprintf(stderr, "\r\033[K");

  std::string md = "### Speed\n\nMachine: " + machine_line() + ".\n\n" + bench::speed_markdown(rep);
  if (!runs.empty()) {
    md += "#### `hashwall index`, end to end (new bank, " + std::to_string(o.jobs) +
          " threads)\n\n"
          "| corpus | files | seconds | files/s |\n|---|---:|---:|---:|\n";
    for (const auto& r : runs) {
      char line[512];
      std::snprintf(line, sizeof line, "| `%s` | %lld | %.2f | %.1f |\n",
                    r["corpus"].get<std::string>().c_str(), r["files"].get<long long>(),
                    r["seconds"].get<double>(), r["files_per_second"].get<double>());
      md += line;
    }
  }
  json j = bench::speed_json(rep);
  j["machine"] = machine_line();
  j["index_runs"] = runs;
  if (!a.out.empty()) {
    const fs::path dir = prepare_out(a.out);
    write_text(dir / "speed.md", md);
    write_text(dir / "speed.json", j.dump(1) + "\n");
  }
  if (a.json_out)
    std::cout << j.dump(2) << '\n';
  else
    std::cout << md;
  return kExitOk;
}

}  // namespace

void register_bench(CLI::App& app, int& exit_code) {
  auto* bench =
      app.add_subcommand("bench", "Measure robustness (what is caught) and speed on your photos");
  bench->require_subcommand(1);
  bench->footer(
      "Benchmarks print what they measured and on what; nothing here changes a bank.\n\n"
      "Examples:\n"
      "  hashwall bench robustness --corpus photos/ --known 200 --out bench-out/\n"
      "  hashwall bench speed --corpus small/ --corpus large/ --sizes 10k,100k,1M\n\n"
      "Exit codes: 0 done, 2 error (bad option, unreadable corpus), 130 interrupted.");

  auto r = std::make_shared<RobustArgs>();
  auto* rob =
      bench->add_subcommand("robustness", "Recall and false matches per edit and per signal");
  rob->add_option("-c,--corpus", r->corpus, "Folder (or file) of photos; repeatable");
  rob->add_option("--known", r->known, "Photos indexed into the temporary bank")
      ->capture_default_str();
  rob->add_option("--distractors", r->distractors, "Unrelated photos (default: all the others)");
  rob->add_option("--edits", r->edits,
                  "Comma-separated edit names (default: all; see --list-edits)");
  rob->add_option("--seed", r->seed, "Seed of the split and of the random edits")
      ->capture_default_str();
  rob->add_option("--max-side", r->max_side,
                  "Edit photos at most this large on the long side (0: full size)")
      ->capture_default_str();
  rob->add_option("--phash-threshold", r->phash_threshold,
                  "PHash baseline match distance, of 64 bits")
      ->capture_default_str();
  rob->add_option("--signals", r->signals,
                  "Signals of the benchmark's bank (and so of the combined decision)")
      ->capture_default_str();
  rob->add_option("--model", r->model, "Embedding model (default: the shipped one)");
  rob->add_option("--min-inliers", r->min_inliers, "Local features: geometric inliers for a match")
      ->capture_default_str()
      ->check(CLI::Range(3, 100000));
  rob->add_option("-j,--jobs", r->jobs, "Threads (default: all cores)");
  rob->add_option("-o,--out", r->out,
                  "Also write robustness.md and robustness.json into this folder");
  rob->add_flag("--json", r->json_out, "Print the JSON report on stdout instead of Markdown");
  rob->add_flag("--list-edits", r->list_edits,
                "List the edits (family, name, upload JPEG quality) and exit");
  rob->add_option("--save-examples", r->examples,
                  "Write every edit of the corpus's first photo into this folder and exit");
  rob->add_flag("-q,--quiet", r->quiet, "No progress bar");
  rob->footer(
      "Splits the corpus (seeded) into known photos, indexed into a temporary bank, and\n"
      "distractors. Every photo of both sets is edited with every edit (JPEG, resize, crops,\n"
      "borders, rotations, colour, filters, text, captions, screenshots, collages, ...),\n"
      "encoded as a JPEG upload and run through the real decoder, hasher and matcher. For each\n"
      "edit and signal it reports recall at the default thresholds, false matches among the\n"
      "edited distractors, recall at 99.9 % precision and micro-AP (ISC2021). Plots: run\n"
      "tools/plot_bench.py on the JSON (see docs/BENCHMARKS.md).\n\n"
      "Examples:\n"
      "  hashwall bench robustness --corpus ../shared/photos --out bench-out/\n"
      "  hashwall bench robustness --corpus my-photos/ --known 50 --edits crop-70,caption-meme\n"
      "  hashwall bench robustness --list-edits\n\n"
      "Exit codes: 0 done, 2 error (bad option, unreadable corpus), 130 interrupted.");
  rob->callback([r, &exit_code] { exit_code = run_robustness_cmd(*r); });

  auto s = std::make_shared<SpeedArgs>();
  auto* sp = bench->add_subcommand("speed", "Hashing throughput, search latency, memory per entry");
  sp->add_option("-c,--corpus", s->corpus,
                 "Folder of photos to time hashing on; repeatable (one row each)");
  sp->add_option("--sizes", s->sizes, "Synthetic PDQ bank sizes (k = 1000, M = 1000000; 0: skip)")
      ->capture_default_str();
  sp->add_option("--index-types", s->index_types, "Index types to time")->capture_default_str();
  sp->add_option("--queries", s->queries, "Latency samples per bank size and index")
      ->capture_default_str();
  sp->add_option("--sqlite-max", s->sqlite_max, "Build real SQLite banks only up to this size")
      ->capture_default_str();
  sp->add_option("--max-seconds", s->max_seconds, "Stop sampling one case after this long")
      ->capture_default_str();
  sp->add_option("-j,--jobs", s->jobs, "Threads for the all-threads numbers (default: all cores)");
  sp->add_option("--seed", s->seed, "Seed of the synthetic hashes")->capture_default_str();
  sp->add_option("-o,--out", s->out, "Also write speed.md and speed.json into this folder");
  sp->add_flag("--json", s->json_out, "Print the JSON report on stdout instead of Markdown");
  sp->add_flag("--no-index-run", s->no_index_run,
               "Skip timing `hashwall index` end to end on each corpus");
  sp->add_flag("-q,--quiet", s->quiet, "No progress line");
  sp->add_option("--local-sizes", s->local_sizes,
                 "Bank sizes for the local-feature search (0: skip)")
      ->capture_default_str();
  sp->add_option("--signal-photos", s->signal_photos,
                 "Photos per corpus timed for ORB and the embedding")
      ->capture_default_str();
  sp->add_option("--model", s->model, "Embedding model to time (default: the shipped one)");
  sp->footer(
      "Hashing: each corpus folder's files are read into memory, then timed one by one on one\n"
      "thread (decoder alone, decode_image, decode + PDQ; fast and exact modes), and on all\n"
      "threads. Search: random PDQ hashes plus planted near-duplicates (which must be found)\n"
      "for each size and index type, in memory; SQLite banks up to --sqlite-max entries for "
      "import\n"
      "rate, open time and on-disk size. Sizes that would not fit in half the free memory are\n"
      "skipped and said so. Signals: ORB extraction and the embedding network per photo\n"
      "(--signal-photos of each corpus), and local-feature queries against banks of\n"
      "--local-sizes entries made of the corpus's own descriptors, with planted edited copies\n"
      "(must be found) and unrelated photos (must not match).\n\n"
      "Examples:\n"
      "  hashwall bench speed --corpus ../shared/photos/bsds500 --corpus ../shared/photos/debian\n"
      "  hashwall bench speed --sizes 10k,100k,1M,10M --index-types flat --no-index-run\n\n"
      "Exit codes: 0 done, 2 error (bad option, unreadable corpus), 130 interrupted.");
  sp->callback([s, &exit_code] { exit_code = run_speed_cmd(*s); });
}

}  // namespace hashwall::cli
