// `hashwall sync`: pulls one list of another organisation's bank (its `serve`, GET
// /v1/changes) into a list of this bank, page by page, and keeps its place in the bank
// (issue #17, docs/EXCHANGE.md).
//
// Crash safety: a page is applied (idempotently, exchange/feed.hpp), then its cursor is
// written to the bank. A sync killed anywhere, or cut off by the network, resumes from the
// last cursor written: the page it was applying is read and applied again, and finds what
// it had done already done. Nothing is lost, nothing is added twice.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include "bank/bank.hpp"
#include "exchange/feed.hpp"

namespace hashwall {

// The most bytes one page's answer may have (a full page of kFeedPageMax entries is ~1.5
// MB; anything far larger is not a feed).
inline constexpr std::size_t kMaxFeedAnswerBytes = 32u << 20;

struct SyncOptions {
  std::string url;    // the peer's base URL: http(s)://host[:port][/prefix]
  std::string token;  // its bearer token (a read token)
  std::string list;   // the peer's list
  std::string into;   // this bank's list (created like the peer's when missing)
  std::size_t page = kFeedPageDefault;
  int timeout_seconds = 30;  // to connect, and for each read
  std::string ca_file;       // for https: the CA to trust (default: the system's)
};

struct SyncReport {
  std::string peer;        // the peer's address (its base URL, as peer_of writes it)
  std::string checkpoint;  // the cursor now kept in the bank
  std::int64_t pages = 0;
  bool list_created = false;
  std::int64_t list_changes = 0;  // the local list disabled or enabled as the peer's was
  // The peer's bank id: entries and claims name the peer "bank:ID" (its address may change).
  std::string peer_bank;
  // Started again from a snapshot: the peer's log no longer reached the checkpoint (a bank
  // restored from a backup), or another bank answered at the address.
  bool restarted = false;
  ApplyReport applied;
};

// The peer's name in entries and checkpoints: scheme://host:port[/prefix], lower case,
// without a trailing '/'. Throws Error{Usage} for a URL that is not http(s).
std::string peer_of(const std::string& url);

// Pulls pages until the peer has nothing more, applying each and keeping its cursor.
// `progress` is called after each page. Stops between pages when *stop becomes true.
// Throws Error{Io} when the peer cannot be reached or answers with an error (its reason
// included), Error{Format} for an answer that is not a feed page, Error{Usage} when the
// local list exists with the other kind.
SyncReport sync_once(Bank& bank, const SyncOptions& opt,
                     const std::function<void(const SyncReport&)>& progress = {},
                     const std::atomic<bool>* stop = nullptr);

}  // namespace hashwall
