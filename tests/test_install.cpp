// `cmake --install`: the installed binary finds its model in share/hashwall/models and
// answers on the samples as the build does, with nothing from the source tree or the build
// folder in reach.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support.hpp"

namespace fs = std::filesystem;
using hwtest::run_shell;
using hwtest::TempDir;

namespace {
std::string q(const fs::path& p) { return "'" + p.string() + "'"; }
}  // namespace

TEST_CASE("an installed hashwall finds its model and matches the samples", "[cli][install]") {
  TempDir tmp;
  // Deep enough that no models/ folder above the scratch folder (the binary looks up to three
  // folders above its own) can stand in for the installed one.
  const fs::path prefix = tmp.path() / "a" / "b" / "prefix";
  const auto inst =
      run_shell("cmake --install " + q(HASHWALL_BUILD_DIR) + " --prefix " + q(prefix));
  INFO(inst.out << inst.err);
  REQUIRE(inst.exit_code == 0);
  const fs::path bin = prefix / "bin" / "hashwall";
  REQUIRE(fs::is_regular_file(bin));
  CHECK(fs::is_regular_file(prefix / "share/hashwall/models/hashwall-embed-v1.onnx"));
  CHECK(fs::is_regular_file(prefix / "share/hashwall/models/hashwall-embed-v1.md"));
  CHECK(fs::is_regular_file(prefix / "share/doc/hashwall/README.md"));
  CHECK(fs::is_regular_file(prefix / "share/doc/hashwall/BANK_FORMAT.md"));

  // Run from the scratch folder with copies of the samples, the model variable unset: the
  // default signals include the embedding, so indexing works only if the installed binary
  // finds the installed model.
  const fs::path samples = hwtest::source_dir() / "samples";
  fs::copy(samples, tmp / "samples", fs::copy_options::recursive);
  const std::string run = "cd " + q(tmp.path()) + " && env -u HASHWALL_MODEL " + q(bin);
  const auto idx = run_shell(run + " index samples/bank --bank b.db --json");
  INFO(idx.out << idx.err);
  REQUIRE(idx.exit_code == 0);
  const auto summary = nlohmann::json::parse(idx.out);
  CHECK(summary["added"].get<int>() > 0);
  const auto stats = run_shell(run + " stats --bank b.db --json");
  REQUIRE(stats.exit_code == 0);
  CHECK(stats.out.find("hashwall-embed-v1.onnx@") != std::string::npos);
  const auto scan = run_shell(run + " scan samples/uploads --bank b.db --jsonl");
  INFO(scan.out << scan.err);
  CHECK(scan.exit_code == 1);  // 1: a match was found
  int matches = 0;
  std::istringstream lines(scan.out);
  for (std::string line; std::getline(lines, line);)
    if (nlohmann::json::parse(line).value("match", false)) ++matches;
  CHECK(matches >= 4);
}
