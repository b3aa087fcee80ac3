#include "image/probe.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string_view>

namespace hashwall {

const char* image_format_name(ImageFormat f) noexcept {
  switch (f) {
    case ImageFormat::Jpeg:
      return "jpeg";
    case ImageFormat::Png:
      return "png";
    case ImageFormat::Gif:
      return "gif";
    case ImageFormat::WebP:
      return "webp";
    case ImageFormat::Tiff:
      return "tiff";
    case ImageFormat::Bmp:
      return "bmp";
    case ImageFormat::Pnm:
      return "pnm";
    case ImageFormat::Unknown:
      break;
  }
  return "unknown";
}

namespace {

using Bytes = std::span<const std::uint8_t>;

std::uint32_t be16(const std::uint8_t* p) { return std::uint32_t(p[0]) << 8 | p[1]; }
std::uint32_t be32(const std::uint8_t* p) { return be16(p) << 16 | be16(p + 2); }
std::uint32_t le16(const std::uint8_t* p) { return std::uint32_t(p[1]) << 8 | p[0]; }
std::uint32_t le32(const std::uint8_t* p) { return le16(p + 2) << 16 | le16(p); }
std::uint32_t le24(const std::uint8_t* p) { return std::uint32_t(p[2]) << 16 | le16(p); }

bool starts_with(Bytes b, std::string_view magic) {
  return b.size() >= magic.size() && std::memcmp(b.data(), magic.data(), magic.size()) == 0;
}

// EXIF orientation from a TIFF-structured APP1 payload (after "Exif\0\0").
int exif_orientation(Bytes tiff) {
  if (tiff.size() < 8) return 1;
  const bool le = tiff[0] == 'I' && tiff[1] == 'I';
  if (!le && !(tiff[0] == 'M' && tiff[1] == 'M')) return 1;
  auto u16 = [&](std::size_t off) { return le ? le16(&tiff[off]) : be16(&tiff[off]); };
  auto u32 = [&](std::size_t off) { return le ? le32(&tiff[off]) : be32(&tiff[off]); };
  const std::size_t ifd = u32(4);
  if (ifd > tiff.size() || tiff.size() - ifd < 2) return 1;
  const std::size_t count = u16(ifd);
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t e = ifd + 2 + 12 * i;
    if (e + 12 > tiff.size()) return 1;
    if (u16(e) == 0x0112) {  // Orientation, SHORT
      const std::uint32_t v = u16(e + 8);
      return (v >= 1 && v <= 8) ? static_cast<int>(v) : 1;
    }
  }
  return 1;
}

// Walks JPEG marker segments: size from SOFn, orientation from APP1, and whether the
// entropy-coded data reaches an EOI marker.
void probe_jpeg(Bytes b, ImageProbe& p) {
  std::size_t i = 2;
  bool seen_sof = false;
  while (i + 2 <= b.size()) {
    if (b[i] != 0xFF) {
      p.defect = "corrupt JPEG: bad marker";
      return;
    }
    const std::uint8_t m = b[i + 1];
    if (m == 0xFF) {  // fill byte
      ++i;
      continue;
    }
    if (m == 0xD9) return;                        // EOI
    if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) {  // standalone markers
      i += 2;
      continue;
    }
    if (i + 4 > b.size()) break;
    const std::size_t len = be16(&b[i + 2]);
    if (len < 2 || i + 2 + len > b.size()) {
      p.defect = "truncated JPEG: a header segment runs past the end of the file";
      return;
    }
    const std::uint8_t* seg = &b[i + 4];
    const std::size_t seg_len = len - 2;
    const bool is_sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
    if (is_sof && seg_len >= 5 && !seen_sof) {
      p.height = static_cast<int>(be16(seg + 1));
      p.width = static_cast<int>(be16(seg + 3));
      seen_sof = true;
    } else if (m == 0xE1 && seg_len >= 6 && std::memcmp(seg, "Exif\0\0", 6) == 0) {
      p.orientation = exif_orientation(Bytes(seg + 6, seg_len - 6));
    }
    i += 2 + len;
    if (m == 0xDA) {
      // Entropy-coded data: runs to the next marker that is not a stuffed 0xFF00 or a
      // restart marker.
      while (true) {
        const void* ff = std::memchr(&b[i], 0xFF, b.size() - i);
        if (!ff) {
          p.defect = "truncated JPEG: no end-of-image marker";
          return;
        }
        i = static_cast<const std::uint8_t*>(ff) - b.data();
        if (i + 1 >= b.size()) {
          p.defect = "truncated JPEG: no end-of-image marker";
          return;
        }
        const std::uint8_t n = b[i + 1];
        if (n == 0x00 || (n >= 0xD0 && n <= 0xD7) || n == 0xFF) {
          i += (n == 0xFF) ? 1 : 2;
          continue;
        }
        break;
      }
    }
  }
  p.defect = "truncated JPEG: no end-of-image marker";
}

