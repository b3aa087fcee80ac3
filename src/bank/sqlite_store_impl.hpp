// Private to src/bank: the SQLite store's class, which its files share (sqlite_store.cpp:
// opening and creating the file, transactions, format, meta, sizes and health;
// sqlite_records.cpp: the entries, the signals' records, the digests and the change log).
// Only the SQLite store includes it; the rest of the bank sees a Store (store.hpp).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bank/sqlite.hpp"
#include "bank/store.hpp"

namespace hashwall::sqlite {

namespace fs = std::filesystem;

// The signals whose records live in the tables of format 2 (`embeddings`; `local_features`,
// a record split into its keypoint and descriptor blobs, local/local_features.hpp) rather
// than in signal_rows (format 3).
inline constexpr const char* kEmbedSignal = "embed";
inline constexpr const char* kLocalSignal = "local";

class SqliteStore : public Store {
 public:
  ~SqliteStore() override;

  // sqlite_store.cpp: the file, transactions, format and meta.
  void open(const fs::path& path, OpenMode mode, bool create_allowed,
            const std::vector<std::pair<std::string, std::string>>& initial_meta);
  std::unique_ptr<Transaction> begin_read() override;
  std::unique_ptr<Transaction> begin_write() override;
  const std::string& where() const override { return conn_.path; }
  int format_version() const override { return format_version_; }
  bool has_signal_tables() const override { return signal_tables_; }
  bool has_record_table() const override { return record_table_; }
  bool has_digest_table() const override { return digest_table_; }
  void upgrade() override;
  bool changed_elsewhere() override;
  std::optional<std::string> meta(const std::string& key) override;
  void set_meta(const std::string& key, const std::string& value) override;
  std::vector<std::pair<std::string, std::string>> all_meta() override;
  void erase_meta(const std::string& key) override;

  // sqlite_records.cpp: writes.
  std::optional<std::int64_t> id_of_sha256(std::string_view sha) override;
  std::optional<std::int64_t> id_of_md5(std::string_view md5) override;
  std::optional<std::int64_t> id_of_unhashed(std::string_view source, const Hash256& pdq,
                                             Origin origin) override;
  std::int64_t insert_entry(const NewEntry& e, const std::optional<std::string>& sha,
                            const std::optional<std::string>& md5, std::int64_t added_at) override;
  void insert_entry_as(const Entry& e) override;
  std::int64_t id_high_water() override;
  void raise_id_high_water(std::int64_t id) override;
  void insert_record(const std::string& signal, std::int64_t id, std::string_view record) override;
  std::vector<RemovedEntry> remove_ids(std::span<const std::int64_t> ids) override;
  void insert_digest(std::int64_t id, std::string_view digest) override;
  std::vector<std::string> take_digests(std::span<const std::int64_t> ids) override;
  bool complete_entry_pdq(std::int64_t id, const Hash256& pdq, std::optional<int> quality) override;
  std::vector<RemovedEntry> remove_label(const std::string& label) override;
  std::vector<RemovedEntry> remove_sha256(const std::string& sha) override;
  void log_change(const Change& c) override;
  void prune_changes(std::uint64_t through) override;

  // sqlite_records.cpp: reads.
  std::optional<Entry> get(std::int64_t id) override;
  std::optional<Entry> find_sha256(std::string_view sha) override;
  std::optional<Entry> find_md5(std::string_view md5) override;
  std::vector<Entry> entries_after(std::int64_t after, std::size_t limit) override;
  std::optional<std::vector<Change>> changes_since(std::uint64_t after) override;
  void scan_pdq(const RowFn& fn, IdFilter only) override;
  void scan_records(const std::string& signal, const RowFn& fn, IdFilter only) override;
  void scan_all_records(
      const std::function<void(const std::string&, std::int64_t, std::string_view)>& fn) override;
  std::optional<std::string> first_record(const std::string& signal) override;
  void scan_raw_entries(const std::function<void(const RawEntry&)>& fn) override;
  void scan_digests(const RowFn& fn) override;

  // sqlite_lists.cpp: lists, entry state, the audit log.
  bool has_list_tables() const override { return list_tables_; }
  std::vector<ListInfo> lists(bool counts) override;
  std::int64_t insert_list(const ListInfo& l) override;
  void update_list(const ListInfo& l) override;
  std::vector<std::int64_t> set_entries_disabled(std::span<const std::int64_t> ids,
                                                 const std::optional<Disabled>& state) override;
  std::int64_t append_audit(const AuditEvent& e) override;
  std::vector<AuditEvent> audit_after(std::int64_t after, std::size_t limit) override;
  std::int64_t audit_high_water() override;
  std::vector<Entry> list_entries_after(std::int64_t list_id, std::int64_t after,
                                        std::size_t limit) override;
  std::vector<std::pair<std::string, std::int64_t>> ids_from_peer(
      const std::string& peer, std::span<const std::string> external_ids) override;
  void add_claims(std::span<const Claim> claims) override;
  std::vector<std::int64_t> drop_claims(const std::string& peer,
                                        std::span<const std::string> external_ids) override;
  std::vector<std::int64_t> claim_counts(std::span<const std::int64_t> ids) override;
  void drop_claims_of(std::span<const std::int64_t> ids) override;
  void scan_claims(const std::function<void(const Claim&)>& fn) override;
  void rekey_claims(const std::string& from, const std::string& to) override;

  // sqlite_store.cpp: sizes and health.
  std::int64_t count_entries() override;
  std::int64_t count_valid_pdq() override;
  bool has_md5_entries() override;
  EntryCounts entry_counts(int min_quality) override;
  RowCounts record_counts(const std::string& signal) override;
  std::uintmax_t bytes_on_disk() override;
  std::vector<std::string> integrity_problems() override;
  std::vector<std::int64_t> indexed_without(const std::string& signal) override;
  std::vector<std::string> orphan_rows() override;

 private:
  fs::path path_;
  OpenMode mode_ = OpenMode::ReadOnly;
  Conn conn_;
  int format_version_ = 0;
  bool signal_tables_ = false;
  bool record_table_ = false;
  bool digest_table_ = false;
  bool list_tables_ = false;
  bool claims_table_ = false;  // format 5's entry_claims (banks made before it: upgrade())
  bool md5_column_ = false;    // format 6: entries.md5, and pdq may be NULL
  std::int64_t data_version_ = -1;
  // Statements of the add() loop, prepared once per connection.
  std::unique_ptr<Stmt> by_sha_, by_md5_, by_hash_, insert_, insert_local_, insert_embed_,
      insert_row_, insert_digest_;

  // "SELECT <an entry's columns> FROM entries e ..." for entry_from_row (sqlite_records.cpp),
  // with format 5's columns or, without them, their defaults.
  std::string entry_select() const;
  // sqlite_records.cpp
  Stmt& stmt(std::unique_ptr<Stmt>& slot, const char* sql);
  static std::optional<std::int64_t> first_id(Stmt& s);
  void scan_ids(const char* all_sql, const char* one_sql, const RowFn& fn, IdFilter only,
                std::optional<std::string> arg);
  // sqlite_store.cpp
  void reset_cached();
  std::int64_t count(const char* sql) const;
  bool has_table(const char* name) const;
  void look_at_tables();
  std::int64_t read_data_version() const;
};

}  // namespace hashwall::sqlite
