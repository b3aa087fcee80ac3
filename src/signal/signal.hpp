// A signal: one way of recognising a known photo (a hash, a set of keypoints, an
// embedding), in the spirit of OpenCV's img_hash::ImgHashBase (compute, compare) and
// FAISS's Index family (add, remove, search). A signal computes a record from a decoded
// image, keeps it in the bank in its own serialised form, and answers searches with a
// margin on one scale shared by every signal, so the matcher can merge and rank them.
//
// Signals register themselves by name (register_signal, or a static SignalRegistration);
// the bank stores their records, builds their indexes and records their parameters; the
// matcher, the reports, `stats`, `check`, the CLI and the HTTP service loop over them.
// docs/DESIGN.md, "Adding a signal", walks through a complete one.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace hashwall {

struct LoadedImage;  // image/load.hpp

// A record in its stored form: bytes only the signal interprets.
using SignalRecord = std::string;
// Parameters as recorded in a bank: key -> value, both text.
using SignalParams = std::map<std::string, std::string>;

// What a query carries for one signal: the image as given first, then the variants the
// signal also tries (its mirror image, rotations); a match names the form that found it.
struct SignalQuery {
  std::vector<SignalRecord> forms;
};

// One entry found by a signal's search.
struct SignalMatch {
  std::int64_t id = 0;
  // How far past the signal's threshold, on the scale every signal shares: 0 exactly at the
  // threshold, 1 certain, -1 twice as far on the wrong side. >= 0 is a match.
  double margin = 0;
  int form = 0;  // which query form came nearest
  // The signal's own measure (a distance, a similarity, ...), reported as it is.
  nlohmann::ordered_json evidence = nlohmann::ordered_json::object();
  // What the signal's own tools use and reports leave out (query --draw's inlier pairs).
  nlohmann::ordered_json extra;
};

// One signal's search structure over the bank's records. Built by the bank from the
// stored records and kept current as entries are added and removed.
class SignalIndex {
 public:
  virtual ~SignalIndex() = default;
  virtual std::string type() const = 0;  // e.g. "flat"
  // Throws std::exception on a record it cannot read; the bank then leaves the row out
  // (check() names it).
  virtual void add(std::int64_t id, std::string_view record) = 0;
  // Called after a batch of add()s and before searches (which may then run concurrently):
  // where an index builds a structure over its rows (an HNSW graph), it does it here.
  virtual void prepare() {}
  // Whether remove() works in place; when it does not (an IVF whose lists would have to be
  // assigned again), the bank builds the index afresh from the records after a removal,
  // outside the lock searches share.
  virtual bool can_remove() const { return true; }
  virtual void remove(std::span<const std::int64_t> ids) = 0;
  // A derived structure worth keeping next to the bank, so that the next process need
  // not build it (the local features' IVF layout): its bytes after prepare() ("" when it
  // has none), and restoring it over the same records added in the same order instead of
  // prepare() (false, with nothing changed, when it does not fit). The bank keeps the
  // file ("<bank>.<signal>-index", docs/BANK_FORMAT.md) with its generation and a checksum.
  virtual std::string cache() const { return {}; }
  virtual bool restore(std::string_view /*cache*/) { return false; }
  // Entries whose margin under `decision` (the bank's recorded parameters, or a caller's
  // override that Signal::validate accepted) is at least min_margin (0: matches only; down
  // to -1 for near misses), highest margin first, ties by id, at most k (an index that
  // verifies a bounded set of candidates, as local does, may return them all, in its own
  // order). Below -1: whatever the index examined, for diagnostics (local: every verified
  // candidate, matched or not, once per form). Throws Error{Usage} for a query form the
  // index cannot compare with its records.
  virtual std::vector<SignalMatch> search(const SignalQuery& query, const SignalParams& decision,
                                          double min_margin, std::size_t k) const = 0;
  virtual std::size_t size() const = 0;
  virtual std::size_t memory_bytes() const = 0;
};

class Signal {
 public:
  virtual ~Signal() = default;
  // Lowercase letters, digits and '-': the name in --signals, in the bank and in JSON.
  virtual std::string name() const = 0;
  // One line for --help: what it finds.
  virtual std::string summary() const = 0;
  // Whether it needs the image in colour (the other signals still see the same pixels:
  // a colour decode is kept beside the grey one, LoadedImage::colour()).
  virtual bool wants_colour() const { return false; }
  // The least short side, in pixels, of the decode it computes from (LoadOptions::
  // detail_min_side): local features need more pixels than PDQ's 256. 0: any.
  virtual int min_decode_side() const { return 0; }

