// Private to src/server: the pieces of the HTTP transport below HttpServer::Impl
// (server_impl.hpp): the bounded worker queue, the memory budget requests share, a
// connection's and a request's state, and the libmicrohttpd helpers that read a request
// (transport.cpp).
#pragma once

#include <microhttpd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "server/server.hpp"

namespace hashwall::server::transport_detail {

using Clock = std::chrono::steady_clock;

// Workers with a bounded wait list: push() refuses instead of queueing past max_waiting.
class WorkQueue {
 public:
  WorkQueue(std::size_t workers, std::size_t max_waiting, std::atomic<std::int64_t>* depth)
      : max_waiting_(max_waiting), depth_(depth) {
    for (std::size_t i = 0; i < workers; ++i) threads_.emplace_back([this] { work(); });
  }
  ~WorkQueue() { shutdown(); }
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  bool push(std::function<void()> job) {
    {
      std::lock_guard lock(mu_);
      if (shut_ || jobs_.size() >= max_waiting_) return false;
      jobs_.push_back(std::move(job));
      if (depth_) depth_->store(static_cast<std::int64_t>(jobs_.size()));
    }
    cv_.notify_one();
    return true;
  }
  // Runs what is queued, then joins the workers.
  void shutdown() {
    {
      std::lock_guard lock(mu_);
      if (shut_) return;
      shut_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

 private:
  void work() {
    for (;;) {
      std::function<void()> job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return !jobs_.empty() || shut_; });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
        if (depth_) depth_->store(static_cast<std::int64_t>(jobs_.size()));
      }
      job();
    }
  }

  std::size_t max_waiting_;
  std::atomic<std::int64_t>* depth_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool shut_ = false;
  std::vector<std::thread> threads_;
};

// Memory held by requests (bodies, and answers not yet read), in all and per client
// address: one address may hold at most its share, so that one client trickling large
// uploads cannot keep everyone else's out.
class Budget {
 public:
  Budget(std::uint64_t total, std::uint64_t per_address)
      : total_(total), per_address_(per_address) {}
  bool take(const std::string& address, std::uint64_t n) {
    std::lock_guard lock(mu_);
    std::uint64_t& mine = by_address_[address];
    if (used_ + n > total_ || mine + n > per_address_) {
      if (mine == 0) by_address_.erase(address);
      return false;
    }
    used_ += n;
    mine += n;
    return true;
  }
  void give(const std::string& address, std::uint64_t n) {
    std::lock_guard lock(mu_);
    used_ -= std::min(used_, n);
    const auto it = by_address_.find(address);
    if (it == by_address_.end()) return;
    it->second -= std::min(it->second, n);
    if (it->second == 0) by_address_.erase(it);
  }

 private:
  const std::uint64_t total_, per_address_;
  std::mutex mu_;
  std::uint64_t used_ = 0;
  std::unordered_map<std::string, std::uint64_t> by_address_;
};

// Where a connection is, for its deadline (Impl::sweep).
enum class Phase {
  Fresh,      // accepted; its first request is arriving: request_time from the accept
  Idle,       // kept alive after an answer: keep_alive until the next request line
  Receiving,  // request line seen, headers or body arriving: request_time
  Working,    // complete, with a worker (or waiting for one): no deadline here
  Answering,  // answer queued, being written: timeout
};

struct Request;

struct Conn {
  int fd = -1;
  Phase phase = Phase::Fresh;
  Clock::time_point since;
  std::size_t requests = 0;
  bool closing = false;        // shut down by the server
  Request* current = nullptr;  // the request being received or answered
};

struct Part {
  std::string name, filename, content_type, content;
};

struct Answer {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Answer to_answer(const Reply& r);

// One request, from its request line to its answer; owned by its connection.
struct Request {
  Conn* conn = nullptr;
  MHD_Connection* mhd = nullptr;
  Clock::time_point start;
  bool headers_seen = false;
  bool has_body = false;  // a Content-Length above 0, or a Transfer-Encoding
  Endpoint endpoint = Endpoint::Other;
  std::string method, path, addr, content_length, content_type;
  std::optional<std::string> authorization;
  Role role = Role::Match;
  std::string caller = "-";  // the token's name, for the access log
  Params params;
  MHD_PostProcessor* pp = nullptr;
  bool multipart = false;
  bool malformed = false;  // the multipart body could not be parsed
  std::string raw;
  std::vector<Part> parts;
  std::uint64_t received = 0;    // body bytes, as sent
  std::uint64_t body_limit = 0;  // the most body bytes this endpoint takes (set with the headers)
  std::uint64_t reserved = 0;    // of the shared memory budget (Impl::budget), for `addr`
  Budget* budget = nullptr;
  bool submitted = false;       // handed to a worker; the connection is suspended
  std::optional<Answer> ready;  // the worker's answer, queued when the connection resumes
  int status = 0;               // as answered

  ~Request() {
    if (pp) MHD_destroy_post_processor(pp);
    if (budget && reserved) budget->give(addr, reserved);
  }
  const Part* part(const std::string& name) const {
    for (const auto& p : parts)
      if (p.name == name) return &p;
    return nullptr;
  }
  std::string param_or(const char* key, std::string fallback = {}) const {
    if (auto it = params.find(key); it != params.end()) return it->second;
    if (const auto* p = part(key)) return p->content;  // multipart text field
    return fallback;
  }
};

std::string reason_for(int status);

struct Upload {
  std::span<const std::uint8_t> bytes;
  std::string name;
};

// The image of a request: the multipart part named 'image' or 'file' (or the only file
// part), else the raw body.
std::optional<Upload> upload_of(const Request& rq, std::string& error);

bool is_hash_content_type(const std::string& content_type);
bool starts_with_nocase(std::string_view s, std::string_view prefix);
std::string header(MHD_Connection* c, const char* name);
std::string client_address(MHD_Connection* c);
MHD_Result collect_argument(void* cls, MHD_ValueKind, const char* key, const char* value);

// Multipart parts as libmicrohttpd's post processor delivers them: a part's data may come
// in several calls (off > 0 continues it).
MHD_Result collect_part(void* cls, MHD_ValueKind, const char* key, const char* filename,
                        const char* content_type, const char*, const char* data, uint64_t off,
                        size_t size);

std::optional<std::uint64_t> parse_length(const std::string& s);

}  // namespace hashwall::server::transport_detail