void probe_png(Bytes b, ImageProbe& p) {
  if (b.size() < 33 || std::memcmp(&b[12], "IHDR", 4) != 0) {
    p.defect = "truncated PNG: no IHDR header";
    return;
  }
  p.width = static_cast<int>(std::min<std::uint32_t>(be32(&b[16]), 0x7fffffff));
  p.height = static_cast<int>(std::min<std::uint32_t>(be32(&b[20]), 0x7fffffff));
  std::size_t i = 8;
  while (i + 12 <= b.size()) {
    const std::uint64_t len = be32(&b[i]);
    if (std::memcmp(&b[i + 4], "IEND", 4) == 0) return;
    if (std::memcmp(&b[i + 4], "acTL", 4) == 0) p.animated = true;
    i += 12 + len;
  }
  p.defect = "truncated PNG: no IEND chunk";
}

void probe_gif(Bytes b, ImageProbe& p) {
  if (b.size() < 10) {
    p.defect = "truncated GIF";
    return;
  }
  p.width = static_cast<int>(le16(&b[6]));
  p.height = static_cast<int>(le16(&b[8]));
}

void probe_webp(Bytes b, ImageProbe& p) {
  if (b.size() < 30) {
    p.defect = "truncated WebP";
    return;
  }
  const std::uint8_t* c = &b[12];
  if (std::memcmp(c, "VP8 ", 4) == 0) {
    p.width = static_cast<int>(le16(c + 14) & 0x3fff);
    p.height = static_cast<int>(le16(c + 16) & 0x3fff);
  } else if (std::memcmp(c, "VP8L", 4) == 0) {
    const std::uint32_t v = le32(c + 9);
    p.width = static_cast<int>((v & 0x3fff) + 1);
    p.height = static_cast<int>(((v >> 14) & 0x3fff) + 1);
  } else if (std::memcmp(c, "VP8X", 4) == 0) {
    p.animated = (c[8] & 0x02) != 0;
    // 24-bit canvas width and height minus one at chunk bytes 12..17 (file bytes 24..29).
    // Reading them as 32-bit words read one byte past a 30-byte file (found by fuzz_image).
    p.width = static_cast<int>(le24(c + 12) + 1);
    p.height = static_cast<int>(le24(c + 15) + 1);
  }
}

// TIFF: ImageWidth (256) and ImageLength (257) from the first IFD, the page OpenCV
// decodes. Without them a few-KB file could declare 30000x30000 pixels, under OpenCV's
// own limit of 2^30, and have them allocated and inflated before any check of ours.
// A tag given twice counts at its largest: libtiff keeps the first and ignores later
// duplicates, and a probe that kept the last let a file declare 30005x30000 and then
// 1 pixel wide, which OpenCV allocated as 2.7 GB (found by fuzz_image). A size in any
// field type libtiff accepts for it but this probe cannot read is refused.
void probe_tiff(Bytes b, ImageProbe& p) {
  const bool le = b[0] == 'I';
  auto u16 = [&](std::size_t off) { return le ? le16(&b[off]) : be16(&b[off]); };
  auto u32 = [&](std::size_t off) { return le ? le32(&b[off]) : be32(&b[off]); };
  if (b.size() < 8) {
    p.defect = "truncated TIFF";
    return;
  }
  const std::size_t ifd = u32(4);
  if (ifd > b.size() || b.size() - ifd < 2) {
    p.defect = "corrupt TIFF: the first directory lies outside the file";
    return;
  }
  const std::size_t count = u16(ifd);
  std::int64_t size[2] = {0, 0};
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t e = ifd + 2 + 12 * i;
    if (e + 12 > b.size()) break;
    const std::uint32_t tag = u16(e), type = u16(e + 2);
    if (tag != 256 && tag != 257) continue;
    // A single value sits at the start of the value field: BYTE and SBYTE in its first
    // byte, SHORT and SSHORT in two, LONG and SLONG in all four.
    std::int64_t v;
    switch (type) {
      case 1:
        v = b[e + 8];
        break;
      case 6:
        v = static_cast<std::int8_t>(b[e + 8]);
        break;
      case 3:
        v = u16(e + 8);
        break;
      case 8:
        v = static_cast<std::int16_t>(u16(e + 8));
        break;
      case 4:
        v = u32(e + 8);
        break;
      case 9:
        v = static_cast<std::int32_t>(u32(e + 8));
        break;
      default:
        p.defect = "corrupt TIFF: the image size has an unsupported field type";
        return;
    }
    if (v < 0) {
      p.defect = "corrupt TIFF: negative image size";
      return;
    }
    std::int64_t& s = size[tag - 256];
    s = std::max(s, v);
  }
  p.width = static_cast<int>(std::min<std::int64_t>(size[0], 0x7fffffff));
  p.height = static_cast<int>(std::min<std::int64_t>(size[1], 0x7fffffff));
}

