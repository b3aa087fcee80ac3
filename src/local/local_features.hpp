// The local-feature signal: ORB keypoints and binary descriptors, and the geometric check
// (RANSAC similarity fit) that tells a partial copy from a photo that merely looks alike.
// Pure: pixels in, values out. The descriptor index and candidate votes are local_index.hpp;
// the signal on the Signal interface (queries, decision, evidence) is local_signal.hpp; the
// bank stores the records (local_record below).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hashwall {

constexpr int kOrbBytes = 32;  // ORB descriptors are 256 bits
// Geometric inliers for a local-feature match: calibrated on bench robustness distractors
// (docs/BENCHMARKS.md). Banks record their own value (BankConfig::local_min_inliers).
inline constexpr int kLocalMinInliers = 12;

struct LocalParams {
  // Bank entries keep at most this many keypoints (about 9 kB each, see docs/BANK_FORMAT.md);
  // queries extract more, since the known photo may fill only part of them.
  int entry_keypoints = 256;
  int query_keypoints = 1024;
  // Images are brought to this long side (down only) before detection: bounded cost, and
  // keypoints at comparable scales for the copy and the original.
  int entry_side = 640;
  int query_side = 800;
  // Queries take half their keypoints tile by tile (query_grid x query_grid), so a known photo
  // shown in one corner of a collage or screenshot gets its share (measured: docs/BENCHMARKS.md).
  int query_grid = 3;
  // Queries are brought to at most query_side^2 pixels (not a long side), so a tall phone
  // screenshot keeps enough pixels on the photo inside it.
  // Local features are computed on a decode that keeps at least this many pixels on the
  // short side (LoadOptions::detail_min_side): PDQ is content with 256, ORB on a
  // screenshot is not.
  int min_decode_side = 512;
};

// How entries' features are computed (detector settings, keypoint budget, working size),
// as text: a bank records them when it is created and refuses to add entries computed
// otherwise, so that it never mixes entries built two ways (docs/BANK_FORMAT.md).
std::map<std::string, std::string> local_entry_params(const LocalParams& p = {});

struct LocalFeatures {
  // Keypoint centres normalised to [0, 1] of the image width and height, so that the
  // matched region can be reported in the query's own coordinates whatever its size.
  std::vector<cv::Point2f> points;
  cv::Mat descriptors;        // CV_8U, points.size() x kOrbBytes
  int width = 0, height = 0;  // of the image the features were taken from (working size)
  bool mirrored = false;      // taken from the horizontally mirrored image

  std::size_t size() const { return points.size(); }
};

// max_keypoints: LocalParams::entry_keypoints or query_keypoints. Grey or BGR input.
// grid > 1: half the keypoints from the whole image, half from grid x grid tiles.
LocalFeatures extract_local(const cv::Mat& pixels, int max_keypoints, int max_side,
                            bool mirror = false, int grid = 1);

// The long side that brings a width x height query to at most side^2 pixels (never above
// 2 x side): the max_side a query's extract_local gets.
int query_long_side(int width, int height, int side);

// Bank storage: the working width and height, then each point as two little-endian
// uint16 (1/65535 of a side); descriptors as raw bytes. decode throws Error{Corrupt} on
// malformed blobs (`what` names the entry in the message).
std::string encode_points(const LocalFeatures& f);
LocalFeatures decode_local(std::string_view points_blob, std::string_view descriptors_blob,
                           const std::string& what);

// The features as one record (what the local signal stores, local_signal.hpp): the keypoint
// blob and the descriptor blob above, each after its length as a little-endian uint64.
// The same bytes are what a bank's checksum of the row hashes (docs/BANK_FORMAT.md).
std::string local_record(std::string_view points_blob, std::string_view descriptors_blob);
std::string local_record(const LocalFeatures& f);
// The record's two blobs; nullopt when its lengths do not add up to its size.
std::optional<std::pair<std::string_view, std::string_view>> split_local_record(
    std::string_view record);
// Throws Error{Corrupt} (naming `what`) for a malformed record, as decode_local does.
LocalFeatures decode_local_record(std::string_view record, const std::string& what);

struct LocalVerifyParams {
  int max_descriptor_distance = 64;  // of 256 bits, for a correspondence
  float ratio = 0.8f;                // Lowe's ratio test, nearest vs second nearest
  float reprojection = 0.012f;       // RANSAC tolerance, fraction of the query's long side
  int min_inliers = kLocalMinInliers;
};

struct LocalVerification {
  int correspondences = 0;  // after the ratio test
  int inliers = 0;          // consistent with one similarity transform
  double scale = 0;         // of the fitted transform, known photo -> query
  double rotation_deg = 0;
  // The known photo's corners (top-left, top-right, bottom-right, bottom-left) mapped into
  // the query, normalised to the query's width and height: where the photo sits.
  std::array<cv::Point2f, 4> region{};
  // The inlier correspondences, (entry point, query point), each normalised to its image
  // (the query's as the user gave it, mirror undone): what a reviewer is shown.
  std::vector<std::pair<cv::Point2f, cv::Point2f>> inlier_pairs;
  bool matched = false;  // inliers >= min_inliers and a plausible transform
};

// Fits a similarity (rotation, uniform scale, shift) from the entry's keypoints to the
// query's with RANSAC.
LocalVerification verify_local(const LocalFeatures& query, const LocalFeatures& entry,
                               const LocalVerifyParams& params);

}  // namespace hashwall
