// PDQ, Meta's 256-bit perceptual photo hash, implemented from its published algorithm
// (ThreatExchange pdq/README.md and hashing.pdf): luminance, two passes of a Jarosz box
// blur, decimation to 64x64, a 16x16 DCT without the DC row/column, and a median
// threshold; quality is a gradient-energy score from 0 to 100. The eight dihedral
// variants (rotations and flips) come from the one DCT by sign changes and transposition.
//
// Pure code: pixels in, hashes out.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <opencv2/core.hpp>
#include <string_view>
#include <vector>

#include "hash/hash256.hpp"

namespace hashwall {

// Meta's order (pdqhashing.cpp): original, rotate 90, rotate 180, rotate 270,
// flip x, flip y, flip +1 (transpose), flip -1 (anti-transpose).
enum class Dihedral {
  Original,
  Rotate90,
  Rotate180,
  Rotate270,
  FlipX,
  FlipY,
  FlipPlus1,
  FlipMinus1
};
inline constexpr int kDihedralCount = 8;
// Meta's recommended match distance for PDQ (pdq/README: 31 of 256 bits).
inline constexpr int kPdqMatchThreshold = 31;
// PDQ: quality below 50 is not trusted (Meta's pdq README).
inline constexpr int kPdqMinQuality = 50;
std::string_view dihedral_name(Dihedral d) noexcept;  // "original", "rotate-90", ...

struct PdqResult {
  Hash256 hash;  // of the image as given
  int quality = 0;
};

struct PdqDihedralResult {
  std::array<Hash256, kDihedralCount> hashes;  // indexed by Dihedral
  int quality = 0;
};

// How the pixels were prepared before hashing.
enum class PdqPreprocess {
  // Meta's pdq-photo-hasher: an image with a side over 512 px is first resized to exactly
  // 512x512 by nearest neighbour (CImg's default resize), then hashed.
  Reference,
  // For speed: an image with a side over 512 px is area-resized to fit 512x512 keeping
  // its aspect (less aliasing than the reference, a few bits apart from it).
  Fast,
};

// img: 8-bit, 1 channel (grey) or 3 channels (BGR, as OpenCV decodes).
PdqResult pdq_hash(const cv::Mat& img, PdqPreprocess pre = PdqPreprocess::Reference);
PdqDihedralResult pdq_hash_dihedral(const cv::Mat& img,
                                    PdqPreprocess pre = PdqPreprocess::Reference);

// The algorithm proper, on a row-major float luminance buffer (which it overwrites).
PdqDihedralResult pdq_from_luma(std::vector<float>& luma, int rows, int cols, bool dihedral);

// A video frame as Meta's vPDQ hashes it (vpdq/cpp, PDQFrameBufferHasher): packed RGB24
// rows `stride` bytes apart, at the size given (no 512 px resize, unlike a photo). A frame
// under 5 px on a side gets the zero hash and quality 0, as there.
PdqResult pdq_hash_rgb24(const std::uint8_t* rgb, int rows, int cols, std::size_t stride);

}  // namespace hashwall
