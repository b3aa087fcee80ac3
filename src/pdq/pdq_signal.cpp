#include "pdq/pdq_signal.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "core/error.hpp"
#include "image/load.hpp"

namespace hashwall {

namespace {

constexpr unsigned char kNoQuality = 255;

std::optional<int> int_param(const SignalParams& d, const char* key, int lo, int hi) {
  const auto it = d.find(key);
  if (it == d.end()) return std::nullopt;
  int v = 0;
  const auto& s = it->second;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < lo || v > hi) return std::nullopt;
  return v;
}

// The forms a decision compares: all, or only the image as given.
std::size_t forms_compared(const SignalQuery& q, const SignalParams& decision) {
  return pdq_dihedral_of(decision) ? q.forms.size() : std::min<std::size_t>(q.forms.size(), 1);
}

nlohmann::ordered_json evidence_of(int distance, int form) {
  return {{"distance", distance},
          {"variant", std::string(dihedral_name(static_cast<Dihedral>(form)))}};
}

// The largest distance whose margin is at least min_margin (near misses: twice the
// threshold), within what a 256-bit hash can be apart.
// Near misses stop at 255, as they always have; a threshold of 256 reaches every hash.
int reach_of(int threshold, double min_margin) {
  if (std::isnan(min_margin) || min_margin > 1) return -1;
  if (threshold <= 0) return 0;
  const double m = std::max(min_margin, -1.0);
  const int r = static_cast<int>(threshold * (1.0 - m) + 1e-9);
  return std::min(m < 0 ? 255 : 256, r);
}

}  // namespace

std::string PdqSignal::summary() const {
  return "Meta's PDQ hash and its 8 rotations/flips (re-encodes, resizes, filters)";
}

SignalParams PdqSignal::decision_defaults() const {
  return {{"min_quality", std::to_string(kPdqMinQuality)},
          {"threshold", std::to_string(kPdqMatchThreshold)}};
}

std::string PdqSignal::validate(const SignalParams& decision) const {
  for (const auto& [k, v] : decision)
    if (k != "threshold" && k != "min_quality" && k != "dihedral")
      return "unknown parameter '" + k + "' (pdq has: threshold, min_quality, dihedral)";
  if (!pdq_threshold_of(decision)) return "threshold must be an integer within 0..256";
  if (!pdq_min_quality_of(decision)) return "min_quality must be an integer within 0..100";
  if (const auto it = decision.find("dihedral");
      it != decision.end() && it->second != "yes" && it->second != "no")
    return "dihedral must be yes or no";
  return {};
}

std::optional<SignalRecord> PdqSignal::compute(const LoadedImage& image) const {
  const PdqResult r = pdq_hash(image.pixels, preprocess_);
  return pdq_record(r.hash, r.quality);
}

SignalQuery PdqSignal::compute_query(const LoadedImage& image) const {
  return pdq_query(pdq_hash_dihedral(image.pixels, preprocess_));
}

std::string PdqSignal::check_record(std::string_view record) const {
  if (record.size() != kPdqRecordBytes)
    return "a PDQ record is " + std::to_string(kPdqRecordBytes) + " bytes, not " +
           std::to_string(record.size());
  const auto q = static_cast<unsigned char>(record[32]);
  if (q > 100 && q != kNoQuality) return "quality " + std::to_string(q) + " is outside 0..100";
  return {};
}

std::unique_ptr<SignalIndex> PdqSignal::make_index() const {
  return std::make_unique<PdqSignalIndex>(make_pdq_index("flat"));
}

std::optional<SignalMatch> PdqSignal::compare(const SignalQuery& query, std::string_view record,
                                              const SignalParams& decision) const {
  const auto entry = pdq_record_hash(record);
  const auto threshold = pdq_threshold_of(decision);
  if (!entry || !threshold) return std::nullopt;
  // The nearest form; the first of equals, as pdq_search reports it.
  int best = 257, form = 0;
  for (std::size_t f = 0; f < forms_compared(query, decision); ++f)
    if (const auto h = pdq_record_hash(query.forms[f]))
      if (const int d = hamming(*h, *entry); d < best) {
        best = d;
        form = static_cast<int>(f);
      }
  if (best > 256) return std::nullopt;
  SignalMatch m;
  m.margin = pdq_margin(best, *threshold);
  m.form = form;
  m.evidence = evidence_of(best, form);
  return m;
}

