// Cost of adding chunks to a large multihash PDQ index (the tail fold, docs/BENCHMARKS.md).
// Build: cmake --build build --target hashwall_multihash_add
// Run:   build/hashwall_multihash_add [base entries] [chunk] [chunks]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>

#include "pdq/pdq_index.hpp"

using namespace hashwall;

int main(int argc, char** argv) {
  const std::size_t base = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 10'000'000;
  const std::size_t chunk = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 100'000;
  const std::size_t chunks = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 5;
  std::mt19937_64 rng(1);
  std::vector<Hash256> hashes(base + chunk * chunks);
  for (auto& h : hashes)
    for (auto& b : h.bytes) b = static_cast<std::uint8_t>(rng());
  std::vector<std::int64_t> ids(hashes.size());
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::int64_t>(i + 1);
  using Clock = std::chrono::steady_clock;
  const auto secs = [](Clock::time_point a) {
    return std::chrono::duration<double>(Clock::now() - a).count();
  };

  auto index = make_pdq_index("multihash");
  auto t = Clock::now();
  index->add(std::span(ids).first(base), std::span(hashes).first(base));
  std::printf("build %zu entries: %.2f s\n", base, secs(t));
  for (std::size_t c = 0; c < chunks; ++c) {
    const std::size_t at = base + c * chunk;
    t = Clock::now();
    index->add(std::span(ids).subspan(at, chunk), std::span(hashes).subspan(at, chunk));
    std::printf("add %zu to %zu: %.3f s\n", chunk, at, secs(t));
  }
  // Every added hash is found at distance 0 (a check that the folded lists are right).
  std::size_t found = 0, tried = 0;
  for (std::size_t i = base; i < hashes.size(); i += 997, ++tried) {
    const auto hits = index->range_search(std::span(hashes).subspan(i, 1), 0);
    for (const auto& hit : hits[0]) found += hit.id == ids[i];
  }
  std::printf("added hashes found: %zu of %zu sampled\n", found, tried);
  return found == tried ? 0 : 1;
}
