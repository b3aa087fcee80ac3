#include "server/server.hpp"

#include <httplib.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "core/error.hpp"
#include "core/text.hpp"

namespace hashwall::server {

namespace {

using Clock = std::chrono::steady_clock;

// What the task queue tells the request handlers about the connection they serve. The
// worker thread that runs a connection runs all of its requests, so thread-local is
// per-connection here.
struct ConnectionState {
  bool overloaded = false;     // served by the reject pool: answer 503
  bool first_request = false;  // the queue wait applies to the first request only
  Clock::time_point enqueued{};
  Clock::time_point request_start{};
  bool have_start = false;
};
thread_local ConnectionState tls_conn;

// A bounded replacement for httplib's ThreadPool: at most max_queue connections wait for
// the workers; the overflow goes to a small reject pool that answers 503 at once.
class BoundedQueue final : public httplib::TaskQueue {
 public:
  BoundedQueue(std::size_t workers, std::size_t max_queue, std::size_t rejecters,
               std::atomic<std::int64_t>& depth)
      : max_queue_(max_queue), depth_(depth) {
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { work(false); });
    for (std::size_t i = 0; i < rejecters; ++i) threads_.emplace_back([this] { work(true); });
  }
  ~BoundedQueue() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    std::unique_lock lock(mu_);
    if (jobs_.size() >= max_queue_) {
      rejects_.push_back(Job{std::move(fn), Clock::now()});
      lock.unlock();
      reject_cv_.notify_one();
      return;
    }
    jobs_.push_back(Job{std::move(fn), Clock::now()});
    depth_.store(static_cast<std::int64_t>(jobs_.size()), std::memory_order_relaxed);
    lock.unlock();
    cv_.notify_one();
  }

  // httplib calls this after its accept loop ends: every connection already accepted is
  // still served (in-flight requests finish), then the threads are joined.
  void shutdown() override {
    {
      std::lock_guard lock(mu_);
      if (shut_) return;
      shut_ = true;
    }
    cv_.notify_all();
    reject_cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

 private:
  struct Job {
    std::function<void()> fn;
    Clock::time_point enqueued;
  };

  void work(bool rejecter) {
    auto& queue = rejecter ? rejects_ : jobs_;
    auto& cv = rejecter ? reject_cv_ : cv_;
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu_);
        cv.wait(lock, [&] { return !queue.empty() || shut_; });
        if (queue.empty()) return;  // shut down and drained
        job = std::move(queue.front());
        queue.pop_front();
        if (!rejecter)
          depth_.store(static_cast<std::int64_t>(jobs_.size()), std::memory_order_relaxed);
      }
      tls_conn = ConnectionState{};
      tls_conn.overloaded = rejecter;
      tls_conn.first_request = true;
      tls_conn.enqueued = job.enqueued;
      job.fn();
    }
  }

  std::size_t max_queue_;
  std::atomic<std::int64_t>& depth_;
  std::mutex mu_;
  std::condition_variable cv_, reject_cv_;
  std::deque<Job> jobs_, rejects_;
  bool shut_ = false;
  std::vector<std::thread> threads_;
};

std::string reason_for(int status) {
  switch (status) {
    case 400:
      return "malformed request";
    case 401:
      return "missing or wrong bearer token";
    case 404:
      return "not found";
    case 405:
      return "method not allowed";
    case 413:
      return "request body too large";
    case 414:
      return "request URI too long";
    case 415:
      return "unsupported media type";
    case 503:
      return "service unavailable";
    default:
      break;
  }
  return status >= 500 ? "internal error" : "request failed";
}

