// The HTTP transport of `hashwall serve` (server.hpp), a request from its headers to its
// answer: admission (the bounds checked from the headers, the memory budget),
// authorization, routing, the body as it arrives, the hand-off to a worker and the work of
// each endpoint there. The connections and the event loop are in server.cpp.
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/text.hpp"
#include "server/server_impl.hpp"

namespace hashwall::server {

json HttpServer::Impl::settings() const {
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
  s["max_video_bytes"] = opt.limits.max_video_bytes;
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

Reply HttpServer::Impl::busy(const std::string& why) const {
  Reply r = error_reply(503, why);
  r.headers.emplace_back("Retry-After", std::to_string(opt.limits.retry_after_seconds));
  r.headers.emplace_back("Connection", "close");
  return r;
}

std::shared_ptr<const TokenSet> HttpServer::Impl::current_tokens() const {
  std::lock_guard lock(tokens_mu);
  return tokens;
}

Reply HttpServer::Impl::unauthorized(const std::string& why) {
  Reply r = error_reply(401, why);
  r.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"hashwall\"");
  return r;
}

// Who the caller is (rq.role, rq.caller) and whether the route lets them in.
std::optional<Reply> HttpServer::Impl::authorize(Request& rq, bool write) const {
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
      return error_reply(403, "token '" + token->name + "' has the role " + role_name(token->role) +
                                  "; writes need write or admin");
    return std::nullopt;
  }
  // The audit log names tokens, entries and reasons, and a list's change feed is the list
  // itself (hashes, labels): a read token at least. A verdict is not a bank dump.
  if ((rq.endpoint == Endpoint::Audit || rq.endpoint == Endpoint::Changes ||
       rq.endpoint == Endpoint::Lists) &&
      !no_auth) {
    const char* what = rq.endpoint == Endpoint::Audit     ? "the audit log"
                       : rq.endpoint == Endpoint::Changes ? "a list's changes"
                                                          : "the bank's lists";
    if (!token) return unauthorized(std::string(what) + " needs 'Authorization: Bearer TOKEN'");
    if (token->role < Role::Read)
      return error_reply(403, "token '" + token->name + "' has the role " + role_name(token->role) +
                                  "; " + what + " needs read or admin");
  }
  const bool guarded_read = rq.endpoint == Endpoint::Match || rq.endpoint == Endpoint::MatchHash ||
                            rq.endpoint == Endpoint::Stats || rq.endpoint == Endpoint::Metrics;
  if (opt.auth_reads && guarded_read && !token && !no_auth)
    return unauthorized(
        "this server needs 'Authorization: Bearer TOKEN' for matching and "
        "statistics too (--auth-reads)");
  return std::nullopt;
}

// --- the endpoints ----------------------------------------------------------------

// The routes of a path (nullopt: no such path), and the one for this method.
std::optional<std::vector<HttpServer::Impl::Route>> HttpServer::Impl::routes_of(
    const std::string& path) {
  if (path == "/v1/match") return std::vector<Route>{{"POST", Endpoint::Match, false}};
  if (path == "/v1/match/hash") return std::vector<Route>{{"POST", Endpoint::MatchHash, false}};
  if (path == "/v1/entries") return std::vector<Route>{{"POST", Endpoint::EntriesAdd, true}};
  if (path.starts_with("/v1/entries/") && path.find('/', 12) == std::string::npos)
    return std::vector<Route>{{"DELETE", Endpoint::EntriesRemove, true}};
  // /v1/entries/ID/disable, /v1/entries/ID/enable
  if (path.starts_with("/v1/entries/")) {
    const auto slash = path.find('/', 12);
    const auto action = std::string_view(path).substr(slash + 1);
    if (slash > 12 && (action == "disable" || action == "enable"))
      return std::vector<Route>{{"POST", Endpoint::EntryState, true}};
    return std::nullopt;
  }
  if (path == "/v1/lists")
    return std::vector<Route>{{"GET", Endpoint::Lists, false},
                              {"POST", Endpoint::ListsWrite, true}};
  // /v1/lists/NAME, /v1/lists/NAME/disable, /v1/lists/NAME/enable
  if (path.starts_with("/v1/lists/")) {
    const auto rest = std::string_view(path).substr(10);
    const auto slash = rest.find('/');
    if (rest.empty() || slash == 0) return std::nullopt;
    if (slash != std::string_view::npos && rest.substr(slash + 1) != "disable" &&
        rest.substr(slash + 1) != "enable")
      return std::nullopt;
    return std::vector<Route>{{"POST", Endpoint::ListsWrite, true}};
  }
  if (path == "/v1/health") return std::vector<Route>{{"GET", Endpoint::Health, false}};
  if (path == "/v1/ready") return std::vector<Route>{{"GET", Endpoint::Ready, false}};
  if (path == "/v1/stats") return std::vector<Route>{{"GET", Endpoint::Stats, false}};
  if (path == "/v1/audit") return std::vector<Route>{{"GET", Endpoint::Audit, false}};
  if (path == "/v1/changes") return std::vector<Route>{{"GET", Endpoint::Changes, false}};
  if (path == "/v1/verdicts") return std::vector<Route>{{"POST", Endpoint::Verdicts, true}};
  if (path == "/metrics") return std::vector<Route>{{"GET", Endpoint::Metrics, false}};
  return std::nullopt;
}

