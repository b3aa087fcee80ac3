// Private to src/server: the state behind an HttpServer and the members its files share
// (server.cpp: the connections, the event loop, start and stop; requests.cpp: a request
// from its headers to its answer: admission, routing, authorization and its work).
#pragma once

#include <microhttpd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "server/server.hpp"
#include "server/transport.hpp"

namespace hashwall::server {

using namespace transport_detail;

struct HttpServer::Impl {
  Impl(Bank& b, ServerOptions o);
  ~Impl();

  Bank& bank;
  ServerOptions opt;
  Metrics metrics;
  Service service;
  Clock::time_point started;
  mutable std::mutex tokens_mu;
  std::shared_ptr<const TokenSet> tokens;
  // serve --no-auth (loopback only): a writable server started without tokens. Fixed at
  // start, so that no later token set can turn authentication off.
  bool no_auth_mode = false;

  int listen_fd = -1;  // ours until the daemon takes it
  int wake_fd = -1;    // eventfd: a worker finished, or stop() was called
  MHD_Daemon* daemon = nullptr;
  // The loop thread's alone: the open connections, for their deadlines.
  std::unordered_set<Conn*> conns;

  std::unique_ptr<WorkQueue> workers;  // matches and writes
  std::unique_ptr<WorkQueue> monitor;  // /v1/stats and /metrics, outside the queue's limit
  std::atomic<std::int64_t> depth{0};
  std::atomic<std::int64_t> in_flight{0};  // requests with a worker or waiting for one
  std::unique_ptr<Budget> budget;          // bodies and unread answers held, by client address

  std::mutex stop_mu;
  std::atomic<bool> stopping{false};
  // Graceful stop: requests begun before it are answered, later ones get 503, every
  // answer closes its connection; the loop ends once nothing is in progress (or the drain
  // deadline has passed and the workers are done).
  bool draining = false;      // loop thread
  bool closing_down = false;  // loop thread: the drain is over, nothing new starts
  Clock::time_point drain_started;

  double uptime() const { return std::chrono::duration<double>(Clock::now() - started).count(); }

  void wake() {
    const std::uint64_t one = 1;
    if (wake_fd >= 0) [[maybe_unused]]
      auto n = ::write(wake_fd, &one, sizeof one);
  }

  // --- requests.cpp ------------------------------------------------------------------

  json settings() const;
  Reply busy(const std::string& why) const;
  std::shared_ptr<const TokenSet> current_tokens() const;
  static Reply unauthorized(const std::string& why);
  std::optional<Reply> authorize(Request& rq, bool write) const;

  // The endpoints.
  struct Route {
    const char* method;
    Endpoint endpoint;
    bool write;
  };
  static std::optional<std::vector<Route>> routes_of(const std::string& path);
  Answer health() const;
  Answer ready() const;
  Answer prometheus();
  Answer work(const Request& rq);
  Reply endpoint_reply(const Request& rq);

  // libmicrohttpd callbacks, all on the loop thread: a request's.
  MHD_Result queue(Request& rq, const Answer& a);
  MHD_Result answer_now(Request& rq, Answer a);
  MHD_Result refuse(Request& rq, const Reply& r);
  MHD_Result on_headers(MHD_Connection* mc, Request& rq, const char* url, const char* method);
  bool reserve(Request& rq, std::uint64_t n);
  bool on_body(Request& rq, const char* data, std::size_t n);
  MHD_Result on_complete(Request& rq);

  // --- server.cpp ----------------------------------------------------------------------

  // libmicrohttpd callbacks, all on the loop thread: its entry points, the connections'.
  static MHD_Result on_access(void* cls, MHD_Connection* mc, const char* url, const char* method,
                              const char*, const char* upload, size_t* upload_size, void** con_cls);
  static void* on_uri(void* cls, const char*, MHD_Connection* mc) noexcept;
  static void on_completed(void* cls, MHD_Connection*, void** con_cls,
                           MHD_RequestTerminationCode) noexcept;
  static void on_connection(void* cls, MHD_Connection* mc, void** socket_context,
                            MHD_ConnectionNotificationCode code) noexcept;
  static void on_mhd_log(void* cls, const char* fmt, va_list ap) noexcept;
  void log(const Request& rq);

  // The event loop.
  void sweep();
  bool busy_connections() const;
  void loop();
  bool answering() const;
};

}  // namespace hashwall::server
