#include "image/load.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <mutex>
#include <opencv2/core/utils/logger.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <opencv2/videoio.hpp>

#include "core/error.hpp"

namespace hashwall {

namespace {

void silence_opencv_logging() {
  static std::once_flag once;
  std::call_once(once,
                 [] { cv::utils::logging::setLogLevel(cv::utils::logging::LOG_LEVEL_SILENT); });
}

// OpenCV 4.6's imgcodecs has no GIF decoder; videoio (FFmpeg) reads the first frame.
cv::Mat decode_gif_first_frame(std::span<const std::uint8_t> bytes, const std::string& name) {
  char tmpl[] = "/tmp/hashwall-gif-XXXXXX";
  const int fd = mkstemp(tmpl);
  if (fd < 0)
    throw Error(ErrorKind::Io, name,
                std::string("cannot create a temporary file: ") + std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) break;
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  cv::Mat frame;
  try {
    cv::VideoCapture cap(tmpl, cv::CAP_FFMPEG);
    if (cap.isOpened()) cap.read(frame);
  } catch (const cv::Exception&) {
    frame.release();
  }
  ::unlink(tmpl);
  if (frame.empty())
    throw Error(ErrorKind::Format, name, "unsupported or corrupt GIF (no decodable first frame)");
  return frame;
}

int reduced_flag(int denom, bool color) {
  switch (denom) {
    case 2:
      return color ? cv::IMREAD_REDUCED_COLOR_2 : cv::IMREAD_REDUCED_GRAYSCALE_2;
    case 4:
      return color ? cv::IMREAD_REDUCED_COLOR_4 : cv::IMREAD_REDUCED_GRAYSCALE_4;
    case 8:
      return color ? cv::IMREAD_REDUCED_COLOR_8 : cv::IMREAD_REDUCED_GRAYSCALE_8;
    default:
      return color ? cv::IMREAD_COLOR : cv::IMREAD_GRAYSCALE;
  }
}

// Fast mode: the largest libjpeg DCT scale (1/2, 1/4, 1/8) that keeps min_side pixels on
// the short side.
int jpeg_scale(const ImageProbe& p, int min_side) {
  int denom = 1;
  while (denom < 8 && std::min(p.width, p.height) / (denom * 2) >= min_side) denom *= 2;
  return denom;
}

bool fast_jpeg(const ImageProbe& p, const LoadOptions& opt) {
  return opt.mode == DecodeMode::Fast && p.format == ImageFormat::Jpeg && p.width > 0 &&
         p.height > 0;
}

}  // namespace

int pixel_decode_flags(const ImageProbe& p, const LoadOptions& opt) {
  // Fast JPEGs: luminance straight from the DCT at a reduced scale, for PDQ and the local
  // features whatever else is on (the colour signals get a decode of their own).
  if (fast_jpeg(p, opt))
    return reduced_flag(jpeg_scale(p, opt.fast_min_side), false) | cv::IMREAD_IGNORE_ORIENTATION;
  // ANYCOLOR keeps grey images grey (the reference hashes their single channel); without
  // ANYDEPTH, 16-bit images come out as 8-bit; alpha is dropped later.
  return cv::IMREAD_ANYCOLOR | cv::IMREAD_IGNORE_ORIENTATION;
}

namespace {

std::string hex_of(const unsigned char* digest, unsigned n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(2 * n, '0');
  for (unsigned i = 0; i < n; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 15];
  }
  return out;
}

// One digest of bytes in memory, as lowercase hex.
std::string digest_hex(std::span<const std::uint8_t> bytes, const EVP_MD* md, unsigned want,
                       const char* name) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &len, md, nullptr) != 1 || len != want)
    throw Error(ErrorKind::Io, "", std::string(name) + " failed");
  return hex_of(digest, len);
}

}  // namespace

std::string sha256_hex(std::span<const std::uint8_t> bytes) {
  return digest_hex(bytes, EVP_sha256(), 32, "SHA-256");
}

std::string md5_hex(std::span<const std::uint8_t> bytes) {
  return digest_hex(bytes, EVP_md5(), 16, "MD5");
}

