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
#include <charconv>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "core/error.hpp"
#include "core/text.hpp"

namespace hashwall::server {

namespace {

using Clock = std::chrono::steady_clock;

// Workers with a bounded wait list: push() refuses instead of queueing past max_waiting.
class WorkQueue {
 public:
  WorkQueue(std::size_t workers, std::size_t max_waiting, std::atomic<std::int64_t>* depth)
      : max_waiting_(max_waiting), depth_(depth) {
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  }
  ~WorkQueue() { shutdown(); }
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  bool push(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      if (shut_ || jobs_.size() >= max_waiting_) return false;
      jobs_.push_back(std::move(job));
      if (depth_) depth_->store(static_cast<std::int64_t>(jobs_.size()));
    }
    cv_.notify_one();
    return true;
  }
  // Runs what is queued, then joins the workers.
  void shutdown() {
    {
      std::lock_guard lock(mu_);
      if (shut_) return;
      shut_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return !jobs_.empty() || shut_; });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        if (depth_) depth_->store(static_cast<std::int64_t>(jobs_.size()));
      }
      job();
    }
  }

  std::size_t max_waiting_;
  std::atomic<std::int64_t>* depth_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool shut_ = false;
  std::vector<std::thread> threads_;
};

// Memory held by requests (bodies, and answers not yet read), in all and per client
// address: one address may hold at most its share, so that one client trickling large
// uploads cannot keep everyone else's out.
class Budget {
 public:
  Budget(std::uint64_t total, std::uint64_t per_address)
      : total_(total), per_address_(per_address) {}
  bool take(const std::string& address, std::uint64_t n) {
    std::lock_guard lock(mu_);
    std::uint64_t& mine = by_address_[address];
    if (used_ + n > total_ || mine + n > per_address_) {
      if (mine == 0) by_address_.erase(address);
      return false;
    }
    used_ += n;
    mine += n;
    return true;
  }
  void give(const std::string& address, std::uint64_t n) {
    std::lock_guard lock(mu_);
    used_ -= std::min(used_, n);
    const auto it = by_address_.find(address);
    if (it == by_address_.end()) return;
    it->second -= std::min(it->second, n);
    if (it->second == 0) by_address_.erase(it);
  }

 private:
  const std::uint64_t total_, per_address_;
  std::mutex mu_;
  std::uint64_t used_ = 0;
  std::unordered_map<std::string, std::uint64_t> by_address_;
};

// Where a connection is, for its deadline (Impl::sweep).
enum class Phase {
  Fresh,      // accepted; its first request is arriving: request_time from the accept
  Idle,       // kept alive after an answer: keep_alive until the next request line
  Receiving,  // request line seen, headers or body arriving: request_time
  Working,    // complete, with a worker (or waiting for one): no deadline here
  Answering,  // answer queued, being written: timeout
};

struct Request;

struct Conn {
  int fd = -1;
  Phase phase = Phase::Fresh;
  Clock::time_point since;
  std::size_t requests = 0;
  bool closing = false;        // shut down by the server
  Request* current = nullptr;  // the request being received or answered
};

struct Part {
  std::string name, filename, content_type, content;
};

struct Answer {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Answer to_answer(const Reply& r) {
  Answer a;
  a.status = r.status;
  a.body = r.body.dump(-1, ' ', false, json::error_handler_t::replace);
  a.headers = r.headers;
  return a;
}

// One request, from its request line to its answer; owned by its connection.
struct Request {
  Conn* conn = nullptr;
  MHD_Connection* mhd = nullptr;
  Clock::time_point start;
  bool headers_seen = false;
  bool has_body = false;  // a Content-Length above 0, or a Transfer-Encoding
  Endpoint endpoint = Endpoint::Other;
  std::string method, path, addr, content_length, content_type;
  std::optional<std::string> authorization;
  Role role = Role::Match;
  std::string caller = "-";  // the token's name, for the access log
  Params params;
  MHD_PostProcessor* pp = nullptr;
  bool multipart = false;
  bool malformed = false;  // the multipart body could not be parsed
  std::string raw;
  std::vector<Part> parts;
  std::uint64_t received = 0;  // body bytes, as sent
  std::uint64_t reserved = 0;  // of the shared memory budget (Impl::budget), for `addr`
  Budget* budget = nullptr;
  bool submitted = false;       // handed to a worker; the connection is suspended
  std::optional<Answer> ready;  // the worker's answer, queued when the connection resumes
  int status = 0;               // as answered

