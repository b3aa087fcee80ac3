// The edits the robustness benchmark applies to a photo before querying it: what an
// upload of a known photo tends to look like after it has travelled (re-encoded,
// resized, cropped, bordered, captioned, pasted into a screenshot or a collage, ...).
//
// Pure code: pixels in, pixels (or JPEG bytes) out, deterministic for a seed.
#pragma once

#include <cstdint>
#include <opencv2/core.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hashwall::bench {

struct EditSpec {
  std::string name;    // "crop-70", "caption+downscale-0.5", ...
  std::string family;  // "crop", "border", ... (the bars of the recall plot)
  // The upload is encoded as JPEG at this quality: 90 unless the edit is a JPEG edit.
  int jpeg_quality = 90;
  // How many other photos the edit pastes in (collage, photo over photo).
  int others_needed = 0;
};

// Every edit, in report order. Names are unique.
const std::vector<EditSpec>& edit_registry();
// nullptr when no edit has that name.
const EditSpec* find_edit(std::string_view name);

// bgr: 8-bit, 3 channels (1-channel input is converted). `others` are unrelated photos
// (BGR) for the edits that paste one in; with fewer than others_needed the photo itself,
// mirrored, stands in. Throws Error{Usage} for an empty image. JPEG edits return the
// pixels unchanged: their loss happens in encode_upload().
cv::Mat apply_edit(const cv::Mat& bgr, const EditSpec& spec, std::uint64_t seed,
                   std::span<const cv::Mat> others = {});

// The edited photo as the bytes of an upload: JPEG at spec.jpeg_quality.
std::vector<std::uint8_t> encode_upload(const cv::Mat& bgr, const EditSpec& spec);

}  // namespace hashwall::bench
