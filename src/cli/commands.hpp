// Each subcommand registers itself on the CLI11 app; its callback stores the exit code.
#pragma once

#include <CLI/CLI.hpp>

namespace hashwall::cli {

void register_hash(CLI::App& app, int& exit_code);
void register_index(CLI::App& app, int& exit_code);
void register_query(CLI::App& app, int& exit_code);
void register_scan(CLI::App& app, int& exit_code);
void register_import(CLI::App& app, int& exit_code);
void register_export(CLI::App& app, int& exit_code);
void register_admin(CLI::App& app, int& exit_code);    // init, stats, remove, reindex, check
void register_bench(CLI::App& app, int& exit_code);    // bench robustness | speed
void register_serve(CLI::App& app, int& exit_code);    // HTTP service (src/server)
void register_control(CLI::App& app, int& exit_code);  // list, disable, enable, log
void register_sync(CLI::App& app, int& exit_code);     // sync (exchange/sync.hpp)
void register_verdict(CLI::App& app, int& exit_code);  // verdict

}  // namespace hashwall::cli
