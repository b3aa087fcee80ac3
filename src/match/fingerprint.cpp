#include "match/fingerprint.hpp"

namespace hashwall {

Fingerprint fingerprint(const LoadedImage& image, DecodeMode mode) {
  Fingerprint f;
  f.sha256 = image.sha256;
  f.width = image.width;
  f.height = image.height;
  f.pdq = pdq_hash_dihedral(image.pixels, mode == DecodeMode::Exact ? PdqPreprocess::Reference
                                                                    : PdqPreprocess::Fast);
  return f;
}

}  // namespace hashwall