void send(httplib::Response& res, const Reply& r) {
  res.status = r.status;
  for (const auto& [k, v] : r.headers) res.set_header(k, v);
  res.set_content(r.body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// A request body read through httplib's content reader. (Its plain handlers cap
// application/x-www-form-urlencoded bodies at 8 KB, which is what `curl --data-binary`
// sends without -H: photos would get 413.) Multipart parts are kept whole.
struct Body {
  std::string raw;
  std::vector<httplib::MultipartFormData> parts;
  const httplib::MultipartFormData* part(const std::string& name) const {
    for (const auto& p : parts)
      if (p.name == name) return &p;
    return nullptr;
  }
};

// False when the body could not be read (too large: httplib has set 413; cut off: 400).
bool read_body(const httplib::Request& req, const httplib::ContentReader& reader, Body& body) {
  if (req.is_multipart_form_data()) {
    return reader(
        [&](const httplib::MultipartFormData& part) {
          body.parts.push_back(part);
          return body.parts.size() <= 64;
        },
        [&](const char* data, std::size_t n) {
          body.parts.back().content.append(data, n);
          return true;
        });
  }
  return reader([&](const char* data, std::size_t n) {
    body.raw.append(data, n);
    return true;
  });
}

std::string param_or(const httplib::Request& req, const Body& body, const char* key,
                     std::string fallback = {}) {
  if (req.has_param(key)) return req.get_param_value(key);
  if (const auto* p = body.part(key)) return p->content;  // multipart text field
  return fallback;
}

struct Upload {
  std::span<const std::uint8_t> bytes;
  std::string name;
};

// The image of a request: the multipart part named 'image' or 'file' (or the only file
// part), else the raw body.
std::optional<Upload> upload_of(const httplib::Request& req, const Body& body, std::string& error) {
  auto as_span = [](const std::string& s) {
    return std::span(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  };
  if (!req.is_multipart_form_data())
    return Upload{as_span(body.raw), param_or(req, body, "name", "upload")};
  for (const char* key : {"image", "file"}) {
    if (const auto* p = body.part(key))
      return Upload{as_span(p->content), p->filename.empty() ? std::string("upload") : p->filename};
  }
  const httplib::MultipartFormData* only = nullptr;
  for (const auto& part : body.parts) {
    if (part.filename.empty()) continue;
    if (only) {
      error = "several files in the multipart body: name the image part 'image'";
      return std::nullopt;
    }
    only = &part;
  }
  if (!only) {
    error = "no image in the multipart body: send it as the part 'image'";
    return std::nullopt;
  }
  return Upload{as_span(only->content), only->filename};
}

bool is_hash_content_type(const std::string& content_type) {
  const std::string ct = content_type.substr(0, content_type.find(';'));
  return ct == "application/json" || ct.rfind("text/", 0) == 0;
}

}  // namespace

struct HttpServer::Impl {
  Impl(Bank& b, ServerOptions o)
      : bank(b),
        opt(std::move(o)),
        service(b, opt.limits, metrics, opt.writable, opt.signals),
        started(Clock::now()) {}

  Bank& bank;
  ServerOptions opt;
  Metrics metrics;
  Service service;
  httplib::Server svr;
  std::atomic<std::int64_t> depth{0};
  std::atomic<std::int64_t> in_flight{0};
  Clock::time_point started;
  std::atomic<bool> stopping{false};
  bool bound = false;
  // Graceful stop (stop() while running): connections accepted before it are served,
  // later ones get 503, every answer closes its connection; once the queue is empty and
  // nothing is in flight (or the drain deadline passed) the listener is stopped.
  std::atomic<bool> draining{false};
  std::atomic<std::int64_t> drain_started_ns{0};  // steady_clock, since its epoch
  std::mutex drain_mu;
  std::thread drainer;

  bool enqueued_after_drain() const {
    const auto since = drain_started_ns.load();
    return since != 0 && tls_conn.enqueued.time_since_epoch() >= std::chrono::nanoseconds(since);
  }

  void drain() {
    const auto deadline =
        Clock::now() + std::max<Clock::duration>(opt.timeout, std::chrono::seconds(1));
    const auto idle = [&] { return depth.load() == 0 && in_flight.load() == 0; };
    // Two idle looks 20 ms apart: a connection accepted just now reaches the queue first.
    int quiet = 0;
    while (Clock::now() < deadline && quiet < 2) {
      quiet = idle() ? quiet + 1 : 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    svr.stop();
  }

  double uptime() const { return std::chrono::duration<double>(Clock::now() - started).count(); }

  json settings() const {
    json s;
    s["threads"] = opt.threads;
    s["max_queue"] = opt.max_queue;
    s["max_queue_wait_ms"] = opt.max_queue_wait.count();
    s["timeout_s"] = opt.timeout.count();
    s["max_body_bytes"] = opt.limits.max_body_bytes;
    s["max_pixels"] = opt.limits.max_pixels;
    s["max_hashes"] = opt.limits.max_hashes;
    s["writable"] = opt.writable;
    s["auth"] = opt.writable ? (opt.token ? "bearer" : "none") : "read-only";
    return s;
  }

  // Admission: the bounded queue's verdict on this request, nullopt to go ahead.
  std::optional<Reply> admit(Endpoint ep) {
    const bool cheap =
        ep == Endpoint::Health || ep == Endpoint::Metrics;  // monitoring sees overload
    const bool first = std::exchange(tls_conn.first_request, false);
    if (cheap) return std::nullopt;
    if (tls_conn.overloaded) {
      metrics.record_rejected_queue_full();
      Reply r = error_reply(503, "server busy: the request queue is full (" +
                                     std::to_string(opt.max_queue) + " waiting); retry later");
      r.headers.emplace_back("Retry-After", std::to_string(opt.limits.retry_after_seconds));
      r.headers.emplace_back("Connection", "close");
      return r;
    }
    if (first && draining && enqueued_after_drain()) {
      metrics.record_rejected_stopping();
      Reply r =
          error_reply(503, "server is shutting down; retry later (another instance may take over)");
      r.headers.emplace_back("Retry-After", std::to_string(opt.limits.retry_after_seconds));
      r.headers.emplace_back("Connection", "close");
      return r;
    }
    if (first && Clock::now() - tls_conn.enqueued > opt.max_queue_wait) {
      metrics.record_rejected_queue_wait();
      Reply r = error_reply(503, "server busy: the request waited more than " +
                                     std::to_string(opt.max_queue_wait.count()) +
                                     " ms for a worker; retry later");
      r.headers.emplace_back("Retry-After", std::to_string(opt.limits.retry_after_seconds));
      r.headers.emplace_back("Connection", "close");
      return r;
    }
    return std::nullopt;
  }

  std::optional<Reply> authorize(const httplib::Request& req) const {
    if (!opt.writable)
      return error_reply(403, "this service is read-only (started with --read-only)");
    if (!opt.token) return std::nullopt;
    std::string presented;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.size() > 7 &&
        (auth.compare(0, 7, "Bearer ") == 0 || auth.compare(0, 7, "bearer ") == 0))
      presented = auth.substr(7);
    if (token_matches(presented, *opt.token)) return std::nullopt;
    Reply r = error_reply(401, presented.empty() ? "writes need 'Authorization: Bearer TOKEN'"
                                                 : "wrong bearer token");
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"hashwall\"");
    return r;
  }

  struct InFlight {
    std::atomic<std::int64_t>& n;
    explicit InFlight(std::atomic<std::int64_t>& c) : n(c) {
      n.fetch_add(1, std::memory_order_relaxed);
    }
    ~InFlight() { n.fetch_sub(1, std::memory_order_relaxed); }
  };

  using Fn = std::function<Reply(const httplib::Request&)>;
  httplib::Server::Handler handler(Endpoint ep, bool write, Fn fn) {
    return
        [this, ep, write, fn = std::move(fn)](const httplib::Request& req, httplib::Response& res) {
          InFlight guard(in_flight);
          if (auto r = admit(ep)) return send(res, *r);
          if (write)
            if (auto r = authorize(req)) return send(res, *r);
          send(res, guarded([&] { return fn(req); }, opt.limits.retry_after_seconds));
        };
  }

  // Handlers with a body: admission and the token are checked before it is read, so a
  // refused upload costs no more than its headers.
  using BodyFn = std::function<Reply(const httplib::Request&, const Body&)>;
  httplib::Server::HandlerWithContentReader body_handler(Endpoint ep, bool write, BodyFn fn) {
    return [this, ep, write, fn = std::move(fn)](const httplib::Request& req,
                                                 httplib::Response& res,
                                                 const httplib::ContentReader& reader) {
      InFlight guard(in_flight);
      std::optional<Reply> refused = admit(ep);
      if (!refused && write) refused = authorize(req);
      Body body;
      // The body is read even when refused, so the connection stays in step.
      const bool ok = read_body(req, reader, body);
      if (refused) return send(res, *refused);
      if (!ok) {
        if (res.status == 413)
          return send(res, error_reply(413, "request body too large (limit " +
                                                std::to_string(opt.limits.max_body_bytes) +
                                                " bytes; see --max-body)"));
        return send(
            res, error_reply(400, "the request body could not be read (truncated or malformed)"));
      }
      send(res, guarded([&] { return fn(req, body); }, opt.limits.retry_after_seconds));
    };
  }

  void routes() {
    svr.Post(
        "/v1/match",
        body_handler(Endpoint::Match, false, [this](const httplib::Request& req, const Body& body) {
          std::string err;
          auto up = upload_of(req, body, err);
          if (!up) return error_reply(400, err);
          return service.match_image(up->bytes, up->name, req.params);
        }));
    svr.Post("/v1/match/hash",
             body_handler(
                 Endpoint::MatchHash, false, [this](const httplib::Request& req, const Body& body) {
                   if (req.is_multipart_form_data()) {
                     const auto* part = body.part("hashes");
                     if (!part) return error_reply(400, "multipart body without a 'hashes' part");
                     return service.match_hashes(part->content, part->content_type, req.params);
                   }
                   return service.match_hashes(body.raw, req.get_header_value("Content-Type"),
                                               req.params);
                 }));
    svr.Post("/v1/entries",
             body_handler(
                 Endpoint::EntriesAdd, true, [this](const httplib::Request& req, const Body& body) {
                   const std::string label = param_or(req, body, "label");
                   const std::string source = param_or(req, body, "source");
                   if (const auto* part = body.part("hashes"))
                     return service.add_hashes(part->content, part->content_type, label, source);
                   if (!req.is_multipart_form_data() &&
                       is_hash_content_type(req.get_header_value("Content-Type")))
                     return service.add_hashes(body.raw, req.get_header_value("Content-Type"),
                                               label, source);
                   std::string err;
                   auto up = upload_of(req, body, err);
                   if (!up) return error_reply(400, err);
                   return service.add_image(up->bytes, up->name, label, source);
                 }));
    svr.Delete(R"(/v1/entries/([^/]*))",
               handler(Endpoint::EntriesRemove, true, [this](const httplib::Request& req) {
                 return service.remove_entry(req.matches[1].str());
               }));
    svr.Get("/v1/health", handler(Endpoint::Health, false, [this](const httplib::Request&) {
              Reply r = service.health();
              r.body["uptime_seconds"] = uptime();
              return r;
            }));
    svr.Get("/v1/stats", handler(Endpoint::Stats, false, [this](const httplib::Request&) {
              json extra;
              extra["uptime_seconds"] = uptime();
              extra["queue_depth"] = depth.load();
              extra["in_flight"] = in_flight.load();
              std::uint64_t total = 0;
              for (int e = 0; e < kEndpointCount; ++e)
                total += metrics.requests(static_cast<Endpoint>(e));
              extra["requests"] = total;
              extra["queries"] = metrics.queries();
              extra["matches"] = metrics.matches();
              extra["server"] = settings();
              return service.stats(extra);
            }));
    svr.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      tls_conn.first_request = false;
      MetricsSnapshot g;
      g.queue_depth = depth.load();
      g.in_flight = in_flight.load();
      try {
        g.bank_entries = bank.stats().entries;
      } catch (const Error&) {
        g.bank_entries = -1;
      }
      g.uptime_seconds = uptime();
      res.set_content(metrics.prometheus(g), "text/plain; version=0.0.4");
    });

    // While draining every answer closes its connection, so keep-alive clients move on.
    svr.set_post_routing_handler([this](const httplib::Request&, httplib::Response& res) {
      if (draining) res.set_header("Connection", "close");
    });
    svr.set_pre_routing_handler([](const httplib::Request&, httplib::Response&) {
      tls_conn.request_start = Clock::now();
      tls_conn.have_start = true;
      return httplib::Server::HandlerResponse::Unhandled;
    });
    svr.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string msg = reason_for(res.status);
      if (res.status == 404) msg += ": " + req.method + " " + req.path;
      if (res.status == 413)
        msg += " (limit " + std::to_string(opt.limits.max_body_bytes) + " bytes; see --max-body)";
      send(res, error_reply(res.status, msg));
    });
    svr.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "unknown exception";
          try {
            if (ep) std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          send(res, error_reply(500, "internal error: " + what));
        });
    svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      const double secs =
          tls_conn.have_start
              ? std::chrono::duration<double>(Clock::now() - tls_conn.request_start).count()
              : 0.0;
      tls_conn.have_start = false;
      metrics.record(classify(req.method, req.path), res.status, secs);
      if (opt.access_log) {
        // The path as the client sent it may hold anything once decoded (%0a, escape
        // sequences): escaped, and cut, so that one request is one log line.
        const std::string path = escape_control(req.path.substr(0, 200));
        const std::string addr = escape_control(req.remote_addr.substr(0, 64));
        const std::string len =
            escape_control(req.get_header_value("Content-Length").substr(0, 20));
        char line[1200];
        std::snprintf(line, sizeof line, "%s %s %s %d %.1fms %s bytes", addr.c_str(),
                      escape_control(req.method.substr(0, 16)).c_str(), path.c_str(), res.status,
                      secs * 1e3, len.c_str());
        opt.access_log(line);
      }
    });
  }
};

