// `hashwall query --draw`: a picture of why an image matched, for a reviewer.
#pragma once

#include <filesystem>
#include <string>

#include "image/load.hpp"
#include "match/matcher.hpp"

namespace hashwall::cli {

// Writes a PNG/JPEG (by extension) of the query with the known photo's region outlined
// and its inlier keypoints marked; when the entry's source file is still readable (banks
// never hold pixels; the source path is only a record of where the photo was), the known
// photo is shown on the left with a line per inlier. Returns a one-line description of
// what was drawn. Both images are read by the same loader, with the same limits (`load`:
// pixels, bytes, format checks), as everything else: an entry's source is whatever file
// now sits at a recorded path. Throws Error{Io} when the query cannot be read or the
// output written; a known photo that cannot be read is left out.
std::string draw_match(const std::filesystem::path& query_file, const MatchHit& hit,
                       const std::filesystem::path& out, LoadOptions load = {});

}  // namespace hashwall::cli
