// Reading and decoding images: the file is read once; its bytes give the SHA-256
// (exact-duplicate identity), the probe (format, declared size, orientation,
// completeness) and the pixels, decoded from memory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <opencv2/core.hpp>
#include <span>
#include <string>
#include <vector>

#include "image/probe.hpp"

namespace hashwall {

enum class DecodeMode {
  // Full-resolution decode, as Meta's reference hasher sees the file.
  Exact,
  // JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg's DCT scaling (and straight
  // to luminance) when the image stays at least `fast_min_side` pixels on its short
  // side; other formats decode in full.
  Fast,
};

struct LoadOptions {
  DecodeMode mode = DecodeMode::Fast;
  bool exif_orientation = true;  // rotate/flip as a viewer shows the photo
  std::uint64_t max_pixels = 200'000'000;
  std::uint64_t max_file_bytes = 512ull << 20;
  int fast_min_side = 256;
  // Also decode colour into LoadedImage::color for the signals that need it (the
  // embedding). It never changes `pixels` or `detail`: each signal sees the same input
  // whatever other signals are on.
  bool want_color = false;
  // Fast mode: when > fast_min_side, a JPEG that fast decoding reduced below this short
  // side is decoded a second time at a scale that keeps it, into LoadedImage::detail
  // (local features need more pixels than PDQ; PDQ keeps its own, so a bank's PDQ
  // hashes do not depend on which other signals it holds).
  int detail_min_side = 0;
  // Also the MD5 of the file bytes (LoadedImage::md5), for banks holding MD5 lists: about
  // 1.3 ms a MB, so only asked for when the bank has such entries (Bank::has_md5_entries).
  bool want_md5 = false;
};

struct LoadedImage {
  std::string sha256;  // hex of the file bytes
  std::string md5;     // hex of the file bytes, when LoadOptions::want_md5; empty otherwise
  std::uint64_t file_bytes = 0;
  ImageProbe probe;  // as stored in the file
  int width = 0;     // full-resolution size, after orientation
  int height = 0;
  cv::Mat pixels;  // CV_8UC1 or CV_8UC3 (BGR), orientation applied; reduced in fast mode
  cv::Mat detail;  // larger decode for LoadOptions::detail_min_side; empty: use pixels
  // BGR pixels at the size of `pixels`, decoded when LoadOptions::want_color asked for it
  // and `pixels` is grey from a fast JPEG decode; empty otherwise (see colour()).
  cv::Mat color;

  // What a colour signal takes: `color` when decoded, else `pixels` (already colour, or a
  // grey image).
  const cv::Mat& colour() const { return color.empty() ? pixels : color; }
};

// The cv::imdecode flags decode_image uses for LoadedImage::pixels of an image with this
// probe: in fast mode a JPEG's reduced grey decode, otherwise the full ANYCOLOR decode.
// `bench speed` times this bare decode as the floor under the fast path.
int pixel_decode_flags(const ImageProbe& p, const LoadOptions& opt);

// Throws hashwall::Error naming `name` and the reason (not an image, unsupported format,
// truncated, too many pixels, unreadable file).
// `known_sha256`: the caller's SHA-256 of these bytes, when it already computed it (e.g.
// `index` hashes first to skip files already in the bank); empty: computed here.
LoadedImage decode_image(std::span<const std::uint8_t> bytes, const std::string& name,
                         const LoadOptions& options, std::string known_sha256 = {});
LoadedImage load_image(const std::filesystem::path& file, const LoadOptions& options);

// Reads a whole regular file (throws Error{Io} with strerror on failure).
std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& file,
                                          std::uint64_t max_bytes);
// The same for a file of any size, read in pieces. Throws Error{Io} naming the file.
std::string sha256_file_hex(const std::filesystem::path& file);
std::string sha256_hex(std::span<const std::uint8_t> bytes);
std::string md5_hex(std::span<const std::uint8_t> bytes);
// A file's SHA-256 and (with `md5`) MD5, in one read of 1 MB pieces.
struct FileDigests {
  std::string sha256, md5;
};
FileDigests file_digests(const std::filesystem::path& file, bool md5);

// Applies an EXIF orientation (1..8) to pixels.
cv::Mat apply_orientation(const cv::Mat& img, int orientation);

}  // namespace hashwall