Answer HttpServer::Impl::health() const {
  Reply r = service.health();
  r.body["uptime_seconds"] = uptime();
  return to_answer(r);
}

// 200 while the replica may take traffic, 503 while it loads or has fallen behind the
// bank's store (readiness.hpp): a load balancer's health check (docs/DEPLOY.md).
Answer HttpServer::Impl::ready() const {
  Reply r;
  if (!opt.readiness) {
    r.body["status"] = "ready";
    return to_answer(r);
  }
  const auto s = opt.readiness->state();
  r.body["status"] = s.status;
  r.body["generation"] = s.generation;
  r.body["lag_seconds"] = s.lag_seconds;
  r.body["max_lag_seconds"] = std::chrono::duration<double>(opt.readiness->max_lag()).count();
  // Not the failure itself: it names the database's host and user, and this answer needs
  // no token. The server's log has it.
  if (!s.reason.empty())
    r.body["reason"] = "the bank's store cannot be read (see the server's log)";
  if (!s.ready) r.status = 503;
  return to_answer(r);
}

Answer HttpServer::Impl::prometheus() {
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
Answer HttpServer::Impl::work(const Request& rq) {
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
  Answer a = to_answer(guarded([&] { return endpoint_reply(rq); }, opt.limits.retry_after_seconds));
  // A backstop: the service bounds what it builds, no answer leaves larger.
  if (a.body.size() > opt.limits.max_response_bytes)
    a = to_answer(error_reply(400, "the answer would be larger than " +
                                       std::to_string(opt.limits.max_response_bytes) +
                                       " bytes (serve --max-response)"));
  return a;
}

namespace {

// Who a write is attributed to in the audit log: the token's name ("token:NAME"), or
// "anonymous" on a server without tokens (--no-auth); `reason` from the query string.
Actor writer(const Request& rq) {
  Actor a;
  a.name = rq.caller == "-" ? "anonymous" : "token:" + rq.caller;
  a.reason = rq.param_or("reason").substr(0, kMaxReasonBytes);
  return a;
}

}  // namespace

Reply HttpServer::Impl::endpoint_reply(const Request& rq) {
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
      const WriteContext ctx{writer(rq), rq.param_or("list")};
      if (const auto* part = rq.part("hashes"))
        return service.add_hashes(part->content, part->content_type, label, source, ctx);
      if (!rq.multipart && is_hash_content_type(rq.content_type))
        return service.add_hashes(rq.raw, rq.content_type, label, source, ctx);
      auto up = upload_of(rq, err);
      if (!up) return error_reply(400, err);
      return service.add_image(up->bytes, up->name, label, source, ctx);
    }
    case Endpoint::EntriesRemove:
      return service.remove_entry(rq.path.substr(std::string_view("/v1/entries/").size()),
                                  {writer(rq), {}});
    case Endpoint::Audit:
      return service.audit(rq.params);
    case Endpoint::Changes:
      return service.changes(rq.params);
    case Endpoint::Verdicts:
      return service.verdict(rq.raw, {writer(rq), {}});
    case Endpoint::Lists:
      return service.lists();
    case Endpoint::ListsWrite: {
      if (rq.path == "/v1/lists") return service.create_list(rq.raw, {writer(rq), {}});
      const auto rest = std::string_view(rq.path).substr(10);
      const auto slash = rest.find('/');
      const std::string name(rest.substr(0, slash));
      const std::string action(slash == std::string_view::npos ? "" : rest.substr(slash + 1));
      return service.change_list(name, action, rq.raw, {writer(rq), {}});
    }
    case Endpoint::EntryState: {
      const auto rest = std::string_view(rq.path).substr(12);
      const auto slash = rest.find('/');
      return service.set_entry_state(rest.substr(0, slash), rest.substr(slash + 1) == "enable",
                                     rq.raw, {writer(rq), {}});
    }
    default:
      break;
  }
  return error_reply(404, reason_for(404) + ": " + rq.method + " " + rq.path);
}

