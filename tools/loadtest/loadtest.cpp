// hashwall_loadtest: drives a running `hashwall serve` on 127.0.0.1 with concurrent
// keep-alive clients sending a weighted mix of photo matches (matching and not), hash
// lookups (matching and not) and writes (add a hash, then delete it), bounded in requests
// and time. Prints per-endpoint throughput, p50/p99/max latency and status counts, and
// the single-thread decode+hash rate of the same photos measured in-process, so photo
// throughput can be read against what hashing alone allows.
//
// Loopback only: the host is fixed to 127.0.0.1.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "image/load.hpp"
#include "match/fingerprint.hpp"

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  int port = 8080;
  std::string token_file;
  std::string photos;
  std::string hashes;  // hex hashes known to be in the bank (matching lookups)
  int clients = 4;
  double duration = 10;
  std::int64_t max_requests = 1'000'000;
  int hash_weight = 90, photo_weight = 9, write_weight = 1;
  int batch = 1;  // hashes per /v1/match/hash request
  bool json_out = false;
  bool hash_rate = true;
  std::string gen_hashes_out;
  std::int64_t gen_hashes = 0;
  std::uint64_t seed = 1;
};

struct Sample {
  double ms;
  int status;  // 0: transport error
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string random_hex(std::mt19937_64& rng) {
  static const char* digits = "0123456789abcdef";
  std::string h(64, '0');
  for (auto& c : h) c = digits[rng() & 15];
  return h;
}

double percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k];
}

