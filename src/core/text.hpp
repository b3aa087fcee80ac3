// Text written where something else will read it: a spreadsheet, a log, a terminal.
#pragma once

#include <string>
#include <string_view>

namespace hashwall {

// A cell a spreadsheet would run as a formula (first character = + - @, tab or carriage
// return) gets a leading apostrophe, as OWASP's "CSV Injection" page recommends; other
// text is returned as it is.
std::string neutralise_formula(std::string_view cell);

// Control characters (below 0x20, and 0x7f) and backslashes as \xHH escapes, so a line of
// a log or a terminal stays one line and cannot carry escape sequences.
std::string escape_control(std::string_view text);

}  // namespace hashwall
