#include "local/local_features.hpp"

#include <algorithm>
#include <bitset>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <opencv2/calib3d.hpp>
#include <opencv2/features2d.hpp>
#include <opencv2/imgproc.hpp>
#include <unordered_map>

#include "core/error.hpp"
#include "core/popcount.hpp"

namespace hashwall {

namespace {

// ORB's own defaults (Rublee et al. 2011): 8 levels a factor 1.2 apart cover a copy shown
// at half or double the size; a 31 px patch and border.
constexpr float kScaleFactor = 1.2f;
constexpr int kLevels = 8;
constexpr int kPatch = 31;
constexpr int kFastThreshold = 20;
// A similarity needs 2 points: with 10 % inliers, 500 draws miss an all-inlier pair with
// probability 0.99^500 < 1 %; true copies have far more and stop early.
constexpr int kRansacIters = 500;
// Below this, ORB finds no keypoints worth keeping (the border alone eats 31 px a side).
constexpr int kMinSide = 3 * kPatch;

// Nearest and second-nearest of a 256-bit descriptor among n (Lowe's ratio test). The
// POPCNT instruction where the CPU has it (see core/popcount.cpp): this loop is most of
// a verification's cost.
struct Nearest2 {
  int best = 1 << 30, second = 1 << 30, best_index = -1;
};

template <typename Pop>
Nearest2 nearest2_with(const std::uint64_t* q, const std::uint64_t* rows, int n, Pop pop) {
  Nearest2 r;
  for (int j = 0; j < n; ++j) {
    const std::uint64_t* e = rows + 4 * static_cast<std::size_t>(j);
    const int d = pop(q[0] ^ e[0]) + pop(q[1] ^ e[1]) + pop(q[2] ^ e[2]) + pop(q[3] ^ e[3]);
    if (d < r.best) {
      r.second = r.best;
      r.best = d;
      r.best_index = j;
    } else if (d < r.second) {
      r.second = d;
    }
  }
  return r;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt"))) Nearest2 nearest2_popcnt(const std::uint64_t* q,
                                                           const std::uint64_t* rows, int n) {
  return nearest2_with(q, rows, n, [](std::uint64_t x) { return __builtin_popcountll(x); });
}
#endif

Nearest2 nearest2(const std::uint64_t* q, const std::uint64_t* rows, int n) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (popcount_native()) return nearest2_popcnt(q, rows, n);
#endif
  return nearest2_with(
      q, rows, n, [](std::uint64_t x) { return static_cast<int>(std::bitset<64>(x).count()); });
}

void put_u16(std::string& out, unsigned v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>((v >> 8) & 0xff));
}

unsigned get_u16(std::string_view s, std::size_t at) {
  return static_cast<unsigned char>(s[at]) |
         (static_cast<unsigned>(static_cast<unsigned char>(s[at + 1])) << 8);
}

}  // namespace

std::map<std::string, std::string> local_entry_params(const LocalParams& p) {
  char scale[16];
  std::snprintf(scale, sizeof scale, "%.2f", static_cast<double>(kScaleFactor));
  return {{"detector", "orb"},
          {"descriptor_bytes", std::to_string(kOrbBytes)},
          {"scale_factor", scale},
          {"levels", std::to_string(kLevels)},
          {"patch", std::to_string(kPatch)},
          {"fast_threshold", std::to_string(kFastThreshold)},
          {"entry_keypoints", std::to_string(p.entry_keypoints)},
          {"entry_side", std::to_string(p.entry_side)},
          {"min_decode_side", std::to_string(p.min_decode_side)}};
}