HttpServer::HttpServer(Bank& bank, ServerOptions options)
    : impl_(std::make_unique<Impl>(bank, std::move(options))) {
  auto& o = impl_->opt;
  if (o.threads <= 0)
    o.threads = static_cast<int>(std::max(8u, 2 * std::thread::hardware_concurrency()));
  auto& svr = impl_->svr;
  Impl* impl = impl_.get();
  svr.new_task_queue = [impl] {
    return new BoundedQueue(static_cast<std::size_t>(impl->opt.threads), impl->opt.max_queue, 2,
                            impl->depth);
  };
  svr.set_payload_max_length(static_cast<std::size_t>(o.limits.max_body_bytes));
  svr.set_read_timeout(static_cast<time_t>(o.timeout.count()), 0);
  svr.set_write_timeout(static_cast<time_t>(o.timeout.count()), 0);
  svr.set_keep_alive_timeout(o.keep_alive_seconds);
  svr.set_keep_alive_max_count(std::max<std::size_t>(1, o.keep_alive_max_requests));
  svr.set_tcp_nodelay(true);
  impl_->routes();
}

HttpServer::~HttpServer() {
  stop();
  std::lock_guard lock(impl_->drain_mu);
  if (impl_->drainer.joinable()) impl_->drainer.join();
}

