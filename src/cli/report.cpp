#include "cli/report.hpp"

#include <algorithm>
#include <cstdio>

#include "core/error.hpp"
#include "core/text.hpp"

namespace hashwall::cli {

namespace {
// "12.5 s" / "1:02:03.0": a time in a video.
std::string format_seconds(double t) {
  char buf[48];
  const auto whole = static_cast<long long>(t);
  if (t < 60)
    std::snprintf(buf, sizeof buf, "%.1f s", t);
  else if (t < 3600)
    std::snprintf(buf, sizeof buf, "%lld:%04.1f", whole / 60,
                  t - static_cast<double>(whole / 60 * 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%04.1f", whole / 3600, whole / 60 % 60,
                  t - static_cast<double>(whole / 60 * 60));
  return buf;
}

std::string describe_hit(const MatchHit& h) {
  std::string s = "#" + std::to_string(h.entry.id);
  if (!h.entry.label.empty()) s += " [" + h.entry.label + "]";
  s += " " + (h.entry.source.empty() ? std::string("(no source)") : h.entry.source);
  if (h.allow)
    s += "  (allow list " + h.entry.list_name + ")";
  else if (h.entry.list_name != kDefaultListName)
    s += "  (list " + h.entry.list_name + ")";
  if (h.exact) {
    s += "  exact file (same " + std::string(h.signal == "md5" ? "MD5" : "SHA-256") + ")";
    if (!h.entry.pdq) return s;  // a file-hash list's entry: nothing else to compare
    s += ";";
  }
  if (const auto v = h.registered.find("vpdq"); v != h.registered.end()) {
    // A video entry: vPDQ's shares, and where in the entry the match sits.
    const auto& d = v->second.detail;
    char buf[160];
    std::snprintf(buf, sizeof buf, "  vPDQ: %.1f%% of this video's frames, %.1f%% of the entry's",
                  d.value("query_percent", 0.0), d.value("entry_percent", 0.0));
    s += buf;
    const auto times = d.value("entry_times", nlohmann::json::array());
    if (!times.empty())
      s += " (the entry's " + format_seconds(times.front().at(0).get<double>()) + " to " +
           format_seconds(times.back().at(1).get<double>()) + ")";
  } else if (h.entry.pdq || !h.exact) {
    s += "  PDQ distance " + std::to_string(h.distance()) + " (" +
         std::string(dihedral_name(h.variant())) + ")";
  }
  if (const auto sim = h.similarity()) {
    char buf[48];
    std::snprintf(buf, sizeof buf, ", embedding similarity %.3f", static_cast<double>(*sim));
    s += buf;
  }
  if (const auto inliers = h.inliers()) {
    s += ", " + std::to_string(*inliers) + " keypoint inliers" +
         (h.local_mirrored() ? " (mirrored)" : "");
    if (const auto region = h.region()) {
      float x0 = 1, y0 = 1, x1 = 0, y1 = 0;
      for (const auto& p : *region) {
        x0 = std::min(x0, p.x), y0 = std::min(y0, p.y), x1 = std::max(x1, p.x),
        y1 = std::max(y1, p.y);
      }
      char buf[96];
      std::snprintf(buf, sizeof buf, " at x %.0f-%.0f%%, y %.0f-%.0f%% of the image",
                    100.0 * std::max(0.f, x0), 100.0 * std::min(1.f, x1), 100.0 * std::max(0.f, y0),
                    100.0 * std::min(1.f, y1));
      s += buf;
    }
  }
  char score[32];
  std::snprintf(score, sizeof score, "  score %.2f", h.score);
  s += score;
  s += h.matched ? "  [decided by " + h.signal + "]"
                 : "  [near miss, found by " + h.signal + "; not a match]";
  return s;
}

std::string describe_times(const VideoAppearance& a) {
  std::string s = "seen at ";
  for (std::size_t i = 0; i < a.times.size(); ++i) {
    if (i == 3) {
      s += ", and " + std::to_string(a.times.size() - 3) + " more";
      break;
    }
    if (i) s += ", ";
    s += a.times[i].first == a.times[i].second
             ? format_seconds(a.times[i].first)
             : format_seconds(a.times[i].first) + " to " + format_seconds(a.times[i].second);
  }
  s += " (" + std::to_string(a.frames) + (a.frames == 1 ? " frame" : " frames") +
       "; evidence from " + format_seconds(a.best_time) + ")";
  return s;
}

// RFC 4180 quoting, after the formula neutralisation (core/text.hpp).
std::string csv_field(const std::string& raw) {
  const std::string s = neutralise_formula(raw);
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}
}  // namespace

void print_human(std::ostream& out, const FileReport& r, bool verbose) {
  if (!r.error.empty()) {
    out << "ERROR     " << r.error << '\n';
    return;
  }
  switch (r.result.verdict) {
    case Verdict::Match: {
      const auto n = std::count_if(r.result.hits.begin(), r.result.hits.end(),
                                   [](const MatchHit& h) { return h.matched; });
      out << "MATCH     " << r.file << "  (" << n << (n == 1 ? " entry" : " entries") << ")\n";
      break;
    }
    case Verdict::LowQuality:
      out << "UNDECIDED " << r.file << "  (PDQ quality " << r.fp->pdq.quality << " < "
          << r.result.min_quality << ": too featureless to decide)\n";
      break;
    case Verdict::NoMatch:
      out << "ok        " << r.file << '\n';
      break;
    case Verdict::Allowed:
      out << "allowed   " << r.file << "  (matches an allowlisted entry at least as strongly)\n";
      break;
  }
  // Matches, then near misses (only with MatchOptions::near_misses), in score order.
  if (r.result.verdict != Verdict::LowQuality)
    for (std::size_t i = 0; i < r.result.hits.size(); ++i) {
      const auto& h = r.result.hits[i];
      out << (h.matched ? "    -> " : "    near miss -> ") << describe_hit(h) << '\n';
      if (r.video && i < r.video->appearances.size())
        out << "       " << describe_times(r.video->appearances[i]) << '\n';
    }
  if (r.known_file)
    out << "    known by its bytes (file hash): " << (r.video ? "frames" : "pixels")
        << " not checked\n";
  else if (r.video)
    out << "    video " << r.video->width << "x" << r.video->height << ", "
        << format_seconds(r.video->duration_s) << ", " << r.video->frames_checked
        << " frames checked of " << r.video->frames_decoded << '\n';
  if (r.video && !r.video->incomplete.empty())
    out << "    incomplete: " << escape_control(r.video->incomplete)
        << " (the matches above were found before)\n";
  if (verbose && r.fp && !r.known_file)
    out << "    pdq " << r.fp->pdq.hashes[0].hex() << " quality " << r.fp->pdq.quality << " sha256 "
        << r.fp->sha256 << '\n';
}

void print_csv_header(std::ostream& out) {
  out << "file,status,match_id,label,source,distance,variant,exact,pdq,quality,error,list\n";
}

void print_csv(std::ostream& out, const FileReport& r) {
  const std::string status = r.error.empty() ? verdict_name(r.result.verdict) : "error";
  // A file known by its bytes alone had no PDQ hash computed: empty fields.
  const bool hashed = r.fp && !r.known_file;
  const std::string pdq = hashed ? r.fp->pdq.hashes[0].hex() : "";
  const std::string quality = hashed ? std::to_string(r.fp->pdq.quality) : "";
  if (r.result.hits.empty() || !r.error.empty()) {
    out << csv_field(r.file) << ',' << status << ",,,,,,," << pdq << ',' << quality << ','
        << csv_field(r.error) << ",\n";
    return;
  }
  for (const auto& h : r.result.hits)
    out << csv_field(r.file) << ',' << status << ',' << h.entry.id << ','
        << csv_field(h.entry.label) << ',' << csv_field(h.entry.source) << ',' << h.distance()
        << ',' << dihedral_name(h.variant()) << ',' << (h.exact ? "true" : "false") << ',' << pdq
        << ',' << quality << ",," << csv_field(h.entry.list_name) << '\n';
}

void Tally::add(const FileReport& r) {
  ++files;
  if (!r.error.empty())
    ++errors;
  else if (r.result.verdict == Verdict::Match)
    ++matches;
  else if (r.result.verdict == Verdict::LowQuality)
    ++low_quality;
  else if (r.result.verdict == Verdict::Allowed)
    ++allowed;
  else
    ++no_match;
}

int Tally::exit_code() const {
  if (matches) return kExitMatch;
  if (errors) return kExitError;
  if (low_quality) return kExitUndecided;
  if (allowed) return kExitAllowed;
  return kExitOk;
}

}  // namespace hashwall::cli
