#include "server/service.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <filesystem>
#include <thread>

#include "core/error.hpp"
#include "exchange/feed.hpp"
#include "hashlist/hashlist.hpp"
#include "image/load.hpp"
#include "match/fingerprint.hpp"
#include "match/matcher.hpp"
#include "match/report.hpp"  // report_json/hit_json: one JSON shape for CLI and service
#include "match/video_check.hpp"

namespace hashwall::server {

Reply error_reply(int status, std::string message) {
  Reply r;
  r.status = status;
  r.body = json{{"error", std::move(message)}, {"code", status}};
  return r;
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  std::int64_t v = 0;
  const auto* end = s.data() + s.size();
  const auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end || s.empty()) return std::nullopt;
  return v;
}

// The matcher's options from the query string; an error message when one is malformed or
// past the service's ceilings (ServiceLimits).
std::optional<std::string> match_options(const Params& params, MatchOptions& o,
                                         ServiceLimits limits, const BankConfig& bank, Role role) {
  // Admins may look further than the ceilings (calibration, audits); nobody past the scale.
  if (role == Role::Admin) {
    limits.max_threshold = 256;
    limits.min_quality_floor = 0;
    limits.max_top = std::max(limits.max_top, kAdminMaxTop);
  }
  auto int_param = [&](const char* key, int lo, int hi,
                       std::optional<int>& out) -> std::optional<std::string> {
    auto it = params.find(key);
    if (it == params.end()) return std::nullopt;
    const auto v = parse_int(it->second);
    if (!v || *v < lo || *v > hi)
      return std::string("parameter ") + key + " must be an integer from " + std::to_string(lo) +
             " to " + std::to_string(hi) + ", got '" + it->second.substr(0, 40) + "'";
    out = static_cast<int>(*v);
    return std::nullopt;
  };
  if (auto e = int_param("threshold", 0, 256, o.threshold)) return e;
  if (auto e = int_param("min_quality", 0, 100, o.min_quality)) return e;
  std::optional<int> top;
  if (auto e = int_param("top", 1, limits.max_top, top)) return e;
  if (top) o.top = *top;
  const int max_threshold = limits.max_threshold.value_or(bank.pdq_threshold);
  if (o.threshold && *o.threshold > max_threshold)
    return "parameter threshold " + std::to_string(*o.threshold) +
           " is looser than this service allows (at most " + std::to_string(max_threshold) +
           "; serve --max-threshold)";
  const int floor = limits.min_quality_floor.value_or(bank.min_quality);
  if (o.min_quality && *o.min_quality < floor)
    return "parameter min_quality " + std::to_string(*o.min_quality) +
           " is looser than this service allows (at least " + std::to_string(floor) +
           "; serve --min-quality-floor)";
  // list=NAME, repeatable: only those lists' entries take part.
  for (auto [it, end] = params.equal_range("list"); it != end; ++it) o.lists.push_back(it->second);
  if (o.lists.size() > 64) return std::string("at most 64 list parameters");
  if (auto it = params.find("dihedral"); it != params.end()) {
    const std::string v = lower(it->second);
    if (v == "1" || v == "true" || v == "yes")
      o.dihedral = true;
    else if (v == "0" || v == "false" || v == "no")
      o.dihedral = false;
    else
      return "parameter dihedral must be true or false, got '" + it->second.substr(0, 40) + "'";
  }
  return std::nullopt;
}

// A hit as the caller's role may see it: without the read role, the verdict's facts only
// (which entry, which signal decided), never labels, sources, stored hashes or distances.
json visible_hit(const MatchHit& h, Role role) {
  if (role >= Role::Read) return hit_json(h);
  json j;
  j["id"] = h.entry.id;
  j["signal"] = h.signal;
  if (h.allow) j["allow"] = true;
  return j;
}

}  // namespace

std::string without_paths(std::string_view text) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    const bool starts = text[i] == '/' && (i == 0 || std::string_view(" '\"(=").find(text[i - 1]) !=
                                                         std::string_view::npos);
    if (!starts) {
      out += text[i++];
      continue;
    }
    std::size_t end = i;
    while (end < text.size() &&
           std::string_view(" '\"),\n").find(text[end]) == std::string_view::npos)
      ++end;
    const std::string_view path = text.substr(i, end - i);
    // The service's own routes stay as they are; a file path keeps its last component
    // ("/build/x/loadsave.cpp:77:" -> "loadsave.cpp:77:").
    const bool route = path.rfind("/v1/", 0) == 0 || path == "/v1" || path == "/metrics";
    out += route || path.size() == 1 ? path : path.substr(path.rfind('/') + 1);
    i = end;
  }
  return out;
}