LocalFeatures extract_local(const cv::Mat& pixels, int max_keypoints, int max_side, bool mirror,
                            int grid) {
  LocalFeatures f;
  f.mirrored = mirror;
  f.descriptors = cv::Mat(0, kOrbBytes, CV_8U);
  if (pixels.empty()) return f;
  cv::Mat grey;
  if (pixels.channels() == 3)
    cv::cvtColor(pixels, grey, cv::COLOR_BGR2GRAY);
  else if (pixels.channels() == 4)
    cv::cvtColor(pixels, grey, cv::COLOR_BGRA2GRAY);
  else
    grey = pixels;
  if (grey.depth() != CV_8U) grey.convertTo(grey, CV_8U, grey.depth() == CV_16U ? 1.0 / 257 : 1.0);
  const int long_side = std::max(grey.cols, grey.rows);
  if (max_side > 0 && long_side > max_side) {
    const double s = static_cast<double>(max_side) / long_side;
    cv::Mat small;
    cv::resize(grey, small,
               cv::Size(std::max(1, static_cast<int>(std::lround(grey.cols * s))),
                        std::max(1, static_cast<int>(std::lround(grey.rows * s)))),
               0, 0, cv::INTER_AREA);
    grey = small;
  }
  if (mirror) {
    cv::Mat m;
    cv::flip(grey, m, 1);
    grey = m;
  }
  f.width = grey.cols;
  f.height = grey.rows;
  if (std::min(grey.cols, grey.rows) < kMinSide || max_keypoints <= 0) return f;

  // grid > 1: half the keypoints from the whole image, half tile by tile (grid x grid).
  // ORB ranks corners over the whole image, so one busy region (another tile of a collage,
  // a screenshot's UI text) would otherwise take them all; the whole-image half keeps the
  // strongest corners, which are also the ones the bank entry kept. Tiles overlap by a
  // patch, so no keypoint is lost to a tile's border; a tile keeps those in its core.
  // Tiles are about square: `grid` along the short side, proportionally more along the
  // long one (a tall phone screenshot gets more rows), at most 8.
  grid = std::clamp(grid, 1, 4);
  if (std::min(grey.cols, grey.rows) / grid < 2 * kPatch) grid = 1;
  const double aspect = static_cast<double>(std::max(grey.cols, grey.rows)) /
                        std::max(1, std::min(grey.cols, grey.rows));
  const int along_long = std::clamp(static_cast<int>(std::lround(grid * aspect)), grid, 8);
  const int gx = grey.cols >= grey.rows ? along_long : grid;
  const int gy = grey.cols >= grey.rows ? grid : along_long;
  std::vector<cv::Mat> descs;
  const auto detect = [&](const cv::Rect& outer, const cv::Rect& core, int n) {
    auto orb = cv::ORB::create(std::max(1, n), kScaleFactor, kLevels, kPatch, 0, 2,
                               cv::ORB::HARRIS_SCORE, kPatch, kFastThreshold);
    std::vector<cv::KeyPoint> kps;
    cv::Mat desc;
    orb->detectAndCompute(grey(outer), cv::noArray(), kps, desc);
    for (std::size_t i = 0; i < kps.size() && static_cast<int>(i) < desc.rows; ++i) {
      const cv::Point2f p(kps[i].pt.x + static_cast<float>(outer.x),
                          kps[i].pt.y + static_cast<float>(outer.y));
      if (!core.contains(p)) continue;
      f.points.emplace_back(std::clamp(p.x / static_cast<float>(grey.cols), 0.f, 1.f),
                            std::clamp(p.y / static_cast<float>(grey.rows), 0.f, 1.f));
      descs.push_back(desc.row(static_cast<int>(i)));
    }
  };
  const cv::Rect whole(0, 0, grey.cols, grey.rows);
  if (grid == 1) {
    detect(whole, whole, max_keypoints);
  } else {
    detect(whole, whole, max_keypoints / 2);
    const int per_tile = std::max(1, max_keypoints / 2 / (gx * gy));
    const int margin = kPatch + 1;
    for (int ty = 0; ty < gy; ++ty) {
      for (int tx = 0; tx < gx; ++tx) {
        const cv::Rect core(cv::Point(grey.cols * tx / gx, grey.rows * ty / gy),
                            cv::Point(grey.cols * (tx + 1) / gx, grey.rows * (ty + 1) / gy));
        const cv::Rect outer = cv::Rect(core.x - margin, core.y - margin, core.width + 2 * margin,
                                        core.height + 2 * margin) &
                               whole;
        detect(outer, core, per_tile);
      }
    }
  }
  if (f.points.empty()) return f;
  cv::vconcat(descs, f.descriptors);
  return f;
}

