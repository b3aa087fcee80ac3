// A video's vPDQ hashes as a bank keeps them (the "vpdq" signal's record, vpdq_signal.hpp),
// Meta's vpdq-hash-video files read back, and vPDQ's matching rule. Pure: bytes and text in,
// values out.
//
// vPDQ's matching rule (python-threatexchange, vpdq_index.py and vpdq_util.py): frames whose
// quality is under the quality threshold (50) take no part; identical hashes count once (a
// video's "unique frames"); a query frame matches an entry frame within the distance
// threshold (31, inclusive); the query's share of unique frames that match some entry frame
// must reach the query threshold (80 %), and the entry's share that match some query frame
// the entry threshold (0 %: a clip inside a longer video matches).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "video/vpdq.hpp"

namespace hashwall {

// A video's frames, sorted by timestamp, and its length (0: unknown; the last frame then
// ends where it starts).
struct VpdqVideo {
  std::vector<VpdqFrame> frames;
  double duration_s = 0;
};

// Frames a record holds at most: a 4 h video (VideoLimits) at 7 distinct frames a second
// after pruning. A record is 41 bytes a frame, so at most 4.1 MB.
inline constexpr std::size_t kMaxVpdqRecordFrames = 100'000;

// Near-identical neighbours are dropped before a video is stored: a frame is kept when its
// distance to the last kept frame is over this (prune_vpdq). A
// dropped frame is then within 6 bits of one kept (its time span joins that frame's), so
// a query frame within 25 bits of it is still within 31 of a kept one; 6 bits is what
// re-encoding the same frame moves PDQ by (docs/VIDEO.md, conformance table: max 6).
inline constexpr int kVpdqPruneDistance = 6;

// Keeps a frame when it is more than `distance` from the last frame kept (the first is
// always kept), or when it reaches `min_quality` and the last kept did not (a fade-in's
// dark first frame does not stand for the scene, which the quality filter would then
// drop whole); frames keep their order. Entries are pruned; queries are not (their shares
// count their unique frames, as python-threatexchange counts them).
std::vector<VpdqFrame> prune_vpdq(std::span<const VpdqFrame> frames, int distance,
                                  int min_quality = 50);

// The record: "HWVQ", version 1, u32 frame count, u32 duration in ms, then per frame the
// 32 hash bytes, its quality (0..100), u32 frame number and u32 timestamp in ms (all
// little-endian), timestamps non-decreasing. Throws Error{Usage} for more frames than
// kMaxVpdqRecordFrames or a time past u32 ms.
std::string encode_vpdq_record(const VpdqVideo& video);
// nullopt when `bytes` is not a well-formed record; *why (when given) says why.
std::optional<VpdqVideo> decode_vpdq_record(std::string_view bytes, std::string* why = nullptr);
std::size_t vpdq_record_frames(std::string_view bytes);  // 0 when malformed

// Meta's vpdq-hash-video output: `frame_number,quality,pdq_hex,timestamp` lines (blank
// lines and '#' comments skipped, CRLF tolerated). Every bad line is reported by number;
// the frames come back sorted by timestamp.
struct ParsedVpdq {
  VpdqVideo video;
  std::vector<std::pair<int, std::string>> errors;  // (1-based line, reason)
};
ParsedVpdq parse_vpdq_text(std::string_view text);
// The same in python-threatexchange's serialisation (its `vpdq` signal-type lines): a JSON
// array of "pdq_hex,quality,timestamp" strings. nullopt with *why when it is not one.
std::optional<VpdqVideo> parse_vpdq_json(std::string_view text, std::string* why);
std::string vpdq_json(const VpdqVideo& video);

struct VpdqRule {
  int distance = 31;          // inclusive
  int min_quality = 50;       // frames below take no part
  double query_percent = 80;  // of the query's unique frames that must match
  double entry_percent = 0;   // of the entry's unique frames that must match
};

// Time spans [from, to) in seconds where frames flagged in `matched` show: frame i runs
// from its timestamp to the next frame's (the last to the video's end); spans less than
// `join_gap` seconds apart are joined (a query sampled once a second meets an entry's
// frames a second apart: one span, not one per frame).
std::vector<std::pair<double, double>> vpdq_spans(const VpdqVideo& video,
                                                  const std::vector<bool>& matched,
                                                  double join_gap = 0);

// One query against one entry under `rule`, brute force (tests hold the index to it).
struct VpdqComparison {
  std::size_t query_frames = 0, entry_frames = 0;    // unique frames taking part
  std::size_t query_matched = 0, entry_matched = 0;  // of them, matched
  double query_percent = 0, entry_percent = 0;
  int best_distance = 256;
  bool match = false;
};
VpdqComparison vpdq_compare(const VpdqVideo& query, const VpdqVideo& entry, const VpdqRule& rule);

// How far past the rule a pair of shares is, on the signals' shared scale (signal.hpp): the
// query share's margin, (p - t) / (100 - t) at or over the threshold t and (p - t) / t
// under it; the entry share's the same way when its threshold is over 0, the lower of the
// two counting.
double vpdq_margin(double query_percent, double entry_percent, const VpdqRule& rule);

}  // namespace hashwall
