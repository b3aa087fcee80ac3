// The HTTP transport of `hashwall serve` (server.hpp), its connections: binding, starting
// and stopping the daemon, the event loop with the deadlines it enforces, and the
// libmicrohttpd callbacks that follow a connection and dispatch a request's calls to
// requests.cpp (a request from its headers to its answer). The worker queue, the memory
// budget and the request state are in transport.hpp.
#include "server/server.hpp"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "core/error.hpp"
#include "core/text.hpp"
#include "server/server_impl.hpp"

namespace hashwall::server {

HttpServer::Impl::Impl(Bank& b, ServerOptions o)
    : bank(b),
      opt(std::move(o)),
      service(b, opt.limits, metrics, opt.writable, opt.signals),
      started(Clock::now()) {
  if (opt.threads <= 0)
    opt.threads = static_cast<int>(std::max(8u, 2 * std::thread::hardware_concurrency()));
  // The largest body (a video on /v1/match, or any body) fits one client's share.
  const std::uint64_t largest = opt.limits.max_match_body();
  if (opt.max_buffered_bytes == 0) opt.max_buffered_bytes = 4 * largest;
  budget = std::make_unique<Budget>(opt.max_buffered_bytes,
                                    std::max<std::uint64_t>(largest, opt.max_buffered_bytes / 4));
  tokens = std::make_shared<const TokenSet>(opt.tokens);
  no_auth_mode = opt.writable && opt.tokens.empty();
}

HttpServer::Impl::~Impl() {
  if (listen_fd >= 0) ::close(listen_fd);
  if (wake_fd >= 0) ::close(wake_fd);
}

// --- libmicrohttpd callbacks, all on the loop thread -------------------------------

MHD_Result HttpServer::Impl::on_access(void* cls, MHD_Connection* mc, const char* url,
                                       const char* method, const char*, const char* upload,
                                       size_t* upload_size, void** con_cls) {
  auto* self = static_cast<Impl*>(cls);
  auto* rq = static_cast<Request*>(*con_cls);
  if (!rq) return MHD_NO;  // every request gets one in on_uri
  try {  // nothing may unwind through libmicrohttpd's C frames: the connection closes
    if (!rq->headers_seen) return self->on_headers(mc, *rq, url, method);
    if (*upload_size > 0) {
      const std::size_t n = *upload_size;
      *upload_size = 0;
      return self->on_body(*rq, upload, n) ? MHD_YES : MHD_NO;
    }
    return self->on_complete(*rq);
  } catch (...) {
    return MHD_NO;
  }
}

// Called when a request line has arrived: the request starts here.
void* HttpServer::Impl::on_uri(void* cls, const char*, MHD_Connection* mc) noexcept {
  auto* self = static_cast<Impl*>(cls);
  auto* rq = new (std::nothrow) Request();
  if (!rq) return nullptr;
  rq->start = Clock::now();
  const auto* info = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  if (info && info->socket_context) {
    auto* c = static_cast<Conn*>(info->socket_context);
    delete c->current;  // one that never reached the handler
    c->current = rq;
    rq->conn = c;
    if (c->phase != Phase::Fresh) c->since = rq->start;
    c->phase = Phase::Receiving;
  }
  (void)self;
  return rq;
}

void HttpServer::Impl::on_completed(void* cls, MHD_Connection*, void** con_cls,
                                    MHD_RequestTerminationCode) noexcept {
  auto* self = static_cast<Impl*>(cls);
  auto* rq = static_cast<Request*>(*con_cls);
  *con_cls = nullptr;
  if (!rq) return;
  if (rq->status) {
    try {
      self->log(*rq);
    } catch (...) {  // a log line lost, not the server
    }
  }
  if (Conn* c = rq->conn) {
    if (c->current == rq) c->current = nullptr;
    c->phase = Phase::Idle;
    c->since = Clock::now();
  }
  delete rq;
}

void HttpServer::Impl::on_connection(void* cls, MHD_Connection* mc, void** socket_context,
                                     MHD_ConnectionNotificationCode code) noexcept {
  auto* self = static_cast<Impl*>(cls);
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    auto* c = new (std::nothrow) Conn();
    if (!c) return;  // not tracked: libmicrohttpd's own timeout still applies
    const auto* info = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    c->fd = info ? info->connect_fd : -1;
    c->since = Clock::now();
    try {
      self->conns.insert(c);
    } catch (...) {
      delete c;
      return;
    }
    *socket_context = c;
  } else if (auto* c = static_cast<Conn*>(*socket_context)) {
    self->conns.erase(c);
    delete c->current;
    delete c;
    *socket_context = nullptr;
  }
}