namespace {

int status_for(const Error& e) {
  switch (e.kind()) {
    case ErrorKind::Format:
    case ErrorKind::Corrupt:
    case ErrorKind::Usage:
      return 400;
    case ErrorKind::TooLarge:
      return 413;
    case ErrorKind::Bank:
      return 503;  // busy/locked bank: try again
    case ErrorKind::Io:
    case ErrorKind::Interrupted:
      break;
  }
  return 500;
}

Reply reply_for(const Error& e, int retry_after) {
  Reply r = error_reply(status_for(e), without_paths(e.what()));
  if (r.status == 503) r.headers.emplace_back("Retry-After", std::to_string(retry_after));
  return r;
}

// The processing deadline of one request, looked at between its stages: a stage already
// running (one decode, one search) is not interrupted, but no further work is started.
class Deadline {
 public:
  explicit Deadline(std::chrono::microseconds limit)
      : limit_(limit), end_(std::chrono::steady_clock::now() + limit) {}
  bool passed() const { return limit_.count() > 0 && std::chrono::steady_clock::now() > end_; }
  Reply reply(Metrics& metrics, int retry_after) const {
    metrics.record_rejected_timeout();
    Reply r = error_reply(
        503,
        "processing took longer than the " +
            std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(limit_).count()) +
            " ms limit (serve --timeout); nothing was written; retry later");
    r.headers.emplace_back("Retry-After", std::to_string(retry_after));
    return r;
  }

 private:
  std::chrono::microseconds limit_;
  std::chrono::steady_clock::time_point end_;
};

LoadOptions load_options(const ServiceLimits& l) {
  LoadOptions o;  // fast decode, EXIF orientation: as `hashwall query` and `scan`
  o.max_pixels = l.max_pixels;
  o.max_file_bytes = l.max_body_bytes;
  return o;
}

}  // namespace

Reply guarded(const std::function<Reply()>& handler, int retry_after_seconds) {
  try {
    return handler();
  } catch (const Error& e) {
    return reply_for(e, retry_after_seconds);
  } catch (const std::exception& e) {
    return error_reply(500, "internal error: " + without_paths(e.what()));
  }
}

Service::Service(Bank& bank, ServiceLimits limits, Metrics& metrics, bool writable,
                 ServiceSignals signals)
    : bank_(bank),
      limits_(limits),
      metrics_(metrics),
      writable_(writable),
      signals_(std::move(signals)),
      flood_(std::make_unique<FloodGuard>(limits.flood)) {}

void Service::watch_flood(const MatchResult& m, const Hash256& query) const {
  if (!flood_->enabled()) return;
  std::vector<std::int64_t> blocking;
  if (m.verdict == Verdict::Match)
    for (const auto& h : m.hits)
      if (!h.allow) blocking.push_back(h.entry.id);
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  // The query's content, for counting distinct queries: its whole PDQ hash folded to 64
  // bits (FNV-1a), so that hashes a bit apart anywhere count apart.
  std::uint64_t key = 14695981039346656037ull;
  for (const auto b : query.bytes) key = (key ^ b) * 1099511628211ull;
  for (const auto& trip : flood_->observe(now, key, blocking)) {
    if (!writable_) {
      metrics_.record_flood();  // a read-only server counts it (/metrics) and cannot disable
      continue;
    }
    const Actor who{"flood-guard", "matched " + std::to_string(trip.matches) + " of the last " +
                                       std::to_string(trip.queries) + " queries in " +
                                       std::to_string(flood_->options().window_seconds) + " s"};
    try {
      std::lock_guard lock(write_mu_);
      if (bank_.set_disabled(std::span(&trip.entry, 1), Disabled{"flood", std::nullopt}, who) > 0) {
        metrics_.record_flood();
        ++flood_quarantined_;
      }
    } catch (const Error&) {
      // The bank could not be written (busy, gone): the query's answer stands; the entry is
      // counted again and reported at its next crossing.
    }
  }
}

