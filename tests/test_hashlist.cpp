// Hash lists (src/hashlist): pdq-csv, hma and hex, read and written.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cctype>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.hpp"
#include "hashlist/hashlist.hpp"

using namespace hashwall;

namespace {

// A pdq-photo-hasher example hash and two made-up ones.
const std::string kHashA = "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22";
const std::string kHashB = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kHashC = "ffffffffffffffffffffffffffffffff00000000000000000000000000000000";

Hash256 H(const std::string& hex) { return *Hash256::from_hex(hex); }

std::string write(ListFormat format, const std::vector<ListItem>& items) {
  std::ostringstream out;
  write_hash_list(out, format, items);
  return out.str();
}

// One error, on `line`, with exactly `reason`.
void require_single_error(const ParsedList& list, int line, const std::string& reason) {
  REQUIRE(list.errors.size() == 1);
  CHECK(list.errors[0].line == line);
  CHECK(list.errors[0].reason == reason);
}

}  // namespace

TEST_CASE("list format names round-trip and unknown names are refused", "[hashlist]") {
  for (auto f : {ListFormat::PdqCsv, ListFormat::ThreatExchange, ListFormat::Hex})
    CHECK(parse_list_format(list_format_name(f)) == f);
  CHECK(std::string(list_format_name(ListFormat::PdqCsv)) == "pdq-csv");
  CHECK_FALSE(parse_list_format("csv"));
  CHECK_FALSE(parse_list_format("PDQ-CSV"));
  CHECK_FALSE(parse_list_format(""));
}

TEST_CASE("a pdq-photo-hasher line gives hash quality and file name", "[hashlist]") {
  const auto list = parse_hash_list(kHashA + ",100,aaa-orig.jpg\n", ListFormat::PdqCsv);
  REQUIRE(list.errors.empty());
  REQUIRE(list.items.size() == 1);
  CHECK(list.items[0].hash.hex() == kHashA);
  CHECK(list.items[0].quality == 100);
  CHECK(list.items[0].name == "aaa-orig.jpg");
  CHECK(list.items[0].line == 1);
}

TEST_CASE("a pdq-csv file name keeps every comma after the second one", "[hashlist]") {
  const auto list =
      parse_hash_list(kHashA + ",87,holiday, beach, day 2,final.jpg", ListFormat::PdqCsv);
  REQUIRE(list.errors.empty());
  REQUIRE(list.items.size() == 1);
  CHECK(list.items[0].quality == 87);
  CHECK(list.items[0].name == "holiday, beach, day 2,final.jpg");
}

TEST_CASE("a pdq-csv line with only hash and quality has an empty name", "[hashlist]") {
  const auto list = parse_hash_list(kHashA + ",0\n" + kHashB + ",55,\n", ListFormat::PdqCsv);
  REQUIRE(list.errors.empty());
  REQUIRE(list.items.size() == 2);
  CHECK(list.items[0].quality == 0);
  CHECK(list.items[0].name.empty());
  CHECK(list.items[1].quality == 55);
  CHECK(list.items[1].name.empty());
}

TEST_CASE("an empty pdq-csv quality field reads as an unknown quality", "[hashlist]") {
  const auto list = parse_hash_list(kHashA + ",,x.jpg", ListFormat::PdqCsv);
  REQUIRE(list.errors.empty());
  REQUIRE(list.items.size() == 1);
  CHECK_FALSE(list.items[0].quality.has_value());
  CHECK(list.items[0].name == "x.jpg");
}

