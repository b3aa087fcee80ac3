#include "match/fingerprint.hpp"

#include <algorithm>
#include <cmath>

namespace hashwall {

void prepare_load(LoadOptions& load, const FingerprintOptions& o) {
  for (const Signal* s : o.registered) {
    if (s->wants_colour()) load.want_color = true;
    load.detail_min_side = std::max(load.detail_min_side, s->min_decode_side());
  }
}

NewEntry entry_from(const Fingerprint& f) {
  NewEntry e;
  e.sha256 = f.sha256;
  e.pdq = f.pdq.hashes[0];
  e.quality = f.pdq.quality;
  for (const auto& [name, q] : f.registered)
    if (!q.forms.empty()) e.records[name] = q.forms.front();
  return e;
}

Fingerprint fingerprint(const LoadedImage& image, DecodeMode mode, const FingerprintOptions& o) {
  Fingerprint f;
  f.sha256 = image.sha256;
  f.md5 = image.md5;
  f.width = image.width;
  f.height = image.height;
  f.pdq = pdq_hash_dihedral(
      image.pixels, mode == DecodeMode::Exact ? PdqPreprocess::Reference : PdqPreprocess::Fast);
  for (const Signal* s : o.registered) {
    // PDQ is computed above, as the decode mode asks (Fingerprint::pdq; the matcher takes
    // its forms from there): not a second time.
    if (s->name() == "pdq") continue;
    SignalQuery q;
    if (o.for_query) {
      q = s->compute_query(image);
    } else if (auto r = s->compute(image)) {
      q.forms.push_back(std::move(*r));
    }
    f.registered[s->name()] = std::move(q);
  }
  return f;
}

}  // namespace hashwall