Reply Service::match_image(std::span<const std::uint8_t> bytes, const std::string& name,
                           const Params& params, Role role) const {
  MatchOptions mo;
  if (auto e = match_options(params, mo, limits_, bank_.config(), role))
    return error_reply(400, *e);
  if (auto e = known_lists(mo)) return error_reply(400, *e);
  if (bytes.empty())
    return error_reply(400,
                       "empty body: send the image bytes (raw body or multipart field 'image')");
  const bool video = is_video_bytes(bytes);
  const auto video_too_large = [&] {
    return "video too large (" + std::to_string(bytes.size()) + " bytes; limit " +
           std::to_string(limits_.max_video_bytes) + " bytes, see --max-video-body)";
  };
  if (limits_.max_video_bytes > 0 && video) {
    if (bytes.size() <= limits_.max_video_bytes) return match_video(bytes, name, mo, role);
    // Past the video limit: within --max-body it is still looked up by its bytes (a
    // file-hash list's entry), as the image path below does for what it cannot decode.
    if (bytes.size() > limits_.max_body_bytes) return error_reply(413, video_too_large());
  }
  // Not a video: an image, held to its own limit whatever /v1/match accepts for videos.
  if (bytes.size() > limits_.max_body_bytes)
    return error_reply(413, "image too large (" + std::to_string(bytes.size()) + " bytes; limit " +
                                std::to_string(limits_.max_body_bytes) + " bytes, see --max-body)");
  const auto t0 = std::chrono::steady_clock::now();
  const Deadline deadline(limits_.max_processing);
  FileReport rep;
  rep.file = name;
  try {
    LoadOptions lo = load_options(limits_);
    lo.want_md5 = bank_.has_md5_entries();
    prepare_load(lo, signals_.query);
    const LoadedImage img = decode_image(bytes, name, lo);
    if (deadline.passed()) return deadline.reply(metrics_, limits_.retry_after_seconds);
    rep.fp = fingerprint(img, lo.mode, signals_.query);
    if (deadline.passed()) return deadline.reply(metrics_, limits_.retry_after_seconds);
    rep.result = Matcher(bank_, mo).match(*rep.fp);
  } catch (const Error& e) {
    // Not an image hashwall decodes (a video, a format it refuses, too many pixels) may
    // still be a known file by its bytes: a file-hash list's entry.
    try {
      if (e.kind() == ErrorKind::Format || e.kind() == ErrorKind::Corrupt ||
          e.kind() == ErrorKind::TooLarge) {
        rep.error = e.what();
        const bool md5 = bank_.has_md5_entries();
        known_by_digests(rep, sha256_hex(bytes), md5 ? md5_hex(bytes) : "", Matcher(bank_, mo));
      }
    } catch (const Error& again) {
      return reply_for(again, limits_.retry_after_seconds);
    }
    if (!rep.known_file) {
      // A video over its limit, not known by its bytes: say which limit, not "not an image".
      if (video && limits_.max_video_bytes > 0) return error_reply(413, video_too_large());
      return reply_for(e, limits_.retry_after_seconds);
    }
  }
  metrics_.record_verdict(rep.result.verdict == Verdict::Match);
  if (!rep.known_file) watch_flood(rep.result, rep.fp->pdq.hashes[0]);
  Reply r;
  r.body = report_json(rep);
  r.body.erase("error");
  if (role < Role::Read) {
    json hits = json::array();
    for (const auto& h : rep.result.hits) hits.push_back(visible_hit(h, role));
    r.body["matches"] = std::move(hits);
  }
  r.body["width"] = rep.fp->width;
  r.body["height"] = rep.fp->height;
  r.body["bytes"] = bytes.size();
  r.body["dihedral"] = mo.dihedral;
  r.body["elapsed_ms"] =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

namespace {

namespace fs = std::filesystem;

// An upload written to a private file (mode 0600, in TMPDIR) for FFmpeg, which reads files
// (video.cpp opens files only); removed when this goes.
class TempUpload {
 public:
  explicit TempUpload(std::span<const std::uint8_t> bytes) {
    std::error_code ec;
    const fs::path dir = fs::temp_directory_path(ec);
    if (ec) throw Error(ErrorKind::Io, "", "no temporary folder for the video: " + ec.message());
    std::string tmpl = (dir / "hashwall-upload-XXXXXX").string();
    const int fd = ::mkstemp(tmpl.data());
    if (fd < 0) throw Error(ErrorKind::Io, "", "cannot make a temporary file for the video");
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        ::unlink(tmpl.c_str());
        throw Error(ErrorKind::Io, "", "cannot write the video to a temporary file (disk full?)");
      }
      done += static_cast<std::size_t>(n);
    }
    ::close(fd);
    path_ = tmpl;
  }
  ~TempUpload() {
    std::error_code ec;
    fs::remove(path_, ec);
  }
  TempUpload(const TempUpload&) = delete;
  TempUpload& operator=(const TempUpload&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

}  // namespace

Reply Service::match_video(std::span<const std::uint8_t> bytes, const std::string& name,
                           const MatchOptions& mo, Role role) const {
  const auto t0 = std::chrono::steady_clock::now();
  // A video holds a worker for up to --timeout: at most half the cores' worth at once, so
  // that a client sending videos cannot starve the photo queries (503, retry later).
  const unsigned cores = std::max(2u, std::thread::hardware_concurrency());
  if (video_checks_.fetch_add(1) >= static_cast<int>(cores / 2)) {
    video_checks_.fetch_sub(1);
    Reply r = error_reply(503, "server busy: too many videos being checked; retry later");
    r.headers.emplace_back("Retry-After", std::to_string(limits_.retry_after_seconds));
    return r;
  }
  struct Release {
    std::atomic<int>& n;
    ~Release() { n.fetch_sub(1); }
  } release{video_checks_};
  FileReport rep;
  try {
    const TempUpload file(bytes);
    VideoCheckOptions vo;  // one frame a second, as `query`
    vo.limits.max_bytes = limits_.max_video_bytes;
    // The whole check (decoding and matching its frames) within the request's time.
    if (limits_.max_processing.count() > 0)
      vo.limits.max_decode_s = std::chrono::duration<double>(limits_.max_processing).count();
    vo.want_md5 = bank_.has_md5_entries();
    rep = check_video(file.path(), Matcher(bank_, mo), signals_.query, vo);
  } catch (const Error& e) {
    return reply_for(e, limits_.retry_after_seconds);
  }
  rep.file = name;
  if (!rep.error.empty()) {
    // Said without the temporary file's name.
    if (!rep.failure) return error_reply(500, "internal error: " + without_paths(rep.error));
    const Error& e = *rep.failure;
    // Out of time: the video is too long to check within this server's --timeout (413: a
    // retry would fail the same way).
    if (e.kind() == ErrorKind::TooLarge && e.reason().starts_with("decoding took more than"))
      metrics_.record_rejected_timeout();
    return reply_for(
        Error(e.kind(), "",
              "video: " + e.reason() +
                  (e.reason().starts_with("decoding took more than") ? " (serve --timeout)" : "")),
        limits_.retry_after_seconds);
  }
  metrics_.record_verdict(rep.result.verdict == Verdict::Match);
  Reply r;
  r.body = report_json(rep);
  r.body.erase("error");
  if (r.body.contains("video") && r.body["video"].contains("incomplete") &&
      r.body["video"]["incomplete"].is_string()) {
    const std::string inc = r.body["video"]["incomplete"];
    const auto at = inc.find(": ");
    r.body["video"]["incomplete"] = at == std::string::npos ? inc : inc.substr(at + 2);
  }
  if (role < Role::Read) {
    json hits = json::array();
    for (const auto& h : rep.result.hits) hits.push_back(visible_hit(h, role));
    r.body["matches"] = std::move(hits);
  }
  if (rep.video) {
    r.body["width"] = rep.video->width;
    r.body["height"] = rep.video->height;
  }
  r.body["bytes"] = bytes.size();
  r.body["dihedral"] = mo.dihedral;
  r.body["elapsed_ms"] =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

Reply Service::match_hashes(std::string_view body, std::string_view content_type,
                            const Params& params, Role role) const {
  const Deadline deadline(limits_.max_processing);
  MatchOptions mo;
  if (auto e = match_options(params, mo, limits_, bank_.config(), role))
    return error_reply(400, *e);
  if (auto e = known_lists(mo)) return error_reply(400, *e);
  // A bare hash has no pixels to rotate: the client sends each variant it wants tried.
  mo.dihedral = false;
  ParsedHashes parsed = parse_hash_body(body, content_type, limits_.max_hashes);
  if (!parsed.error.empty()) return error_reply(400, parsed.error);
  const Matcher matcher(bank_, mo);
  json results = json::array();
  std::size_t answer_bytes = 0;
  bool any = false;
  MatchResult last;
  try {
    for (const auto& item : parsed.items) {
      if (deadline.passed()) return deadline.reply(metrics_, limits_.retry_after_seconds);
      const bool pdq = item.signal == ListSignal::Pdq;
      Fingerprint fp;
      fp.pdq.hashes.fill(item.hash);
      fp.pdq.quality = item.quality.value_or(100);  // unknown quality: trusted, as imports
      // A file hash finds only the entries of that very file.
      const MatchResult m =
          pdq ? matcher.match(fp)
              : matcher.match_file(item.signal == ListSignal::Sha256 ? item.file_hash : "",
                                   item.signal == ListSignal::Md5 ? item.file_hash : "");
      metrics_.record_verdict(m.verdict == Verdict::Match);
      if (pdq) watch_flood(m, item.hash);
      any = any || m.verdict == Verdict::Match;
      json j;
      if (pdq) {
        j["pdq"] = item.hash.hex();
        j["quality"] = item.quality ? json(*item.quality) : json(nullptr);
      } else {
        j[item.signal == ListSignal::Md5 ? "md5" : "sha256"] = item.file_hash;
      }
      if (!item.name.empty()) j["name"] = item.name;
      j["status"] = verdict_name(m.verdict);
      j["match"] = m.verdict == Verdict::Match;
      json hits = json::array();
      for (const auto& h : m.hits) hits.push_back(visible_hit(h, role));
      j["matches"] = std::move(hits);
      answer_bytes += j.dump(-1, ' ', false, json::error_handler_t::replace).size() + 1;
      if (answer_bytes > limits_.max_response_bytes)
        return error_reply(400, "the answer would be larger than " +
                                    std::to_string(limits_.max_response_bytes) +
                                    " bytes: send fewer hashes or ask for a smaller top "
                                    "(serve --max-response)");
      results.push_back(std::move(j));
      last = m;
    }
  } catch (const Error& e) {
    return reply_for(e, limits_.retry_after_seconds);
  }
  Reply r;
  r.body["match"] = any;
  r.body["threshold"] = last.threshold;
  r.body["min_quality"] = last.min_quality;
  r.body["results"] = std::move(results);
  return r;
}

std::optional<std::string> Service::known_lists(const MatchOptions& o) const {
  for (const auto& l : o.lists)
    if (!bank_.list(l)) return "there is no list '" + l.substr(0, 80) + "' in the bank";
  return std::nullopt;
}

std::optional<std::int64_t> Service::list_for_write(const WriteContext& ctx, Reply& err) const {
  const std::string name = ctx.list.empty() ? kDefaultListName : ctx.list;
  const auto l = bank_.list(name);
  if (!l) {
    err = error_reply(400, "there is no list '" + name.substr(0, 80) + "' in the bank");
    return std::nullopt;
  }
  return l->id;
}

Reply Service::add_image(std::span<const std::uint8_t> bytes, const std::string& name,
                         const std::string& label, const std::string& source,
                         const WriteContext& ctx) {
  if (!writable_) return error_reply(403, "this service is read-only (started with --read-only)");
  if (bytes.empty())
    return error_reply(400,
                       "empty body: send the image bytes (raw body or multipart field 'image')");
  const Deadline deadline(limits_.max_processing);
  try {
    LoadOptions lo = load_options(limits_);
    prepare_load(lo, signals_.add);
    const LoadedImage img = decode_image(bytes, name, lo);
    if (deadline.passed()) return deadline.reply(metrics_, limits_.retry_after_seconds);
    const Fingerprint f = fingerprint(img, lo.mode, signals_.add);
    if (deadline.passed()) return deadline.reply(metrics_, limits_.retry_after_seconds);
    NewEntry e = entry_from(f);
    e.label = label;
    e.source = source.empty() ? name : source;
    e.origin = Origin::Indexed;
    Reply bad;
    const auto list_id = list_for_write(ctx, bad);
    if (!list_id) return bad;
    e.list_id = *list_id;
    e.added_by = ctx.who.name;
    AddResult added;
    {
      std::lock_guard lock(write_mu_);
      added = bank_.add(std::span(&e, 1), ctx.who);
    }
    Reply r;
    r.status = added.added ? 201 : 200;
    r.body["added"] = added.added;
    r.body["duplicates"] = added.duplicates;
    json entries = json::array();
    if (auto stored = bank_.get(added.ids.at(0))) entries.push_back(entry_json(*stored));
    r.body["entries"] = std::move(entries);
    r.body["ids"] = added.ids;
    r.body["pdq"] = f.pdq.hashes[0].hex();
    r.body["quality"] = f.pdq.quality;
    r.body["sha256"] = f.sha256;
    return r;
  } catch (const Error& e) {
    return reply_for(e, limits_.retry_after_seconds);
  }
}

Reply Service::add_hashes(std::string_view body, std::string_view content_type,
                          const std::string& label, const std::string& source,
                          const WriteContext& ctx) {
  if (!writable_) return error_reply(403, "this service is read-only (started with --read-only)");
  Reply bad;
  const auto list_id = list_for_write(ctx, bad);
  if (!list_id) return bad;
  ParsedHashes parsed = parse_hash_body(body, content_type, limits_.max_hashes);
  if (!parsed.error.empty()) return error_reply(400, parsed.error);
  const std::string lbl = parsed.label.empty() ? label : parsed.label;
  const std::string src =
      parsed.source.empty() ? (source.empty() ? std::string("api") : source) : parsed.source;
  std::vector<NewEntry> entries;
  entries.reserve(parsed.items.size());
  for (const auto& item : parsed.items) {
    NewEntry e;
    if (item.signal == ListSignal::Pdq)
      e.pdq = item.hash;
    else
      (item.signal == ListSignal::Md5 ? e.md5 : e.sha256) = item.file_hash;
    e.quality = item.quality;
    e.label = lbl;
    e.source = item.name.empty() ? src : item.name;
    e.origin = Origin::Imported;
    e.list_id = *list_id;
    e.added_by = ctx.who.name;
    entries.push_back(std::move(e));
  }
  try {
    AddResult added;
    {
      std::lock_guard lock(write_mu_);
      added = bank_.add(entries, ctx.who);
    }
    Reply r;
    r.status = added.added ? 201 : 200;
    r.body["added"] = added.added;
    r.body["duplicates"] = added.duplicates;
    r.body["ids"] = added.ids;
    return r;
  } catch (const Error& e) {
    return reply_for(e, limits_.retry_after_seconds);
  }
}

Reply Service::remove_entry(std::string_view id_text, const WriteContext& ctx) {
  if (!writable_) return error_reply(403, "this service is read-only (started with --read-only)");
  const auto id = parse_int(id_text);
  if (!id || *id <= 0)
    return error_reply(400, "entry id must be a positive integer, got '" +
                                std::string(id_text.substr(0, 40)) + "'");
  try {
    std::int64_t removed = 0;
    {
      std::lock_guard lock(write_mu_);
      removed = bank_.remove_ids(std::span(&*id, 1), ctx.who);
    }
    if (removed == 0) return error_reply(404, "no entry with id " + std::to_string(*id));
    Reply r;
    r.body["removed"] = removed;
    r.body["id"] = *id;
    return r;
  } catch (const Error& e) {
    return reply_for(e, limits_.retry_after_seconds);
  }
}

namespace {

json list_reply_json(const ListInfo& l) {
  json j;
  j["name"] = l.name;
  j["kind"] = list_kind_name(l.kind);
  j["disabled"] =
      l.disabled ? json{{"reason", l.disabled->reason},
                        {"until", l.disabled->until ? json(*l.disabled->until) : json(nullptr)}}
                 : json(nullptr);
  j["description"] = l.description;
  j["organisation"] = l.organisation;
  j["terms"] = l.terms;
  j["created_at"] = l.created_at;
  j["entries"] = l.entries;
  return j;
}

// A write's JSON body: an object (an empty body reads as {}), or the reason it is not one.
std::optional<json> body_object(std::string_view body, std::string& err) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return json::object();
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    err = "the body must be a JSON object";
    return std::nullopt;
  }
  return j;
}

// A list's "kind" from a body into `out` (left alone when absent); false when it is not
// "block" or "allow".
bool read_kind(const json& j, std::optional<ListKind>& out) {
  if (!j.contains("kind")) return true;
  out = j["kind"].is_string() ? parse_list_kind(j["kind"].get_ref<const std::string&>())
                              : std::nullopt;
  return out.has_value();
}

// A disable's {"reason", "until"?} from a body: the reason is required (the log and the
// entry say why), `until` is unix seconds in the future.
std::optional<Disabled> disable_from(const json& j, std::string& err) {
  if (!j.contains("reason") || !j["reason"].is_string() ||
      j["reason"].get_ref<const std::string&>().empty()) {
    err = "a disable needs a 'reason' (a non-empty string)";
    return std::nullopt;
  }
  Disabled d{j["reason"].get<std::string>().substr(0, kMaxReasonBytes), std::nullopt};
  if (j.contains("until") && !j["until"].is_null()) {
    const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
    if (!j["until"].is_number_integer() || j["until"].get<std::int64_t>() <= now) {
      err = "'until' must be a time in the future, in unix seconds";
      return std::nullopt;
    }
    d.until = j["until"].get<std::int64_t>();
  }
  return d;
}

}  // namespace

