// core/text: what is written for spreadsheets, logs and terminals.
#include <catch2/catch.hpp>

#include "core/text.hpp"

using namespace hashwall;

TEST_CASE("a cell a spreadsheet would run as a formula gets a leading apostrophe", "[text]") {
  for (const char* f : {"=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"})
    CHECK(neutralise_formula(f) == std::string("'") + f);
  for (const char* plain : {"", "a=1", "photo.jpg", " =1", "'=1"})
    CHECK(neutralise_formula(plain) == plain);
}

TEST_CASE("control characters and backslashes are escaped so that a log line stays one line",
          "[text]") {
  CHECK(escape_control("/v1/match") == "/v1/match");
  CHECK(escape_control("/a\nforged 200") == "/a\\x0aforged 200");
  CHECK(escape_control("\x1b[2J") == "\\x1b[2J");
  CHECK(escape_control("a\\x0a") == "a\\x5cx0a");  // an escape cannot be forged either
  CHECK(escape_control(std::string("\0\x7f", 2)) == "\\x00\\x7f");
  CHECK(escape_control("caf\xc3\xa9") == "caf\xc3\xa9");  // UTF-8 passes
}
