#include "hashlist/hashlist.hpp"

#include <cstdio>
#include <utility>
#include <variant>

#include "core/error.hpp"
#include "core/text.hpp"

namespace hashwall {

std::optional<ListFormat> parse_list_format(std::string_view name) {
  if (name == "pdq-csv") return ListFormat::PdqCsv;
  // "hma": this format's name before it was named for what it is.
  if (name == "threatexchange" || name == "hma") return ListFormat::ThreatExchange;
  if (name == "hex") return ListFormat::Hex;
  if (name == "md5") return ListFormat::Md5;
  if (name == "sha256") return ListFormat::Sha256;
  return std::nullopt;
}

const char* list_format_name(ListFormat format) noexcept {
  switch (format) {
    case ListFormat::PdqCsv:
      return "pdq-csv";
    case ListFormat::ThreatExchange:
      return "threatexchange";
    case ListFormat::Hex:
      return "hex";
    case ListFormat::Md5:
      return "md5";
    case ListFormat::Sha256:
      return "sha256";
  }
  return "unknown";
}

bool format_carries(ListFormat format, ListSignal signal) noexcept {
  switch (format) {
    case ListFormat::PdqCsv:
    case ListFormat::Hex:
      return signal == ListSignal::Pdq;
    case ListFormat::Md5:
      return signal == ListSignal::Md5;
    case ListFormat::Sha256:
      return signal == ListSignal::Sha256;
    case ListFormat::ThreatExchange:
      return true;
  }
  return false;
}

namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";
constexpr std::string_view kSpace = " \t\r\f\v";

// A piece of a line together with where it starts, so that reasons can name the column
// a text editor shows (1-based, counted in bytes after the BOM).
struct Field {
  std::string_view text;
  std::size_t column = 1;
};

Field trim(Field f) {
  const std::size_t first = f.text.find_first_not_of(kSpace);
  if (first == std::string_view::npos)
    return {f.text.substr(f.text.size()), f.column + f.text.size()};
  const std::size_t last = f.text.find_last_not_of(kSpace);
  return {f.text.substr(first, last - first + 1), f.column + first};
}

// Splits at the first occurrence of `sep`; the second half is nullopt when absent.
std::pair<Field, std::optional<Field>> split_once(Field f, char sep) {
  const std::size_t at = f.text.find(sep);
  if (at == std::string_view::npos) return {f, std::nullopt};
  return {{f.text.substr(0, at), f.column}, Field{f.text.substr(at + 1), f.column + at + 1}};
}

std::pair<Field, std::optional<Field>> split_at_space(Field f) {
  const std::size_t at = f.text.find_first_of(kSpace);
  if (at == std::string_view::npos) return {f, std::nullopt};
  return {{f.text.substr(0, at), f.column}, trim({f.text.substr(at), f.column + at})};
}

bool is_hex_digit(char c) noexcept {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// How a character appears in a reason: printable ASCII as itself, a whole UTF-8
// sequence as itself, anything else as \xNN so that the message stays one clean line.
std::string describe_char(std::string_view text, std::size_t at) {
  const auto c = static_cast<unsigned char>(text[at]);
  if (c >= 0x20 && c < 0x7f) return std::string(1, static_cast<char>(c));
  if (c == '\t') return "\\t";
  std::size_t len = 0;
  if ((c & 0xE0) == 0xC0)
    len = 2;
  else if ((c & 0xF0) == 0xE0)
    len = 3;
  else if ((c & 0xF8) == 0xF0)
    len = 4;
  if (len > 0 && at + len <= text.size()) {
    bool valid = true;
    for (std::size_t k = 1; k < len; ++k)
      valid = valid && (static_cast<unsigned char>(text[at + k]) & 0xC0) == 0x80;
    if (valid) return std::string(text.substr(at, len));
  }
  char buf[8];
  std::snprintf(buf, sizeof buf, "\\x%02X", static_cast<unsigned>(c));
  return buf;
}

// A hash, or the reason the field is not one. The first non-hex character is reported
// before the length, because a stray character (a `0x` prefix, a space, a comma from
// another format) is the more useful thing to point at.
std::variant<Hash256, std::string> read_hash(Field f) {
  if (f.text.empty()) return std::string("hash is missing");
  for (std::size_t i = 0; i < f.text.size(); ++i) {
    if (!is_hex_digit(f.text[i]))
      return "hash contains a non-hex character '" + describe_char(f.text, i) + "' at column " +
             std::to_string(f.column + i);
  }
  if (f.text.size() != 64)
    return "hash has " + std::to_string(f.text.size()) + " hex characters, expected 64";
  return *Hash256::from_hex(f.text);
}

// A file digest of `digits` hex characters (MD5: 32, SHA-256: 64), lowercased, or the
// reason the field is not one.
std::variant<std::string, std::string> read_digest(Field f, std::size_t digits, const char* what) {
  using R = std::variant<std::string, std::string>;
  if (f.text.empty()) return R(std::in_place_index<1>, std::string(what) + " is missing");
  for (std::size_t i = 0; i < f.text.size(); ++i)
    if (!is_hex_digit(f.text[i]))
      return R(std::in_place_index<1>, std::string(what) + " contains a non-hex character '" +
                                           describe_char(f.text, i) + "' at column " +
                                           std::to_string(f.column + i));
  if (f.text.size() != digits)
    return R(std::in_place_index<1>, std::string(what) + " has " + std::to_string(f.text.size()) +
                                         " hex characters, expected " + std::to_string(digits));
  std::string out(f.text);
  for (char& c : out)
    if (c >= 'A' && c <= 'F') c = static_cast<char>(c - 'A' + 'a');
  return R(std::in_place_index<0>, std::move(out));
}

// PDQ quality is an integer 0..100 (pdq/README.md); no sign, no decimals.
std::optional<int> read_quality(std::string_view text) {
  if (text.empty() || text.size() > 3) return std::nullopt;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  if (value > 100) return std::nullopt;
  return value;
}

// A line's item, or the reason it was refused (with the unsupported signal type, if that
// was the reason).
using LineResult = std::variant<ListItem, ListError>;

LineResult refused(std::string reason) { return ListError{0, std::move(reason), {}}; }

LineResult file_hash_item(Field f, ListSignal signal) {
  const bool md5 = signal == ListSignal::Md5;
  auto d = read_digest(f, md5 ? 32 : 64, md5 ? "MD5" : "SHA-256");
  if (d.index() == 1) return refused(std::move(std::get<1>(d)));
  ListItem item;
  item.signal = signal;
  item.file_hash = std::move(std::get<0>(d));
  return item;
}

LineResult parse_hex_line(Field line) {
  auto hash = read_hash(line);
  if (auto* reason = std::get_if<std::string>(&hash)) return refused(std::move(*reason));
  ListItem item{std::get<Hash256>(hash), std::nullopt, {}, 0};
  return item;
}

// Meta's pdq-photo-hasher prints `hash,quality,filename`. The name is everything after
// the second comma, verbatim (file names may hold commas). An empty quality field means
// "unknown" (what write_hash_list emits for items without one); a missing one is an
// error, because then the line is not in this format at all.
LineResult parse_pdq_csv_line(Field line) {
  auto [hash_field, rest] = split_once(line, ',');
  hash_field = trim(hash_field);
  auto hash = read_hash(hash_field);
  if (auto* reason = std::get_if<std::string>(&hash)) return refused(std::move(*reason));
  if (!rest) return refused("quality field is missing: expected 'hash,quality,filename'");

  auto [quality_field, name] = split_once(*rest, ',');
  quality_field = trim(quality_field);
  std::optional<int> quality;
  if (!quality_field.text.empty()) {
    quality = read_quality(quality_field.text);
    if (!quality)
      return refused("quality '" + std::string(quality_field.text) +
                     "' is not an integer from 0 to 100");
  }
  if (name && name->text.size() > kMaxListNameBytes)
    return refused("name of " + std::to_string(name->text.size()) + " bytes is longer than the " +
                   std::to_string(kMaxListNameBytes) + " a bank stores");
  ListItem item{std::get<Hash256>(hash), quality, name ? std::string(name->text) : std::string(),
                0};
  return item;
}

// python-threatexchange's signal lines (exchanges/impl/file_api.py): `<signal type>
// <signal>`, split at the first space. Its type names: pdq, video_md5, video_sha256,
// vpdq, raw_text, url, url_md5, trend_query (photo_md5 in older versions).
LineResult parse_threatexchange_line(Field line) {
  auto [type, rest] = split_at_space(line);
  std::string t(type.text);
  for (char& c : t)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  const bool pdq = t == "pdq";
  const bool md5 = t == "video_md5" || t == "photo_md5";
  const bool sha = t == "video_sha256";
  const bool vpdq = t == "vpdq";
  if (!rest) {
    if (pdq || md5 || sha || vpdq)
      return refused("the signal is missing after the signal type '" + t + "'");
    if (Hash256::from_hex(type.text))
      return refused("signal type is missing: expected 'pdq <hash>'");
    return refused("expected '<signal type> <signal>', found '" + std::string(type.text) + "'");
  }
  if (vpdq) {
    // A JSON array (python-threatexchange writes it with json.dumps: ", " between items, so
    // the signal runs to the end of the line).
    const std::string_view v = rest->text;
    if (v.size() < 2 || v.front() != '[' || v.back() != ']')
      return refused("a vpdq signal is a JSON array of \"pdq_hex,quality,timestamp\" strings");
    ListItem item{Hash256{}, std::nullopt, {}, 0, ListSignal::Vpdq, {}, std::string(v)};
    return item;
  }
  if (!pdq && !md5 && !sha) {
    static const char* const kKnown[] = {"raw_text", "url", "url_md5", "trend_query"};
    for (const char* k : kKnown)
      if (t == k) {
        ListError e{0,
                    "signal type '" + t +
                        "' is not one hashwall matches (it matches pdq, photo_md5, video_md5, "
                        "video_sha256 and vpdq)",
                    t};
        return e;
      }
    return refused("unknown signal type '" + std::string(type.text) +
                   "' (hashwall matches pdq, photo_md5, video_md5, video_sha256 and vpdq)");
  }
  auto [hash_field, extra] = split_at_space(*rest);
  if (extra)
    return refused("unexpected text '" + std::string(extra->text) +
                   "' after the signal at column " + std::to_string(extra->column));
  if (md5 || sha) return file_hash_item(hash_field, md5 ? ListSignal::Md5 : ListSignal::Sha256);
  auto hash = read_hash(hash_field);
  if (auto* reason = std::get_if<std::string>(&hash)) return refused(std::move(*reason));
  ListItem item{std::get<Hash256>(hash), std::nullopt, {}, 0};
  return item;
}

std::string escape_line_breaks(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == '\n')
      out += "\\n";
    else if (c == '\r')
      out += "\\r";
    else
      out += c;
  }
  return out;
}

}  // namespace

