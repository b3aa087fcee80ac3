// hashwall serve: the real binary on a free loopback port, driven over HTTP; plus the
// service's pure pieces (body parser, token check, metrics) in-process.
#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <ctime>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>
#include <random>
#include <regex>
#include <sstream>
#include <thread>
#include <tuple>

#include "bank/bank.hpp"
#include "core/error.hpp"
#include "image/load.hpp"
#include "server/metrics.hpp"
#include "server/server.hpp"
#include "server/service.hpp"
#include "server_process.hpp"
#include "support.hpp"

using hwtest::ServerProcess;
using hwtest::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* const kToken = "test-token-0123456789abcdef";
// Named tokens with roles (serve --tokens).
const char* const kMatchToken = "match-5e1d9c2a7b3f4e8d06";
const char* const kReadToken = "read-Zq8Lm2Xv9Rt4Wb7Nk1Ps";
const char* const kWriteToken = "write-3f9a0c7e21b84d5f9e";
const char* const kAdminToken = "admin-b71e40c9d2a85f36e0";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path samples() { return hwtest::source_dir() / "samples"; }

// A bank of samples/bank and a token file in `tmp`.
fs::path make_bank(const TempDir& tmp) {
  const fs::path bank = hwtest::bank_location(tmp);
  auto r = hwtest::run_hashwall("index '" + (samples() / "bank").string() + "' --bank '" +
                                bank.string() + "' --label samples");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::ofstream(tmp / "token") << kToken << "\n";
  fs::permissions(tmp / "token", fs::perms::owner_read | fs::perms::owner_write);
  return bank;
}

// A tokens file in `tmp` with one token of each role, named after it.
fs::path write_tokens(const TempDir& tmp) {
  const auto file = tmp / "tokens";
  std::ofstream(file) << "# name role secret\n"
                      << "partner match " << kMatchToken << "\n"
                      << "reviewer read " << kReadToken << "\n"
                      << "ingest write " << kWriteToken << "\n"
                      << "ops admin " << kAdminToken << "\n";
  fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write);
  return file;
}

std::vector<std::string> writable_args(const TempDir& tmp, const fs::path& bank) {
  return {"--bank", bank.string(), "--token-file", (tmp / "token").string()};
}

// A raw loopback connection (for what an HTTP client library would not send), from the
// address `from` when given; -1 when the connection is refused.
int connect_raw(int port, const char* from = nullptr) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (from) {  // a client address of the loopback's own (127.0.0.2, ...)
    sockaddr_in src{};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, from, &src.sin_addr);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      close(fd);
      return -1;
    }
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{30, 0};  // no test waits on a socket for longer
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

// Sends `data`; false when the peer has closed (EPIPE, ECONNRESET).
bool send_raw(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Everything the server sends until it closes the connection (or `seconds` pass, or
// `until` appears in it).
std::string read_raw(int fd, double seconds, std::string_view until = {}) {
  std::string out;
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  char buf[4096];
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    if (!until.empty() && out.find(until) != std::string::npos) break;
  }
  return out;
}

// Whether the server has closed the connection (EOF or reset) within `seconds`.
bool closed_within(int fd, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  char buf[4096];
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return true;
  }
  return false;
}

// A process's memory in kB, from /proc: "VmRSS" now, "VmHWM" its peak so far.
long proc_kb(pid_t pid, const std::string& field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(field + ":", 0) == 0) return std::stol(line.substr(field.size() + 1));
  return -1;
}

// Holds the workers that reach on_work_start until release(): a request's place in the
// queue then depends on the test, not on the machine's speed.
class HeldWorkers {
 public:
  std::function<void(hashwall::server::Endpoint)> hook() {
    return [this](hashwall::server::Endpoint) {
      std::unique_lock lock(mu_);
      ++entered_;
      cv_.notify_all();
      cv_.wait(lock, [&] { return released_; });
    };
  }
  void wait_entered(int n) {
    std::unique_lock lock(mu_);
    REQUIRE(cv_.wait_for(lock, std::chrono::seconds(60), [&] { return entered_ >= n; }));
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  ~HeldWorkers() { release(); }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int entered_ = 0;
  bool released_ = false;
};

// A read-only server on a free port with one worker, which `held` holds, and room for
// `queue` waiting requests (each may wait a minute).
hashwall::server::ServerOptions one_held_worker(HeldWorkers& held, std::size_t queue) {
  hashwall::server::ServerOptions o;
  o.port = 0;
  o.writable = false;
  o.threads = 1;
  o.max_queue = queue;
  o.max_queue_wait = std::chrono::minutes(1);
  o.on_work_start = held.hook();
  return o;
}

// HttpServer in this process on a free loopback port, served by a thread until destroyed.
class InProcessServer {
 public:
  InProcessServer(hashwall::Bank& bank, hashwall::server::ServerOptions o) : srv_(bank, o) {
    port_ = srv_.bind();
    thread_ = std::thread([this] {
      srv_.run();
      std::lock_guard lock(mu_);
      done_ = true;
      cv_.notify_all();
    });
  }
  ~InProcessServer() {
    srv_.stop();
    if (thread_.joinable()) thread_.join();
  }
  hashwall::server::HttpServer& server() { return srv_; }
  int port() const { return port_; }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }
  // POST /v1/match/hash with one hash: the status (-1: no answer).
  int post_hash(const std::string& hex, std::string* body = nullptr) const {
    auto c = client();
    auto res = c.Post("/v1/match/hash", json{{"hash", hex}}.dump(), "application/json");
    if (res && body) *body = res->body;
    return res ? res->status : -1;
  }
  // Polls /metrics until it holds `line` (at most 60 s).
  bool wait_metric(const std::string& line) const {
    for (int i = 0; i < 1200; ++i) {
      auto c = client();
      if (auto res = c.Get("/metrics"); res && res->body.find(line) != std::string::npos)
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  // Whether run() has returned within `d`.
  bool join_within(std::chrono::seconds d) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, d, [&] { return done_; });
  }

 private:
  hashwall::server::HttpServer srv_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
};

json post_file(httplib::Client& c, const std::string& path, const fs::path& file,
               int* status = nullptr) {
  const std::string body = slurp(file);
  auto res = c.Post(path.c_str(), body, "application/octet-stream");
  REQUIRE(res);
  if (status) *status = res->status;
  return json::parse(res->body);
}

}  // namespace

TEST_CASE("an edited upload matches over HTTP and the reply carries the query's own hash",
          "[server]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(
      tmp.path(), {"--bank", bank.string(), "--read-only", "--tokens", write_tokens(tmp).string()});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  auto c = srv.client();
  c.set_bearer_token_auth(kReadToken);  // the entries' details need the read role

  auto health = c.Get("/v1/health");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(json::parse(health->body)["status"] == "ok");

  int status = 0;
  json j = post_file(c, "/v1/match", samples() / "uploads" / "mate_Aqua--jpeg30.jpg", &status);
  CHECK(status == 200);
  CHECK(j["match"] == true);
  CHECK(j["status"] == "match");
  CHECK(j["pdq"].get<std::string>().size() == 64);
  CHECK(j["quality"].is_number_integer());
  CHECK(j["sha256"].get<std::string>().size() == 64);
  REQUIRE(!j["matches"].empty());
  const json& hit = j["matches"][0];
  CHECK(hit["label"] == "samples");
  CHECK(hit["source"].get<std::string>().find("mate_Aqua.jpg") != std::string::npos);
  CHECK(hit["sha256"].get<std::string>().size() == 64);
  CHECK(hit["signal"] == "pdq");
  CHECK(hit["distance"].get<int>() <= j["threshold"].get<int>());
  CHECK(hit.contains("variant"));

  j = post_file(c, "/v1/match", samples() / "uploads" / "unrelated--mate_Storm.jpg", &status);
  CHECK(status == 200);
  CHECK(j["match"] == false);
  CHECK(j["matches"].empty());
  CHECK(j["pdq"].get<std::string>().size() == 64);

  // Multipart, as an HTML form or `curl -F image=@...` sends it; a rotated copy.
  httplib::MultipartFormDataItems form = {
      {"image", slurp(samples() / "uploads" / "mate_LadyBird--rotated90.jpg"), "rotated.jpg",
       "image/jpeg"}};
  auto res = c.Post("/v1/match", form);
  REQUIRE(res);
  CHECK(res->status == 200);
  j = json::parse(res->body);
  CHECK(j["match"] == true);
  CHECK(j["file"] == "rotated.jpg");
  REQUIRE(!j["matches"].empty());
  CHECK(j["matches"][0]["variant"] != "original");

  // A captioned copy: PDQ misses it, the bank's other signals (on by default) catch it,
  // and the reply says which decided and where the photo sits in the upload.
  j = post_file(c, "/v1/match", samples() / "uploads" / "skimage_chelsea--caption.jpg");
  CHECK(j["match"] == true);
  REQUIRE(!j["matches"].empty());
  CHECK(j["matches"][0]["signal"] != "pdq");
  CHECK(j["matches"][0]["distance"].get<int>() > j["threshold"].get<int>());
  CHECK(j["matches"][0]["inliers"].get<int>() >= j["local_min_inliers"].get<int>());
  CHECK(j["matches"][0]["region"].size() == 4);

  // The byte-identical file is decided by its SHA-256.
  j = post_file(c, "/v1/match", samples() / "bank" / "mate_Aqua.jpg");
  REQUIRE(!j["matches"].empty());
  CHECK(j["matches"][0]["exact"] == true);
  CHECK(j["matches"][0]["signal"] == "sha256");

  // Read-only: writes are refused whatever the token.
  res = c.Delete("/v1/entries/1");
  REQUIRE(res);
  CHECK(res->status == 403);
}

TEST_CASE("hash-only lookups match without the photo and bad hex is a 400 naming the problem",
          "[server]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(
      tmp.path(), {"--bank", bank.string(), "--read-only", "--tokens", write_tokens(tmp).string()});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  auto c = srv.client();
  c.set_bearer_token_auth(kReadToken);
  const std::string pdq =
      post_file(c, "/v1/match", samples() / "uploads" / "mate_Aqua--jpeg30.jpg")["pdq"];

  auto res = c.Post("/v1/match/hash", json{{"hash", pdq}}.dump(), "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
  json j = json::parse(res->body);
  CHECK(j["match"] == true);
  REQUIRE(j["results"].size() == 1);
  CHECK(j["results"][0]["pdq"] == pdq);
  CHECK(j["results"][0]["matches"][0]["label"] == "samples");

  // Many hashes at once, as plain text; the second is far from everything.
  const std::string other(64, '0');
  res = c.Post("/v1/match/hash", pdq + "\n" + other + "\n", "text/plain");
  REQUIRE(res);
  CHECK(res->status == 200);
  j = json::parse(res->body);
  REQUIRE(j["results"].size() == 2);
  CHECK(j["results"][0]["match"] == true);
  CHECK(j["results"][1]["match"] == false);

  // A hash sent with a quality below the minimum is undecided, not "no match".
  res = c.Post("/v1/match/hash", json{{"hashes", {{{"pdq", other}, {"quality", 10}}}}}.dump(),
               "application/json");
  REQUIRE(res);
  CHECK(json::parse(res->body)["results"][0]["status"] == "low-quality");

  for (const auto& [body, type, words] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {json{{"hash", "abc"}}.dump(), "application/json", "64 hex"},
           {"{\"hash\": ", "application/json", "malformed JSON"},
           {std::string(63, 'f') + "g\n", "text/plain", "line 1"},
           {"", "text/plain", "empty"},
           {json{{"hashes", 5}}.dump(), "application/json", "array"}}) {
    INFO(body);
    res = c.Post("/v1/match/hash", body, type.c_str());
    REQUIRE(res);
    CHECK(res->status == 400);
    j = json::parse(res->body);
    CHECK(j["code"] == 400);
    CHECK(j["error"].get<std::string>().find(words) != std::string::npos);
  }
  res = c.Post("/v1/match/hash?threshold=abc", json{{"hash", pdq}}.dump(), "application/json");
  REQUIRE(res);
  CHECK(res->status == 400);
}

