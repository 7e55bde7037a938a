#pragma once
// Reading request parameters and checking roles, shared by the handler files.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "libmirage/policy/upload_policy.hpp"
#include "libmirage/server/service.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::server {

/// A required non-empty string parameter; Error(usage) naming it otherwise.
inline std::string str_param(const nlohmann::json& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end() || !it->is_string() || it->get<std::string>().empty())
    throw Error(ErrorKind::usage, std::string("missing or empty string parameter '") + name + "'");
  return it->get<std::string>();
}

/// An optional boolean parameter (false when absent).
inline bool bool_param(const nlohmann::json& params, const char* name) {
  auto it = params.find(name);
  if (it == params.end()) return false;
  if (!it->is_boolean()) throw Error(ErrorKind::usage, std::string("parameter '") + name + "' must be true or false");
  return it->get<bool>();
}

/// An optional number parameter in [lo, hi] (`fallback` when absent).
inline double num_param(const nlohmann::json& params, const char* name, double fallback, double lo, double hi) {
  auto it = params.find(name);
  if (it == params.end()) return fallback;
  if (!it->is_number() || it->get<double>() < lo || it->get<double>() > hi)
    throw Error(ErrorKind::usage, std::string("parameter '") + name + "' must be a number from " + std::to_string(lo) +
                                      " to " + std::to_string(hi));
  return it->get<double>();
}

/// An optional array of non-empty strings (empty when absent).
inline std::vector<std::string> str_list(const nlohmann::json& params, const char* name) {
  return policy::string_list(params, name, "request").value_or(std::vector<std::string>{});
}

}  // namespace mirage::server
