// libFuzzer: image bytes -> probe -> decode -> PDQ, as `index`, `query` and `scan` do
// for every file. Library code reports bad input by throwing hashwall::Error; anything
// else escaping (or a sanitizer report, a hang, an allocation over -rss_limit_mb) is a
// finding.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.hpp"
#include "image/load.hpp"
#include "match/fingerprint.hpp"

using namespace hashwall;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> bytes(data, size);
  (void)probe_image(bytes);  // noexcept: must survive anything on its own
  LoadOptions opt;
  // A smaller pixel limit than the CLI's 200 MP keeps each run fast and inside
  // libFuzzer's RSS limit; the limit check itself is the same code.
  opt.max_pixels = 4'000'000;
  opt.mode = (size > 0 && (data[size - 1] & 1)) ? DecodeMode::Exact : DecodeMode::Fast;
  try {
    const LoadedImage img = decode_image(bytes, "fuzz", opt);
    if (img.pixels.empty() || img.pixels.depth() != CV_8U) __builtin_trap();
    const Fingerprint f = fingerprint(img, opt.mode);
    if (f.pdq.quality < 0 || f.pdq.quality > 100) __builtin_trap();
  } catch (const Error&) {
  }
  return 0;
}