TEST_CASE(
    "writes need the bearer token and an entry added over the API is matched by the next request",
    "[server]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  const auto started = std::chrono::steady_clock::now();
  ServerProcess srv(tmp.path(), writable_args(tmp, bank));
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  auto c = srv.client();
  const auto photo = samples() / "uploads" / "unrelated--skimage_coffee.jpg";
  const std::string bytes = slurp(photo);
  CHECK(post_file(c, "/v1/match", photo)["match"] == false);

  auto res = c.Post("/v1/entries?label=case-9", bytes, "image/jpeg");
  REQUIRE(res);
  CHECK(res->status == 401);
  CHECK(json::parse(res->body)["code"] == 401);
  CHECK(res->has_header("WWW-Authenticate"));
  res = c.Post("/v1/entries?label=case-9", {{"Authorization", "Bearer wrong-token-xxxxxxxx"}},
               bytes, "image/jpeg");
  REQUIRE(res);
  CHECK(res->status == 401);

  const httplib::Headers auth = {{"Authorization", std::string("Bearer ") + kToken}};
  res = c.Post("/v1/entries?label=case-9", auth, bytes, "image/jpeg");
  REQUIRE(res);
  INFO(res->body);
  CHECK(res->status == 201);
  json j = json::parse(res->body);
  CHECK(j["added"] == 1);
  const std::int64_t id = j["ids"][0];

  // The writer's token also reads the entries' details.
  auto rc = srv.client();
  rc.set_bearer_token_auth(kToken);
  j = post_file(rc, "/v1/match", photo);
  CHECK(j["match"] == true);
  CHECK(j["matches"][0]["id"] == id);
  CHECK(j["matches"][0]["label"] == "case-9");

  // The entry added over the API carries the bank's local features: a crop of the photo
  // (which PDQ misses) is found through them.
  {
    cv::Mat img = cv::imread(photo.string(), cv::IMREAD_COLOR);
    REQUIRE_FALSE(img.empty());
    const cv::Mat crop =
        img(cv::Rect(img.cols / 5, img.rows / 5, img.cols * 3 / 5, img.rows * 3 / 5)).clone();
    std::vector<std::uint8_t> jpg;
    cv::imencode(".jpg", crop, jpg, {cv::IMWRITE_JPEG_QUALITY, 80});
    auto cr = rc.Post("/v1/match", std::string(jpg.begin(), jpg.end()), "image/jpeg");
    REQUIRE(cr);
    const json cj = json::parse(cr->body);
    INFO(cr->body);
    CHECK(cj["match"] == true);
    REQUIRE(!cj["matches"].empty());
    CHECK(cj["matches"][0]["id"] == id);
    CHECK(cj["matches"][0]["inliers"].get<int>() >= cj["local_min_inliers"].get<int>());
  }

  // The CLI reads the same bank file while the server has it open.
  auto q =
      hwtest::run_hashwall("query '" + photo.string() + "' --bank '" + bank.string() + "' --json");
  CHECK(q.exit_code == 1);

  // Hashes without photos, as a partner shares them.
  const std::string h(64, 'a');
  res = c.Post("/v1/entries", auth,
               json{{"hashes", {h}}, {"label", "partner"}, {"source", "list-7"}}.dump(),
               "application/json");
  REQUIRE(res);
  CHECK(res->status == 201);
  res = rc.Post("/v1/match/hash", json{{"hash", h}}.dump(), "application/json");
  REQUIRE(res);
  CHECK(json::parse(res->body)["results"][0]["matches"][0]["label"] == "partner");

  // A file hash without a PDQ hash (a video_md5 list's entry): the very file matches by
  // its bytes, over /v1/match and /v1/match/hash; a bad one is a 400 naming it.
  const auto storm = samples() / "uploads" / "unrelated--mate_Storm.jpg";
  const std::string storm_bytes = slurp(storm);
  const std::string storm_md5 = hashwall::md5_hex(
      std::span(reinterpret_cast<const std::uint8_t*>(storm_bytes.data()), storm_bytes.size()));
  CHECK(post_file(rc, "/v1/match", storm)["match"] == false);
  res = c.Post("/v1/entries", auth,
               json{{"hashes", {{{"md5", storm_md5}}}}, {"label", "videos"}}.dump(),
               "application/json");
  REQUIRE(res);
  INFO(res->body);
  CHECK(res->status == 201);
  j = post_file(rc, "/v1/match", storm);
  CHECK(j["match"] == true);
  CHECK(j["matches"][0]["signal"] == "md5");
  CHECK(j["matches"][0]["label"] == "videos");
  CHECK(j["matches"][0]["entry_pdq"].is_null());
  res = rc.Post("/v1/match/hash", json{{"md5", storm_md5}}.dump(), "application/json");
  REQUIRE(res);
  CHECK(json::parse(res->body)["results"][0]["match"] == true);
  CHECK(json::parse(res->body)["results"][0]["md5"] == storm_md5);
  // Bytes the image loader refuses are still found by their MD5.
  const std::string blob = "not an image, but a known file";
  const std::string blob_md5 =
      hashwall::md5_hex(std::span(reinterpret_cast<const std::uint8_t*>(blob.data()), blob.size()));
  res = rc.Post("/v1/match", blob, "application/octet-stream");
  REQUIRE(res);
  CHECK(res->status == 400);  // not an image
  res = c.Post("/v1/entries", auth, json{{"md5", blob_md5}}.dump(), "application/json");
  REQUIRE(res);
  CHECK(res->status == 201);
  res = rc.Post("/v1/match", blob, "application/octet-stream");
  REQUIRE(res);
  INFO(res->body);
  CHECK(res->status == 200);
  CHECK(json::parse(res->body)["known_file"] == true);
  CHECK(json::parse(res->body)["match"] == true);
  res = rc.Post("/v1/match/hash", json{{"md5", "abc"}}.dump(), "application/json");
  REQUIRE(res);
  CHECK(res->status == 400);
  CHECK_THAT(res->body, Catch::Contains("md5 must be 32 hex characters"));

  res = c.Delete(("/v1/entries/" + std::to_string(id)).c_str());
  REQUIRE(res);
  CHECK(res->status == 401);
  res = c.Delete(("/v1/entries/" + std::to_string(id)).c_str(), auth);
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(post_file(c, "/v1/match", photo)["match"] == false);
  res = c.Delete(("/v1/entries/" + std::to_string(id)).c_str(), auth);
  REQUIRE(res);
  CHECK(res->status == 404);
  res = c.Delete("/v1/entries/abc", auth);
  REQUIRE(res);
  CHECK(res->status == 400);

  auto stats = c.Get("/v1/stats");
  REQUIRE(stats);
  j = json::parse(stats->body);
  CHECK(j["entries"] == 9);
  CHECK(j["index_types"]["pdq"].is_string());
  // The server's age: more than nothing, and no more than since this test started it.
  const double age =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  CHECK(j["uptime_seconds"].get<double>() > 0);
  CHECK(j["uptime_seconds"].get<double>() <= age);
}

TEST_CASE("the service refuses to start with writes and no token and --no-auth off loopback",
          "[server]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  auto r = hwtest::run_hashwall("serve --bank '" + bank.string() + "' --listen 127.0.0.1:0");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("token") != std::string::npos);
  r = hwtest::run_hashwall("serve --bank '" + bank.string() + "' --no-auth --listen 0.0.0.0:0");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("loopback") != std::string::npos);
  // Loopback is what the name resolves to, not how it begins (security review finding 8:
  // "127.0.0.1.nip.io" passed a prefix test; .invalid names never resolve).
  r = hwtest::run_hashwall("serve --bank '" + bank.string() +
                           "' --no-auth --listen 127.0.0.1.example.invalid:0");
  CHECK(r.exit_code == 2);
  CHECK(r.err.find("non-loopback") != std::string::npos);
  std::ofstream(tmp / "empty-token") << "\n";
  r = hwtest::run_hashwall("serve --bank '" + bank.string() + "' --token-file '" +
                           (tmp / "empty-token").string() + "'");
  CHECK(r.exit_code == 2);
  r = hwtest::run_hashwall("serve --bank '" + (tmp / "missing.db").string() + "' --read-only");
  CHECK(r.exit_code == 2);
}

TEST_CASE("a weak or world-readable token file is refused before the port opens", "[server]") {
  // Security review finding 8: a token of one repeated character and a token file others
  // could read were accepted with a warning.
  TempDir tmp;
  const auto bank = make_bank(tmp);
  const auto serve_with = [&](const std::string& token, fs::perms perms) {
    const auto file = tmp / "t";
    fs::remove(file);
    std::ofstream(file) << token << "\n";
    fs::permissions(file, perms);
    // Bounded, so that a token wrongly accepted fails the test instead of serving forever.
    return hwtest::run_shell("timeout 30 '" + hwtest::hashwall_binary().string() +
                             "' serve --bank '" + bank.string() +
                             "' --listen 127.0.0.1:0 --token-file '" + file.string() + "'");
  };
  const auto owner = fs::perms::owner_read | fs::perms::owner_write;
  auto r = serve_with(std::string(32, 'a'), owner);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("only 1 different characters"));
  r = serve_with("abababababababababababab", owner);
  CHECK(r.exit_code == 2);
  r = serve_with("0123456789012345", owner);  // 16 digits: 53 bits
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("too weak"));
  r = serve_with(kToken, owner | fs::perms::others_read);
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains("readable or writable by other users"));
}