Reply Service::lists() const {
  try {
    json out = json::array();
    for (const auto& l : bank_.lists()) out.push_back(list_reply_json(l));
    Reply r;
    r.body["lists"] = std::move(out);
    return r;
  } catch (const Error& e) {
    return reply_for(e, limits_.retry_after_seconds);
  }
}

Reply Service::create_list(std::string_view body, const WriteContext& ctx) {
  if (!writable_) return error_reply(403, "this service is read-only (started with --read-only)");
  std::string err;
  const auto j = body_object(body, err);
  if (!j) return error_reply(400, err);
  ListInfo spec;
  for (const auto& [key, field] :
       {std::pair{"name", &spec.name}, std::pair{"description", &spec.description},
        std::pair{"organisation", &spec.organisation}, std::pair{"terms", &spec.terms}}) {
    if (!j->contains(key) || (*j)[key].is_null()) continue;
    if (!(*j)[key].is_string())
      return error_reply(400, std::string("'") + key + "' must be a string");
    *field = (*j)[key].get<std::string>();
  }
  if (spec.name.empty()) return error_reply(400, "the new list needs a 'name'");
  std::optional<ListKind> kind;
  if (!read_kind(*j, kind)) return error_reply(400, "'kind' must be \"block\" or \"allow\"");
  spec.kind = kind.value_or(ListKind::Block);
  try {
    ListInfo made;
    {
      std::lock_guard lock(write_mu_);
      made = bank_.create_list(spec, ctx.who);
    }
    Reply r;
    r.status = 201;
    r.body["list"] = list_reply_json(made);
    return r;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Usage) return error_reply(400, e.reason());
    return reply_for(e, limits_.retry_after_seconds);
  }
}

