// hashwall import / export: hash lists in other organisations' formats.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "cli/commands.hpp"
#include "cli/common.hpp"
#include "core/error.hpp"
#include "core/file.hpp"
#include "hashlist/hashlist.hpp"
#include "video/vpdq_record.hpp"

namespace hashwall::cli {

namespace {

struct ListArgs {
  std::string file;
  std::string bank;
  std::string seal_key_file;
  std::string format;
  std::string label;
  std::string list;
  std::string output;
  bool json_out = false;
  bool skip_unsupported = false;
};

const char* const kFormatNames = "pdq-csv, threatexchange (or hma), hex, md5, sha256 or vpdq";

// Meta's vpdq-hash-video files: one video a file, so not a list format (hashlist.hpp).
bool is_vpdq_format(const std::string& name) { return name == "vpdq"; }

ListFormat format_of(const std::string& name) {
  if (auto f = parse_list_format(name)) return *f;
  throw Error(ErrorKind::Usage, "",
              "unknown list format '" + name + "' (use " + kFormatNames + ")");
}

const char* const kFormatsHelp =
    "Formats:\n"
    "  pdq-csv         hash,quality,name per line: Meta's pdq-photo-hasher output\n"
    "  threatexchange  '<signal type> <signal>' per line, as python-threatexchange, HMA and\n"
    "                  ThreatExchange's file exchange write them: 'pdq <hex>', and the file\n"
    "                  hashes 'video_md5 <hex>', 'photo_md5 <hex>', 'video_sha256 <hex>',\n"
    "                  and videos' 'vpdq <JSON>'. Other types (url, raw_text, ...) are\n"
    "                  refused, or skipped with --skip-unsupported. 'hma' is its old name.\n"
    "  hex             one 64-character PDQ hash per line\n"
    "  md5, sha256     one file digest per line (32 or 64 hex): exact copies of a file, the\n"
    "                  form exchanges use for videos. A query matches such an entry only\n"
    "                  when its bytes are the same file's.\n"
    "  vpdq            one video's vPDQ hashes, frame_number,quality,pdq_hex,timestamp per\n"
    "                  line: Meta's vpdq-hash-video output ('hashwall hash --vpdq'). Import\n"
    "                  takes one file a video; export writes one file a video entry into the\n"
    "                  folder -o names (ID.txt). threatexchange lists carry videos as\n"
    "                  'vpdq <JSON array>' lines, as python-threatexchange writes them.\n"
    "Blank lines, '#' comments, a UTF-8 BOM and CRLF line ends are accepted; hex may be\n"
    "upper case.\n";

// A bank an import makes: lists carry PDQ hashes, file hashes and videos' vPDQ hashes, never
// pixels, so the signals computed from images (local, embed) would stay empty.
BankConfig list_bank_config() {
  BankConfig c;
  c.signals = {"pdq", "vpdq"};
  return c;
}

// A video imported from its vPDQ frames: pruned as an indexed video is (its record says
// prune_distance), its length taken as its last frame's time plus one frame interval.
std::string imported_vpdq_record(VpdqVideo v) {
  double step = 0;
  for (std::size_t i = 1; i < v.frames.size(); ++i) {
    const double d = v.frames[i].timestamp - v.frames[i - 1].timestamp;
    if (d > 0 && (step == 0 || d < step)) step = d;
  }
  v.duration_s = v.frames.empty() ? 0 : v.frames.back().timestamp + step;
  v.frames = prune_vpdq(v.frames, kVpdqPruneDistance);
  return encode_vpdq_record(v);
}

// Whether the bank holds this video already under this source: the same frames (every
// frame of each found in the other at distance 0) from the same source. An import read
// twice adds nothing; the store has no column that names a video by its frames.
bool holds_video(const Bank& bank, const std::string& record, const std::string& source) {
  const SignalParams exact = {
      {"distance", "0"}, {"min_quality", "0"}, {"query_percent", "100"}, {"entry_percent", "100"}};
  for (const auto& m : bank.search_signal("vpdq", SignalQuery{{record}}, 0.0, 64, &exact))
    if (const auto e = bank.get(m.id); e && e->source == source) return true;
  return false;
}

void require_video_bank(const Bank& bank, const std::string& file) {
  if (!bank.config().has("vpdq"))
    throw Error(ErrorKind::Usage, file,
                "holds videos' vPDQ hashes, and the bank keeps no videos (it was made without "
                "the vpdq signal); import them into a bank made with it (the default)");
}

// import --format vpdq: one video.
int run_import_vpdq(const ListArgs& a) {
  std::string text;
  if (a.file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    const auto bytes = read_file_bytes(a.file, 1ull << 30);
    text.assign(bytes.begin(), bytes.end());
  }
  const ParsedVpdq parsed = parse_vpdq_text(text);
  if (!parsed.errors.empty() || parsed.video.frames.empty()) {
    for (const auto& [line, reason] : parsed.errors)
      std::fprintf(stderr, "%s:%d: %s\n", a.file.c_str(), line, reason.c_str());
    std::fprintf(stderr, "hashwall: %s: %s; nothing imported\n", a.file.c_str(),
                 parsed.errors.empty() ? "no frames"
                                       : (std::to_string(parsed.errors.size()) + " bad line" +
                                          (parsed.errors.size() == 1 ? "" : "s"))
                                             .c_str());
    return kExitError;
  }
  auto bank =
      Bank::open(a.bank, OpenMode::Create, list_bank_config(), read_seal_key(a.seal_key_file));
  require_video_bank(*bank, a.file);
  const std::int64_t list_id = list_id_of(*bank, a.list.empty() ? kDefaultListName : a.list);
  const Actor who = cli_actor();
  NewEntry e;
  e.records["vpdq"] = imported_vpdq_record(parsed.video);
  e.label = a.label;
  e.list_id = list_id;
  e.added_by = who.name;
  e.source = a.file == "-" ? "stdin" : fs::path(a.file).filename().string();
  e.origin = Origin::Imported;
  const bool had = holds_video(*bank, e.records["vpdq"], e.source);
  const AddResult r = had ? AddResult{} : bank->add(std::span(&e, 1), who);
  const std::size_t kept = vpdq_record_frames(e.records["vpdq"]);
  if (a.json_out) {
    json j;
    j["file"] = a.file;
    j["format"] = "vpdq";
    j["frames"] = parsed.video.frames.size();
    j["frames_kept"] = kept;
    j["added"] = r.added;
    j["duplicates"] = had ? 1 : 0;
    j["entry"] = had ? json(nullptr) : json(r.ids.at(0));
    j["bank_entries"] = bank->stats().entries;
    std::cout << dump_json(j, 2) << '\n';
  } else if (had) {
    std::fprintf(stderr, "%s: the bank holds this video already; nothing imported\n",
                 a.file.c_str());
  } else {
    std::fprintf(stderr,
                 "imported %s (vpdq): 1 video, %zu frames (%zu kept: near-identical neighbours "
                 "pruned), entry %lld\n",
                 a.file.c_str(), parsed.video.frames.size(), kept,
                 static_cast<long long>(r.ids.at(0)));
  }
  return kExitOk;
}

int run_import(const ListArgs& a) {
  if (is_vpdq_format(a.format)) return run_import_vpdq(a);
  const ListFormat fmt = format_of(a.format);
  std::string text;
  if (a.file == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    const auto bytes = read_file_bytes(a.file, 4ull << 30);
    text.assign(bytes.begin(), bytes.end());
  }
  ParsedList parsed = parse_hash_list(text, fmt);
  // vpdq lines: their JSON read here (hashlist only checks its shape), bad ones refused by
  // line as the parser's are. A bank without videos (made without the vpdq signal) does
  // not match them: they are then lines of a type it does not match, which
  // --skip-unsupported leaves out.
  bool video_bank = true;  // a new bank keeps videos (list_bank_config)
  if (std::any_of(parsed.items.begin(), parsed.items.end(),
                  [](const ListItem& it) { return it.signal == ListSignal::Vpdq; })) {
    std::error_code ec;
    if (is_postgresql_location(a.bank)) {
      try {
        video_bank = Bank::open(a.bank, OpenMode::ReadOnly)->config().has("vpdq");
      } catch (const Error& e) {
        if (e.reason().find("no bank here") == std::string::npos) throw;
      }
    } else if (fs::exists(a.bank, ec)) {
      video_bank = Bank::open(a.bank, OpenMode::ReadOnly)->config().has("vpdq");
    }
  }
  std::map<int, std::string> vpdq_records;  // by line
  std::erase_if(parsed.items, [&](const ListItem& it) {
    if (it.signal != ListSignal::Vpdq || video_bank) return false;
    parsed.errors.push_back({it.line,
                             "signal type 'vpdq' is not one this bank matches (it was made "
                             "without the vpdq signal, and keeps no videos)",
                             "vpdq"});
    return true;
  });
  for (const auto& it : parsed.items) {
    if (it.signal != ListSignal::Vpdq) continue;
    std::string why;
    const auto v = parse_vpdq_json(it.vpdq, &why);
    if (!v || v->frames.empty()) {
      parsed.errors.push_back({it.line, "vpdq: " + (v ? std::string("no frames") : why), {}});
      continue;
    }
    try {
      vpdq_records[it.line] = imported_vpdq_record(*v);
    } catch (const Error& e) {
      parsed.errors.push_back({it.line, "vpdq: " + e.reason(), {}});
    }
  }
  std::sort(parsed.errors.begin(), parsed.errors.end(),
            [](const ListError& x, const ListError& y) { return x.line < y.line; });
  const std::string list_name = a.file == "-" ? "stdin" : fs::path(a.file).filename().string();
  // Lines of signal types hashwall does not match, left out on request, counted by type.
  std::map<std::string, std::int64_t> skipped;
  if (a.skip_unsupported)
    std::erase_if(parsed.errors, [&](const ListError& e) {
      if (e.unsupported_type.empty()) return false;
      ++skipped[e.unsupported_type];
      return true;
    });
  if (!parsed.errors.empty()) {
    for (const auto& e : parsed.errors)
      std::fprintf(stderr, "%s:%d: %s\n", a.file.c_str(), e.line, e.reason.c_str());
    std::fprintf(stderr,
                 "hashwall: %s: %zu bad line%s; nothing imported (imports are all-or-nothing)\n",
                 a.file.c_str(), parsed.errors.size(), parsed.errors.size() == 1 ? "" : "s");
    return kExitError;
  }
  auto bank =
      Bank::open(a.bank, OpenMode::Create, list_bank_config(), read_seal_key(a.seal_key_file));
  const std::int64_t list_id = list_id_of(*bank, a.list.empty() ? kDefaultListName : a.list);
  const Actor who = cli_actor();
  if (!vpdq_records.empty()) require_video_bank(*bank, a.file);
  std::vector<NewEntry> entries;
  entries.reserve(parsed.items.size());
  // A line repeated in the list (same hash, same name) is one entry, not one per line:
  // unnamed items get their line number as source, which would make every copy new.
  std::set<std::tuple<ListSignal, Hash256, std::string, std::string>> seen;
  std::int64_t repeated = 0;
  for (const auto& it : parsed.items) {
    if (!seen.emplace(it.signal, it.hash, it.file_hash + it.vpdq, it.name).second) {
      ++repeated;
      continue;
    }
    NewEntry e;
    switch (it.signal) {
      case ListSignal::Pdq:
        e.pdq = it.hash;
        break;
      case ListSignal::Md5:
        e.md5 = it.file_hash;
        break;
      case ListSignal::Sha256:
        e.sha256 = it.file_hash;
        break;
      case ListSignal::Vpdq:
        e.records["vpdq"] = vpdq_records.at(it.line);
        break;
    }
    e.quality = it.quality;
    e.label = a.label;
    e.list_id = list_id;
    e.added_by = who.name;
    e.source = it.name.empty() ? list_name + ":" + std::to_string(it.line) : it.name;
    e.origin = Origin::Imported;
    if (it.signal == ListSignal::Vpdq && holds_video(*bank, e.records["vpdq"], e.source)) {
      ++repeated;
      continue;
    }
    entries.push_back(std::move(e));
  }
  const AddResult r = bank->add(entries, who);
  bank->flush_index();
  if (a.json_out) {
    json j;
    j["file"] = a.file;
    j["format"] = list_format_name(fmt);
    j["lines"] = parsed.items.size();
    j["added"] = r.added;
    j["duplicates"] = r.duplicates + repeated;
    j["in_other_list"] = r.in_other_list;
    j["skipped"] = skipped;
    j["bank_entries"] = bank->stats().entries;
    std::cout << dump_json(j, 2) << '\n';
  } else {
    std::fprintf(stderr, "imported %s (%s): %lld added, %lld duplicates skipped\n", a.file.c_str(),
                 list_format_name(fmt), static_cast<long long>(r.added),
                 static_cast<long long>(r.duplicates + repeated));
    if (r.in_other_list)
      std::fprintf(stderr,
                   "hashwall: %lld of the duplicates are in another list than '%s' and stay "
                   "there (an entry is in one list)\n",
                   static_cast<long long>(r.in_other_list),
                   a.list.empty() ? kDefaultListName : a.list.c_str());
    for (const auto& [type, n] : skipped)
      std::fprintf(stderr, "hashwall: skipped %lld line%s of signal type %s (not matched)\n",
                   static_cast<long long>(n), n == 1 ? "" : "s", type.c_str());
  }
  return kExitOk;
}

// Whether export passes an entry on: its label and list as asked, enabled, and an allow
// list's only when asked for by name (in a plain list a recipient would block the
// known-harmless photos they stand for).
bool exported(const ListArgs& a, const Entry& e, std::int64_t now) {
  if (!a.label.empty() && e.label != a.label) return false;
  if (!a.list.empty() && e.list_name != a.list) return false;
  if (!e.enabled_at(now)) return false;  // a disabled entry is not passed on
  return !(a.list.empty() && e.list_kind == ListKind::Allow);
}

// export --format vpdq -o DIR: DIR/ID.txt for each video entry, in vpdq-hash-video's format
// (the frames kept: near-identical neighbours were pruned when it was stored).
int run_export_vpdq(const ListArgs& a) {
  if (a.output.empty() || a.output == "-")
    throw Error(ErrorKind::Usage, "",
                "--format vpdq writes one file a video: name a folder with -o DIR");
  const auto bank = Bank::open(a.bank, OpenMode::ReadOnly);
  if (!a.list.empty()) list_id_of(*bank, a.list);
  std::error_code ec;
  fs::create_directories(a.output, ec);
  if (ec || !fs::is_directory(a.output))
    throw Error(ErrorKind::Io, a.output, "cannot make the folder: " + ec.message());
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  std::int64_t written = 0, not_carried = 0;
  bank->for_each([&](const Entry& e) {
    if (!exported(a, e, now)) return true;
    const auto rec = bank->record("vpdq", e);
    const auto v = rec ? decode_vpdq_record(*rec) : std::nullopt;
    if (!v) {
      ++not_carried;
      return true;
    }
    std::string text;
    for (const auto& f : v->frames) text += vpdq_line(f) + '\n';
    write_file_atomically(fs::path(a.output) / (std::to_string(e.id) + ".txt"), text);
    ++written;
    return true;
  });
  std::fprintf(stderr, "exported %lld video%s (vpdq) into %s\n", static_cast<long long>(written),
               written == 1 ? "" : "s", a.output.c_str());
  if (not_carried)
    std::fprintf(stderr, "hashwall: %lld entr%s left out: not videos\n",
                 static_cast<long long>(not_carried), not_carried == 1 ? "y" : "ies");
  return kExitOk;
}

int run_export(const ListArgs& a) {
  if (is_vpdq_format(a.format)) return run_export_vpdq(a);
  const ListFormat fmt = format_of(a.format);
  const auto bank = Bank::open(a.bank, OpenMode::ReadOnly);
  if (!a.list.empty()) list_id_of(*bank, a.list);  // a list that is not there is an error
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  std::vector<ListItem> items;
  std::int64_t not_carried = 0;
  bank->for_each([&](const Entry& e) {
    if (!exported(a, e, now)) return true;
    // What the format carries of the entry: its PDQ hash first (threatexchange, pdq-csv,
    // hex), else its file hash (threatexchange, md5, sha256). An indexed photo has both a
    // PDQ hash and a SHA-256: a threatexchange list gets its PDQ hash, which finds
    // re-encoded copies too.
    ListItem it;
    it.quality = e.quality;
    it.name = e.source;
    if (e.pdq && format_carries(fmt, ListSignal::Pdq)) {
      it.hash = *e.pdq;
    } else if (e.md5 && format_carries(fmt, ListSignal::Md5)) {
      it.signal = ListSignal::Md5;
      it.file_hash = *e.md5;
    } else if (const auto rec = format_carries(fmt, ListSignal::Vpdq) && !e.pdq
                                    ? bank->record("vpdq", e)
                                    : std::nullopt;
               rec && decode_vpdq_record(*rec)) {
      // A video: its frames, which find copies and clips, before its file hash.
      it.signal = ListSignal::Vpdq;
      it.vpdq = vpdq_json(*decode_vpdq_record(*rec));
    } else if (e.sha256 && format_carries(fmt, ListSignal::Sha256)) {
      it.signal = ListSignal::Sha256;
      it.file_hash = *e.sha256;
    } else {
      ++not_carried;
      return true;
    }
    // An animation indexed into a video bank: its first frame's PDQ hash above, and its
    // frames' vPDQ too.
    if (it.signal == ListSignal::Pdq && format_carries(fmt, ListSignal::Vpdq))
      if (const auto rec = bank->record("vpdq", e))
        if (const auto v = decode_vpdq_record(*rec)) {
          ListItem video;
          video.signal = ListSignal::Vpdq;
          video.name = e.source;
          video.vpdq = vpdq_json(*v);
          items.push_back(std::move(it));
          items.push_back(std::move(video));
          return true;
        }
    items.push_back(std::move(it));
    return true;
  });
  if (a.output.empty() || a.output == "-") {
    write_hash_list(std::cout, fmt, items);
    std::cout.flush();
    if (!std::cout) throw Error(ErrorKind::Io, "stdout", "write failed");
  } else {
    // Written beside the target and renamed, so a failed export never leaves half a list.
    const fs::path tmp = a.output + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      if (!out) throw Error(ErrorKind::Io, tmp.string(), "cannot write");
      write_hash_list(out, fmt, items);
      out.flush();
      if (!out) throw Error(ErrorKind::Io, tmp.string(), "write failed (disk full?)");
    }
    fs::rename(tmp, a.output);
  }
  std::fprintf(stderr, "exported %zu hashes (%s)\n", items.size(), list_format_name(fmt));
  if (not_carried)
    std::fprintf(stderr,
                 "hashwall: %lld entr%s left out: a %s list cannot carry what they hold (a "
                 "PDQ hash, a file's MD5 or SHA-256, or a video's vPDQ hashes)\n",
                 static_cast<long long>(not_carried), not_carried == 1 ? "y" : "ies",
                 list_format_name(fmt));
  return kExitOk;
}

}  // namespace

