#include "server/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <sys/stat.h>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.hpp"

namespace hashwall::server {

namespace {

std::string slurp_private(const std::string& file, const char* what) {
  // A secret others can read guards nothing; one they can write, neither.
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0)
    throw Error(ErrorKind::Io, file, std::string("cannot read the ") + what);
  if (st.st_mode & 077)
    throw Error(
        ErrorKind::Usage, file,
        std::string("the ") + what + " is readable or writable by other users (chmod 600 it)");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(ErrorKind::Io, file, std::string("cannot read the ") + what);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool valid_name(std::string_view n) {
  if (n.empty() || n.size() > 64) return false;
  for (const char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return false;
  return true;
}

}  // namespace

const char* role_name(Role r) noexcept {
  switch (r) {
    case Role::Read:
      return "read";
    case Role::Write:
      return "write";
    case Role::Admin:
      return "admin";
    case Role::Match:
      break;
  }
  return "match";
}

std::optional<Role> parse_role(std::string_view s) noexcept {
  for (const Role r : {Role::Match, Role::Read, Role::Write, Role::Admin})
    if (s == role_name(r)) return r;
  return std::nullopt;
}

TokenSet::TokenSet(std::vector<Token> tokens) : tokens_(std::move(tokens)) {}

const Token* TokenSet::find(std::string_view presented) const noexcept {
  if (presented.empty()) return nullptr;
  unsigned char p[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), p);
  const Token* found = nullptr;
  for (const Token& t : tokens_) {  // every one, whatever matched before
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(t.secret.data()), t.secret.size(), d);
    if (CRYPTO_memcmp(p, d, sizeof p) == 0 && !t.secret.empty()) found = &t;
  }
  return found;
}

std::string token_weakness(std::string_view token) {
  if (token.size() < 16) return "the token is too short (at least 16 characters)";
  std::set<char> distinct(token.begin(), token.end());
  if (distinct.size() < 8)
    return "the token has only " + std::to_string(distinct.size()) +
           " different characters (at least 8; make one with 'openssl rand -hex 32')";
  bool digit = false, lower = false, upper = false, other = false;
  for (const char c : token) {
    if (c >= '0' && c <= '9')
      digit = true;
    else if (c >= 'a' && c <= 'z')
      lower = true;
    else if (c >= 'A' && c <= 'Z')
      upper = true;
    else
      other = true;
  }
  const int alphabet = (digit ? 10 : 0) + (lower ? 26 : 0) + (upper ? 26 : 0) + (other ? 32 : 0);
  const double bits = static_cast<double>(token.size()) * std::log2(static_cast<double>(alphabet));
  if (bits < 64)
    return "the token is too weak (about " + std::to_string(static_cast<int>(bits)) +
           " bits, at least 64; make one with 'openssl rand -hex 32')";
  return {};
}

TokenSet parse_tokens(std::string_view text, const std::string& file) {
  std::vector<Token> out;
  std::set<std::string> names, secrets;
  std::size_t line_no = 0;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    const std::string where = file + ":" + std::to_string(line_no);
    // '#' starts a comment at the start of a line or after a blank; inside a secret it is
    // part of the secret.
    for (std::size_t i = 0; i < line.size(); ++i)
      if (line[i] == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) {
        line.resize(i);
        break;
      }
    std::istringstream fields(line);
    std::string name, role, secret, extra;
    if (!(fields >> name)) continue;  // blank or comment
    if (!(fields >> role >> secret) || (fields >> extra))
      throw Error(ErrorKind::Usage, where, "expected 'NAME ROLE SECRET'");
    if (!valid_name(name))
      throw Error(ErrorKind::Usage, where,
                  "the token name must be 1-64 letters, digits, '.', '_' or '-'");
    const auto r = parse_role(role);
    if (!r)
      throw Error(ErrorKind::Usage, where,
                  "unknown role '" + role.substr(0, 20) + "' (match, read, write or admin)");
    if (const auto why = token_weakness(secret); !why.empty())
      throw Error(ErrorKind::Usage, where, "token '" + name + "': " + why);
    if (!names.insert(name).second)
      throw Error(ErrorKind::Usage, where, "the token name '" + name + "' is used twice");
    if (!secrets.insert(secret).second)
      throw Error(ErrorKind::Usage, where, "token '" + name + "' has the secret of another");
    out.push_back(Token{name, *r, secret});
  }
  if (out.empty()) throw Error(ErrorKind::Usage, file, "the tokens file holds no token");
  return TokenSet(std::move(out));
}

TokenSet read_tokens_file(const std::string& file) {
  return parse_tokens(slurp_private(file, "tokens file"), file);
}

std::string read_secret_file(const std::string& file, const std::string& what) {
  std::string secret = slurp_private(file, what.c_str());
  const auto b = secret.find_first_not_of(" \t\r\n");
  const auto e = secret.find_last_not_of(" \t\r\n");
  secret = b == std::string::npos ? "" : secret.substr(b, e - b + 1);
  if (secret.empty()) throw Error(ErrorKind::Usage, file, "the " + what + " is empty");
  if (secret.find_first_of(" \t\r\n") != std::string::npos)
    throw Error(ErrorKind::Usage, file, "the secret must be one line without spaces");
  if (const auto why = token_weakness(secret); !why.empty())
    throw Error(ErrorKind::Usage, file, why);
  return secret;
}

Token read_token_file(const std::string& file) {
  return Token{"token-file", Role::Write, read_secret_file(file, "token file")};
}

}  // namespace hashwall::server