Reply Service::change_list(const std::string& name, const std::string& action,
                           std::string_view body, const WriteContext& ctx) {
  if (!writable_) return error_reply(403, "this service is read-only (started with --read-only)");
  std::string err;
  const auto j = body_object(body, err);
  if (!j) return error_reply(400, err);
  Bank::ListChange change;
  if (action == "disable") {
    change.disable = disable_from(*j, err);
    if (!change.disable) return error_reply(400, err);
  } else if (action == "enable") {
    change.enable = true;
  } else {
    for (const auto& [key, field] :
         {std::pair{"description", &change.description},
          std::pair{"organisation", &change.organisation}, std::pair{"terms", &change.terms}}) {
      if (!j->contains(key)) continue;
      if (!(*j)[key].is_string())
        return error_reply(400, std::string("'") + key + "' must be a string");
      *field = (*j)[key].get<std::string>();
    }
    if (!read_kind(*j, change.kind))
      return error_reply(400, "'kind' must be \"block\" or \"allow\"");
    if (!change.kind && !change.description && !change.organisation && !change.terms)
      return error_reply(400,
                         "nothing to change: send any of kind, description, organisation, "
                         "terms (or POST to .../disable or .../enable)");
  }
  try {
    if (!bank_.list(name))
      return error_reply(404, "there is no list '" + name.substr(0, 80) + "' in the bank");
    WriteContext wc = ctx;
    if (change.disable) wc.who.reason = change.disable->reason;
    ListInfo after;
    {
      std::lock_guard lock(write_mu_);
      after = bank_.change_list(name, change, wc.who);
    }
    Reply r;
    r.body["list"] = list_reply_json(after);
    return r;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Usage) return error_reply(400, e.reason());
    return reply_for(e, limits_.retry_after_seconds);
  }
}

