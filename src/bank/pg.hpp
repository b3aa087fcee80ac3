// Private to src/bank: a thin RAII layer over libpq for the PostgreSQL store (pg_store.cpp):
// a connection that prepares each statement once, parameters in text or binary form,
// results read in binary form, and libpq's failures turned into Error{Bank} lines that
// name the bank (without its password) and PostgreSQL's reason.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace hashwall::pg {

// Seconds a writer waits for another writer's lock before "locked" (as SQLite's busy
// timeout, sqlite.hpp), and for a connection before "cannot connect".
inline constexpr int kLockTimeoutS = 5;
inline constexpr int kConnectTimeoutS = 10;

// One statement parameter: text (PostgreSQL infers its type from the statement) or the
// raw bytes of a bytea.
struct Param {
  std::string bytes;
  bool binary = false;
  bool null = false;
};
inline Param text(std::string_view s) { return {std::string(s), false, false}; }
inline Param blob(std::string_view s) { return {std::string(s), true, false}; }
inline Param num(std::int64_t v) { return {std::to_string(v), false, false}; }
inline Param none() { return {{}, false, true}; }

// A result in binary form: bytea and text as their bytes, integers in network order.
class Result {
 public:
  Result() = default;
  explicit Result(PGresult* r) : r_(r, &PQclear) {}
  int rows() const { return r_ ? PQntuples(r_.get()) : 0; }
  bool null(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  std::string_view bytes(int row, int col) const {
    return {PQgetvalue(r_.get(), row, col),
            static_cast<std::size_t>(PQgetlength(r_.get(), row, col))};
  }
  std::string text(int row, int col) const { return std::string(bytes(row, col)); }
  // int2, int4 or int8 (as PQftype says).
  std::int64_t i64(int row, int col) const;

 private:
  std::shared_ptr<PGresult> r_;
};

class Conn {
 public:
  // `conninfo`: a libpq connection string or URI; `where`: the name errors carry.
  Conn(std::string conninfo, std::string where);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  const std::string& where() const { return where_; }
  PGconn* raw() const { return c_; }

  // A statement with parameters ($1, $2, ...), prepared on first use on this connection.
  Result exec(const std::string& sql, const std::vector<Param>& params = {});
  // A statement without parameters or results (BEGIN, SET, DDL), several allowed.
  void run(const std::string& sql);

  // Whether the connection is usable; reconnect() opens it again (prepared statements and
  // LISTENs are gone with the old one: the caller renews its LISTENs).
  bool ok() const { return c_ && PQstatus(c_) == CONNECTION_OK; }
  void reconnect();

  [[noreturn]] void fail(const std::string& what, const PGresult* r = nullptr) const;

 private:
  void connect();
  std::string conninfo_;
  std::string where_;
  PGconn* c_ = nullptr;
  std::map<std::string, std::string> prepared_;  // SQL -> statement name
};

// The bank's name for errors and logs: "postgresql://user@host:port/db", never the password.
// Throws Error{Usage} for a conninfo libpq cannot parse, and for one that carries a password
// (it would show in `ps`, shell history and logs: ~/.pgpass or PGPASSFILE hold it instead).
std::string redacted_location(const std::string& conninfo);

}  // namespace hashwall::pg
