// vPDQ records, files and matching rule (vpdq_record.hpp).
#include "video/vpdq_record.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "core/error.hpp"

namespace hashwall {

namespace {

constexpr char kMagic[4] = {'H', 'W', 'V', 'Q'};
constexpr std::uint8_t kVersion = 1;
constexpr std::size_t kHeader = 4 + 1 + 4 + 4;
constexpr std::size_t kFrameBytes = 32 + 1 + 4 + 4;

void put_u32(std::string& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint32_t get_u32(const char* p) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i)
    v |= static_cast<std::uint32_t>(static_cast<std::uint8_t>(p[i])) << (8 * i);
  return v;
}

// Seconds as whole milliseconds (vPDQ writes timestamps with three decimals).
std::optional<std::uint32_t> to_ms(double s) {
  if (!(s >= 0) || s * 1000.0 > 4294967295.0) return std::nullopt;
  return static_cast<std::uint32_t>(std::llround(s * 1000.0));
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::optional<std::int64_t> to_int(std::string_view s) {
  std::int64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::optional<double> to_seconds(std::string_view s) {
  double v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty() || !(v >= 0) || v > 4294967.0)
    return std::nullopt;
  return v;
}

void sort_by_time(std::vector<VpdqFrame>& frames) {
  std::stable_sort(frames.begin(), frames.end(), [](const VpdqFrame& a, const VpdqFrame& b) {
    return a.timestamp < b.timestamp;
  });
}

// The frames taking part under `min_quality`, one per distinct hash.
std::vector<const VpdqFrame*> unique_frames(const VpdqVideo& v, int min_quality) {
  std::vector<const VpdqFrame*> out;
  std::set<Hash256> seen;
  for (const auto& f : v.frames)
    if (f.quality >= min_quality && seen.insert(f.hash).second) out.push_back(&f);
  return out;
}

double share_margin(double p, double t) {
  if (p >= t) return t >= 100 ? 1.0 : (p - t) / (100 - t);
  return std::max(-1.0, (p - t) / t);
}

}  // namespace

std::vector<VpdqFrame> prune_vpdq(std::span<const VpdqFrame> frames, int distance,
                                  int min_quality) {
  std::vector<VpdqFrame> out;
  for (const auto& f : frames)
    if (out.empty() || hamming(out.back().hash, f.hash) > distance ||
        (out.back().quality < min_quality && f.quality >= min_quality))
      out.push_back(f);
  return out;
}

std::string encode_vpdq_record(const VpdqVideo& video) {
  if (video.frames.size() > kMaxVpdqRecordFrames)
    throw Error(ErrorKind::Usage, "",
                std::to_string(video.frames.size()) + " distinct frames, more than the " +
                    std::to_string(kMaxVpdqRecordFrames) + " a video entry holds");
  std::vector<VpdqFrame> frames = video.frames;
  sort_by_time(frames);
  const auto duration = to_ms(video.duration_s);
  if (!duration) throw Error(ErrorKind::Usage, "", "the video's duration is out of range");
  std::string out(kMagic, 4);
  out.push_back(static_cast<char>(kVersion));
  put_u32(out, static_cast<std::uint32_t>(frames.size()));
  put_u32(out, *duration);
  out.reserve(kHeader + frames.size() * kFrameBytes);
  for (const auto& f : frames) {
    const auto ts = to_ms(f.timestamp);
    if (!ts || f.frame_number < 0 || f.frame_number > 0xffffffffLL || f.quality < 0 ||
        f.quality > 100)
      throw Error(ErrorKind::Usage, "",
                  "frame " + std::to_string(f.frame_number) + " is out of range");
    out.append(reinterpret_cast<const char*>(f.hash.bytes.data()), 32);
    out.push_back(static_cast<char>(f.quality));
    put_u32(out, static_cast<std::uint32_t>(f.frame_number));
    put_u32(out, *ts);
  }
  return out;
}

std::optional<VpdqVideo> decode_vpdq_record(std::string_view b, std::string* why) {
  const auto fail = [&](std::string reason) -> std::optional<VpdqVideo> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  if (b.size() < kHeader || std::memcmp(b.data(), kMagic, 4) != 0)
    return fail("not a vPDQ record (no HWVQ header)");
  if (static_cast<std::uint8_t>(b[4]) != kVersion)
    return fail("vPDQ record version " + std::to_string(static_cast<std::uint8_t>(b[4])) +
                " (this hashwall reads 1)");
  const std::uint32_t n = get_u32(b.data() + 5);
  if (n > kMaxVpdqRecordFrames)
    return fail(std::to_string(n) + " frames, more than " + std::to_string(kMaxVpdqRecordFrames));
  if (b.size() != kHeader + std::size_t{n} * kFrameBytes)
    return fail("a vPDQ record of " + std::to_string(n) + " frames is " +
                std::to_string(kHeader + std::size_t{n} * kFrameBytes) + " bytes, not " +
                std::to_string(b.size()));
  VpdqVideo v;
  v.duration_s = get_u32(b.data() + 9) / 1000.0;
  v.frames.resize(n);
  std::uint32_t last = 0;
  for (std::uint32_t i = 0; i < n; ++i) {
    const char* p = b.data() + kHeader + std::size_t{i} * kFrameBytes;
    VpdqFrame& f = v.frames[i];
    std::memcpy(f.hash.bytes.data(), p, 32);
    f.quality = static_cast<std::uint8_t>(p[32]);
    if (f.quality > 100) return fail("frame " + std::to_string(i) + " has quality over 100");
    f.frame_number = get_u32(p + 33);
    const std::uint32_t ts = get_u32(p + 37);
    if (ts < last) return fail("frame " + std::to_string(i) + " goes back in time");
    last = ts;
    f.timestamp = ts / 1000.0;
  }
  return v;
}

std::size_t vpdq_record_frames(std::string_view bytes) {
  if (bytes.size() < kHeader || std::memcmp(bytes.data(), kMagic, 4) != 0) return 0;
  return get_u32(bytes.data() + 5);
}

ParsedVpdq parse_vpdq_text(std::string_view text) {
  ParsedVpdq out;
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);
  int line_no = 0;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    std::vector<std::string_view> parts;
    for (std::size_t at = 0;;) {
      const auto comma = line.find(',', at);
      parts.push_back(
          trim(line.substr(at, comma == std::string_view::npos ? line.npos : comma - at)));
      if (comma == std::string_view::npos) break;
      at = comma + 1;
    }
    const auto bad = [&](std::string reason) {
      out.errors.emplace_back(line_no, std::move(reason));
    };
    if (parts.size() != 4) {
      bad("expected frame_number,quality,pdq_hex,timestamp (4 fields), got " +
          std::to_string(parts.size()));
      continue;
    }
    VpdqFrame f;
    const auto number = to_int(parts[0]);
    const auto quality = to_int(parts[1]);
    const auto hash = Hash256::from_hex(std::string(parts[2]));
    const auto ts = to_seconds(parts[3]);
    if (!number || *number < 0 || *number > 0xffffffffLL) {
      bad("frame number '" + std::string(parts[0].substr(0, 32)) + "' is not 0..4294967295");
    } else if (!quality || *quality < 0 || *quality > 100) {
      bad("quality '" + std::string(parts[1].substr(0, 32)) + "' is not 0..100");
    } else if (!hash) {
      bad("'" + std::string(parts[2].substr(0, 80)) + "' is not a PDQ hash (64 hex characters)");
    } else if (!ts) {
      bad("timestamp '" + std::string(parts[3].substr(0, 32)) + "' is not a number of seconds");
    } else {
      f.frame_number = *number;
      f.quality = static_cast<int>(*quality);
      f.hash = *hash;
      f.timestamp = *ts;
      out.video.frames.push_back(f);
    }
  }
  sort_by_time(out.video.frames);
  return out;
}

