// `hashwall bench robustness`, its output: the JSON document and the Markdown tables of
// docs/BENCHMARKS.md, from a RobustnessReport.
#include <cstdio>
#include <filesystem>
#include <sstream>
#include <string>

#include "bench/robustness.hpp"

namespace hashwall::bench {

using json = nlohmann::ordered_json;
namespace fs = std::filesystem;

namespace {

json score_json(const SignalScore& s) {
  json j;
  j["positives"] = s.positives;
  j["caught"] = s.caught;
  j["recall"] = s.recall;
  j["negatives"] = s.negatives;
  j["false_matches"] = s.false_matches;
  j["recall_at_precision"] = s.at_precision.reached ? json(s.at_precision.recall) : json(nullptr);
  j["threshold_at_precision"] = s.at_precision.reached ? json(s.at_precision.score) : json(nullptr);
  j["micro_ap"] = s.micro_ap;
  return j;
}

json row_json(const RobustnessReport& rep, const ResultRow& r) {
  json j;
  j["name"] = r.name;
  if (!r.family.empty()) j["family"] = r.family;
  json sig = json::object();
  for (std::size_t s = 0; s < r.signals.size(); ++s)
    sig[rep.signals[s].name] = score_json(r.signals[s]);
  j["signals"] = sig;
  return j;
}

std::string pct(double v) {
  char b[16];
  std::snprintf(b, sizeof b, "%.1f", 100 * v);
  return b;
}

std::string fixed3(double v) {
  char b[16];
  std::snprintf(b, sizeof b, "%.3f", v);
  return b;
}

std::string header(const RobustnessReport& rep, const std::string& first) {
  std::string h = "| " + first + " |", sep = "|---|";
  for (const auto& s : rep.signals) {
    h += " " + s.name + " |";
    sep += "---:|";
  }
  return h + "\n" + sep + "\n";
}

template <class Cell>
std::string table(const RobustnessReport& rep, const std::vector<ResultRow>& rows,
                  const std::string& first, bool family_col, Cell cell) {
  std::string t = header(rep, family_col ? first + " | family" : first);
  if (family_col) t.insert(t.find('\n') + 1, "|---");
  for (const auto& r : rows) {
    t += "| " + r.name + " |";
    if (family_col) t += " " + r.family + " |";
    for (const auto& s : r.signals) t += " " + cell(s) + " |";
    t += "\n";
  }
  return t;
}

}  // namespace

json robustness_json(const RobustnessReport& rep) {
  json j;
  j["known"] = rep.known;
  j["distractors"] = rep.distractors;
  j["queries"] = rep.queries;
  j["known_low_quality"] = rep.known_low_quality;
  j["seed"] = rep.seed;
  j["max_side"] = rep.max_side;
  j["precision_target"] = rep.precision_target;
  j["seconds"] = rep.seconds;
  j["bank_signals"] = rep.bank_signals;
  j["embed_model"] = rep.embed_model;
  json sig = json::array();
  for (std::size_t s = 0; s < rep.signals.size(); ++s) {
    json p = json::array();
    for (const auto& pt : rep.pr_curves[s]) p.push_back({pt.score, pt.precision, pt.recall});
    sig.push_back(
        {{"name", rep.signals[s].name},
         {"rule", rep.signals[s].rule},
         {"score", rep.signals[s].score},
         {"max_distractor_score",
          s < rep.max_distractor_score.size() ? json(rep.max_distractor_score[s]) : json(nullptr)},
         {"pr_curve", {{"columns", {"score", "precision", "recall"}}, {"points", p}}}});
  }
  j["signals"] = sig;
  j["overall"] = row_json(rep, rep.overall);
  j["families"] = json::array();
  for (const auto& r : rep.families) j["families"].push_back(row_json(rep, r));
  j["edits"] = json::array();
  for (const auto& r : rep.edits) j["edits"].push_back(row_json(rep, r));
  j["skipped"] = rep.skipped;
  j["corpus_copies"] = json::array();
  for (const auto& [file, of] : rep.corpus_copies)
    j["corpus_copies"].push_back({{"file", file}, {"copy_of", of}});
  return j;
}

std::string robustness_markdown(const RobustnessReport& rep) {
  std::ostringstream o;
  const std::string p = pct(rep.precision_target);
  o << "Known photos: " << rep.known << " (" << rep.known_low_quality
    << " of them under the bank's minimum PDQ quality); distractors: " << rep.distractors
    << "; edited queries: " << rep.queries << " (every photo of both sets under every edit); seed "
    << rep.seed << "; photos edited at most " << rep.max_side << " px on the long side; "
    << rep.skipped.size() << " unreadable files skipped; " << std::lround(rep.seconds) << " s.\n\n";
  if (!rep.corpus_copies.empty()) {
    o << "Left out as copies of another photo of the corpus (the matcher finds one in the other): ";
    for (std::size_t i = 0; i < rep.corpus_copies.size(); ++i)
      o << (i ? "; " : "") << "`" << fs::path(rep.corpus_copies[i].first).filename().string()
        << "` (of `" << fs::path(rep.corpus_copies[i].second).filename().string() << "`)";
    o << ".\n\n";
  }
  o << "Signals and their default decisions:\n\n";
  for (const auto& s : rep.signals)
    o << "- **" << s.name << "**: " << s.rule << "; ranked by " << s.score << "\n";
  o << "\n#### Overall\n\n";
  o << "| signal | recall at default | false matches (distractor queries) | best distractor score "
       "| recall at "
    << p << " % precision (threshold) | µAP |\n|---|---:|---:|---:|---:|---:|\n";
  for (std::size_t s = 0; s < rep.signals.size(); ++s) {
    const auto& sc = rep.overall.signals[s];
    o << "| " << rep.signals[s].name << " | " << pct(sc.recall) << " % | " << sc.false_matches
      << " of " << sc.negatives << " | "
      << (s < rep.max_distractor_score.size() && rep.max_distractor_score[s] > -1e8
              ? fixed3(rep.max_distractor_score[s])
              : std::string("–"))
      << " | "
      << (sc.at_precision.reached
              ? pct(sc.at_precision.recall) + " % (score >= " + fixed3(sc.at_precision.score) + ")"
              : std::string("not reached"))
      << " | " << fixed3(sc.micro_ap) << " |\n";
  }
  o << "\n#### Recall at the default thresholds, per family (%)\n\n"
    << table(rep, rep.families, "family", false,
             [](const SignalScore& s) { return pct(s.recall); });
  o << "\n#### False matches among edited distractors, per family\n\n"
    << table(rep, rep.families, "family", false, [](const SignalScore& s) {
         return std::to_string(s.false_matches) + " / " + std::to_string(s.negatives);
       });
  o << "\n#### µAP per family\n\n"
    << table(rep, rep.families, "family", false,
             [](const SignalScore& s) { return fixed3(s.micro_ap); });
  o << "\n#### Recall at the default thresholds, per edit (%)\n\n"
    << table(rep, rep.edits, "edit", true, [](const SignalScore& s) { return pct(s.recall); });
  o << "\n#### Recall at " << p << " % precision, per edit (%)\n\n"
    << table(rep, rep.edits, "edit", true, [](const SignalScore& s) {
         return s.at_precision.reached ? pct(s.at_precision.recall) : std::string("–");
       });
  o << "\n#### False matches among edited distractors, per edit\n\n"
    << table(rep, rep.edits, "edit", true,
             [](const SignalScore& s) { return std::to_string(s.false_matches); });
  return o.str();
}

}  // namespace hashwall::bench
