// The HTTP transport of `hashwall serve` (cpp-httplib): routes, bearer-token checks for
// writes, body and queue limits, metrics, and graceful stop. The endpoint logic lives in
// service.hpp.
//
// Threading: httplib hands each accepted connection to a task queue. hashwall's queue has
// `threads` workers and holds at most `max_queue` waiting connections; a connection that
// arrives when it is full, or that waited longer than `max_queue_wait`, is answered
// 503 + Retry-After by a small separate pool instead of piling up (HMA's lock-ups under
// load came from an unbounded queue).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "bank/bank.hpp"
#include "server/metrics.hpp"
#include "server/service.hpp"

namespace hashwall::server {

struct ServerOptions {
  std::string host = "127.0.0.1";  // loopback unless told otherwise
  int port = 8080;                 // 0: any free port (see HttpServer::bind)
  int threads = 0;                 // connection workers; 0: max(8, 2 x cores)
  std::size_t max_queue = 64;      // connections waiting for a worker
  std::chrono::milliseconds max_queue_wait{1000};
  std::chrono::seconds timeout{10};  // socket read/write timeout per request
  int keep_alive_seconds = 2;        // idle keep-alive connections are closed after this
  std::size_t keep_alive_max_requests = 1000;
  ServiceLimits limits;
  ServiceSignals signals;            // the bank's signals (cli::signal_setup); default: PDQ only
  bool writable = true;              // POST/DELETE /v1/entries enabled
  std::optional<std::string> token;  // bearer token for writes; nullopt: writes need none
  // One line per request (method, path, status, ms; never bodies) when set.
  std::function<void(const std::string&)> access_log;
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

  Metrics& metrics();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace hashwall::server
