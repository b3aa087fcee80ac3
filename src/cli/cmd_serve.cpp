// hashwall serve: the bank as an HTTP matching service (src/server).
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "cli/signals.hpp"
#include "core/error.hpp"
#include "server/server.hpp"

namespace hashwall::cli {

namespace {

struct ServeArgs {
  std::string bank;
  std::string seal_key_file;
  std::string listen = "127.0.0.1:8080";
  int threads = 0;
  std::string token_file;
  std::string tokens_file;
  bool auth_reads = false;
  bool no_auth = false;
  bool read_only = false;
  std::uint64_t max_body = 25'000'000;
  std::uint64_t max_video_body = 32'000'000;
  std::uint64_t max_pixels = 200'000'000;
  std::size_t max_hashes = 10'000;
  std::uint64_t max_response = 16'000'000;
  std::optional<int> max_threshold, min_quality_floor;
  int max_top = 100;
  std::size_t queue = 64;
  int queue_wait_ms = 1000;
  int timeout_s = 10;
  int keep_alive_s = 2;
  int request_time_s = 30;
  unsigned max_connections = 512;
  unsigned max_connections_per_ip = 64;
  std::uint64_t max_buffered = 0;
  bool access_log = false;
  double max_lag_s = 5;
  int follow_ms = 50;  // half of it is the mean delay a change waits before a replica looks
  std::string signals;
  std::string model;
  FloodOptions flood;
};

void parse_listen(const std::string& text, std::string& host, int& port) {
  std::string port_text;
  if (!text.empty() && text.front() == '[') {  // [v6]:port
    const auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      throw Error(ErrorKind::Usage, "", "--listen: expected [ADDRESS]:PORT, got '" + text + "'");
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else if (const auto colon = text.rfind(':'); colon != std::string::npos) {
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
  } else {
    host = "127.0.0.1";
    port_text = text;
  }
  if (host.empty()) host = "127.0.0.1";
  try {
    std::size_t used = 0;
    port = std::stoi(port_text, &used);
    if (used != port_text.size() || port < 0 || port > 65535) throw std::out_of_range("port");
  } catch (const std::exception&) {
    throw Error(ErrorKind::Usage, "",
                "--listen: '" + port_text + "' is not a port number (0-65535)");
  }
}

// Whether every address `host` resolves to is a loopback one (127.0.0.0/8, ::1, or
// ::ffff:127.x): parsed and resolved, never matched by prefix ("127.0.0.1.nip.io" is a
// name that resolves elsewhere). A name that does not resolve is not loopback.
bool is_loopback(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (host.empty() || ::getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) return false;
  bool all = true;
  for (const addrinfo* a = res; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) {
      const auto* in = reinterpret_cast<const sockaddr_in*>(a->ai_addr);
      all = all && (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    } else if (a->ai_family == AF_INET6) {
      const auto* in6 = reinterpret_cast<const sockaddr_in6*>(a->ai_addr);
      const auto& b = in6->sin6_addr.s6_addr;
      const bool mapped_127 = IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && b[12] == 127;
      all = all && (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) || mapped_127);
    } else {
      all = false;
    }
  }
  ::freeaddrinfo(res);
  return all;
}

// The tokens serve accepts: --tokens (named, with roles) and --token-file (one token, the
// write role), read again at SIGHUP.
server::TokenSet load_tokens(const ServeArgs& a) {
  std::vector<server::Token> all;
  if (!a.tokens_file.empty()) all = server::read_tokens_file(a.tokens_file).tokens();
  if (!a.token_file.empty()) {
    server::Token t = server::read_token_file(a.token_file);
    for (const auto& other : all)
      if (other.secret == t.secret)
        throw Error(ErrorKind::Usage, a.token_file,
                    "the token is also in " + a.tokens_file + " (as '" + other.name + "')");
    all.push_back(std::move(t));
  }
  return server::TokenSet(std::move(all));
}

// The bank, opened; a PostgreSQL bank whose server cannot be reached (yet: a replica may
// start before the database) is tried again with backoff, one line per new reason, until
// it opens or serve is told to stop (nullptr then).
std::unique_ptr<Bank> open_with_retries(const ServeArgs& a, OpenMode mode) {
  auto wait = std::chrono::milliseconds(500);
  std::string last;
  for (;;) {
    try {
      return Bank::open(a.bank, mode, {}, read_seal_key(a.seal_key_file));
    } catch (const Error& e) {
      if (!is_postgresql_location(a.bank) || !store_unreachable(e)) throw;
      if (e.what() != last) std::fprintf(stderr, "hashwall serve: %s (retrying)\n", e.what());
      last = e.what();
    }
    for (auto slept = std::chrono::milliseconds(0); slept < wait;
         slept += std::chrono::milliseconds(50)) {
      if (stop_requested()) return nullptr;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    wait = std::min(wait * 2, std::chrono::milliseconds(10000));
  }
}

int run_serve(const ServeArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  // SIGHUP: the tokens are read again (rotation without a restart); a file that no longer
  // parses leaves the old tokens in place. Caught from the start: a SIGHUP while the bank
  // opens must not end the process.
  install_reload_handler();
  server::ServerOptions o;
  parse_listen(a.listen, o.host, o.port);
  o.writable = !a.read_only;
  const bool have_tokens = !a.token_file.empty() || !a.tokens_file.empty();
  if (have_tokens && a.no_auth)
    throw Error(ErrorKind::Usage, "", "--token-file/--tokens and --no-auth exclude each other");
  if (have_tokens) o.tokens = load_tokens(a);
  if (o.writable && !have_tokens) {
    if (!a.no_auth)
      throw Error(ErrorKind::Usage, "",
                  "writes (POST/DELETE /v1/entries) need a bearer token: give --tokens FILE or "
                  "--token-file FILE, or --read-only, or --no-auth (loopback only)");
    if (!is_loopback(o.host))
      throw Error(ErrorKind::Usage, "",
                  "--no-auth is refused on a non-loopback address (" + o.host + ")");
  }
  if (a.auth_reads && o.tokens.empty())
    throw Error(ErrorKind::Usage, "", "--auth-reads needs tokens (--tokens FILE)");
  o.auth_reads = a.auth_reads;
  o.threads = a.threads;
  o.max_queue = a.queue;
  o.max_queue_wait = std::chrono::milliseconds(a.queue_wait_ms);
  o.timeout = std::chrono::seconds(a.timeout_s);
  o.keep_alive_seconds = a.keep_alive_s;
  o.request_time = std::chrono::seconds(a.request_time_s);
  o.max_connections = a.max_connections;
  o.max_connections_per_ip = a.max_connections_per_ip;
  o.max_buffered_bytes = a.max_buffered;
  o.limits.max_processing = std::chrono::seconds(a.timeout_s);
  o.limits.max_body_bytes = a.max_body;
  o.limits.max_video_bytes = a.max_video_body;
  o.limits.max_pixels = a.max_pixels;
  o.limits.max_hashes = a.max_hashes;
  o.limits.max_response_bytes = static_cast<std::size_t>(a.max_response);
  o.limits.max_threshold = a.max_threshold;
  o.limits.min_quality_floor = a.min_quality_floor;
  o.limits.max_top = a.max_top;
  o.limits.flood = a.flood;
  if (a.access_log)
    o.access_log = [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); };

  const auto bank = open_with_retries(a, o.writable ? OpenMode::ReadWrite : OpenMode::ReadOnly);
  if (!bank) return kExitOk;  // stopped while waiting for the bank's store
  // Refused at the start, not at the first POST /v1/entries.
  if (o.writable && !bank->seal_key_id().empty() && a.seal_key_file.empty())
    throw Error(ErrorKind::Usage, a.bank,
                "the bank is sealed with a key (key id " + bank->seal_key_id() +
                    "): serving it writable needs --seal-key FILE (or --read-only)");
  const auto entries = bank->stats().entries;
  if (const auto why = bank->index_cache_refused(); !why.empty())
    std::fprintf(stderr, "hashwall serve: warning: %s\n", why.c_str());
  // Images sent to /v1/match and /v1/entries get every signal the bank records (or those
  // --signals keeps); the model is checked against the bank's before the port opens.
  const SignalSetup query_sig =
      signal_setup(*bank, a.signals.empty() ? std::vector<std::string>{} : parse_signals(a.signals),
                   a.model, true);
  const SignalSetup add_sig = signal_setup(*bank, {}, a.model, false, query_sig.embedder);
  o.signals.query = query_sig.fingerprint;
  o.signals.add = add_sig.fingerprint;
  std::string sig_text;
  for (const auto& sname : query_sig.signals) sig_text += (sig_text.empty() ? "" : ",") + sname;
  auto readiness = std::make_shared<server::Readiness>(
      std::chrono::milliseconds(static_cast<long long>(a.max_lag_s * 1000)));
  o.readiness = readiness;
  server::HttpServer srv(*bank, o);
  const int port = srv.bind();
  const std::string shown_host =
      o.host.find(':') != std::string::npos ? "[" + o.host + "]" : o.host;
  std::fprintf(
      stderr,
      "hashwall serve: listening on http://%s:%d (bank %s, %lld entries, signals %s, writes: %s)\n",
      shown_host.c_str(), port, a.bank.c_str(), static_cast<long long>(entries), sig_text.c_str(),
      !o.writable         ? "off (read-only)"
      : !o.tokens.empty() ? "bearer token"
                          : "no auth (loopback)");
  std::fflush(stderr);

  std::atomic<bool> done{false};
  // SIGTERM/SIGINT only set a flag (common.cpp); this thread turns it into a graceful stop:
  // no new connections, in-flight requests answered, then the bank is flushed and closed.
  std::thread watcher([&] {
    while (!done) {
      if (stop_requested()) srv.stop();
      if (reload_requested().exchange(false) && have_tokens) {
        try {
          server::TokenSet fresh = load_tokens(a);
          const std::size_t n = fresh.tokens().size();
          srv.set_tokens(std::move(fresh));
          std::fprintf(stderr, "hashwall serve: tokens reloaded (%zu)\n", n);
        } catch (const std::exception& e) {
          std::fprintf(stderr, "hashwall serve: tokens not reloaded, the old ones stay: %s\n",
                       e.what());
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  });
  // The follower: keeps the indexes at the store's generation (other replicas' writes; a
  // PostgreSQL bank wakes it by NOTIFY, so a look costs no query) and tells /v1/ready.
  // While the store is away it backs off, up to 5 s between tries.
  std::thread follower([&] {
    const auto interval = std::chrono::milliseconds(a.follow_ms);
    auto wait = interval;
    std::string last_error;
    while (!done) {
      try {
        const auto gen = bank->catch_up();
        readiness->caught_up(gen);
        if (!last_error.empty())
          std::fprintf(stderr, "hashwall serve: following the bank again at generation %llu\n",
                       static_cast<unsigned long long>(gen));
        last_error.clear();
        wait = interval;
      } catch (const std::exception& e) {
        const std::string why = e.what();
        readiness->failed(why);
        if (why != last_error)
          std::fprintf(stderr, "hashwall serve: cannot follow the bank: %s (retrying)\n",
                       why.c_str());
        last_error = why;
        wait = std::min<std::chrono::milliseconds>(std::max(wait * 2, interval),
                                                   std::chrono::milliseconds(5000));
      }
      for (auto slept = std::chrono::milliseconds(0); slept < wait && !done;
           slept += std::chrono::milliseconds(10))
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });
  const auto join_all = [&] {
    done = true;
    watcher.join();
    follower.join();
  };
  try {
    srv.run();
  } catch (...) {
    join_all();
    throw;
  }
  join_all();
  bank->flush_index();
  std::uint64_t served = 0;
  for (int e = 0; e < server::kEndpointCount; ++e)
    served += srv.metrics().requests(static_cast<server::Endpoint>(e));
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::fprintf(stderr, "hashwall serve: stopped after %s and %llu requests; bank flushed\n",
               format_duration(secs).c_str(), static_cast<unsigned long long>(served));
  return kExitOk;
}

}  // namespace

void register_serve(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand("serve", "Run an HTTP matching service on a bank");
  cmd->add_option("-b,--bank", a->bank, kBankHelp)->required()->envname("HASHWALL_BANK");
  cmd->add_option("--listen", a->listen, "ADDRESS:PORT to listen on (port 0: any free port)")
      ->capture_default_str();
  cmd->add_option("--threads", a->threads,
                  "Worker threads for matches and writes (default: max(8, 2 x cores)); "
                  "connections themselves take none")
      ->check(CLI::Range(0, 1024));
  add_seal_key_option(cmd, a->seal_key_file,
                      "needed for the write endpoints of a bank sealed with one");
  cmd->add_option("--tokens", a->tokens_file,
                  "File of named bearer tokens with roles, one 'NAME ROLE SECRET' a line (roles: "
                  "match, read, write, admin; mode 600); reread at SIGHUP");
  cmd->add_option("--token-file", a->token_file,
                  "File holding one bearer token with the write role (mode 600, at least 16 "
                  "characters, 8 different; e.g. 'openssl rand -hex 32'); reread at SIGHUP");
  cmd->add_flag("--auth-reads", a->auth_reads,
                "Matching, /v1/stats and /metrics need a token too (any role)");
  cmd->add_flag("--no-auth", a->no_auth,
                "Allow writes without a token (refused unless listening on loopback)");
  cmd->add_flag("--read-only", a->read_only,
                "Disable POST/DELETE /v1/entries; open the bank read-only");
  cmd->add_option("--max-body", a->max_body,
                  "Largest request body; larger gets 413 (suffixes: KB, MB)")
      ->transform(CLI::AsSizeValue(true))
      ->capture_default_str();
  cmd->add_option("--max-video-body", a->max_video_body,
                  "Largest video (or animated GIF/PNG) on /v1/match, checked frame by frame within "
                  "--timeout; larger gets 413; 0: videos matched by their bytes only (suffixes: "
                  "KB, MB)")
      ->transform(CLI::AsSizeValue(true))
      ->capture_default_str();
  cmd->add_option("--max-pixels", a->max_pixels, "Refuse images with more pixels than this (413)")
      ->capture_default_str();
  cmd->add_option("--max-hashes", a->max_hashes, "Most hashes in one request body")
      ->capture_default_str();
  cmd->add_option("--max-response", a->max_response,
                  "Largest answer; a request whose answer would be larger gets 400 (suffixes: "
                  "KB, MB)")
      ->transform(CLI::AsSizeValue(true))
      ->capture_default_str();
  cmd->add_option("--queue", a->queue,
                  "Requests that may wait for a worker; more get 503 + Retry-After")
      ->capture_default_str()
      ->check(CLI::Range(std::size_t{1}, std::size_t{100000}));
  cmd->add_option("--queue-wait", a->queue_wait_ms,
                  "Milliseconds a request may wait for a worker before 503")
      ->capture_default_str()
      ->check(CLI::Range(1, 600000));
  cmd->add_option("--max-threshold", a->max_threshold,
                  "Loosest PDQ threshold a client may ask for (default: the bank's own; a client "
                  "may always ask for a stricter one)")
      ->check(CLI::Range(0, 256));
  cmd->add_option("--min-quality-floor", a->min_quality_floor,
                  "Lowest min_quality a client may ask for (default: the bank's own)")
      ->check(CLI::Range(0, 100));
  cmd->add_option("--max-top", a->max_top, "Most hits a client may ask for per image or hash")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--flood-share", a->flood.share,
                  "Flood guard: disable (reason 'flood') an entry that matches more than this "
                  "share of the queries within --flood-window (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--flood-window", a->flood.window_seconds, "Flood guard: its window, seconds")
      ->capture_default_str()
      ->check(CLI::Range(60, 7 * 86400));
  cmd->add_option("--flood-min-queries", a->flood.min_queries,
                  "Flood guard: queries the window must hold before it decides")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000'000));
  cmd->add_option("--flood-min-matches", a->flood.min_matches,
                  "Flood guard: matches an entry must have in the window to be disabled")
      ->capture_default_str()
      ->check(CLI::Range(1, 1'000'000'000));
  cmd->add_option("--timeout", a->timeout_s,
                  "Seconds to process a request (503 beyond, nothing written) and to write the "
                  "answer")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--request-time", a->request_time_s,
                  "Seconds a client has to send a whole request (request line, headers, body); "
                  "the connection is closed past it")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--keep-alive", a->keep_alive_s,
                  "Seconds an idle kept-alive connection waits for its next request")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--max-connections", a->max_connections,
                  "Open connections in all; more are closed at once")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000u));
  cmd->add_option("--max-connections-per-ip", a->max_connections_per_ip,
                  "Open connections from one client address; more are closed at once")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000u));
  cmd->add_option("--max-buffered", a->max_buffered,
                  "Request bodies held in memory at once, over all connections; a new upload "
                  "gets 503 beyond it (suffixes: KB, MB; default: 4 x --max-body)")
      ->transform(CLI::AsSizeValue(true));
  cmd->add_option("--max-lag", a->max_lag_s,
                  "Seconds this replica may go without catching up with the bank's store before "
                  "GET /v1/ready answers 503 (a load balancer then takes it out)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 3600.0));
  cmd->add_option("--follow-interval", a->follow_ms,
                  "Milliseconds between looks at the bank's store for other writers' changes "
                  "(a PostgreSQL bank's look is a NOTIFY check, no query)")
      ->capture_default_str()
      ->check(CLI::Range(10, 60000));
  cmd->add_flag("--access-log", a->access_log,
                "One line per request on stderr (method, path, status, time; never bodies)");
  cmd->add_option("--signals", a->signals,
                  "Signals that may decide a match (default: all the bank records)");
  cmd->add_option("--model", a->model,
                  "Embedding model (default: the shipped one; must be the bank's)");
  cmd->footer(std::string(
      "Serve the bank over HTTP for upload pipelines. Endpoints (see docs/API.md):\n"
      "  POST   /v1/match          image bytes (raw or multipart 'image') -> decision, matches,\n"
      "                            the query's PDQ hash and quality\n"
      "  POST   /v1/match/hash     PDQ hex hashes (JSON or text) -> decision per hash\n"
      "  POST   /v1/entries        image or hashes, ?label=  (token with the write role)\n"
      "  DELETE /v1/entries/ID     (token with the write role)\n"
      "  GET    /v1/audit          the audit log (read role)\n"
      "  GET    /v1/changes        a list's change feed, for 'hashwall sync' (read role)\n"
      "  POST   /v1/verdicts       a reviewer's verdict on a match (write role)\n"
      "  GET    /v1/health, /v1/stats, /metrics (Prometheus)\n"
      "  GET    /v1/ready          200 when this replica has caught up with the bank within\n"
      "                            --max-lag, else 503: a load balancer's health check\n"
      "Listens on 127.0.0.1 unless told otherwise. SIGTERM or Ctrl-C stops gracefully: requests\n"
      "in flight and requests already received are answered, later ones get 503, then the\n"
      "bank is flushed.\n\n"
      "Many replicas (docs/DEPLOY.md): every serve of one PostgreSQL bank (--bank\n"
      "postgresql://...) keeps its own indexes and follows the others' writes from the\n"
      "bank's change log, woken by NOTIFY; a lost connection or a restart catches up from its\n"
      "generation. Until the bank's server answers, serve tries again with backoff.\n\n"
      "Flood guard: an entry that matches more than --flood-share of the queries within\n"
      "--flood-window (once the window holds --flood-min-queries, and the entry\n"
      "--flood-min-matches) is a collision or a poisoned list, not a photo coming back: it\n"
      "is disabled with reason 'flood' (in the audit log, stats and /metrics) until a person\n"
      "enables it ('hashwall enable'). A read-only server counts it in /metrics only.\n\n"
      "Hostile clients: headers must fit in 64 KiB (431 beyond), a body in --max-body whatever\n"
      "its framing (413 after the headers; a chunked one is cut), compressed bodies get 415,\n"
      "and a whole request must arrive within --request-time. Slow or idle connections hold\n"
      "no worker, and each address may hold --max-connections-per-ip of them.\n\n"
      "Roles (--tokens): match sees verdicts only (entry id and deciding signal, as callers\n"
      "without a token do); read also labels, sources and hashes; write may add and remove\n"
      "entries; admin may also pass the threshold, quality and top ceilings.\n\n"
      "Examples:\n"
      "  hashwall serve --bank cases.db --token-file /etc/hashwall/token\n"
      "  hashwall serve --bank cases.db --tokens /etc/hashwall/tokens --auth-reads\n"
      "  hashwall serve --bank cases.db --read-only --listen 127.0.0.1:9000 --threads 16\n"
      "  hashwall serve --bank postgresql://hashwall@db.internal/hashwall --token-file t --max-lag "
      "2\n"
      "  curl --data-binary @upload.jpg http://127.0.0.1:8080/v1/match\n\n"
      "Exit codes: 0 stopped by SIGTERM/SIGINT after a clean shutdown, 2 error (unusable bank,\n"
      "address in use, missing token, bad option)."));
  cmd->callback([a, &exit_code] { exit_code = run_serve(*a); });
}

}  // namespace hashwall::cli
