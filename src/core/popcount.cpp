// Fast popcount for FAISS's binary (Hamming) searches.
//
// Debian builds libfaiss.a for baseline x86-64, without the POPCNT instruction, so every
// __builtin_popcountl in its Hamming kernels became a call to libgcc's __popcountdi2, a
// bit-twiddling routine: measured here (perf, a local-feature query against 100 entries),
// 40 % of the query time went to it. This definition takes precedence over libgcc's for
// everything linked into hashwall (the static linker resolves the symbol here before it
// looks at libgcc), and uses the POPCNT instruction when the CPU has it (every x86-64 CPU
// since 2008-2010), the portable sum otherwise. Same results either way: tests compare
// FAISS's Hamming distances with OpenCV's.
#include "core/popcount.hpp"

#include <cstdint>

#if defined(__x86_64__) && defined(__GNUC__)

namespace {

const bool kHavePopcnt = [] {
  __builtin_cpu_init();
  return __builtin_cpu_supports("popcnt") != 0;
}();

__attribute__((target("popcnt"))) int native(std::uint64_t x) { return __builtin_popcountll(x); }

int portable(std::uint64_t x) {
  x = x - ((x >> 1) & 0x5555555555555555ull);
  x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
  x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return static_cast<int>((x * 0x0101010101010101ull) >> 56);
}

}  // namespace

extern "C" int __popcountdi2(std::uint64_t x) { return kHavePopcnt ? native(x) : portable(x); }

namespace hashwall {
bool popcount_native() { return kHavePopcnt; }
}  // namespace hashwall

#else

namespace hashwall {
bool popcount_native() { return false; }
}  // namespace hashwall

#endif
