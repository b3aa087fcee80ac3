// The libmicrohttpd helpers of the HTTP transport (transport.hpp): reading a request's
// headers, arguments, multipart parts and client address, choosing its upload, and the
// answer a Reply becomes.
#include "server/transport.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cctype>
#include <charconv>

namespace hashwall::server::transport_detail {

Answer to_answer(const Reply& r) {
  Answer a;
  a.status = r.status;
  a.body = r.body.dump(-1, ' ', false, json::error_handler_t::replace);
  a.headers = r.headers;
  return a;
}

std::string reason_for(int status) {
  switch (status) {
    case 400:
      return "malformed request";
    case 401:
      return "missing or wrong bearer token";
    case 404:
      return "not found";
    case 405:
      return "method not allowed";
    case 413:
      return "request body too large";
    case 415:
      return "unsupported media type";
    case 503:
      return "service unavailable";
    default:
      break;
  }
  return status >= 500 ? "internal error" : "request failed";
}

std::optional<Upload> upload_of(const Request& rq, std::string& error) {
  auto as_span = [](const std::string& s) {
    return std::span(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  };
  if (!rq.multipart) return Upload{as_span(rq.raw), rq.param_or("name", "upload")};
  for (const char* key : {"image", "file"}) {
    if (const auto* p = rq.part(key))
      return Upload{as_span(p->content), p->filename.empty() ? std::string("upload") : p->filename};
  }
  const Part* only = nullptr;
  for (const auto& part : rq.parts) {
    if (part.filename.empty()) continue;
    if (only) {
      error = "several files in the multipart body: name the image part 'image'";
      return std::nullopt;
    }
    only = &part;
  }
  if (!only) {
    error = "no image in the multipart body: send it as the part 'image'";
    return std::nullopt;
  }
  return Upload{as_span(only->content), only->filename};
}

bool is_hash_content_type(const std::string& content_type) {
  const std::string ct = content_type.substr(0, content_type.find(';'));
  return ct == "application/json" || ct.rfind("text/", 0) == 0;
}

bool starts_with_nocase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

std::string header(MHD_Connection* c, const char* name) {
  const char* v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);
  return v ? std::string(v) : std::string();
}

std::string client_address(MHD_Connection* c) {
  const auto* info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  if (!info || !info->client_addr) return "?";
  const sockaddr* sa = info->client_addr;
  const socklen_t len = sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  char host[NI_MAXHOST];
  if (getnameinfo(sa, len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0) return "?";
  return host;
}

MHD_Result collect_argument(void* cls, MHD_ValueKind, const char* key, const char* value) {
  static_cast<Params*>(cls)->emplace(key ? key : "", value ? value : "");
  return MHD_YES;
}

MHD_Result collect_part(void* cls, MHD_ValueKind, const char* key, const char* filename,
                        const char* content_type, const char*, const char* data, uint64_t off,
                        size_t size) {
  auto* rq = static_cast<Request*>(cls);
  const std::string name = key ? key : "";
  const bool same = !rq->parts.empty() && rq->parts.back().name == name;
  if (!same || (off == 0 && !rq->parts.back().content.empty())) {
    if (rq->parts.size() >= kMaxMultipartParts) {
      rq->malformed = true;
      return MHD_NO;
    }
    rq->parts.push_back(
        Part{name, filename ? filename : "", content_type ? content_type : "", std::string()});
  }
  rq->parts.back().content.append(data, size);
  return MHD_YES;
}

std::optional<std::uint64_t> parse_length(const std::string& s) {
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

}  // namespace hashwall::server::transport_detail
