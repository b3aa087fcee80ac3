// The HTTP transport of `hashwall serve` (GNU libmicrohttpd): routes, bearer-token checks
// for writes, the bounds every request meets before any work, metrics, and graceful stop.
// The endpoint logic lives in service.hpp.
//
// Threading (#15): one event loop thread owns every socket. It reads requests, enforces
// the bounds below, answers the cheap endpoints itself and hands each complete request to
// a bounded worker pool, suspending its connection meanwhile. A slow or idle client
// therefore costs a socket and at most kConnectionMemoryBytes, never a worker: with the
// workers busy or fifty clients trickling headers, /v1/health still answers at once.
//
// Bounds, each checked before the work it guards (docs/SECURITY.md):
//   - request line and headers: they must fit in libmicrohttpd's per-connection memory
//     (kConnectionMemoryBytes; more gets 431 or 414 and the connection is closed);
//   - body: max_body_bytes whatever the framing. A Content-Length above it gets 413 after
//     the headers, without reading the body; a chunked body is cut (connection closed) when
//     it passes the limit. Compressed bodies (Content-Encoding) get 415: nothing is inflated;
//   - all bodies held at once: max_buffered_bytes, a quarter of it per client address (a
//     new upload gets 503 beyond it);
//   - time: a whole request (request line, headers, body) must arrive within request_time
//     of the connection opening (or, kept alive, of its request line); an idle kept-alive
//     connection is closed after keep_alive_seconds; an answer must be read within
//     timeout. Past a deadline the connection is closed;
//   - connections: max_connections in all and max_connections_per_ip from one address;
//     more are closed at accept;
//   - refusals (401, 403, 404, 405, 413, 415, 503 at admission) are answered after the
//     headers, without reading the body.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "bank/bank.hpp"
#include "server/auth.hpp"
#include "server/metrics.hpp"
#include "server/readiness.hpp"
#include "server/service.hpp"

namespace hashwall::server {

// libmicrohttpd's per-connection memory pool: the request line and headers must fit in
// it (with the read buffer), so it is also the header limit: about half of it in practice.
inline constexpr std::size_t kConnectionMemoryBytes = 64 * 1024;
// Parts in one multipart body (an image and a few text fields are all any endpoint takes).
inline constexpr std::size_t kMaxMultipartParts = 64;

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 8080;                 // 0: any free port (see HttpServer::bind)
  int threads = 0;                 // request workers; 0: max(8, 2 x cores)
  std::size_t max_queue = 64;      // complete requests waiting for a worker
  std::chrono::milliseconds max_queue_wait{1000};
  std::chrono::seconds timeout{10};       // to write an answer (and, as a backstop, idle reads)
  std::chrono::seconds request_time{30};  // to send a whole request: line, headers, body
  int keep_alive_seconds = 2;             // idle keep-alive connections are closed after this
  std::size_t keep_alive_max_requests = 1000;
  unsigned max_connections = 512;        // open connections in all
  unsigned max_connections_per_ip = 64;  // open connections from one client address
  // Request bodies (received, queued or being worked on) and answers not yet read, held in
  // memory at once over all connections; 0: 4 x limits.max_body_bytes. One client address
  // may hold a quarter of it (at least limits.max_body_bytes).
  std::uint64_t max_buffered_bytes = 0;
  ServiceLimits limits;
  ServiceSignals signals;  // the bank's signals (cli::signal_setup); default: PDQ only
  bool writable = true;    // POST/DELETE /v1/entries enabled
  // The bearer tokens and their roles (auth.hpp). Empty on a writable server: no
  // authentication at all (serve --no-auth, loopback only), every caller may write.
  TokenSet tokens;
  // Matching, /v1/stats and /metrics need a token too (any role); /v1/health and /v1/ready
  // never do.
  bool auth_reads = false;
  // What GET /v1/ready answers (readiness.hpp), fed by the caller's follower (serve); none:
  // ready whenever the server runs, as a bank opened whole before the port opened is.
  std::shared_ptr<const Readiness> readiness;
  // One line per request (client address, method, path, status, ms, length; never bodies)
  // when set, and libmicrohttpd's own error messages.
  std::function<void(const std::string&)> access_log;
  // Called on the worker just before a match's or a write's work starts (tests hold workers
  // with it; /v1/stats and /metrics have a worker of their own and do not call it).
  std::function<void(Endpoint)> on_work_start;
};

class HttpServer {
 public:
  HttpServer(Bank& bank, ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket; returns the port (useful with port 0). Throws Error{Io}.
  int bind();
  // Serves until stop(); returns after in-flight requests have been answered.
  void run();
  // Thread-safe and idempotent; also safe to call before run().
  void stop();
  // Replaces the tokens (rotation without a restart); requests already admitted keep the
  // caller they were admitted as. Thread-safe.
  void set_tokens(TokenSet tokens);

  Metrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hashwall::server