TEST_CASE("each role learns only what it may and the verdict is the same for all",
          "[server][auth]") {
  // Security review finding 2: an unauthenticated match listed every entry with its label,
  // source path and hashes.
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--tokens", write_tokens(tmp).string(),
                                 "--access-log"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  const std::string photo = slurp(samples() / "uploads" / "mate_Aqua--jpeg30.jpg");
  const auto as = [&](const char* token) {
    auto c = srv.client();
    if (token) c.set_bearer_token_auth(token);
    return c;
  };
  const auto match = [&](const char* token) {
    auto c = as(token);
    auto res = c.Post("/v1/match", photo, "image/jpeg");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    return json::parse(res->body);
  };
  const std::vector<std::string> secret_fields = {
      "label", "source", "sha256", "entry_pdq", "entry_quality", "distance", "score"};
  for (const char* token : {static_cast<const char*>(nullptr), kMatchToken}) {
    const json j = match(token);
    CHECK(j["match"] == true);
    REQUIRE(!j["matches"].empty());
    for (const auto& hit : j["matches"]) {
      CHECK(hit.contains("id"));
      CHECK(hit["signal"] == "pdq");
      for (const auto& f : secret_fields) CHECK_FALSE(hit.contains(f));
    }
    // Hash lookups too.
    auto c = as(token);
    auto res = c.Post("/v1/match/hash", json{{"hash", j["pdq"]}}.dump(), "application/json");
    REQUIRE(res);
    const json h = json::parse(res->body)["results"][0];
    CHECK(h["match"] == true);
    for (const auto& f : secret_fields) CHECK_FALSE(h["matches"][0].contains(f));
  }
  for (const char* token : {kReadToken, kWriteToken, kAdminToken}) {
    const json j = match(token);
    CHECK(j["match"] == true);
    CHECK(j["matches"][0]["label"] == "samples");
    CHECK(j["matches"][0]["entry_pdq"].get<std::string>().size() == 64);
  }
  // Writes: the write and admin roles only.
  const std::string h(64, 'c');
  for (const auto& [token, status] : std::vector<std::pair<const char*, int>>{{nullptr, 401},
                                                                              {kMatchToken, 403},
                                                                              {kReadToken, 403},
                                                                              {kWriteToken, 201},
                                                                              {kAdminToken, 200}}) {
    auto c = as(token);
    auto res = c.Post("/v1/entries", json{{"hash", h}, {"label", "x"}}.dump(), "application/json");
    REQUIRE(res);
    INFO((token ? token : "no token") << ": " << res->body);
    CHECK(res->status == status);
  }
  // A wrong token is refused even where no token is needed.
  {
    auto c = as("not-a-token-of-this-server-1234");
    auto res = c.Post("/v1/match", photo, "image/jpeg");
    REQUIRE(res);
    CHECK(res->status == 401);
  }
  // Only an admin may pass the ceilings (threshold above the bank's, more than 100 hits).
  for (const auto& [token, status] : std::vector<std::pair<const char*, int>>{
           {nullptr, 400}, {kReadToken, 400}, {kWriteToken, 400}, {kAdminToken, 200}}) {
    auto c = as(token);
    auto res = c.Post("/v1/match/hash?threshold=64&top=500",
                      json{{"hash", std::string(64, '0')}}.dump(), "application/json");
    REQUIRE(res);
    CHECK(res->status == status);
  }
  // The access log names the caller by its token's name, never the secret.
  std::string log;
  for (int i = 0; i < 100 && log.find(" ops POST /v1/match/hash 200") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    log = srv.log();
  }
  CHECK(log.find(" reviewer POST /v1/match 200") != std::string::npos);
  CHECK(log.find(" ops POST /v1/match/hash 200") != std::string::npos);
  CHECK(log.find(kReadToken) == std::string::npos);
}

TEST_CASE("lists and entries are created disabled and enabled over HTTP by write tokens only",
          "[server][lists]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--tokens", write_tokens(tmp).string()});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  const auto as = [&](const char* token) {
    auto c = srv.client();
    if (token) c.set_bearer_token_auth(token);
    return c;
  };
  auto writer = as(kWriteToken), reader = as(kReadToken), matcher = as(kMatchToken);
  const auto post = [](httplib::Client& c, const std::string& path, const json& body) {
    auto res = c.Post(path.c_str(), body.dump(), "application/json");
    REQUIRE(res);
    return std::pair{res->status, res->body};
  };

  // Reading the lists takes a read token; writing them a write token.
  auto res = matcher.Get("/v1/lists");
  REQUIRE(res);
  CHECK(res->status == 403);
  res = reader.Get("/v1/lists");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  json j = json::parse(res->body);
  REQUIRE(j["lists"].size() == 1);
  CHECK(j["lists"][0]["name"] == "default");
  CHECK(j["lists"][0]["entries"] == 6);
  CHECK(post(reader, "/v1/lists", {{"name", "partner"}}).first == 403);
  CHECK(as(nullptr).Post("/v1/lists", "{}", "application/json")->status == 401);

  // A list made, entries added to it, the whole list disabled and enabled.
  auto [status, body] = post(
      writer, "/v1/lists", {{"name", "partner"}, {"organisation", "Org B"}, {"terms", "members"}});
  INFO(body);
  CHECK(status == 201);
  CHECK(json::parse(body)["list"]["kind"] == "block");
  CHECK(post(writer, "/v1/lists", {{"name", "partner"}}).first == 400);  // taken
  CHECK(post(writer, "/v1/lists", {{"name", "x"}, {"kind", "maybe"}}).first == 400);
  CHECK(post(writer, "/v1/lists", {{"kind", "allow"}}).first == 400);  // no name
  const std::string h(64, 'c');
  res = writer.Post("/v1/entries?list=partner", json{{"hashes", {h}}}.dump(), "application/json");
  REQUIRE(res);
  CHECK(res->status == 201);
  const std::int64_t id = json::parse(res->body)["ids"][0];
  const auto matches = [&] {
    auto r = reader.Post("/v1/match/hash", json{{"hash", h}}.dump(), "application/json");
    REQUIRE(r);
    return json::parse(r->body)["match"].get<bool>();
  };
  CHECK(matches());
  std::tie(status, body) = post(writer, "/v1/lists/partner/disable", {{"reason", "terms expired"}});
  CHECK(status == 200);
  CHECK(json::parse(body)["list"]["disabled"]["reason"] == "terms expired");
  CHECK_FALSE(matches());
  CHECK(post(writer, "/v1/lists/partner/disable", json::object()).first == 400);  // no reason
  CHECK(post(writer, "/v1/lists/partner/disable", {{"reason", "x"}, {"until", 5}}).first == 400);
  CHECK(post(writer, "/v1/lists/partner/enable", json::object()).first == 200);
  CHECK(matches());
  std::tie(status, body) = post(writer, "/v1/lists/partner", {{"description", "Org B's list"}});
  CHECK(status == 200);
  CHECK(json::parse(body)["list"]["description"] == "Org B's list");
  CHECK(post(writer, "/v1/lists/partner", json::object()).first == 400);  // nothing to change
  CHECK(post(writer, "/v1/lists/nosuch/enable", json::object()).first == 404);
  CHECK(post(writer, "/v1/lists/partner/rename", json::object()).first == 404);

  // One entry disabled with an end time, then enabled.
  const std::int64_t until = std::time(nullptr) + 3600;
  std::tie(status, body) = post(writer, "/v1/entries/" + std::to_string(id) + "/disable",
                                {{"reason", "collision"}, {"until", until}});
  CHECK(status == 200);
  CHECK(json::parse(body)["disabled"]["until"] == until);
  CHECK_FALSE(matches());
  CHECK(post(matcher, "/v1/entries/" + std::to_string(id) + "/enable", json::object()).first ==
        403);
  CHECK(post(writer, "/v1/entries/" + std::to_string(id) + "/enable", json::object()).first == 200);
  CHECK(matches());
  CHECK(post(writer, "/v1/entries/999999/disable", {{"reason", "x"}}).first == 404);
  CHECK(post(writer, "/v1/entries/abc/disable", {{"reason", "x"}}).first == 400);
  res = writer.Post("/v1/entries/1/disable", "not json", "application/json");
  REQUIRE(res);
  CHECK(res->status == 400);

  // Every change is in the audit log under the token's name.
  res = reader.Get("/v1/audit?limit=1000");
  REQUIRE(res);
  std::map<std::string, int> by_action;
  const json log = json::parse(res->body);  // kept alive across the loop
  for (const auto& e : log["events"])
    if (e["actor"] == "token:ingest") ++by_action[e["action"].get<std::string>()];
  CHECK(by_action["list-create"] == 1);
  CHECK(by_action["list-change"] == 1);
  CHECK(by_action["disable"] == 2);  // the list, then the entry
  CHECK(by_action["enable"] == 2);
  CHECK(by_action["add"] == 1);
  res = reader.Get("/v1/lists");
  REQUIRE(res);
  j = json::parse(res->body);
  REQUIRE(j["lists"].size() == 2);
  CHECK(j["lists"][1]["entries"] == 1);
  CHECK(j["lists"][1]["organisation"] == "Org B");
}

