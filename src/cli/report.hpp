// How query/scan print a checked file (match/report.hpp has the file and its JSON).
#pragma once

#include <optional>
#include <ostream>
#include <string>

#include "cli/common.hpp"

namespace hashwall::cli {

// Human-readable: one headline per file, then one indented line per hit (up to max_hits).
void print_human(std::ostream& out, const FileReport& r, bool verbose);
void print_csv_header(std::ostream& out);
void print_csv(std::ostream& out, const FileReport& r);

// Exit code for a set of reports: 1 if any match, else 2 if any error, else 3 if any
// undecided (low quality), else 0.
struct Tally {
  std::size_t files = 0, matches = 0, no_match = 0, low_quality = 0, errors = 0, allowed = 0;
  void add(const FileReport& r);
  int exit_code() const;
};

}  // namespace hashwall::cli
