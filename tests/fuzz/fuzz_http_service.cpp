// The stand-in behind fuzz_http_framing: a Service and a Bank that answer from what the
// transport handed them (sizes, parameter counts), so the fuzzer spends its time in the
// transport. Link-time substitutes for src/server/service.cpp and src/bank/bank.cpp.
#include "bank/bank.hpp"
#include "server/service.hpp"

namespace hashwall {

struct Bank::Impl {};
Bank::Bank(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Bank::~Bank() = default;
std::unique_ptr<Bank> Bank::open(const std::filesystem::path&, OpenMode, const BankConfig&,
                                 const std::string&) {
  return std::unique_ptr<Bank>(new Bank(std::make_unique<Impl>()));
}
BankStats Bank::stats() const { return {}; }

namespace server {

Reply error_reply(int status, std::string message) {
  Reply r;
  r.status = status;
  r.body = json{{"error", std::move(message)}, {"code", status}};
  return r;
}

Reply guarded(const std::function<Reply()>& handler, int) {
  try {
    return handler();
  } catch (const std::exception& e) {
    return error_reply(500, e.what());
  }
}

namespace {
Reply echo(const char* what, std::size_t bytes, const Params& params, Role role) {
  Reply r;
  r.body["endpoint"] = what;
  r.body["bytes"] = bytes;
  r.body["params"] = params.size();
  r.body["role"] = role_name(role);
  for (const auto& [k, v] : params) r.body["p"][k] = v;  // as the real one echoes names
  return r;
}
}  // namespace

Service::Service(Bank& bank, ServiceLimits limits, Metrics& metrics, bool writable,
                 ServiceSignals signals)
    : bank_(bank),
      limits_(limits),
      metrics_(metrics),
      writable_(writable),
      signals_(std::move(signals)) {}
Reply Service::match_image(std::span<const std::uint8_t> bytes, const std::string& name,
                           const Params& params, Role role) const {
  Reply r = echo("match", bytes.size(), params, role);
  r.body["file"] = name;
  metrics_.record_verdict(false);
  return r;
}
Reply Service::match_hashes(std::string_view body, std::string_view content_type,
                            const Params& params, Role role) const {
  Reply r = echo("match/hash", body.size(), params, role);
  r.body["content_type"] = std::string(content_type);
  return r;
}
Reply Service::add_image(std::span<const std::uint8_t> bytes, const std::string& name,
                         const std::string& label, const std::string& source,
                         const WriteContext& ctx) {
  Reply r = echo("entries", bytes.size(), {}, Role::Write);
  r.body["list"] = ctx.list;
  r.body["name"] = name;
  r.body["label"] = label;
  r.body["source"] = source;
  return r;
}
Reply Service::add_hashes(std::string_view body, std::string_view, const std::string& label,
                          const std::string&, const WriteContext&) {
  Reply r = echo("entries/hashes", body.size(), {}, Role::Write);
  r.body["label"] = label;
  return r;
}
Reply Service::remove_entry(std::string_view id_text, const WriteContext&) {
  if (id_text.empty()) return error_reply(404, "no such entry");
  return echo("remove", id_text.size(), {}, Role::Write);
}
Reply Service::audit(const Params& params) const { return echo("audit", 0, params, Role::Read); }
Reply Service::changes(const Params& params) const {
  return echo("changes", 0, params, Role::Read);
}
Reply Service::verdict(std::string_view body, const WriteContext&) {
  return echo("verdict", body.size(), {}, Role::Write);
}
Reply Service::lists() const { return echo("lists", 0, {}, Role::Read); }
Reply Service::create_list(std::string_view body, const WriteContext&) {
  return echo("lists/create", body.size(), {}, Role::Write);
}
Reply Service::change_list(const std::string& name, const std::string& action,
                           std::string_view body, const WriteContext&) {
  Reply r = echo("lists/change", body.size(), {}, Role::Write);
  r.body["name"] = name;
  r.body["action"] = action;
  return r;
}
Reply Service::set_entry_state(std::string_view id_text, bool enable, std::string_view body,
                               const WriteContext&) {
  Reply r = echo("entries/state", body.size(), {}, Role::Write);
  r.body["id"] = std::string(id_text);
  r.body["enable"] = enable;
  return r;
}
Reply Service::health() const {
  Reply r;
  r.body["status"] = "ok";
  r.body["writable"] = writable_;
  return r;
}
Reply Service::stats(const json& extra) const {
  Reply r;
  r.body = extra;
  return r;
}

}  // namespace server
}  // namespace hashwall
