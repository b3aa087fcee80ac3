#include "match/fingerprint.hpp"

#include "embed/embedder.hpp"

namespace hashwall {

Fingerprint fingerprint(const LoadedImage& image, DecodeMode mode, const FingerprintOptions& o) {
  Fingerprint f;
  f.sha256 = image.sha256;
  f.width = image.width;
  f.height = image.height;
  f.pdq = pdq_hash_dihedral(image.pixels, mode == DecodeMode::Exact ? PdqPreprocess::Reference
                                                                    : PdqPreprocess::Fast);
  if (o.local) {
    const LocalParams& p = o.local_params;
    if (o.for_query) {
      f.local = extract_local(image.pixels, p.query_keypoints, p.query_side, false, p.query_grid);
      f.local_mirror = extract_local(image.pixels, p.query_keypoints, p.query_side, true, p.query_grid);
    } else {
      f.local = extract_local(image.pixels, p.entry_keypoints, p.entry_side, false);
    }
  }
  if (o.embedder) f.embedding = o.embedder->embed(image.pixels);
  return f;
}

}  // namespace hashwall
