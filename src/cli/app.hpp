// The whole command line as a function: main() is this plus the process's signal
// handlers. Programs that link hashwall's libraries (the tests, a build with extra
// registered signals) run the same commands in-process.
#pragma once

namespace hashwall::cli {

// Parses argv, runs the subcommand and returns its exit code (kExit*); errors are written
// to stderr as the hashwall binary writes them.
int run(int argc, char** argv);

}  // namespace hashwall::cli
