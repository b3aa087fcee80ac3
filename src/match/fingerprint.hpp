// What hashwall computes from one image: the identity of its bytes and its signals.
// New signals add a field here and their computation in fingerprint.cpp.
#pragma once

#include <string>

#include "hash/pdq.hpp"
#include "image/load.hpp"

namespace hashwall {

struct Fingerprint {
  std::string sha256;         // of the file bytes
  int width = 0, height = 0;  // full size as a viewer sees it
  PdqDihedralResult pdq;      // hashes[0] is the image as given
};

// Fast-mode images are prepared with PDQ's fast preprocessing, exact ones as Meta's
// reference does.
Fingerprint fingerprint(const LoadedImage& image, DecodeMode mode);

}  // namespace hashwall
