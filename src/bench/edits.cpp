#include "bench/edits.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <unordered_map>

#include "core/error.hpp"

namespace hashwall::bench {

namespace {

using Rng = std::mt19937_64;
using EditFn = std::function<cv::Mat(const cv::Mat&, Rng&, std::span<const cv::Mat>)>;

struct Registered {
  EditSpec spec;
  EditFn fn;
};

double uniform(Rng& rng, double lo, double hi) {
  return std::uniform_real_distribution<double>(lo, hi)(rng);
}

int at_least_1(double v) { return std::max(1, static_cast<int>(std::lround(v))); }

cv::Mat scale(const cv::Mat& img, double fx, double fy) {
  cv::Mat out;
  const int interp = fx * fy < 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR;
  cv::resize(img, out, cv::Size(at_least_1(img.cols * fx), at_least_1(img.rows * fy)), 0, 0,
             interp);
  return out;
}

cv::Mat fit(const cv::Mat& img, cv::Size box) {
  const double s = std::min(static_cast<double>(box.width) / img.cols,
                            static_cast<double>(box.height) / img.rows);
  return scale(img, s, s);
}

cv::Mat cover(const cv::Mat& img, cv::Size box) {  // scale to cover box, then centre-crop
  const double s = std::max(static_cast<double>(box.width) / img.cols,
                            static_cast<double>(box.height) / img.rows);
  cv::Mat big = scale(img, s, s);
  const int x = (big.cols - box.width) / 2, y = (big.rows - box.height) / 2;
  return big(cv::Rect(x, y, std::min(box.width, big.cols), std::min(box.height, big.rows))).clone();
}

// Keeps `frac` of each side; `centre` false moves the window towards a random corner.
cv::Mat crop(const cv::Mat& img, double frac, Rng& rng, bool centre) {
  const int w = at_least_1(img.cols * frac), h = at_least_1(img.rows * frac);
  int x = (img.cols - w) / 2, y = (img.rows - h) / 2;
  if (!centre) {
    x = static_cast<int>(uniform(rng, 0.0, 1.0) < 0.5 ? 0 : img.cols - w);
    y = static_cast<int>(uniform(rng, 0.0, 1.0) < 0.5 ? 0 : img.rows - h);
  }
  return img(cv::Rect(x, y, w, h)).clone();
}

// Pads to the aspect ratio aw:ah, with black bars or a blurred, enlarged copy of the
// photo behind it (the "blurred letterbox" of video and story apps).
cv::Mat letterbox(const cv::Mat& img, double aw, double ah, bool blurred) {
  const double target = aw / ah, have = static_cast<double>(img.cols) / img.rows;
  cv::Size canvas = have < target ? cv::Size(at_least_1(img.rows * target), img.rows)
                                  : cv::Size(img.cols, at_least_1(img.cols / target));
  cv::Mat out;
  if (blurred) {
    out = cover(img, canvas);
    const int k = std::max(3, (std::min(canvas.width, canvas.height) / 15) | 1);
    cv::GaussianBlur(out, out, cv::Size(k, k), 0);
  } else {
    out = cv::Mat(canvas, CV_8UC3, cv::Scalar::all(0));
  }
  img.copyTo(out(
      cv::Rect((canvas.width - img.cols) / 2, (canvas.height - img.rows) / 2, img.cols, img.rows)));
  return out;
}

cv::Mat border(const cv::Mat& img, double frac, cv::Scalar colour) {
  const int b = at_least_1(std::max(img.cols, img.rows) * frac);
  cv::Mat out;
  cv::copyMakeBorder(img, out, b, b, b, b, cv::BORDER_CONSTANT, colour);
  return out;
}

cv::Mat rotate_small(const cv::Mat& img, double degrees) {
  const cv::Point2f c(img.cols / 2.0f, img.rows / 2.0f);
  const cv::Mat m = cv::getRotationMatrix2D(c, degrees, 1.0);
  cv::Mat out;
  cv::warpAffine(img, out, m, img.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT,
                 cv::Scalar::all(0));
  return out;
}

cv::Mat lut(const cv::Mat& img, const std::function<double(double)>& f) {
  cv::Mat table(1, 256, CV_8U);
  for (int i = 0; i < 256; ++i) table.at<std::uint8_t>(i) = cv::saturate_cast<std::uint8_t>(f(i));
  cv::Mat out;
  cv::LUT(img, table, out);
  return out;
}

cv::Mat hsv_edit(const cv::Mat& img, int hue_shift, double sat_mul) {
  cv::Mat hsv;
  cv::cvtColor(img, hsv, cv::COLOR_BGR2HSV);
  for (int y = 0; y < hsv.rows; ++y) {
    auto* p = hsv.ptr<cv::Vec3b>(y);
    for (int x = 0; x < hsv.cols; ++x) {
      p[x][0] = static_cast<std::uint8_t>((p[x][0] + hue_shift + 180) % 180);  // OpenCV hue: 0..179
      p[x][1] = cv::saturate_cast<std::uint8_t>(p[x][1] * sat_mul);
    }
  }
  cv::Mat out;
  cv::cvtColor(hsv, out, cv::COLOR_HSV2BGR);
  return out;
}

const std::array<const char*, 12> kWords = {"when",      "the",    "monday", "hits",
                                            "different", "lol",    "me",     "explaining",
                                            "why",       "nobody", "asked",  "2024"};

std::string words(Rng& rng, int n) {
  std::string s;
  for (int i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += kWords[std::uniform_int_distribution<std::size_t>(0, kWords.size() - 1)(rng)];
  }
  return s;
}

// Text of height ~frac of the image's short side, with an outline so it reads on any photo.
void put_text(cv::Mat& img, const std::string& text, cv::Point org, double height_px,
              cv::Scalar fill = cv::Scalar::all(255), cv::Scalar outline = cv::Scalar::all(0)) {
  const double s = std::max(0.3, height_px / 22.0);  // Hershey simplex: ~22 px at scale 1
  const int t = std::max(1, static_cast<int>(s * 2));
  cv::putText(img, text, org, cv::FONT_HERSHEY_SIMPLEX, s, outline, t + 2 * std::max(1, t / 2),
              cv::LINE_AA);
  cv::putText(img, text, org, cv::FONT_HERSHEY_SIMPLEX, s, fill, t, cv::LINE_AA);
}

cv::Mat text_overlay(const cv::Mat& src, Rng& rng, double rel_height, int lines, bool centre) {
  cv::Mat img = src.clone();
  const double h = std::min(img.cols, img.rows) * rel_height;
  for (int i = 0; i < lines; ++i) {
    int x, y;
    if (centre) {
      x = static_cast<int>(img.cols * 0.1);
      y = static_cast<int>(img.rows * 0.5 + (i - lines / 2.0) * h * 1.4);
    } else {
      x = static_cast<int>(uniform(rng, 0.02, 0.5) * img.cols);
      y = static_cast<int>(uniform(rng, 0.1, 0.95) * img.rows);
    }
    put_text(img, words(rng, 3), cv::Point(x, y), h);
  }
  return img;
}

// Meme layout: a white bar above the photo with a line of black text.
cv::Mat caption(const cv::Mat& img, Rng& rng) {
  const int bar = at_least_1(img.rows * 0.22);
  cv::Mat out(img.rows + bar, img.cols, CV_8UC3, cv::Scalar::all(255));
  img.copyTo(out(cv::Rect(0, bar, img.cols, img.rows)));
  put_text(out, words(rng, 4), cv::Point(img.cols / 20, bar * 2 / 3), bar * 0.4, cv::Scalar::all(0),
           cv::Scalar::all(255));
  return out;
}

cv::Rect random_box(cv::Size in, double area_frac, double aspect, Rng& rng) {
  const double area = in.area() * area_frac;
  int w = std::min(in.width, at_least_1(std::sqrt(area * aspect)));
  int h = std::min(in.height, at_least_1(area / w));
  const int x = static_cast<int>(uniform(rng, 0, in.width - w + 1));
  const int y = static_cast<int>(uniform(rng, 0, in.height - h + 1));
  return {std::min(x, in.width - w), std::min(y, in.height - h), w, h};
}

cv::Mat sticker(const cv::Mat& src, Rng& rng, double area_frac) {
  cv::Mat img = src.clone();
  const cv::Rect r = random_box(img.size(), area_frac, 1.0, rng);
  const cv::Point c(r.x + r.width / 2, r.y + r.height / 2);
  const int rad = std::min(r.width, r.height) / 2;
  cv::circle(img, c, rad, cv::Scalar(0, 215, 255), cv::FILLED, cv::LINE_AA);  // a yellow face
  cv::circle(img, c, rad, cv::Scalar(0, 0, 0), std::max(1, rad / 20), cv::LINE_AA);
  cv::circle(img, c + cv::Point(-rad / 3, -rad / 4), std::max(1, rad / 8), cv::Scalar::all(0),
             cv::FILLED);
  cv::circle(img, c + cv::Point(rad / 3, -rad / 4), std::max(1, rad / 8), cv::Scalar::all(0),
             cv::FILLED);
  cv::ellipse(img, c, cv::Size(rad / 2, rad / 3), 0, 20, 160, cv::Scalar::all(0),
              std::max(1, rad / 15));
  return img;
}

const cv::Mat& other(const cv::Mat& self, std::span<const cv::Mat> others, std::size_t k,
                     cv::Mat& fallback) {
  if (k < others.size() && !others[k].empty()) return others[k];
  cv::flip(self, fallback, 0);
  return fallback;
}

cv::Mat paste_photo(const cv::Mat& src, Rng& rng, double area_frac,
                    std::span<const cv::Mat> others) {
  cv::Mat img = src.clone(), fb;
  const cv::Mat& o = other(src, others, 0, fb);
  const cv::Rect r = random_box(img.size(), area_frac, static_cast<double>(o.cols) / o.rows, rng);
  cover(o, r.size()).copyTo(img(r));
  return img;
}

// A phone screenshot of a post: status bar, user name, the photo fitted to the width,
// like/comment lines under it, on a 9:19.5 canvas.
cv::Mat screenshot(const cv::Mat& img, Rng& rng) {
  const int w = std::max(360, img.cols);
  const int h = at_least_1(w * 19.5 / 9.0);
  cv::Mat out(h, w, CV_8UC3, cv::Scalar::all(250));
  const double t = w / 30.0;
  put_text(out, "9:41", cv::Point(static_cast<int>(t), static_cast<int>(1.6 * t)), t * 0.8,
           cv::Scalar::all(20), cv::Scalar::all(250));
  put_text(out, "@" + words(rng, 1) + "_" + words(rng, 1),
           cv::Point(static_cast<int>(t), static_cast<int>(4 * t)), t, cv::Scalar::all(20),
           cv::Scalar::all(250));
  const cv::Mat photo = fit(img, cv::Size(w, static_cast<int>(h * 0.6)));
  const int y = static_cast<int>(5.5 * t);
  photo.copyTo(out(cv::Rect((w - photo.cols) / 2, y, photo.cols, photo.rows)));
  int ty = y + photo.rows + static_cast<int>(2 * t);
  for (int i = 0; i < 4 && ty < h - t; ++i, ty += static_cast<int>(2 * t))
    put_text(out, words(rng, 5), cv::Point(static_cast<int>(t), ty), t * 0.8, cv::Scalar::all(20),
             cv::Scalar::all(250));
  return out;
}

cv::Mat collage(const cv::Mat& img, Rng& rng, std::span<const cv::Mat> others) {
  const cv::Size tile(at_least_1(img.cols / 2.0), at_least_1(img.rows / 2.0));
  cv::Mat out(tile.height * 2, tile.width * 2, CV_8UC3, cv::Scalar::all(0));
  const int mine = std::uniform_int_distribution<int>(0, 3)(rng);
  std::size_t k = 0;
  for (int i = 0; i < 4; ++i) {
    cv::Mat fb;
    const cv::Mat& src = i == mine ? img : other(img, others, k++, fb);
    cover(src, tile).copyTo(
        out(cv::Rect((i % 2) * tile.width, (i / 2) * tile.height, tile.width, tile.height)));
  }
  return out;
}

cv::Mat watermark(const cv::Mat& src) {
  cv::Mat layer = src.clone();
  const double h = std::min(src.cols, src.rows) / 12.0;
  for (int y = static_cast<int>(h * 1.5), row = 0; y < src.rows;
       y += static_cast<int>(h * 3), ++row)
    put_text(layer, "(c) stockphotos sample", cv::Point(static_cast<int>((row % 2) * h * 2 - h), y),
             h, cv::Scalar::all(255), cv::Scalar::all(255));
  cv::Mat out;
  cv::addWeighted(src, 0.65, layer, 0.35, 0, out);  // 35 % opaque
  return out;
}

cv::Mat perspective(const cv::Mat& img) {
  const float w = static_cast<float>(img.cols), h = static_cast<float>(img.rows);
  const cv::Point2f from[4] = {{0, 0}, {w, 0}, {w, h}, {0, h}};
  // The top edge recedes: a photo of a photo held at an angle.
  const cv::Point2f to[4] = {{0.12f * w, 0.06f * h}, {0.88f * w, 0.06f * h}, {w, h}, {0, h}};
  cv::Mat out;
  cv::warpPerspective(img, out, cv::getPerspectiveTransform(from, to), img.size(), cv::INTER_LINEAR,
                      cv::BORDER_CONSTANT, cv::Scalar::all(0));
  return out;
}

cv::Mat pixelate(const cv::Mat& img) {
  const int block = std::max(2, std::min(img.cols, img.rows) / 60);
  cv::Mat small, out;
  cv::resize(img, small,
             cv::Size(at_least_1(img.cols / double(block)), at_least_1(img.rows / double(block))),
             0, 0, cv::INTER_AREA);
  cv::resize(small, out, img.size(), 0, 0, cv::INTER_NEAREST);
  return out;
}

cv::Mat noise(const cv::Mat& img, std::uint64_t seed, double sigma) {
  cv::Mat n(img.size(), CV_16SC3);
  cv::RNG rng(seed);
  rng.fill(n, cv::RNG::NORMAL, 0, sigma);
  cv::Mat wide, out;
  img.convertTo(wide, CV_16SC3);
  wide += n;
  wide.convertTo(out, CV_8UC3);
  return out;
}

std::vector<Registered> build_registry() {
  std::vector<Registered> r;
  auto add = [&](std::string name, std::string family, EditFn fn, int q = 90, int others = 0) {
    r.push_back({EditSpec{std::move(name), std::move(family), q, others}, std::move(fn)});
  };
  const auto id = [](const cv::Mat& m, Rng&, std::span<const cv::Mat>) { return m.clone(); };
  add("reencode-q90", "jpeg", id);
  add("jpeg-q50", "jpeg", id, 50);
  add("jpeg-q20", "jpeg", id, 20);
  for (double s : {0.5, 0.3}) {
    char n[32];
    std::snprintf(n, sizeof n, "downscale-%.1f", s);
    add(n, "resize", [s](const cv::Mat& m, Rng&, auto) { return scale(m, s, s); });
  }
  add("upscale-2x", "resize", [](const cv::Mat& m, Rng&, auto) { return scale(m, 2, 2); });
  add("stretch-1.4x", "resize", [](const cv::Mat& m, Rng&, auto) { return scale(m, 1.4, 1.0); });
  for (int k : {90, 70, 50})
    add("crop-" + std::to_string(k), "crop",
        [k](const cv::Mat& m, Rng& g, auto) { return crop(m, k / 100.0, g, true); });
  add("crop-70-offcentre", "crop",
      [](const cv::Mat& m, Rng& g, auto) { return crop(m, 0.7, g, false); });
  add("border-black-5pct", "border",
      [](const cv::Mat& m, Rng&, auto) { return border(m, 0.05, cv::Scalar::all(0)); });
  add("border-white-20pct", "border",
      [](const cv::Mat& m, Rng&, auto) { return border(m, 0.2, cv::Scalar::all(255)); });
  add("letterbox-16x9-black", "border",
      [](const cv::Mat& m, Rng&, auto) { return letterbox(m, 16, 9, false); });
  add("letterbox-9x16-black", "border",
      [](const cv::Mat& m, Rng&, auto) { return letterbox(m, 9, 16, false); });
  add("letterbox-16x9-blurred", "border",
      [](const cv::Mat& m, Rng&, auto) { return letterbox(m, 16, 9, true); });
  add("letterbox-9x16-blurred", "border",
      [](const cv::Mat& m, Rng&, auto) { return letterbox(m, 9, 16, true); });
  add("rotate-90", "dihedral", [](const cv::Mat& m, Rng&, auto) {
    cv::Mat o;
    cv::rotate(m, o, cv::ROTATE_90_CLOCKWISE);
    return o;
  });
  add("rotate-180", "dihedral", [](const cv::Mat& m, Rng&, auto) {
    cv::Mat o;
    cv::rotate(m, o, cv::ROTATE_180);
    return o;
  });
  add("rotate-270", "dihedral", [](const cv::Mat& m, Rng&, auto) {
    cv::Mat o;
    cv::rotate(m, o, cv::ROTATE_90_COUNTERCLOCKWISE);
    return o;
  });
  add("flip-h", "dihedral", [](const cv::Mat& m, Rng&, auto) {
    cv::Mat o;
    cv::flip(m, o, 1);
    return o;
  });
  add("flip-v", "dihedral", [](const cv::Mat& m, Rng&, auto) {
    cv::Mat o;
    cv::flip(m, o, 0);
    return o;
  });
  for (int d : {3, 8, 15})
    add("rotate-" + std::to_string(d) + "deg", "small-rotation",
        [d](const cv::Mat& m, Rng&, auto) { return rotate_small(m, d); });
  add("brightness+50", "colour",
      [](const cv::Mat& m, Rng&, auto) { return lut(m, [](double v) { return v + 50; }); });
  add("contrast-1.6", "colour", [](const cv::Mat& m, Rng&, auto) {
    return lut(m, [](double v) { return 128 + (v - 128) * 1.6; });
  });
  add("gamma-0.5", "colour", [](const cv::Mat& m, Rng&, auto) {
    return lut(m, [](double v) { return 255 * std::pow(v / 255, 0.5); });
  });
  add("saturation-2x", "colour", [](const cv::Mat& m, Rng&, auto) { return hsv_edit(m, 0, 2.0); });
  add("hue-shift-40", "colour",
      [](const cv::Mat& m, Rng&, auto) { return hsv_edit(m, 20, 1.0); });  // 20 of 180 = 40 deg
  add("greyscale", "colour", [](const cv::Mat& m, Rng&, auto) {
    cv::Mat g, o;
    cv::cvtColor(m, g, cv::COLOR_BGR2GRAY);
    cv::cvtColor(g, o, cv::COLOR_GRAY2BGR);
    return o;
  });
  add("sepia", "colour", [](const cv::Mat& m, Rng&, auto) {
    // The usual sepia matrix, rows/columns in OpenCV's BGR order.
    const cv::Matx33f k(0.131f, 0.534f, 0.272f, 0.168f, 0.686f, 0.349f, 0.189f, 0.769f, 0.393f);
    cv::Mat o;
    cv::transform(m, o, k);
    return o;
  });
  add("blur-gauss-s3", "filter", [](const cv::Mat& m, Rng&, auto) {
    cv::Mat o;
    cv::GaussianBlur(m, o, cv::Size(0, 0), 3);
    return o;
  });
  add("noise-gauss-s20", "filter",
      [](const cv::Mat& m, Rng& g, auto) { return noise(m, g(), 20); });
  add("sharpen", "filter", [](const cv::Mat& m, Rng&, auto) {
    cv::Mat b, o;
    cv::GaussianBlur(m, b, cv::Size(0, 0), 2);
    cv::addWeighted(m, 1.8, b, -0.8, 0, o);
    return o;
  });
  add("median-5", "filter", [](const cv::Mat& m, Rng&, auto) {
    cv::Mat o;
    cv::medianBlur(m, o, 5);
    return o;
  });
  add("pixelate", "filter", [](const cv::Mat& m, Rng&, auto) { return pixelate(m); });
  add("text-small-1", "text",
      [](const cv::Mat& m, Rng& g, auto) { return text_overlay(m, g, 0.04, 1, false); });
  add("text-medium-3", "text",
      [](const cv::Mat& m, Rng& g, auto) { return text_overlay(m, g, 0.07, 3, false); });
  add("text-large-centre", "text",
      [](const cv::Mat& m, Rng& g, auto) { return text_overlay(m, g, 0.12, 2, true); });
  add("watermark", "text", [](const cv::Mat& m, Rng&, auto) { return watermark(m); });
  add("caption-meme", "composite", [](const cv::Mat& m, Rng& g, auto) { return caption(m, g); });
  add("sticker-10pct", "overlay",
      [](const cv::Mat& m, Rng& g, auto) { return sticker(m, g, 0.10); });
  add("sticker-25pct", "overlay",
      [](const cv::Mat& m, Rng& g, auto) { return sticker(m, g, 0.25); });
  add(
      "photo-over-15pct", "overlay",
      [](const cv::Mat& m, Rng& g, auto o) { return paste_photo(m, g, 0.15, o); }, 90, 1);
  add(
      "photo-over-30pct", "overlay",
      [](const cv::Mat& m, Rng& g, auto o) { return paste_photo(m, g, 0.30, o); }, 90, 1);
  add("phone-screenshot", "composite",
      [](const cv::Mat& m, Rng& g, auto) { return screenshot(m, g); });
  add(
      "collage-2x2", "composite", [](const cv::Mat& m, Rng& g, auto o) { return collage(m, g, o); },
      90, 3);
  add("perspective-tilt", "geometry", [](const cv::Mat& m, Rng&, auto) { return perspective(m); });
  add(
      "crop-80+jpeg-q50", "combination",
      [](const cv::Mat& m, Rng& g, auto) { return crop(m, 0.8, g, true); }, 50);
  add("caption+downscale-0.5", "combination",
      [](const cv::Mat& m, Rng& g, auto) { return scale(caption(m, g), 0.5, 0.5); });
  add(
      "flip-h+jpeg-q50", "combination",
      [](const cv::Mat& m, Rng&, auto) {
        cv::Mat o;
        cv::flip(m, o, 1);
        return o;
      },
      50);
  add("letterbox-16x9+downscale-0.5", "combination",
      [](const cv::Mat& m, Rng&, auto) { return scale(letterbox(m, 16, 9, false), 0.5, 0.5); });
  add("rotate-3deg+crop-90", "combination",
      [](const cv::Mat& m, Rng& g, auto) { return crop(rotate_small(m, 3), 0.9, g, true); });
  add(
      "text-medium+jpeg-q50", "combination",
      [](const cv::Mat& m, Rng& g, auto) { return text_overlay(m, g, 0.07, 2, false); }, 50);
  return r;
}

// FNV-1a: a hash of the edit name that is the same on every platform (std::hash is not).
std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return h;
}

const std::vector<Registered>& registered() {
  static const std::vector<Registered> r = build_registry();
  return r;
}

}  // namespace

