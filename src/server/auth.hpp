// Who may do what over HTTP (#15): named bearer tokens, each with a role, read from a
// file that only its owner may read, and reloaded without a restart (SIGHUP).
//
//   match  verdicts only: an answer names the entry id and the signal that decided, never
//          its label, source or stored hashes (what anonymous callers get too)
//   read   match, plus the entries' details (labels, sources, hashes, distances)
//   write  read, plus POST/DELETE /v1/entries
//   admin  write, plus asking for looser thresholds and more hits than the server's
//          ceilings (serve --max-threshold, --min-quality-floor, --max-top)
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hashwall::server {

enum class Role { Match = 0, Read = 1, Write = 2, Admin = 3 };
const char* role_name(Role) noexcept;  // "match", "read", "write", "admin"
std::optional<Role> parse_role(std::string_view) noexcept;

struct Token {
  std::string name;  // for logs: which caller did this (never the token itself)
  Role role = Role::Match;
  std::string secret;
};

// The tokens a server accepts. find() compares the presented secret with every token in
// constant time (SHA-256 of both sides), so neither which token nor how much of it
// matched leaks through timing.
class TokenSet {
 public:
  TokenSet() = default;
  explicit TokenSet(std::vector<Token> tokens);
  const Token* find(std::string_view presented) const noexcept;
  const std::vector<Token>& tokens() const noexcept { return tokens_; }
  bool empty() const noexcept { return tokens_.empty(); }

 private:
  std::vector<Token> tokens_;
};

// Why a token is too weak ("" when it is not): at least 16 characters and 8 different
// ones, and at least 64 bits if each character were drawn at random from the classes the
// token uses. A guard against obvious mistakes, not a strength meter.
std::string token_weakness(std::string_view token);

// A tokens file: one token a line, "NAME ROLE SECRET", '#' starts a comment. Names are
// 1-64 of [A-Za-z0-9._-] and unique, secrets unique and not weak. Throws Error{Usage}
// naming the file and line.
TokenSet parse_tokens(std::string_view text, const std::string& file);
// Reads and parses it; refuses a file that others may read or write (Error{Usage}).
TokenSet read_tokens_file(const std::string& file);
// A file holding one secret (a token, a bank's seal key): one line without spaces, not
// weak (token_weakness), in a file only its owner may read or write. Throws Error{Usage}
// naming the file; `what` names the file in messages ("token file").
std::string read_secret_file(const std::string& file, const std::string& what);
// The single-token file of `serve --token-file` (one line: the secret), as the token
// "token-file" with the write role.
Token read_token_file(const std::string& file);

}  // namespace hashwall::server
