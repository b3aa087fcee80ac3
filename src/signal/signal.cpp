#include "signal/signal.hpp"

#include <algorithm>
#include <mutex>
#include <stdexcept>

namespace hashwall {

namespace {

struct Registry {
  std::mutex mu;
  std::vector<std::shared_ptr<const Signal>> signals;
};

// Function-local: registrations run during static initialisation, in any order.
Registry& registry() {
  static Registry r;
  return r;
}

bool valid_name(std::string_view n) {
  return !n.empty() && n.size() <= 32 && n.front() != '-' &&
         std::all_of(n.begin(), n.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
         });
}

}  // namespace

SignalQuery Signal::compute_query(const LoadedImage& image) const {
  SignalQuery q;
  if (auto r = compute(image)) q.forms.push_back(std::move(*r));
  return q;
}

bool is_builtin_signal(std::string_view name) noexcept {
  return std::find(std::begin(kBuiltinSignals), std::end(kBuiltinSignals), name) !=
         std::end(kBuiltinSignals);
}

void register_signal(std::shared_ptr<const Signal> signal) {
  if (!signal) throw std::invalid_argument("register_signal: no signal");
  const std::string name = signal->name();
  if (!valid_name(name))
    throw std::invalid_argument("signal name '" + name +
                                "' is not 1-32 lowercase letters, digits and '-'");
  if (is_builtin_signal(name) || name == "sha256")
    throw std::invalid_argument("signal name '" + name + "' is a built-in signal's");
  auto& r = registry();
  std::lock_guard lock(r.mu);
  for (const auto& s : r.signals)
    if (s->name() == name) throw std::invalid_argument("signal '" + name + "' is registered twice");
  r.signals.push_back(std::move(signal));
}

void register_builtin_signal(std::shared_ptr<const Signal> signal) {
  if (!signal || !is_builtin_signal(signal->name()))
    throw std::invalid_argument("register_builtin_signal: not a built-in signal");
  auto& r = registry();
  std::lock_guard lock(r.mu);
  for (const auto& s : r.signals)
    if (s->name() == signal->name()) return;
  r.signals.push_back(std::move(signal));
}

const Signal* find_signal(std::string_view name) {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  for (const auto& s : r.signals)
    if (s->name() == name) return s.get();
  return nullptr;
}

std::vector<const Signal*> registered_signals() {
  auto& r = registry();
  std::lock_guard lock(r.mu);
  std::vector<const Signal*> out;
  for (const auto& s : r.signals)
    if (!is_builtin_signal(s->name())) out.push_back(s.get());
  return out;
}

std::string known_signals() {
  std::string out;
  for (const char* b : kBuiltinSignals) out += (out.empty() ? "" : ", ") + std::string(b);
  for (const Signal* s : registered_signals()) out += ", " + s->name();
  return out;
}

std::string unknown_signal(const std::vector<std::string>& names) {
  for (const auto& n : names)
    if (!is_builtin_signal(n) && !find_signal(n))
      return "unknown signal '" + n + "' (known: " + known_signals() + ")";
  return {};
}

std::vector<std::string> canonical_signals(const std::vector<std::string>& names) {
  const auto has = [&](std::string_view n) {
    return std::find(names.begin(), names.end(), n) != names.end();
  };
  std::vector<std::string> out;
  for (const char* b : kBuiltinSignals)
    if (has(b)) out.emplace_back(b);
  for (const Signal* s : registered_signals())
    if (has(s->name())) out.push_back(s->name());
  return out;
}

std::string params_text(const SignalParams& p) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [k, v] : p) j[k] = v;
  return j.dump();
}

std::optional<SignalParams> parse_params(std::string_view text) {
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  SignalParams p;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!it.value().is_string()) return std::nullopt;
    p[it.key()] = it.value().get<std::string>();
  }
  return p;
}

}  // namespace hashwall