TEST_CASE("pdq-csv round-trips with an unknown quality written as an empty field", "[hashlist]") {
  const std::vector<ListItem> items = {
      {H(kHashA), 100, "aaa-orig.jpg", 1},
      {H(kHashB), std::nullopt, "no quality, with comma.png", 2},
      {H(kHashC), 42, "", 3},
  };
  const std::string text = write(ListFormat::PdqCsv, items);
  CHECK(text == kHashA + ",100,aaa-orig.jpg\n" + kHashB + ",,no quality, with comma.png\n" +
                    kHashC + ",42,\n");
  const auto back = parse_hash_list(text, ListFormat::PdqCsv);
  REQUIRE(back.errors.empty());
  REQUIRE(back.items.size() == items.size());
  for (std::size_t i = 0; i < items.size(); ++i) {
    CHECK(back.items[i].hash == items[i].hash);
    CHECK(back.items[i].quality == items[i].quality);
    CHECK(back.items[i].name == items[i].name);
    CHECK(back.items[i].line == static_cast<int>(i) + 1);
  }
}

TEST_CASE(
    "a pdq-csv name with a line break or a spreadsheet formula is written as one harmless line",
    "[hashlist]") {
  // Security review finding 6: one such name used to fail the whole export, and formulas
  // were written as they are.
  const std::vector<ListItem> items = {{H(kHashA), 100, "two\nlines\r.jpg", 1},
                                       {H(kHashA), 90, "=HYPERLINK(\"http://x\")", 2},
                                       {H(kHashA), 90, "+1", 3},
                                       {H(kHashA), 90, "-1", 4},
                                       {H(kHashA), 90, "@SUM(A1)", 5},
                                       {H(kHashA), 90, "\tx", 6},
                                       {H(kHashA), 90, "plain = fine.jpg", 7}};
  std::ostringstream out;
  write_hash_list(out, ListFormat::PdqCsv, items);
  const std::string text = out.str();
  CHECK(std::count(text.begin(), text.end(), '\n') == 7);
  const auto back = parse_hash_list(text, ListFormat::PdqCsv);
  REQUIRE(back.items.size() == 7);
  CHECK(back.items[0].name == "two\\nlines\\r.jpg");
  CHECK(back.items[1].name == "'=HYPERLINK(\"http://x\")");
  CHECK(back.items[2].name == "'+1");
  CHECK(back.items[3].name == "'-1");
  CHECK(back.items[4].name == "'@SUM(A1)");
  CHECK(back.items[5].name == "'\tx");
  CHECK(back.items[6].name == "plain = fine.jpg");
}

TEST_CASE("a pdq-csv name longer than a bank stores is refused with its line", "[hashlist]") {
  const std::string ok = kHashA + ",90," + std::string(kMaxListNameBytes, 'n') + "\n";
  CHECK(parse_hash_list(ok, ListFormat::PdqCsv).errors.empty());
  const std::string long_name = ok + kHashA + ",90," + std::string(kMaxListNameBytes + 1, 'n');
  const auto r = parse_hash_list(long_name, ListFormat::PdqCsv);
  REQUIRE(r.errors.size() == 1);
  CHECK(r.errors[0].line == 2);
  CHECK_THAT(r.errors[0].reason, Catch::Contains("4097 bytes is longer than the 4096"));
}

TEST_CASE("writing a pdq-csv quality outside 0 to 100 is refused", "[hashlist]") {
  const std::vector<ListItem> items = {{H(kHashA), 101, "a.jpg", 1}};
  std::ostringstream out;
  CHECK_THROWS_AS(write_hash_list(out, ListFormat::PdqCsv, items), Error);
}

TEST_CASE("hma round-trips as 'pdq <hex>' lines", "[hashlist]") {
  const std::vector<ListItem> items = {{H(kHashA), 90, "ignored.jpg", 1}, {H(kHashB), {}, "", 2}};
  const std::string text = write(ListFormat::ThreatExchange, items);
  CHECK(text == "pdq " + kHashA + "\npdq " + kHashB + "\n");
  const auto back = parse_hash_list(text, ListFormat::ThreatExchange);
  REQUIRE(back.errors.empty());
  REQUIRE(back.items.size() == 2);
  CHECK(back.items[0].hash == H(kHashA));
  CHECK(back.items[1].hash == H(kHashB));
  CHECK_FALSE(back.items[0].quality.has_value());
  CHECK(back.items[0].name.empty());
}

