// libFuzzer: opening a damaged bank. The first byte picks what the rest of the input is:
//   even: the "<bank>.pdq-index" cache next to a valid bank (64 PDQ entries, 4 MD5 ones). Its
//   FNV-1a
//         checksum is fixed up first, so that mutations reach the parser behind it
//         (a torn or flipped cache is already refused by the checksum).
//   odd:  the SQLite bank file itself (seeds: real banks; the fixture's first 8 entries
//         carry local features and embeddings, whose blobs the local and embedding
//         indexes parse when they build).
// Open read-only, check(), stats, PDQ, local and embedding search and a full read must
// report damage by throwing hashwall::Error or through check(); never crash, hang or leak.
#include <omp.h>
#include <unistd.h>

#include <cmath>
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
#include "embed/embed_signal.hpp"
#include "local/local_signal.hpp"

using namespace hashwall;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  fs::path dir, bank, good_bank_copy;
  std::vector<Hash256> hashes;
  SignalQuery local_query;
  SignalQuery embed_query;
  Fixture() {
    // FAISS's OpenMP workers spin between searches: on 64 entries that spinning was most
    // of each run's time. One thread, as the searches here are tiny.
    omp_set_num_threads(1);
    const fs::path base = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    dir = base / ("hashwall-fuzz-bank-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    bank = dir / "bank.db";
    good_bank_copy = dir / "good.db";
    std::mt19937_64 rng(7);
    std::uniform_real_distribution<float> unit(0.0f, 1.0f);
    std::normal_distribution<float> gauss;
    std::vector<NewEntry> batch;
    for (int i = 0; i < 64; ++i) {
      NewEntry e;
      e.pdq.emplace();
      for (auto& b : e.pdq->bytes) b = static_cast<std::uint8_t>(rng());
      e.quality = 100;
      e.source = "seed-" + std::to_string(i);
      e.origin = Origin::Imported;
      if (i < 8) {
        e.origin = Origin::Indexed;
        e.sha256 = std::string(63, '0') + "0123456789abcdef"[i];
        LocalFeatures f;
        f.width = 640;
        f.height = 480;
        f.descriptors.create(48, 32, CV_8U);
        for (int k = 0; k < 48; ++k) {
          f.points.emplace_back(unit(rng), unit(rng));
          for (int c = 0; c < 32; ++c)
            f.descriptors.at<std::uint8_t>(k, c) = static_cast<std::uint8_t>(rng());
        }
        e.records["local"] = local_record(f);
        double norm = 0;
        std::vector<float> vec;
        for (int d = 0; d < 16; ++d) {
          vec.push_back(gauss(rng));
          norm += double{vec.back()} * vec.back();
        }
        for (auto& v : vec) v = static_cast<float>(v / std::sqrt(norm));
        e.records["embed"] = embedding_record(vec);
        if (i == 0) {
          local_query.forms = {local_query_form(f)};
          embed_query.forms = {e.records["embed"]};
        }
      }
      hashes.push_back(*e.pdq);
      batch.push_back(e);
    }
    // File-hash entries (format 6): an MD5 and no PDQ hash.
    for (int i = 0; i < 4; ++i) {
      NewEntry e;
      e.md5 = std::string(31, 'a') + "0123"[i];
      e.source = "videos.md5";
      e.origin = Origin::Imported;
      batch.push_back(e);
    }
    {
      BankConfig cfg;
      cfg.signals = {"pdq", "local", "embed"};
      cfg.embed_model = "fuzz.onnx@0";
      cfg.embed_threshold = 0.75;
      auto b = Bank::open(good_bank_copy, OpenMode::Create, cfg);
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
  std::ofstream(p, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n));
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
      for (int i = 0; i < 8; ++i)
        body[body.size() - 8 + i] = static_cast<std::uint8_t>(sum >> (8 * i));
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
    (void)bank->search_signal("local", fx.local_query, 0.0, 5);
    (void)bank->search_signal("embed", fx.embed_query, 0.0, 5);
    std::size_t n = 0;
    bank->for_each([&](const Entry&) { return ++n < 10000; });
  } catch (const Error&) {
  }
  return 0;
}