std::optional<VpdqVideo> parse_vpdq_json(std::string_view text, std::string* why) {
  const auto fail = [&](std::string reason) -> std::optional<VpdqVideo> {
    if (why) *why = std::move(reason);
    return std::nullopt;
  };
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_array()) return fail("not a JSON array of vPDQ frames");
  if (j.size() > kMaxVpdqRecordFrames)
    return fail(std::to_string(j.size()) + " frames, more than " +
                std::to_string(kMaxVpdqRecordFrames));
  VpdqVideo v;
  std::int64_t n = 0;
  for (const auto& item : j) {
    if (!item.is_string()) return fail("frame " + std::to_string(n) + " is not a string");
    // "pdq_hex,quality,timestamp" (VpdqCompactFeature): no frame number, so they are
    // numbered in order.
    const std::string& s = item.get_ref<const std::string&>();
    const auto c1 = s.find(','), c2 = c1 == s.npos ? s.npos : s.find(',', c1 + 1);
    if (c2 == s.npos || s.find(',', c2 + 1) != s.npos)
      return fail("frame " + std::to_string(n) + " is not \"pdq_hex,quality,timestamp\"");
    const auto hash = Hash256::from_hex(s.substr(0, c1));
    const auto quality = to_int(std::string_view(s).substr(c1 + 1, c2 - c1 - 1));
    const auto ts = to_seconds(std::string_view(s).substr(c2 + 1));
    if (!hash || !quality || *quality < 0 || *quality > 100 || !ts)
      return fail("frame " + std::to_string(n) + " is not \"pdq_hex,quality,timestamp\"");
    v.frames.push_back({n++, static_cast<int>(*quality), *hash, *ts});
  }
  sort_by_time(v.frames);
  return v;
}

