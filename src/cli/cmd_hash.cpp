// hashwall hash: PDQ hashes of files, in Meta's pdq-photo-hasher format, and vPDQ hashes
// of videos in Meta's vpdq-hash-video format.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <set>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/error.hpp"
#include "core/file.hpp"
#include "match/fingerprint.hpp"
#include "video/vpdq.hpp"

namespace hashwall::cli {

namespace {
struct HashArgs {
  std::vector<std::string> files;
  bool dihedral = false;
  bool json_out = false;
  bool fast = false;
  bool no_exif = false;
  bool all_files = false;
  std::uint64_t max_pixels = 200'000'000;
  int jobs = 0;
  bool vpdq = false;
  int vpdq_size = 0;
  double seconds_per_hash = 0;
  std::string output_dir;
};

// hash --vpdq: each video's frames, in vpdq-hash-video's format; to stdout for one video,
// else one NAME.EXT.txt per video in --output-dir (or all of them in --json).
int run_vpdq(const HashArgs& a) {
  namespace fs = std::filesystem;
  if (a.files.size() > 1 && a.output_dir.empty() && !a.json_out)
    throw Error(ErrorKind::Usage, "",
                "several videos need --output-dir DIR (one DIR/NAME.txt each) or --json");
  VideoReadOptions o;
  o.seconds_per_frame = a.seconds_per_hash;
  o.width = o.height = a.vpdq_size;
  o.stop = &stop_requested();
  int errors = 0;
  json all = json::array();
  std::set<std::string> written;  // --output-dir names taken in this run
  for (const auto& file : a.files) {
    // DIR/NAME.EXT.txt: two videos of one name in different folders would still clash,
    // and are refused rather than overwritten.
    fs::path out;
    if (!a.output_dir.empty()) {
      out = fs::path(a.output_dir) / (fs::path(file).filename().string() + ".txt");
      if (!written.insert(out.string()).second) {
        std::fprintf(stderr, "hashwall: %s: %s is already written by another video of that name\n",
                     file.c_str(), out.c_str());
        ++errors;
        continue;
      }
    }
    VideoInfo info;
    std::vector<VpdqFrame> frames;
    try {
      frames = vpdq_hash_video(file, o, &info);
    } catch (const Error& e) {
      if (e.kind() == ErrorKind::Interrupted) return kExitInterrupted;
      std::fprintf(stderr, "hashwall: %s\n", e.what());
      ++errors;
      if (a.json_out) all.push_back({{"file", file}, {"error", e.what()}});
      if (!out.empty()) {
        std::error_code ec;
        fs::remove(out, ec);  // not a stale file from an earlier run in its place
      }
      continue;
    }
    if (a.json_out) {
      json list = json::array();
      for (const auto& f : frames)
        list.push_back({{"frame", f.frame_number},
                        {"quality", f.quality},
                        {"pdq", f.hash.hex()},
                        {"timestamp", f.timestamp}});
      all.push_back({{"file", file},
                     {"width", info.width},
                     {"height", info.height},
                     {"frame_rate", info.frame_rate},
                     {"duration", info.duration_s},
                     {"codec", info.codec},
                     {"frames_decoded", info.frames},
                     {"frames", list}});
      continue;
    }
    std::string text;
    for (const auto& f : frames) text += vpdq_line(f) + '\n';
    if (a.output_dir.empty()) {
      std::cout << text;
      continue;
    }
    // Written beside, then renamed over: a reader never sees half a file.
    std::error_code ec;
    fs::create_directories(a.output_dir, ec);
    try {
      write_file_atomically(out, text);
    } catch (const Error& e) {
      std::fprintf(stderr, "hashwall: %s: cannot write: %s\n", out.c_str(), e.reason().c_str());
      ++errors;
    }
  }
  if (a.json_out) std::cout << dump_json(all, 2) << '\n';
  std::cout.flush();
  return errors ? kExitError : kExitOk;
}

int run_hash(const HashArgs& a) {
  if (a.vpdq) return run_vpdq(a);
  if (a.vpdq_size || a.seconds_per_hash > 0 || !a.output_dir.empty())
    throw Error(ErrorKind::Usage, "",
                "--vpdq-size, --seconds-per-hash and --output-dir need --vpdq");
  std::vector<std::string> missing;
  const auto files = collect_files(a.files, a.all_files, missing);
  int errors = 0;
  for (const auto& m : missing) {
    std::fprintf(stderr, "hashwall: %s\n", m.c_str());
    ++errors;
  }
  const LoadOptions opt = load_options(!a.fast, a.no_exif, a.max_pixels);
  const DecodeMode mode = opt.mode;
  std::vector<std::optional<Fingerprint>> results(files.size());
  std::vector<std::string> failures(files.size());
  json all = json::array();
  ordered_parallel(
      files.size(), a.jobs > 0 ? a.jobs : default_jobs(),
      [&](std::size_t i) {
        try {
          results[i] = fingerprint(load_image(files[i], opt), mode);
        } catch (const Error& e) {
          failures[i] = e.what();
        }
      },
      [&](std::size_t i) {
        const std::string name = files[i].string();
        if (!results[i]) {
          std::fprintf(stderr, "hashwall: %s\n", failures[i].c_str());
          ++errors;
          if (a.json_out) all.push_back({{"file", name}, {"error", failures[i]}});
          return;
        }
        const Fingerprint& f = *results[i];
        if (a.json_out) {
          json j;
          j["file"] = name;
          j["pdq"] = f.pdq.hashes[0].hex();
          j["quality"] = f.pdq.quality;
          j["sha256"] = f.sha256;
          j["width"] = f.width;
          j["height"] = f.height;
          if (a.dihedral) {
            json d = json::object();
            for (int t = 0; t < kDihedralCount; ++t)
              d[std::string(dihedral_name(static_cast<Dihedral>(t)))] = f.pdq.hashes[t].hex();
            j["dihedral"] = d;
          }
          all.push_back(j);
        } else if (a.dihedral) {
          // Meta's dihedral format: the 8 hashes, then quality and file name.
          for (const auto& h : f.pdq.hashes) std::cout << h.hex() << ',';
          std::cout << f.pdq.quality << ',' << name << '\n';
        } else {
          std::cout << f.pdq.hashes[0].hex() << ',' << f.pdq.quality << ',' << name << '\n';
        }
      },
      &stop_requested());
  if (a.json_out) std::cout << dump_json(all, 2) << '\n';
  std::cout.flush();
  if (stop_requested()) return kExitInterrupted;
  return errors ? kExitError : kExitOk;
}
}  // namespace

void register_hash(CLI::App& app, int& exit_code) {
  auto args = std::make_shared<HashArgs>();
  auto* cmd = app.add_subcommand("hash", "Print the PDQ hash and quality of image files");
  cmd->add_option("files", args->files, "Image files or directories (walked recursively)")
      ->required();
  cmd->add_flag("--dihedral", args->dihedral,
                "Print the 8 rotation/flip variants (original, rotate-90, rotate-180, rotate-270, "
                "flip-x, flip-y, flip-plus1, flip-minus1), then quality and file name");
  cmd->add_flag("--json", args->json_out, "Print one JSON array of objects (adds sha256, size)");
  cmd->add_flag("--fast", args->fast,
                "Fast mode as used by index/scan/query: DCT-scaled JPEG decode and area resize "
                "(within a few bits of the reference; see docs/PDQ.md)");
  cmd->add_flag("--no-exif-orientation", args->no_exif,
                "Hash the pixels as stored, ignoring the EXIF orientation tag");
  cmd->add_flag("--all-files", args->all_files,
                "In directories, try every file, not only image extensions");
  cmd->add_option("--max-pixels", args->max_pixels, "Refuse images with more pixels than this")
      ->capture_default_str();
  cmd->add_option("-j,--jobs", args->jobs, "Worker threads (default: all cores)");
  cmd->add_flag("--vpdq", args->vpdq,
                "The files are videos (MP4, MOV, WebM, MKV, AVI, animated GIF, ...): print "
                "Meta's vPDQ, one `frame_number,quality,pdq_hex,timestamp_seconds` line a frame");
  cmd->add_option("--vpdq-size", args->vpdq_size,
                  "With --vpdq: hash frames downsampled to NxN pixels (Meta's vectors use 128); "
                  "0: at the video's size")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--seconds-per-hash", args->seconds_per_hash,
                  "With --vpdq: one frame every S seconds (0: every frame)")
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--output-dir", args->output_dir,
                  "With --vpdq: write DIR/NAME.EXT.txt for each video instead of stdout");
  cmd->footer(
      std::string(
          "Print the PDQ hash and quality of image files as `hash,quality,filename` lines,\n"
          "the format of Meta's pdq-photo-hasher (a drop-in replacement: the default exact\n"
          "mode reproduces its output bit for bit). Quality runs from 0 to 100; hashes of\n"
          "images below 50 are not trusted for matching. With --vpdq the files are videos,\n"
          "hashed as Meta's vpdq-hash-video hashes them (docs/VIDEO.md).") +
      "\n\n" +
      std::string("Examples:\n"
                  "  hashwall hash photo.jpg\n"
                  "  hashwall hash --dihedral photo.jpg\n"
                  "  hashwall hash --json photos/ > hashes.json\n"
                  "  hashwall hash --vpdq clip.mp4 > clip.txt\n"
                  "  hashwall hash --vpdq --vpdq-size 128 --output-dir hashes/ *.mp4\n\n") +
      "Exit codes: 0 all files hashed, 2 some file could not be hashed, 130 interrupted.");
  cmd->callback([args, &exit_code] { exit_code = run_hash(*args); });
}

}  // namespace hashwall::cli
