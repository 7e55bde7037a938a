#include "libmirage/server/service.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cassert>
#include <chrono>

#include "libmirage/proto/frame.hpp"
#include "libmirage/server/housekeeping.hpp"
#include "libmirage/server/methods.hpp"
#include "libmirage/server/registry.hpp"
#include "libmirage/store/volume.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::server {

using nlohmann::json;

namespace {

const std::string k_unknown_method = "unknown";
thread_local store::Repository* t_repo = nullptr;  // the lease of the request this thread serves

/// The device an audited call touches, for `events --device`: its device_id, or the one
/// device of its targets; "" for none or several.
std::string audited_device(const json& params) {
  if (auto it = params.find("device_id"); it != params.end() && it->is_string()) return it->get<std::string>();
  if (auto it = params.find("device_ids"); it != params.end() && it->is_array() && it->size() == 1 && (*it)[0].is_string())
    return (*it)[0].get<std::string>();
  return "";
}
}  // namespace

Service::Service(std::filesystem::path data, bool create, Limits limits) : m_data(std::move(data)), m_limits(limits) {
  // The first connection creates a missing data directory (or refuses one that is not).
  m_pool.push_back(std::make_unique<store::Repository>(m_data, create));
}

bool Service::data_owned_by_this_user() const {
  struct stat st;
  return ::stat(m_data.c_str(), &st) == 0 && st.st_uid == ::geteuid();
}

Service::Lease::Lease(Service& service) : m_service(service), m_outer(t_repo) {
  if (m_outer) return;  // nested: the thread keeps the repository it has
  {
    std::lock_guard lock(service.m_pool_mutex);
    m_generation = service.m_generation;
    if (!service.m_pool.empty()) {
      m_repo = std::move(service.m_pool.back());
      service.m_pool.pop_back();
    }
  }
  // A new connection opened after a GC began may still see its packs: it counts as of
  // the generation read above, and drops its read descriptors when it comes back.
  if (!m_repo) m_repo = std::make_unique<store::Repository>(service.m_data, false);
  t_repo = m_repo.get();
}

Service::Lease::~Lease() {
  if (m_outer) return;
  t_repo = nullptr;
  std::lock_guard lock(m_service.m_pool_mutex);
  // A GC ran meanwhile: let the packs it deleted go (the idle ones were closed then).
  if (m_generation != m_service.m_generation) m_repo->close_read_fds();
  if (m_service.m_pool.size() < 64) m_service.m_pool.push_back(std::move(m_repo));
}

store::Repository& Service::repo() {
  assert(t_repo && "repo() outside a Lease");
  return *t_repo;
}

std::optional<Caller> Service::authenticate(const std::string& token) {
  Lease lease(*this);
  if (token.rfind("mdc_", 0) == 0) {
    // A device credential: mdc_DEVICE.SECRET, valid once the device is accepted.
    auto dot = token.rfind('.');
    if (dot == std::string::npos || dot < 5) return std::nullopt;
    std::string device = token.substr(4, dot - 4);
    auto& cat = repo().catalog();
    auto hash = cat.device_credential(device);
    auto d = cat.device(device);
    std::string given = util::sha256_hex(token.substr(dot + 1));
    if (d && (!hash || *hash != given)) {
      // The secret of a machine that waits for the device's re-enrolment (or contends
      // for it): it waits (5) and says which fingerprint the admin compares.
      auto w = cat.reenrolment(device);
      if (w && d->state == catalog::DeviceState::accepted && (w->hash == given || w->contender_hash == given))
        throw Error(ErrorKind::precondition, "device " + device + ": " +
                                                 (w->hash == given ? "this machine" : "another machine (" + credential_fingerprint(w->hash) + ")") +
                                                 " awaits re-enrolment; this machine's fingerprint is " + credential_fingerprint(given) +
                                                 "; an admin must run: mirage-centralize accept " + device +
                                                 " --reenroll --fingerprint " + credential_fingerprint(given),
                    std::string(proto::k_reason_reenroll));
    }
    if (!hash || !d || *hash != given) return std::nullopt;
    if (d->state == catalog::DeviceState::replaced) throw replaced_error(*d);
    // The right secret of a device not (or no longer) accepted: say which, so that a
    // pending endpoint waits (exit 5) instead of taking its credential for revoked.
    if (d->state == catalog::DeviceState::pending)
      throw Error(ErrorKind::precondition, "device " + device + ": pending (an admin must accept it)");
    if (d->state == catalog::DeviceState::rejected) throw Error(ErrorKind::permission, "device " + device + ": rejected");
    return Caller{Role::device, device};
  }
  auto t = repo().catalog().token_role(util::sha256_hex(token));
  if (!t) return std::nullopt;
  return Caller{parse<Role>(t->first), t->second};
}