Reply Service::set_entry_state(std::string_view id_text, bool enable, std::string_view body,
                               const WriteContext& ctx) {
  if (!writable_) return error_reply(403, "this service is read-only (started with --read-only)");
  const auto id = parse_int(id_text);
  if (!id || *id <= 0)
    return error_reply(400, "entry id must be a positive integer, got '" +
                                std::string(id_text.substr(0, 40)) + "'");
  std::string err;
  const auto j = body_object(body, err);
  if (!j) return error_reply(400, err);
  std::optional<Disabled> state;
  if (!enable) {
    state = disable_from(*j, err);
    if (!state) return error_reply(400, err);
  }
  try {
    WriteContext wc = ctx;
    if (state) wc.who.reason = state->reason;
    std::int64_t found = 0;
    {
      std::lock_guard lock(write_mu_);
      found = bank_.set_disabled(std::span(&*id, 1), state, wc.who);
    }
    if (found == 0) return error_reply(404, "no entry with id " + std::to_string(*id));
    Reply r;
    r.body["id"] = *id;
    r.body["disabled"] = state ? json{{"reason", state->reason},
                                      {"until", state->until ? json(*state->until) : json(nullptr)}}
                               : json(nullptr);
    return r;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Usage) return error_reply(400, e.reason());
    return reply_for(e, limits_.retry_after_seconds);
  }
}