void HttpServer::Impl::on_mhd_log(void* cls, const char* fmt, va_list ap) noexcept {
  auto* self = static_cast<Impl*>(cls);
  if (!self->opt.access_log) return;
  char buf[512];
  std::vsnprintf(buf, sizeof buf, fmt, ap);
  try {
    std::string line = buf;
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
    self->opt.access_log("libmicrohttpd: " + escape_control(line));
  } catch (...) {
  }
}

void HttpServer::Impl::log(const Request& rq) {
  const double secs = std::chrono::duration<double>(Clock::now() - rq.start).count();
  metrics.record(rq.endpoint, rq.status, secs);
  if (!opt.access_log) return;
  // The path as the client sent it may hold anything once decoded (%0a, escape
  // sequences): escaped, and cut, so that one request is one log line.
  const std::string path = escape_control(rq.path.substr(0, 200));
  const std::string addr = escape_control(rq.addr.substr(0, 64));
  const std::string len = escape_control(rq.content_length.substr(0, 20));
  char line[1200];
  std::snprintf(line, sizeof line, "%s %s %s %s %d %.1fms %s bytes", addr.c_str(),
                rq.caller.c_str(), escape_control(rq.method.substr(0, 16)).c_str(), path.c_str(),
                rq.status, secs * 1e3, len.empty() ? "0" : len.c_str());
  opt.access_log(line);
}

// Closes the connections past their deadline (shutdown: libmicrohttpd then sees the end
// of the stream and cleans up on this same thread, so the descriptor is still its own).
void HttpServer::Impl::sweep() {
  const auto now = Clock::now();
  for (Conn* c : conns) {
    if (c->closing || c->fd < 0) continue;
    Clock::duration limit{};
    switch (c->phase) {
      case Phase::Fresh:
      case Phase::Receiving:
        limit = opt.request_time;
        break;
      case Phase::Idle:
        limit = std::chrono::seconds(opt.keep_alive_seconds);
        break;
      case Phase::Answering:
        limit = opt.timeout;
        break;
      case Phase::Working:
        continue;
    }
    if (now - c->since <= limit) continue;
    if (c->phase == Phase::Fresh || c->phase == Phase::Receiving) metrics.record_closed_deadline();
    ::shutdown(c->fd, SHUT_RDWR);
    c->closing = true;
  }
}

bool HttpServer::Impl::busy_connections() const {
  for (const Conn* c : conns)
    if (c->phase == Phase::Working || c->phase == Phase::Answering ||
        (c->phase == Phase::Receiving && c->current && c->current->start < drain_started))
      return true;
  return false;
}

// The event loop: libmicrohttpd's epoll set and our wake-up eventfd.
void HttpServer::Impl::loop() {
  const auto* dinfo = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_EPOLL_FD);
  const int mhd_epoll = dinfo ? dinfo->epoll_fd : -1;
  const int ep = epoll_create1(EPOLL_CLOEXEC);
  bool ready = ep >= 0 && mhd_epoll >= 0;
  for (const int fd : {mhd_epoll, wake_fd}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = fd;
    ready = ready && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0;
  }
  if (!ready) {
    if (ep >= 0) ::close(ep);
    throw Error(ErrorKind::Io, "", "cannot start the event loop");
  }
  for (;;) {
    int wait_ms = 100;  // the sweep's resolution
    MHD_UNSIGNED_LONG_LONG to = 0;
    if (MHD_get_timeout(daemon, &to) == MHD_YES)
      wait_ms = static_cast<int>(std::min<MHD_UNSIGNED_LONG_LONG>(to, 100));
    epoll_event evs[2];
    const int n = epoll_wait(ep, evs, 2, wait_ms);
    for (int i = 0; i < n; ++i)
      if (evs[i].data.fd == wake_fd) {
        std::uint64_t v;
        [[maybe_unused]] auto r = ::read(wake_fd, &v, sizeof v);
      }
    MHD_run(daemon);
    sweep();
    if (stopping && !draining) {
      draining = true;
      drain_started = Clock::now();
    }
    if (draining) {
      const auto deadline =
          drain_started + std::max<Clock::duration>(opt.timeout, std::chrono::seconds(1));
      const bool idle = in_flight.load() == 0 && !busy_connections();
      // Past the deadline only the workers are waited for: a suspended connection must
      // be resumed (and answered) before the daemon stops.
      if (idle || (Clock::now() > deadline && in_flight.load() == 0)) break;
    }
  }
  // The last turns: a request completed now is refused (503), not started, and the
  // answers already resumed or queued are written, for at most a second.
  closing_down = true;
  const auto last = Clock::now() + std::chrono::seconds(1);
  do {
    epoll_event evs[2];
    epoll_wait(ep, evs, 2, 10);
    MHD_run(daemon);
  } while (Clock::now() < last && (in_flight.load() > 0 || answering()));
  ::close(ep);
}

