#include "local/local_index.hpp"

#include <faiss/IndexBinaryFlat.h>
#include <faiss/IndexBinaryHNSW.h>
#include <faiss/IndexBinaryIVF.h>
#include <faiss/invlists/InvertedLists.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/file.hpp"
#include "core/popcount.hpp"

namespace hashwall {

namespace {

using faiss_idx = faiss::Index::idx_t;

// IVF lists: a query descriptor compares with the centroids (through an HNSW graph when
// there are many) and then with the rows of nprobe lists, so nlist ~ sqrt(nprobe x rows)
// balances the two; a power of two, capped.
std::size_t nlist_for(std::size_t rows, int nprobe) {
  const double target =
      std::sqrt(static_cast<double>(std::max(1, nprobe)) * static_cast<double>(rows));
  std::size_t n = 64;
  while (n * 2 <= target * 1.4 && n < 16384) n *= 2;
  return n;
}

constexpr std::size_t kHnswQuantizerFrom = 4096;  // lists; fewer are scanned exhaustively
// HNSW breadth when assigning bank rows to lists (one nearest list each): a wrong list
// now and then costs little, and adding millions of rows is the slow part of a build.
constexpr int kAddEf = 16;

}  // namespace

LocalIndex::LocalIndex(LocalIndexParams params) : params_(params) { (void)popcount_native(); }
LocalIndex::~LocalIndex() = default;

void LocalIndex::add(std::int64_t id, LocalFeatures f) {
  Stored s;
  s.first_row = row_entry_.size();
  s.points = std::move(f.points);
  s.width = f.width;
  s.height = f.height;
  const std::size_t n = s.points.size();
  if (f.descriptors.rows != static_cast<int>(n) || (n > 0 && f.descriptors.cols != kOrbBytes))
    return;
  const cv::Mat d = f.descriptors.isContinuous() ? f.descriptors : f.descriptors.clone();
  codes_.insert(codes_.end(), d.data, d.data + n * kOrbBytes);
  row_entry_.insert(row_entry_.end(), n, id);
  stored_[id] = std::move(s);
}

std::string LocalIndex::type() const {
  if (rows() < params_.ivf_min_rows) return "flat";
  return "ivf" + std::to_string(nlist_for(rows(), params_.nprobe));
}

std::size_t LocalIndex::memory_bytes() const {
  std::size_t b = codes_.capacity() + row_entry_.capacity() * sizeof(std::int64_t);
  for (const auto& [id, s] : stored_)
    b += sizeof(s) + 32 + s.points.capacity() * sizeof(cv::Point2f);
  // The FAISS index holds a second copy of the codes (and, for IVF, an id per row).
  b += indexed_rows_ * kOrbBytes;
  if (dynamic_cast<const faiss::IndexBinaryIVF*>(index_.get()))
    b += indexed_rows_ * sizeof(faiss_idx);
  return b;
}

void LocalIndex::set_hnsw_ef(int ef) const {
  if (auto* hnsw = dynamic_cast<faiss::IndexBinaryHNSW*>(quantizer_.get()))
    hnsw->hnsw.efSearch = ef;
}

void LocalIndex::prepare() const {
  const bool want_ivf = rows() >= params_.ivf_min_rows;
  const bool is_ivf = dynamic_cast<const faiss::IndexBinaryIVF*>(index_.get()) != nullptr;
  if (index_ && want_ivf == is_ivf) {
    // Same kind: append what was added since (an IVF keeps its centroids; they were drawn
    // from the rows it was built with, which is fine while the bank grows by less than
    // the factor that would change nlist).
    if (indexed_rows_ < rows()) {
      set_hnsw_ef(kAddEf);
      index_->add(static_cast<faiss_idx>(rows() - indexed_rows_),
                  codes_.data() + indexed_rows_ * kOrbBytes);
      set_hnsw_ef(std::max(32, 2 * params_.nprobe));
      indexed_rows_ = rows();
    }
    if (!want_ivf || nlist_for(rows(), params_.nprobe) ==
                         static_cast<const faiss::IndexBinaryIVF*>(index_.get())->nlist)
      return;
  }
  index_.reset();
  quantizer_.reset();
  centroids_.clear();
  indexed_rows_ = 0;
  const int dbits = kOrbBytes * 8;
  if (!want_ivf) {
    auto flat = std::make_unique<faiss::IndexBinaryFlat>(dbits);
    index_ = std::move(flat);
  } else {
    // Centroids are descriptors drawn at random from the bank (seeded): binary k-means
    // (FAISS trains it in float, 256-d) costs minutes at millions of rows for little
    // gain in a coarse quantizer whose only job is to split the rows into lists.
    const std::size_t nlist = nlist_for(rows(), params_.nprobe);
    std::vector<std::size_t> pick(rows());
    for (std::size_t i = 0; i < pick.size(); ++i) pick[i] = i;
    std::mt19937_64 rng(0x6c6f63616cull);
    for (std::size_t i = 0; i < nlist; ++i) {
      std::uniform_int_distribution<std::size_t> u(i, pick.size() - 1);
      std::swap(pick[i], pick[u(rng)]);
    }
    std::vector<std::uint8_t> cent(nlist * kOrbBytes);
    for (std::size_t i = 0; i < nlist; ++i)
      std::memcpy(cent.data() + i * kOrbBytes, codes_.data() + pick[i] * kOrbBytes, kOrbBytes);
    make_ivf(nlist, cent);
  }
  set_hnsw_ef(kAddEf);
  if (rows() > 0) index_->add(static_cast<faiss_idx>(rows()), codes_.data());
  set_hnsw_ef(std::max(32, 2 * params_.nprobe));
  indexed_rows_ = rows();
}

void LocalIndex::make_ivf(std::size_t nlist, const std::vector<std::uint8_t>& cent) const {
  const int dbits = kOrbBytes * 8;
  index_.reset();  // it may point at the quantizer about to be replaced
  // Many lists: the centroids go into an HNSW graph, so assigning millions of rows (and
  // each query descriptor) costs a graph walk rather than nlist comparisons.
  if (nlist >= kHnswQuantizerFrom) {
    quantizer_ = std::make_unique<faiss::IndexBinaryHNSW>(dbits, 16);
  } else {
    quantizer_ = std::make_unique<faiss::IndexBinaryFlat>(dbits);
  }
  quantizer_->add(static_cast<faiss_idx>(nlist), cent.data());
  auto ivf = std::make_unique<faiss::IndexBinaryIVF>(quantizer_.get(), dbits, nlist);
  ivf->is_trained = true;
  ivf->nprobe = static_cast<std::size_t>(std::max(1, params_.nprobe));
  index_ = std::move(ivf);
  centroids_ = cent;
}

// Layout bytes: "HWLL", u32 nlist, nlist x kOrbBytes centroids, u64 rows, then each
// row's list as u16 (nlist <= 16384), all little-endian.
std::string LocalIndex::layout() const {
  const auto* ivf = dynamic_cast<const faiss::IndexBinaryIVF*>(index_.get());
  if (!ivf || indexed_rows_ != rows()) return {};
  std::vector<std::uint16_t> list_of(rows(), 0);
  for (std::size_t l = 0; l < ivf->nlist; ++l) {
    const std::size_t n = ivf->invlists->list_size(l);
    faiss::InvertedLists::ScopedIds ids(ivf->invlists, l);
    for (std::size_t k = 0; k < n; ++k) {
      const auto row = static_cast<std::size_t>(ids[k]);
      if (row < list_of.size()) list_of[row] = static_cast<std::uint16_t>(l);
    }
  }
  std::string out = "HWLL";
  put_le(out, ivf->nlist, 4);
  out.append(reinterpret_cast<const char*>(centroids_.data()), centroids_.size());
  put_le(out, rows(), 8);
  for (const std::uint16_t l : list_of) put_le(out, l, 2);
  return out;
}

std::string LocalIndex::layout_mismatch(std::string_view b, std::size_t rows,
                                        const LocalIndexParams& params) {
  const auto get = [&](std::size_t at, int bytes) { return get_le(b.data() + at, bytes); };
  if (rows < params.ivf_min_rows) return "the bank has too few descriptor rows for an IVF layout";
  if (b.size() < 8 || b.substr(0, 4) != "HWLL") return "not a layout (wrong magic)";
  const std::size_t nlist = get(4, 4);
  if (nlist != nlist_for(rows, params.nprobe))
    return std::to_string(nlist) + " lists where " + std::to_string(rows) + " rows get " +
           std::to_string(nlist_for(rows, params.nprobe));
  const std::size_t cent_end = 8 + nlist * kOrbBytes;
  if (b.size() != cent_end + 8 + rows * 2 || get(cent_end, 8) != rows)
    return "laid out for another number of rows than the bank's " + std::to_string(rows);
  const char* lists = b.data() + cent_end + 8;
  for (std::size_t r = 0; r < rows; ++r)
    if (get_le(lists + 2 * r, 2) >= nlist)
      return "row " + std::to_string(r) + " is in a list that does not exist";
  return {};
}

bool LocalIndex::restore_layout(std::string_view b) {
  if (!layout_mismatch(b, rows(), params_).empty()) return false;
  const std::size_t nlist = get_le(b.data() + 4, 4);
  const std::size_t cent_end = 8 + nlist * kOrbBytes;
  const char* lists = b.data() + cent_end + 8;
  std::vector<std::size_t> count(nlist, 0);  // list numbers are in range: layout_mismatch checked
  for (std::size_t r = 0; r < rows(); ++r) ++count[get_le(lists + 2 * r, 2)];
  std::vector<std::uint8_t> cent(b.begin() + 8, b.begin() + static_cast<std::ptrdiff_t>(cent_end));
  make_ivf(nlist, cent);
  auto* ivf = static_cast<faiss::IndexBinaryIVF*>(index_.get());
  // Rows grouped by list, in row order within a list, as IndexBinaryIVF::add leaves them.
  std::vector<std::vector<faiss_idx>> ids(nlist);
  for (std::size_t l = 0; l < nlist; ++l) ids[l].reserve(count[l]);
  for (std::size_t r = 0; r < rows(); ++r)
    ids[get_le(lists + 2 * r, 2)].push_back(static_cast<faiss_idx>(r));
  std::vector<std::uint8_t> codes;
  for (std::size_t l = 0; l < nlist; ++l) {
    if (ids[l].empty()) continue;
    codes.resize(ids[l].size() * kOrbBytes);
    for (std::size_t k = 0; k < ids[l].size(); ++k)
      std::memcpy(codes.data() + k * kOrbBytes,
                  codes_.data() + static_cast<std::size_t>(ids[l][k]) * kOrbBytes, kOrbBytes);
    ivf->invlists->add_entries(l, ids[l].size(), ids[l].data(), codes.data());
  }
  ivf->ntotal = static_cast<faiss_idx>(rows());
  set_hnsw_ef(std::max(32, 2 * params_.nprobe));
  indexed_rows_ = rows();
  return true;
}

std::vector<LocalCandidate> LocalIndex::candidates(const LocalFeatures& query) const {
  std::vector<LocalCandidate> out;
  if (query.size() == 0 || rows() == 0) return out;
  prepare();
  cv::Mat q = query.descriptors.isContinuous() ? query.descriptors : query.descriptors.clone();
  const bool ivf = dynamic_cast<const faiss::IndexBinaryIVF*>(index_.get()) != nullptr;
  const auto limit = static_cast<std::size_t>(std::max(1, params_.retrieval_descriptors));
  if (ivf && query.size() > limit) {
    cv::Mat sub(static_cast<int>(limit), kOrbBytes, CV_8U);
    for (std::size_t i = 0; i < limit; ++i)
      q.row(static_cast<int>(i * query.size() / limit)).copyTo(sub.row(static_cast<int>(i)));
    q = sub;
  }
  const auto nq = static_cast<faiss_idx>(q.rows);
  const int k = std::max(1, params_.neighbours);
  std::vector<std::int32_t> dist(static_cast<std::size_t>(nq) * static_cast<std::size_t>(k));
  std::vector<faiss_idx> lab(dist.size());
  // One thread: hashwall parallelises over files and requests; FAISS's own OpenMP team
  // on top of that oversubscribes the cores and spins (measured: half the CPU time of a
  // scan went to libgomp's wait loop). Affects only this thread's later parallel regions.
  if (omp_get_max_threads() > 1) omp_set_num_threads(1);
  index_->search(nq, q.data, k, dist.data(), lab.data());

  std::unordered_map<std::int64_t, int> votes;
  std::vector<std::int64_t> seen;
  for (faiss_idx i = 0; i < nq; ++i) {
    seen.clear();
    for (int j = 0; j < k; ++j) {
      const std::size_t at =
          static_cast<std::size_t>(i) * static_cast<std::size_t>(k) + static_cast<std::size_t>(j);
      if (lab[at] < 0 || dist[at] > params_.vote_distance) continue;
      const std::int64_t id = row_entry_[static_cast<std::size_t>(lab[at])];
      // One vote per query descriptor and entry.
      if (std::find(seen.begin(), seen.end(), id) != seen.end()) continue;
      seen.push_back(id);
      ++votes[id];
    }
  }
  for (const auto& [id, v] : votes)
    if (v >= params_.min_votes) out.push_back({id, v});
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.votes > b.votes || (a.votes == b.votes && a.id < b.id);
  });
  if (out.size() > static_cast<std::size_t>(std::max(0, params_.max_candidates)))
    out.resize(static_cast<std::size_t>(std::max(0, params_.max_candidates)));
  return out;
}

std::optional<LocalFeatures> LocalIndex::features(std::int64_t id) const {
  const auto it = stored_.find(id);
  if (it == stored_.end()) return std::nullopt;
  const Stored& s = it->second;
  LocalFeatures f;
  f.points = s.points;
  f.width = s.width;
  f.height = s.height;
  f.descriptors = cv::Mat(static_cast<int>(s.points.size()), kOrbBytes, CV_8U,
                          const_cast<std::uint8_t*>(codes_.data() + s.first_row * kOrbBytes));
  return f;
}

std::vector<LocalMatch> LocalIndex::search(const LocalFeatures& query,
                                           const LocalVerifyParams& params) const {
  std::vector<LocalMatch> out;
  for (const LocalCandidate& c : candidates(query)) {
    const auto f = features(c.id);
    if (!f) continue;
    out.push_back({c.id, c.votes, verify_local(query, *f, params)});
  }
  std::sort(out.begin(), out.end(), [](const LocalMatch& a, const LocalMatch& b) {
    return a.verification.inliers != b.verification.inliers
               ? a.verification.inliers > b.verification.inliers
               : a.id < b.id;
  });
  return out;
}

}  // namespace hashwall
