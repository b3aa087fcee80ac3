// What hashwall computes from one image: the identity of its bytes and its signals.
// PDQ has a field of its own (`pdq`, which reports and entries use); the other signals
// (signal/signal.hpp: local, embed and registered ones) come in by name in `registered`.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bank/bank.hpp"
#include "hash/pdq.hpp"
#include "image/load.hpp"
#include "signal/signal.hpp"

namespace hashwall {

struct Fingerprint {
  std::string sha256;         // of the file bytes
  std::string md5;            // of the file bytes, when the load was asked for it
  int width = 0, height = 0;  // full size as a viewer sees it
  // hashes[0] is the image as given: the pdq signal's forms (pdq/pdq_signal.hpp, pdq_query)
  // and, for an entry, its record (NewEntry::pdq, quality).
  PdqDihedralResult pdq;
  // The other signals, by name: a query's forms, or for an entry its
  // record as the only form (no form: the signal had nothing to record for this image).
  std::map<std::string, SignalQuery> registered;
};

struct FingerprintOptions {
  // Queries get each signal's query forms (local: more keypoints, and the mirror image
  // too), entries its record.
  bool for_query = true;
  // The signals to compute besides PDQ (which fingerprint() always computes, and skips
  // here): for embed, an EmbedSignal with its model (embed/embed_signal.hpp).
  std::vector<const Signal*> registered;
};

// What decoding these signals need: colour for those that want it (the embedding), more
// pixels for those that need them (Signal::min_decode_side: the local features).
void prepare_load(LoadOptions& load, const FingerprintOptions& options);

// The bank entry for an indexed image: its SHA-256, PDQ hash and quality, and whatever
// other signals were computed (label, source and origin are the caller's).
NewEntry entry_from(const Fingerprint& f);

// Fast-mode images are prepared with PDQ's fast preprocessing, exact ones as Meta's
// reference does.
Fingerprint fingerprint(const LoadedImage& image, DecodeMode mode,
                        const FingerprintOptions& options = {});

}  // namespace hashwall