FileDigests file_digests(const std::filesystem::path& file, bool md5) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw Error(ErrorKind::Io, file.string(), "cannot read");
  using Ctx = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;
  Ctx sha(EVP_MD_CTX_new(), &EVP_MD_CTX_free),
      m(md5 ? EVP_MD_CTX_new() : nullptr, &EVP_MD_CTX_free);
  if (!sha || EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr) != 1) throw std::bad_alloc();
  if (md5 && (!m || EVP_DigestInit_ex(m.get(), EVP_md5(), nullptr) != 1)) throw std::bad_alloc();
  std::vector<char> buf(1 << 20);  // read in 1 MB pieces: a video may be gigabytes
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<std::size_t>(in.gcount());
    if (n > 0 && (EVP_DigestUpdate(sha.get(), buf.data(), n) != 1 ||
                  (md5 && EVP_DigestUpdate(m.get(), buf.data(), n) != 1)))
      throw Error(ErrorKind::Io, file.string(), "hashing failed");
  }
  if (in.bad()) throw Error(ErrorKind::Io, file.string(), "read failed");
  FileDigests out;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(sha.get(), digest, &len) != 1 || len != 32)
    throw Error(ErrorKind::Io, file.string(), "SHA-256 failed");
  out.sha256 = hex_of(digest, len);
  if (md5) {
    if (EVP_DigestFinal_ex(m.get(), digest, &len) != 1 || len != 16)
      throw Error(ErrorKind::Io, file.string(), "MD5 failed");
    out.md5 = hex_of(digest, len);
  }
  return out;
}

std::string sha256_file_hex(const std::filesystem::path& file) {
  return file_digests(file, false).sha256;
}

std::vector<std::uint8_t> read_file_bytes(const std::filesystem::path& file,
                                          std::uint64_t max_bytes) {
  const std::string name = file.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0) throw Error(ErrorKind::Io, name, std::string("cannot open: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    throw Error(ErrorKind::Io, name, std::string("cannot stat: ") + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(ErrorKind::Io, name, S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
  }
  if (static_cast<std::uint64_t>(st.st_size) > max_bytes) {
    ::close(fd);
    throw Error(ErrorKind::TooLarge, name,
                "file is " + std::to_string(st.st_size) + " bytes, over the limit of " +
                    std::to_string(max_bytes));
  }
  std::vector<std::uint8_t> data(static_cast<std::size_t>(st.st_size));
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::read(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      throw Error(ErrorKind::Io, name, std::string("read failed: ") + std::strerror(e));
    }
    if (n == 0) break;  // file shrank while reading
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  data.resize(done);
  return data;
}

cv::Mat apply_orientation(const cv::Mat& img, int orientation) {
  cv::Mat out;
  switch (orientation) {
    case 2:
      cv::flip(img, out, 1);
      break;
    case 3:
      cv::rotate(img, out, cv::ROTATE_180);
      break;
    case 4:
      cv::flip(img, out, 0);
      break;
    case 5:
      cv::transpose(img, out);
      break;
    case 6:
      cv::rotate(img, out, cv::ROTATE_90_CLOCKWISE);
      break;
    case 7:
      cv::transpose(img, out);
      cv::rotate(out, out, cv::ROTATE_180);
      break;
    case 8:
      cv::rotate(img, out, cv::ROTATE_90_COUNTERCLOCKWISE);
      break;
    default:
      return img;
  }
  return out;
}