  ~Request() {
    if (pp) MHD_destroy_post_processor(pp);
    if (budget && reserved) budget->give(addr, reserved);
  }
  const Part* part(const std::string& name) const {
    for (const auto& p : parts)
      if (p.name == name) return &p;
    return nullptr;
  }
  std::string param_or(const char* key, std::string fallback = {}) const {
    if (auto it = params.find(key); it != params.end()) return it->second;
    if (const auto* p = part(key)) return p->content;  // multipart text field
    return fallback;
  }
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
    case 415:
      return "unsupported media type";
    case 503:
      return "service unavailable";
    default:
      break;
  }
  return status >= 500 ? "internal error" : "request failed";
}

struct Upload {
  std::span<const std::uint8_t> bytes;
  std::string name;
};

// The image of a request: the multipart part named 'image' or 'file' (or the only file
// part), else the raw body.
std::optional<Upload> upload_of(const Request& rq, std::string& error) {
  auto as_span = [](const std::string& s) {
    return std::span(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  };
  if (!rq.multipart) return Upload{as_span(rq.raw), rq.param_or("name", "upload")};
  for (const char* key : {"image", "file"}) {
    if (const auto* p = rq.part(key))
      return Upload{as_span(p->content), p->filename.empty() ? std::string("upload") : p->filename};
  }
  const Part* only = nullptr;
  for (const auto& part : rq.parts) {
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

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

std::string header(MHD_Connection* c, const char* name) {
  const char* v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
  return v ? std::string(v) : std::string();
}

std::string client_address(MHD_Connection* c) {
  const auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (!info || !info->client_addr) return "?";
  const sockaddr* sa = info->client_addr;
  const socklen_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  char host[NI_MAXHOST];
  if (getnameinfo(sa, len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0) return "?";
  return host;
}

MHD_Result collect_argument(void* cls, MHD_ValueKind, const char* key, const char* value) {
  static_cast<Params*>(cls)->emplace(key ? key : "", value ? value : "");
  return MHD_YES;
}

// Multipart parts as libmicrohttpd's post processor delivers them: a part's data may come
// in several calls (off > 0 continues it).
MHD_Result collect_part(void* cls, MHD_ValueKind, const char* key, const char* filename,
                        const char* content_type, const char*, const char* data, uint64_t off,
                        size_t size) {
  auto* rq = static_cast<Request*>(cls);
  const std::string name = key ? key : "";
  const bool same = !rq->parts.empty() && rq->parts.back().name == name;
  if (!same || (off == 0 && !rq->parts.back().content.empty())) {
    if (rq->parts.size() >= kMaxMultipartParts) {
      rq->malformed = true;
      return MHD_NO;
    }
    rq->parts.push_back(
        Part{name, filename ? filename : "", content_type ? content_type : "", std::string()});
  }
  rq->parts.back().content.append(data, size);
  return MHD_YES;
}

std::optional<std::uint64_t> parse_length(const std::string& s) {
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

}  // namespace

struct HttpServer::Impl {
  Impl(Bank& b, ServerOptions o)
      : bank(b),
        opt(std::move(o)),
        service(b, opt.limits, metrics, opt.writable, opt.signals),
        started(Clock::now()) {
    if (opt.threads <= 0)
      opt.threads = static_cast<int>(std::max(8u, 2 * std::thread::hardware_concurrency()));
    if (opt.max_buffered_bytes == 0) opt.max_buffered_bytes = 4 * opt.limits.max_body_bytes;
    budget = std::make_unique<Budget>(
        opt.max_buffered_bytes,
        std::max<std::uint64_t>(opt.limits.max_body_bytes, opt.max_buffered_bytes / 4));
    tokens = std::make_shared<const TokenSet>(opt.tokens);
    no_auth_mode = opt.writable && opt.tokens.empty();
  }
  ~Impl() {
    if (listen_fd >= 0) ::close(listen_fd);
    if (wake_fd >= 0) ::close(wake_fd);
  }

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

  json settings() const {
    json s;
    s["threads"] = opt.threads;
    s["max_queue"] = opt.max_queue;
    s["max_queue_wait_ms"] = opt.max_queue_wait.count();
    s["timeout_s"] = opt.timeout.count();
    s["request_time_s"] = opt.request_time.count();
    s["keep_alive_s"] = opt.keep_alive_seconds;
    s["max_connections"] = opt.max_connections;
    s["max_connections_per_ip"] = opt.max_connections_per_ip;
    s["max_body_bytes"] = opt.limits.max_body_bytes;
    s["max_buffered_bytes"] = opt.max_buffered_bytes;
    s["max_pixels"] = opt.limits.max_pixels;
    s["max_hashes"] = opt.limits.max_hashes;
    s["max_response_bytes"] = opt.limits.max_response_bytes;
    s["writable"] = opt.writable;
    const auto set = current_tokens();
    s["auth"] = !set->empty() ? "bearer" : opt.writable ? "none" : "read-only";
    s["auth_reads"] = opt.auth_reads;
    s["tokens"] = set->tokens().size();
    return s;
  }

  Reply busy(const std::string& why) const {
    Reply r = error_reply(503, why);
    r.headers.emplace_back("Retry-After", std::to_string(opt.limits.retry_after_seconds));
    r.headers.emplace_back("Connection", "close");
    return r;
  }

  std::shared_ptr<const TokenSet> current_tokens() const {
    std::lock_guard lock(tokens_mu);
    return tokens;
  }

  static Reply unauthorized(const std::string& why) {
    Reply r = error_reply(401, why);
    r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"hashwall\"");
    return r;
  }

  // Who the caller is (rq.role, rq.caller) and whether the route lets them in.
  std::optional<Reply> authorize(Request& rq, bool write) const {
    const auto set = current_tokens();
    const bool no_auth = no_auth_mode;
    const Token* token = nullptr;
    if (rq.authorization) {
      const std::string& auth = *rq.authorization;
      if (auth.size() <= 7 || !starts_with_nocase(auth, "bearer "))
        return unauthorized("the Authorization header must be 'Bearer TOKEN'");
      token = set->find(std::string_view(auth).substr(7));
      if (!token && !no_auth) return unauthorized("wrong bearer token");
    }
    rq.role = token ? token->role : no_auth ? Role::Write : Role::Match;
    rq.caller = token ? token->name : "-";
    if (write) {
      if (!opt.writable)
        return error_reply(403, "this service is read-only (started with --read-only)");
      if (no_auth) return std::nullopt;
      if (!token) return unauthorized("writes need 'Authorization: Bearer TOKEN'");
      if (token->role < Role::Write)
        return error_reply(403, "token '" + token->name + "' has the role " +
                                    role_name(token->role) + "; writes need write or admin");
      return std::nullopt;
    }
    const bool guarded_read = rq.endpoint == Endpoint::Match ||
                              rq.endpoint == Endpoint::MatchHash ||
                              rq.endpoint == Endpoint::Stats || rq.endpoint == Endpoint::Metrics;
    if (opt.auth_reads && guarded_read && !token && !no_auth)
      return unauthorized(
          "this server needs 'Authorization: Bearer TOKEN' for matching and "
          "statistics too (--auth-reads)");
    return std::nullopt;
  }

  // --- the endpoints ----------------------------------------------------------------

  struct Route {
    const char* method;
    Endpoint endpoint;
    bool write;
  };
  // The routes of a path (nullopt: no such path), and the one for this method.
  static std::optional<std::vector<Route>> routes_of(const std::string& path) {
    if (path == "/v1/match") return std::vector<Route>{{"POST", Endpoint::Match, false}};
    if (path == "/v1/match/hash") return std::vector<Route>{{"POST", Endpoint::MatchHash, false}};
    if (path == "/v1/entries") return std::vector<Route>{{"POST", Endpoint::EntriesAdd, true}};
    if (path.starts_with("/v1/entries/") && path.find('/', 12) == std::string::npos)
      return std::vector<Route>{{"DELETE", Endpoint::EntriesRemove, true}};
    if (path == "/v1/health") return std::vector<Route>{{"GET", Endpoint::Health, false}};
    if (path == "/v1/stats") return std::vector<Route>{{"GET", Endpoint::Stats, false}};
    if (path == "/metrics") return std::vector<Route>{{"GET", Endpoint::Metrics, false}};
    return std::nullopt;
  }

  Answer health() const {
    Reply r = service.health();
    r.body["uptime_seconds"] = uptime();
    return to_answer(r);
  }

  Answer prometheus() {
    MetricsSnapshot g;
    g.queue_depth = depth.load();
    g.in_flight = in_flight.load();
    try {
      g.bank_entries = bank.stats().entries;
    } catch (const Error&) {
      g.bank_entries = -1;
    }
    g.uptime_seconds = uptime();
    Answer a;
    a.content_type = "text/plain; version=0.0.4";
    a.body = metrics.prometheus(g);
    return a;
  }

  // The work of a complete request, on a worker.
  Answer work(const Request& rq) {
    switch (rq.endpoint) {
      case Endpoint::Metrics:
        return prometheus();
      case Endpoint::Stats:
        return to_answer(guarded(
            [&] {
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
            },
            opt.limits.retry_after_seconds));
      default:
        break;
    }
    Answer a =
        to_answer(guarded([&] { return endpoint_reply(rq); }, opt.limits.retry_after_seconds));
    // A backstop: the service bounds what it builds, no answer leaves larger.
    if (a.body.size() > opt.limits.max_response_bytes)
      a = to_answer(error_reply(400, "the answer would be larger than " +
                                         std::to_string(opt.limits.max_response_bytes) +
                                         " bytes (serve --max-response)"));
    return a;
  }

  Reply endpoint_reply(const Request& rq) {
    if (rq.malformed)
      return error_reply(400, "the multipart body could not be read (malformed, or more than " +
                                  std::to_string(kMaxMultipartParts) + " parts)");
    std::string err;
    switch (rq.endpoint) {
      case Endpoint::Match: {
        auto up = upload_of(rq, err);
        if (!up) return error_reply(400, err);
        return service.match_image(up->bytes, up->name, rq.params, rq.role);
      }
      case Endpoint::MatchHash: {
        if (rq.multipart) {
          const auto* part = rq.part("hashes");
          if (!part) return error_reply(400, "multipart body without a 'hashes' part");
          return service.match_hashes(part->content, part->content_type, rq.params, rq.role);
        }
        return service.match_hashes(rq.raw, rq.content_type, rq.params, rq.role);
      }
      case Endpoint::EntriesAdd: {
        const std::string label = rq.param_or("label");
        const std::string source = rq.param_or("source");
        if (const auto* part = rq.part("hashes"))
          return service.add_hashes(part->content, part->content_type, label, source);
        if (!rq.multipart && is_hash_content_type(rq.content_type))
          return service.add_hashes(rq.raw, rq.content_type, label, source);
        auto up = upload_of(rq, err);
        if (!up) return error_reply(400, err);
        return service.add_image(up->bytes, up->name, label, source);
      }
      case Endpoint::EntriesRemove:
        return service.remove_entry(rq.path.substr(std::string_view("/v1/entries/").size()));
      default:
        break;
    }
    return error_reply(404, reason_for(404) + ": " + rq.method + " " + rq.path);
  }

  // --- libmicrohttpd callbacks, all on the loop thread -------------------------------

  MHD_Result queue(Request& rq, const Answer& a) {
    Conn* c = rq.conn;
    MHD_Response* resp = MHD_create_response_from_buffer(
        a.body.size(), const_cast<char*>(a.body.data()), MHD_RESPMEM_MUST_COPY);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", a.content_type.c_str());
    bool close = draining;
    for (const auto& [k, v] : a.headers) {
      if (k == "Connection") {
        close = close || v == "close";
        continue;
      }
      MHD_add_response_header(resp, k.c_str(), v.c_str());
    }
    if (c && c->requests + 1 >= std::max<std::size_t>(1, opt.keep_alive_max_requests)) close = true;
    if (close) MHD_add_response_header(resp, "Connection", "close");
    const int status = a.status;
    const MHD_Result ok = MHD_queue_response(rq.mhd, static_cast<unsigned>(status), resp);
    MHD_destroy_response(resp);
    if (ok != MHD_YES) return ok;
    rq.status = status;
    rq.ready.reset();  // libmicrohttpd holds its copy now (`a` may have been this one)
    if (c) {
      ++c->requests;
      c->phase = Phase::Answering;
      c->since = Clock::now();
    }
    return ok;
  }

  // An answer decided from the headers alone. A request with a body gets it at once, so
  // that the body is never read (libmicrohttpd then closes the connection); one without
  // gets it at its last call, which keeps the connection alive.
  MHD_Result answer_now(Request& rq, Answer a) {
    if (rq.has_body) return queue(rq, a);
    rq.ready = std::move(a);
    rq.submitted = true;
    return MHD_YES;
  }
  MHD_Result refuse(Request& rq, const Reply& r) { return answer_now(rq, to_answer(r)); }

  // The first call for a request: its headers are in, its body (if any) not yet read.
  MHD_Result on_headers(MHD_Connection* mc, Request& rq, const char* url, const char* method) {
    rq.headers_seen = true;
    rq.mhd = mc;
    rq.method = method ? method : "";
    rq.path = url ? url : "";
    rq.addr = client_address(mc);
    rq.content_length = header(mc, MHD_HTTP_HEADER_CONTENT_LENGTH);
    rq.content_type = header(mc, MHD_HTTP_HEADER_CONTENT_TYPE);
    rq.has_body = !header(mc, MHD_HTTP_HEADER_TRANSFER_ENCODING).empty() ||
                  (!rq.content_length.empty() && rq.content_length != "0");
    if (const char* auth = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "Authorization"))
      rq.authorization = auth;
    MHD_get_connection_values(mc, MHD_GET_ARGUMENT_KIND, collect_argument, &rq.params);
    rq.endpoint = classify(rq.method, rq.path);

    const auto routes = routes_of(rq.path);
    if (!routes)
      return refuse(
          rq, error_reply(404, reason_for(404) + ": " + escape_control(rq.method.substr(0, 16)) +
                                   " " + escape_control(rq.path.substr(0, 200))));
    const std::string as_method = rq.method == "HEAD" ? "GET" : rq.method;
    const auto route = std::find_if(routes->begin(), routes->end(),
                                    [&](const Route& r) { return as_method == r.method; });
    if (route == routes->end()) {
      const std::string allowed =
          std::string(routes->front().method) +
          (std::string_view(routes->front().method) == "GET" ? ", HEAD" : "");
      Reply r =
          error_reply(405, reason_for(405) + ": " + escape_control(rq.method.substr(0, 16)) + " " +
                               escape_control(rq.path.substr(0, 200)) + " takes " + allowed);
      r.headers.emplace_back("Allow", allowed);
      return refuse(rq, r);
    }
    if (draining && rq.start >= drain_started) {
      metrics.record_rejected_stopping();
      return refuse(rq, busy("server is shutting down; retry later (another instance may take "
                             "over)"));
    }
    if (rq.endpoint == Endpoint::Health) return answer_now(rq, health());
    // Nothing is inflated: a small compressed body can stand for an enormous one.
    if (const std::string enc = header(mc, MHD_HTTP_HEADER_CONTENT_ENCODING);
        !enc.empty() && enc != "identity")
      return refuse(
          rq, error_reply(415,
                          "compressed request bodies are not accepted "
                          "(Content-Encoding: " +
                              escape_control(enc.substr(0, 40)) + "); send the bytes as they are"));
    const std::string too_large = "request body too large (limit " +
                                  std::to_string(opt.limits.max_body_bytes) +
                                  " bytes; see --max-body)";
    std::optional<std::uint64_t> length;
    if (!rq.content_length.empty()) {
      length = parse_length(rq.content_length);
      if (!length) return refuse(rq, error_reply(400, "malformed Content-Length"));
      if (*length > opt.limits.max_body_bytes) return refuse(rq, error_reply(413, too_large));
    }
    if (auto r = authorize(rq, route->write)) return refuse(rq, *r);
    // The body's share of the memory every upload shares, taken before it is read (a
    // chunked body takes its share as it arrives).
    if (length && *length > 0 && !reserve(rq, *length)) {
      metrics.record_rejected_memory();
      return refuse(rq, busy("server busy: too many uploads in progress; retry later"));
    }
    // The declared body in one allocation (it is charged already); a chunked one grows.
    if (length && !starts_with_nocase(rq.content_type, "multipart/form-data"))
      rq.raw.reserve(static_cast<std::size_t>(*length));
    if (starts_with_nocase(rq.content_type, "multipart/form-data")) {
      rq.multipart = true;
      rq.pp = MHD_create_post_processor(mc, 64 * 1024, collect_part, &rq);
      if (!rq.pp)
        return refuse(rq, error_reply(400, "malformed multipart Content-Type (no boundary?)"));
    }
    return MHD_YES;
  }

  bool reserve(Request& rq, std::uint64_t n) {
    if (!budget->take(rq.addr, n)) return false;
    rq.budget = budget.get();
    rq.reserved += n;
    return true;
  }

  // A piece of the body. False: the connection is to be closed (the body is too large or
  // the memory budget is spent; a response cannot be queued while a body is arriving).
  bool on_body(Request& rq, const char* data, std::size_t n) {
    rq.received += n;
    if (rq.received > opt.limits.max_body_bytes) {
      metrics.record_closed_body_too_large();
      return false;
    }
    if (rq.ready) return true;  // answered from the headers: the body is not kept
    if (rq.received > rq.reserved && !reserve(rq, rq.received - rq.reserved)) {
      metrics.record_rejected_memory();
      return false;
    }
    if (rq.pp) {
      if (!rq.malformed && MHD_post_process(rq.pp, data, n) != MHD_YES) rq.malformed = true;
    } else {
      rq.raw.append(data, n);
    }
    return true;
  }

  // The last call: the whole request is in, or (after a worker resumed the connection)
  // its answer is ready.
  MHD_Result on_complete(Request& rq) {
    if (rq.ready) return queue(rq, *rq.ready);
    if (rq.submitted) return MHD_YES;
    if (closing_down) {
      metrics.record_rejected_stopping();
      return queue(rq, to_answer(busy("server is shutting down; retry later")));
    }
    rq.submitted = true;
    if (rq.conn) rq.conn->phase = Phase::Working;
    const bool monitoring = rq.endpoint == Endpoint::Stats || rq.endpoint == Endpoint::Metrics;
    // Suspended before the job is queued, so that the worker's resume always follows it.
    MHD_suspend_connection(rq.mhd);
    in_flight.fetch_add(1);
    const auto queued_at = Clock::now();
    Request* r = &rq;
    const bool ok = (monitoring ? monitor : workers)->push([this, r, queued_at, monitoring] {
      Answer a;
      try {
        if (!monitoring && Clock::now() - queued_at > opt.max_queue_wait) {
          metrics.record_rejected_queue_wait();
          a = to_answer(busy("server busy: the request waited more than " +
                             std::to_string(opt.max_queue_wait.count()) +
                             " ms for a worker; retry later"));
        } else {
          if (opt.on_work_start && !monitoring) opt.on_work_start(r->endpoint);
          a = work(*r);
        }
        // The body is done with; the answer waits in memory until the client has read
        // it, and counts towards what requests may hold at once in its place.
        std::string().swap(r->raw);
        std::vector<Part>().swap(r->parts);
        if (r->budget && r->reserved) r->budget->give(r->addr, r->reserved);
        r->reserved = 0;
        if (!reserve(*r, a.body.size())) {
          metrics.record_rejected_memory();
          a = to_answer(busy("server busy: too many answers waiting to be read; retry later"));
        }
      } catch (...) {
        a = Answer{};
        a.status = 500;
        a.body = R"({"error":"internal error","code":500})";
      }
      r->ready = std::move(a);
      MHD_resume_connection(r->mhd);
      in_flight.fetch_sub(1);
      wake();
    });
    if (!ok) {
      in_flight.fetch_sub(1);
      metrics.record_rejected_queue_full();
      rq.ready = to_answer(busy("server busy: the request queue is full (" +
                                std::to_string(opt.max_queue) + " waiting); retry later"));
      MHD_resume_connection(rq.mhd);
    }
    return MHD_YES;
  }

  static MHD_Result on_access(void* cls, MHD_Connection* mc, const char* url, const char* method,
                              const char*, const char* upload, size_t* upload_size,
                              void** con_cls) {
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
  static void* on_uri(void* cls, const char*, MHD_Connection* mc) noexcept {
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

  static void on_completed(void* cls, MHD_Connection*, void** con_cls,
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

  static void on_connection(void* cls, MHD_Connection* mc, void** socket_context,
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

  static void on_mhd_log(void* cls, const char* fmt, va_list ap) noexcept {
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

  void log(const Request& rq) {
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
  void sweep() {
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
      if (c->phase == Phase::Fresh || c->phase == Phase::Receiving)
        metrics.record_closed_deadline();
      ::shutdown(c->fd, SHUT_RDWR);
      c->closing = true;
    }
  }

  bool busy_connections() const {
    for (const Conn* c : conns)
      if (c->phase == Phase::Working || c->phase == Phase::Answering ||
          (c->phase == Phase::Receiving && c->current && c->current->start < drain_started))
        return true;
    return false;
  }

  // The event loop: libmicrohttpd's epoll set and our wake-up eventfd.
  void loop() {
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

  bool answering() const {
    for (const Conn* c : conns)
      if (c->phase == Phase::Working || c->phase == Phase::Answering) return true;
    return false;
  }
};

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
