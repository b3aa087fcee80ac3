#include "embed/embed_signal.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/error.hpp"
#include "embed/embed_index.hpp"
#include "image/load.hpp"

namespace hashwall {

namespace {

class EmbedSignalIndex final : public SignalIndex {
 public:
  std::string type() const override { return index_ ? index_->type() : "flat-ip"; }

  void add(std::int64_t id, std::string_view record) override {
    const auto v = embedding_values(record);
    if (v.empty()) throw Error(ErrorKind::Format, "", "not an embedding record");
    if (!index_) index_ = std::make_unique<EmbedIndex>(static_cast<int>(v.size()));
    index_->add(id, v);  // throws for another length than the first record's
  }
  void prepare() override {
    if (index_) index_->prepare();
  }
  // Flat: the vectors are compacted and copied again, milliseconds. An HNSW graph would be
  // built again under the lock searches share: the bank rebuilds it at the next search.
  bool can_remove() const override { return !index_ || index_->type() != "hnsw32"; }
  void remove(std::span<const std::int64_t> ids) override {
    if (index_) index_->remove(ids);
  }

  std::vector<SignalMatch> search(const SignalQuery& query, const SignalParams& decision,
                                  double min_margin, std::size_t k) const override {
    std::vector<SignalMatch> out;
    const auto t = embed_threshold_of(decision);
    if (!t) throw Error(ErrorKind::Usage, "", "the embed signal's decision has no threshold");
    if (query.forms.empty() || k == 0 || !index_ || index_->size() == 0) return out;
    const auto q = embedding_values(query.forms.front());
    if (static_cast<int>(q.size()) != index_->dim())
      throw Error(ErrorKind::Usage, "",
                  "the query embedding has " + std::to_string(q.size()) + " values, the bank's " +
                      std::to_string(index_->dim()));
    // The similarity at min_margin: margin = (s - t) / (1 - t).
    const double reach = std::max(-1.0, *t + std::clamp(min_margin, -1.0, 1.0) * (1.0 - *t));
    const auto kk = static_cast<int>(std::min<std::size_t>(k, 1u << 30));
    // A match is a similarity at or above the threshold as a float (as the index compares
    // them); the margin's sign says the same even where the double threshold differs.
    const float tf = static_cast<float>(*t);
    for (const EmbedHit& h : index_->search(q, kk, static_cast<float>(reach))) {
      SignalMatch m;
      m.id = h.id;
      m.margin = similarity_margin(h.similarity, *t);
      if (h.similarity >= tf && m.margin < 0) m.margin = 0;
      if (h.similarity < tf && m.margin >= 0) m.margin = std::nextafter(0.0, -1.0);
      if (m.margin < min_margin) continue;
      m.evidence["similarity"] = h.similarity;
      out.push_back(std::move(m));
    }
    return out;
  }

  std::size_t size() const override { return index_ ? index_->size() : 0; }
  std::size_t memory_bytes() const override { return index_ ? index_->memory_bytes() : 0; }

 private:
  std::unique_ptr<EmbedIndex> index_;  // made at the first record: its length is the bank's
};

}  // namespace

EmbedSignal::EmbedSignal(std::shared_ptr<const Embedder> model) : model_(std::move(model)) {}

std::string EmbedSignal::summary() const {
  return "a learned embedding (models/" + std::string(kDefaultModel) +
         "), matched by cosine similarity";
}

SignalParams EmbedSignal::decision_defaults() const {
  return {{"threshold",
           threshold_text(model_ ? model_->config().threshold : EmbedderConfig{}.threshold)}};
}

std::string EmbedSignal::validate(const SignalParams& decision) const {
  for (const auto& [k, v] : decision)
    if (k != "threshold") return "unknown parameter '" + k + "' (embed has: threshold)";
  if (!embed_threshold_of(decision)) return "threshold must be a number within -1..1";
  return {};
}

std::optional<SignalRecord> EmbedSignal::compute(const LoadedImage& image) const {
  if (!model_) throw Error(ErrorKind::Usage, "", "the embed signal has no model loaded");
  return embedding_record(model_->embed(image.colour()));
}

std::string EmbedSignal::check_record(std::string_view record) const {
  if (record.empty() || record.size() % sizeof(float) != 0)
    return "embedding of " + std::to_string(record.size()) + " bytes (not a float vector)";
  const auto v = embedding_values(record);
  if (!std::all_of(v.begin(), v.end(), [](float x) { return std::isfinite(x); }))
    return "embedding holds a value that is not a finite number";
  return {};
}

std::string EmbedSignal::comparable(std::string_view stored, std::string_view record) const {
  if (stored.size() == record.size()) return {};
  return "embedding of " + std::to_string(record.size() / sizeof(float)) +
         " dimensions where the others have " + std::to_string(stored.size() / sizeof(float));
}

std::unique_ptr<SignalIndex> EmbedSignal::make_index() const {
  return std::make_unique<EmbedSignalIndex>();
}

void register_embed_signal() { register_builtin_signal(std::make_shared<EmbedSignal>()); }

SignalRecord embedding_record(std::span<const float> v) {
  return SignalRecord(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
}

std::vector<float> embedding_values(std::string_view record) {
  if (record.size() % sizeof(float) != 0) return {};
  std::vector<float> v(record.size() / sizeof(float));
  if (!v.empty()) std::memcpy(v.data(), record.data(), record.size());
  return v;
}

std::string threshold_text(double t) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6f", t);
  return buf;
}

std::string exact_threshold_text(double t) {
  std::string six = threshold_text(t);
  if (std::strtod(six.c_str(), nullptr) == t) return six;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", t);
  return buf;
}

std::optional<double> embed_threshold_of(const SignalParams& decision) {
  const auto it = decision.find("threshold");
  if (it == decision.end()) return std::nullopt;
  const char* s = it->second.c_str();
  char* end = nullptr;
  const double t = std::strtod(s, &end);
  if (end == s || *end != '\0' || !(t >= -1 && t <= 1)) return std::nullopt;
  return t;
}

double similarity_margin(double s, double t) {
  if (t >= 1.0) return s >= t ? 1.0 : -1.0;
  return std::clamp((s - t) / (1.0 - t), -1.0, 1.0);
}

}  // namespace hashwall
