// libFuzzer: a video's vPDQ hashes as hashwall reads them from outside: a bank's record
// (signal_rows), Meta's vpdq-hash-video text (`import --format vpdq`) and
// python-threatexchange's JSON (`vpdq` lines). The first byte picks the reader.
// Properties checked beyond "no crash": a record read is written back to the same bytes;
// text and JSON read are written as records that read back to the same frames; the rule
// and the time spans hold on any two videos read.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.hpp"
#include "video/vpdq_record.hpp"

using namespace hashwall;

namespace {

void check_video(const VpdqVideo& v) {
  std::string rec;
  try {
    rec = encode_vpdq_record(v);
  } catch (const Error&) {
    return;  // out of range (too many frames, a time past u32 ms): refused, fine
  }
  const auto back = decode_vpdq_record(rec);
  if (!back || back->frames.size() != v.frames.size()) __builtin_trap();
  const VpdqComparison c = vpdq_compare(*back, *back, VpdqRule{});
  if (c.query_matched != c.query_frames || c.entry_matched != c.entry_frames) __builtin_trap();
  std::vector<bool> all(back->frames.size(), true);
  for (const auto& [from, to] : vpdq_spans(*back, all, 1.0))
    if (!(from <= to)) __builtin_trap();
  (void)prune_vpdq(back->frames, kVpdqPruneDistance);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 3) {
    case 0: {
      std::string why;
      const auto v = decode_vpdq_record(bytes, &why);
      if (!v) {
        if (why.empty()) __builtin_trap();
        return 0;
      }
      // A record that reads is one hashwall writes, byte for byte.
      if (encode_vpdq_record(*v) != bytes) __builtin_trap();
      check_video(*v);
      break;
    }
    case 1: {
      const ParsedVpdq p = parse_vpdq_text(bytes);
      for (const auto& [line, reason] : p.errors)
        if (line < 1 || reason.empty()) __builtin_trap();
      check_video(p.video);
      break;
    }
    default: {
      std::string why;
      if (const auto v = parse_vpdq_json(bytes, &why)) {
        check_video(*v);
        if (!parse_vpdq_json(vpdq_json(*v), &why)) __builtin_trap();
      }
      break;
    }
  }
  return 0;
}
