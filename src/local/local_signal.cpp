#include "local/local_signal.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <map>
#include <stdexcept>

#include "core/error.hpp"
#include "image/load.hpp"

namespace hashwall {

namespace {

constexpr char kQueryMagic[4] = {'L', 'Q', 'F', '1'};
// RANSAC fits with fewer inliers are noise: near misses stop here whatever the threshold.
constexpr int kNearMissFloor = 4;

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}
std::uint32_t get_u32(std::string_view b, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

// The least inliers whose margin is at least min_margin under a threshold of m. Near
// misses (min_margin < 0) reach down to half the threshold, never below kNearMissFloor.
int reach_of(int m, double min_margin) {
  if (min_margin >= 1) return INT_MAX;
  if (min_margin >= 0) return static_cast<int>(std::ceil(m / (1.0 - min_margin)));
  return std::max({kNearMissFloor, m / 2, static_cast<int>(std::ceil(m * (1.0 + min_margin)))});
}

class LocalSignalIndex final : public SignalIndex {
 public:
  explicit LocalSignalIndex(const LocalIndexParams& p) : index_(p) {}
  std::string type() const override { return index_.type(); }
  void add(std::int64_t id, std::string_view record) override {
    index_.add(id, decode_local_record(record, "entry " + std::to_string(id)));
  }
  void prepare() override { index_.prepare(); }
  // An IVF's lists would have to be assigned again: the bank rebuilds it.
  bool can_remove() const override { return false; }
  void remove(std::span<const std::int64_t>) override {
    throw std::logic_error("the local index does not remove in place (can_remove)");
  }
  std::string cache() const override { return index_.layout(); }
  bool restore(std::string_view cache) override { return index_.restore_layout(cache); }

  std::vector<SignalMatch> search(const SignalQuery& query, const SignalParams& decision,
                                  double min_margin, std::size_t) const override {
    const auto m = min_inliers_of(decision);
    if (!m) throw Error(ErrorKind::Usage, "", "the local signal's decision has no min_inliers");
    // Below -1: every verified candidate, matched or not, one result per form (for
    // diagnostics such as bench robustness's local-alone column).
    const bool all = min_margin < -1.0;
    LocalVerifyParams vp;
    vp.min_inliers = all ? *m : reach_of(*m, min_margin);
    std::vector<SignalMatch> out;
    std::map<std::int64_t, std::size_t> at;  // id -> its place in out
    std::map<std::int64_t, int> inliers;
    bool any = false;
    for (std::size_t form = 0; form < query.forms.size(); ++form) {
      // The mirror image only when the photo as given found nothing: a flipped crop is
      // rarer than a plain one, and it doubles the search.
      if (form > 0 && any) break;
      const LocalFeatures f = decode_local_query_form(query.forms[form]);
      if (f.size() == 0) continue;
      for (const LocalMatch& lm : index_.search(f, vp)) {
        const LocalVerification& v = lm.verification;
        if (!all && !v.matched) continue;
        const auto seen = inliers.find(lm.id);
        if (!all && seen != inliers.end() && seen->second >= v.inliers)
          continue;  // mirror side weaker
        SignalMatch sm;
        sm.id = lm.id;
        sm.margin = inliers_margin(v.inliers, *m);
        sm.form = static_cast<int>(form);
        nlohmann::ordered_json region = nlohmann::ordered_json::array();
        for (const auto& p : v.region) region.push_back({p.x, p.y});
        sm.evidence = {{"inliers", v.inliers},
                       {"mirrored", f.mirrored},
                       {"region", std::move(region)},
                       {"votes", lm.votes}};
        nlohmann::ordered_json pairs = nlohmann::ordered_json::array();
        for (const auto& [e, q] : v.inlier_pairs) pairs.push_back({e.x, e.y, q.x, q.y});
        sm.extra = {{"inlier_pairs", std::move(pairs)}};
        if (v.matched && v.inliers >= *m) any = true;
        if (all) {
          sm.evidence["matched"] = v.matched;
          out.push_back(std::move(sm));
          continue;
        }
        inliers[lm.id] = v.inliers;
        if (const auto it = at.find(lm.id); it != at.end()) {
          out[it->second] = std::move(sm);
        } else {
          at[lm.id] = out.size();
          out.push_back(std::move(sm));
        }
      }
    }
    return out;
  }

  std::size_t size() const override { return index_.entries(); }
  std::size_t memory_bytes() const override { return index_.memory_bytes(); }

 private:
  LocalIndex index_;
};

}  // namespace

LocalSignal::LocalSignal(LocalParams params, LocalIndexParams index)
    : params_(params), index_(index) {}

std::string LocalSignal::summary() const {
  return "ORB keypoints verified by a RANSAC fit (crops, borders, captions, stickers, "
         "screenshots, collages, small rotations)";
}

SignalParams LocalSignal::decision_defaults() const {
  return {{"min_inliers", std::to_string(kLocalMinInliers)}};
}

std::string LocalSignal::validate(const SignalParams& decision) const {
  for (const auto& [k, v] : decision)
    if (k != "min_inliers") return "unknown parameter '" + k + "' (local has: min_inliers)";
  if (!min_inliers_of(decision)) return "min_inliers must be an integer within 3..100000";
  return {};
}

std::optional<SignalRecord> LocalSignal::compute(const LoadedImage& image) const {
  const cv::Mat& px = image.detail.empty() ? image.pixels : image.detail;
  return local_record(extract_local(px, params_.entry_keypoints, params_.entry_side, false));
}

SignalQuery LocalSignal::compute_query(const LoadedImage& image) const {
  const cv::Mat& px = image.detail.empty() ? image.pixels : image.detail;
  const int side = query_long_side(px.cols, px.rows, params_.query_side);
  SignalQuery q;
  for (const bool mirror : {false, true})
    q.forms.push_back(local_query_form(
        extract_local(px, params_.query_keypoints, side, mirror, params_.query_grid)));
  return q;
}

std::string LocalSignal::check_record(std::string_view record) const {
  try {
    const LocalFeatures f = decode_local_record(record, "");
    if (f.descriptors.rows != static_cast<int>(f.size()) ||
        (f.size() > 0 && f.descriptors.cols != kOrbBytes))
      return "local features have " + std::to_string(f.size()) + " keypoints but " +
             std::to_string(f.descriptors.rows) + " descriptors";
  } catch (const Error& e) {
    return e.reason();
  }
  return {};
}

std::unique_ptr<SignalIndex> LocalSignal::make_index() const {
  return std::make_unique<LocalSignalIndex>(index_);
}

std::int64_t LocalSignal::record_items(std::string_view record) const {
  const auto blobs = split_local_record(record);
  return blobs && blobs->first.size() >= 4 ? static_cast<std::int64_t>(blobs->first.size() / 4 - 1)
                                           : 0;
}

std::string LocalSignal::check_cache(std::string_view cache, std::int64_t items) const {
  return LocalIndex::layout_mismatch(
      cache, static_cast<std::size_t>(std::max<std::int64_t>(items, 0)), index_);
}

void register_local_signal() { register_builtin_signal(std::make_shared<LocalSignal>()); }

std::string local_query_form(const LocalFeatures& f) {
  const cv::Mat d = f.descriptors.isContinuous() ? f.descriptors : f.descriptors.clone();
  std::string out(kQueryMagic, 4);
  out += static_cast<char>(f.mirrored ? 1 : 0);
  put_u32(out, static_cast<std::uint32_t>(std::max(f.width, 0)));
  put_u32(out, static_cast<std::uint32_t>(std::max(f.height, 0)));
  put_u32(out, static_cast<std::uint32_t>(f.points.size()));
  for (const auto& p : f.points) out.append(reinterpret_cast<const char*>(&p), sizeof(float) * 2);
  out.append(reinterpret_cast<const char*>(d.data), f.points.empty() ? 0 : d.total());
  return out;
}

LocalFeatures decode_local_query_form(std::string_view b) {
  const auto bad = [] { return Error(ErrorKind::Usage, "", "not a local-feature query form"); };
  constexpr std::size_t kHead = 4 + 1 + 12;
  if (b.size() < kHead || b.compare(0, 4, std::string_view(kQueryMagic, 4)) != 0) throw bad();
  const std::size_t n = get_u32(b, 13);
  if (b.size() != kHead + n * (8 + kOrbBytes)) throw bad();
  LocalFeatures f;
  f.mirrored = b[4] != 0;
  f.width = static_cast<int>(get_u32(b, 5));
  f.height = static_cast<int>(get_u32(b, 9));
  f.points.resize(n);
  if (n > 0) std::memcpy(f.points.data(), b.data() + kHead, n * 8);
  f.descriptors = cv::Mat(static_cast<int>(n), kOrbBytes, CV_8U);
  if (n > 0) std::memcpy(f.descriptors.data, b.data() + kHead + n * 8, n * kOrbBytes);
  return f;
}

std::optional<int> min_inliers_of(const SignalParams& decision) {
  const auto it = decision.find("min_inliers");
  if (it == decision.end() || it->second.empty() || it->second.size() > 6) return std::nullopt;
  int v = 0;
  for (const char c : it->second) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  if (v < 3 || v > 100000) return std::nullopt;
  return v;
}

double inliers_margin(int inliers, int min_inliers) {
  if (min_inliers <= 0) return 1.0;
  if (inliers >= min_inliers)
    return inliers > 0 ? static_cast<double>(inliers - min_inliers) / inliers : 0.0;
  return std::clamp(static_cast<double>(inliers - min_inliers) / min_inliers, -1.0, 1.0);
}

}  // namespace hashwall