ParsedList parse_hash_list(std::string_view text, ListFormat format) {
  if (text.starts_with(kBom)) text.remove_prefix(kBom.size());
  ParsedList out;
  int line_number = 0;
  while (!text.empty()) {
    ++line_number;
    const std::size_t end = text.find('\n');
    const std::string_view raw = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);

    const Field line = trim({raw, 1});
    if (line.text.empty() || line.text.front() == '#') continue;

    LineResult result;
    switch (format) {
      case ListFormat::PdqCsv:
        result = parse_pdq_csv_line(line);
        break;
      case ListFormat::ThreatExchange:
        result = parse_threatexchange_line(line);
        break;
      case ListFormat::Hex:
        result = parse_hex_line(line);
        break;
      case ListFormat::Md5:
        result = file_hash_item(line, ListSignal::Md5);
        break;
      case ListFormat::Sha256:
        result = file_hash_item(line, ListSignal::Sha256);
        break;
    }
    if (auto* item = std::get_if<ListItem>(&result)) {
      item->line = line_number;
      out.items.push_back(std::move(*item));
    } else {
      auto& e = std::get<ListError>(result);
      e.line = line_number;
      out.errors.push_back(std::move(e));
    }
  }
  return out;
}

// pdq-csv always gets three fields, like Meta's hasher prints them, so that column-based
// readers see a constant shape. An unknown quality is written as an empty field
// (`hex,,name`): a reader that wants only the hash still finds it first, a CSV reader
// sees a missing value rather than a number, and parse_hash_list reads it back as
// unknown. Writing 0 or 100 instead would invent a quality that was never measured.
void write_hash_list(std::ostream& out, ListFormat format, std::span<const ListItem> items) {
  for (const ListItem& item : items) {
    if (!format_carries(format, item.signal))
      throw Error(ErrorKind::Usage, "",
                  std::string("a ") + list_format_name(format) + " list cannot carry " +
                      (item.signal == ListSignal::Md5      ? "an MD5"
                       : item.signal == ListSignal::Sha256 ? "a SHA-256"
                       : item.signal == ListSignal::Vpdq   ? "a video's vPDQ hashes"
                                                           : "a PDQ hash"));
    switch (format) {
      case ListFormat::PdqCsv: {
        if (item.quality && (*item.quality < 0 || *item.quality > 100))
          throw Error(ErrorKind::Usage, "",
                      "quality " + std::to_string(*item.quality) + " is not from 0 to 100");
        out << item.hash.hex() << ',';
        if (item.quality) out << *item.quality;
        // A line break would split the record: written as \n (or \r). A name that a
        // spreadsheet would run as a formula gets a leading apostrophe.
        out << ',' << neutralise_formula(escape_line_breaks(item.name)) << '\n';
        break;
      }
      // A file hash goes out under python-threatexchange's present type names (its
      // photo_md5 is gone): video_md5, video_sha256.
      case ListFormat::ThreatExchange:
        if (item.signal == ListSignal::Pdq)
          out << "pdq " << item.hash.hex() << '\n';
        else if (item.signal == ListSignal::Vpdq)
          out << "vpdq " << item.vpdq << '\n';
        else
          out << (item.signal == ListSignal::Md5 ? "video_md5 " : "video_sha256 ") << item.file_hash
              << '\n';
        break;
      case ListFormat::Hex:
        out << item.hash.hex() << '\n';
        break;
      case ListFormat::Md5:
      case ListFormat::Sha256:
        out << item.file_hash << '\n';
        break;
    }
  }
}

}  // namespace hashwall
