// hashwall serve: the real binary on a free loopback port, driven over HTTP; plus the
// service's pure pieces (body parser, token check, metrics) in-process.
#include <arpa/inet.h>
#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <random>
#include <regex>
#include <sstream>
#include <thread>

#include "bank/bank.hpp"
#include "core/error.hpp"
#include "server/metrics.hpp"
#include "server/server.hpp"
#include "server/service.hpp"
#include "support.hpp"

using hwtest::TempDir;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const char* const kToken = "test-token-0123456789abcdef";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::path samples() { return hwtest::source_dir() / "samples"; }

// `hashwall serve` as a child process on 127.0.0.1 with port 0; the destructor stops it
// (SIGTERM, then SIGKILL) so no test leaves a server behind, even when it fails.
class ServerProcess {
 public:
  ServerProcess(const fs::path& dir, const std::vector<std::string>& args)
      : log_(dir / "serve.log") {
    std::vector<std::string> argv = {hwtest::hashwall_binary().string(), "serve", "--listen",
                                     "127.0.0.1:0"};
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      if (fd >= 0) {
        dup2(fd, STDERR_FILENO);
        dup2(fd, STDOUT_FILENO);
      }
      std::vector<char*> cargs;
      for (auto& a : argv) cargs.push_back(a.data());
      cargs.push_back(nullptr);
      execv(cargs[0], cargs.data());
      _exit(127);
    }
    // Wait for the "listening on http://127.0.0.1:PORT" line (or an early exit).
    const std::regex re(R"(listening on http://127\.0\.0\.1:(\d+))");
    // A generous bound (60 s), not a timing test: ASan on two busy cores loads slowly.
    for (int i = 0; i < 1200 && port_ == 0; ++i) {
      std::smatch m;
      const std::string text = slurp(log_);
      if (std::regex_search(text, m, re))
        port_ = std::stoi(m[1]);
      else if (exited())
        break;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~ServerProcess() {
    if (pid_ <= 0 || exited()) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 100 && !exited(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!exited()) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status_, 0);
    }
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  std::string log() const { return slurp(log_); }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(30, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }
  void terminate() { kill(pid_, SIGTERM); }
  // Waits up to `seconds` for the process to end; its exit code, or -1 if still running.
  int wait_exit(double seconds) {
    for (int i = 0; i < seconds * 20; ++i) {
      if (exited()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!exited()) return -1;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : 128 + WTERMSIG(status_);
  }

 private:
  bool exited() {
    if (reaped_) return true;
    if (waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
    return reaped_;
  }
  fs::path log_;
  pid_t pid_ = -1;
  int port_ = 0;
  int status_ = 0;
  bool reaped_ = false;
};

// A bank of samples/bank and a token file in `tmp`.
fs::path make_bank(const TempDir& tmp) {
  const auto bank = tmp / "bank.db";
  auto r = hwtest::run_hashwall("index '" + (samples() / "bank").string() + "' --bank '" +
                                bank.string() + "' --label samples");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  std::ofstream(tmp / "token") << kToken << "\n";
  fs::permissions(tmp / "token", fs::perms::owner_read | fs::perms::owner_write);
  return bank;
}

std::vector<std::string> writable_args(const TempDir& tmp, const fs::path& bank) {
  return {"--bank", bank.string(), "--token-file", (tmp / "token").string()};
}

// A loopback connection that sends nothing: it holds a worker until the read timeout.
// Waits `settle_ms` so that the server has accepted it before the caller goes on.
int connect_idle(int port, int settle_ms) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms));
  return fd;
}

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
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--read-only"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  auto c = srv.client();

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
  ServerProcess srv(tmp.path(), {"--bank", bank.string(), "--read-only"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  auto c = srv.client();
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

  j = post_file(c, "/v1/match", photo);
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
    auto cr = c.Post("/v1/match", std::string(jpg.begin(), jpg.end()), "image/jpeg");
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
  res = c.Post("/v1/match/hash", json{{"hash", h}}.dump(), "application/json");
  REQUIRE(res);
  CHECK(json::parse(res->body)["results"][0]["matches"][0]["label"] == "partner");

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
  CHECK(j["entries"] == 7);
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

TEST_CASE("a full request queue answers 503 with Retry-After instead of piling up", "[server]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  // How long an idle connection holds the worker (--keep-alive) is a generous 20 s so
  // that a slow machine still sends the next request while it is held; the test does not
  // wait for it.
  ServerProcess srv(tmp.path(),
                    {"--bank", bank.string(), "--read-only", "--threads", "1", "--queue", "1",
                     "--queue-wait", "60000", "--timeout", "20", "--keep-alive", "20"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  // Two idle connections: the first holds the only worker, the second fills the queue.
  const int a = connect_idle(srv.port(), 300);
  const int b = connect_idle(srv.port(), 300);
  auto c = srv.client();
  auto res = c.Get("/v1/stats");
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
  close(a);
  close(b);
  // Once the idle connections are gone, requests are served again (polled: the worker
  // notices the closed connections when the machine gets to it).
  int status = 0;
  for (int i = 0; i < 300 && status != 200; ++i) {
    auto c3 = srv.client();
    res = c3.Get("/v1/stats");
    status = res ? res->status : -1;
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(status == 200);
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

TEST_CASE("at SIGTERM connections already queued are answered and later ones get 503", "[server]") {
  TempDir tmp;
  const auto bank = make_bank(tmp);
  // One worker, held by an idle connection until --keep-alive: whatever connects
  // meanwhile waits in the queue. 10 s leaves a slow machine time to queue the early
  // requests and send the late one while the worker is held.
  ServerProcess srv(tmp.path(),
                    {"--bank", bank.string(), "--read-only", "--threads", "1", "--queue", "16",
                     "--queue-wait", "60000", "--timeout", "10", "--keep-alive", "10"});
  INFO(srv.log());
  REQUIRE(srv.port() > 0);
  const int idle = connect_idle(srv.port(), 300);

  const auto ask = [&](std::atomic<int>& status, std::string& body) {
    httplib::Client c("127.0.0.1", srv.port());
    c.set_read_timeout(60, 0);
    auto res =
        c.Post("/v1/match/hash", json{{"hash", std::string(64, 'a')}}.dump(), "application/json");
    if (res) {
      body = res->body;
      status = res->status;
    } else {
      status = -1;
    }
  };
  std::atomic<int> queued_status[3] = {0, 0, 0};
  std::string queued_body[3];
  std::vector<std::thread> early;
  for (int i = 0; i < 3; ++i) early.emplace_back([&, i] { ask(queued_status[i], queued_body[i]); });
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  srv.terminate();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::atomic<int> late_status{0};
  std::string late_body;
  std::thread late([&] { ask(late_status, late_body); });
  for (auto& t : early) t.join();
  late.join();
  for (int i = 0; i < 3; ++i) {
    INFO("queued request " << i << ": " << queued_body[i]);
    CHECK(queued_status[i] == 200);
    CHECK(json::parse(queued_body[i], nullptr, false)["results"].size() == 1);
  }
  INFO("late request: " << late_body);
  CHECK(late_status == 503);
  CHECK(late_body.find("shutting down") != std::string::npos);
  CHECK(srv.wait_exit(60) == 0);
  close(idle);
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
          "[server]") {
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

TEST_CASE("the token check compares digests and refuses an empty expected token", "[server]") {
  using hashwall::server::token_matches;
  CHECK(token_matches("secret-token-1234", "secret-token-1234"));
  CHECK_FALSE(token_matches("secret-token-1235", "secret-token-1234"));
  CHECK_FALSE(token_matches("secret", "secret-token-1234"));
  CHECK_FALSE(token_matches("", ""));
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
  CHECK(log.find("127.0.0.1 GET /v1/health 200") != std::string::npos);  // the client address
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
