#include "libmirage/server/roles.hpp"

#include <algorithm>
#include <map>

#include "libmirage/util/error.hpp"

namespace mirage::server {

namespace {

const std::vector<std::string> k_all = {"admin", "image-manager", "protection-manager", "helpdesk"};
const std::vector<std::string> k_admin = {"admin"};
const std::vector<std::string> k_images = {"admin", "image-manager"};
const std::vector<std::string> k_protection = {"admin", "protection-manager"};
const std::vector<std::string> k_managers = {"admin", "image-manager", "protection-manager"};

const std::map<std::string, const std::vector<std::string>*>& table() {
  static const std::map<std::string, const std::vector<std::string>*> t = {
      {"server.info", &k_all},       {"device.list", &k_all},      {"device.status", &k_all},
      {"snapshot.list", &k_all},     {"layer.list", &k_all},       {"layer.get", &k_all},
      {"events.list", &k_all},       {"order.get", &k_all},        {"policy.get", &k_all},
      {"chunks.get", &k_all},        {"chunks.missing", &k_all},   {"chunks.delta", &k_all},
      {"device.register", &k_admin}, {"snapshot.commit", &k_admin}, {"order.next", &k_admin},
      {"order.report", &k_admin},    {"check", &k_admin},          {"token.create", &k_admin},
      {"token.list", &k_admin},      {"token.revoke", &k_admin},   {"device.reject", &k_protection},
      {"policy.set", &k_protection}, {"layer.commit", &k_images},  {"capture.begin", &k_images},
      {"capture.get", &k_images},    {"policy.list", &k_all},      {"policy.assign", &k_protection},
      {"collection.list", &k_all},   {"collection.get", &k_all},   {"collection.set", &k_managers},
      {"collection.delete", &k_managers}, {"device.tag", &k_managers}, {"volume.list", &k_all},
      {"volume.add", &k_admin},      {"volume.set", &k_admin},     {"gc.run", &k_admin},
      {"snapshot.request", &k_protection}, {"order.pending", &k_admin}, {"events.report", &k_all}};
  return t;
}

}  // namespace

bool valid_role(const std::string& role) { return std::find(k_all.begin(), k_all.end(), role) != k_all.end(); }

std::vector<std::string> allowed_roles(const std::string& method, const nlohmann::json& params) {
  if (method == "chunks.put") return params.contains("device_id") ? k_admin : k_images;  // uploads / captures
  if (method == "device.accept") {
    if (params.value("reference", false)) return {"admin", "image-manager", "protection-manager"};
    return k_protection;
  }
  if (method == "order.create") {
    if (params.value("type", "assign") == "enforce") return {"admin", "image-manager", "helpdesk"};
    return k_images;
  }
  auto it = table().find(method);
  return it == table().end() ? k_admin : *it->second;
}

namespace {

// What an accepted device may do with its credential: sync its own CVD and carry out its orders.
const std::vector<std::string> k_device_methods = {
    "server.info",   "device.register", "policy.get",      "chunks.missing", "chunks.put", "chunks.get",
    "chunks.delta",  "snapshot.commit", "snapshot.list",   "order.next",     "order.report", "layer.get",
    "order.pending"};

// Methods that change nothing, and the endpoint's own sync: not in the audit journal.
const std::vector<std::string> k_not_audited = {
    "server.info",    "device.list",    "device.status", "snapshot.list", "layer.list",     "layer.get",
    "events.list",    "order.get",      "order.next",    "order.pending", "policy.get",     "policy.list",
    "chunks.get",     "chunks.missing", "chunks.delta",  "collection.get", "collection.list", "volume.list",
    "capture.get",    "check",          "token.list",    "chunks.put",    "snapshot.commit", "device.register",
    "order.report",   "events.report"};

// Requests that take no lock (see Concurrency) and those that act on one device.
const std::vector<std::string> k_parallel = {
    "server.info",  "device.list",   "device.status", "snapshot.list",   "layer.list",      "layer.get",
    "events.list",  "order.get",     "order.next",    "order.pending",   "policy.get",      "policy.list",
    "collection.list", "collection.get", "volume.list", "token.list",    "chunks.get",      "chunks.missing",
    "chunks.delta", "chunks.put",    "check",         "capture.get",     "gc.run"};
const std::vector<std::string> k_device_class = {"device.register", "snapshot.commit", "order.report",
                                                 "capture.begin",   "events.report",   "device.delete"};

bool contains(const std::vector<std::string>& list, const std::string& s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

}  // namespace

Concurrency concurrency(const std::string& method) {
  if (contains(k_parallel, method)) return Concurrency::parallel;
  if (contains(k_device_class, method)) return Concurrency::device;
  return Concurrency::fleet;
}

bool audited(const std::string& method) {
  return std::find(k_not_audited.begin(), k_not_audited.end(), method) == k_not_audited.end();
}

void check_role(const std::string& method, const nlohmann::json& params, const Caller& caller) {
  if (caller.role == "anonymous") {
    if (method == "device.register" || method == "server.info") return;
    throw Error(ErrorKind::permission, method + " needs a token (--token or MIRAGE_TOKEN) or an accepted device's credential");
  }
  if (caller.role == "device") {
    if (std::find(k_device_methods.begin(), k_device_methods.end(), method) == k_device_methods.end())
      throw Error(ErrorKind::permission, method + " is not for device credentials");
    if (method == "chunks.put" && !params.contains("device_id"))
      throw Error(ErrorKind::permission, "a device uploads to its own CVD only");
    if (params.contains("device_id") && params["device_id"] != caller.name)
      throw Error(ErrorKind::permission, "device " + caller.name + " may act on its own CVD only");
    return;
  }
  auto roles = allowed_roles(method, params);
  if (std::find(roles.begin(), roles.end(), caller.role) != roles.end()) return;
  std::string list;
  for (const auto& r : roles) list += (list.empty() ? "" : ", ") + r;
  throw Error(ErrorKind::permission, method + " needs one of the roles " + list + " (this token is " + caller.role + ")");
}

}  // namespace mirage::server
