#include "libmirage/server/params.hpp"

#include <cmath>

#include "libmirage/policy/upload_policy.hpp"

namespace mirage::server {

Error Params::type_error(const char* name, const char* expected) const {
  return Error(ErrorKind::usage, std::string("parameter '") + name + "' must be " + expected);
}

std::string Params::text(const char* name) const {
  auto it = m_params.find(name);
  if (it == m_params.end() || !it->is_string() || it->get_ref<const std::string&>().empty())
    throw Error(ErrorKind::usage, std::string("missing or empty string parameter '") + name + "'");
  return it->get<std::string>();
}

std::string Params::text_or(const char* name, const std::string& fallback) const {
  auto it = m_params.find(name);
  if (it == m_params.end()) return fallback;
  if (!it->is_string()) throw type_error(name, "a string");
  return it->get<std::string>();
}

std::optional<std::string> Params::optional_text(const char* name) const {
  if (!m_params.contains(name)) return std::nullopt;
  return text(name);
}

bool Params::flag(const char* name) const {
  auto it = m_params.find(name);
  if (it == m_params.end()) return false;
  if (!it->is_boolean()) throw Error(ErrorKind::usage, std::string("parameter '") + name + "' must be true or false");
  return it->get<bool>();
}

double Params::number(const char* name, double fallback, double lo, double hi) const {
  auto it = m_params.find(name);
  if (it == m_params.end()) return fallback;
  if (!it->is_number() || it->get<double>() < lo || it->get<double>() > hi)
    throw Error(ErrorKind::usage, std::string("parameter '") + name + "' must be a number from " + nlohmann::json(lo).dump() +
                                      " to " + nlohmann::json(hi).dump());  // 0 to 31536000, not 0.000000
  return it->get<double>();
}

int64_t Params::integer(const char* name, int64_t fallback, int64_t lo, int64_t hi) const {
  auto it = m_params.find(name);
  if (it == m_params.end()) return fallback;
  if (!it->is_number_integer() || (it->is_number_unsigned() && it->get<uint64_t>() > uint64_t(INT64_MAX)) ||
      it->get<int64_t>() < lo || it->get<int64_t>() > hi)
    throw Error(ErrorKind::usage, std::string("parameter '") + name + "' must be an integer from " + std::to_string(lo) +
                                      " to " + std::to_string(hi));
  return it->get<int64_t>();
}

std::vector<std::string> Params::texts(const char* name) const {
  return policy::string_list(m_params, name, "request").value_or(std::vector<std::string>{});
}

nlohmann::json Params::object(const char* name, uint64_t max_bytes, const char* limit) const {
  auto it = m_params.find(name);
  if (it == m_params.end()) return nlohmann::json::object();
  if (!it->is_object() || it->dump().size() > max_bytes)
    throw Error(ErrorKind::usage, std::string(name) + ": a JSON object of at most " + std::to_string(max_bytes) +
                                      " bytes (limit " + limit + ")");
  return *it;
}

const nlohmann::json& Params::value(const char* name) const {
  auto it = m_params.find(name);
  if (it == m_params.end()) throw Error(ErrorKind::usage, std::string("missing parameter '") + name + "'");
  return *it;
}

Targets Targets::parse(const Params& p) {
  return {p.texts("device_ids"), p.texts("collections"), p.has("collections")};
}

}  // namespace mirage::server
