// The learned embedding signal: an ONNX model (trained by tools/train, shipped in models/)
// run with OpenCV's dnn module. Preprocessing is exactly the training script's
// (models/hashwall-embed-v1.md): whole image resized to S x S with INTER_AREA, BGR->RGB,
// /255, ImageNet mean/std; the output is L2-normalised here.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/dnn/version.hpp>
#include <string>
#include <vector>

namespace cv::dnn {
CV__DNN_INLINE_NS_BEGIN
class Net;
CV__DNN_INLINE_NS_END
}  // namespace cv::dnn

namespace hashwall {

// Read from the model's sidecar file (models/hashwall-embed-v1.json) when present.
// The defaults are the shipped model's (models/hashwall-embed-v1.md).
struct EmbedderConfig {
  int input_size = 128;     // S
  double threshold = 0.75;  // cosine similarity for a match (the model card's "Shipped threshold")
};

class Embedder {
 public:
  // Throws Error{Io} when the file cannot be read, Error{Format} when OpenCV cannot load it
  // or it does not produce a vector.
  // The sidecar "<model>.json" ({"input_size": S, "threshold": t}) overrides `config`.
  static std::unique_ptr<Embedder> load(const std::filesystem::path& onnx,
                                        EmbedderConfig config = {});
  ~Embedder();
  Embedder(const Embedder&) = delete;
  Embedder& operator=(const Embedder&) = delete;

  // Grey, BGR or BGRA 8-bit pixels. Thread-safe: each thread borrows a network of its own
  // from a pool (a cv::dnn::Net must not run two forwards at once).
  std::vector<float> embed(const cv::Mat& pixels) const;
  // Preprocessing alone (exposed for the parity test): 1 x 3 x S x S float blob.
  cv::Mat blob(const cv::Mat& pixels) const;

  // "<file name>@<sha256 of the file>": what a bank records and compares.
  const std::string& model_id() const { return id_; }
  const std::string& sha256() const { return sha_; }
  int dim() const { return dim_; }
  const EmbedderConfig& config() const { return config_; }

 private:
  Embedder() = default;
  std::unique_ptr<cv::dnn::Net> borrow() const;
  void give_back(std::unique_ptr<cv::dnn::Net> net) const;

  EmbedderConfig config_;
  std::vector<std::uint8_t> onnx_;
  std::string id_, sha_;
  int dim_ = 0;
  mutable std::mutex pool_mu_;
  mutable std::vector<std::unique_ptr<cv::dnn::Net>> pool_;
};

// Where a model is looked for when no --model is given: kDefaultModel for a new bank, or
// the bare file name a bank records (so a bank built with v1 keeps finding v1 after the
// default moves on). First $HASHWALL_MODEL when its file name is that name (or the
// default is asked for), then models/NAME or share/hashwall/models/NAME in the
// executable's folder and up to three above it (a build folder inside the source tree, an
// installed prefix). Empty when not found, or when `file_name` is not a plain name: a
// bank from elsewhere never makes hashwall open a path of its choosing.
inline constexpr const char* kDefaultModel = "hashwall-embed-v1.onnx";
std::filesystem::path default_model_path(const std::string& file_name = kDefaultModel);

// Compares a bank's recorded model with a loaded one by their SHA-256.
bool same_model(const std::string& bank_model_id, const Embedder& e);

}  // namespace hashwall