int query_long_side(int width, int height, int side) {
  if (width <= 0 || height <= 0) return side;
  const double l = std::max(width, height), s = std::min(width, height);
  return static_cast<int>(std::min(2.0 * side, side * std::sqrt(l / s)));
}

std::string encode_points(const LocalFeatures& f) {
  std::string out;
  out.reserve(4 + 4 * f.points.size());
  put_u16(out, static_cast<unsigned>(std::clamp(f.width, 0, 65535)));
  put_u16(out, static_cast<unsigned>(std::clamp(f.height, 0, 65535)));
  for (const auto& p : f.points) {
    put_u16(out, static_cast<unsigned>(std::lround(std::clamp(p.x, 0.f, 1.f) * 65535.f)));
    put_u16(out, static_cast<unsigned>(std::lround(std::clamp(p.y, 0.f, 1.f) * 65535.f)));
  }
  return out;
}

LocalFeatures decode_local(std::string_view points_blob, std::string_view descriptors_blob,
                           const std::string& what) {
  const auto bad = [&](const std::string& why) {
    return Error(ErrorKind::Corrupt, what,
                 "local features are corrupt: " + why + " (run 'hashwall check')");
  };
  if (points_blob.size() < 4 || points_blob.size() % 4 != 0)
    throw bad("keypoint blob of " + std::to_string(points_blob.size()) + " bytes");
  const std::size_t n = points_blob.size() / 4 - 1;
  if (descriptors_blob.size() != n * kOrbBytes)
    throw bad(std::to_string(n) + " keypoints but " + std::to_string(descriptors_blob.size()) +
              " descriptor bytes");
  LocalFeatures f;
  f.width = static_cast<int>(get_u16(points_blob, 0));
  f.height = static_cast<int>(get_u16(points_blob, 2));
  if (n > 0 && (f.width == 0 || f.height == 0)) throw bad("zero working size");
  f.points.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    f.points.emplace_back(static_cast<float>(get_u16(points_blob, 4 + 4 * i)) / 65535.f,
                          static_cast<float>(get_u16(points_blob, 6 + 4 * i)) / 65535.f);
  f.descriptors = cv::Mat(static_cast<int>(n), kOrbBytes, CV_8U);
  if (n > 0) std::memcpy(f.descriptors.data, descriptors_blob.data(), descriptors_blob.size());
  return f;
}

std::string local_record(std::string_view points_blob, std::string_view descriptors_blob) {
  std::string out;
  out.reserve(16 + points_blob.size() + descriptors_blob.size());
  for (const auto blob : {points_blob, descriptors_blob}) {
    for (int i = 0; i < 8; ++i)
      out += static_cast<char>((static_cast<std::uint64_t>(blob.size()) >> (8 * i)) & 0xff);
    out.append(blob);
  }
  return out;
}

std::string local_record(const LocalFeatures& f) {
  const cv::Mat d = f.descriptors.isContinuous() ? f.descriptors : f.descriptors.clone();
  return local_record(encode_points(f),
                      std::string_view(reinterpret_cast<const char*>(d.data), d.total()));
}

std::optional<std::pair<std::string_view, std::string_view>> split_local_record(
    std::string_view r) {
  std::string_view parts[2];
  for (auto& part : parts) {
    if (r.size() < 8) return std::nullopt;
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(r[i]);
    r.remove_prefix(8);
    if (n > r.size()) return std::nullopt;
    part = r.substr(0, n);
    r.remove_prefix(n);
  }
  if (!r.empty()) return std::nullopt;
  return std::make_pair(parts[0], parts[1]);
}

LocalFeatures decode_local_record(std::string_view record, const std::string& what) {
  const auto blobs = split_local_record(record);
  if (!blobs)
    throw Error(ErrorKind::Corrupt, what,
                "local features are corrupt: a record of " + std::to_string(record.size()) +
                    " bytes that is not two length-prefixed blobs (run 'hashwall check')");
  return decode_local(blobs->first, blobs->second, what);
}

