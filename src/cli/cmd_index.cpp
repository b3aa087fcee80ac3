// hashwall index: fingerprint a corpus into a bank, in committed batches.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <memory>
#include <set>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "cli/signals.hpp"
#include "core/error.hpp"
#include "match/fingerprint.hpp"
#include "match/video_check.hpp"

namespace hashwall::cli {

namespace {
struct IndexArgs {
  std::vector<std::string> paths;
  std::string bank;
  std::string seal_key_file;
  std::string label;
  std::string list = kDefaultListName;
  int jobs = 0;
  int batch = 256;
  bool json_out = false;
  bool all_files = false;
  bool no_exif = false;
  bool quiet = false;
  std::uint64_t max_pixels = 200'000'000;
  std::string commit_log;
  std::string signals;  // empty: the bank's, or kDefaultSignals for a new bank
  std::string model;
  std::optional<int> min_inliers;
  std::optional<double> vpdq_query_percent, vpdq_entry_percent;  // a new bank's video rule
};

struct Item {
  std::optional<NewEntry> entry;
  bool already_in_bank = false;
  bool other_list = false;   // ... in another list than --list
  bool passed_over = false;  // a video in a folder, for a bank without videos
  std::string error;
  std::string warning;  // indexed, with a caveat
};

int run_index(const IndexArgs& a) {
  using clock = std::chrono::steady_clock;
  const auto t0 = clock::now();
  std::vector<std::string> missing;
  std::error_code ec;
  std::unique_ptr<Bank> bank;
  if (fs::exists(a.bank, ec)) {
    bank = Bank::open(a.bank, OpenMode::ReadWrite, {}, read_seal_key(a.seal_key_file));
    if (a.vpdq_query_percent || a.vpdq_entry_percent)
      throw Error(ErrorKind::Usage, a.bank,
                  "--vpdq-query-percent and --vpdq-entry-percent set a new bank's rule; this bank "
                  "has its own (give them to 'query' or 'scan' to ask with others)");
    if (!a.signals.empty() && parse_signals(a.signals) != bank->config().signals) {
      std::string have;
      for (const auto& h : bank->config().signals) have += (have.empty() ? "" : ",") + h;
      throw Error(
          ErrorKind::Usage, a.bank,
          "the bank was built with --signals " + have + "; its entries all carry the same signals");
    }
  } else {
    BankConfig base;
    if (a.vpdq_query_percent || a.vpdq_entry_percent)
      base.signal_params["vpdq"] = vpdq_shares(a.vpdq_query_percent, a.vpdq_entry_percent);
    bank = Bank::open(a.bank, OpenMode::Create,
                      new_bank_config(base, a.signals, a.model, a.min_inliers),
                      read_seal_key(a.seal_key_file));
  }
  // Videos (and animations) become video entries where the bank keeps them (vpdq); in
  // folders they are walked only then (a video named on the command line is always tried).
  const bool video_bank = bank->config().has("vpdq");
  const auto files = collect_files(a.paths, a.all_files, missing, video_bank);
  std::set<fs::path> named;  // files named on the command line (not found in a folder)
  for (const auto& p : a.paths) named.insert(fs::absolute(p).lexically_normal());
  const std::int64_t list_id = list_id_of(*bank, a.list);
  const Actor who = cli_actor();
  const SignalSetup sig = signal_setup(*bank, {}, a.model, false);
  // Written only after a batch is committed, and flushed, so every SHA-256 in it is in
  // the bank even if the process is killed the next instant (tests/test_crash_safety).
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> commit_log(nullptr, std::fclose);
  if (!a.commit_log.empty()) {
    commit_log.reset(std::fopen(a.commit_log.c_str(), "a"));
    if (!commit_log)
      throw Error(ErrorKind::Io, a.commit_log, std::string("cannot open: ") + std::strerror(errno));
  }
  LoadOptions opt = load_options(false, a.no_exif, a.max_pixels);
  sig.apply(opt);

  std::vector<Item> items(files.size());
  std::vector<NewEntry> pending;
  std::vector<std::string> errors = missing;
  std::int64_t added = 0, duplicates = 0, in_other_list = 0;
  std::size_t done = 0;
  auto last_commit = clock::now();
  Progress progress("indexing", files.size(), !a.quiet);

  auto commit = [&] {
    if (pending.empty()) return;
    const AddResult r = bank->add(pending, who);
    added += r.added;
    duplicates += r.duplicates;
    in_other_list += r.in_other_list;
    if (commit_log) {
      for (const auto& e : pending) std::fprintf(commit_log.get(), "%s\n", e.sha256->c_str());
      std::fflush(commit_log.get());
    }
    pending.clear();
    last_commit = clock::now();
  };

  // An entry made from a file: the label, list, provenance and source every entry gets.
  const auto entry_of = [&](NewEntry e, const fs::path& file) {
    e.label = a.label;
    e.list_id = list_id;
    e.added_by = who.name;
    e.source = fs::absolute(file).lexically_normal().string();
    e.origin = Origin::Indexed;
    return e;
  };

  ordered_parallel(
      files.size(), a.jobs > 0 ? a.jobs : default_jobs(),
      [&](std::size_t i) {
        Item& it = items[i];
        try {
          const bool video_file = is_video_file(files[i]);
          if (video_file) {
            std::string ext = files[i].extension().string();
            for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            const bool animation = ext == ".gif" || ext == ".png" || ext == ".apng";
            if (video_bank && !animation) {
              const std::string sha = file_digests(files[i], false).sha256;
              if (const auto had = bank->find_sha256(sha)) {
                it.already_in_bank = true;
                it.other_list = had->list_id != list_id;
                return;
              }
              NewEntry e = video_entry(files[i], VideoLimits{}, &stop_requested());
              e.sha256 = sha;
              it.entry = entry_of(std::move(e), files[i]);
              return;
            }
            // In a folder (not named on the command line) it is passed over, as before.
            if (!animation && !named.count(fs::absolute(files[i]).lexically_normal())) {
              it.passed_over = true;
              return;
            }
            if (!animation)
              throw Error(ErrorKind::Usage, files[i].string(),
                          "a video, and this bank keeps no videos (it was made without the vpdq "
                          "signal); index videos into a bank made with it (the default)");
            // An animation: its first frame as a photo (as before video banks: a still of it
            // is found), and in a video bank its frames' vPDQ record too, below.
          }
          const auto bytes = read_file_bytes(files[i], opt.max_file_bytes);
          const std::string sha = sha256_hex(bytes);
          // Re-runs (e.g. after an interrupted index) skip known files without decoding;
          // a file known only by its SHA-256 (a file-hash list's entry) is hashed, and its
          // entry gains the PDQ hash (Bank::add).
          if (const auto had = bank->find_sha256(sha); had && had->pdq) {
            it.already_in_bank = true;
            it.other_list = had->list_id != list_id;
            return;
          }
          const LoadedImage img = decode_image(bytes, files[i].string(), opt, sha);
          const Fingerprint f = fingerprint(img, opt.mode, sig.fingerprint);
          NewEntry e = entry_from(f);
          if (video_bank && video_file) {
            // The animation's frames too; a failure there (a cut tail, a limit) keeps the
            // photo entry, as before video banks, and says why.
            try {
              e.records["vpdq"] =
                  video_entry(files[i], VideoLimits{}, &stop_requested()).records.at("vpdq");
            } catch (const Error& err) {
              if (err.kind() == ErrorKind::Interrupted) throw;
              it.warning = std::string(err.what()) + " (indexed as a photo: its first frame)";
            }
          }
          it.entry = entry_of(std::move(e), files[i]);
        } catch (const Error& e) {
          it.error = e.what();
        } catch (const std::exception& e) {
          it.error = files[i].string() + ": " + e.what();
        }
      },
      [&](std::size_t i) {
        Item& it = items[i];
        ++done;
        if (!it.warning.empty()) {
          progress.finish();
          if (!a.json_out) std::fprintf(stderr, "hashwall: warning: %s\n", it.warning.c_str());
        }
        if (it.passed_over) {
          // nothing: a folder's video in a bank without videos
        } else if (it.already_in_bank) {
          ++duplicates;
          if (it.other_list) ++in_other_list;
        } else if (it.entry) {
          pending.push_back(std::move(*it.entry));
        } else {
          progress.finish();
          if (!a.json_out) std::fprintf(stderr, "hashwall: skipped %s\n", it.error.c_str());
          errors.push_back(it.error);
        }
        it = Item{};
        if (static_cast<int>(pending.size()) >= a.batch ||
            clock::now() - last_commit > std::chrono::seconds(2))
          commit();
        progress.update(done,
                        std::to_string(added + static_cast<std::int64_t>(pending.size())) + " new");
      },
      &stop_requested());
  commit();
  progress.finish();
  bank->flush_index();
  const bool interrupted = stop_requested();
  const double secs = std::chrono::duration<double>(clock::now() - t0).count();
  const BankStats st = bank->stats();

  if (a.json_out) {
    json j;
    j["bank"] = a.bank;
    j["files"] = files.size();
    j["processed"] = done;
    j["added"] = added;
    j["duplicates"] = duplicates;
    j["in_other_list"] = in_other_list;
    j["unreadable"] = errors.size();
    j["errors"] = errors;
    j["seconds"] = secs;
    j["files_per_second"] = secs > 0 ? static_cast<double>(done) / secs : 0.0;
    j["bank_entries"] = st.entries;
    j["interrupted"] = interrupted;
    std::cout << dump_json(j, 2) << '\n';
  } else {
    std::fprintf(
        stderr,
        "%s %zu of %zu files in %s (%.1f files/s): %lld added, %lld exact duplicates skipped, "
        "%zu unreadable; bank %s now holds %lld entries\n",
        interrupted ? "interrupted after" : "indexed", done, files.size(),
        format_duration(secs).c_str(), secs > 0 ? static_cast<double>(done) / secs : 0.0,
        static_cast<long long>(added), static_cast<long long>(duplicates), errors.size(),
        a.bank.c_str(), static_cast<long long>(st.entries));
    for (const auto& m : missing) std::fprintf(stderr, "hashwall: %s\n", m.c_str());
    if (in_other_list)
      std::fprintf(stderr,
                   "hashwall: %lld of the duplicates are in another list than '%s' and stay "
                   "there (an entry is in one list)\n",
                   static_cast<long long>(in_other_list), a.list.c_str());
  }
  if (interrupted) return kExitInterrupted;
  return errors.empty() ? kExitOk : kExitUndecided;
}
}  // namespace

void register_index(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<IndexArgs>();
  auto* cmd = app.add_subcommand("index", "Fingerprint known photos into a bank");
  cmd->add_option("paths", a->paths, "Image or video files, or directories")->required();
  cmd->add_option("-b,--bank", a->bank, std::string(kBankHelp) + "; created if missing")
      ->required()
      ->envname("HASHWALL_BANK");
  cmd->add_option("-l,--label", a->label, "Label stored with every new entry (e.g. a case id)");
  cmd->add_option("--list", a->list,
                  "The list new entries go to (default: 'default'; see 'hashwall list')");
  add_seal_key_option(cmd, a->seal_key_file,
                      "needed when the bank is sealed with one; a new bank is sealed with it");
  cmd->add_option("-j,--jobs", a->jobs, "Decode/hash threads (default: all cores)");
  cmd->add_option("--batch", a->batch, "Entries per committed transaction")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_flag("--json", a->json_out, "Print the summary as one JSON document on stdout");
  cmd->add_flag("--all-files", a->all_files,
                "In directories, try every file, not only image extensions");
  cmd->add_flag("--no-exif-orientation", a->no_exif, "Ignore EXIF orientation tags");
  cmd->add_flag("-q,--quiet", a->quiet, "No progress bar");
  cmd->add_option("--max-pixels", a->max_pixels, "Refuse images with more pixels than this")
      ->capture_default_str();
  cmd->add_option(
      "--commit-log", a->commit_log,
      "After each committed batch, append the SHA-256 of each of its files to this file");
  cmd->add_option("--signals", a->signals,
                  std::string("Signals a new bank records, comma-separated (default: ") +
                      kDefaultSignals + ")");
  cmd->add_option("--model", a->model,
                  "Embedding model (default: the shipped models/hashwall-embed-v1.onnx)");
  cmd->add_option("--vpdq-query-percent", a->vpdq_query_percent,
                  "New bank: the share of a query video's distinct frames that must match a video "
                  "entry's (vPDQ's rule; default 80)")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--vpdq-entry-percent", a->vpdq_entry_percent,
                  "New bank: the share of a video entry's distinct frames a query must match "
                  "(default 0: a clip of it matches)")
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--min-inliers", a->min_inliers,
                  "New bank: geometric inliers a local-feature match needs (default " +
                      std::to_string(kLocalMinInliers) + ", calibrated)")
      ->check(CLI::Range(3, 100000));
  cmd->footer(
      std::string(
          "Fingerprint image and video files (directories are walked recursively) and add them\n"
          "to the bank, creating it if needed. A video (MP4, MOV, WebM, MKV, AVI, ..., or an\n"
          "animated GIF/PNG) becomes a video entry: the vPDQ hashes of its frames (every frame,\n"
          "near-identical neighbours pruned; docs/VIDEO.md), found again by 'query' and 'scan'\n"
          "in other videos, clips of it included. Files already in the bank (same SHA-256) are "
          "skipped without\n"
          "decoding, so an interrupted run can simply be started again. Work is committed in\n"
          "batches: Ctrl-C or a crash keeps every committed batch and nothing half-written.\n\n") +
      signals_help() + "\n\n" +
      "Examples:\n"
      "  hashwall index known/ --bank cases.db --label case-17\n"
      "  hashwall index a.jpg b.png --bank cases.db --json\n"
      "  hashwall index known/ --bank big.db --signals pdq,embed   # no local features\n\n"
      "Exit codes: 0 every file indexed (or already present), 3 finished but some files were\n"
      "skipped as unreadable (each is named on stderr), 2 error, 130 interrupted.");
  cmd->callback([a, &exit_code] { exit_code = run_index(*a); });
}

}  // namespace hashwall::cli