  // How records are computed (algorithm version, sizes, model): recorded in a new bank;
  // a bank that recorded other values is refused, since its records were made another way.
  virtual SignalParams compute_params() const { return {}; }
  // How matches are decided (thresholds): recorded in a new bank and read back from it, so
  // a bank keeps the decision it was built with. validate() says why values are not
  // acceptable ("" when they are).
  virtual SignalParams decision_defaults() const { return {}; }
  virtual std::string validate(const SignalParams& /*decision*/) const { return {}; }

  // The record an indexed image gets; nullopt when there is nothing to record (e.g. too
  // few features). Throws on images it cannot handle.
  virtual std::optional<SignalRecord> compute(const LoadedImage& image) const = 0;
  // A query's forms; by default the record alone.
  virtual SignalQuery compute_query(const LoadedImage& image) const;
  // How the matcher searches: whether a query's forms are tried one at a time, each only
  // when the earlier ones found no entry the caller kept (local: the mirror image is a
  // fallback, doubling the cost), rather than all in one search; and whether its search
  // returns every candidate it verified whatever k is (then it is not asked again for more).
  virtual bool tries_forms_in_turn() const { return false; }
  virtual bool returns_all_candidates() const { return false; }
  // "" when a stored record is well formed, else why: add() refuses such a record and
  // check() lists it.
  virtual std::string check_record(std::string_view record) const = 0;
  // "" when two well-formed records of one bank can be compared (e.g. vectors of one
  // length), else why: add() refuses a record that does not fit the bank's others, and
  // check() names one.
  virtual std::string comparable(std::string_view /*stored*/, std::string_view /*record*/) const {
    return {};
  }
  virtual std::unique_ptr<SignalIndex> make_index() const = 0;
  // How many items a well-formed record holds (local: keypoints; by default one), and ""
  // when an index cache file's bytes (SignalIndex::cache) fit `items` items of the bank's
  // well-formed records, else why: `check` notes a cache that would be refused.
  // The matcher's calls per hit. compare(): evidence for one entry's stored record, for an
  // entry another signal found (PDQ: every hit reports its distance); nullopt when the
  // signal does not compare single records. may_decide() and may_decide_for(): whether the
  // signal may decide for this query, and for an entry with this record, under `decision`
  // (PDQ's quality gate). A query no signal may decide for is "low-quality"; an entry this
  // signal may not decide for is not a hit of its search, and its evidence, when reported,
  // does not count towards the hit's score. compares_records(): whether the matcher should
  // fetch entries' records for compare() and may_decide_for() (Bank::record; cheap where the
  // record sits in the entry's own row, as PDQ's does).
  virtual bool compares_records() const { return false; }
  virtual std::optional<SignalMatch> compare(const SignalQuery& /*query*/,
                                             std::string_view /*record*/,
                                             const SignalParams& /*decision*/) const {
    return std::nullopt;
  }
  virtual bool may_decide(const SignalQuery& /*query*/, const SignalParams& /*decision*/) const {
    return true;
  }
  virtual bool may_decide_for(std::string_view /*record*/, const SignalParams& /*decision*/) const {
    return true;
  }
  virtual std::int64_t record_items(std::string_view /*record*/) const { return 1; }
  virtual std::string check_cache(std::string_view /*cache*/, std::int64_t /*items*/) const {
    return {};
  }
};

// The built-in signals: pdq (src/pdq/pdq_signal.hpp), local (src/local/local_signal.hpp)
// and embed (src/embed/embed_signal.hpp), registered by the bank (register_builtin_signal).
// A registered signal may not take these names.
inline constexpr const char* kBuiltinSignals[] = {"pdq", "local", "embed"};
bool is_builtin_signal(std::string_view name) noexcept;

// Throws std::invalid_argument for an invalid or taken name.
void register_signal(std::shared_ptr<const Signal> signal);
// For the built-in signals' own folders (a name in kBuiltinSignals): registers it unless
// a signal of that name already is.
void register_builtin_signal(std::shared_ptr<const Signal> signal);
// nullptr when no signal of that name is registered (built-in or not).
const Signal* find_signal(std::string_view name);
// The signals registered from outside the built-ins, in registration order.
std::vector<const Signal*> registered_signals();

// Registers a signal during static initialisation:
//   static const SignalRegistration reg(std::make_shared<MySignal>());
struct SignalRegistration {
  explicit SignalRegistration(std::shared_ptr<const Signal> signal) {
    register_signal(std::move(signal));
  }
};

// The built-in names, then the registered ones, comma separated ("pdq, local, embed, ...").
std::string known_signals();
// "" when every name is a known signal, else why.
std::string unknown_signal(const std::vector<std::string>& names);
// The names in canonical order (built-ins, then registration order), duplicates removed.
std::vector<std::string> canonical_signals(const std::vector<std::string>& names);

// Params as recorded in the bank's meta (a JSON object of strings), and back (nullopt when
// the text is not such an object).
std::string params_text(const SignalParams& p);
std::optional<SignalParams> parse_params(std::string_view text);

}  // namespace hashwall
