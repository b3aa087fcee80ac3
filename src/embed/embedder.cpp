#include "embed/embedder.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgproc.hpp>

#include "core/error.hpp"
#include "image/load.hpp"

namespace hashwall {

namespace fs = std::filesystem;

namespace {
// ImageNet statistics, as the training script normalises (tools/train/train.py).
constexpr double kMean[3] = {0.485, 0.456, 0.406};  // R, G, B
constexpr double kStd[3] = {0.229, 0.224, 0.225};
constexpr std::uint64_t kMaxModelBytes = 200ull << 20;
}  // namespace

std::unique_ptr<Embedder> Embedder::load(const fs::path& onnx, EmbedderConfig config) {
  std::unique_ptr<Embedder> e(new Embedder());
  fs::path side = onnx;
  side.replace_extension(".json");
  std::error_code ec;
  if (fs::exists(side, ec)) {
    try {
      std::ifstream in(side);
      const auto j = nlohmann::json::parse(in);
      config.input_size = j.value("input_size", config.input_size);
      config.threshold = j.value("threshold", config.threshold);
    } catch (const std::exception& ex) {
      throw Error(ErrorKind::Format, side.string(),
                  std::string("unreadable model settings: ") + ex.what());
    }
    if (config.input_size < 16 || config.input_size > 1024 ||
        !(config.threshold > -1 && config.threshold <= 1))
      throw Error(ErrorKind::Format, side.string(), "model settings out of range");
  }
  e->config_ = config;
  e->onnx_ = read_file_bytes(onnx, kMaxModelBytes);
  e->sha_ = sha256_hex(e->onnx_);
  e->id_ = onnx.filename().string() + "@" + e->sha_;
  std::unique_ptr<cv::dnn::Net> net;
  try {
    net = e->borrow();  // loads it, and proves it runs
  } catch (const Error& ex) {
    throw Error(ex.kind(), onnx.string(), ex.reason());  // name the file the user gave
  }
  cv::Mat probe(config.input_size, config.input_size, CV_8UC3, cv::Scalar(128, 128, 128));
  net->setInput(e->blob(probe));
  cv::Mat out;
  try {
    out = net->forward();
  } catch (const cv::Exception& ex) {
    throw Error(ErrorKind::Format, onnx.string(),
                std::string("the model does not run: ") + ex.what());
  }
  if (out.total() == 0 || out.total() > 65536)
    throw Error(ErrorKind::Format, onnx.string(), "the model's output is not an embedding vector");
  e->dim_ = static_cast<int>(out.total());
  e->give_back(std::move(net));
  return e;
}

Embedder::~Embedder() = default;

std::unique_ptr<cv::dnn::Net> Embedder::borrow() const {
  {
    std::lock_guard lock(pool_mu_);
    if (!pool_.empty()) {
      auto n = std::move(pool_.back());
      pool_.pop_back();
      return n;
    }
  }
  try {
    auto net = std::make_unique<cv::dnn::Net>(
        cv::dnn::readNetFromONNX(reinterpret_cast<const char*>(onnx_.data()), onnx_.size()));
    if (net->empty()) throw Error(ErrorKind::Format, id_, "OpenCV could not load the ONNX model");
    net->setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
    net->setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
    return net;
  } catch (const cv::Exception& ex) {
    throw Error(ErrorKind::Format, id_,
                std::string("OpenCV could not load the ONNX model: ") + ex.what());
  }
}

void Embedder::give_back(std::unique_ptr<cv::dnn::Net> net) const {
  std::lock_guard lock(pool_mu_);
  pool_.push_back(std::move(net));
}

cv::Mat Embedder::blob(const cv::Mat& pixels) const {
  cv::Mat bgr;
  if (pixels.channels() == 1)
    cv::cvtColor(pixels, bgr, cv::COLOR_GRAY2BGR);
  else if (pixels.channels() == 4)
    cv::cvtColor(pixels, bgr, cv::COLOR_BGRA2BGR);
  else
    bgr = pixels;
  if (bgr.depth() != CV_8U) bgr.convertTo(bgr, CV_8U, bgr.depth() == CV_16U ? 1.0 / 257 : 1.0);
  const int S = config_.input_size;
  cv::Mat small;
  cv::resize(bgr, small, cv::Size(S, S), 0, 0, cv::INTER_AREA);
  cv::Mat b(std::vector<int>{1, 3, S, S}, CV_32F);
  // NCHW, RGB order: channel c of the blob is BGR channel 2 - c.
  for (int c = 0; c < 3; ++c) {
    float* dst = b.ptr<float>(0, c);
    const int src_c = 2 - c;
    const float scale = static_cast<float>(1.0 / (255.0 * kStd[c]));
    const float shift = static_cast<float>(kMean[c] / kStd[c]);
    for (int y = 0; y < S; ++y) {
      const auto* row = small.ptr<cv::Vec3b>(y);
      for (int x = 0; x < S; ++x)
        dst[y * S + x] = static_cast<float>(row[x][src_c]) * scale - shift;
    }
  }
  return b;
}

std::vector<float> Embedder::embed(const cv::Mat& pixels) const {
  const cv::Mat in = blob(pixels);
  auto net = borrow();
  cv::Mat out;
  try {
    net->setInput(in);
    out = net->forward().clone();
  } catch (const cv::Exception& ex) {
    give_back(std::move(net));
    throw Error(ErrorKind::Format, id_, std::string("embedding failed: ") + ex.what());
  }
  give_back(std::move(net));
  std::vector<float> v(out.ptr<float>(), out.ptr<float>() + out.total());
  double n2 = 0;
  for (float x : v) n2 += static_cast<double>(x) * x;
  const float inv = n2 > 0 ? static_cast<float>(1.0 / std::sqrt(n2)) : 0.f;
  for (float& x : v) x *= inv;
  return v;
}

fs::path default_model_path(const std::string& file_name) {
  const bool plain = !file_name.empty() && file_name.size() <= 128 && file_name.front() != '.' &&
                     std::all_of(file_name.begin(), file_name.end(), [](unsigned char c) {
                       return std::isalnum(c) || c == '.' || c == '_' || c == '-';
                     });
  if (!plain) return {};
  if (const char* env = std::getenv("HASHWALL_MODEL");
      env && *env && (file_name == kDefaultModel || fs::path(env).filename() == file_name))
    return env;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  const fs::path name = file_name;
  fs::path dir = exe.parent_path();
  for (int up = 0; up < 4 && !dir.empty(); ++up, dir = dir.parent_path()) {
    for (const fs::path& cand :
         {dir / "models" / name, dir / "share" / "hashwall" / "models" / name})
      if (fs::exists(cand, ec)) return cand;
    if (dir == dir.root_path()) break;
  }
  return {};
}

bool same_model(const std::string& bank_model_id, const Embedder& e) {
  const auto at = bank_model_id.rfind('@');
  const std::string sha = at == std::string::npos ? bank_model_id : bank_model_id.substr(at + 1);
  return sha == e.sha256();
}

}  // namespace hashwall