bool PdqSignal::may_decide(const SignalQuery& query, const SignalParams& decision) const {
  if (query.forms.empty()) return false;
  const auto q = pdq_record_quality(query.forms.front());
  return !q || *q >= pdq_min_quality_of(decision).value_or(kPdqMinQuality);
}

bool PdqSignal::may_decide_for(std::string_view record, const SignalParams& decision) const {
  const auto q = pdq_record_quality(record);
  return !q || *q >= pdq_min_quality_of(decision).value_or(kPdqMinQuality);
}

void register_pdq_signal() { register_builtin_signal(std::make_shared<PdqSignal>()); }

SignalRecord pdq_record(const Hash256& hash, std::optional<int> quality) {
  SignalRecord r(reinterpret_cast<const char*>(hash.bytes.data()), hash.bytes.size());
  // A quality outside 0..100 (a caller's) is taken as the nearer end, as the gate compares it.
  r += static_cast<char>(quality ? static_cast<unsigned char>(std::clamp(*quality, 0, 100))
                                 : kNoQuality);
  return r;
}

std::optional<Hash256> pdq_record_hash(std::string_view record) {
  if (record.size() != kPdqRecordBytes) return std::nullopt;
  Hash256 h;
  std::memcpy(h.bytes.data(), record.data(), h.bytes.size());
  return h;
}

std::optional<int> pdq_record_quality(std::string_view record) {
  if (record.size() != kPdqRecordBytes) return std::nullopt;
  const auto q = static_cast<unsigned char>(record[32]);
  if (q > 100) return std::nullopt;
  return q;
}

SignalQuery pdq_query(const PdqDihedralResult& hashes) {
  SignalQuery q;
  for (const Hash256& h : hashes.hashes) q.forms.push_back(pdq_record(h, hashes.quality));
  return q;
}

std::optional<int> pdq_threshold_of(const SignalParams& d) {
  return int_param(d, "threshold", 0, 256);
}
std::optional<int> pdq_min_quality_of(const SignalParams& d) {
  return int_param(d, "min_quality", 0, 100);
}
bool pdq_dihedral_of(const SignalParams& d) {
  const auto it = d.find("dihedral");
  return it == d.end() || it->second != "no";
}

double pdq_margin(int distance, int threshold) {
  if (threshold <= 0) return distance <= 0 ? 1.0 : -1.0;
  return std::clamp(static_cast<double>(threshold - distance) / threshold, -1.0, 1.0);
}

std::vector<SignalMatch> pdq_search(const PdqIndex& index, const SignalQuery& query,
                                    const SignalParams& decision, double min_margin) {
  const auto threshold = pdq_threshold_of(decision);
  if (!threshold) throw Error(ErrorKind::Usage, "", "pdq: no valid threshold in the decision");
  std::vector<Hash256> hashes;
  for (std::size_t f = 0; f < forms_compared(query, decision); ++f) {
    const auto h = pdq_record_hash(query.forms[f]);
    if (!h) throw Error(ErrorKind::Usage, "", "pdq: a query form is not a PDQ hash");
    hashes.push_back(*h);
  }
  const int reach = reach_of(*threshold, min_margin);
  if (hashes.empty() || reach < 0) return {};
  const auto rows = best_per_entry(index.range_search(hashes, reach));
  std::vector<SignalMatch> out;
  out.reserve(rows.size());
  for (const PdqMatch& b : rows) {
    const double margin = pdq_margin(b.distance, *threshold);
    if (margin < min_margin && min_margin >= -1) continue;
    SignalMatch m;
    m.id = b.id;
    m.margin = margin;
    m.form = b.query_index;
    m.evidence = evidence_of(b.distance, b.query_index);
    out.push_back(std::move(m));
  }
  return out;
}

void PdqSignalIndex::add(std::int64_t id, std::string_view record) {
  const auto h = pdq_record_hash(record);
  if (!h) throw Error(ErrorKind::Bank, "", "not a PDQ record");
  index_->add(std::span(&id, 1), std::span(&*h, 1));
}

std::vector<SignalMatch> PdqSignalIndex::search(const SignalQuery& query,
                                                const SignalParams& decision, double min_margin,
                                                std::size_t k) const {
  auto out = pdq_search(*index_, query, decision, min_margin);
  // Not cut at k: the search is exact and the matcher skips entries the gate keeps out
  // (PdqSignal::returns_all_candidates).
  (void)k;
  return out;
}

}  // namespace hashwall
