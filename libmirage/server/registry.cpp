#include "libmirage/server/registry.hpp"

#include <algorithm>

#include "libmirage/server/methods.hpp"
#include "libmirage/util/error.hpp"

namespace mirage::server {

std::vector<Role> RoleSet::list() const {
  std::vector<Role> out;
  for (const auto& [r, n] : EnumNames<Role>::names)
    if (has(r)) out.push_back(r);
  return out;
}

namespace {

template <class P, class R>
P params_of(R (*)(Context&, const P&));

/// Runs a typed method: its params struct from the JSON, its reply to JSON.
template <auto F>
void run(Context& c, const nlohmann::json& params, nlohmann::json& result) {
  using P = decltype(params_of(F));
  result = F(c, P::parse(Params(params, c.limits())));
}

constexpr RoleSet k_all = {Role::admin, Role::image_manager, Role::protection_manager, Role::helpdesk};
constexpr RoleSet k_admin = {Role::admin};
constexpr RoleSet k_images = {Role::admin, Role::image_manager};
constexpr RoleSet k_protection = {Role::admin, Role::protection_manager};
constexpr RoleSet k_managers = {Role::admin, Role::image_manager, Role::protection_manager};

bool with_device_id(const nlohmann::json& p) { return p.contains("device_id"); }
bool reference(const nlohmann::json& p) { return p.value("reference", false) == true; }
bool enforce(const nlohmann::json& p) { return p.contains("type") && p["type"] == "enforce"; }

std::vector<Access> all(RoleSet roles) { return {{"", nullptr, roles}}; }

using enum Concurrency;
constexpr auto req = &Limits::request_body, read = &Limits::read_body, upload = &Limits::upload_body,
               layer = &Limits::layer_body;
constexpr auto dev = ForDevice::yes, no_dev = ForDevice::no;
constexpr auto anon = Anonymous::yes, no_anon = Anonymous::no;
constexpr auto audit = Audit::yes, quiet = Audit::no;

#define ROW(NAME, ACCESS, DEV, ANON, AUDIT, CONC, BODY, F) \
  Method { NAME, ACCESS, DEV, ANON, AUDIT, CONC, BODY, &run<&F> }

// clang-format off
const std::vector<Method>& table() {
  static const std::vector<Method> t = {
      // name                  who                                   device  anon     audit  lock      body    function
      ROW("server.info",       all(k_all),                           dev,    anon,    quiet, parallel, req,    server_info),
      ROW("device.register",   all(k_admin),                         dev,    anon,    quiet, device,   req,    device_register),
      ROW("device.list",       all(k_all),                           no_dev, no_anon, quiet, parallel, req,    device_list),
      ROW("device.status",     all(k_all),                           no_dev, no_anon, quiet, parallel, req,    device_status),
      ROW("device.accept",     (std::vector<Access>{{"reference", reference, k_managers}, {"", nullptr, k_protection}}),
                                                                     no_dev, no_anon, audit, fleet,    req,    device_accept),
      ROW("device.reject",     all(k_protection),                    no_dev, no_anon, audit, fleet,    req,    device_reject),
      ROW("device.tag",        all(k_managers),                      no_dev, no_anon, audit, fleet,    req,    device_tag),
      ROW("device.delete",     all(k_admin),                         no_dev, no_anon, audit, device,   req,    device_delete),
      ROW("policy.get",        all(k_all),                           dev,    no_anon, quiet, parallel, req,    policy_get),
      ROW("policy.list",       all(k_all),                           no_dev, no_anon, quiet, parallel, req,    policy_list),
      ROW("policy.set",        all(k_protection),                    no_dev, no_anon, audit, fleet,    req,    policy_set),
      ROW("policy.assign",     all(k_protection),                    no_dev, no_anon, audit, fleet,    req,    policy_assign),
      ROW("chunks.missing",    all(k_all),                           dev,    no_anon, quiet, parallel, read,   chunks_missing),
      ROW("chunks.put",        (std::vector<Access>{{"device_id", with_device_id, k_admin}, {"capture", nullptr, k_images, ForDevice::no}}),
                                                                     dev,    no_anon, quiet, parallel, upload, chunks_put),
      ROW("chunks.get",        all(k_all),                           dev,    no_anon, quiet, parallel, read,   chunks_get),
      ROW("chunks.delta",      all(k_all),                           dev,    no_anon, quiet, parallel, read,   chunks_delta),
      ROW("snapshot.commit",   all(k_admin),                         dev,    no_anon, quiet, device,   req,    snapshot_commit),
      ROW("snapshot.list",     all(k_all),                           dev,    no_anon, quiet, parallel, req,    snapshot_list),
      ROW("snapshot.request",  all(k_protection),                    no_dev, no_anon, audit, fleet,    req,    snapshot_request),
      ROW("layer.commit",      all(k_images),                        no_dev, no_anon, audit, fleet,    layer,  layer_commit),
      ROW("layer.list",        all(k_all),                           no_dev, no_anon, quiet, parallel, req,    layer_list),
      ROW("layer.get",         all(k_all),                           dev,    no_anon, quiet, parallel, req,    layer_get),
      ROW("capture.begin",     all(k_images),                        no_dev, no_anon, audit, device,   req,    capture_begin),
      ROW("capture.get",       all(k_images),                        no_dev, no_anon, quiet, parallel, req,    capture_get),
      ROW("order.create",      (std::vector<Access>{{"enforce", enforce, {Role::admin, Role::image_manager, Role::helpdesk}},
                                                    {"not enforce", nullptr, k_images}}),
                                                                     no_dev, no_anon, Audit::unless_dry_run, fleet, req, order_create),
      ROW("order.next",        all(k_admin),                         dev,    no_anon, quiet, parallel, req,    order_next),
      ROW("order.get",         all(k_all),                           no_dev, no_anon, quiet, parallel, req,    order_get),
      ROW("order.report",      all(k_admin),                         dev,    no_anon, quiet, device,   req,    order_report),
      ROW("order.pending",     all(k_admin),                         dev,    no_anon, quiet, parallel, req,    order_pending),
      ROW("events.list",       all(k_all),                           no_dev, no_anon, quiet, parallel, req,    events_list),
      ROW("events.report",     all(k_all),                           no_dev, no_anon, quiet, device,   req,    events_report),
      ROW("collection.list",   all(k_all),                           no_dev, no_anon, quiet, parallel, req,    collection_list),
      ROW("collection.get",    all(k_all),                           no_dev, no_anon, quiet, parallel, req,    collection_get),
      ROW("collection.set",    all(k_managers),                      no_dev, no_anon, audit, fleet,    req,    collection_set),
      ROW("collection.delete", all(k_managers),                      no_dev, no_anon, audit, fleet,    req,    collection_delete),
      ROW("volume.list",       all(k_all),                           no_dev, no_anon, quiet, parallel, req,    volume_list),
      ROW("volume.add",        all(k_admin),                         no_dev, no_anon, audit, fleet,    req,    volume_add),
      ROW("volume.set",        all(k_admin),                         no_dev, no_anon, audit, fleet,    req,    volume_set),
      ROW("token.create",      all(k_admin),                         no_dev, no_anon, audit, fleet,    req,    token_create),
      ROW("token.list",        all(k_admin),                         no_dev, no_anon, quiet, parallel, req,    token_list),
      ROW("token.rotate",      all(k_admin),                         no_dev, no_anon, audit, fleet,    req,    token_rotate),
      ROW("token.revoke",      all(k_admin),                         no_dev, no_anon, audit, fleet,    req,    token_revoke),
      ROW("gc.run",            all(k_admin),                         no_dev, no_anon, audit, parallel, req,    gc_run),
      ROW("check",             all(k_admin),                         no_dev, no_anon, quiet, parallel, req,    check),
  };
  return t;
}
// clang-format on

#undef ROW

const Access& access_for(const Method& m, const nlohmann::json& params) {
  for (const auto& a : m.access)
    if (!a.applies || a.applies(params)) return a;
  return m.access.back();
}

std::string role_list(const RoleSet& roles) {
  std::string out;
  for (Role r : roles.list()) out += (out.empty() ? "" : ", ") + name(r);
  return out;
}

}  // namespace

std::span<const Method> methods() { return table(); }

const Method* find_method(std::string_view name) {
  for (const auto& m : table())
    if (m.name == name) return &m;
  return nullptr;
}

std::string_view concurrency_name(Concurrency c) {
  switch (c) {
    case Concurrency::parallel: return "parallel";
    case Concurrency::device: return "device";
    case Concurrency::fleet: return "fleet";
  }
  return "";
}

void check_access(const Method& m, const nlohmann::json& params, const Caller& caller) {
  std::string method(m.name);
  if (caller.role == Role::anonymous) {
    if (m.anonymous == Anonymous::yes) return;
    throw Error(ErrorKind::permission, method + " needs a token (--token or MIRAGE_TOKEN) or an accepted device's credential");
  }
  if (caller.role == Role::device) {
    if (m.device == ForDevice::no) throw Error(ErrorKind::permission, method + " is not for device credentials");
    // A device uploads to its own CVD: a capture upload (no device_id) is not its own.
    if (access_for(m, params).device == ForDevice::no)
      throw Error(ErrorKind::permission, "a device uploads to its own CVD only");
    if (params.contains("device_id") && params["device_id"] != caller.name)
      throw Error(ErrorKind::permission, "device " + caller.name + " may act on its own CVD only");
    return;
  }
  const RoleSet& roles = access_for(m, params).roles;
  if (roles.has(caller.role)) return;
  throw Error(ErrorKind::permission,
              method + " needs one of the roles " + role_list(roles) + " (this token is " + name(caller.role) + ")");
}

bool audited(const Method& m, const nlohmann::json& params) {
  switch (m.audit) {
    case Audit::no: return false;
    case Audit::yes: return true;
    case Audit::unless_dry_run: return !(params.contains("dry_run") && params["dry_run"] == true);
  }
  return true;
}

nlohmann::json method_table() {
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& m : table()) {
    std::string body;
    for (const auto& l : limit_table())
      if (l.field == m.body) body = l.name;
    for (const auto& a : m.access) {
      nlohmann::json roles = nlohmann::json::array();
      for (Role r : a.roles.list()) roles.push_back(r);
      rows.push_back({{"method", m.name},
                      {"when", *a.when ? nlohmann::json(a.when) : nlohmann::json(nullptr)},
                      {"roles", roles},
                      {"device", m.device == ForDevice::yes && a.device == ForDevice::yes},
                      {"anonymous", m.anonymous == Anonymous::yes},
                      {"audit", m.audit == Audit::no ? "no" : m.audit == Audit::yes ? "yes" : "unless dry_run"},
                      {"concurrency", concurrency_name(m.concurrency)},
                      {"body_limit", body}});
    }
  }
  return rows;
}

}  // namespace mirage::server
