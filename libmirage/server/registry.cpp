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
constexpr RoleSet k_restorers = {Role::admin, Role::protection_manager, Role::helpdesk};

bool with_device_id(const nlohmann::json& p) { return p.contains("device_id"); }
bool reference(const nlohmann::json& p) { return p.value("reference", false) == true; }
bool enforce(const nlohmann::json& p) { return p.contains("type") && p["type"] == "enforce"; }
bool old_root_removed(const nlohmann::json& p) { return p.contains("type") && p["type"] == "old_root_removed"; }

std::vector<Access> all(RoleSet roles) { return {{"", nullptr, roles}}; }
// Where a parameter decides: accepting a reference device is image management too;
// an endpoint uploads to its CVD (device_id), an image manager uploads a capture;
// helpdesk may enforce the layers a device has, not change them.
std::vector<Access> accept_cases() { return {{"reference", reference, k_managers}, {"", nullptr, k_protection}}; }
std::vector<Access> put_cases() {
  return {{"device_id", with_device_id, k_admin}, {"capture", nullptr, k_images, ForDevice::no}};
}
// An endpoint's removal of its /old-root is recorded once per migration: only the device
// itself (or an admin) reports it, so no one else can take its place in the log.
std::vector<Access> report_cases() { return {{"old_root", old_root_removed, k_admin}, {"restore", nullptr, k_all}}; }
std::vector<Access> order_cases() {
  return {{"enforce", enforce, {Role::admin, Role::image_manager, Role::helpdesk}}, {"not enforce", nullptr, k_images}};
}

using enum Concurrency;
constexpr auto req = &Limits::request_body, read = &Limits::read_body, upload = &Limits::upload_body,
               layer = &Limits::layer_body;
constexpr auto dev = ForDevice::yes, no_dev = ForDevice::no;
constexpr auto anon = Anonymous::yes, no_anon = Anonymous::no;
constexpr auto audit = Audit::yes, quiet = Audit::no, unless_dry_run = Audit::unless_dry_run;

template <auto F>
Method row(std::string_view name, ForDevice device, Anonymous anonymous, Audit audited, Concurrency lock,
           uint64_t Limits::*body, std::vector<Access> access) {
  return {name, std::move(access), device, anonymous, audited, lock, body, &run<F>};
}

