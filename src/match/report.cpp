#include "match/report.hpp"

#include <algorithm>

#include "core/error.hpp"
#include "local/local_signal.hpp"

namespace hashwall {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

FileReport check_file(const fs::path& file, const LoadOptions& opt, const Matcher& matcher,
                      const FingerprintOptions& fpo) {
  FileReport r;
  r.file = file.string();
  try {
    r.fp = fingerprint(load_image(file, opt), opt.mode, fpo);
    r.result = matcher.match(*r.fp);
  } catch (const Error& e) {
    r.error = e.what();
    r.fp.reset();
    known_by_bytes(r, file, opt.want_md5, matcher);
  } catch (const std::exception& e) {
    r.error = r.file + ": " + e.what();
  }
  return r;
}

void known_by_bytes(FileReport& r, const fs::path& file, bool md5, const Matcher& matcher) {
  try {
    const FileDigests d = file_digests(file, md5);
    known_by_digests(r, d.sha256, d.md5, matcher);
  } catch (const Error&) {
    // unreadable: the load's error stands
  }
}

void known_by_digests(FileReport& r, const std::string& sha256, const std::string& md5,
                      const Matcher& matcher) {
  MatchResult exact = matcher.match_file(sha256, md5);
  if (exact.verdict == Verdict::NoMatch) return;
  r.error.clear();
  r.known_file = true;
  r.result = std::move(exact);
  r.fp = Fingerprint{};
  r.fp->sha256 = sha256;
  r.fp->md5 = md5;
}

json report_json(const FileReport& r) {
  json j;
  j["file"] = r.file;
  if (!r.error.empty()) {
    j["status"] = "error";
    j["match"] = false;
    j["matches"] = json::array();
    j["error"] = r.error;
    return j;
  }
  j["status"] = verdict_name(r.result.verdict);
  j["match"] = r.result.verdict == Verdict::Match;
  json hits = json::array();
  for (const auto& h : r.result.hits) hits.push_back(hit_json(h));
  j["matches"] = hits;
  // A file known by its bytes (FileReport::known_file) had nothing hashed but them.
  const bool hashed = !r.known_file;
  j["pdq"] = hashed ? json(r.fp->pdq.hashes[0].hex()) : json(nullptr);
  j["quality"] = hashed ? json(r.fp->pdq.quality) : json(nullptr);
  j["sha256"] = r.fp->sha256;
  j["threshold"] = r.result.threshold;
  j["min_quality"] = r.result.min_quality;
  j["signals"] = r.result.signals;
  if (std::find(r.result.signals.begin(), r.result.signals.end(), "local") !=
      r.result.signals.end()) {
    j["local_min_inliers"] = r.result.local_min_inliers;
    // The keypoints of the query as given (its first form).
    std::int64_t keypoints = 0;
    if (const auto it = r.fp->registered.find("local");
        it != r.fp->registered.end() && !it->second.forms.empty())
      try {
        keypoints = static_cast<std::int64_t>(decode_local_query_form(it->second.forms[0]).size());
      } catch (const Error&) {
        // an entry's record, not a query's form: not a query report
      }
    j["local_keypoints"] = keypoints;
  }
  if (std::find(r.result.signals.begin(), r.result.signals.end(), "embed") !=
      r.result.signals.end())
    j["embed_threshold"] = r.result.embed_threshold;
  // Registered signals: the decision parameters each used.
  for (const auto& [name, params] : r.result.registered_params) {
    json p = json::object();
    for (const auto& [k, v] : params) p[k] = v;
    j["signal_params"][name] = p;
  }
  if (r.video) {
    const VideoSummary& v = *r.video;
    // Where each hit appears, in the hits' order.
    for (std::size_t i = 0; i < v.appearances.size() && i < j["matches"].size(); ++i) {
      json times = json::array();
      for (const auto& [from, to] : v.appearances[i].times) times.push_back({from, to});
      j["matches"][i]["times"] = times;
      j["matches"][i]["frames_matched"] = v.appearances[i].frames;
      j["matches"][i]["best_time"] = v.appearances[i].best_time;
    }
    j["video"] = {{"width", v.width},
                  {"height", v.height},
                  {"frame_rate", v.frame_rate},
                  {"duration", v.duration_s},
                  {"codec", v.codec},
                  {"frames_decoded", v.frames_decoded},
                  {"frames_checked", v.frames_checked},
                  {"seconds_per_frame", v.seconds_per_frame},
                  {"incomplete", v.incomplete.empty() ? json(nullptr) : json(v.incomplete)}};
  }
  j["known_file"] = r.known_file;
  j["error"] = nullptr;
  return j;
}

json disabled_json(const std::optional<Disabled>& d) {
  if (!d) return nullptr;
  return {{"reason", d->reason}, {"until", d->until ? json(*d->until) : json(nullptr)}};
}

json entry_json(const Entry& e) {
  json j;
  j["id"] = e.id;
  j["label"] = e.label;
  j["source"] = e.source;
  j["sha256"] = e.sha256 ? json(*e.sha256) : json(nullptr);
  j["pdq"] = e.pdq ? json(e.pdq->hex()) : json(nullptr);
  j["md5"] = e.md5 ? json(*e.md5) : json(nullptr);
  j["quality"] = e.quality ? json(*e.quality) : json(nullptr);
  j["origin"] = origin_name(e.origin);
  j["added_at"] = e.added_at;
  j["list"] = e.list_name;
  j["list_kind"] = list_kind_name(e.list_kind);
  j["disabled"] = disabled_json(e.disabled);
  j["list_disabled"] = disabled_json(e.list_disabled);
  j["added_by"] = e.added_by;
  j["peer"] = e.peer;
  j["external_id"] = e.external_id;
  return j;
}

json hit_json(const MatchHit& h) {
  json j;
  j["id"] = h.entry.id;
  j["label"] = h.entry.label;
  j["source"] = h.entry.source;
  j["sha256"] = h.entry.sha256 ? json(*h.entry.sha256) : json(nullptr);
  j["list"] = h.entry.list_name;
  // A file-hash entry has no PDQ hash to be at a distance from.
  j["distance"] = h.entry.pdq ? json(h.distance()) : json(nullptr);
  j["variant"] = h.entry.pdq ? json(std::string(dihedral_name(h.variant()))) : json(nullptr);
  j["exact"] = h.exact;
  j["signal"] = h.signal;
  j["signals_matched"] = h.signals_matched;
  j["score"] = h.score;
  if (!h.matched) j["near_miss"] = true;
  if (h.allow) j["allow"] = true;
  j["similarity"] = h.similarity() ? json(*h.similarity()) : json(nullptr);
  if (const auto inliers = h.inliers()) {
    j["inliers"] = *inliers;
    j["mirrored"] = h.local_mirrored();
    json region = json::array();
    if (const auto rg = h.region())
      for (const auto& p : *rg) region.push_back({p.x, p.y});
    j["region"] = region;
  } else {
    j["inliers"] = nullptr;
  }
  // The evidence of each signal that reached the entry (pdq, local, embed, registered ones):
  // its margin, the query form that came nearest and its own measure.
  json ev = json::object();
  for (const auto& [name, e] : h.registered) {
    json one;
    one["margin"] = e.margin;
    one["form"] = e.form;
    one["detail"] = e.detail;
    ev[name] = one;
  }
  j["evidence"] = ev;
  j["entry_pdq"] = h.entry.pdq ? json(h.entry.pdq->hex()) : json(nullptr);
  j["entry_quality"] = h.entry.quality ? json(*h.entry.quality) : json(nullptr);
  return j;
}

}  // namespace hashwall
