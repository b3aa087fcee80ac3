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
  } catch (const std::exception& e) {
    r.error = r.file + ": " + e.what();
  }
  return r;
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
  j["pdq"] = r.fp->pdq.hashes[0].hex();
  j["quality"] = r.fp->pdq.quality;
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
  j["pdq"] = e.pdq.hex();
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
  j["distance"] = h.distance();
  j["variant"] = std::string(dihedral_name(h.variant()));
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
  j["entry_pdq"] = h.entry.pdq.hex();
  j["entry_quality"] = h.entry.quality ? json(*h.entry.quality) : json(nullptr);
  return j;
}

}  // namespace hashwall