LoadedImage decode_image(std::span<const std::uint8_t> bytes, const std::string& name,
                         const LoadOptions& opt, std::string known_sha256) {
  silence_opencv_logging();
  if (bytes.empty()) throw Error(ErrorKind::Format, name, "empty file");
  LoadedImage out;
  out.file_bytes = bytes.size();
  out.probe = probe_image(bytes);
  const ImageProbe& p = out.probe;
  if (p.format == ImageFormat::Unknown)
    throw Error(ErrorKind::Format, name, "not an image (unrecognised format)");
  if (!p.defect.empty()) throw Error(ErrorKind::Corrupt, name, p.defect);
  if (p.animated && p.format != ImageFormat::Gif)
    throw Error(ErrorKind::Format, name,
                std::string("unsupported format: animated ") + image_format_name(p.format));
  // The pixel limit below is only a defence if the header's size is known: a size the
  // probe cannot read is refused rather than left to the decoder to allocate.
  if (p.width <= 0 || p.height <= 0)
    throw Error(ErrorKind::Corrupt, name,
                std::string("malformed ") + image_format_name(p.format) + " header: no image size");
  const std::uint64_t declared =
      static_cast<std::uint64_t>(p.width) * static_cast<std::uint64_t>(p.height);
  if (declared > opt.max_pixels)
    throw Error(ErrorKind::TooLarge, name,
                "image is " + std::to_string(p.width) + "x" + std::to_string(p.height) + " (" +
                    std::to_string(declared / 1'000'000) + " MP), over the limit of " +
                    std::to_string(opt.max_pixels / 1'000'000) + " MP");
  out.sha256 = known_sha256.empty() ? sha256_hex(bytes) : std::move(known_sha256);
  if (opt.want_md5) out.md5 = md5_hex(bytes);

  cv::Mat pixels, detail, color;
  try {
    const cv::Mat buf(1, static_cast<int>(bytes.size()), CV_8UC1,
                      const_cast<std::uint8_t*>(bytes.data()));
    if (p.format == ImageFormat::Gif) {
      pixels = decode_gif_first_frame(bytes, name);
    } else if (fast_jpeg(p, opt)) {
      const int denom = jpeg_scale(p, opt.fast_min_side);
      pixels = cv::imdecode(buf, pixel_decode_flags(p, opt));
      if (opt.want_color)
        color = cv::imdecode(buf, reduced_flag(denom, true) | cv::IMREAD_IGNORE_ORIENTATION);
      if (opt.detail_min_side > opt.fast_min_side && denom > 1) {
        const int d2 = jpeg_scale(p, opt.detail_min_side);
        if (d2 < denom) {
          const int flag = d2 == 1 ? cv::IMREAD_GRAYSCALE : reduced_flag(d2, false);
          detail = cv::imdecode(buf, flag | cv::IMREAD_IGNORE_ORIENTATION);
        }
      }
    } else {
      pixels = cv::imdecode(buf, pixel_decode_flags(p, opt));
    }
  } catch (const cv::Exception& e) {
    throw Error(ErrorKind::Corrupt, name,
                std::string("cannot decode ") + image_format_name(p.format) + ": " + e.err);
  }
  if (pixels.empty())
    throw Error(ErrorKind::Corrupt, name,
                std::string("cannot decode ") + image_format_name(p.format) +
                    " (corrupt or unsupported variant)");
  if (pixels.depth() != CV_8U) pixels.convertTo(pixels, CV_8U);
  if (pixels.channels() == 4) cv::cvtColor(pixels, pixels, cv::COLOR_BGRA2BGR);
  if (pixels.channels() == 2 || pixels.channels() > 4)
    throw Error(ErrorKind::Format, name, "unsupported channel layout");
  if (static_cast<std::uint64_t>(pixels.total()) > opt.max_pixels)
    throw Error(ErrorKind::TooLarge, name, "decoded image is over the pixel limit");

  const int orientation = opt.exif_orientation ? p.orientation : 1;
  // Full size as a viewer sees it (the probe's size is as stored).
  int w = p.width > 0 ? p.width : pixels.cols, h = p.height > 0 ? p.height : pixels.rows;
  if (orientation >= 5) std::swap(w, h);
  out.width = w;
  out.height = h;
  out.pixels = apply_orientation(pixels, orientation);
  if (!detail.empty() && detail.depth() == CV_8U)
    out.detail = apply_orientation(detail, orientation);
  // A colour decode that failed (or came out in another shape) is dropped: colour() then
  // falls back to the grey pixels, as for a grey photo.
  if (!color.empty() && color.depth() == CV_8U && color.channels() == 3 &&
      color.size() == pixels.size())
    out.color = apply_orientation(color, orientation);
  return out;
}

LoadedImage load_image(const std::filesystem::path& file, const LoadOptions& options) {
  const auto bytes = read_file_bytes(file, options.max_file_bytes);
  return decode_image(bytes, file.string(), options);
}

}  // namespace hashwall