TEST_CASE("with --auth-reads matching needs a token and tokens rotate at SIGHUP without a restart",
          "[server][auth]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  const auto tokens = write_tokens(tmp);
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--read-only", "--tokens",
                                 tokens.string(), "--auth-reads"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  const auto status_of = [&](const char* token, const std::string& path) {
    auto c = srv.client();
    if (token) c.set_bearer_token_auth(token);
    auto res =
        path == "/v1/match/hash"
            ? c.Post(path.c_str(), json{{"hash", std::string(64, 'a')}}.dump(), "application/json")
            : c.Get(path.c_str());
    return res ? res->status : -1;
  };
  CHECK(status_of(nullptr, "/v1/match/hash") == 401);
  CHECK(status_of(nullptr, "/v1/stats") == 401);
  CHECK(status_of(nullptr, "/metrics") == 401);
  CHECK(status_of(nullptr, "/v1/health") == 200);  // never needs one
  CHECK(status_of(kMatchToken, "/v1/match/hash") == 200);
  CHECK(status_of(kMatchToken, "/v1/stats") == 200);

  // Rotation: the partner's token is replaced; after SIGHUP the old one is refused and
  // the new one accepted, by the same process.
  const char* const fresh = "partner2-c4e8a1f7d2b9e6035";
  {
    std::ofstream(tokens) << "partner match " << fresh << "\n"
                          << "ops admin " << kAdminToken << "\n";
  }
  kill(srv.pid(), SIGHUP);
  bool rotated = false;
  for (int i = 0; i < 200 && !rotated; ++i) {
    rotated = status_of(kMatchToken, "/v1/match/hash") == 401;
    if (!rotated) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(rotated);
  CHECK(status_of(fresh, "/v1/match/hash") == 200);
  CHECK(status_of(kAdminToken, "/v1/match/hash") == 200);
  // A broken file at the next SIGHUP keeps the tokens in force.
  { std::ofstream(tokens) << "partner owner " << fresh << "\n"; }
  kill(srv.pid(), SIGHUP);
  std::string log;
  for (int i = 0; i < 200 && log.find("not reloaded") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    log = srv.log();
  }
  CHECK(log.find("tokens not reloaded, the old ones stay") != std::string::npos);
  CHECK(status_of(fresh, "/v1/match/hash") == 200);
  CHECK(srv.wait_exit(0.1) == -1);  // still the same process
}

TEST_CASE("an answer past the response limit is refused before it is built", "[server][limits]") {
  TempDir tmp;
  auto bank = hashwall::Bank::open(tmp / "bank.db", hashwall::OpenMode::Create);
  // Fifty entries with one hash and kilobyte labels: each lookup of it answers fifty hits.
  const auto hash = hashwall::Hash256::from_hex(std::string(64, 'e'));
  REQUIRE(hash);
  std::vector<hashwall::NewEntry> entries(50);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    entries[i].pdq = *hash;
    entries[i].origin = hashwall::Origin::Imported;
    entries[i].label = std::string(1000, 'L');
    entries[i].source = "list-" + std::to_string(i);
  }
  REQUIRE(bank->add(entries).added == 50);
  hashwall::server::Metrics metrics;
  hashwall::server::ServiceLimits limits;
  limits.max_response_bytes = 20'000;
  hashwall::server::Service service(*bank, limits, metrics, false);
  std::string body;
  for (int i = 0; i < 10; ++i) body += std::string(64, 'e') + "\n";
  const hashwall::server::Params top50 = {{"top", "50"}};
  // With the entries' details (read role): about 60 KB per hash, refused.
  auto r = service.match_hashes(body, "text/plain", top50, hashwall::server::Role::Read);
  CHECK(r.status == 400);
  CHECK_THAT(r.body["error"].get<std::string>(), Catch::Contains("larger than 20000 bytes"));
  // Verdicts only: a few hundred bytes per hash, answered.
  r = service.match_hashes(body, "text/plain", top50, hashwall::server::Role::Match);
  CHECK(r.status == 200);
  CHECK(r.body["results"].size() == 10);
  CHECK(r.body.dump().size() <= 20'000);
}

TEST_CASE("oversized bodies get 413 garbage bytes 400 and the server stays up", "[server]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--read-only", "--max-body", "100KB"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  auto c = srv.client();
  auto res = c.Post("/v1/match", std::string(300'000, 'x'), "application/octet-stream");
  REQUIRE(res);
  CHECK(res->status == 413);
  CHECK(json::parse(res->body)["code"] == 413);

  auto c2 = srv.client();
  res =
      c2.Post("/v1/match", std::string("this is not an image at all"), "application/octet-stream");
  REQUIRE(res);
  CHECK(res->status == 400);
  json j = json::parse(res->body);
  CHECK(j["code"] == 400);
  CHECK(!j["error"].get<std::string>().empty());
  res = c2.Post("/v1/match", slurp(samples() / "uploads" / "broken-truncated.jpg"), "image/jpeg");
  REQUIRE(res);
  CHECK((res->status == 400 || res->status == 200));
  res = c2.Post("/v1/match", std::string(), "image/jpeg");
  REQUIRE(res);
  CHECK(res->status == 400);
  res = c2.Get("/v1/nothing-here");
  REQUIRE(res);
  CHECK(res->status == 404);
  CHECK(json::parse(res->body)["code"] == 404);
  res = c2.Get("/v1/health");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("a video on /v1/match is checked frame by frame, within a size limit of its own",
          "[server][video]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  // A slideshow at 5 frames a second: an unrelated photo (0-2 s), a known one (2-4 s), an
  // unrelated one (4-6 s).
  const cv::Size size(640, 360);
  const auto frame = [&](const fs::path& p) {
    cv::Mat m = cv::imread(p.string(), cv::IMREAD_COLOR), out;
    REQUIRE(!m.empty());
    cv::resize(m, out, size, 0, 0, cv::INTER_AREA);
    return out;
  };
  const fs::path video = tmp / "slides.mp4";
  {
    cv::VideoWriter w(video.string(), cv::VideoWriter::fourcc('m', 'p', '4', 'v'), 5, size);
    REQUIRE(w.isOpened());
    for (const auto& p : {samples() / "uploads" / "unrelated--skimage_coffee.jpg",
                          samples() / "bank" / "skimage_chelsea.jpg",
                          samples() / "uploads" / "unrelated--mate_Storm.jpg"})
      for (int i = 0; i < 10; ++i) w.write(frame(p));
  }
  const std::string video_bytes = slurp(video);
  REQUIRE(video_bytes.size() < 1'500'000);
  ServerProcess srv(tmp.path(),
                    {"--bank", bank.string(), "--read-only", "--tokens", write_tokens(tmp).string(),
                     "--max-body", "100KB", "--max-video-body", "1500KB"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  auto c = srv.client();
  c.set_bearer_token_auth(kReadToken);

  // Larger than --max-body, within --max-video-body: checked as a video.
  REQUIRE(video_bytes.size() > 102'400);
  int status = 0;
  json j = post_file(c, "/v1/match", video, &status);
  INFO(j.dump(1));
  CHECK(status == 200);
  CHECK(j["status"] == "match");
  REQUIRE(j["matches"].size() == 1);
  CHECK(j["matches"][0]["source"].get<std::string>().find("skimage_chelsea.jpg") !=
        std::string::npos);
  bool seen = false;
  for (const auto& t : j["matches"][0]["times"])
    seen = seen || (t[0].get<double>() >= 1.9 && t[1].get<double>() <= 4.1);
  CHECK(seen);
  CHECK(j["video"]["frames_checked"] == 6);
  // The server's temporary file is never named to the client.
  CHECK(j.dump().find("hashwall-upload") == std::string::npos);

  // A match token learns the verdict and the entry's id, not its source.
  auto m = srv.client();
  m.set_bearer_token_auth(kMatchToken);
  j = post_file(m, "/v1/match", video, &status);
  CHECK(status == 200);
  REQUIRE(j["matches"].size() == 1);
  CHECK_FALSE(j["matches"][0].contains("source"));

  // A body past the video limit: 413 after the headers, naming both limits.
  const int fd = connect_raw(srv.port());
  REQUIRE(fd >= 0);
  REQUIRE(send_raw(fd, std::string("POST /v1/match HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ") +
                           kReadToken +
                           "\r\nContent-Length: 1600000\r\nContent-Type: video/mp4\r\n\r\n"));
  const std::string answer = read_raw(fd, 10, "}");
  CHECK(answer.rfind("HTTP/1.1 413", 0) == 0);
  CHECK(answer.find("--max-video-body") != std::string::npos);
  close(fd);
  // An image past --max-body (within the video limit): 413 naming its own limit.
  std::mt19937 rng(5);
  cv::Mat noise(400, 400, CV_8UC3);
  cv::randu(noise, 0, 255);
  std::vector<std::uint8_t> png;
  cv::imencode(".png", noise, png);
  REQUIRE(png.size() > 102'400);
  auto res = c.Post("/v1/match", std::string(png.begin(), png.end()), "image/png");
  REQUIRE(res);
  CHECK(res->status == 413);
  CHECK(res->body.find("--max-body") != std::string::npos);

  // A container that is not one: 400 with FFmpeg's reason, the server up.
  std::string junk = video_bytes.substr(0, 64);
  for (int i = 0; i < 100'000; ++i) junk += static_cast<char>(rng());
  res = c.Post("/v1/match", junk, "video/mp4");
  REQUIRE(res);
  CHECK(res->status == 400);
  CHECK(res->body.find("video: ") != std::string::npos);
  CHECK(res->body.find("hashwall-upload") == std::string::npos);
  res = c.Get("/v1/health");
  REQUIRE(res);
  CHECK(res->status == 200);

  // A video limit under --max-body: the video is refused by its own limit.
  fs::create_directories(tmp / "small");  // its own folder: port and log files
  ServerProcess small(tmp / "small", {"--bank", bank.string(), "--read-only", "--max-body", "2MB",
                                      "--max-video-body", "100KB"});
  REQUIRE(small.port() > 0);
  auto s = small.client();
  j = post_file(s, "/v1/match", video, &status);
  CHECK(status == 413);
  CHECK(j["error"].get<std::string>().find("video too large") != std::string::npos);
}

TEST_CASE("a body past the limit is refused whatever its framing and memory stays bounded",
          "[server][limits]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  // (videos on /v1/match have their own limit, --max-video-body: off here, so that the
  // match endpoint's body limit is --max-body's)
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--read-only", "--max-body", "1MB",
                                 "--max-video-body", "0"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  {
    auto c = srv.client();
    auto res = c.Get("/v1/health");  // everything the first request touches is loaded
    REQUIRE(res);
  }
  const long peak_before = proc_kb(srv.pid(), "VmHWM");
  REQUIRE(peak_before > 0);
  const std::string chunk(64 * 1024, 'x');

  SECTION("a declared 200 MiB body gets 413 after the headers, before any of it is sent") {
    const int fd = connect_raw(srv.port());
    REQUIRE(fd >= 0);
    REQUIRE(send_raw(fd,
                     "POST /v1/match HTTP/1.1\r\nHost: t\r\nContent-Length: 209715200\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n"));
    const std::string answer = read_raw(fd, 10, "}");
    CHECK(answer.rfind("HTTP/1.1 413", 0) == 0);
    CHECK(answer.find("request body too large") != std::string::npos);
    close(fd);
  }
  SECTION("a chunked body is cut once it passes the limit") {
    const int fd = connect_raw(srv.port());
    REQUIRE(fd >= 0);
    REQUIRE(send_raw(fd,
                     "POST /v1/match HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                     "Content-Type: application/octet-stream\r\n\r\n"));
    std::size_t sent = 0;
    char size_line[32];
    std::snprintf(size_line, sizeof size_line, "%zx\r\n", chunk.size());
    while (sent < 200u * 1024 * 1024 && send_raw(fd, std::string(size_line) + chunk + "\r\n"))
      sent += chunk.size();
    INFO("sent " << sent << " bytes before the server closed");
    // The limit plus what the sockets' buffers hold: nowhere near the 200 MiB.
    CHECK(sent < 32u * 1024 * 1024);
    close(fd);
    auto c = srv.client();
    auto res = c.Get("/metrics");
    REQUIRE(res);
    CHECK(res->body.find("hashwall_connections_closed_total{reason=\"body_too_large\"} 1") !=
          std::string::npos);
  }
  SECTION("a compressed body gets 415 and is never inflated") {
    const int fd = connect_raw(srv.port());
    REQUIRE(fd >= 0);
    // (what the bytes are does not matter: the header is enough to refuse them)
    const std::string gz(200 * 1024, '\0');
    REQUIRE(send_raw(fd,
                     "POST /v1/match/hash HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\n"
                     "Content-Type: application/json\r\nContent-Length: " +
                         std::to_string(gz.size()) + "\r\n\r\n"));
    const std::string answer = read_raw(fd, 10, "}");
    CHECK(answer.rfind("HTTP/1.1 415", 0) == 0);
    CHECK(answer.find("compressed request bodies are not accepted") != std::string::npos);
    close(fd);
  }
  SECTION("a header line of 150 MiB without a newline is cut at the header limit") {
    const int fd = connect_raw(srv.port());
    REQUIRE(fd >= 0);
    std::size_t sent = 0;
    if (send_raw(fd, "GET /v1/health HTTP/1.1\r\nHost: t\r\nX-Long: "))
      while (sent < 150u * 1024 * 1024 && send_raw(fd, chunk)) sent += chunk.size();
    INFO("sent " << sent << " bytes before the server closed");
    CHECK(sent < 32u * 1024 * 1024);
    close(fd);
  }
  SECTION("so is a request line of 150 MiB") {
    const int fd = connect_raw(srv.port());
    REQUIRE(fd >= 0);
    std::size_t sent = 0;
    if (send_raw(fd, "GET /v1/"))
      while (sent < 150u * 1024 * 1024 && send_raw(fd, chunk)) sent += chunk.size();
    CHECK(sent < 32u * 1024 * 1024);
    close(fd);
  }
  SECTION("a flood of header lines is cut at the same limit") {
    const int fd = connect_raw(srv.port());
    REQUIRE(fd >= 0);
    std::size_t sent = 0;
    std::string lines;
    for (int i = 0; i < 4096; ++i) lines += "X-" + std::to_string(i) + ": y\r\n";
    if (send_raw(fd, "GET /v1/health HTTP/1.1\r\nHost: t\r\n"))
      while (sent < 150u * 1024 * 1024 && send_raw(fd, lines)) sent += lines.size();
    CHECK(sent < 32u * 1024 * 1024);
    close(fd);
  }
  const long peak_after = proc_kb(srv.pid(), "VmHWM");
  INFO("peak RSS " << peak_before << " kB -> " << peak_after << " kB");
  CHECK(peak_after - peak_before < 200 * 1024);
  auto c = srv.client();
  auto res = c.Get("/v1/health");
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("one client address cannot hold the whole upload budget", "[server][limits]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  // 4 MB of bodies in all, so 1 MB (a quarter) per client address.
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--read-only", "--max-body", "1MB",
                                 "--max-buffered", "4MB", "--max-video-body", "0"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  const auto upload_headers = [](std::size_t n) {
    return "POST /v1/match HTTP/1.1\r\nHost: t\r\nContent-Type: application/octet-stream\r\n"
           "Content-Length: " +
           std::to_string(n) + "\r\n\r\n";
  };
  // A slow upload from 127.0.0.1 holds its address's share.
  const int slow = connect_raw(srv.port());
  REQUIRE(slow >= 0);
  REQUIRE(send_raw(slow, upload_headers(1'000'000) + "xx"));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  // A second upload from the same address is refused at once...
  const int again = connect_raw(srv.port());
  REQUIRE(again >= 0);
  REQUIRE(send_raw(again, upload_headers(1'000'000)));
  const std::string refused = read_raw(again, 10, "}");
  CHECK(refused.rfind("HTTP/1.1 503", 0) == 0);
  CHECK(refused.find("too many uploads") != std::string::npos);
  close(again);
  // ... while another address still gets in (all of 127/8 is loopback on Linux).
  const int other = connect_raw(srv.port(), "127.0.0.2");
  if (other < 0) {
    WARN("cannot connect from 127.0.0.2 here; the other-address half is not checked");
  } else {
    REQUIRE(send_raw(other, upload_headers(1'000'000) + std::string(1'000'000, 'x')));
    const std::string answer = read_raw(other, 30, "}");
    INFO(answer.substr(0, 300));
    CHECK(answer.rfind("HTTP/1.1 400", 0) == 0);  // read whole: not an image
    close(other);
  }
  // Once the slow upload goes, its share is free again.
  close(slow);
  bool accepted = false;
  for (int i = 0; i < 100 && !accepted; ++i) {
    const int fd = connect_raw(srv.port());
    REQUIRE(fd >= 0);
    if (send_raw(fd, upload_headers(1'000'000) + std::string(1'000'000, 'x')))
      accepted = read_raw(fd, 30, "}").rfind("HTTP/1.1 400", 0) == 0;
    close(fd);
    if (!accepted) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(accepted);
}

TEST_CASE("a refusal is answered after the headers without reading the body", "[server][limits]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(tmp.path(), writable_args(tmp, bank));
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  const int fd = connect_raw(srv.port());
  REQUIRE(fd >= 0);
  // 10 MB announced, none sent, no token: 401 at once.
  REQUIRE(send_raw(fd,
                   "POST /v1/entries HTTP/1.1\r\nHost: t\r\nContent-Length: 10000000\r\n"
                   "Content-Type: image/jpeg\r\n\r\n"));
  const std::string answer = read_raw(fd, 10, "}");
  CHECK(answer.rfind("HTTP/1.1 401", 0) == 0);
  CHECK(answer.find("Bearer") != std::string::npos);
  close(fd);
}

TEST_CASE("fifty slow clients neither keep /v1/health from answering nor outlive the deadline",
          "[server][limits]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--read-only", "--request-time", "3",
                                 "--threads", "2"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  // Fifty clients that send half a request and a header line now and then (slowloris).
  std::vector<int> slow;
  for (int i = 0; i < 50; ++i) {
    const int fd = connect_raw(srv.port());
    REQUIRE(fd >= 0);
    REQUIRE(send_raw(fd, "POST /v1/match HTTP/1.1\r\nHost: t\r\n"));
    slow.push_back(fd);
  }
  std::atomic<bool> trickling{true};
  std::thread trickle([&] {
    for (int round = 0; trickling; ++round) {
      for (const int fd : slow) send_raw(fd, "X-" + std::to_string(round) + ": y\r\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });
  for (int i = 0; i < 3; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    auto c = srv.client();
    auto res = c.Get("/v1/health");
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(secs < 1.0);
    auto c2 = srv.client();
    res =
        c2.Post("/v1/match/hash", json{{"hash", std::string(64, 'a')}}.dump(), "application/json");
    REQUIRE(res);
    CHECK(res->status == 200);
  }
  // Trickling does not keep a request alive past --request-time.
  int closed = 0;
  for (const int fd : slow) closed += closed_within(fd, 15) ? 1 : 0;
  trickling = false;
  trickle.join();
  for (const int fd : slow) close(fd);
  CHECK(closed == 50);
  auto c = srv.client();
  auto res = c.Get("/metrics");
  REQUIRE(res);
  CHECK(res->body.find("hashwall_connections_closed_total{reason=\"deadline\"} 50") !=
        std::string::npos);
}

TEST_CASE(
    "connections past the per-address limit are closed at once and the limit frees as "
    "they go",
    "[server][limits]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(tmp.path(),
                    {"--bank", bank.string(), "--read-only", "--max-connections-per-ip", "4"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) {
    held.push_back(connect_raw(srv.port()));
    REQUIRE(held.back() >= 0);
  }
  // The fourth connection, at the limit, is served.
  const int fourth = connect_raw(srv.port());
  REQUIRE(fourth >= 0);
  REQUIRE(send_raw(fourth, "GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n"));
  CHECK(read_raw(fourth, 10, "}").rfind("HTTP/1.1 200", 0) == 0);
  // The fifth is closed without an answer.
  const int fifth = connect_raw(srv.port());
  if (fifth >= 0) {
    send_raw(fifth, "GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n");
    const std::string got = read_raw(fifth, 10);
    INFO("the fifth connection got: " << got);
    CHECK(got.empty());
    close(fifth);
  }
  // One goes: there is room again.
  close(held.back());
  held.pop_back();
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    const int fd = connect_raw(srv.port());
    if (fd >= 0 && send_raw(fd, "GET /v1/health HTTP/1.1\r\nHost: t\r\n\r\n"))
      served = read_raw(fd, 5, "}").rfind("HTTP/1.1 200", 0) == 0;
    if (fd >= 0) close(fd);
    if (!served) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(served);
  close(fourth);
  for (const int fd : held) close(fd);
}

TEST_CASE("a full request queue answers 503 with Retry-After instead of piling up", "[server]") {
  TempDir tmp;
  auto bank = hashwall::Bank::open(make_bank(tmp), hashwall::OpenMode::ReadOnly);
  // One worker and room for one waiting request; the worker is held (on_work_start) until
  // the test lets it go, so the queue's state does not depend on the machine's speed.
  HeldWorkers held;
  InProcessServer srv(*bank, one_held_worker(held, 1));

  auto first = std::async(std::launch::async, [&] { return srv.post_hash(std::string(64, 'a')); });
  held.wait_entered(1);
  auto second = std::async(std::launch::async, [&] { return srv.post_hash(std::string(64, 'b')); });
  // The second waits in the queue (the gauge says so) before the third is sent.
  REQUIRE(srv.wait_metric("hashwall_queue_depth 1"));
  auto c = srv.client();
  auto res =
      c.Post("/v1/match/hash", json{{"hash", std::string(64, 'c')}}.dump(), "application/json");
  REQUIRE(res);
  CHECK(res->status == 503);
  CHECK(res->get_header_value("Retry-After") == "1");
  CHECK(json::parse(res->body)["code"] == 503);
  // Monitoring still gets through while overloaded.
  auto c2 = srv.client();
  res = c2.Get("/metrics");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->body.find("hashwall_rejected_total{reason=\"queue_full\"} 1") != std::string::npos);
  res = c2.Get("/v1/health");
  REQUIRE(res);
  CHECK(res->status == 200);
  // Let go: both waiting requests are answered.
  held.release();
  CHECK(first.get() == 200);
  CHECK(second.get() == 200);
}

TEST_CASE("concurrent clients all get answers and /metrics counts them", "[server]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(tmp.path(), writable_args(tmp, bank));
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  const std::string match_photo = slurp(samples() / "uploads" / "mate_Aqua--jpeg30.jpg");
  const std::string other_photo = slurp(samples() / "uploads" / "unrelated--mate_Storm.jpg");
  std::atomic<int> ok{0}, bad{0}, matched{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 6; ++t) {
    clients.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", srv.port());
      c.set_keep_alive(true);
      c.set_read_timeout(30, 0);
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < 25; ++i) {
        const int kind = (i + t) % 5;
        auto request = [&]() -> httplib::Result {
          if (kind == 0) return c.Post("/v1/match", match_photo, "image/jpeg");
          if (kind == 1) return c.Post("/v1/match", other_photo, "image/jpeg");
          std::string h;
          for (int k = 0; k < 64; ++k) h += "0123456789abcdef"[rng() % 16];
          if (kind == 4 && t == 0)
            return c.Post("/v1/entries", {{"Authorization", std::string("Bearer ") + kToken}},
                          json{{"hash", h}}.dump(), "application/json");
          return c.Post("/v1/match/hash", json{{"hash", h}}.dump(), "application/json");
        };
        httplib::Result res = request();
        if (res && (res->status == 200 || res->status == 201)) {
          ++ok;
          if (kind == 0 && json::parse(res->body)["match"] == true) ++matched;
        } else {
          ++bad;
        }
      }
    });
  }
  for (auto& t : clients) t.join();
  CHECK(bad == 0);
  CHECK(ok == 150);
  CHECK(matched == 30);
  auto c = srv.client();
  auto res = c.Get("/metrics");
  REQUIRE(res);
  CHECK(res->body.find("hashwall_requests_total{endpoint=\"/v1/match\",code=\"200\"} 60") !=
        std::string::npos);
  CHECK(res->body.find(
            "hashwall_request_duration_seconds_bucket{endpoint=\"/v1/match\",le=\"+Inf\"} 60") !=
        std::string::npos);
  CHECK(res->body.find("hashwall_queue_depth") != std::string::npos);
  CHECK(res->body.find("hashwall_matches_total") != std::string::npos);
}

TEST_CASE("SIGTERM during load: in-flight requests finish the process exits 0 the bank checks ok",
          "[server]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(tmp.path(), writable_args(tmp, bank));
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  const std::string photo = slurp(samples() / "uploads" / "mate_Aqua--jpeg30.jpg");
  std::atomic<bool> stop{false};
  std::atomic<int> answered{0}, wrong{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      httplib::Client c("127.0.0.1", srv.port());
      c.set_read_timeout(10, 0);
      c.set_connection_timeout(1, 0);
      std::mt19937 rng(static_cast<unsigned>(t + 100));
      for (int i = 0; i < 400 && !stop; ++i) {
        auto request = [&]() -> httplib::Result {
          if (t != 0) return c.Post("/v1/match", photo, "image/jpeg");
          std::string h;
          for (int k = 0; k < 64; ++k) h += "0123456789abcdef"[rng() % 16];
          return c.Post("/v1/entries", {{"Authorization", std::string("Bearer ") + kToken}},
                        json{{"hash", h}}.dump(), "application/json");
        };
        httplib::Result res = request();
        if (!res) continue;  // connection refused or closed: the server is going away
        // Every answer that arrives is a whole, well-formed one.
        if (res->status >= 500 && res->status != 503)
          ++wrong;
        else if (json::parse(res->body, nullptr, false).is_discarded())
          ++wrong;
        else
          ++answered;
      }
    });
  }
  // SIGTERM once the load is under way (some answers arrived), however slow the machine.
  for (int i = 0; i < 600 && answered < 8; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  srv.terminate();
  const int code = srv.wait_exit(60);
  stop = true;
  for (auto& t : clients) t.join();
  CHECK(code == 0);
  CHECK(answered > 0);
  CHECK(wrong == 0);
  CHECK(srv.log().find("stopped") != std::string::npos);
  auto check = hwtest::run_hashwall("check --bank '" + bank.string() + "'");
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);
}

TEST_CASE("at stop requests already received are answered and later ones get 503", "[server]") {
  TempDir tmp;
  auto bank = hashwall::Bank::open(make_bank(tmp), hashwall::OpenMode::ReadOnly);
  HeldWorkers held;
  auto o = one_held_worker(held, 16);
  o.timeout = std::chrono::seconds(60);  // the drain waits for the held requests
  InProcessServer srv(*bank, o);

  // Three requests received before the stop: one with the (held) worker, two waiting.
  std::vector<std::future<int>> early;
  for (int i = 0; i < 3; ++i) {
    early.push_back(
        std::async(std::launch::async, [&] { return srv.post_hash(std::string(64, 'a')); }));
    if (i == 0) held.wait_entered(1);
  }
  REQUIRE(srv.wait_metric("hashwall_queue_depth 2"));
  srv.server().stop();
  std::string late_body;
  const int late = srv.post_hash(std::string(64, 'a'), &late_body);
  INFO("late request: " << late_body);
  CHECK(late == 503);
  CHECK(late_body.find("shutting down") != std::string::npos);
  held.release();
  for (auto& f : early) CHECK(f.get() == 200);
  CHECK(srv.join_within(std::chrono::seconds(60)));
}

TEST_CASE("work past the processing limit gets 503 and writes nothing", "[server]") {
  TempDir tmp;
  const auto bank_path = make_bank(tmp);
  auto bank = hashwall::Bank::open(bank_path, hashwall::OpenMode::ReadWrite);
  const auto before = bank->stats().entries;
  hashwall::server::Metrics metrics;
  hashwall::server::ServiceLimits limits;
  limits.max_processing = std::chrono::microseconds(1);
  hashwall::server::Service service(*bank, limits, metrics, true);
  const std::string photo = slurp(samples() / "uploads" / "mate_Aqua--jpeg30.jpg");
  const auto bytes = std::span(reinterpret_cast<const std::uint8_t*>(photo.data()), photo.size());

  auto r = service.match_image(bytes, "upload.jpg", {});
  CHECK(r.status == 503);
  CHECK(r.body["error"].get<std::string>().find("processing took longer") != std::string::npos);
  r = service.add_image(bytes, "upload.jpg", "late", "");
  CHECK(r.status == 503);
  std::string hashes;  // enough of them that the work outlasts a microsecond
  for (int i = 0; i < 2000; ++i) hashes += std::string(63, 'a') + "0123456789abcdef"[i % 16] + "\n";
  r = service.match_hashes(hashes, "text/plain", {});
  CHECK(r.status == 503);
  CHECK(bank->stats().entries == before);
  CHECK(metrics.prometheus({}).find("hashwall_rejected_total{reason=\"timeout\"} 3") !=
        std::string::npos);

  // Without a limit the same requests are served.
  limits.max_processing = std::chrono::microseconds(0);
  hashwall::server::Service relaxed(*bank, limits, metrics, true);
  CHECK(relaxed.match_image(bytes, "upload.jpg", {}).status == 200);
  CHECK(relaxed.match_hashes(hashes, "text/plain", {}).status == 200);
}

TEST_CASE("serve and the CLI write one bank at once: nothing lost and each sees the other",
          "[server][stores]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(tmp.path(), writable_args(tmp, bank));
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  std::mt19937_64 rng(2024);
  const auto random_hex = [&] {
    std::string h;
    for (int k = 0; k < 64; ++k) h += "0123456789abcdef"[rng() % 16];
    return h;
  };
  // The API's writes, made while CLI imports run against the same file.
  std::vector<std::string> api_hashes(120);
  for (auto& h : api_hashes) h = random_hex();
  std::vector<std::vector<std::string>> cli_lists(6, std::vector<std::string>(40));
  for (auto& list : cli_lists)
    for (auto& h : list) h = random_hex();
  std::atomic<int> api_failures{0};
  std::vector<std::string> api_removed;
  std::thread api([&] {
    httplib::Client c("127.0.0.1", srv.port());
    c.set_read_timeout(30, 0);
    const httplib::Headers auth{{"Authorization", std::string("Bearer ") + kToken}};
    for (std::size_t i = 0; i < api_hashes.size(); ++i) {
      auto res = c.Post("/v1/entries", auth, json{{"hash", api_hashes[i]}, {"label", "api"}}.dump(),
                        "application/json");
      if (!res || res->status != 201) {
        ++api_failures;
        continue;
      }
      if (i % 10 == 9) {  // and remove every tenth again
        const auto id = json::parse(res->body)["ids"][0].get<std::int64_t>();
        auto del = c.Delete(("/v1/entries/" + std::to_string(id)).c_str(), auth);
        if (!del || del->status != 200)
          ++api_failures;
        else
          api_removed.push_back(api_hashes[i]);
      }
    }
  });
  int cli_failures = 0;
  for (std::size_t k = 0; k < cli_lists.size(); ++k) {
    const auto file = tmp / ("list" + std::to_string(k) + ".txt");
    std::ofstream out(file);
    for (const auto& h : cli_lists[k]) out << h << "\n";
    out.close();
    const auto r = hwtest::run_hashwall("import '" + file.string() + "' --bank '" + bank.string() +
                                        "' --format hex --label cli");
    if (r.exit_code != 0) {
      ++cli_failures;
      UNSCOPED_INFO("import " << k << ": " << r.err);
    }
  }
  api.join();
  CHECK(api_failures == 0);
  CHECK(cli_failures == 0);

  // The server finds what the CLI imported; the CLI's export holds what the API added.
  auto c = srv.client();
  for (const auto& list : cli_lists) {
    auto res = c.Post("/v1/match/hash", json{{"hash", list.back()}}.dump(), "application/json");
    REQUIRE(res);
    CHECK(json::parse(res->body)["match"] == true);
  }
  const auto exported = hwtest::run_hashwall("export --bank '" + bank.string() + "' --format hex");
  REQUIRE(exported.exit_code == 0);
  for (const auto& h : api_hashes) {
    const bool removed = std::find(api_removed.begin(), api_removed.end(), h) != api_removed.end();
    CHECK((exported.out.find(h) != std::string::npos) == !removed);
  }
  for (const auto& list : cli_lists)
    for (const auto& h : list) CHECK(exported.out.find(h) != std::string::npos);
  const auto stats =
      json::parse(hwtest::run_hashwall("stats --json --bank '" + bank.string() + "'").out);
  CHECK(stats["entries"] == 6 + 120 - 12 + 6 * 40);
  srv.terminate();
  CHECK(srv.wait_exit(60) == 0);
  const auto check = hwtest::run_hashwall("check --bank '" + bank.string() + "'");
  INFO(check.out << check.err);
  CHECK(check.exit_code == 0);
}

TEST_CASE("hash request bodies: JSON text and CSV forms parse and malformed ones say why",
          "[server]") {
  using hashwall::server::parse_hash_body;
  const std::string h(64, 'a'), H(64, 'B');
  auto r = parse_hash_body("{\"hash\": \"" + h + "\", \"quality\": 70}", "application/json", 10);
  REQUIRE(r.error.empty());
  REQUIRE(r.items.size() == 1);
  CHECK(r.items[0].quality == 70);
  r = parse_hash_body("[\"" + h + "\", {\"pdq\": \"" + H + "\", \"name\": \"x\"}]", "", 10);
  REQUIRE(r.error.empty());
  CHECK(r.items.size() == 2);
  CHECK(r.items[1].name == "x");
  r = parse_hash_body(h + "\r\n# comment\n\n" + H + "\n", "text/plain; charset=utf-8", 10);
  REQUIRE(r.error.empty());
  CHECK(r.items.size() == 2);
  r = parse_hash_body(h + ",80,photo.jpg\n", "text/csv", 10);
  REQUIRE(r.error.empty());
  CHECK(r.items[0].quality == 80);
  CHECK(r.items[0].name == "photo.jpg");

  CHECK(parse_hash_body(h + "\n" + h + "\n" + h + "\n", "text/plain", 2).error.find("too many") !=
        std::string::npos);
  // Each refusal names the item and what is wrong with it.
  const auto why = [](const std::string& body, const char* type) {
    return parse_hash_body(body, type, 10).error;
  };
  CHECK(why("{\"hash\": 5}", "application/json") ==
        "hash 1: missing the PDQ hash (\"pdq\": 64 hex characters)");
  CHECK(why("[\"" + h + "\", {\"hash\": \"" + h + "\", \"quality\": 101}]", "application/json") ==
        "hash 2: quality must be an integer from 0 to 100");
  CHECK(why("{\"hashes\": [null]}", "application/json") ==
        "hash 1: expected a hex string or an object {\"pdq\": hex}");
  CHECK(why("{\"hash\": \"abc\"}", "application/json") ==
        "hash 1: not a PDQ hash: expected 64 hex characters, got 3 characters");
  CHECK(why("{\"label\": 3, \"hash\": \"" + h + "\"}", "application/json") ==
        "label must be a string");
  CHECK(why("{\"hash\": ", "application/json") == "malformed JSON");
  CHECK_THAT(why(std::string("\x00\xff\xfe", 3), "application/octet-stream"),
             Catch::StartsWith("line 1: "));
  CHECK(why(h + "\nnot-a-hash\n", "text/plain").rfind("line 2: ", 0) == 0);
  CHECK(why("{\"hashes\": []}", "application/json") == "no hashes in the body");
  CHECK(why("   \n", "text/plain") == "empty body: send one or more PDQ hashes");
}

TEST_CASE("a body of deeply nested JSON is refused without exhausting the stack", "[server]") {
  using hashwall::server::parse_hash_body;
  // 2 MB of brackets, well inside the 25 MB body limit: a million levels is far past any
  // recursion the stack could hold, so a recursive parser or destructor would crash here.
  const std::size_t depth = 1'000'000;
  const std::string open(depth, '['), close(depth, ']');
  auto r = parse_hash_body(open + close, "application/json", 10);
  CHECK_THAT(r.error, Catch::Contains("hash 1"));
  CHECK(r.items.empty());
  r = parse_hash_body(open, "application/json", 10);  // never closed
  CHECK(r.error == "malformed JSON");
  r = parse_hash_body("{\"hashes\": " + open + close + "}", "application/json", 10);
  CHECK_FALSE(r.error.empty());
}

TEST_CASE("a token set finds the caller by secret and refuses empty and unknown ones",
          "[server][auth]") {
  using namespace hashwall::server;
  const TokenSet set({{"alice", Role::Read, "alice-secret-0123456789abcdef"},
                      {"ops", Role::Admin, "ops-secret-fedcba9876543210"}});
  REQUIRE(set.find("alice-secret-0123456789abcdef"));
  CHECK(set.find("alice-secret-0123456789abcdef")->name == "alice");
  CHECK(set.find("ops-secret-fedcba9876543210")->role == Role::Admin);
  CHECK_FALSE(set.find("alice-secret-0123456789abcdeF"));
  CHECK_FALSE(set.find("alice-secret"));
  CHECK_FALSE(set.find(""));
  CHECK_FALSE(TokenSet().find("anything-at-all-0123456789"));
}

TEST_CASE("a tokens file names each token's role and says which line is wrong", "[server][auth]") {
  using namespace hashwall::server;
  const std::string good =
      "# name  role   secret\n"
      "ingest  write  3f9a0c7e21b84d5f9e6a1c2b7d8e0f13\n"
      "\n"
      "review  read   Zq8Lm2Xv9Rt4Wb7Nk1Ps5Hd3Jf6Gc0Ay  # the reviewers' page\n"
      "partner match  partner-5e1d9c2a7b3f4e8d\n"
      "ops     admin  b71e40c9d2a85f36e0c1d4a7b9f2e583\n";
  const TokenSet set = parse_tokens(good, "tokens");
  REQUIRE(set.tokens().size() == 4);
  CHECK(set.tokens()[0].name == "ingest");
  CHECK(set.tokens()[0].role == Role::Write);
  CHECK(set.tokens()[1].role == Role::Read);
  CHECK(set.tokens()[2].role == Role::Match);
  CHECK(set.tokens()[3].role == Role::Admin);
  const auto refused = [](const std::string& text) -> std::string {
    try {
      parse_tokens(text, "tokens");
    } catch (const hashwall::Error& e) {
      return e.what();
    }
    return "accepted";
  };
  CHECK_THAT(refused("a write\n"), Catch::Contains("tokens:1") && Catch::Contains("NAME ROLE"));
  CHECK_THAT(refused("ok read 3f9a0c7e21b84d5f9e6a1c2b7d8e0f13\nb owner 3f9a0c7e21b84d5f9e6a1c\n"),
             Catch::Contains("tokens:2") && Catch::Contains("unknown role 'owner'"));
  CHECK_THAT(refused("a read aaaaaaaaaaaaaaaaaaaaaaaa\n"), Catch::Contains("different characters"));
  CHECK_THAT(refused("a read 0123456789012345\n"), Catch::Contains("too weak"));
  CHECK_THAT(refused("a read short1234\n"), Catch::Contains("too short"));
  CHECK_THAT(refused("a read 3f9a0c7e21b84d5f9e6a1c2b7d8e0f13\n"
                     "a write b71e40c9d2a85f36e0c1d4a7b9f2e583\n"),
             Catch::Contains("tokens:2") && Catch::Contains("used twice"));
  CHECK_THAT(refused("a read 3f9a0c7e21b84d5f9e6a1c2b7d8e0f13\n"
                     "b write 3f9a0c7e21b84d5f9e6a1c2b7d8e0f13\n"),
             Catch::Contains("secret of another"));
  CHECK_THAT(refused("bad/name read 3f9a0c7e21b84d5f9e6a1c2b7d8e0f13\n"),
             Catch::Contains("token name"));
  CHECK_THAT(refused("# nothing\n\n"), Catch::Contains("no token"));
  // A '#' inside a secret belongs to it; after a blank it starts a comment.
  const TokenSet hashy = parse_tokens("a read 3f9a0c7e#21b84d5f9e6a1c2b # note\n", "tokens");
  CHECK(hashy.tokens()[0].secret == "3f9a0c7e#21b84d5f9e6a1c2b");
}

TEST_CASE("metrics render as a Prometheus histogram with cumulative buckets", "[server]") {
  using namespace hashwall::server;
  Metrics m;
  m.record(Endpoint::MatchHash, 200, 0.0004);
  m.record(Endpoint::MatchHash, 200, 0.003);
  m.record(Endpoint::MatchHash, 400, 20.0);
  m.record_verdict(true);
  CHECK(classify("POST", "/v1/match/hash") == Endpoint::MatchHash);
  CHECK(classify("DELETE", "/v1/entries/12") == Endpoint::EntriesRemove);
  CHECK(classify("GET", "/v1/match") == Endpoint::Other);
  const std::string text = m.prometheus(MetricsSnapshot{3, 1, 10, 5.0});
  CHECK(text.find("hashwall_requests_total{endpoint=\"/v1/match/hash\",code=\"200\"} 2") !=
        std::string::npos);
  CHECK(text.find("hashwall_errors_total{endpoint=\"/v1/match/hash\"} 1") != std::string::npos);
  CHECK(text.find("hashwall_request_duration_seconds_bucket{endpoint=\"/v1/match/"
                  "hash\",le=\"0.0005\"} 1") != std::string::npos);
  CHECK(
      text.find(
          "hashwall_request_duration_seconds_bucket{endpoint=\"/v1/match/hash\",le=\"0.005\"} 2") !=
      std::string::npos);
  CHECK(
      text.find(
          "hashwall_request_duration_seconds_bucket{endpoint=\"/v1/match/hash\",le=\"+Inf\"} 3") !=
      std::string::npos);
  CHECK(text.find("hashwall_queue_depth 3") != std::string::npos);
  CHECK(text.find("hashwall_matches_total 1") != std::string::npos);
}

TEST_CASE("a stop at any moment around run starting to listen ends run", "[server]") {
  TempDir tmp;
  auto bank = hashwall::Bank::open(make_bank(tmp), hashwall::OpenMode::ReadOnly);
  for (int i = 0; i < 200; ++i) {
    hashwall::server::ServerOptions o;
    o.port = 0;
    o.threads = 1;
    o.writable = false;
    hashwall::server::HttpServer srv(*bank, o);
    srv.bind();
    std::promise<void> ended;
    auto f = ended.get_future();
    std::thread t([&] {
      srv.run();
      ended.set_value();
    });
    // Stops land before, during and after run() starts to listen.
    std::this_thread::sleep_for(std::chrono::microseconds((i % 20) * 10));
    srv.stop();
    const bool returned = f.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
    if (!returned) srv.stop();  // unblock it before failing
    t.join();
    INFO("iteration " << i);
    REQUIRE(returned);
  }
}

TEST_CASE("a handler's unexpected exception is a JSON 500 and an Error keeps its status",
          "[server]") {
  using hashwall::server::guarded;
  using hashwall::server::Reply;
  Reply r = guarded([]() -> Reply { throw std::runtime_error("out of luck"); }, 1);
  CHECK(r.status == 500);
  CHECK(r.body["code"] == 500);
  CHECK(r.body["error"] == "internal error: out of luck");
  r = guarded([]() -> Reply { throw std::bad_alloc(); }, 1);
  CHECK(r.status == 500);
  CHECK(r.body["code"] == 500);
  r = guarded(
      []() -> Reply {
        throw hashwall::Error(hashwall::ErrorKind::TooLarge, "up.jpg", "too many pixels");
      },
      1);
  CHECK(r.status == 413);
  CHECK(r.body["error"] == "up.jpg: too many pixels");
  r = guarded([]() -> Reply { throw hashwall::Error(hashwall::ErrorKind::Bank, "b.db", "busy"); },
              7);
  CHECK(r.status == 503);
  REQUIRE(r.headers.size() == 1);
  CHECK(r.headers[0] == std::pair<std::string, std::string>{"Retry-After", "7"});
  r = guarded([] { return hashwall::server::error_reply(404, "no such entry"); }, 1);
  CHECK(r.status == 404);
  CHECK(r.body["error"] == "no such entry");
}

TEST_CASE("the access log escapes what a client put in the path so one request is one line",
          "[server]") {
  // Security review finding 7: a decoded %0a in the path forged a log line.
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--read-only", "--access-log"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  auto c = srv.client();
  auto res = c.Get("/v1/nothing%0aGET%20/v1/forged%20200%1b%5b2J");
  REQUIRE(res);
  CHECK(res->status == 404);
  res = c.Get("/v1/health");  // the line after it, to wait for the log
  REQUIRE(res);
  std::string log;
  for (int i = 0; i < 100 && log.find("/v1/health") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    log = srv.log();
  }
  INFO(log);
  CHECK(log.find("\\x0aGET /v1/forged 200\\x1b[2J 404") != std::string::npos);
  CHECK(log.find("\nGET /v1/forged") == std::string::npos);
  CHECK(log.find('\x1b') == std::string::npos);
  // The client address, and "-" for a caller without a token.
  CHECK(log.find("127.0.0.1 - GET /v1/health 200") != std::string::npos);
}

TEST_CASE("no absolute path of the server's reaches a client in an error", "[server]") {
  // Security review finding 2: error bodies named the bank's absolute path.
  using hashwall::server::guarded;
  using hashwall::server::Reply;
  using hashwall::server::without_paths;
  Reply r = guarded(
      []() -> Reply {
        throw hashwall::Error(hashwall::ErrorKind::Bank, "/srv/banks/cases-2026.db",
                              "the bank is locked by another process");
      },
      1);
  CHECK(r.body["error"] == "cases-2026.db: the bank is locked by another process");
  r = guarded(
      []() -> Reply {
        throw std::runtime_error(
            "OpenCV(4.6.0) /build/opencv-x/modules/imgcodecs/src/loadsave.cpp:77: error: (-215)");
      },
      1);
  CHECK(r.body["error"] == "internal error: OpenCV(4.6.0) loadsave.cpp:77: error: (-215)");
  CHECK(without_paths("cannot open '/home/a/b.onnx' or (/x/y)") == "cannot open 'b.onnx' or (y)");
  CHECK(without_paths("writes (POST/DELETE /v1/entries) need a token") ==
        "writes (POST/DELETE /v1/entries) need a token");
  CHECK(without_paths("up.jpg: too many pixels") == "up.jpg: too many pixels");
  CHECK(without_paths("a / b") == "a / b");
}

TEST_CASE("a client cannot loosen the bank's threshold or quality gate to read the bank out",
          "[server]") {
  // Security review finding 2: threshold=256&min_quality=0&top=1000 with an all-zero hash
  // returned every entry.
  TempDir tmp;
  const auto bank = make_bank(tmp);
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--read-only"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  auto c = srv.client();
  const std::string zero(64, '0');
  const auto ask = [&](const std::string& query) {
    auto res =
        c.Post(("/v1/match/hash" + query).c_str(), json{{"hash", zero}}.dump(), "application/json");
    REQUIRE(res);
    return std::make_pair(res->status, json::parse(res->body));
  };
  auto [status, body] = ask("?threshold=256&min_quality=0&top=1000");
  CHECK(status == 400);
  CHECK_THAT(body["error"].get<std::string>(),
             Catch::Contains("top must be an integer from 1 to 100"));
  std::tie(status, body) = ask("?threshold=256");
  CHECK(status == 400);
  CHECK_THAT(body["error"].get<std::string>(), Catch::Contains("at most 31"));
  std::tie(status, body) = ask("?min_quality=0");
  CHECK(status == 400);
  CHECK_THAT(body["error"].get<std::string>(), Catch::Contains("at least 50"));
  std::tie(status, body) = ask("?threshold=20&min_quality=80&top=5");  // stricter is fine
  CHECK(status == 200);
  std::tie(status, body) = ask("");
  CHECK(status == 200);
  CHECK(body["results"][0]["matches"].empty());
  // An operator may open it up on purpose.
  fs::create_directory(tmp / "second");  // its own log file
  ServerProcess open(tmp / "second", {"--bank", bank.string(), "--read-only", "--max-threshold",
                                      "256", "--min-quality-floor", "0", "--max-top", "1000"});
  REQUIRE(open.port() > 0);
  auto c2 = open.client();
  auto res = c2.Post("/v1/match/hash?threshold=256&min_quality=0&top=1000",
                     json{{"hash", zero}}.dump(), "application/json");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(json::parse(res->body)["results"][0]["matches"].size() == 6);
}

namespace {

// GET /v1/ready: the status and the body.
std::pair<int, json> ready_of(const ServerProcess& srv) {
  auto c = srv.client();
  auto res = c.Get("/v1/ready");
  if (!res) return {0, json{}};
  return {res->status, json::parse(res->body)};
}

bool wait_until(double seconds, const std::function<bool()>& ok) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return ok();
}

// 1: the hash matched, 0: it did not, -1: no answer or not a 200.
int matches_hash(const ServerProcess& srv, const std::string& hex) {
  auto c = srv.client();
  auto res = c.Post("/v1/match/hash", json{{"hash", hex}}.dump(), "application/json");
  if (!res || res->status != 200) return -1;
  return json::parse(res->body)["match"] == true ? 1 : 0;
}

}  // namespace

TEST_CASE("replicas of one bank match each other's writes and say when they are ready",
          "[server][stores]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  TempDir dir_a, dir_b;
  ServerProcess a(dir_a.path(), writable_args(tmp, bank));
  ServerProcess b(dir_b.path(), {"--bank", bank.string(), "--read-only"});
  INFO(a.log() << b.log());
  REQUIRE(a.port() > 0);
  REQUIRE(b.port() > 0);
  // Ready once the indexes are loaded (every signal's, built by the follower).
  for (const auto* srv : {&a, &b})
    CHECK(wait_until(60, [&] { return ready_of(*srv).first == 200; }));
  const auto [status, body] = ready_of(b);
  CHECK(body["status"] == "ready");
  CHECK(body["lag_seconds"].get<double>() <= body["max_lag_seconds"].get<double>());

  // A write acknowledged by one replica is matched by the other, and a removal likewise.
  const std::string hex = "f8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
  CHECK(matches_hash(b, hex) == 0);
  auto c = a.client();
  const httplib::Headers auth{{"Authorization", std::string("Bearer ") + kToken}};
  auto added =
      c.Post("/v1/entries", auth, json{{"hash", hex}, {"label", "new"}}.dump(), "application/json");
  REQUIRE(added);
  REQUIRE(added->status == 201);
  CHECK(wait_until(30, [&] { return matches_hash(b, hex) == 1; }));
  const auto id = json::parse(added->body)["ids"][0].get<std::int64_t>();
  auto del = c.Delete(("/v1/entries/" + std::to_string(id)).c_str(), auth);
  REQUIRE(del);
  CHECK(del->status == 200);
  CHECK(wait_until(30, [&] { return matches_hash(b, hex) == 0; }));
  // The CLI's writes too (another process, not a replica).
  const auto list = tmp / "list.txt";
  std::ofstream(list) << hex << "\n";
  REQUIRE(hwtest::run_hashwall("import '" + list.string() + "' --bank '" + bank.string() +
                               "' --format hex")
              .exit_code == 0);
  CHECK(wait_until(30, [&] { return matches_hash(a, hex) == 1 && matches_hash(b, hex) == 1; }));
  CHECK(json::parse(b.client().Get("/v1/stats")->body)["changes_followed"].get<int>() >= 3);
}

TEST_CASE("a replica that has not caught up within --max-lag answers 503 on /v1/ready",
          "[server]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  // It catches up once at start, then looks again only after a minute.
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--read-only", "--max-lag", "0.2",
                                 "--follow-interval", "60000"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  CHECK(wait_until(60, [&] { return ready_of(srv).second.value("generation", 0) > 0; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  const auto [status, body] = ready_of(srv);
  CHECK(status == 503);
  CHECK(body["status"] == "behind");
  CHECK(body["lag_seconds"].get<double>() > 0.2);
  // Liveness is another question: /v1/health still answers 200.
  CHECK(srv.client().Get("/v1/health")->status == 200);
}

TEST_CASE("a replica rides out a PostgreSQL restart: 503 while it is away, then caught up",
          "[server][pgonly]") {
  // Its own server, stopped and started again on the same port (tools/pg_scratch.sh).
  const auto script = hwtest::source_dir() / "tools" / "pg_scratch.sh";
  const auto made = hwtest::run_shell("mktemp -d /tmp/hashwall-pgr.XXXXXX");
  REQUIRE(made.exit_code == 0);
  const std::string dir = made.out.substr(0, made.out.find('\n'));
  struct Cleanup {
    std::string cmd;
    ~Cleanup() { hwtest::run_shell(cmd); }
  } cleanup{"'" + script.string() + "' stop " + dir + " --remove"};
  const auto start = hwtest::run_shell("'" + script.string() + "' start " + dir);
  INFO(start.err);
  if (start.exit_code != 0 && !fs::exists("/usr/lib/postgresql/15/bin/initdb"))
    hwtest::hw_skip_exit("needs PostgreSQL 15 (Debian's postgresql package)");
  REQUIRE(start.exit_code == 0);
  const std::string bank = start.out.substr(0, start.out.find('\n'));
  TempDir tmp;
  REQUIRE(
      hwtest::run_hashwall("index '" + (samples() / "bank").string() + "' --bank '" + bank + "' -q")
          .exit_code == 0);
  ServerProcess srv(tmp.path(),
                    {"--bank", bank, "--read-only", "--max-lag", "1", "--follow-interval", "50"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  REQUIRE(wait_until(60, [&] { return ready_of(srv).first == 200; }));
  const std::string before = "0f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22f";
  const auto first = tmp / "first.txt";
  std::ofstream(first) << before << "\n";
  REQUIRE(hwtest::run_hashwall("import '" + first.string() + "' --bank '" + bank + "' --format hex")
              .exit_code == 0);
  REQUIRE(wait_until(30, [&] { return matches_hash(srv, before) == 1; }));

  REQUIRE(hwtest::run_shell("'" + script.string() + "' stop " + dir).exit_code == 0);
  CHECK(wait_until(30, [&] { return ready_of(srv).first == 503; }));
  CHECK(ready_of(srv).second["status"] == "behind");
  // While the database is away the replica still answers what its indexes in memory
  // decide alone (no match); a hit needs its entry's row, so it is an error until the
  // database is back, and never a "no match".
  CHECK(matches_hash(srv, std::string(64, 'a')) == 0);
  CHECK(matches_hash(srv, before) != 0);
  REQUIRE(hwtest::run_shell("'" + script.string() + "' start " + dir).exit_code == 0);
  // Back: a write made after the restart (by the CLI) is followed.
  const std::string hex = "f8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
  const auto list = tmp / "list.txt";
  std::ofstream(list) << hex << "\n";
  REQUIRE(hwtest::run_hashwall("import '" + list.string() + "' --bank '" + bank + "' --format hex")
              .exit_code == 0);
  CHECK(wait_until(30, [&] { return ready_of(srv).first == 200; }));
  CHECK(wait_until(30, [&] { return matches_hash(srv, hex) == 1; }));
  CHECK(srv.log().find("following the bank again") != std::string::npos);
}

TEST_CASE(
    "serve: entries go to a list matches look in chosen lists and the audit log needs a read token",
    "[server][lists][stores]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  const auto tokens = write_tokens(tmp);
  REQUIRE(hwtest::run_hashwall("list create ok --kind allow --bank '" + bank.string() + "'")
              .exit_code == 0);
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--tokens", tokens.string()});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  auto c = srv.client();
  const auto with = [](const char* token) {
    return httplib::Headers{{"Authorization", std::string("Bearer ") + token}};
  };
  // The PDQ hash of a sample, added to the allow list by the ingest token, with a reason.
  const auto sample = samples() / "bank" / "mate_Aqua.jpg";
  const auto hashed = hwtest::run_hashwall("hash '" + sample.string() + "'");
  REQUIRE(hashed.exit_code == 0);
  const std::string hex = hashed.out.substr(0, 64);
  auto res = c.Post("/v1/entries?list=nosuch", with(kWriteToken), json{{"hash", hex}}.dump(),
                    "application/json");
  REQUIRE(res);
  CHECK(res->status == 400);
  CHECK(res->body.find("nosuch") != std::string::npos);
  res = c.Post("/v1/entries?list=ok&reason=known%20logo", with(kWriteToken),
               json{{"hash", hex}}.dump(), "application/json");
  REQUIRE(res);
  REQUIRE(res->status == 201);
  const auto allow_id = json::parse(res->body)["ids"][0].get<std::int64_t>();

  // The same hash matches its block entry (indexed from the file) and the allow entry,
  // equally: allowed. Looking in the default list only: a match.
  const auto match = [&](const std::string& query) {
    auto r = c.Post(("/v1/match/hash" + query).c_str(), with(kReadToken),
                    json{{"hash", hex}}.dump(), "application/json");
    REQUIRE(r);
    INFO(r->body);
    REQUIRE(r->status == 200);
    return json::parse(r->body)["results"][0];
  };
  auto m = match("");
  CHECK(m["status"] == "allowed");
  bool saw_list = false;
  for (const auto& h : m["matches"])
    if (h["id"] == allow_id) saw_list = h["list"] == "ok" && h["allow"] == true;
  CHECK(saw_list);
  CHECK(match("?list=default")["status"] == "match");
  CHECK(match("?list=ok")["status"] == "allowed");
  res = c.Post("/v1/match/hash?list=nosuch", with(kReadToken), json{{"hash", hex}}.dump(),
               "application/json");
  REQUIRE(res);
  CHECK(res->status == 400);

  // The audit log: who added what, to which list, why; read tokens only.
  res = c.Get("/v1/audit", with(kReadToken));
  REQUIRE(res);
  REQUIRE(res->status == 200);
  const auto log = json::parse(res->body);
  REQUIRE(log["events"].size() == 3);  // the index, the list, the API's add
  const auto& last = log["events"][2];
  CHECK(last["action"] == "add");
  CHECK(last["actor"] == "token:ingest");
  CHECK(last["list"] == "ok");
  CHECK(last["reason"] == "known logo");
  CHECK(last["ids"] == json::array({allow_id}));
  res =
      c.Get(("/v1/audit?after=" + std::to_string(last["id"].get<int>())).c_str(), with(kReadToken));
  REQUIRE(res);
  CHECK(json::parse(res->body)["events"].empty());
  res = c.Get("/v1/audit", with(kMatchToken));
  REQUIRE(res);
  CHECK(res->status == 403);
  res = c.Get("/v1/audit");
  REQUIRE(res);
  CHECK(res->status == 401);
  res = c.Get("/v1/audit?limit=0", with(kReadToken));
  REQUIRE(res);
  CHECK(res->status == 400);
  // Removal through the API is attributed too.
  res = c.Delete(("/v1/entries/" + std::to_string(allow_id)).c_str(), with(kWriteToken));
  REQUIRE(res);
  CHECK(res->status == 200);
  res = c.Get("/v1/audit?after=3", with(kAdminToken));
  REQUIRE(res);
  const auto tail = json::parse(res->body)["events"];
  REQUIRE(tail.size() == 1);
  CHECK(tail[0]["action"] == "remove");
  CHECK(tail[0]["actor"] == "token:ingest");
}