Reply Service::audit(const Params& params) const {
  const auto num = [&](const char* key, std::int64_t dflt, std::int64_t lo,
                       std::int64_t hi) -> std::optional<std::int64_t> {
    const auto it = params.find(key);
    if (it == params.end()) return dflt;
    const auto v = parse_int(it->second);
    if (!v || *v < lo || *v > hi) return std::nullopt;
    return v;
  };
  const auto after = num("after", 0, 0, std::numeric_limits<std::int64_t>::max());
  const auto limit = num("limit", 100, 1, 1000);
  if (!after || !limit)
    return error_reply(400, "parameters after (0 or more) and limit (1 to 1000) must be integers");
  try {
    const auto rows = bank_.audit(*after, static_cast<std::size_t>(*limit));
    json events = json::array();
    for (const auto& e : rows) {
      json j = {{"id", e.id},     {"at", e.at},   {"actor", e.actor},  {"action", e.action},
                {"list", e.list}, {"ids", e.ids}, {"reason", e.reason}};
      json detail = e.detail.empty() ? json(nullptr) : json::parse(e.detail, nullptr, false);
      j["detail"] = detail.is_discarded() ? json(e.detail) : std::move(detail);
      events.push_back(std::move(j));
    }
    Reply r;
    r.body["events"] = std::move(events);
    r.body["next"] = rows.empty() ? *after : rows.back().id;
    return r;
  } catch (const Error& e) {
    return reply_for(e, limits_.retry_after_seconds);
  }
}

Reply Service::changes(const Params& params) const {
  const auto it = params.find("list");
  if (it == params.end() || it->second.empty())
    return error_reply(400, "which list? ask with list=NAME");
  const auto after = params.find("after");
  const auto lim = params.find("limit");
  std::size_t limit = kFeedPageDefault;
  if (lim != params.end()) {
    const auto v = parse_int(lim->second);
    if (!v || *v < 1 || *v > static_cast<std::int64_t>(kFeedPageMax))
      return error_reply(400, "limit must be an integer from 1 to " + std::to_string(kFeedPageMax));
    limit = static_cast<std::size_t>(*v);
  }
  try {
    const FeedPage page =
        read_feed(bank_, it->second, after == params.end() ? "0" : after->second, limit,
                  // Under the answer limit, and well under what a sync
                  // client takes (32 MB).
                  std::min<std::size_t>(limits_.max_response_bytes / 2, 4 * kFeedPageBytes));
    Reply r;
    r.body = feed_json(page);
    return r;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Usage) return error_reply(400, e.reason());
    return reply_for(e, limits_.retry_after_seconds);
  }
}

