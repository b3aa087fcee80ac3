// One file checked against the bank and its JSON form: one shape for the CLI's --json
// and the HTTP service's answers (docs/cli-formats.md, docs/API.md).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "bank/bank.hpp"
#include "image/load.hpp"
#include "match/fingerprint.hpp"
#include "match/matcher.hpp"

namespace hashwall {

struct FileReport {
  std::string file;
  std::optional<Fingerprint> fp;  // absent on error
  MatchResult result;
  std::string error;  // non-empty when the file could not be checked
};

// Loads, fingerprints and matches one file; failures are reported in `error`, not thrown.
FileReport check_file(const std::filesystem::path& file, const LoadOptions& opt,
                      const Matcher& matcher, const FingerprintOptions& fp = {});

nlohmann::ordered_json report_json(const FileReport& r);
nlohmann::ordered_json entry_json(const Entry& e);
nlohmann::ordered_json hit_json(const MatchHit& h);

}  // namespace hashwall
