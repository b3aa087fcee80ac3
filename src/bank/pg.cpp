// libpq underneath the PostgreSQL store (pg.hpp).
#include "bank/pg.hpp"

#include <arpa/inet.h>

#include <cstring>

#include "core/error.hpp"

namespace hashwall::pg {

namespace {

// libpq's messages end in a newline and may run to several lines ("connection to server
// at ... failed: ...\n\tIs the server running ...?"): the first line is the reason.
std::string first_line(const char* msg) {
  std::string s = msg ? msg : "";
  if (const auto nl = s.find('\n'); nl != std::string::npos) s.resize(nl);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s.empty() ? "unknown error" : s;
}

}  // namespace

std::int64_t Result::i64(int row, int col) const {
  const auto b = bytes(row, col);
  if (b.size() == 8) {
    std::uint64_t v = 0;
    for (const char c : b) v = (v << 8) | static_cast<std::uint8_t>(c);
    return static_cast<std::int64_t>(v);
  }
  if (b.size() == 4) {
    std::uint32_t v = 0;
    std::memcpy(&v, b.data(), 4);
    return static_cast<std::int32_t>(ntohl(v));
  }
  if (b.size() == 2) {
    std::uint16_t v = 0;
    std::memcpy(&v, b.data(), 2);
    return static_cast<std::int16_t>(ntohs(v));
  }
  return 0;  // NULL
}

Conn::Conn(std::string conninfo, std::string where)
    : conninfo_(std::move(conninfo)), where_(std::move(where)) {
  connect();
}

Conn::~Conn() {
  if (c_) PQfinish(c_);
}

void Conn::connect() {
  if (c_) PQfinish(c_);
  prepared_.clear();
  // connect_timeout: an unreachable host fails in seconds, not after TCP's minutes. The
  // keepalives and tcp_user_timeout: a server that vanished without a word (power, a
  // partition) is noticed in about ten seconds, not TCP's two hours, by a connection that
  // waits for it or has data unacknowledged.
  const char* keys[] = {"dbname",           "connect_timeout",
                        "application_name", "keepalives",
                        "keepalives_idle",  "keepalives_interval",
                        "keepalives_count", "tcp_user_timeout",
                        "client_encoding",  nullptr};
  const std::string timeout = std::to_string(kConnectTimeoutS);
  const char* values[] = {conninfo_.c_str(), timeout.c_str(), "hashwall", "1", "5", "2", "3",
                          "10000",           "UTF8",          nullptr};
  c_ = PQconnectdbParams(keys, values, /*expand_dbname=*/1);
  if (!c_) throw Error(ErrorKind::Bank, where_, "cannot connect: out of memory");
  if (PQstatus(c_) != CONNECTION_OK)
    throw Error(ErrorKind::Bank, where_, "cannot connect: " + first_line(PQerrorMessage(c_)));
  // Quiet: NOTICEs ("relation already exists, skipping") are not the user's business.
  PQsetNoticeProcessor(
      c_, [](void*, const char*) {}, nullptr);
}

void Conn::reconnect() { connect(); }

void Conn::fail(const std::string& what, const PGresult* r) const {
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const std::string code = state ? state : "";
  if (code == "55P03")  // lock_not_available: lock_timeout passed
    throw Error(ErrorKind::Bank, where_,
                "the bank is locked by another writer (still busy after " +
                    std::to_string(kLockTimeoutS) + " s)");
  std::string reason = r ? first_line(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY))
                         : first_line(PQerrorMessage(c_));
  if (!ok()) reason = "lost the connection to the database: " + first_line(PQerrorMessage(c_));
  throw Error(ErrorKind::Bank, where_, (what.empty() ? "" : what + ": ") + reason);
}

Result Conn::exec(const std::string& sql, const std::vector<Param>& params) {
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    const std::string name = "hw" + std::to_string(prepared_.size());
    PGresult* r =
        PQprepare(c_, name.c_str(), sql.c_str(), static_cast<int>(params.size()), nullptr);
    Result hold(r);
    if (!r || PQresultStatus(r) != PGRES_COMMAND_OK) fail("", r);
    it = prepared_.emplace(sql, name).first;
  }
  std::vector<const char*> values(params.size());
  std::vector<int> lengths(params.size()), formats(params.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    values[i] = params[i].null ? nullptr : params[i].bytes.data();
    lengths[i] = static_cast<int>(params[i].bytes.size());
    formats[i] = params[i].binary ? 1 : 0;
  }
  PGresult* r = PQexecPrepared(c_, it->second.c_str(), static_cast<int>(params.size()),
                               values.data(), lengths.data(), formats.data(), /*binary=*/1);
  Result out(r);
  const auto st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) fail("", r);
  return out;
}

void Conn::run(const std::string& sql) {
  PGresult* r = PQexec(c_, sql.c_str());
  Result hold(r);
  const auto st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) fail("", r);
}

std::string redacted_location(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (!opts) {
    // libpq's reason may quote the string, password included: not repeated here.
    if (err) PQfreemem(err);
    throw Error(ErrorKind::Usage, "", "the bank's PostgreSQL address is not a valid libpq URI");
  }
  std::string user, host, port, db, options;
  bool password = false;
  for (auto* o = opts; o->keyword; ++o) {
    if (!o->val) continue;
    const std::string k = o->keyword;
    if (k == "user") user = o->val;
    if (k == "host" || (k == "hostaddr" && host.empty())) host = o->val;
    if (k == "port") port = o->val;
    if (k == "dbname") db = o->val;
    if (k == "options") options = o->val;
    if ((k == "password" || k == "sslpassword") && *o->val) password = true;
  }
  PQconninfoFree(opts);
  std::string out = "postgresql://" + (user.empty() ? "" : user + "@") + host +
                    (port.empty() ? "" : ":" + port) + "/" + db;
  // Several banks may share a database, each in its schema (-csearch_path=...): the options
  // tell them apart.
  if (!options.empty()) out += "?options=" + options;
  if (password)
    throw Error(ErrorKind::Usage, out,
                "the bank's address carries a password, which would show in 'ps', shell history "
                "and logs: put it in ~/.pgpass, or in a file named by PGPASSFILE or by "
                "passfile= in the address");
  return out;
}

}  // namespace hashwall::pg