TEST_CASE("hma lines may use tabs and repeated spaces between type and hash", "[hashlist]") {
  const auto list = parse_hash_list("pdq\t" + kHashA + "\n  pdq    " + kHashB + "  \n",
                                    ListFormat::ThreatExchange);
  REQUIRE(list.errors.empty());
  REQUIRE(list.items.size() == 2);
  CHECK(list.items[1].hash == H(kHashB));
  CHECK(list.items[1].line == 2);
}

TEST_CASE("hex round-trips one hash per line", "[hashlist]") {
  const std::vector<ListItem> items = {{H(kHashC), 3, "x", 1}, {H(kHashA), {}, "", 2}};
  const std::string text = write(ListFormat::Hex, items);
  CHECK(text == kHashC + "\n" + kHashA + "\n");
  const auto back = parse_hash_list(text, ListFormat::Hex);
  REQUIRE(back.errors.empty());
  REQUIRE(back.items.size() == 2);
  CHECK(back.items[0].hash == H(kHashC));
  CHECK(back.items[1].hash == H(kHashA));
}

TEST_CASE("upper-case hex is accepted and written back in lower case", "[hashlist]") {
  std::string upper = kHashA;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (auto [format, line] :
       {std::pair{ListFormat::Hex, upper}, std::pair{ListFormat::ThreatExchange, "PDQ " + upper},
        std::pair{ListFormat::PdqCsv, upper + ",100,A.JPG"}}) {
    const auto list = parse_hash_list(line, format);
    REQUIRE(list.errors.empty());
    REQUIRE(list.items.size() == 1);
    CHECK(list.items[0].hash.hex() == kHashA);
    CHECK(write(format, list.items).find(kHashA) ==
          (format == ListFormat::ThreatExchange ? 4u : 0u));
  }
}

TEST_CASE("a BOM CRLF line ends blank lines comments and padding are tolerated", "[hashlist]") {
  const std::string text = "\xEF\xBB\xBF# exported 2024-05-01\r\n" + kHashA + ",100,a.jpg\r\n" +
                           "\r\n" + "   \t \r\n" + "  # indented comment\r\n" + "  " + kHashB +
                           ",77,b.jpg  \r\n" + kHashC + ",5,c.jpg";  // no final line end
  const auto list = parse_hash_list(text, ListFormat::PdqCsv);
  REQUIRE(list.errors.empty());
  REQUIRE(list.items.size() == 3);
  CHECK(list.items[0].line == 2);
  CHECK(list.items[0].name == "a.jpg");  // no '\r' left on the name
  CHECK(list.items[1].line == 6);
  CHECK(list.items[1].hash == H(kHashB));
  CHECK(list.items[1].name == "b.jpg");
  CHECK(list.items[2].line == 7);
  CHECK(list.items[2].name == "c.jpg");
}

TEST_CASE("a BOM directly before the first hash does not count as a character", "[hashlist]") {
  const auto ok = parse_hash_list("\xEF\xBB\xBF" + kHashA + "\r\n", ListFormat::Hex);
  REQUIRE(ok.errors.empty());
  REQUIRE(ok.items.size() == 1);
  CHECK(ok.items[0].hash == H(kHashA));
  // Columns are counted as an editor shows them, i.e. without the BOM.
  const auto bad = parse_hash_list("\xEF\xBB\xBFzz", ListFormat::Hex);
  require_single_error(bad, 1, "hash contains a non-hex character 'z' at column 1");
}

TEST_CASE("empty input and comment-only input give an empty list without errors", "[hashlist]") {
  for (auto format : {ListFormat::PdqCsv, ListFormat::ThreatExchange, ListFormat::Hex}) {
    for (const std::string text : {"", "\n\n", "\xEF\xBB\xBF", "# nothing here\r\n\r\n"}) {
      const auto list = parse_hash_list(text, format);
      CHECK(list.items.empty());
      CHECK(list.errors.empty());
    }
  }
  CHECK(write(ListFormat::PdqCsv, {}).empty());
}