// clang-format off
const std::vector<Method>& table() {
  static const std::vector<Method> t = {
      // function                name                 device  anon     audit           lock      body    who
      row<server_info>(         "server.info",       dev,    anon,    quiet,          parallel, req,    all(k_all)),
      row<device_register>(     "device.register",   dev,    anon,    quiet,          device,   req,    all(k_admin)),
      row<device_list>(         "device.list",       no_dev, no_anon, quiet,          parallel, req,    all(k_all)),
      row<device_status>(       "device.status",     no_dev, no_anon, quiet,          parallel, req,    all(k_all)),
      row<device_accept>(       "device.accept",     no_dev, no_anon, audit,          fleet,    req,    accept_cases()),
      row<device_reject>(       "device.reject",     no_dev, no_anon, audit,          fleet,    req,    all(k_protection)),
      row<device_tag>(          "device.tag",        no_dev, no_anon, audit,          fleet,    req,    all(k_managers)),
      row<device_delete>(       "device.delete",     no_dev, no_anon, audit,          device,   req,    all(k_admin)),
      row<device_rename>(       "device.rename",     no_dev, no_anon, audit,          fleet,    req,    all(k_managers)),
      row<device_reenroll>(     "device.reenroll",   no_dev, no_anon, audit,          fleet,    req,    all(k_admin)),
      row<device_replace>(      "device.replace",    no_dev, no_anon, audit,          fleet,    req,    all(k_admin)),
      row<policy_get>(          "policy.get",        dev,    no_anon, quiet,          parallel, req,    all(k_all)),
      row<policy_list>(         "policy.list",       no_dev, no_anon, quiet,          parallel, req,    all(k_all)),
      row<policy_set>(          "policy.set",        no_dev, no_anon, audit,          fleet,    req,    all(k_protection)),
      row<policy_assign>(       "policy.assign",     no_dev, no_anon, audit,          fleet,    req,    all(k_protection)),
      row<chunks_missing>(      "chunks.missing",    dev,    no_anon, quiet,          parallel, read,   all(k_all)),
      row<chunks_put>(          "chunks.put",        dev,    no_anon, quiet,          parallel, upload, put_cases()),
      row<chunks_get>(          "chunks.get",        dev,    no_anon, quiet,          parallel, read,   all(k_all)),
      row<chunks_delta>(        "chunks.delta",      dev,    no_anon, quiet,          parallel, read,   all(k_all)),
      row<snapshot_commit>(     "snapshot.commit",   dev,    no_anon, quiet,          device,   req,    all(k_admin)),
      row<snapshot_list>(       "snapshot.list",     dev,    no_anon, quiet,          parallel, req,    all(k_all)),
      row<snapshot_request>(    "snapshot.request",  no_dev, no_anon, audit,          fleet,    req,    all(k_protection)),
      row<snapshot_forget>(     "snapshot.forget",   no_dev, no_anon, audit,          fleet,    req,    all(k_protection)),
      row<layer_commit>(        "layer.commit",      no_dev, no_anon, audit,          fleet,    layer,  all(k_images)),
      row<layer_list>(          "layer.list",        no_dev, no_anon, quiet,          parallel, req,    all(k_all)),
      row<layer_get>(           "layer.get",         dev,    no_anon, quiet,          parallel, req,    all(k_all)),
      row<layer_delete>(        "layer.delete",      no_dev, no_anon, audit,          fleet,    req,    all(k_images)),
      row<capture_begin>(       "capture.begin",     no_dev, no_anon, audit,          device,   req,    all(k_images)),
      row<capture_get>(         "capture.get",       no_dev, no_anon, quiet,          parallel, req,    all(k_images)),
      row<order_create>(        "order.create",      no_dev, no_anon, unless_dry_run, fleet,    req,    order_cases()),
      row<order_revert>(        "order.revert",      no_dev, no_anon, audit,          fleet,    req,    all(k_restorers)),
      row<order_next>(          "order.next",        dev,    no_anon, quiet,          parallel, req,    all(k_admin)),
      row<order_get>(           "order.get",         no_dev, no_anon, quiet,          parallel, req,    all(k_all)),
      row<order_report>(        "order.report",      dev,    no_anon, quiet,          device,   req,    all(k_admin)),
      row<order_pending>(       "order.pending",     dev,    no_anon, quiet,          parallel, req,    all(k_admin)),
      row<migrate_check>(       "migrate.check",     no_dev, no_anon, audit,          parallel, req,    all(k_admin)),
      row<migrate_start>(       "migrate.start",     no_dev, no_anon, unless_dry_run, fleet,    req,    all(k_admin)),
      row<migrate_rollback>(    "migrate.rollback",  no_dev, no_anon, audit,          fleet,    req,    all(k_admin)),
      row<migrate_reports>(     "migrate.reports",   no_dev, no_anon, quiet,          parallel, req,    all(k_all)),
      row<events_list>(         "events.list",       no_dev, no_anon, quiet,          parallel, req,    all(k_all)),
      row<events_report>(       "events.report",     dev,    no_anon, quiet,          device,   req,    report_cases()),
      row<collection_list>(     "collection.list",   no_dev, no_anon, quiet,          parallel, req,    all(k_all)),
      row<collection_get>(      "collection.get",    no_dev, no_anon, quiet,          parallel, req,    all(k_all)),
      row<collection_set>(      "collection.set",    no_dev, no_anon, audit,          fleet,    req,    all(k_managers)),
      row<collection_delete>(   "collection.delete", no_dev, no_anon, audit,          fleet,    req,    all(k_managers)),
      row<volume_list>(         "volume.list",       no_dev, no_anon, quiet,          parallel, req,    all(k_all)),
      row<volume_add>(          "volume.add",        no_dev, no_anon, audit,          fleet,    req,    all(k_admin)),
      row<volume_set>(          "volume.set",        no_dev, no_anon, audit,          fleet,    req,    all(k_admin)),
      row<token_create>(        "token.create",      no_dev, no_anon, audit,          fleet,    req,    all(k_admin)),
      row<token_list>(          "token.list",        no_dev, no_anon, quiet,          parallel, req,    all(k_admin)),
      row<token_rotate>(        "token.rotate",      no_dev, no_anon, audit,          fleet,    req,    all(k_admin)),
      row<token_revoke>(        "token.revoke",      no_dev, no_anon, audit,          fleet,    req,    all(k_admin)),
      row<gc_run>(              "gc.run",            no_dev, no_anon, unless_dry_run, parallel, req,    all(k_admin)),
      row<store_stats>(         "store.stats",       no_dev, no_anon, quiet,          parallel, req,    all(k_all)),
      row<check>(               "check",             no_dev, no_anon, quiet,          parallel, req,    all(k_admin)),
  };
  return t;
}
// clang-format on

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
