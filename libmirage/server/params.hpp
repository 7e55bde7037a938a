#pragma once
// Reading a request's parameters into a method's params struct: each reader names the
// field in its Error(usage), and the struct's parse() checks what server::Limits bounds.
// A field the method does not know is ignored (clients may be newer than the server).
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/server/kinds.hpp"
#include "libmirage/server/limits.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::server {

class Params {
 public:
  Params(const nlohmann::json& params, const Limits& limits) : m_params(params), m_limits(limits) {}
  const Limits& limits() const { return m_limits; }
  const nlohmann::json& json() const { return m_params; }
  bool has(const char* name) const { return m_params.contains(name); }

  /// A required non-empty string.
  std::string text(const char* name) const;
  /// An optional string (`fallback` when absent; "" is a value).
  std::string text_or(const char* name, const std::string& fallback = "") const;
  /// An optional string that must not be empty when given.
  std::optional<std::string> optional_text(const char* name) const;
  /// An optional boolean (false when absent).
  bool flag(const char* name) const;
  /// An optional number in [lo, hi] (`fallback` when absent).
  double number(const char* name, double fallback, double lo, double hi) const;
  /// An optional integer in [lo, hi] (`fallback` when absent).
  int64_t integer(const char* name, int64_t fallback, int64_t lo, int64_t hi) const;
  /// An optional array of non-empty strings (empty when absent).
  std::vector<std::string> texts(const char* name) const;
  /// An optional JSON object of at most `max_bytes` as text (empty when absent);
  /// `limit` names the limit in the message.
  nlohmann::json object(const char* name, uint64_t max_bytes, const char* limit) const;
  /// Any JSON value, required.
  const nlohmann::json& value(const char* name) const;
  /// An optional enum by its name (kinds.hpp), `fallback` when absent.
  template <class E>
  E choice(const char* name, E fallback) const {
    auto it = m_params.find(name);
    if (it == m_params.end()) return fallback;
    if (!it->is_string()) throw type_error(name, "a string");
    return parse<E>(it->get_ref<const std::string&>());
  }

 private:
  Error type_error(const char* name, const char* expected) const;
  const nlohmann::json& m_params;
  const Limits& m_limits;
};

/// A method without parameters.
struct NoParams {
  static NoParams parse(const Params&) { return {}; }
};

/// The devices a request names: "device_ids" and the members of "collections".
struct Targets {
  std::vector<std::string> device_ids;
  std::vector<std::string> collections;
  bool collections_given = false;
  static Targets parse(const Params& p);
};

}  // namespace mirage::server
