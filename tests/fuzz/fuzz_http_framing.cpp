// libFuzzer: HTTP requests as `hashwall serve` receives them, bytes on a socket. The real
// transport (src/server/server.cpp on libmicrohttpd: framing, header and body limits,
// chunked bodies, multipart parts, routing, tokens and roles, admission) runs in this
// process on a loopback port; the service behind it is a stand-in (fuzz_http_service.cpp)
// that answers from what the transport handed it, so each input costs a connection, not
// a match. The server must answer or close every connection, never crash, hang or leak;
// a health check after each input shows it still serves.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "bank/bank.hpp"
#include "server/server.hpp"

using namespace hashwall;

namespace {

int connect_loopback(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until the server closes, `until` is seen, nothing more arrives for `quiet_ms`
// after a first byte (an answer on a kept-alive connection), or `ms` pass.
std::string drain(int fd, int ms, const char* until = nullptr, int quiet_ms = 20) {
  std::string got;
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  char buf[4096];
  for (;;) {
    const auto now = std::chrono::steady_clock::now();
    if (now - start > std::chrono::milliseconds(ms)) break;
    if (!got.empty() && now - last > std::chrono::milliseconds(quiet_ms)) break;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10) <= 0) continue;
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
    last = std::chrono::steady_clock::now();
    if (until && got.find(until) != std::string::npos) break;
  }
  return got;
}

struct Fixture {
  std::unique_ptr<Bank> bank = Bank::open("fuzz-stand-in", OpenMode::ReadOnly);
  std::unique_ptr<server::HttpServer> srv;
  std::thread thread;
  int port = 0;
  Fixture() {
    server::ServerOptions o;
    o.port = 0;
    o.threads = 2;
    o.max_queue = 16;
    o.timeout = std::chrono::seconds(2);
    o.request_time = std::chrono::seconds(2);
    o.keep_alive_seconds = 1;
    o.max_connections_per_ip = 10000;
    o.limits.max_body_bytes = 64 * 1024;
    o.tokens = server::TokenSet({{"writer", server::Role::Write, "fuzz-write-token-0123456789"},
                                 {"reader", server::Role::Read, "fuzz-read-token-abcdef0123"}});
    srv = std::make_unique<server::HttpServer>(*bank, o);
    port = srv->bind();
    thread = std::thread([this] { srv->run(); });
  }
  ~Fixture() {
    srv->stop();
    thread.join();
  }
};

}  // namespace

// OpenSSL 3 keeps per-thread state for the token digests (SHA256) made on the server's
// event-loop thread; LeakSanitizer reports that block at exit although OpenSSL owns it
// (no hashwall code allocates through CRYPTO_zalloc).
extern "C" const char* __lsan_default_suppressions() { return "leak:CRYPTO_zalloc\n"; }

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Fixture f;
  const int fd = connect_loopback(f.port);
  if (fd < 0) std::abort();  // the server stopped accepting
  // The input as one write; whatever it completes is answered (or refused) at once, and
  // what it leaves unfinished is dropped when the client goes (waiting for the server's
  // deadlines would cost seconds an input).
  [[maybe_unused]] auto n = send(fd, data, size, MSG_NOSIGNAL);
  drain(fd, 100);
  close(fd);
  // Still serving.
  const int h = connect_loopback(f.port);
  if (h < 0) std::abort();
  const char req[] = "GET /v1/health HTTP/1.1\r\nHost: f\r\nConnection: close\r\n\r\n";
  [[maybe_unused]] auto m = send(h, req, sizeof req - 1, MSG_NOSIGNAL);
  const std::string answer = drain(h, 5000, "\"ok\"");
  close(h);
  if (answer.find("\"ok\"") == std::string::npos) std::abort();
  return 0;
}
