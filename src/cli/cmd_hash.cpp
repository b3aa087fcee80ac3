// hashwall hash: PDQ hashes of files, in Meta's pdq-photo-hasher format.
#include <cstdio>
#include <iostream>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/error.hpp"
#include "match/fingerprint.hpp"

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
};

int run_hash(const HashArgs& a) {
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
  cmd->footer(
      std::string(
          "Print the PDQ hash and quality of image files as `hash,quality,filename` lines,\n"
          "the format of Meta's pdq-photo-hasher (a drop-in replacement: the default exact\n"
          "mode reproduces its output bit for bit). Quality runs from 0 to 100; hashes of\n"
          "images below 50 are not trusted for matching.") +
      "\n\n" +
      std::string("Examples:\n"
                  "  hashwall hash photo.jpg\n"
                  "  hashwall hash --dihedral photo.jpg\n"
                  "  hashwall hash --json photos/ > hashes.json\n\n") +
      "Exit codes: 0 all files hashed, 2 some file could not be hashed, 130 interrupted.");
  cmd->callback([args, &exit_code] { exit_code = run_hash(*args); });
}

}  // namespace hashwall::cli