void probe_bmp(Bytes b, ImageProbe& p) {
  if (b.size() < 26) {
    p.defect = "truncated BMP";
    return;
  }
  // An OS/2 BITMAPCOREHEADER (12 bytes) holds 16-bit width and height, as OpenCV reads
  // it; every other header it accepts, 32-bit ones.
  if (le32(&b[14]) == 12) {
    p.width = static_cast<int>(le16(&b[18]));
    p.height = static_cast<int>(le16(&b[20]));
    return;
  }
  const std::int32_t w = static_cast<std::int32_t>(le32(&b[18]));
  const std::int32_t h = static_cast<std::int32_t>(le32(&b[22]));
  p.width = w < 0 ? 0 : w;
  p.height = h == INT32_MIN ? 0 : (h < 0 ? -h : h);
}

void probe_pnm(Bytes b, ImageProbe& p) {
  // "P5 <w> <h> ..." read the way OpenCV's PxM decoder reads it (ReadNumber in
  // grfmt_pxm.cpp): before a number, whitespace and '#' comments are skipped and any
  // other byte is an error; after a number, the one byte that ends it is consumed,
  // whatever it is. A laxer or stricter reading here would let "P6 144464&5445" pass as
  // 144464x0 while OpenCV allocates 144464x5445 (found by fuzz_image).
  std::size_t i = 2;
  long vals[2] = {0, 0};
  for (long& v : vals) {
    while (i < b.size() && !(b[i] >= '0' && b[i] <= '9')) {
      if (b[i] == '#') {
        while (i < b.size() && b[i] != '\n' && b[i] != '\r') ++i;
        ++i;
      } else if (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n' || b[i] == '\v' ||
                 b[i] == '\f') {
        ++i;
      } else {
        p.defect = "malformed PNM header";
        return;
      }
    }
    if (i >= b.size()) {
      p.defect = "truncated PNM header";
      return;
    }
    while (i < b.size() && b[i] >= '0' && b[i] <= '9') {
      v = v * 10 + (b[i++] - '0');
      if (v > std::numeric_limits<int>::max()) {
        p.defect = "PNM header declares an impossible size";
        return;
      }
    }
    ++i;  // the byte that ended the number
  }
  p.width = static_cast<int>(vals[0]);
  p.height = static_cast<int>(vals[1]);
}

}  // namespace

ImageProbe probe_image(std::span<const std::uint8_t> b) noexcept {
  ImageProbe p;
  if (b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF) {
    p.format = ImageFormat::Jpeg;
    probe_jpeg(b, p);
  } else if (starts_with(b, "\x89PNG\r\n\x1a\n")) {
    p.format = ImageFormat::Png;
    probe_png(b, p);
  } else if (starts_with(b, "GIF87a") || starts_with(b, "GIF89a")) {
    p.format = ImageFormat::Gif;
    probe_gif(b, p);
  } else if (b.size() >= 12 && starts_with(b, "RIFF") && std::memcmp(&b[8], "WEBP", 4) == 0) {
    p.format = ImageFormat::WebP;
    probe_webp(b, p);
  } else if (starts_with(b, "II*\0") || starts_with(b, "MM\0*")) {
    p.format = ImageFormat::Tiff;
    probe_tiff(b, p);
  } else if (starts_with(b, "BM")) {
    p.format = ImageFormat::Bmp;
    probe_bmp(b, p);
  } else if (b.size() >= 3 && b[0] == 'P' && b[1] >= '1' && b[1] <= '6' &&
             (b[2] == ' ' || b[2] == '\n' || b[2] == '\r' || b[2] == '\t')) {
    p.format = ImageFormat::Pnm;
    probe_pnm(b, p);
  }
  return p;
}

}  // namespace hashwall
