// hashwall_cluster: the client side of the many-node fault run (tools/cluster_faults.sh,
// issue #16). Against a load balancer in front of `hashwall serve` replicas of one
// PostgreSQL bank, on 127.0.0.1 only:
//
//   hashwall_cluster wait-ready --replicas P1,P2,P3 [--timeout S] [--generation-equal]
//       waits until every replica's GET /v1/ready is 200 (and, with --generation-equal,
//       all at one generation); prints the seconds it took.
//   hashwall_cluster run --balancer P --replicas P1,P2,P3 --token-file F --duration S
//                        [--events FILE] [--grace S] [--json]
//       for S seconds: writers add new hashes through the balancer (each acknowledged
//       write is remembered with its id); readers look up hashes known to be in the bank
//       (each must match, under its own id) and random ones (none may match); a checker
//       asks every replica directly for each acknowledged write until it matches (change
//       propagation). Then, once every replica is ready again: every acknowledged write
//       must be found by every replica under its id (none lost, all caught up). Errors
//       (transport, 5xx) are allowed only inside the outage windows the fault script
//       wrote to --events ("NAME START_MS END_MS", Unix milliseconds; END 0: still open)
//       plus --grace seconds. Exit 0 when all of that holds, 1 when not, 2 on bad usage.
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string random_hex(std::mt19937_64& rng) {
  static const char* digits = "0123456789abcdef";
  std::string h(64, '0');
  for (auto& c : h) c = digits[rng() & 15];
  return h;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5)];
}

std::vector<int> parse_ports(const std::string& text) {
  std::vector<int> out;
  std::stringstream ss(text);
  for (std::string part; std::getline(ss, part, ',');)
    if (!part.empty()) out.push_back(std::stoi(part));
  return out;
}

httplib::Client client(int port, int read_timeout_s = 10) {
  httplib::Client c("127.0.0.1", port);
  c.set_keep_alive(true);
  c.set_tcp_nodelay(true);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(read_timeout_s, 0);
  return c;
}

// The ids a single-hash lookup matched ({} when none); nullopt on a transport error or a
// status other than 200.
std::optional<std::vector<std::int64_t>> lookup(httplib::Client& c, const std::string& hex) {
  auto res = c.Post("/v1/match/hash", json{{"hash", hex}}.dump(), "application/json");
  if (!res || res->status != 200) return std::nullopt;
  std::vector<std::int64_t> ids;
  const auto j = json::parse(res->body, nullptr, false);
  if (j.is_discarded() || !j.contains("results") || j["results"].empty()) return std::nullopt;
  for (const auto& m : j["results"][0].value("matches", json::array()))
    ids.push_back(m.value("id", std::int64_t{-1}));
  return ids;
}

struct Ready {
  int status = 0;
  std::uint64_t generation = 0;
};
Ready ready_of(int port) {
  auto c = client(port, 2);
  auto res = c.Get("/v1/ready");
  if (!res) return {};
  const auto j = json::parse(res->body, nullptr, false);
  return {res->status, j.is_discarded() ? 0 : j.value("generation", std::uint64_t{0})};
}