std::string Service::metrics_text() {
  Lease lease(*this);
  return m_metrics.render(repo().catalog());
}

GcRan Service::run_gc(const store::GcOptions& options) {
  GcRan report = server::run_gc(m_data, options);
  if (options.dry_run) return report;
  {
    // The packs GC deleted keep their disk space while this process holds them open:
    // idle connections let them go now, leased ones when they come back.
    std::lock_guard lock(m_pool_mutex);
    m_generation++;
    for (auto& r : m_pool) r->close_read_fds();
  }
  m_metrics.gc_run(report.gc.deleted_bytes, report.gc.freed_bytes);
  return report;
}

void Service::ensure_volume(const std::string& path) {
  Lease lease(*this);
  std::lock_guard lock(m_fleet_mutex);
  auto& cat = repo().catalog();
  catalog::Transaction tx(cat);
  if (repo().volume_at(path)) return;
  store::open_volume(path)->init();
  int64_t id = cat.add_volume(path);
  cat.add_event("volume.added", "", {{"volume_id", id}, {"path", path}, {"by", "mirage-serverd --volume"}});
  tx.commit();
}

std::unique_lock<std::mutex> Service::lock_for(const Method& method, const json& params, const Caller& caller) {
  switch (method.concurrency) {
    case Concurrency::parallel: return {};
    case Concurrency::fleet: return std::unique_lock(m_fleet_mutex);
    case Concurrency::device: {
      // A device's own requests name it by their credential; an admin's by device_id.
      std::string device = caller.role == Role::device ? caller.name : params.value("device_id", std::string());
      return std::unique_lock(m_device_mutexes[std::hash<std::string>{}(device) % m_device_mutexes.size()]);
    }
  }
  return {};
}

proto::Reply Service::handle(proto::Request request, const Caller& caller) {
  proto::Reply reply;
  reply.id = request.id;
  const Method* method = find_method(request.method);
  // Metrics label only the methods there are: a request cannot make up a label.
  std::string_view label = method ? method->name : k_unknown_method;
  auto started = std::chrono::steady_clock::now();
  struct Record {  // counts the request however it ends
    Metrics& metrics;
    std::string_view method;
    const proto::Reply& reply;
    std::chrono::steady_clock::time_point started;
    ~Record() {
      metrics.request(std::string(method), reply.error ? std::string(kind_name(reply.error->kind())) : "ok",
                      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    }
  } record{m_metrics, label, reply, started};
  try {
    if (!method) throw Error(ErrorKind::usage, "unknown method '" + printable(request.method, 100) + "'");
    check_access(*method, request.params, caller);
    Lease lease(*this);
    Context context{*this, repo(), caller, request.binary, reply.binary};
    {
      auto lock = lock_for(*method, request.params, caller);
      method->run(context, request.params, reply.result);
    }
    if (audited(*method, request.params)) {
      json params = request.params;
      if (std::string text = params.dump(); text.size() > 4000) params = text.substr(0, 4000) + "...";
      repo().catalog().add_event("audit", context.device.empty() ? audited_device(request.params) : context.device,
                                 {{"method", request.method}, {"by", caller.name.empty() ? "local" : caller.name},
                                  {"role", caller.role}, {"params", params}});
    }
  } catch (const Error& e) {
    reply = proto::Reply{request.id, json::object(), e, {}};
  } catch (const std::exception& e) {
    reply = proto::Reply{request.id, json::object(), Error(ErrorKind::failed, e.what()), {}};
  }
  return reply;
}

std::string init_data_dir(const std::filesystem::path& data) {
  store::Repository repo(data, true);
  if (repo.catalog().token_count("admin") > 0)
    throw Error(ErrorKind::precondition, "data directory " + data.string() + " is already initialized");
  std::string token = issue_token(repo.catalog(), "admin", Role::admin);
  repo.catalog().add_event("server.init", "", json::object());
  return token;
}

json repair_data_dir(const std::filesystem::path& data) {
  store::Repository repo(data, false, store::OrphanPacks::adopt);
  json report = repo.repair(nullptr);
  repo.catalog().add_event("check.repair", "", report);
  if (repo.catalog().live_admin_tokens() == 0) {
    report["admin_token"] = issue_token(repo.catalog(), "admin", Role::admin);
  }
  report["check"] = repo.check(false, nullptr);
  return report;
}

}  // namespace mirage::server