void register_import(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<ListArgs>();
  auto* cmd = app.add_subcommand("import", "Import a hash list from another organisation");
  cmd->add_option("file", a->file, "Hash list file, or - for standard input")->required();
  cmd->add_option("-b,--bank", a->bank, kBankHelp)->required()->envname("HASHWALL_BANK");
  cmd->add_option("-f,--format", a->format, kFormatNames)->required();
  cmd->add_option("-l,--label", a->label, "Label stored with every imported entry");
  cmd->add_flag("--skip-unsupported", a->skip_unsupported,
                "threatexchange: leave out (and count) lines of signal types hashwall does not "
                "match, instead of refusing the list");
  cmd->add_option("--list", a->list,
                  "The list the entries go to (default: 'default'; see 'hashwall list')");
  add_seal_key_option(cmd, a->seal_key_file,
                      "needed when the bank is sealed with one; a new bank is sealed with it");
  cmd->add_flag("--json", a->json_out, "Print the summary as JSON");
  cmd->footer(
      std::string(
          "Add every hash of a list to the bank (created if missing), in one transaction: a\n"
          "single bad line (reported with its line number) imports nothing. Imported PDQ\n"
          "entries have no SHA-256 and no pixels; identical hashes from the same source are\n"
          "skipped, as are file hashes the bank already holds.") +
      "\n\n" + std::string(kFormatsHelp) +
      "\nExamples:\n"
      "  hashwall import partner.csv --bank cases.db --format pdq-csv --label partner-x\n"
      "  cat signals.txt | hashwall import - --bank cases.db --format threatexchange\n"
      "  hashwall import videos.md5 --bank cases.db --format md5 --list videos\n"
      "  hashwall import clip.txt --bank cases.db --format vpdq --label case-9\n\n"
      "Exit codes: 0 imported, 2 error (nothing imported).");
  cmd->callback([a, &exit_code] { exit_code = run_import(*a); });
}

