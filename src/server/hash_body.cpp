// Parser of hash request bodies (hash_body.hpp).
#include "server/hash_body.hpp"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <tuple>

#include "hashlist/hashlist.hpp"

namespace hashwall::server {

namespace {

using json = nlohmann::ordered_json;

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::optional<std::string> parse_hash_json_item(const json& v, HashItem& out) {
  const json* hex = nullptr;
  if (v.is_string()) {
    hex = &v;
  } else if (v.is_object()) {
    for (const char* key : {"pdq", "hash"})
      if (auto it = v.find(key); it != v.end()) hex = &*it;
    // A file hash: exact copies of a file (file-hash lists).
    for (const auto& [key, digits, signal] :
         {std::tuple{"md5", std::size_t{32}, ListSignal::Md5},
          std::tuple{"sha256", std::size_t{64}, ListSignal::Sha256}}) {
      const auto it = v.find(key);
      if (it == v.end()) continue;
      if (hex || out.signal != ListSignal::Pdq)
        return "one of \"pdq\", \"md5\" and \"sha256\" per hash";
      if (!it->is_string()) return std::string(key) + " must be a string";
      std::string s = lower(it->get_ref<const std::string&>());
      if (s.size() != digits || s.find_first_not_of("0123456789abcdef") != std::string::npos)
        return std::string(key) + " must be " + std::to_string(digits) + " hex characters";
      out.signal = signal;
      out.file_hash = std::move(s);
    }
    if (auto it = v.find("quality"); it != v.end() && !it->is_null()) {
      if (!it->is_number_integer() || it->get<std::int64_t>() < 0 || it->get<std::int64_t>() > 100)
        return "quality must be an integer from 0 to 100";
      out.quality = it->get<int>();
    }
    if (auto it = v.find("name"); it != v.end() && !it->is_null()) {
      if (!it->is_string()) return "name must be a string";
      out.name = it->get<std::string>();
    }
  } else {
    return "expected a hex string or an object {\"pdq\": hex}";
  }
  if (out.signal != ListSignal::Pdq) return std::nullopt;
  if (!hex || !hex->is_string()) return "missing the PDQ hash (\"pdq\": 64 hex characters)";
  const auto& s = hex->get_ref<const std::string&>();
  auto h = Hash256::from_hex(s);
  if (!h)
    return "not a PDQ hash: expected 64 hex characters, got " + std::to_string(s.size()) +
           " characters";
  out.hash = *h;
  return std::nullopt;
}

}  // namespace

ParsedHashes parse_hash_body(std::string_view body, std::string_view content_type,
                             std::size_t max_items) {
  ParsedHashes r;
  const std::string ct = lower(content_type.substr(0, content_type.find(';')));
  std::size_t first = body.find_first_not_of(" \t\r\n");
  const bool looks_json =
      first != std::string_view::npos && (body[first] == '{' || body[first] == '[');
  if (first == std::string_view::npos) {
    r.error = "empty body: send one or more PDQ hashes";
    return r;
  }
  if (ct == "application/json" || (ct.empty() && looks_json) ||
      (ct == "application/x-www-form-urlencoded" && looks_json)) {
    const json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      r.error = "malformed JSON";
      return r;
    }
    const json* list = nullptr;
    json single;
    if (j.is_array()) {
      list = &j;
    } else if (j.is_object()) {
      for (const char* key : {"label", "source"}) {
        if (auto it = j.find(key); it != j.end() && !it->is_null()) {
          if (!it->is_string()) {
            r.error = std::string(key) + " must be a string";
            return r;
          }
          (std::string_view(key) == "label" ? r.label : r.source) = it->get<std::string>();
        }
      }
      if (auto it = j.find("hashes"); it != j.end()) {
        if (!it->is_array()) {
          r.error = "\"hashes\" must be an array";
          return r;
        }
        list = &*it;
      } else if (j.contains("hash") || j.contains("pdq") || j.contains("md5") ||
                 j.contains("sha256")) {
        single = json::array({j});
        list = &single;
      } else {
        r.error = "expected {\"hash\": hex} or {\"hashes\": [hex, ...]}";
        return r;
      }
    } else {
      r.error = "expected a JSON object or array";
      return r;
    }
    if (list->size() > max_items) {
      r.error = "too many hashes: " + std::to_string(list->size()) + " (at most " +
                std::to_string(max_items) + ")";
      return r;
    }
    for (std::size_t i = 0; i < list->size(); ++i) {
      HashItem item;
      if (auto e = parse_hash_json_item((*list)[i], item)) {
        r.error = "hash " + std::to_string(i + 1) + ": " + *e;
        r.items.clear();
        return r;
      }
      r.items.push_back(std::move(item));
    }
  } else {
    const ListFormat fmt = ct == "text/csv" ? ListFormat::PdqCsv : ListFormat::Hex;
    ParsedList list = parse_hash_list(body, fmt);
    if (!list.errors.empty()) {
      r.error =
          "line " + std::to_string(list.errors.front().line) + ": " + list.errors.front().reason;
      return r;
    }
    if (list.items.size() > max_items) {
      r.error = "too many hashes: " + std::to_string(list.items.size()) + " (at most " +
                std::to_string(max_items) + ")";
      return r;
    }
    for (auto& li : list.items)
      r.items.push_back(HashItem{li.hash, li.quality, std::move(li.name)});
  }
  if (r.items.empty()) r.error = "no hashes in the body";
  return r;
}

}  // namespace hashwall::server
