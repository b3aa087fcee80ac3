// Cheap inspection of encoded image bytes before any decoding: the format (by magic
// bytes, never by file name), the declared size (so decompression bombs are refused
// before a pixel is allocated), JPEG EXIF orientation, and whether a JPEG or PNG stream
// is complete (libjpeg silently pads a truncated JPEG with grey).
#pragma once

#include <cstdint>
#include <span>
#include <string>

namespace hashwall {

enum class ImageFormat { Unknown, Jpeg, Png, Gif, WebP, Tiff, Bmp, Pnm };
const char* image_format_name(ImageFormat) noexcept;

struct ImageProbe {
  ImageFormat format = ImageFormat::Unknown;
  int width = 0;  // 0 when the header could not tell
  int height = 0;
  int orientation = 1;    // EXIF orientation 1..8 (1 when absent or invalid)
  bool animated = false;  // GIF with more than one frame / animated WebP
  // Empty when the stream looks complete; otherwise why it is not ("truncated JPEG:
  // no end-of-image marker").
  std::string defect;
};

ImageProbe probe_image(std::span<const std::uint8_t> bytes) noexcept;

}  // namespace hashwall