void register_export(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<ListArgs>();
  auto* cmd = app.add_subcommand("export", "Export the bank's hashes as a hash list");
  cmd->add_option("-b,--bank", a->bank, kBankHelp)->required()->envname("HASHWALL_BANK");
  cmd->add_option("-f,--format", a->format, kFormatNames)->required();
  cmd->add_option("-o,--output", a->output, "Output file (default: stdout)");
  cmd->add_option("-l,--label", a->label, "Only entries with this label");
  cmd->add_option("--list", a->list,
                  "Only entries of this list (default: every block list; an allow list only "
                  "when named; disabled entries and lists are always left out)");
  cmd->footer(std::string(kFormatsHelp) +
              "\nExamples:\n"
              "  hashwall export --bank cases.db --format pdq-csv -o cases.csv\n"
              "  hashwall export --bank cases.db --format threatexchange --label case-17\n"
              "  hashwall export --bank cases.db --format md5 --list videos\n"
              "  hashwall export --bank cases.db --format vpdq -o video-hashes/\n\n"
              "An entry the format cannot carry (a file hash in a PDQ list, a PDQ hash in an\n"
              "MD5 list) is left out and counted on stderr.\n\n"
              "Exit codes: 0 exported, 2 error.");
  cmd->callback([a, &exit_code] { exit_code = run_export(*a); });
}

}  // namespace hashwall::cli