LocalVerification verify_local(const LocalFeatures& query, const LocalFeatures& entry,
                               const LocalVerifyParams& params) {
  LocalVerification v;
  if (query.size() < 2 || entry.size() < 2) return v;

  // Correspondences: each query keypoint's nearest entry keypoint, kept when clearly
  // nearer than the second (Lowe's ratio test) and near in absolute terms; an entry
  // keypoint claimed twice keeps its best partner, so one texture cannot vote many times.
  std::unordered_map<int, cv::DMatch> best_for_entry;
  const cv::Mat qd =
      query.descriptors.isContinuous() ? query.descriptors : query.descriptors.clone();
  const cv::Mat ed =
      entry.descriptors.isContinuous() ? entry.descriptors : entry.descriptors.clone();
  const int ne = ed.rows;
  for (int i = 0; i < qd.rows; ++i) {
    const Nearest2 m = nearest2(qd.ptr<std::uint64_t>(i), ed.ptr<std::uint64_t>(0), ne);
    if (m.best_index < 0 || m.best > params.max_descriptor_distance) continue;
    if (ne > 1 && static_cast<float>(m.best) >= params.ratio * static_cast<float>(m.second))
      continue;
    const cv::DMatch a(i, m.best_index, static_cast<float>(m.best));
    auto [it, fresh] = best_for_entry.try_emplace(a.trainIdx, a);
    if (!fresh && a.distance < it->second.distance) it->second = a;
  }
  v.correspondences = static_cast<int>(best_for_entry.size());
  // Fewer correspondences than the inliers a match needs: no fit can make it one.
  if (v.correspondences < std::max(3, params.min_inliers)) return v;

  // Similarity fit in pixel units of each side's working image.
  std::vector<cv::Point2f> from, to;
  from.reserve(best_for_entry.size());
  to.reserve(best_for_entry.size());
  for (const auto& [e, m] : best_for_entry) {
    const auto& pe = entry.points[static_cast<std::size_t>(m.trainIdx)];
    const auto& pq = query.points[static_cast<std::size_t>(m.queryIdx)];
    from.emplace_back(pe.x * entry.width, pe.y * entry.height);
    to.emplace_back(pq.x * query.width, pq.y * query.height);
  }
  const double tol = params.reprojection * std::max(query.width, query.height);
  std::vector<uchar> inlier_mask;
  const cv::Mat M =
      cv::estimateAffinePartial2D(from, to, inlier_mask, cv::RANSAC, tol, kRansacIters, 0.995, 10);
  if (M.empty()) return v;
  v.inliers = static_cast<int>(std::count(inlier_mask.begin(), inlier_mask.end(), uchar{1}));
  for (std::size_t i = 0; i < inlier_mask.size() && i < from.size(); ++i) {
    if (!inlier_mask[i]) continue;
    float qx = to[i].x / static_cast<float>(query.width);
    if (query.mirrored) qx = 1.f - qx;
    v.inlier_pairs.push_back({{from[i].x / static_cast<float>(entry.width),
                               from[i].y / static_cast<float>(entry.height)},
                              {qx, to[i].y / static_cast<float>(query.height)}});
  }
  const double a = M.at<double>(0, 0), b = M.at<double>(1, 0);
  v.scale = std::hypot(a, b);
  v.rotation_deg = std::atan2(b, a) * 180.0 / CV_PI;

  const cv::Point2f corners[4] = {
      {0.f, 0.f},
      {static_cast<float>(entry.width), 0.f},
      {static_cast<float>(entry.width), static_cast<float>(entry.height)},
      {0.f, static_cast<float>(entry.height)}};
  for (int i = 0; i < 4; ++i) {
    const double x =
        M.at<double>(0, 0) * corners[i].x + M.at<double>(0, 1) * corners[i].y + M.at<double>(0, 2);
    const double y =
        M.at<double>(1, 0) * corners[i].x + M.at<double>(1, 1) * corners[i].y + M.at<double>(1, 2);
    float nx = static_cast<float>(x / query.width), ny = static_cast<float>(y / query.height);
    if (query.mirrored) nx = 1.f - nx;  // back into the query as the user gave it
    v.region[static_cast<std::size_t>(i)] = {nx, ny};
  }
  // A copy is shown between 1/20 and 20 times the size of the known photo (in working
  // pixels); outside that the "fit" is a degenerate one through a few clustered points.
  v.matched = v.inliers >= params.min_inliers && v.scale > 0.05 && v.scale < 20.0;
  return v;
}

}  // namespace hashwall
