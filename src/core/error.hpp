// Typed errors: library code throws hashwall::Error; only src/cli turns them into
// messages and exit codes (CONVENTIONS.md, "Errors").
#pragma once

#include <stdexcept>
#include <string>

namespace hashwall {

enum class ErrorKind {
  Io,           // file cannot be read or written
  Format,       // not an image / unsupported format / malformed hash list
  TooLarge,     // over a configured limit (pixels, bytes)
  Corrupt,      // truncated or corrupt data
  Bank,         // bank file problems (schema, version, busy, integrity)
  Usage,        // caller asked for something impossible (bad hex, bad option value)
  Interrupted,  // stopped by a signal
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string file, std::string reason)
      : std::runtime_error(file.empty() ? reason : file + ": " + reason),
        kind_(kind),
        file_(std::move(file)),
        reason_(std::move(reason)) {}

  ErrorKind kind() const noexcept { return kind_; }
  const std::string& file() const noexcept { return file_; }
  const std::string& reason() const noexcept { return reason_; }

 private:
  ErrorKind kind_;
  std::string file_;
  std::string reason_;
};

}  // namespace hashwall