TEST_CASE("duplicate lines are all kept for the bank to deduplicate", "[hashlist]") {
  const auto list = parse_hash_list(kHashA + "\n" + kHashA + "\n", ListFormat::Hex);
  REQUIRE(list.errors.empty());
  CHECK(list.items.size() == 2);
}

TEST_CASE("a hash one character short is reported with its length and line", "[hashlist]") {
  const std::string short_hash = kHashA.substr(0, 63);
  require_single_error(parse_hash_list("# header\n" + short_hash, ListFormat::Hex), 2,
                       "hash has 63 hex characters, expected 64");
  require_single_error(parse_hash_list(short_hash + ",100,a.jpg", ListFormat::PdqCsv), 1,
                       "hash has 63 hex characters, expected 64");
  require_single_error(parse_hash_list("\n\npdq " + short_hash, ListFormat::ThreatExchange), 3,
                       "hash has 63 hex characters, expected 64");
  require_single_error(parse_hash_list(kHashA + "0", ListFormat::Hex), 1,
                       "hash has 65 hex characters, expected 64");
}

TEST_CASE("a non-hex character is reported with its column in the line", "[hashlist]") {
  std::string bad = kHashA;
  bad[4] = 'g';
  require_single_error(parse_hash_list(bad, ListFormat::Hex), 1,
                       "hash contains a non-hex character 'g' at column 5");
  // Leading spaces and the signal type shift the column as an editor would show it.
  require_single_error(parse_hash_list("  " + bad, ListFormat::Hex), 1,
                       "hash contains a non-hex character 'g' at column 7");
  require_single_error(parse_hash_list("pdq  " + bad, ListFormat::ThreatExchange), 1,
                       "hash contains a non-hex character 'g' at column 10");
  require_single_error(parse_hash_list(bad + ",100,a.jpg", ListFormat::PdqCsv), 1,
                       "hash contains a non-hex character 'g' at column 5");
  require_single_error(parse_hash_list("0x" + kHashA, ListFormat::Hex), 1,
                       "hash contains a non-hex character 'x' at column 2");
}

TEST_CASE("non-printable and non-ASCII characters are shown readably", "[hashlist]") {
  require_single_error(parse_hash_list("ab\x01"
                                       "cd",
                                       ListFormat::Hex),
                       1, "hash contains a non-hex character '\\x01' at column 3");
  require_single_error(parse_hash_list("ab\xC3\xA9", ListFormat::Hex), 1,
                       "hash contains a non-hex character '\xC3\xA9' at column 3");
  require_single_error(parse_hash_list("ab\xFF", ListFormat::Hex), 1,
                       "hash contains a non-hex character '\\xFF' at column 3");
}

TEST_CASE("a pdq-csv line given to the hex reader points at the first comma", "[hashlist]") {
  require_single_error(parse_hash_list(kHashA + ",100,a.jpg", ListFormat::Hex), 1,
                       "hash contains a non-hex character ',' at column 65");
}

TEST_CASE("a pdq-csv quality that is not an integer from 0 to 100 is reported", "[hashlist]") {
  for (const std::string q : {"abc", "101", "-1", "+5", "50.0", "1000", "1e2"}) {
    INFO("quality " << q);
    require_single_error(parse_hash_list(kHashA + "," + q + ",a.jpg", ListFormat::PdqCsv), 1,
                         "quality '" + q + "' is not an integer from 0 to 100");
  }
  // Spaces around the quality are padding, not part of it.
  const auto padded = parse_hash_list(kHashA + ", 64 ,a.jpg", ListFormat::PdqCsv);
  REQUIRE(padded.errors.empty());
  CHECK(padded.items[0].quality == 64);
}

TEST_CASE("a pdq-csv line without a quality field is reported", "[hashlist]") {
  require_single_error(parse_hash_list(kHashA, ListFormat::PdqCsv), 1,
                       "quality field is missing: expected 'hash,quality,filename'");
  require_single_error(parse_hash_list(",100,a.jpg", ListFormat::PdqCsv), 1, "hash is missing");
}