bool HttpServer::Impl::answering() const {
  for (const Conn* c : conns)
    if (c->phase == Phase::Working || c->phase == Phase::Answering) return true;
  return false;
}

HttpServer::HttpServer(Bank& bank, ServerOptions options)
    : impl_(std::make_unique<Impl>(bank, std::move(options))) {}

HttpServer::~HttpServer() {
  stop();
  if (impl_->daemon) MHD_stop_daemon(impl_->daemon);
}

int HttpServer::bind() {
  auto& o = impl_->opt;
  const std::string where = o.host + ":" + std::to_string(o.port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (getaddrinfo(o.host.c_str(), std::to_string(o.port).c_str(), &hints, &res) != 0 || !res)
    throw Error(ErrorKind::Io, where, "cannot listen here (not an address of this machine)");
  int fd = -1;
  for (addrinfo* ai = res; ai && fd < 0; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) continue;
    const int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(fd, 511) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0)
    throw Error(ErrorKind::Io, where,
                "cannot listen here (address in use, or not an address of this machine)");
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  o.port = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(ss).sin6_port
                                          : reinterpret_cast<sockaddr_in&>(ss).sin_port);
  if (impl_->listen_fd >= 0) ::close(impl_->listen_fd);
  impl_->listen_fd = fd;
  return o.port;
}

void HttpServer::run() {
  Impl& s = *impl_;
  if (s.listen_fd < 0) bind();
  {
    std::lock_guard lock(s.stop_mu);
    if (s.stopping) return;
    s.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s.wake_fd < 0) throw Error(ErrorKind::Io, "", "cannot create an eventfd");
  }
  s.workers = std::make_unique<WorkQueue>(static_cast<std::size_t>(s.opt.threads), s.opt.max_queue,
                                          &s.depth);
  s.monitor = std::make_unique<WorkQueue>(1, 16, nullptr);
  const unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  s.daemon = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &Impl::on_access, &s, MHD_OPTION_EXTERNAL_LOGGER,
      &Impl::on_mhd_log, &s, MHD_OPTION_LISTEN_SOCKET, s.listen_fd, MHD_OPTION_CONNECTION_LIMIT,
      s.opt.max_connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, s.opt.max_connections_per_ip,
      MHD_OPTION_CONNECTION_TIMEOUT,
      static_cast<unsigned>(std::max<std::int64_t>(
          {s.opt.timeout.count(), s.opt.request_time.count(), s.opt.keep_alive_seconds})),
      MHD_OPTION_CONNECTION_MEMORY_LIMIT, kConnectionMemoryBytes, MHD_OPTION_NOTIFY_COMPLETED,
      &Impl::on_completed, &s, MHD_OPTION_NOTIFY_CONNECTION, &Impl::on_connection, &s,
      MHD_OPTION_URI_LOG_CALLBACK, &Impl::on_uri, &s, MHD_OPTION_END);
  if (!s.daemon) throw Error(ErrorKind::Io, s.opt.host, "cannot start the HTTP server");
  s.listen_fd = -1;  // the daemon's now; it closes it when stopped
  try {
    s.loop();
  } catch (...) {
    s.workers->shutdown();
    s.monitor->shutdown();
    MHD_stop_daemon(s.daemon);
    s.daemon = nullptr;
    throw;
  }
  s.workers->shutdown();
  s.monitor->shutdown();
  MHD_stop_daemon(s.daemon);
  s.daemon = nullptr;
}

void HttpServer::stop() {
  std::lock_guard lock(impl_->stop_mu);
  impl_->stopping = true;
  impl_->wake();
}

void HttpServer::set_tokens(TokenSet tokens) {
  if (impl_->no_auth_mode)
    throw std::invalid_argument("this server runs without authentication (--no-auth)");
  if (tokens.empty()) throw std::invalid_argument("an empty token set would lock every caller out");
  auto next = std::make_shared<const TokenSet>(std::move(tokens));
  std::lock_guard lock(impl_->tokens_mu);
  impl_->tokens = std::move(next);
}

Metrics& HttpServer::metrics() { return impl_->metrics; }

}  // namespace hashwall::server
