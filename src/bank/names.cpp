// The names of a bank's enumerations as they are stored and sent (bank.hpp). Apart from the
// rest of the bank so that pure code (the change feed's JSON, its fuzz target) links them
// alone.
#include "bank/bank.hpp"

namespace hashwall {

const char* origin_name(Origin o) noexcept {
  return o == Origin::Imported ? "imported" : "indexed";
}

const char* list_kind_name(ListKind k) noexcept { return k == ListKind::Allow ? "allow" : "block"; }

std::optional<ListKind> parse_list_kind(std::string_view s) noexcept {
  if (s == "block") return ListKind::Block;
  if (s == "allow") return ListKind::Allow;
  return std::nullopt;
}

}  // namespace hashwall
