#include "libmirage/policy/upload_policy.hpp"

#include <fnmatch.h>

#include "libmirage/policy/retention.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::policy {

namespace {

bool glob(const std::string& pattern, const std::string& text) {
  return fnmatch(pattern.c_str(), text.c_str(), FNM_PATHNAME | FNM_PERIOD) == 0;
}

std::string anchored(std::string_view rule) {
  std::string r(rule);
  if (r.empty() || r[0] != '/') r.insert(r.begin(), '/');
  while (r.size() > 1 && r.back() == '/') r.pop_back();
  return r;
}

}  // namespace

std::optional<std::vector<std::string>> string_list(const nlohmann::json& doc, const char* key, const std::string& what) {
  if (!doc.contains(key)) return std::nullopt;
  const auto& list = doc.at(key);
  if (!list.is_array()) throw Error(ErrorKind::usage, what + ": '" + key + "' must be an array");
  std::vector<std::string> out;
  for (const auto& item : list) {
    if (!item.is_string() || item.get<std::string>().empty())
      throw Error(ErrorKind::usage, what + ": '" + key + "' holds a non-string or empty item");
    out.push_back(item.get<std::string>());
  }
  return out;
}

bool rule_matches(std::string_view rule, std::string_view path) {
  std::string p(path);
  if (rule.find('/') == std::string_view::npos) {
    // A bare name: any component of the path.
    std::string r(rule);
    size_t pos = 1;
    while (pos <= p.size()) {
      size_t slash = p.find('/', pos);
      if (slash == std::string::npos) slash = p.size();
      if (slash > pos && glob(r, p.substr(pos, slash - pos))) return true;
      pos = slash + 1;
    }
    return false;
  }
  std::string r = anchored(rule);
  // What matches (the path or an ancestor, so a prefix of the path) starts with the
  // rule's literal part: a path that does not cannot match. (Most paths, cheaply.)
  size_t literal = r.find_first_of("*?[\\");
  if (p.compare(0, std::min(literal, r.size()), r, 0, std::min(literal, r.size())) != 0) return false;
  // The path itself or any ancestor directory.
  for (size_t end = p.size();;) {
    if (glob(r, p.substr(0, end))) return true;
    size_t slash = p.rfind('/', end - 1);
    if (slash == 0 || slash == std::string::npos) return false;
    end = slash;
  }
}

bool rule_matches_here(std::string_view rule, std::string_view path) {
  if (rule.find('/') == std::string_view::npos) {
    size_t slash = path.rfind('/');
    return glob(std::string(rule), std::string(path.substr(slash == std::string_view::npos ? 0 : slash + 1)));
  }
  return glob(anchored(rule), std::string(path));
}

UploadPolicy UploadPolicy::defaults() {
  UploadPolicy p;
  p.m_unprotected = {"/proc", "/sys",  "/dev",      "/run",          "/tmp",     "/var/tmp",
                     "/var/cache", "lost+found", "/swapfile", "/swap.img", "/var/swap", "/var/lib/mirage"};
  p.m_user_area = {"/home", "/root", "/srv"};
  return p;
}

UploadPolicy UploadPolicy::from_json(const nlohmann::json& doc) {
  if (!doc.is_object()) throw Error(ErrorKind::usage, "upload policy: not a JSON object");
  for (const auto& [key, value] : doc.items()) {
    (void)value;
    if (key != "version" && key != "unprotected" && key != "exceptions" && key != "user_area" && key != "retention" &&
        key != "restore_first")
      throw Error(ErrorKind::usage, "upload policy: unknown field '" + key + "'");
  }
  if (doc.contains("version") && doc.at("version") != 1)
    throw Error(ErrorKind::usage, "upload policy: unsupported version " + doc.at("version").dump());
  // A field left out keeps its default (a document with only "retention" still leaves
  // /proc, /tmp, ... out); an explicit empty list means none.
  UploadPolicy p = defaults();
  if (auto l = string_list(doc, "unprotected", "upload policy")) p.m_unprotected = std::move(*l);
  if (auto l = string_list(doc, "exceptions", "upload policy")) p.m_exceptions = std::move(*l);
  if (auto l = string_list(doc, "user_area", "upload policy")) p.m_user_area = std::move(*l);
  if (auto l = string_list(doc, "restore_first", "upload policy")) p.m_restore_first = std::move(*l);
  return p;
}

nlohmann::json policy_document(const nlohmann::json& doc) {
  nlohmann::json out = UploadPolicy::from_json(doc).to_json();
  out["retention"] = Retention::from_json(doc.value("retention", nlohmann::json())).to_json();
  return out;
}

nlohmann::json default_policy_document() {
  nlohmann::json out = UploadPolicy::defaults().to_json();
  out["retention"] = Retention{}.to_json();
  return out;
}

nlohmann::json UploadPolicy::to_json() const {
  return {{"version", 1}, {"unprotected", m_unprotected}, {"exceptions", m_exceptions}, {"user_area", m_user_area},
          {"restore_first", m_restore_first}};
}

Decision UploadPolicy::classify(std::string_view path, bool inside_unprotected, Ancestors ancestors) const {
  for (const auto& e : m_exceptions)
    if (rule_matches(e, path)) return Decision::protect;
  bool unprotected = inside_unprotected;
  const auto matches = ancestors == Ancestors::checked ? rule_matches_here : rule_matches;
  for (const auto& r : m_unprotected)
    if (!unprotected && matches(r, path)) unprotected = true;
  if (!unprotected) return Decision::protect;
  // Is some anchored exception below this path? Then descend to reach it.
  std::string prefix(path);
  prefix += '/';
  for (const auto& e : m_exceptions) {
    std::string a = anchored(e);
    if (a.compare(0, prefix.size(), prefix) == 0) return Decision::exceptions;
    if (e.find('/') == std::string::npos) return Decision::exceptions;
  }
  return Decision::skip;
}

bool UploadPolicy::in_user_area(std::string_view path) const {
  for (const auto& r : m_user_area)
    if (rule_matches(r, path)) return true;
  return false;
}

const std::vector<std::string>& UploadPolicy::minimal_restore_set() {
  static const std::vector<std::string> set = {"/etc",  "/usr",   "/bin",   "/sbin", "/lib",
                                               "/lib32", "/lib64", "/libx32", "/boot", "/var/lib/dpkg"};
  return set;
}

bool UploadPolicy::restore_first(std::string_view path) const {
  for (const auto& r : minimal_restore_set())
    if (rule_matches(r, path)) return true;
  for (const auto& r : m_restore_first)
    if (rule_matches(r, path)) return true;
  return false;
}

}  // namespace mirage::policy
