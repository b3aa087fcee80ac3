#include "cli/app.hpp"

#include <cstdio>
#include <exception>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/error.hpp"

namespace hashwall::cli {

int run(int argc, char** argv) {
  CLI::App app{
      "hashwall: fingerprints photos (PDQ, Meta's perceptual hash) into a bank of known\n"
      "harmful images and finds their near-duplicates (re-encoded, resized, rotated,\n"
      "flipped, filtered copies) in new uploads. A bank stores fingerprints, never pixels.",
      "hashwall"};
  app.set_version_flag("--version", std::string("hashwall ") + HASHWALL_VERSION);
  app.require_subcommand(1);
  app.footer(std::string("Examples:\n"
                         "  hashwall index known/ --bank cases.db --label case-17\n"
                         "  hashwall query upload.jpg --bank cases.db\n"
                         "  hashwall scan uploads/ --bank cases.db --jsonl > report.jsonl\n"
                         "  hashwall import partner.csv --bank cases.db --format pdq-csv\n"
                         "  hashwall hash photo.jpg\n\n") +
             kExitCodesHelp + "\nRun 'hashwall COMMAND --help' for a command's options.");
  int exit_code = kExitOk;
  register_hash(app, exit_code);
  register_index(app, exit_code);
  register_query(app, exit_code);
  register_scan(app, exit_code);
  register_import(app, exit_code);
  register_export(app, exit_code);
  register_admin(app, exit_code);
  register_control(app, exit_code);
  register_sync(app, exit_code);
  register_verdict(app, exit_code);
  register_bench(app, exit_code);
  register_serve(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return kExitError;
  } catch (const hashwall::Error& e) {
    std::fprintf(stderr, "hashwall: %s\n", e.what());
    return e.kind() == hashwall::ErrorKind::Interrupted ? kExitInterrupted : kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hashwall: error: %s\n", e.what());
    return kExitError;
  }
  return exit_code;
}

}  // namespace hashwall::cli
