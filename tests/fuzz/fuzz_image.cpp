// libFuzzer: image bytes -> probe -> decode -> fingerprint, as `index`, `query`, `scan`
// and `serve` do for every file. The last byte's low bits pick the decode mode and which
// further signals run: ORB local features (as a query, with tiles and the mirror image)
// and the shipped embedding network. Library code reports bad input by throwing
// hashwall::Error; anything else escaping (or a sanitizer report, a hang, an allocation
// over -rss_limit_mb) is a finding.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "core/error.hpp"
#include "embed/embed_signal.hpp"
#include "embed/embedder.hpp"
#include "image/load.hpp"
#include "local/local_signal.hpp"
#include "match/fingerprint.hpp"

using namespace hashwall;

namespace {
const Embedder* embedder() {
  static const std::unique_ptr<Embedder> e = [] {
    try {
      return Embedder::load(HASHWALL_FUZZ_MODEL);
    } catch (const Error&) {
      __builtin_trap();  // the model ships with the source: its absence is a setup error
    }
  }();
  return e.get();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  (void)probe_image(bytes);  // noexcept: must survive anything on its own
  const std::uint8_t flags = size > 0 ? data[size - 1] : 0;
  LoadOptions opt;
  // A smaller pixel limit than the CLI's 200 MP keeps each run fast and inside
  // libFuzzer's RSS limit; the limit check itself is the same code.
  opt.max_pixels = 4'000'000;
  opt.mode = (flags & 1) ? DecodeMode::Exact : DecodeMode::Fast;
  FingerprintOptions fo;
  fo.for_query = (flags & 8) == 0;
  static const LocalSignal local;
  static const auto embed = std::make_shared<EmbedSignal>(
      std::shared_ptr<const Embedder>(embedder(), [](const Embedder*) {}));
  if (flags & 2) fo.registered.push_back(&local);
  if (flags & 4) fo.registered.push_back(embed.get());
  prepare_load(opt, fo);
  try {
    const LoadedImage img = decode_image(bytes, "fuzz", opt);
    if (img.pixels.empty() || img.pixels.depth() != CV_8U) __builtin_trap();
    const Fingerprint f = fingerprint(img, opt.mode, fo);
    if (f.pdq.quality < 0 || f.pdq.quality > 100) __builtin_trap();
    if (flags & 2) {
      // An entry's record reads back as its signal reads it; a query's forms are the
      // photo as given and its mirror image.
      const auto& forms = f.registered.at("local").forms;
      if (forms.size() != (fo.for_query ? 2u : 1u)) __builtin_trap();
      for (const auto& form : forms) {
        const LocalFeatures l =
            fo.for_query ? decode_local_query_form(form) : decode_local_record(form, "fuzz");
        if (!fo.for_query && !local.check_record(form).empty()) __builtin_trap();
        if (l.descriptors.rows != static_cast<int>(l.points.size())) __builtin_trap();
        for (const auto& p : l.points)
          if (!(p.x >= 0 && p.x <= 1 && p.y >= 0 && p.y <= 1)) __builtin_trap();
      }
    }
    if (flags & 4) {
      const auto& forms = f.registered.at("embed").forms;
      if (forms.size() != 1) __builtin_trap();
      const auto v = embedding_values(forms[0]);
      if (static_cast<int>(v.size()) != embedder()->dim()) __builtin_trap();
      double norm = 0;
      for (const float x : v) norm += double{x} * x;
      if (!(std::abs(norm - 1.0) < 1e-3)) __builtin_trap();  // L2-normalised, never NaN
    }
  } catch (const Error&) {
  }
  return 0;
}