// Seconds until every replica is ready (and at one generation when asked); -1 on timeout.
double wait_ready(const std::vector<int>& ports, double timeout, bool equal) {
  const auto t0 = Clock::now();
  for (;;) {
    bool all = true;
    std::uint64_t gen = 0;
    bool first = true, same = true;
    for (int p : ports) {
      const auto r = ready_of(p);
      all = all && r.status == 200;
      if (!first && r.generation != gen) same = false;
      gen = r.generation;
      first = false;
    }
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    if (all && (!equal || same)) return secs;
    if (secs > timeout) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

struct Window {
  std::string name;
  std::int64_t start = 0, end = 0;
};

std::vector<Window> read_events(const std::string& file) {
  std::vector<Window> out;
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    Window w;
    if (ls >> w.name >> w.start >> w.end) out.push_back(w);
  }
  return out;
}

struct Written {
  std::string hex;
  std::int64_t id = 0;
  std::int64_t acked_ms = 0;
};

struct Failure {
  std::int64_t at_ms = 0;
  std::string what;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Client side of the many-node fault run (tools/cluster_faults.sh)",
               "hashwall_cluster"};
  app.require_subcommand(1);
  std::string replicas_text, token_file, events_file;
  int balancer = 0, writers = 2, readers = 4;
  double duration = 30, timeout = 120, grace = 3;
  bool generation_equal = false, json_out = false;
  std::uint64_t seed = 1;
  auto* wait_cmd = app.add_subcommand("wait-ready", "Wait until every replica is ready");
  wait_cmd->add_option("--replicas", replicas_text, "Ports of the replicas")->required();
  wait_cmd->add_option("--timeout", timeout, "Seconds before giving up");
  wait_cmd->add_flag("--generation-equal", generation_equal, "Also at one generation");
  auto* run_cmd = app.add_subcommand("run", "Load, propagation and the checks after faults");
  run_cmd->add_option("--balancer", balancer, "Port of the load balancer")->required();
  run_cmd->add_option("--replicas", replicas_text, "Ports of the replicas")->required();
  run_cmd->add_option("--token-file", token_file, "Bearer token with the write role")->required();
  run_cmd->add_option("--duration", duration, "Seconds of load")->check(CLI::Range(1.0, 3600.0));
  run_cmd->add_option("--events", events_file, "Outage windows the fault script wrote");
  run_cmd->add_option("--grace", grace, "Seconds after a window still counted in it");
  run_cmd->add_option("--writers", writers, "Concurrent writers");
  run_cmd->add_option("--readers", readers, "Concurrent readers");
  run_cmd->add_option("--timeout", timeout, "Seconds to wait for the replicas at the end");
  run_cmd->add_option("--seed", seed, "Random seed");
  run_cmd->add_flag("--json", json_out, "Print one JSON document");
  CLI11_PARSE(app, argc, argv);
  const auto ports = parse_ports(replicas_text);
  if (ports.empty()) {
    std::fprintf(stderr, "hashwall_cluster: no replica ports\n");
    return 2;
  }

  if (wait_cmd->parsed()) {
    const double s = wait_ready(ports, timeout, generation_equal);
    if (s < 0) {
      std::fprintf(stderr, "hashwall_cluster: replicas not ready after %.0f s\n", timeout);
      return 1;
    }
    std::printf("%.3f\n", s);
    return 0;
  }

  std::string token;
  {
    std::ifstream in(token_file);
    std::getline(in, token);
  }
  const httplib::Headers auth{{"Authorization", "Bearer " + token}};

  std::mutex mu;
  std::vector<Written> written;  // acknowledged writes, in order
  std::vector<Failure> failures;
  std::vector<std::string> wrong;  // wrong answers: never allowed
  // Known hashes not found, with when: inside an outage window the replica answers from its
  // indexes as of the store's last answer (bounded by --max-lag and the balancer's checks),
  // so a write made just before is missed there; outside one that is a wrong answer.
  std::vector<Failure> misses;
  std::vector<double> propagation_ms;
  std::int64_t reads = 0, writes_tried = 0, propagation_skipped = 0;
  const auto fail = [&](std::string what) {
    std::lock_guard lock(mu);
    failures.push_back({now_ms(), std::move(what)});
  };
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(duration));
  std::atomic<std::size_t> next_to_check{0};
  std::vector<std::thread> threads;

  for (int w = 0; w < writers; ++w)
    threads.emplace_back([&, w] {
      std::mt19937_64 rng(seed * 1000 + static_cast<std::uint64_t>(w));
      auto c = client(balancer);
      while (Clock::now() < deadline) {
        const std::string hex = random_hex(rng);
        auto res = c.Post("/v1/entries", auth, json{{"hash", hex}, {"label", "cluster"}}.dump(),
                          "application/json");
        {
          std::lock_guard lock(mu);
          ++writes_tried;
        }
        if (res && res->status == 201) {
          const auto j = json::parse(res->body, nullptr, false);
          std::lock_guard lock(mu);
          written.push_back({hex, j["ids"][0].get<std::int64_t>(), now_ms()});
        } else {
          fail("write: " + (res ? std::to_string(res->status) : httplib::to_string(res.error())));
          std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
      }
    });

  for (int r = 0; r < readers; ++r)
    threads.emplace_back([&, r] {
      std::mt19937_64 rng(seed * 2000 + static_cast<std::uint64_t>(r));
      auto c = client(balancer);
      while (Clock::now() < deadline) {
        // A write acknowledged more than 2 s ago (propagation is measured separately), or a
        // random hash that is in no bank.
        std::optional<Written> known;
        {
          std::lock_guard lock(mu);
          const auto cut = now_ms() - 2000;
          std::size_t n = 0;
          while (n < written.size() && written[n].acked_ms < cut) ++n;
          if (n > 0 && (rng() & 1)) known = written[rng() % n];
        }
        const std::string hex = known ? known->hex : random_hex(rng);
        const auto ids = lookup(c, hex);
        {
          std::lock_guard lock(mu);
          ++reads;
        }
        if (!ids) {
          fail("read");
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          continue;
        }
        if (known && ids->empty()) {
          std::lock_guard lock(mu);
          misses.push_back({now_ms(), "hash " + hex + " written as entry " +
                                          std::to_string(known->id) + " not found"});
        } else if (known && ids->front() != known->id) {
          std::lock_guard lock(mu);
          wrong.push_back("hash " + hex + " written as entry " + std::to_string(known->id) +
                          " found as entry " + std::to_string(ids->front()));
        }
        if (!known && !ids->empty()) {
          std::lock_guard lock(mu);
          wrong.push_back("random hash " + hex + " matched entry " + std::to_string(ids->front()));
        }
      }
    });

  // Propagation: acknowledged writes, asked of every replica directly until found.
  threads.emplace_back([&] {
    std::vector<httplib::Client> cs;
    for (int p : ports) cs.push_back(client(p, 2));
    while (Clock::now() < deadline) {
      std::optional<Written> w;
      {
        std::lock_guard lock(mu);
        // The newest write not checked yet (a sample: the checker must not fall behind the
        // writers, or its queue would count as propagation time).
        if (next_to_check.load() < written.size()) {
          w = written.back();
          next_to_check = written.size();
        }
      }
      if (!w) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      for (auto& c : cs) {
        const auto until = Clock::now() + std::chrono::seconds(10);
        bool found = false, reachable = true;
        while (Clock::now() < until) {
          const auto ids = lookup(c, w->hex);
          if (!ids) {
            reachable = false;  // a replica down for a fault: not a propagation figure
            break;
          }
          if (!ids->empty() && ids->front() == w->id) {
            found = true;
            break;
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        std::lock_guard lock(mu);
        if (found)
          propagation_ms.push_back(static_cast<double>(now_ms() - w->acked_ms));
        else
          ++propagation_skipped;
        if (!found && reachable) wrong.push_back("write " + w->hex + " not seen in 10 s");
      }
    }
  });
  for (auto& t : threads) t.join();

  // The end state: every replica ready at one generation, and holding every acknowledged
  // write under its id.
  const double settle = wait_ready(ports, timeout, true);
  std::int64_t lost = 0;
  for (int p : ports) {
    auto c = client(p);
    for (const auto& w : written) {
      const auto ids = lookup(c, w.hex);
      if (!ids || ids->empty() || ids->front() != w.id) {
        ++lost;
        if (wrong.size() < 50)
          wrong.push_back("replica :" + std::to_string(p) + " lacks acknowledged write " +
                          std::to_string(w.id));
      }
    }
  }
  // Errors only inside the outage windows (plus grace).
  const auto windows = events_file.empty() ? std::vector<Window>{} : read_events(events_file);
  std::int64_t outside = 0;
  std::map<std::string, std::int64_t> per_window;
  std::vector<std::string> outside_examples;
  for (const auto& f : failures) {
    bool inside = false;
    for (const auto& w : windows) {
      const auto end = (w.end ? w.end : now_ms()) + static_cast<std::int64_t>(grace * 1000);
      if (f.at_ms >= w.start && f.at_ms <= end) {
        ++per_window[w.name];
        inside = true;
        break;
      }
    }
    if (!inside) {
      ++outside;
      if (outside_examples.size() < 10)
        outside_examples.push_back(std::to_string(f.at_ms) + " " + f.what);
    }
  }
  std::int64_t stale_in_outage = 0;
  for (const auto& m : misses) {
    bool inside = false;
    for (const auto& w : windows) {
      const auto end = (w.end ? w.end : now_ms()) + static_cast<std::int64_t>(grace * 1000);
      inside = inside || (m.at_ms >= w.start && m.at_ms <= end);
    }
    if (inside)
      ++stale_in_outage;
    else
      wrong.push_back(m.what + " (outside the outage windows)");
  }
  const bool ok = wrong.empty() && lost == 0 && outside == 0 && settle >= 0;

  json rep;
  rep["seconds"] = duration;
  rep["writes_acknowledged"] = written.size();
  rep["writes_tried"] = writes_tried;
  rep["reads"] = reads;
  rep["errors"] = failures.size();
  rep["errors_per_window"] = per_window;
  rep["errors_outside_windows"] = outside;
  rep["errors_outside_examples"] = outside_examples;
  rep["stale_misses_in_outage_windows"] = stale_in_outage;
  rep["wrong_answers"] = wrong.size();
  rep["wrong_examples"] = std::vector<std::string>(
      wrong.begin(),
      wrong.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(10, wrong.size())));
  rep["acknowledged_writes_lost"] = lost;
  rep["replicas_settled_seconds"] = settle;
  rep["propagation"] = {
      {"samples", propagation_ms.size()},
      {"skipped_replica_down", propagation_skipped},
      {"p50_ms", percentile(propagation_ms, 0.5)},
      {"p99_ms", percentile(propagation_ms, 0.99)},
      {"max_ms", propagation_ms.empty()
                     ? 0.0
                     : *std::max_element(propagation_ms.begin(), propagation_ms.end())}};
  rep["ok"] = ok;
  if (json_out) {
    std::printf("%s\n", rep.dump(2).c_str());
  } else {
    std::printf(
        "cluster run: %zu writes acknowledged of %lld, %lld reads; %zu errors (%lld outside the "
        "outage windows); %zu wrong answers; %lld acknowledged writes lost; propagation p50 %.1f "
        "ms p99 %.1f ms; %s\n",
        written.size(), static_cast<long long>(writes_tried), static_cast<long long>(reads),
        failures.size(), static_cast<long long>(outside), wrong.size(),
        static_cast<long long>(lost), percentile(propagation_ms, 0.5),
        percentile(propagation_ms, 0.99), ok ? "ok" : "FAILED");
    for (const auto& w : rep["wrong_examples"])
      std::printf("  wrong: %s\n", w.get<std::string>().c_str());
    for (const auto& e : outside_examples) std::printf("  error outside a window: %s\n", e.c_str());
  }
  return ok ? 0 : 1;
}
