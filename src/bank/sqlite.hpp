// The SQLite wrapper of the SQLite store: a connection that reports errors against the
// bank's file name, prepared statements, and RAII transactions. Private to src/bank; no
// SQLite type appears outside this folder.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.hpp"
#include "hash/hash256.hpp"

namespace hashwall::sqlite {

// How long a writer waits for another process's lock before the bank is reported busy.
inline constexpr int kBusyTimeoutMs = 5000;

// The connection and the file name its errors are reported against.
struct Conn {
  sqlite3* db = nullptr;
  std::string path;

  [[noreturn]] void fail(int rc, const std::string& what) const {
    const int primary = rc & 0xff;
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
      throw Error(ErrorKind::Bank, path,
                  "the bank is locked by another process (still busy after " +
                      std::to_string(kBusyTimeoutMs / 1000) + " s)");
    if (primary == SQLITE_NOTADB)
      throw Error(ErrorKind::Bank, path, "not a hashwall bank: the file is not an SQLite database");
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    throw Error(ErrorKind::Bank, path, what.empty() ? msg : what + ": " + msg);
  }

  void exec(const char* sql) const {
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    if (err) sqlite3_free(err);
    if (rc != SQLITE_OK) fail(rc, "");
  }
};

class Stmt {
 public:
  Stmt(const Conn& c, const char* sql) : c_(c) {
    const int rc = sqlite3_prepare_v2(c.db, sql, -1, &s_, nullptr);
    if (rc != SQLITE_OK) c.fail(rc, "");
  }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& bind(int i, std::int64_t v) { return check(sqlite3_bind_int64(s_, i, v)); }
  Stmt& bind(int i, std::string_view v) {
    return check(sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }
  Stmt& bind(int i, const Hash256& h) {
    return check(sqlite3_bind_blob(s_, i, h.bytes.data(), static_cast<int>(h.bytes.size()),
                                   SQLITE_TRANSIENT));
  }
  Stmt& bind_null(int i) { return check(sqlite3_bind_null(s_, i)); }
  Stmt& bind_blob(int i, std::string_view v) {
    // An empty view may have a null data pointer, which SQLite would store as NULL.
    if (v.empty()) return check(sqlite3_bind_zeroblob(s_, i, 0));
    return check(sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
  }

  // True while there is a row.
  bool step() {
    const int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    c_.fail(rc, "");
  }
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

  bool null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  std::int64_t i64(int col) const { return sqlite3_column_int64(s_, col); }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    return p ? std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(s_, col)))
             : std::string();
  }
  std::string_view blob(int col) const {
    const void* p = sqlite3_column_blob(s_, col);
    const int n = sqlite3_column_bytes(s_, col);
    return p ? std::string_view(static_cast<const char*>(p), static_cast<std::size_t>(n))
             : std::string_view();
  }

 private:
  Stmt& check(int rc) {
    if (rc != SQLITE_OK) c_.fail(rc, "");
    return *this;
  }
  const Conn& c_;
  sqlite3_stmt* s_ = nullptr;
};

// RAII for a transaction: rolls back unless committed.
class Transaction {
 public:
  Transaction(const Conn& c, const char* begin) : c_(c) { c_.exec(begin); }
  ~Transaction() {
    if (open_) sqlite3_exec(c_.db, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  void commit() {
    c_.exec("COMMIT");
    open_ = false;
  }

 private:
  const Conn& c_;
  bool open_ = true;
};

// The schema of kFormatVersion with `initial_meta` in an empty database, and the upgrade
// of an older one to it, each in one transaction (sqlite_schema.cpp).
void create_schema(const Conn& c,
                   const std::vector<std::pair<std::string, std::string>>& initial_meta);
void upgrade_schema(const Conn& c);
// Format 5's entry_claims, for a format-5 bank made before it (sqlite_schema.cpp).
void add_claims_table(const Conn& c);

}  // namespace hashwall::sqlite
