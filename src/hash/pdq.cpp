// PDQ from Meta's published algorithm. Every step mirrors the reference C++ hasher's
// arithmetic (float buffers, evaluation order, integer truncations) because the hashes
// must match its output bit for bit; this file is built with -ffp-contract=off.
#include "hash/pdq.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <opencv2/imgproc.hpp>

namespace hashwall {

namespace {

constexpr int kDownsample = 512;  // reference hasher's pre-resize bound
constexpr int kBuf = 64;          // decimated size
constexpr int kDct = 16;          // hash is 16x16 bits
constexpr int kJaroszPasses = 2;  // PDQ_NUM_JAROSZ_XY_PASSES (jarosz_sampled spells out both)

// Rec. 601 luma weights as single-precision constants, as in the reference.
constexpr float kLumaR = 0.299f, kLumaG = 0.587f, kLumaB = 0.114f;

// Window so that two box passes approximate a tent filter the size of one output
// pixel: ceil(old / (2 * new)).
int jarosz_window(int old_dim, int new_dim) { return (old_dim + 2 * new_dim - 1) / (2 * new_dim); }

// One box-filter pass along many lines ("lanes") in lockstep. Per lane it is the
// reference's box1DFloat: four phases keep the window centred and shrink it at both ends,
// and the division by the running window size is part of the hash. All lanes share the
// window size and do their operations in the reference's order, so the result is
// bit-identical to filtering the lanes one by one, but the lanes' running
// sums are independent chains the CPU can overlap, and columns are read row by row
// instead of one cache line per pixel. Lane l, step k is at l * lane_stride + k * step.
// `want`, when given, marks the steps whose output is used: the running sums still see
// every step (their float rounding depends on it), but the division and the store are
// skipped elsewhere. Lanes are independent, so filtering a subset of them is exact too.
void box_lanes(const float* in, float* out, int lanes, int steps, std::ptrdiff_t lane_stride,
               std::ptrdiff_t step, int window, std::vector<float>& sum,
               const std::uint8_t* want = nullptr) {
  const int half = (window + 2) / 2;
  const int phase1 = half - 1;
  const int phase2 = window - half + 1;
  const int phase3 = steps - window;
  const int phase4 = half - 1;
  sum.assign(static_cast<std::size_t>(lanes), 0.0f);
  float* s = sum.data();
  std::ptrdiff_t li = 0, ri = 0, oi = 0;
  int k = 0;  // output step
  float current = 0.0f;
  for (int i = 0; i < phase1; ++i, ri += step) {
    for (int l = 0; l < lanes; ++l) s[l] += in[ri + l * lane_stride];
    current++;
  }
  for (int i = 0; i < phase2; ++i, ri += step, oi += step, ++k) {
    current++;
    if (want && !want[k]) {
      for (int l = 0; l < lanes; ++l) s[l] += in[ri + l * lane_stride];
      continue;
    }
    for (int l = 0; l < lanes; ++l) {
      s[l] += in[ri + l * lane_stride];
      out[oi + l * lane_stride] = s[l] / current;
    }
  }
  for (int i = 0; i < phase3; ++i, li += step, ri += step, oi += step, ++k) {
    if (want && !want[k]) {
      for (int l = 0; l < lanes; ++l) {
        s[l] += in[ri + l * lane_stride];
        s[l] -= in[li + l * lane_stride];
      }
      continue;
    }
    for (int l = 0; l < lanes; ++l) {
      s[l] += in[ri + l * lane_stride];
      s[l] -= in[li + l * lane_stride];
      out[oi + l * lane_stride] = s[l] / current;
    }
  }
  for (int i = 0; i < phase4; ++i, li += step, oi += step, ++k) {
    current--;
    if (want && !want[k]) {
      for (int l = 0; l < lanes; ++l) s[l] -= in[li + l * lane_stride];
      continue;
    }
    for (int l = 0; l < lanes; ++l) {
      s[l] -= in[li + l * lane_stride];
      out[oi + l * lane_stride] = s[l] / current;
    }
  }
}

// The centres of a 64-sample grid along a side of n pixels.
int sample_at(int i, int n) { return static_cast<int>(((i + 0.5) * n) / kBuf); }

// The reference's Jarosz filter (two box passes along rows, then down columns, twice)
// followed by sampling the 64x64 grid, into `out`. Only the grid is ever read, so the
// last row pass divides and stores at the 64 sampled columns only, and the last column
// pass runs on those columns only and keeps the sampled rows: bit-identical to filtering
// the whole image (the sums see every pixel in the reference's order), at about half the
// work. `a` is overwritten; `b` is scratch of the same size.
void jarosz_sampled(float* a, float* b, int rows, int cols, float out[kBuf][kBuf]) {
  static_assert(kJaroszPasses == 2);
  const int win_along_rows = jarosz_window(cols, kBuf), win_along_cols = jarosz_window(rows, kBuf);
  std::vector<float> sums;
  std::vector<std::uint8_t> want_col(static_cast<std::size_t>(cols), 0),
      want_row(static_cast<std::size_t>(rows), 0);
  int col_at[kBuf], row_at[kBuf];
  for (int i = 0; i < kBuf; ++i) {
    col_at[i] = sample_at(i, cols);
    row_at[i] = sample_at(i, rows);
    want_col[static_cast<std::size_t>(col_at[i])] = 1;
    want_row[static_cast<std::size_t>(row_at[i])] = 1;
  }
  // Filtering along rows reads one pixel of each row per step (a strided walk); on the
  // transposed plane the same filter reads contiguous lanes and vectorises. Transposing
  // moves values without touching them, so every sum is the reference's.
  thread_local std::vector<float> t;
  t.resize(static_cast<std::size_t>(rows) * cols);
  const cv::Mat A(rows, cols, CV_32F, a), B(rows, cols, CV_32F, b);
  cv::Mat T(cols, rows, CV_32F, t.data());
  // Pass 1 along rows (on the transposed plane, into b's memory as cols x rows), then down
  // columns.
  cv::transpose(A, T);
  box_lanes(t.data(), b, rows, cols, 1, rows, win_along_rows, sums);
  cv::Mat BT(cols, rows, CV_32F, b);
  cv::transpose(BT, A);
  box_lanes(a, b, cols, rows, 1, cols, win_along_cols, sums);
  // Pass 2 along rows, transposed again: outputs at the sampled columns only. Row c of the
  // result is column c of the image.
  cv::transpose(B, T);
  box_lanes(t.data(), a, rows, cols, 1, rows, win_along_rows, sums, want_col.data());
  // Pass 2 down the 64 sampled columns (gathered side by side), outputs at sampled rows.
  std::vector<float> gathered(static_cast<std::size_t>(rows) * kBuf), filtered(gathered.size());
  for (int j = 0; j < kBuf; ++j) {
    const float* col = a + static_cast<std::size_t>(col_at[j]) * rows;
    for (int r = 0; r < rows; ++r) gathered[static_cast<std::size_t>(r) * kBuf + j] = col[r];
  }
  box_lanes(gathered.data(), filtered.data(), kBuf, rows, 1, kBuf, win_along_cols, sums,
            want_row.data());
  for (int i = 0; i < kBuf; ++i)
    for (int j = 0; j < kBuf; ++j)
      out[i][j] = filtered[static_cast<std::size_t>(row_at[i]) * kBuf + j];
}

// Sum of absolute neighbour differences on a 0..100 scale; featureless images score low.
int quality_metric(const float b[kBuf][kBuf]) {
  int gradient_sum = 0;
  for (int i = 0; i < kBuf - 1; ++i)
    for (int j = 0; j < kBuf; ++j) {
      const float u = b[i][j], v = b[i + 1][j];
      const int d = static_cast<int>(((u - v) * 100) / 255);
      gradient_sum += std::abs(d);
    }
  for (int i = 0; i < kBuf; ++i)
    for (int j = 0; j < kBuf - 1; ++j) {
      const float u = b[i][j], v = b[i][j + 1];
      const int d = static_cast<int>(((u - v) * 100) / 255);
      gradient_sum += std::abs(d);
    }
  return std::min(gradient_sum / 90, 100);
}

// DCT-II basis rows 1..16 (row 0, the DC term, is skipped), scaled by sqrt(2/64).
const float (&dct_matrix())[kDct][kBuf] {
  static const auto matrix = [] {
    struct M {
      float d[kDct][kBuf];
    } m{};
    const double scale = std::sqrt(2.0 / kBuf);
    for (int i = 0; i < kDct; ++i)
      for (int j = 0; j < kBuf; ++j)
        m.d[i][j] = static_cast<float>(scale * std::cos((M_PI / 2 / kBuf) * (i + 1) * (2 * j + 1)));
    return m;
  }();
  return matrix.d;
}

// B = D A D^T, in two float passes as the reference computes it.
void dct_64_to_16(const float a[kBuf][kBuf], float b[kDct][kDct]) {
  const auto& d = dct_matrix();
  float t[kDct][kBuf];
  for (int i = 0; i < kDct; ++i)
    for (int j = 0; j < kBuf; ++j) {
      float sum = 0.0f;
      for (int k = 0; k < kBuf; ++k) sum += d[i][k] * a[k][j];
      t[i][j] = sum;
    }
  for (int i = 0; i < kDct; ++i)
    for (int j = 0; j < kDct; ++j) {
      float sum = 0.0f;
      for (int k = 0; k < kBuf; ++k) sum += t[i][k] * d[j][k];
      b[i][j] = sum;
    }
}

// Bit k = (row * 16 + col) is set when that coefficient exceeds the median. The
// reference's Torben median of 256 values is the lower median (128th smallest).
Hash256 to_bits(const float b[kDct][kDct]) {
  std::array<float, kDct * kDct> v;
  for (int i = 0; i < kDct; ++i)
    for (int j = 0; j < kDct; ++j) v[i * kDct + j] = b[i][j];
  std::nth_element(v.begin(), v.begin() + 127, v.end());
  const float median = v[127];
  Hash256 h;
  for (int i = 0; i < kDct; ++i)
    for (int j = 0; j < kDct; ++j)
      if (b[i][j] > median) h.set_bit(i * kDct + j);
  return h;
}

// A dihedral transform of the image maps DCT coefficient (i, j), frequency (i+1, j+1),
// to +-(i, j) or +-(j, i): a flip along an axis negates odd-frequency (even-index)
// terms along it; a transpose swaps the indices.
void dihedral_dct(Dihedral t, const float a[kDct][kDct], float b[kDct][kDct]) {
  for (int i = 0; i < kDct; ++i)
    for (int j = 0; j < kDct; ++j) {
      const float v = a[i][j];
      switch (t) {
        case Dihedral::Original:
          b[i][j] = v;
          break;
        case Dihedral::Rotate90:
          b[j][i] = (j & 1) ? v : -v;
          break;
        case Dihedral::Rotate180:
          b[i][j] = ((i + j) & 1) ? -v : v;
          break;
        case Dihedral::Rotate270:
          b[j][i] = (i & 1) ? v : -v;
          break;
        case Dihedral::FlipX:
          b[i][j] = (i & 1) ? v : -v;
          break;
        case Dihedral::FlipY:
          b[i][j] = (j & 1) ? v : -v;
          break;
        case Dihedral::FlipPlus1:
          b[j][i] = v;
          break;
        case Dihedral::FlipMinus1:
          b[j][i] = ((i + j) & 1) ? -v : v;
          break;
      }
    }
}

// CImg's nearest-neighbour resize: output x takes source floor(x * src / dst).
cv::Mat cimg_nearest_resize(const cv::Mat& src, int dst_w, int dst_h) {
  cv::Mat dst(dst_h, dst_w, src.type());
  const std::size_t px = src.elemSize();
  std::vector<int> sx(dst_w);
  for (int x = 0; x < dst_w; ++x)
    sx[x] = static_cast<int>(static_cast<std::uint64_t>(x) * src.cols / dst_w);
  for (int y = 0; y < dst_h; ++y) {
    const int sy = static_cast<int>(static_cast<std::uint64_t>(y) * src.rows / dst_h);
    const std::uint8_t* s = src.ptr<std::uint8_t>(sy);
    std::uint8_t* d = dst.ptr<std::uint8_t>(y);
    for (int x = 0; x < dst_w; ++x) std::copy_n(s + sx[x] * px, px, d + x * px);
  }
  return dst;
}

// Each channel's share of the luma as a table: kLumaR * v is the same float product as the
// reference's per pixel (this file is built without fused multiply-add), so the sums,
// added in the reference's order, are bit-identical; three loads instead of three
// conversions and products (a video frame's luma was a quarter of its hashing time).
struct LumaTables {
  float r[256], g[256], b[256];
  LumaTables() {
    for (int v = 0; v < 256; ++v) {
      r[v] = kLumaR * static_cast<float>(v);
      g[v] = kLumaG * static_cast<float>(v);
      b[v] = kLumaB * static_cast<float>(v);
    }
  }
};
const LumaTables& luma_tables() {
  static const LumaTables t;
  return t;
}

// Into `luma` (reused between calls: a fresh 0.6-1 MB buffer per photo cost page faults
// comparable to the filtering itself).
void luma_of(const cv::Mat& img, std::vector<float>& luma) {
  CV_Assert(img.depth() == CV_8U && (img.channels() == 1 || img.channels() == 3));
  luma.resize(static_cast<std::size_t>(img.rows) * img.cols);
  float* out = luma.data();
  for (int i = 0; i < img.rows; ++i) {
    const std::uint8_t* p = img.ptr<std::uint8_t>(i);
    if (img.channels() == 1) {
      for (int j = 0; j < img.cols; ++j) *out++ = p[j];
    } else {
      const LumaTables& t = luma_tables();
      for (int j = 0; j < img.cols; ++j, p += 3) *out++ = t.r[p[2]] + t.g[p[1]] + t.b[p[0]];
    }
  }
}

// Per-thread buffers for the luma plane and the filter's scratch plane.
std::vector<float>& luma_buffer() {
  thread_local std::vector<float> b;
  return b;
}

cv::Mat prepare(const cv::Mat& img, PdqPreprocess pre) {
  if (img.cols <= kDownsample && img.rows <= kDownsample) return img;
  if (pre == PdqPreprocess::Reference) return cimg_nearest_resize(img, kDownsample, kDownsample);
  cv::Mat out;
  cv::resize(img, out, cv::Size(kDownsample, kDownsample), 0, 0, cv::INTER_AREA);
  return out;
}

}  // namespace

std::string_view dihedral_name(Dihedral d) noexcept {
  switch (d) {
    case Dihedral::Original:
      return "original";
    case Dihedral::Rotate90:
      return "rotate-90";
    case Dihedral::Rotate180:
      return "rotate-180";
    case Dihedral::Rotate270:
      return "rotate-270";
    case Dihedral::FlipX:
      return "flip-x";
    case Dihedral::FlipY:
      return "flip-y";
    case Dihedral::FlipPlus1:
      return "flip-plus1";
    case Dihedral::FlipMinus1:
      return "flip-minus1";
  }
  return "unknown";
}

PdqDihedralResult pdq_from_luma(std::vector<float>& luma, int rows, int cols, bool dihedral) {
  CV_Assert(rows > 0 && cols > 0 && luma.size() == static_cast<std::size_t>(rows) * cols);
  thread_local std::vector<float> scratch;
  scratch.resize(luma.size());
  float buf64[kBuf][kBuf];
  jarosz_sampled(luma.data(), scratch.data(), rows, cols, buf64);
  PdqDihedralResult r;
  r.quality = quality_metric(buf64);
  float dct[kDct][kDct];
  dct_64_to_16(buf64, dct);
  r.hashes[0] = to_bits(dct);
  if (dihedral) {
    float aux[kDct][kDct];
    for (int t = 1; t < kDihedralCount; ++t) {
      dihedral_dct(static_cast<Dihedral>(t), dct, aux);
      r.hashes[t] = to_bits(aux);
    }
  }
  return r;
}

PdqDihedralResult pdq_hash_dihedral(const cv::Mat& img, PdqPreprocess pre) {
  const cv::Mat prepared = prepare(img, pre);
  std::vector<float>& luma = luma_buffer();
  luma_of(prepared, luma);
  return pdq_from_luma(luma, prepared.rows, prepared.cols, true);
}

PdqResult pdq_hash_rgb24(const std::uint8_t* rgb, int rows, int cols, std::size_t stride) {
  // vpdq/cpp pdqbufferhasher.cpp: MIN_HASHABLE_DIM.
  constexpr int kMinFrameSide = 5;
  if (rows < kMinFrameSide || cols < kMinFrameSide) return {Hash256{}, 0};
  std::vector<float>& luma = luma_buffer();
  luma.resize(static_cast<std::size_t>(rows) * cols);
  float* out = luma.data();
  const LumaTables& t = luma_tables();
  for (int i = 0; i < rows; ++i) {
    const std::uint8_t* p = rgb + static_cast<std::size_t>(i) * stride;
    for (int j = 0; j < cols; ++j, p += 3) *out++ = t.r[p[0]] + t.g[p[1]] + t.b[p[2]];
  }
  const auto r = pdq_from_luma(luma, rows, cols, false);
  return {r.hashes[0], r.quality};
}

PdqResult pdq_hash(const cv::Mat& img, PdqPreprocess pre) {
  const cv::Mat prepared = prepare(img, pre);
  std::vector<float>& luma = luma_buffer();
  luma_of(prepared, luma);
  const auto r = pdq_from_luma(luma, prepared.rows, prepared.cols, false);
  return {r.hashes[0], r.quality};
}

}  // namespace hashwall