std::string vpdq_json(const VpdqVideo& video) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& f : video.frames) {
    char ts[64];
    std::snprintf(ts, sizeof ts, "%.3f", f.timestamp);
    j.push_back(f.hash.hex() + ',' + std::to_string(f.quality) + ',' + ts);
  }
  return j.dump();
}

std::vector<std::pair<double, double>> vpdq_spans(const VpdqVideo& v,
                                                  const std::vector<bool>& matched,
                                                  double join_gap) {
  std::vector<std::pair<double, double>> out;
  const std::size_t n = std::min(v.frames.size(), matched.size());
  // Each frame's end: the next later timestamp (one backward pass; frames are sorted).
  std::vector<double> next(v.frames.size());
  double later = -1;
  for (std::size_t i = v.frames.size(); i-- > 0;) {
    next[i] = later;
    if (i > 0 && v.frames[i].timestamp > v.frames[i - 1].timestamp) later = v.frames[i].timestamp;
  }
  for (std::size_t i = 0; i < n; ++i) {
    if (!matched[i]) continue;
    const double from = v.frames[i].timestamp;
    double to = next[i] > from ? next[i] : std::max(from, v.duration_s);
    if (!out.empty() && from <= out.back().second + join_gap + 1e-9)
      out.back().second = std::max(out.back().second, to);
    else
      out.emplace_back(from, to);
  }
  return out;
}

VpdqComparison vpdq_compare(const VpdqVideo& query, const VpdqVideo& entry, const VpdqRule& rule) {
  VpdqComparison c;
  const auto q = unique_frames(query, rule.min_quality);
  const auto e = unique_frames(entry, rule.min_quality);
  c.query_frames = q.size();
  c.entry_frames = e.size();
  std::vector<bool> e_hit(e.size(), false);
  for (const VpdqFrame* qf : q) {
    bool any = false;
    for (std::size_t k = 0; k < e.size(); ++k) {
      const int d = hamming(qf->hash, e[k]->hash);
      if (d > rule.distance) continue;
      any = true;
      e_hit[k] = true;
      c.best_distance = std::min(c.best_distance, d);
    }
    if (any) ++c.query_matched;
  }
  c.entry_matched = static_cast<std::size_t>(std::count(e_hit.begin(), e_hit.end(), true));
  c.query_percent = q.empty() ? 0 : 100.0 * c.query_matched / q.size();
  c.entry_percent = e.empty() ? 0 : 100.0 * c.entry_matched / e.size();
  c.match = !q.empty() && !e.empty() && c.query_percent >= rule.query_percent &&
            c.entry_percent >= rule.entry_percent && c.query_matched > 0;
  return c;
}

double vpdq_margin(double query_percent, double entry_percent, const VpdqRule& rule) {
  const double mq = share_margin(query_percent, rule.query_percent);
  if (rule.entry_percent <= 0) return mq;
  return std::min(mq, share_margin(entry_percent, rule.entry_percent));
}

}  // namespace hashwall