const std::vector<EditSpec>& edit_registry() {
  static const std::vector<EditSpec> specs = [] {
    std::vector<EditSpec> s;
    for (const auto& r : registered()) s.push_back(r.spec);
    return s;
  }();
  return specs;
}

const EditSpec* find_edit(std::string_view name) {
  for (const auto& s : edit_registry())
    if (s.name == name) return &s;
  return nullptr;
}

cv::Mat apply_edit(const cv::Mat& bgr, const EditSpec& spec, std::uint64_t seed,
                   std::span<const cv::Mat> others) {
  if (bgr.empty()) throw Error(ErrorKind::Usage, "", "apply_edit: empty image");
  static const auto by_name = [] {
    std::unordered_map<std::string, const EditFn*> m;
    for (const auto& r : registered()) m.emplace(r.spec.name, &r.fn);
    return m;
  }();
  const auto it = by_name.find(spec.name);
  if (it == by_name.end()) throw Error(ErrorKind::Usage, "", "unknown edit '" + spec.name + "'");
  cv::Mat img = bgr;
  if (img.channels() == 1) cv::cvtColor(bgr, img, cv::COLOR_GRAY2BGR);
  if (img.depth() != CV_8U || img.channels() != 3)
    throw Error(ErrorKind::Usage, "", "apply_edit: expects an 8-bit grey or BGR image");
  // The seed mixes in the edit's name so two edits of one photo draw different numbers.
  Rng rng(seed ^ fnv1a(spec.name));
  return (*it->second)(img, rng, others);
}

std::vector<std::uint8_t> encode_upload(const cv::Mat& bgr, const EditSpec& spec) {
  std::vector<std::uint8_t> out;
  if (!cv::imencode(".jpg", bgr, out, {cv::IMWRITE_JPEG_QUALITY, spec.jpeg_quality}))
    throw Error(ErrorKind::Format, spec.name, "JPEG encoding failed");
  return out;
}

}  // namespace hashwall::bench
