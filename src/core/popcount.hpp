// See popcount.cpp: hashwall's own __popcountdi2, so that FAISS's Hamming kernels (built
// by Debian without POPCNT) use the instruction where the CPU has it.
#pragma once

namespace hashwall {
// True when the POPCNT instruction is in use. Calling it also makes sure popcount.o is
// linked (it is in a static library), so its __popcountdi2 wins over libgcc's.
bool popcount_native();
}  // namespace hashwall