// --- libmicrohttpd callbacks, all on the loop thread -------------------------------

MHD_Result HttpServer::Impl::queue(Request& rq, const Answer& a) {
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
MHD_Result HttpServer::Impl::answer_now(Request& rq, Answer a) {
  if (rq.has_body) return queue(rq, a);
  rq.ready = std::move(a);
  rq.submitted = true;
  return MHD_YES;
}

MHD_Result HttpServer::Impl::refuse(Request& rq, const Reply& r) {
  return answer_now(rq, to_answer(r));
}

// The first call for a request: its headers are in, its body (if any) not yet read.
MHD_Result HttpServer::Impl::on_headers(MHD_Connection* mc, Request& rq, const char* url,
                                        const char* method) {
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
    std::string allowed;
    for (const Route& route_of_path : *routes) {
      if (!allowed.empty()) allowed += ", ";
      allowed += route_of_path.method;
      if (std::string_view(route_of_path.method) == "GET") allowed += ", HEAD";
    }
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
  if (rq.endpoint == Endpoint::Ready) return answer_now(rq, ready());
  // Nothing is inflated: a small compressed body can stand for an enormous one.
  if (const std::string enc = header(mc, MHD_HTTP_HEADER_CONTENT_ENCODING);
      !enc.empty() && enc != "identity")
    return refuse(
        rq, error_reply(415,
                        "compressed request bodies are not accepted "
                        "(Content-Encoding: " +
                            escape_control(enc.substr(0, 40)) + "); send the bytes as they are"));
  // /v1/match takes videos too, up to their own limit.
  const std::uint64_t body_limit =
      rq.endpoint == Endpoint::Match ? opt.limits.max_match_body() : opt.limits.max_body_bytes;
  rq.body_limit = body_limit;
  const std::string too_large = "request body too large (limit " + std::to_string(body_limit) +
                                " bytes; see --max-body" +
                                (rq.endpoint == Endpoint::Match ? ", --max-video-body)" : ")");
  std::optional<std::uint64_t> length;
  if (!rq.content_length.empty()) {
    length = parse_length(rq.content_length);
    if (!length) return refuse(rq, error_reply(400, "malformed Content-Length"));
    if (*length > body_limit) return refuse(rq, error_reply(413, too_large));
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

bool HttpServer::Impl::reserve(Request& rq, std::uint64_t n) {
  if (!budget->take(rq.addr, n)) return false;
  rq.budget = budget.get();
  rq.reserved += n;
  return true;
}

// A piece of the body. False: the connection is to be closed (the body is too large or
// the memory budget is spent; a response cannot be queued while a body is arriving).
bool HttpServer::Impl::on_body(Request& rq, const char* data, std::size_t n) {
  rq.received += n;
  if (rq.received > (rq.body_limit ? rq.body_limit : opt.limits.max_body_bytes)) {
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
MHD_Result HttpServer::Impl::on_complete(Request& rq) {
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

}  // namespace hashwall::server
