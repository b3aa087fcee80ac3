// `hashwall bench speed`, the signals beyond PDQ: what ORB extraction and the embedding
// network cost per photo, and what a local-feature query costs against banks of 1k-100k
// entries.
//
// The local-feature banks are synthetic, built from real descriptors: the corpus is split
// into planted photos (indexed for real; an edited copy of each is queried and must be
// found), unrelated photos (queried; must not match) and a pool whose ORB descriptors fill
// the other entries (each filler entry: 256 descriptors drawn from the pool with about 16
// of their 256 bits flipped, at random positions). Fillers thus look like real descriptors
// to the FAISS index and the vote, but are never geometrically consistent, as unrelated
// photos are not.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <opencv2/core/utility.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>

#include "bench/speed.hpp"
#include "bench/timing.hpp"
#include "core/error.hpp"
#include "embed/embedder.hpp"
#include "image/load.hpp"
#include "local/local_features.hpp"
#include "local/local_signal.hpp"

namespace hashwall::bench {

namespace {

cv::Mat load_pixels(const std::filesystem::path& f) {
  LoadOptions o;
  o.detail_min_side = LocalParams{}.min_decode_side;
  LoadedImage img = load_image(f, o);
  return img.detail.empty() ? img.pixels : img.detail;
}

// The copy that is searched for: centre crop keeping 70 % of each side, under a white
// caption bar a quarter of its height, re-encoded as JPEG 80.
cv::Mat edited_copy(const cv::Mat& photo) {
  const int w = std::max(1, photo.cols * 7 / 10), h = std::max(1, photo.rows * 7 / 10);
  const cv::Mat crop = photo(cv::Rect((photo.cols - w) / 2, (photo.rows - h) / 2, w, h));
  cv::Mat out(h + h / 4, w, photo.type(), cv::Scalar::all(255));
  crop.copyTo(out(cv::Rect(0, h / 4, w, h)));
  cv::putText(out, "SEEN THIS?", cv::Point(w / 20, h / 6), cv::FONT_HERSHEY_DUPLEX,
              std::max(0.5, w / 600.0), cv::Scalar::all(0), 2);
  std::vector<std::uint8_t> jpg;
  cv::imencode(".jpg", out, jpg, {cv::IMWRITE_JPEG_QUALITY, 80});
  return cv::imdecode(jpg, cv::IMREAD_UNCHANGED);
}

// What the local signal computes from these pixels, as `index` and `query` call it.
LoadedImage image_of(const cv::Mat& pixels) {
  LoadedImage img;
  img.pixels = pixels;
  img.width = pixels.cols;
  img.height = pixels.rows;
  return img;
}

// The local signal's own search (the mirror image only when the photo as given matched
// nothing, as the matcher asks for it): the matched entry ids.
std::vector<std::int64_t> local_search(const SignalIndex& idx, const SignalQuery& q,
                                       const SignalParams& decision) {
  std::vector<std::int64_t> matched;
  for (const SignalMatch& m : idx.search(q, decision, 0.0, 10))
    if (m.margin >= 0) matched.push_back(m.id);
  return matched;
}

}  // namespace

void time_signals(const SpeedOptions& o, SpeedReport& rep) {
  const LocalParams lp;
  const LocalSignal sig(lp);
  std::vector<std::filesystem::path> all;
  {
    OneThread one;
    for (const auto& set : o.hash_sets) {
      if (o.progress) o.progress("signal costs on " + set.label);
      SignalCost c;
      c.label = set.label;
      double le = 0, lq = 0, em = 0, kp = 0;
      for (const auto& f : set.files) {
        all.push_back(f);
        if (c.files >= o.signal_photos) continue;
        check_stop(o.stop);
        cv::Mat px;
        try {
          px = load_pixels(f);
        } catch (const Error&) {
          continue;
        }
        const LoadedImage img = image_of(px);
        auto t0 = Clock::now();
        const auto e = sig.compute(img);
        le += ms_since(t0);
        kp += e ? static_cast<double>(sig.record_items(*e)) : 0.0;
        t0 = Clock::now();
        (void)sig.compute_query(img);
        lq += ms_since(t0);
        if (o.embedder) {
          t0 = Clock::now();
          (void)o.embedder->embed(px);
          em += ms_since(t0);
        }
        ++c.files;
      }
      if (c.files == 0) continue;
      const double n = c.files;
      c.local_entry_ms = le / n;
      c.local_query_ms = lq / n;
      c.embed_ms = em / n;
      c.local_keypoints = kp / n;
      rep.signal_costs.push_back(c);
    }
  }
  if (o.local_sizes.empty()) return;
  std::sort(all.begin(), all.end());
  all.erase(std::unique(all.begin(), all.end()), all.end());
  if (all.size() < 40) {
    rep.notes.push_back(
        "local-feature search not timed: it needs at least 40 corpus photos (planted, unrelated, "
        "descriptor pool); " +
        std::to_string(all.size()) + " given");
    return;
  }
  // Seeded split: planted, unrelated, pool.
  std::mt19937_64 rng(o.seed * 104729 + 17);
  std::shuffle(all.begin(), all.end(), rng);
  const std::size_t n_planted = std::min<std::size_t>(50, all.size() / 4);
  const std::size_t n_unrelated = n_planted;
  const std::size_t n_pool = std::min<std::size_t>(400, all.size() - n_planted - n_unrelated);

  if (o.progress) o.progress("local features of the planted, unrelated and pool photos");
  std::vector<SignalRecord> planted;
  std::vector<SignalQuery> copies, unrelated;
  std::vector<double> extract;
  std::vector<std::uint8_t> pool;  // descriptors, row-major
  for (std::size_t i = 0; i < n_planted + n_unrelated + n_pool; ++i) {
    check_stop(o.stop);
    cv::Mat px;
    try {
      px = load_pixels(all[i]);
    } catch (const Error&) {
      continue;
    }
    if (i < n_planted) {
      planted.push_back(sig.compute(image_of(px)).value_or(local_record(LocalFeatures{})));
      const cv::Mat copy = edited_copy(px);
      OneThread one;
      const auto t0 = Clock::now();
      copies.push_back(sig.compute_query(image_of(copy)));
      extract.push_back(ms_since(t0));
    } else if (i < n_planted + n_unrelated) {
      unrelated.push_back(sig.compute_query(image_of(px)));
    } else if (const auto r = sig.compute(image_of(px))) {
      const LocalFeatures f = decode_local_record(*r, all[i].string());
      if (f.size() > 0)
        pool.insert(pool.end(), f.descriptors.data, f.descriptors.data + f.size() * kOrbBytes);
    }
  }
  const std::size_t pool_rows = pool.size() / kOrbBytes;
  if (planted.empty() || pool_rows < 1000) {
    rep.notes.push_back("local-feature search not timed: too few readable photos with keypoints");
    return;
  }
  double blob = 0;
  for (const auto& r : planted) blob += static_cast<double>(r.size());
  blob /= static_cast<double>(planted.size());

  const SignalParams decision = sig.decision_defaults();
  for (const std::int64_t size : o.local_sizes) {
    check_stop(o.stop);
    LocalTiming t;
    t.size = size;
    t.blob_bytes_per_entry = blob;
    const std::uint64_t need = static_cast<std::uint64_t>(size) * 24'000;
    const std::uint64_t avail = available_memory_bytes();
    if (avail && need > avail / 2) {
      t.skipped = "needs about " + std::to_string(need >> 20) + " MiB, more than half of the " +
                  std::to_string(avail >> 20) + " MiB available";
      rep.local.push_back(t);
      continue;
    }
    if (o.progress) o.progress("local-feature index of " + std::to_string(size) + " entries");
    // The local signal's index, as a bank builds it from its records.
    const auto idx = sig.make_index();
    // Planted photos get ids 1..P; fillers follow.
    for (std::size_t k = 0; k < planted.size(); ++k)
      idx->add(static_cast<std::int64_t>(k + 1), planted[k]);
    std::mt19937_64 frng(o.seed * 7 + static_cast<std::uint64_t>(size));
    std::uniform_real_distribution<float> unit(0.f, 1.f);
    for (std::int64_t id = static_cast<std::int64_t>(planted.size()) + 1; id <= size; ++id) {
      if (id % 4096 == 0) check_stop(o.stop);
      LocalFeatures f;
      f.width = 640;
      f.height = 480;
      f.descriptors = cv::Mat(lp.entry_keypoints, kOrbBytes, CV_8U);
      f.points.resize(static_cast<std::size_t>(lp.entry_keypoints));
      for (int r = 0; r < lp.entry_keypoints; ++r) {
        const std::uint8_t* src = pool.data() + (frng() % pool_rows) * kOrbBytes;
        std::uint64_t* dst = reinterpret_cast<std::uint64_t*>(f.descriptors.ptr(r));
        for (int w = 0; w < kOrbBytes / 8; ++w) {
          std::uint64_t v;
          std::memcpy(&v, src + 8 * w, 8);
          dst[w] = v ^ (frng() & frng() & frng() & frng());  // each bit flipped with p = 1/16
        }
        f.points[static_cast<std::size_t>(r)] = {unit(frng), unit(frng)};
      }
      idx->add(id, local_record(f));
    }
    {
      const auto t0 = Clock::now();
      idx->prepare();  // all threads, as a bank builds it
      t.build_s = ms_since(t0) / 1000.0;
    }
    t.index_type = idx->type();
    t.memory_bytes_per_entry = static_cast<double>(idx->memory_bytes()) / static_cast<double>(size);

    OneThread one;
    std::vector<double> copy_ms, unrel_ms;
    const auto start = Clock::now();
    const std::size_t rounds = std::max(copies.size(), unrelated.size());
    for (std::size_t k = 0; k < rounds; ++k) {
      check_stop(o.stop);
      if (k >= 5 && ms_since(start) > 1000 * o.max_seconds_per_case * 4) break;
      if (k < copies.size()) {
        auto t0 = Clock::now();
        const auto m = local_search(*idx, copies[k], decision);
        copy_ms.push_back(ms_since(t0));
        ++t.planted;
        if (std::find(m.begin(), m.end(), static_cast<std::int64_t>(k + 1)) != m.end())
          ++t.planted_found;
      }
      if (k < unrelated.size()) {
        auto t0 = Clock::now();
        const auto m = local_search(*idx, unrelated[k], decision);
        unrel_ms.push_back(ms_since(t0));
        ++t.unrelated;
        if (!m.empty()) ++t.false_matches;
      }
    }
    t.samples = static_cast<int>(copy_ms.size() + unrel_ms.size());
    t.copy_p50_ms = percentile(copy_ms, 0.5);
    t.copy_p99_ms = percentile(copy_ms, 0.99);
    t.unrelated_p50_ms = percentile(unrel_ms, 0.5);
    t.unrelated_p99_ms = percentile(unrel_ms, 0.99);
    t.extract_ms = percentile(extract, 0.5);
    rep.local.push_back(t);
  }
}

}  // namespace hashwall::bench
