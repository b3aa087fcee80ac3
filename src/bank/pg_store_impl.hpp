// Private to src/bank: the PostgreSQL store's class, which its files share (pg_store.cpp:
// connecting, creating the schema, transactions, meta, following other writers, sizes and
// health; pg_records.cpp: the entries, the signals' records, the digests and the change
// log). The tables are those of the SQLite store's format 4 (docs/BANK_FORMAT.md) in
// PostgreSQL's types: bytea for blobs, bigint ids from an identity column.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bank/pg.hpp"
#include "bank/store.hpp"

namespace hashwall::pg {

// The channel every write notifies at commit (log_change): readers LISTEN on it to learn,
// without a query, that another connection wrote (changed_elsewhere).
inline constexpr const char* kChannel = "hashwall_changes";
// Rows per round trip when a scan pages through a table by id.
inline constexpr int kPage = 8192;

class PgStore : public Store {
 public:
  // pg_store.cpp
  void open(const std::string& conninfo, OpenMode mode, bool create_allowed,
            const std::vector<std::pair<std::string, std::string>>& initial_meta, bool* created);
  std::unique_ptr<Transaction> begin_read() override;
  std::unique_ptr<Transaction> begin_write() override;
  const std::string& where() const override { return where_; }
  int format_version() const override { return format_version_; }
  bool has_signal_tables() const override { return true; }
  bool has_record_table() const override { return true; }
  bool has_digest_table() const override { return true; }
  void upgrade() override;  // format 4 is PostgreSQL's first
  bool changed_elsewhere() override;
  std::optional<std::string> meta(const std::string& key) override;
  void set_meta(const std::string& key, const std::string& value) override;
  std::vector<std::pair<std::string, std::string>> all_meta() override;
  void erase_meta(const std::string& key) override;

  // pg_records.cpp: writes.
  std::optional<std::int64_t> id_of_sha256(std::string_view sha) override;
  std::optional<std::int64_t> id_of_md5(std::string_view md5) override;
  std::optional<std::int64_t> id_of_unhashed(std::string_view source, const Hash256& pdq,
                                             Origin origin) override;
  std::int64_t insert_entry(const NewEntry& e, const std::optional<std::string>& sha,
                            const std::optional<std::string>& md5, std::int64_t added_at) override;
  std::vector<std::optional<std::int64_t>> existing_ids(std::span<const NewRow> rows) override;
  std::vector<std::int64_t> insert_entries(std::span<const NewRow> rows,
                                           std::int64_t added_at) override;
  void insert_digests(std::span<const std::int64_t> ids,
                      std::span<const std::string> digests) override;
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

  // pg_records.cpp: reads.
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

  // pg_lists.cpp: lists, entry state, the audit log.
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

  // pg_store.cpp: sizes and health.
  std::int64_t count_entries() override;
  std::int64_t count_valid_pdq() override;
  bool has_md5_entries() override;
  EntryCounts entry_counts(int min_quality) override;
  RowCounts record_counts(const std::string& signal) override;
  std::uintmax_t bytes_on_disk() override;
  std::vector<std::string> integrity_problems() override { return {}; }
  std::vector<std::int64_t> indexed_without(const std::string& signal) override;
  std::vector<std::string> orphan_rows() override;

  // For the transactions (pg_store.cpp).
  Conn& conn() { return *conn_; }
  bool& tx_open() { return tx_open_; }

 private:
  std::unique_ptr<Conn> conn_;
  std::string where_;
  OpenMode mode_ = OpenMode::ReadOnly;
  int format_version_ = 0;
  bool list_tables_ = false;   // format 5
  bool claims_table_ = false;  // format 5's entry_claims (banks made before it: upgrade())
  bool md5_column_ = false;    // format 6: entries.md5, and pdq may be NULL
  bool has_claims_table();
  // The connection was lost and made again: notifications may have been missed in between.
  bool missed_ = false;
  // A PgTransaction is open (set and cleared by it): libpq's own status says "unknown" once
  // the connection is lost, and a reconnect then would run the rest in autocommit.
  bool tx_open_ = false;
  // changed_elsewhere(): when it last answered from a query rather than from notifications,
  // and when a reconnect last failed (with its error), so that searches during an outage
  // do not each wait for a connect.
  std::chrono::steady_clock::time_point last_look_{}, last_failed_connect_{};
  std::string failed_connect_;

  // pg_store.cpp
  // A statement, reconnecting first when the connection was lost between transactions.
  Result q(const std::string& sql, const std::vector<Param>& params = {});
  std::int64_t count(const std::string& sql, const std::vector<Param>& params = {});
  void ensure_connected();
  // Whether a transaction is open (failed ones and ones on a lost connection included).
  bool in_transaction() const {
    const auto st = PQtransactionStatus(conn_->raw());
    return tx_open_ || st == PQTRANS_INTRANS || st == PQTRANS_INERROR || st == PQTRANS_ACTIVE;
  }
  void session_setup();
  bool has_meta_table();
  void create_schema(const std::vector<std::pair<std::string, std::string>>& initial_meta,
                     bool* created);
  // pg_records.cpp
  // Pages through `sql` (which takes the last id seen as its last parameter and returns
  // rows in id order, `id_col` holding the id), inside a read transaction of its own when
  // none is open.
  void paged(const std::string& sql, std::vector<Param> params, int id_col,
             const std::function<void(const Result&, int row)>& fn);
  // `sql` with `ids` as $1 (bigint[]), in chunks.
  void by_ids(const std::string& sql, std::span<const std::int64_t> ids,
              const std::vector<Param>& more,
              const std::function<void(const Result&, int row)>& fn);
  std::vector<RemovedEntry> removed(const Result& r);
  // "SELECT <an entry's columns> FROM entries e ..." for entry_from_row, with format 5's
  // columns or their defaults.
  std::string entry_select() const;
};

}  // namespace hashwall::pg