int HttpServer::bind() {
  auto& o = impl_->opt;
  int port = o.port;
  if (port == 0) {
    port = impl_->svr.bind_to_any_port(o.host);
    if (port < 0) throw Error(ErrorKind::Io, o.host, "cannot bind a free port on this address");
  } else if (!impl_->svr.bind_to_port(o.host, port)) {
    throw Error(ErrorKind::Io, o.host + ":" + std::to_string(port),
                "cannot listen here (address in use, or not an address of this machine)");
  }
  o.port = port;
  impl_->bound = true;
  return port;
}

void HttpServer::run() {
  if (!impl_->bound) bind();
  if (impl_->stopping) return;
  // A stop() that lands after the check above but before the listener runs finds nothing
  // to stop; this thread waits for the listener and delivers such a stop to it.
  std::atomic<bool> returned{false};
  std::thread late_stop([&] {
    while (!returned.load() && !impl_->svr.is_running())
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (!returned.load() && impl_->stopping.load()) stop();
  });
  impl_->svr.listen_after_bind();
  returned = true;
  late_stop.join();
  std::lock_guard lock(impl_->drain_mu);
  if (impl_->drainer.joinable()) impl_->drainer.join();
}

void HttpServer::stop() {
  std::lock_guard lock(impl_->drain_mu);
  impl_->stopping = true;
  // Not listening yet: run() sees `stopping` before it listens, or its late_stop thread
  // calls stop() again once the listener runs.
  if (impl_->draining || !impl_->svr.is_running()) return;
  impl_->drain_started_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
  impl_->draining = true;
  impl_->drainer = std::thread([impl = impl_.get()] { impl->drain(); });
}

Metrics& HttpServer::metrics() { return impl_->metrics; }

}  // namespace hashwall::server