Reply Service::verdict(std::string_view body, const WriteContext& ctx) {
  if (!writable_) return error_reply(403, "this service is read-only (started with --read-only)");
  const json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return error_reply(400,
                       "the body must be a JSON object: {\"entry\": ID, \"query_sha256\": "
                       "HEX, \"verdict\": \"confirmed\" or \"false-positive\"}");
  const auto str = [&](const char* key) -> std::optional<std::string> {
    if (!j.contains(key) || !j[key].is_string()) return std::nullopt;
    return j[key].get<std::string>();
  };
  if (!j.contains("entry") || !j["entry"].is_number_integer() ||
      j["entry"].get<std::int64_t>() <= 0)
    return error_reply(400, "'entry' must be the id of the entry the query matched");
  const auto sha = str("query_sha256");
  const auto kind = str("verdict");
  if (!sha) return error_reply(400, "'query_sha256' (the query file's SHA-256) is missing");
  if (!kind || !parse_review_verdict(*kind))
    return error_reply(400, "'verdict' must be \"confirmed\" or \"false-positive\"");
  Review v;
  v.entry = j["entry"].get<std::int64_t>();
  v.query_sha256 = *sha;
  v.kind = *parse_review_verdict(*kind);
  WriteContext wc = ctx;
  if (const auto reason = str("reason")) wc.who.reason = reason->substr(0, kMaxReasonBytes);
  std::optional<NewEntry> allow;
  if (const auto list = str("allow_list")) {
    // The query's PDQ hash, as /v1/match returned it: the allow entry.
    const auto pdq = str("pdq");
    const auto h = pdq ? Hash256::from_hex(*pdq) : std::nullopt;
    if (!h)
      return error_reply(
          400, "to allowlist the query send its 'pdq' (64 hex), as /v1/match returned it");
    allow = NewEntry{};
    allow->pdq = *h;
    allow->sha256 = *sha;
    if (j.contains("quality")) {
      if (!j["quality"].is_number_integer() || j["quality"].get<std::int64_t>() < 0 ||
          j["quality"].get<std::int64_t>() > 100)
        return error_reply(400, "'quality' must be 0 to 100");
      allow->quality = j["quality"].get<int>();
    }
    allow->source = "verdict";
    allow->origin = Origin::Imported;
    allow->label = str("label")
                       .value_or("false positive of entry " + std::to_string(v.entry))
                       .substr(0, kMaxLabelBytes);
    allow->added_by = wc.who.name;
    Reply bad;
    wc.list = *list;
    const auto id = list_for_write(wc, bad);
    if (!id) return bad;
    allow->list_id = *id;
  }
  try {
    ReviewResult r;
    {
      std::lock_guard lock(write_mu_);
      r = bank_.record_verdict(v, allow ? &*allow : nullptr, wc.who);
    }
    Reply out;
    out.status = 201;
    out.body["verdict"] = review_verdict_name(v.kind);
    out.body["entry"] = v.entry;
    out.body["audit_id"] = r.audit_id;
    out.body["allow_entry"] = r.allow_entry ? json(*r.allow_entry) : json(nullptr);
    return out;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::Usage) return error_reply(400, e.reason());
    return reply_for(e, limits_.retry_after_seconds);
  }
}

Reply Service::health() const {
  Reply r;
  r.body["status"] = "ok";
  r.body["writable"] = writable_;
  return r;
}

Reply Service::stats(const json& extra) const {
  try {
    const BankStats s = bank_.stats();
    const BankConfig& c = bank_.config();
    Reply r;
    r.body["entries"] = s.entries;
    r.body["indexed"] = s.indexed;
    r.body["imported"] = s.imported;
    r.body["labels"] = s.labels;
    r.body["low_quality"] = s.low_quality;
    r.body["disabled"] = s.disabled;
    r.body["flood"] = {{"share", limits_.flood.share},
                       {"window_seconds", limits_.flood.window_seconds},
                       {"min_queries", limits_.flood.min_queries},
                       {"min_matches", limits_.flood.min_matches},
                       {"quarantined_by_this_server", flood_quarantined_.load()},
                       {"quarantined_in_bank", s.flood_quarantined}};
    r.body["generation"] = s.generation;
    r.body["index_rebuilds"] = s.index_rebuilds;
    r.body["changes_followed"] = s.changes_followed;
    if (!s.index_cache_refused.empty())
      r.body["index_cache_refused"] = without_paths(s.index_cache_refused);
    r.body["format_version"] = s.format_version;
    r.body["signals"] =
        json::array({json{{"name", "pdq"},
                          {"model", "pdq-256 (Meta PDQ, hashwall " HASHWALL_VERSION ")"},
                          {"threshold", c.pdq_threshold},
                          {"min_quality", c.min_quality},
                          {"index_type", s.index_type},
                          {"index_config", c.index_type},
                          {"index_memory_bytes", s.index_memory_bytes}}});
    json index_types = json{{"pdq", s.index_type}};
    // The signals whose records sit beside the entry row (local, embed, registered ones).
    for (const auto& reg : s.registered) {
      json params = json::object();
      for (const auto& [k, v] : reg.params) params[k] = v;
      json one{{"name", reg.name},
               {"params", params},
               {"entries", reg.entries},
               {"db_bytes", reg.db_bytes},
               {"index_type", reg.index_type},
               {"index_memory_bytes", reg.memory_bytes}};
      if (reg.name == "embed") {
        one["model"] = c.embed_model;
        one["threshold"] = c.embed_threshold;
      }
      if (reg.name == "local") {
        one["model"] = "orb-256 (ORB keypoints, RANSAC similarity fit)";
        one["min_inliers"] = c.local_min_inliers;
        one["keypoints"] = reg.items;
      }
      r.body["signals"].push_back(std::move(one));
      index_types[reg.name] = reg.index_type;
    }
    r.body["index_types"] = std::move(index_types);
    r.body["model"] = "pdq";
    r.body["db_bytes"] = s.db_bytes;
    for (auto it = extra.begin(); it != extra.end(); ++it) r.body[it.key()] = it.value();
    return r;
  } catch (const Error& e) {
    return reply_for(e, limits_.retry_after_seconds);
  }
}

}  // namespace hashwall::server
