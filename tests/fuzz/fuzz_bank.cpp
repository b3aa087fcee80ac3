// libFuzzer: opening a damaged bank. The first byte picks what the rest of the input is:
//   even: the "<bank>.pdq-index" cache next to a valid 64-entry bank. Its FNV-1a
//         checksum is fixed up first, so that mutations reach the parser behind it
//         (a torn or flipped cache is already refused by the checksum).
//   odd:  the SQLite bank file itself (seeds: real banks).
// Open read-only, check(), search, stats and a full read must report damage by throwing
// hashwall::Error or through check(); never crash, hang or leak.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "bank/bank.hpp"
#include "core/error.hpp"

using namespace hashwall;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  fs::path dir, bank, good_bank_copy;
  std::vector<Hash256> hashes;
  Fixture() {
    const fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    dir = base / ("hashwall-fuzz-bank-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    bank = dir / "bank.db";
    good_bank_copy = dir / "good.db";
    std::mt19937_64 rng(7);
    std::vector<NewEntry> batch;
    for (int i = 0; i < 64; ++i) {
      NewEntry e;
      for (auto& b : e.pdq.bytes) b = static_cast<std::uint8_t>(rng());
      e.quality = 100;
      e.source = "seed-" + std::to_string(i);
      e.origin = Origin::Imported;
      hashes.push_back(e.pdq);
      batch.push_back(e);
    }
    {
      auto b = Bank::open(good_bank_copy, OpenMode::Create);
      b->add(batch);
      b->flush_index();
    }
    // Closing folded the WAL into the main file; each run brings its own cache.
    fs::remove(pdq_index_path(good_bank_copy));
  }
  ~Fixture() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

std::uint64_t fnv1a(const std::uint8_t* p, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

void write(const fs::path& p, const std::uint8_t* data, std::size_t n) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                             static_cast<std::streamsize>(n));
}

void clear(const fs::path& bank) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm", "-journal", ".pdq-index"})
    fs::remove(bank.string() + suffix, ec);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Fixture fx;
  if (size < 1) return 0;
  clear(fx.bank);
  std::vector<std::uint8_t> body(data + 1, data + size);
  if (data[0] % 2 == 0) {
    fs::copy_file(fx.good_bank_copy, fx.bank);
    if (body.size() >= 16) {
      const std::uint64_t sum = fnv1a(body.data(), body.size() - 8);
      for (int i = 0; i < 8; ++i) body[body.size() - 8 + i] = static_cast<std::uint8_t>(sum >> (8 * i));
    }
    write(pdq_index_path(fx.bank), body.data(), body.size());
  } else {
    write(fx.bank, body.data(), body.size());
  }
  try {
    auto bank = Bank::open(fx.bank, OpenMode::ReadOnly);
    (void)bank->check();
    (void)bank->stats();
    (void)bank->search_pdq(std::span(fx.hashes.data(), 4), 31);
    std::size_t n = 0;
    bank->for_each([&](const Entry&) { return ++n < 10000; });
  } catch (const Error&) {
  }
  return 0;
}
