// Named lists, entry state and the audit log (issue #17, docs/BANK_FORMAT.md format 5).
// An entry's list and state are read with the entry (Store::get joins its list's row), so
// nothing here is cached: a change is seen by the next search of every process at once.
#include <ctime>
#include <nlohmann/json.hpp>

#include "bank/bank_impl.hpp"
#include "bank/store.hpp"

namespace hashwall {

namespace {

std::int64_t now_s() { return static_cast<std::int64_t>(std::time(nullptr)); }

void check_text(const std::string& where, const char* what, const std::string& s, std::size_t max) {
  if (s.size() > max)
    throw Error(ErrorKind::Usage, where,
                std::string(what) + " of " + std::to_string(s.size()) + " bytes is longer than " +
                    std::to_string(max));
}

void check_disabled(const std::string& where, const Disabled& d) {
  if (d.reason.empty()) throw Error(ErrorKind::Usage, where, "disabling needs a reason");
  check_text(where, "the reason", d.reason, kMaxReasonBytes);
}

// Texts need not be UTF-8 (they are stored as given): invalid bytes become U+FFFD here.
std::string dump_lossy(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

nlohmann::json list_json(const ListInfo& l) {
  nlohmann::json j = {{"kind", list_kind_name(l.kind)},
                      {"enabled", !l.disabled.has_value()},
                      {"description", l.description},
                      {"organisation", l.organisation},
                      {"terms", l.terms}};
  if (l.disabled) {
    j["disabled_reason"] = l.disabled->reason;
    if (l.disabled->until) j["disabled_until"] = *l.disabled->until;
  }
  return j;
}

}  // namespace

bool valid_list_name(std::string_view s) noexcept {
  if (s.empty() || s.size() > kMaxBankListNameBytes || s.front() == '-') return false;
  for (const char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == '-'))
      return false;
  return true;
}

std::int64_t Bank::Impl::audit_write(const std::string& action, const std::string& list,
                                     std::vector<std::int64_t> ids, const Actor& who,
                                     const std::string& detail) const {
  if (!store->has_list_tables()) return 0;
  AuditEvent e;
  e.at = now_s();
  e.actor = who.name.empty() ? "unattributed" : who.name.substr(0, kMaxReasonBytes);
  e.action = action;
  e.list = list;
  e.ids = std::move(ids);
  e.reason = who.reason.substr(0, kMaxReasonBytes);
  e.detail = detail;
  return store->append_audit(e);
}

namespace {

// A bank of format 4 (opened read-only, so not upgraded) has one list: "default", a block
// list holding every entry.
std::vector<ListInfo> lists_of(Store& store, bool counts) {
  if (store.has_list_tables()) return store.lists(counts);
  ListInfo l;
  l.id = kDefaultListId;
  l.name = kDefaultListName;
  if (counts) l.entries = store.count_entries();
  return {l};
}

}  // namespace

std::vector<ListInfo> Bank::lists() const {
  std::lock_guard lock(impl_->db_mu);
  auto tx = impl_->store->begin_read();
  auto out = lists_of(*impl_->store, true);
  tx->commit();
  return out;
}

std::optional<ListInfo> Bank::list(const std::string& name) const {
  std::lock_guard lock(impl_->db_mu);
  for (auto& l : lists_of(*impl_->store, false))
    if (l.name == name) return std::move(l);
  return std::nullopt;
}

ListInfo Bank::create_list(const ListInfo& spec, const Actor& who) {
  auto& m = *impl_;
  m.require_writable();
  m.require_key();
  if (!valid_list_name(spec.name))
    throw Error(ErrorKind::Usage, m.where,
                "a list name is 1 to " + std::to_string(kMaxBankListNameBytes) +
                    " letters, digits, '.', '_' or '-', not starting with '-': '" +
                    spec.name.substr(0, kMaxBankListNameBytes + 1) + "' is not one");
  check_text(m.where, "the description", spec.description, kMaxListTextBytes);
  check_text(m.where, "the organisation", spec.organisation, kMaxListTextBytes);
  check_text(m.where, "the terms", spec.terms, kMaxListTextBytes);
  if (spec.disabled) check_disabled(m.where, *spec.disabled);
  std::lock_guard lock(m.db_mu);
  ListInfo l = spec;
  l.id = 0;
  l.created_at = now_s();
  l.entries = 0;
  auto tx = m.store->begin_write();
  for (const auto& have : m.store->lists(false))
    if (have.name == l.name)
      throw Error(ErrorKind::Usage, m.where, "there is already a list '" + l.name + "'");
  l.id = m.store->insert_list(l);
  m.audit_write("list-create", l.name, {}, who, dump_lossy(list_json(l)));
  tx->commit();
  return l;
}

ListInfo Bank::change_list(const std::string& name, const ListChange& c, const Actor& who) {
  auto& m = *impl_;
  m.require_writable();
  m.require_key();
  if (c.enable && c.disable)
    throw Error(ErrorKind::Usage, m.where, "a list is enabled or disabled, not both");
  if (c.disable) check_disabled(m.where, *c.disable);
  for (const auto* t : {&c.description, &c.organisation, &c.terms})
    if (*t) check_text(m.where, "a list's text", **t, kMaxListTextBytes);
  std::lock_guard lock(m.db_mu);
  auto tx = m.store->begin_write();
  std::optional<ListInfo> found;
  for (auto& l : m.store->lists(false))
    if (l.name == name) found = std::move(l);
  if (!found) throw Error(ErrorKind::Usage, m.where, "there is no list '" + name + "'");
  ListInfo l = std::move(*found);
  if (c.kind) l.kind = *c.kind;
  if (c.description) l.description = *c.description;
  if (c.organisation) l.organisation = *c.organisation;
  if (c.terms) l.terms = *c.terms;
  if (c.disable) l.disabled = c.disable;
  if (c.enable) l.disabled.reset();
  m.store->update_list(l);
  const char* action = c.disable ? "disable" : c.enable ? "enable" : "list-change";
  Actor why = who;
  if (c.disable && why.reason.empty()) why.reason = c.disable->reason;
  m.audit_write(action, l.name, {}, why, dump_lossy(list_json(l)));
  tx->commit();
  return l;
}

std::int64_t Bank::set_disabled(std::span<const std::int64_t> ids,
                                const std::optional<Disabled>& state, const Actor& who) {
  auto& m = *impl_;
  m.require_writable();
  m.require_key();
  if (state) check_disabled(m.where, *state);
  std::lock_guard lock(m.db_mu);
  auto tx = m.store->begin_write();
  auto changed = m.store->set_entries_disabled(ids, state);
  const auto n = static_cast<std::int64_t>(changed.size());
  if (n > 0) {
    Actor why = who;
    if (state && why.reason.empty()) why.reason = state->reason;
    nlohmann::json detail = nlohmann::json::object();
    if (state && state->until) detail["until"] = *state->until;
    m.audit_write(state ? "disable" : "enable", "", std::move(changed), why,
                  detail.empty() ? std::string() : detail.dump());
  }
  tx->commit();
  return n;
}

std::vector<AuditEvent> Bank::audit(std::int64_t after, std::size_t limit) const {
  std::lock_guard lock(impl_->db_mu);
  return impl_->store->audit_after(after, limit);
}

const char* review_verdict_name(ReviewVerdict k) noexcept {
  return k == ReviewVerdict::Confirmed ? "confirmed" : "false-positive";
}

std::optional<ReviewVerdict> parse_review_verdict(std::string_view s) noexcept {
  if (s == "confirmed") return ReviewVerdict::Confirmed;
  if (s == "false-positive") return ReviewVerdict::FalsePositive;
  return std::nullopt;
}

ReviewResult Bank::record_verdict(const Review& v, const NewEntry* allow, const Actor& who) {
  auto& m = *impl_;
  m.require_writable();
  m.require_key();
  const std::string sha = lower(v.query_sha256);
  if (!is_sha256_hex(sha))
    throw Error(ErrorKind::Usage, m.where,
                "the query's SHA-256 must be 64 hex characters, not '" +
                    v.query_sha256.substr(0, 80) + "'");
  const auto entry = get(v.entry);
  if (!entry)
    throw Error(ErrorKind::Usage, m.where, "there is no entry " + std::to_string(v.entry));
  ReviewResult out;
  nlohmann::json detail = {{"verdict", review_verdict_name(v.kind)}, {"query_sha256", sha}};
  if (allow) {
    if (v.kind != ReviewVerdict::FalsePositive)
      throw Error(ErrorKind::Usage, m.where, "only a false positive goes on an allow list");
    std::optional<ListInfo> list;
    {
      std::lock_guard lock(m.db_mu);
      for (auto& l : lists_of(*m.store, false))
        if (l.id == allow->list_id) list = std::move(l);
    }
    if (!list)
      throw Error(ErrorKind::Usage, m.where, "there is no list " + std::to_string(allow->list_id));
    if (list->kind != ListKind::Allow)
      throw Error(ErrorKind::Usage, m.where,
                  "'" + list->name + "' is a block list: a false positive goes on an allow list");
    // The query itself (an entry with its SHA-256 is that file): an entry is in one list, so
    // a query the bank already holds elsewhere cannot be allowlisted by adding it.
    if (allow->sha256)
      if (const auto had = find_sha256(*allow->sha256); had && had->list_id != list->id)
        throw Error(ErrorKind::Usage, m.where,
                    "the query is already entry " + std::to_string(had->id) + " of list '" +
                        had->list_name + "'");
    const auto r = add(std::span(allow, 1), who);
    out.allow_entry = r.ids.at(0);
    detail["allow_entry"] = *out.allow_entry;
    detail["allow_list"] = list->name;
  }
  std::lock_guard lock(m.db_mu);
  auto tx = m.store->begin_write();
  out.audit_id = m.audit_write("verdict", entry->list_name, {v.entry}, who, detail.dump());
  tx->commit();
  return out;
}

std::int64_t Bank::audit_high_water() const {
  std::lock_guard lock(impl_->db_mu);
  return impl_->store->audit_high_water();
}

std::vector<Entry> Bank::list_entries(std::int64_t list_id, std::int64_t after,
                                      std::size_t limit) const {
  std::lock_guard lock(impl_->db_mu);
  auto tx = impl_->store->begin_read();
  auto out = impl_->store->list_entries_after(list_id, after, limit);
  tx->commit();
  return out;
}

std::vector<std::pair<std::string, std::int64_t>> Bank::ids_from_peer(
    const std::string& peer, std::span<const std::string> external_ids) const {
  std::lock_guard lock(impl_->db_mu);
  auto tx = impl_->store->begin_read();
  auto out = impl_->store->ids_from_peer(peer, external_ids);
  tx->commit();
  return out;
}

void Bank::rekey_claims(const std::string& from, const std::string& to) {
  auto& m = *impl_;
  m.require_writable();
  m.require_key();
  std::lock_guard lock(m.db_mu);
  auto tx = m.store->begin_write();
  m.store->rekey_claims(from, to);
  tx->commit();
}

std::vector<std::int64_t> Bank::claim_counts(std::span<const std::int64_t> ids) const {
  std::lock_guard lock(impl_->db_mu);
  auto tx = impl_->store->begin_read();
  auto out = impl_->store->claim_counts(ids);
  tx->commit();
  return out;
}

std::int64_t Bank::release_claims(const std::string& peer,
                                  std::span<const std::string> external_ids, const Actor& who) {
  auto& m = *impl_;
  // One write transaction: the claims go, and with them the synced entries nobody claims
  // any more (two syncs releasing one entry at once: the second sees the first's drop).
  return m.remove_where(
      [&] {
        std::vector<std::int64_t> orphans;
        const auto ids = m.store->drop_claims(peer, external_ids);
        const auto counts = m.store->claim_counts(ids);
        for (std::size_t i = 0; i < ids.size(); ++i) {
          if (counts[i] != 0) continue;  // another peer still lists it
          const auto e = m.store->get(ids[i]);
          if (e && !e->peer.empty()) orphans.push_back(ids[i]);  // the bank's own entries stay
        }
        return m.store->remove_ids(orphans);
      },
      who);
}

namespace {
// Checkpoints live in meta under this prefix; the settings' digest and the seal leave
// them out (they change with every page a sync applies, and decide nothing).
std::string checkpoint_key(const std::string& key) { return "sync:" + key; }
}  // namespace

std::optional<std::string> Bank::sync_checkpoint(const std::string& key) const {
  std::lock_guard lock(impl_->db_mu);
  return impl_->meta(checkpoint_key(key));
}

void Bank::set_sync_checkpoint(const std::string& key, const std::string& value) {
  auto& m = *impl_;
  m.require_writable();
  m.require_key();
  std::lock_guard lock(m.db_mu);
  auto tx = m.store->begin_write();
  m.set_meta(checkpoint_key(key), value);
  tx->commit();
}

}  // namespace hashwall
