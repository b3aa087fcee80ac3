// hashwall: find known harmful photos and their near-duplicates.
#include "cli/app.hpp"
#include "cli/common.hpp"

int main(int argc, char** argv) {
  hashwall::cli::install_signal_handlers();
  return hashwall::cli::run(argc, argv);
}
