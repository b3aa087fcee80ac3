#include "cli/draw.hpp"

#include <algorithm>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <system_error>

#include "core/error.hpp"

namespace hashwall::cli {

namespace {

constexpr int kHeight = 540;  // both panels are shown at this height

cv::Mat to_height(const cv::Mat& img, int h) {
  cv::Mat out;
  const double s = static_cast<double>(h) / img.rows;
  cv::resize(img, out, cv::Size(std::max(1, static_cast<int>(img.cols * s)), h), 0, 0,
             s < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  return out;
}

cv::Mat bgr(const cv::Mat& m) {
  if (m.channels() == 3) return m;
  cv::Mat out;
  cv::cvtColor(m, out, m.channels() == 4 ? cv::COLOR_BGRA2BGR : cv::COLOR_GRAY2BGR);
  return out;
}

}  // namespace

std::string draw_match(const std::filesystem::path& query_file, const MatchHit& hit,
                       const std::filesystem::path& out, LoadOptions load) {
  load.want_color = true;
  cv::Mat q0;
  try {
    q0 = load_image(query_file, load).colour();
  } catch (const Error& e) {
    throw Error(ErrorKind::Io, query_file.string(),
                "cannot read the query again to draw it: " + e.reason());
  }
  if (q0.empty())
    throw Error(ErrorKind::Io, query_file.string(), "cannot read the query again to draw it");
  const cv::Mat q = to_height(bgr(q0), kHeight);
  cv::Mat known;
  if (!hit.entry.source.empty()) {
    std::error_code ec;
    if (std::filesystem::is_regular_file(hit.entry.source, ec)) try {
        const cv::Mat k0 = load_image(hit.entry.source, load).colour();
        if (!k0.empty()) known = to_height(bgr(k0), kHeight);
      } catch (const Error&) {
        // Not readable as an image within the limits: drawn without it.
      }
  }
  const int left = known.empty() ? 0 : known.cols + 12;
  cv::Mat canvas(kHeight + 40, left + q.cols, CV_8UC3, cv::Scalar(32, 32, 32));
  if (!known.empty()) known.copyTo(canvas(cv::Rect(0, 40, known.cols, kHeight)));
  q.copyTo(canvas(cv::Rect(left, 40, q.cols, kHeight)));

  const auto in_query = [&](const cv::Point2f& p) {
    return cv::Point(left + static_cast<int>(p.x * q.cols), 40 + static_cast<int>(p.y * kHeight));
  };
  const auto in_known = [&](const cv::Point2f& p) {
    return cv::Point(static_cast<int>(p.x * known.cols), 40 + static_cast<int>(p.y * kHeight));
  };
  const auto pairs = hit.inlier_pairs();
  if (!known.empty())
    for (const auto& [e, qp] : pairs)
      cv::line(canvas, in_known(e), in_query(qp), cv::Scalar(80, 200, 80), 1, cv::LINE_AA);
  for (const auto& [e, qp] : pairs) {
    cv::circle(canvas, in_query(qp), 3, cv::Scalar(0, 255, 255), 1, cv::LINE_AA);
    if (!known.empty()) cv::circle(canvas, in_known(e), 3, cv::Scalar(0, 255, 255), 1, cv::LINE_AA);
  }
  if (const auto region = hit.region()) {
    std::vector<cv::Point> poly;
    for (const auto& p : *region) poly.push_back(in_query(p));
    cv::polylines(canvas, poly, true, cv::Scalar(0, 0, 255), 2, cv::LINE_AA);
  }
  std::string caption = "entry #" + std::to_string(hit.entry.id) + " [" + hit.signal + "]";
  if (const auto inliers = hit.inliers())
    caption +=
        "  " + std::to_string(*inliers) + " inliers" + (hit.local_mirrored() ? " (mirrored)" : "");
  if (const auto s = hit.similarity()) caption += "  embedding " + std::to_string(*s).substr(0, 5);
  caption += "  PDQ distance " + std::to_string(hit.distance());
  cv::putText(canvas, caption, cv::Point(8, 27), cv::FONT_HERSHEY_SIMPLEX, 0.65,
              cv::Scalar(240, 240, 240), 1, cv::LINE_AA);
  try {
    if (!cv::imwrite(out.string(), canvas))
      throw Error(ErrorKind::Io, out.string(), "cannot write the picture");
  } catch (const cv::Exception& e) {
    throw Error(ErrorKind::Io, out.string(), std::string("cannot write the picture: ") + e.err);
  }
  std::string what =
      "drew the match with entry #" + std::to_string(hit.entry.id) + " into " + out.string();
  if (known.empty()) what += " (the entry's source file is not readable here: query side only)";
  return what;
}

}  // namespace hashwall::cli