TEST_CASE("a threatexchange line of a type hashwall does not match names the type", "[hashlist]") {
  require_single_error(
      parse_hash_list("md5 d41d8cd98f00b204e9800998ecf8427e", ListFormat::ThreatExchange), 1,
      "unknown signal type 'md5' (hashwall matches pdq, photo_md5, video_md5, "
      "video_sha256 and vpdq)");
  const auto url = parse_hash_list(
      "pdq " + kHashA + "\nurl https://example.com/a b\nvpdq []\nraw_text hello\nvpdq {}\n",
      ListFormat::ThreatExchange);
  REQUIRE(url.items.size() == 2);
  REQUIRE(url.errors.size() == 3);
  CHECK(url.errors[0].line == 2);
  CHECK(url.errors[0].unsupported_type == "url");
  CHECK_THAT(url.errors[0].reason, Catch::Contains("'url' is not one hashwall matches"));
  CHECK(url.errors[1].unsupported_type == "raw_text");
  // A vpdq line is a video's frames (read by the importer); not an array: refused.
  CHECK(url.items[1].signal == ListSignal::Vpdq);
  CHECK(url.items[1].vpdq == "[]");
  CHECK(url.errors[2].line == 5);
  CHECK(url.errors[2].unsupported_type.empty());
  CHECK_THAT(url.errors[2].reason, Catch::Contains("JSON array"));
  // A misspelt type is an error of the list, not a type to skip.
  const auto typo = parse_hash_list("pqd " + kHashA, ListFormat::ThreatExchange);
  REQUIRE(typo.errors.size() == 1);
  CHECK(typo.errors[0].unsupported_type.empty());
}