// Single-thread decode + PDQ (with dihedral variants) rate on the photos, in memory.
double hashing_rate(const std::vector<std::pair<std::string, std::string>>& photos,
                    double seconds) {
  hashwall::LoadOptions opt;
  std::size_t n = 0;
  const auto t0 = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
    for (const auto& [name, bytes] : photos) {
      const auto img = hashwall::decode_image(
          std::span(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()), name, opt);
      (void)hashwall::fingerprint(img, opt.mode);
      ++n;
    }
  }
  return static_cast<double>(n) / std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  CLI::App app{"Load test for `hashwall serve` on 127.0.0.1 (see docs/API.md, Benchmarks)",
               "hashwall_loadtest"};
  app.add_option("--port", a.port, "Port of the running server on 127.0.0.1");
  app.add_option("--token-file", a.token_file,
                 "Bearer token for the write requests (no writes without it)");
  app.add_option("--photos", a.photos,
                 "Folder of photos to send (files with 'broken' in the name are skipped)");
  app.add_option("--hashes", a.hashes,
                 "Hex hashes in the bank (one per line), for matching lookups");
  app.add_option("-c,--clients", a.clients, "Concurrent keep-alive clients")->capture_default_str();
  app.add_option("-d,--duration", a.duration, "Seconds to run (at most 600)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  app.add_option("-n,--max-requests", a.max_requests, "Stop after this many requests")
      ->capture_default_str();
  app.add_option("--hash", a.hash_weight, "Weight of /v1/match/hash requests")
      ->capture_default_str();
  app.add_option("--photo", a.photo_weight, "Weight of /v1/match requests")->capture_default_str();
  app.add_option("--write", a.write_weight, "Weight of writes (POST then DELETE /v1/entries)")
      ->capture_default_str();
  app.add_option("--batch", a.batch, "Hashes per /v1/match/hash request")->capture_default_str();
  app.add_flag("--json", a.json_out, "Print one JSON document");
  app.add_flag("!--no-hash-rate", a.hash_rate, "Skip the single-thread hashing measurement");
  app.add_option("--gen-hashes", a.gen_hashes,
                 "Only write this many random hex hashes to --out and exit");
  app.add_option("--out", a.gen_hashes_out, "File for --gen-hashes");
  app.add_option("--seed", a.seed, "Random seed")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::mt19937_64 seed_rng(a.seed);
  if (a.gen_hashes > 0) {
    std::ofstream out(a.gen_hashes_out, std::ios::trunc);
    if (!out) {
      std::fprintf(stderr, "hashwall_loadtest: cannot write %s\n", a.gen_hashes_out.c_str());
      return 2;
    }
    for (std::int64_t i = 0; i < a.gen_hashes; ++i) out << random_hex(seed_rng) << '\n';
    return out ? 0 : 2;
  }

  std::vector<std::pair<std::string, std::string>> photos;
  if (!a.photos.empty()) {
    for (const auto& e : fs::directory_iterator(a.photos))
      if (e.is_regular_file() && e.path().filename().string().find("broken") == std::string::npos)
        photos.emplace_back(e.path().filename().string(), slurp(e.path()));
    std::sort(photos.begin(), photos.end());
  }
  if (photos.empty()) a.photo_weight = 0;
  std::vector<std::string> known;
  if (!a.hashes.empty()) {
    std::ifstream in(a.hashes);
    for (std::string line; std::getline(in, line) && known.size() < 100000;)
      if (line.size() >= 64) known.push_back(line.substr(0, 64));
  }
  std::string token;
  if (!a.token_file.empty()) {
    token = slurp(a.token_file);
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back())))
      token.pop_back();
  }
  if (token.empty()) a.write_weight = 0;
  const int total_weight = a.hash_weight + a.photo_weight + a.write_weight;
  if (total_weight <= 0) {
    std::fprintf(stderr, "hashwall_loadtest: nothing to send (all weights 0)\n");
    return 2;
  }

  {
    httplib::Client probe("127.0.0.1", a.port);
    auto res = probe.Get("/v1/health");
    if (!res || res->status != 200) {
      std::fprintf(stderr, "hashwall_loadtest: no hashwall server answering on 127.0.0.1:%d\n",
                   a.port);
      return 2;
    }
  }

  std::mutex mu;
  std::map<std::string, std::vector<Sample>> samples;
  std::atomic<std::int64_t> issued{0};
  std::atomic<std::int64_t> photo_matches{0}, hash_matches{0};
  const auto t0 = Clock::now();
  const auto deadline =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a.duration));
  std::vector<std::thread> threads;
  for (int c = 0; c < a.clients; ++c) {
    threads.emplace_back([&, c] {
      std::mt19937_64 rng(a.seed * 7919 + static_cast<std::uint64_t>(c));
      httplib::Client cli("127.0.0.1", a.port);
      cli.set_keep_alive(true);
      cli.set_tcp_nodelay(true);  // else Nagle + delayed ACK add 40 ms to each small POST
      cli.set_read_timeout(30, 0);
      cli.set_connection_timeout(5, 0);
      const httplib::Headers auth = {{"Authorization", "Bearer " + token}};
      std::map<std::string, std::vector<Sample>> mine;
      auto timed = [&](const std::string& endpoint, auto&& call) {
        const auto s = Clock::now();
        httplib::Result res = call();
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
        mine[endpoint].push_back({ms, res ? res->status : 0});
        return res;
      };
      while (Clock::now() < deadline && issued.fetch_add(1) < a.max_requests) {
        const int pick = static_cast<int>(rng() % static_cast<std::uint64_t>(total_weight));
        if (pick < a.hash_weight) {
          json body;
          json list = json::array();
          for (int b = 0; b < a.batch; ++b)
            list.push_back(!known.empty() && (rng() & 1) ? known[rng() % known.size()]
                                                         : random_hex(rng));
          body["hashes"] = std::move(list);
          const std::string text = body.dump();
          auto res = timed("POST /v1/match/hash",
                           [&] { return cli.Post("/v1/match/hash", text, "application/json"); });
          if (res && res->status == 200 && res->body.find("\"match\":true") != std::string::npos)
            ++hash_matches;
        } else if (pick < a.hash_weight + a.photo_weight) {
          const auto& [name, bytes] = photos[rng() % photos.size()];
          auto res =
              timed("POST /v1/match", [&] { return cli.Post("/v1/match", bytes, "image/jpeg"); });
          if (res && res->status == 200 && res->body.find("\"match\":true") != std::string::npos)
            ++photo_matches;
        } else {
          const std::string text = json{{"hash", random_hex(rng)}, {"label", "loadtest"}}.dump();
          auto res = timed("POST /v1/entries",
                           [&] { return cli.Post("/v1/entries", auth, text, "application/json"); });
          if (res && res->status == 201) {
            const auto id = json::parse(res->body)["ids"][0].get<std::int64_t>();
            const std::string path = "/v1/entries/" + std::to_string(id);
            timed("DELETE /v1/entries", [&] { return cli.Delete(path.c_str(), auth); });
          }
        }
      }
      std::lock_guard lock(mu);
      for (auto& [k, v] : mine) samples[k].insert(samples[k].end(), v.begin(), v.end());
    });
  }
  for (auto& t : threads) t.join();
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();

  json report;
  report["server"] = "127.0.0.1:" + std::to_string(a.port);
  report["clients"] = a.clients;
  report["seconds"] = secs;
  report["hash_batch"] = a.batch;
  std::int64_t total = 0, errors = 0;
  json eps = json::object();
  for (auto& [endpoint, v] : samples) {
    std::vector<double> ms;
    std::map<std::string, std::int64_t> codes;
    std::int64_t errs = 0;
    for (const auto& s : v) {
      ms.push_back(s.ms);
      codes[s.status ? std::to_string(s.status) : "transport-error"]++;
      if (s.status == 0 || (s.status >= 400 && s.status != 413 && s.status != 503)) ++errs;
    }
    json e;
    e["requests"] = v.size();
    e["per_second"] = static_cast<double>(v.size()) / secs;
    e["p50_ms"] = percentile(ms, 0.50);
    e["p99_ms"] = percentile(ms, 0.99);
    e["max_ms"] = ms.empty() ? 0.0 : *std::max_element(ms.begin(), ms.end());
    e["status"] = codes;
    e["errors"] = errs;
    total += static_cast<std::int64_t>(v.size());
    errors += errs;
    eps[endpoint] = e;
  }
  report["endpoints"] = eps;
  report["requests"] = total;
  report["per_second"] = static_cast<double>(total) / secs;
  report["errors"] = errors;
  report["photo_matches"] = photo_matches.load();
  report["hash_requests_with_a_match"] = hash_matches.load();
  if (a.hash_rate && !photos.empty())
    report["single_thread_hash_per_second"] = hashing_rate(photos, 2.0);

  if (a.json_out) {
    std::printf("%s\n", report.dump(2).c_str());
  } else {
    std::printf("hashwall_loadtest: %d clients, %.1f s, 127.0.0.1:%d\n", a.clients, secs, a.port);
    std::printf("%-22s %9s %10s %9s %9s %9s %7s  %s\n", "endpoint", "requests", "req/s", "p50 ms",
                "p99 ms", "max ms", "errors", "status");
    for (auto it = eps.begin(); it != eps.end(); ++it) {
      const json& e = it.value();
      std::printf(
          "%-22s %9lld %10.0f %9.2f %9.2f %9.2f %7lld  %s\n", it.key().c_str(),
          static_cast<long long>(e["requests"].get<std::int64_t>()), e["per_second"].get<double>(),
          e["p50_ms"].get<double>(), e["p99_ms"].get<double>(), e["max_ms"].get<double>(),
          static_cast<long long>(e["errors"].get<std::int64_t>()), e["status"].dump().c_str());
    }
    std::printf("total %lld requests, %.0f req/s, %lld errors (413/503 not counted as errors)\n",
                static_cast<long long>(total), static_cast<double>(total) / secs,
                static_cast<long long>(errors));
    if (report.contains("single_thread_hash_per_second"))
      std::printf("single-thread decode + PDQ (8 variants) of the same photos: %.0f photos/s\n",
                  report["single_thread_hash_per_second"].get<double>());
  }
  return errors == 0 ? 0 : 1;
}