TEST_CASE("threatexchange file-hash lines are read as lowercase MD5 and SHA-256", "[hashlist]") {
  const std::string md5 = "D41D8CD98F00B204E9800998ECF8427E";
  const std::string sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
  const auto list = parse_hash_list("video_md5 " + md5 + "\nphoto_md5 " + md5 + "\nvideo_sha256 " +
                                        sha + "\nPDQ " + kHashA + "\n",
                                    ListFormat::ThreatExchange);
  REQUIRE(list.errors.empty());
  REQUIRE(list.items.size() == 4);
  CHECK(list.items[0].signal == ListSignal::Md5);
  CHECK(list.items[0].file_hash == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(list.items[1].signal == ListSignal::Md5);
  CHECK(list.items[2].signal == ListSignal::Sha256);
  CHECK(list.items[2].file_hash == sha);
  CHECK(list.items[3].signal == ListSignal::Pdq);
  CHECK(list.items[3].hash == H(kHashA));
  // Written back under python-threatexchange's present names, and read again the same.
  const std::string text = write(ListFormat::ThreatExchange, list.items);
  CHECK(text ==
        "video_md5 d41d8cd98f00b204e9800998ecf8427e\n"
        "video_md5 d41d8cd98f00b204e9800998ecf8427e\n"
        "video_sha256 " +
            sha + "\npdq " + kHashA + "\n");
  CHECK(parse_hash_list(text, ListFormat::ThreatExchange).items.size() == 4);
  require_single_error(parse_hash_list("video_md5 " + md5.substr(1), ListFormat::ThreatExchange), 1,
                       "MD5 has 31 hex characters, expected 32");
  require_single_error(parse_hash_list("video_sha256 " + md5, ListFormat::ThreatExchange), 1,
                       "SHA-256 has 32 hex characters, expected 64");
}

TEST_CASE("md5 and sha256 lists hold one digest a line and carry nothing else", "[hashlist]") {
  const auto m =
      parse_hash_list("# videos\nD41D8CD98F00B204E9800998ECF8427E\r\n\n", ListFormat::Md5);
  REQUIRE(m.errors.empty());
  REQUIRE(m.items.size() == 1);
  CHECK(m.items[0].signal == ListSignal::Md5);
  CHECK(m.items[0].file_hash == "d41d8cd98f00b204e9800998ecf8427e");
  CHECK(m.items[0].line == 2);
  require_single_error(parse_hash_list("d41d8cd98f00b204e9800998ecf8427g", ListFormat::Md5), 1,
                       "MD5 contains a non-hex character 'g' at column 32");
  require_single_error(parse_hash_list(kHashA, ListFormat::Md5), 1,
                       "MD5 has 64 hex characters, expected 32");
  const auto s = parse_hash_list(kHashA + "\n", ListFormat::Sha256);
  REQUIRE(s.items.size() == 1);
  CHECK(s.items[0].signal == ListSignal::Sha256);
  CHECK(write(ListFormat::Sha256, s.items) == kHashA + "\n");
  // A format never silently drops what it cannot carry.
  std::ostringstream out;
  CHECK_THROWS_AS(write_hash_list(out, ListFormat::Hex, s.items), Error);
  CHECK_THROWS_AS(write_hash_list(out, ListFormat::Md5, s.items), Error);
  CHECK(format_carries(ListFormat::ThreatExchange, ListSignal::Md5));
  CHECK_FALSE(format_carries(ListFormat::PdqCsv, ListSignal::Sha256));
  CHECK(parse_list_format("hma") == ListFormat::ThreatExchange);
  CHECK(parse_list_format("threatexchange") == ListFormat::ThreatExchange);
}

TEST_CASE("a threatexchange line missing its type or its signal says which", "[hashlist]") {
  require_single_error(parse_hash_list(kHashA, ListFormat::ThreatExchange), 1,
                       "signal type is missing: expected 'pdq <hash>'");
  require_single_error(parse_hash_list("pdq", ListFormat::ThreatExchange), 1,
                       "the signal is missing after the signal type 'pdq'");
  require_single_error(parse_hash_list("pdq   \r\n", ListFormat::ThreatExchange), 1,
                       "the signal is missing after the signal type 'pdq'");
  require_single_error(parse_hash_list("hello", ListFormat::ThreatExchange), 1,
                       "expected '<signal type> <signal>', found 'hello'");
}

TEST_CASE("a threatexchange line with text after the hash is reported", "[hashlist]") {
  require_single_error(parse_hash_list("pdq " + kHashA + " extra", ListFormat::ThreatExchange), 1,
                       "unexpected text 'extra' after the signal at column 70");
}

TEST_CASE("every bad line is reported and the good lines are still read", "[hashlist]") {
  const std::string text = kHashA + ",100,good1.jpg\n" +        // 1 ok
                           kHashA.substr(1) + ",100,x.jpg\n" +  // 2 short
                           "# comment\n" +                      // 3
                           kHashB + ",high,y.jpg\n" +           // 4 bad quality
                           "\n" +                               // 5
                           kHashC + ",0,good2.jpg\n" +          // 6 ok
                           kHashC + "\n" +                      // 7 no quality
                           "zz" + kHashA.substr(2) + ",9,z\n";  // 8 non-hex
  const auto list = parse_hash_list(text, ListFormat::PdqCsv);
  REQUIRE(list.items.size() == 2);
  CHECK(list.items[0].line == 1);
  CHECK(list.items[1].line == 6);
  REQUIRE(list.errors.size() == 4);
  CHECK(list.errors[0].line == 2);
  CHECK(list.errors[0].reason == "hash has 63 hex characters, expected 64");
  CHECK(list.errors[1].line == 4);
  CHECK(list.errors[1].reason == "quality 'high' is not an integer from 0 to 100");
  CHECK(list.errors[2].line == 7);
  CHECK(list.errors[2].reason == "quality field is missing: expected 'hash,quality,filename'");
  CHECK(list.errors[3].line == 8);
  CHECK(list.errors[3].reason == "hash contains a non-hex character 'z' at column 1");
}
