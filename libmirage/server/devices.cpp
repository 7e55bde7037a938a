// The device methods: registration (anonymous or by credential), acceptance, tags,
// status and deletion.
#include <algorithm>

#include "libmirage/server/http_server.hpp"
#include "libmirage/server/methods.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/hex.hpp"

namespace mirage::server {

using nlohmann::json;

namespace {

constexpr size_t k_max_hostname = 253;  // a DNS name (RFC 1035): fixed, listed by `mirage-serverd limits`

}  // namespace

bool valid_name(const std::string& name) {
  if (name.empty() || name.size() > 100 || name[0] == '-') return false;  // "-x" would read as a flag
  return std::all_of(name.begin(), name.end(), [](char c) {
    return isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

std::string printable(const std::string& text, size_t max) {
  std::string out = text.substr(0, max);
  for (char& c : out)
    if (c < 0x20 || c > 0x7e) c = '?';
  return text.size() > max ? out + "..." : out;
}

bool valid_device_id(const std::string& id) {
  // Not "-x" either: every tool would take it for a flag ("accept -x" cannot name it).
  if (id.empty() || id.size() > 128 || id == "." || id == ".." || id[0] == '-') return false;
  for (char c : id)
    if (!(isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':')) return false;
  return true;
}

catalog::Device registered_device(catalog::Catalog& cat, const std::string& id) {
  auto d = cat.device(id);
  if (!d) throw Error(ErrorKind::not_found, "device " + id + ": not registered");
  return *d;
}

catalog::Device accepted_device(catalog::Catalog& cat, const std::string& id) {
  auto d = registered_device(cat, id);
  if (d.state == catalog::DeviceState::rejected) throw Error(ErrorKind::permission, "device " + id + ": rejected");
  if (d.state == catalog::DeviceState::replaced) throw replaced_error(d);
  if (d.state == catalog::DeviceState::pending)
    throw Error(ErrorKind::precondition, "device " + id + ": pending (an admin must accept it)");
  return d;
}

DeviceRegister DeviceRegister::parse(const Params& p) {
  DeviceRegister r;
  r.device_id = p.text("device_id");
  if (!valid_device_id(r.device_id))
    throw Error(ErrorKind::usage, "device id '" + printable(r.device_id, 140) +
                                      "': use letters, digits and - _ . : (at most 128, not starting with -)");
  r.hostname = p.text_or("hostname");
  if (r.hostname.size() > k_max_hostname || r.hostname != printable(r.hostname, k_max_hostname))
    throw Error(ErrorKind::usage, "hostname: at most " + std::to_string(k_max_hostname) + " printable characters");
  r.inventory = p.object("inventory", p.limits().inventory, "inventory");
  r.credential_hash = p.text_or("credential_hash");
  if (!r.credential_hash.empty() && (r.credential_hash.size() != 64 || !util::from_hex(r.credential_hash)))
    throw Error(ErrorKind::usage, "credential_hash: expected 64 hex digits");
  return r;
}

catalog::Device device_register(Context& c, const DeviceRegister& p) {
  auto& cat = c.cat();
  const std::string& id = p.device_id;
  catalog::Transaction tx(cat);
  auto d = cat.device(id);
  auto enrolled = cat.device_credential(id);
  bool admin = c.caller.role == Role::admin, itself = c.caller.role == Role::device && c.caller.name == id;
  // Anyone may register a new device (it waits, pending, for an admin); an enrolled
  // one is re-registered only by itself (its credential) or an admin. An accepted
  // device's id from a machine without its credential (a lost or replaced disk) is
  // never given to whoever asks first: the registration waits until an admin
  // re-enrolls the device (device.reenroll), and the device's credential stays valid.
  if (d && !admin && !itself && (enrolled || d->state != catalog::DeviceState::pending)) {
    if (d->state == catalog::DeviceState::replaced) throw replaced_error(*d);
    if (d->state == catalog::DeviceState::accepted && !p.credential_hash.empty()) {
      auto waiting = request_reenrolment(cat, p);
      tx.commit();
      throw waiting;
    }
    if (d->state == catalog::DeviceState::rejected) throw Error(ErrorKind::permission, "device " + id + ": rejected");
    throw Error(ErrorKind::permission, "device " + id + " is already registered; it must use its credential "
                                       "(an admin may delete it: mirage device delete " + id + ")");
  }
  uint64_t max_pending = c.limits().pending_devices;
  if (!d && !admin && static_cast<uint64_t>(cat.device_count(catalog::DeviceState::pending)) >= max_pending)
    throw Error(ErrorKind::unavailable, "too many devices wait for acceptance (" + std::to_string(max_pending) +
                                            ", limit pending-devices); an admin must accept or reject some first");
  if (!p.credential_hash.empty() && (!d || admin)) cat.set_device_credential(id, p.credential_hash);
  if (!d) {
    catalog::Device nd;
    nd.id = id;
    nd.hostname = p.hostname;
    nd.inventory = p.inventory;
    nd.registered_at = nd.last_seen = util::now_ns();
    cat.add_device(nd);
    cat.add_event("device.registered", id, {{"hostname", p.hostname}});
    d = nd;
  } else {
    cat.touch_device(id, p.hostname, p.inventory);
  }
  tx.commit();
  return *d;
}

void to_json(json& j, const DeviceDeleted& r) {
  j = {{"device_id", r.device_id}, {"deleted", true}, {"snapshots", r.snapshots}, {"pinned", r.pinned}};
}

DeviceDeleted device_delete(Context& c, const DeviceDelete& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  registered_device(cat, p.device_id);
  auto snaps = cat.snapshots(p.device_id);
  uint64_t pinned = static_cast<uint64_t>(std::count_if(snaps.begin(), snaps.end(), [](const auto& s) { return s.pinned; }));
  if (pinned > 0 && !p.force)
    throw Error(ErrorKind::precondition, "device " + p.device_id + " has " + std::to_string(pinned) +
                                             " pinned snapshots; --force deletes them with it");
  cat.delete_device(p.device_id);
  cat.add_event("device.deleted", p.device_id, {{"by", c.by()}, {"snapshots", snaps.size()}, {"pinned", pinned}});
  tx.commit();
  return {p.device_id, snaps.size(), pinned};
}

DeviceRename DeviceRename::parse(const Params& p) {
  DeviceRename r{p.text("device_id"), p.text_or("name")};
  if (!r.name.empty() && !valid_name(r.name))
    throw Error(ErrorKind::usage, "device name '" + printable(r.name, 100) + "': use letters, digits and - _ . (at most 100)");
  return r;
}

void to_json(json& j, const DeviceRenamed& r) {
  j = {{"device_id", r.device_id}, {"name", r.name}, {"previous", r.previous}};
}

DeviceRenamed device_rename(Context& c, const DeviceRename& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  auto d = registered_device(cat, p.device_id);
  // A name picks one device (the commands take it where they take an id): never two.
  if (!p.name.empty())
    for (const auto& other : cat.devices(std::nullopt))
      if (other.id != p.device_id && (other.name == p.name || other.id == p.name))
        throw Error(ErrorKind::precondition, "device name " + p.name + " is taken by device " + other.id);
  cat.set_device_name(p.device_id, p.name);
  cat.add_event("device.renamed", p.device_id, {{"name", p.name}, {"previous", d.name}, {"by", c.by()}});
  tx.commit();
  return {p.device_id, p.name, d.name};
}

DeviceList DeviceList::parse(const Params& p) {
  DeviceList l;
  if (p.has("state")) {
    std::string s = p.text("state");
    if (s != "pending" && s != "accepted" && s != "rejected" && s != "replaced" && s != "reenroll")
      throw Error(ErrorKind::usage, "state '" + printable(s, 100) + "': expected pending, accepted, rejected, replaced or reenroll");
    l.reenroll = s == "reenroll";
    l.state = catalog::state_from_name(l.reenroll ? "accepted" : s);
  }
  l.hostname = p.optional_text("hostname");
  l.name = p.optional_text("name");
  if (p.has("stale_seconds")) l.stale_ns = static_cast<int64_t>(p.number("stale_seconds", 0, 1, 100.0 * 365 * 86400) * 1e9);
  return l;
}

void to_json(json& j, const Devices& r) {
  json list = json::array();
  for (const auto& d : r.devices) {
    json one = d;
    auto it = r.activity.find(d.id);
    catalog::DeviceActivity none;
    const auto& a = it == r.activity.end() ? none : it->second;
    one["last_sync"] = a.last_sync ? json(util::rfc3339(a.last_sync)) : json(nullptr);
    one["last_sync_age_seconds"] = a.last_sync ? json(std::max<int64_t>(0, (r.now - a.last_sync) / 1000000000)) : json(nullptr);
    one["last_snapshot"] = a.last_snapshot.empty() ? json(nullptr) : json(a.last_snapshot);
    one["snapshots"] = a.snapshots;
    one["pinned_snapshots"] = a.pinned;
    one["layers"] = a.layers;
    one["pending_orders"] = a.pending_orders;
    auto w = r.reenrolments.find(d.id);
    one["reenroll"] = w == r.reenrolments.end()
                          ? json(nullptr)
                          : json{{"fingerprint", credential_fingerprint(w->second.hash)},
                                 {"hostname", w->second.hostname},
                                 {"requested_at", util::rfc3339(w->second.requested_at)},
                                 {"last_seen", util::rfc3339(w->second.last_seen)},
                                 {"contested", w->second.contested},
                                 {"contender_fingerprint", w->second.contender_hash.empty()
                                                               ? json(nullptr)
                                                               : json(credential_fingerprint(w->second.contender_hash))}};
    list.push_back(std::move(one));
  }
  j = {{"devices", list}};
}

Devices device_list(Context& c, const DeviceList& p) {
  auto& cat = c.cat();
  // --stale is about devices that should sync: accepted ones, unless a state is asked for.
  auto state = p.stale_ns && !p.state ? std::optional(catalog::DeviceState::accepted) : p.state;
  Devices r{cat.devices(state), cat.device_activity(), util::now_ns()};
  for (auto& w : cat.reenrolments())
    if (auto d = cat.device(w.device); d && d->state == catalog::DeviceState::accepted) r.reenrolments[w.device] = std::move(w);
  if (p.reenroll) std::erase_if(r.devices, [&](const catalog::Device& d) { return !r.reenrolments.contains(d.id); });
  // A client naming a device by its hostname (--device pc-bob) gets the few that match,
  // not the fleet.
  if (p.hostname)
    std::erase_if(r.devices, [&](const catalog::Device& d) { return !iequals(d.hostname, *p.hostname); });
  if (p.name) std::erase_if(r.devices, [&](const catalog::Device& d) { return d.name != *p.name; });
  if (p.stale_ns)
    std::erase_if(r.devices, [&](const catalog::Device& d) {
      auto it = r.activity.find(d.id);
      return it != r.activity.end() && it->second.last_sync != 0 && r.now - it->second.last_sync < *p.stale_ns;
    });
  return r;
}

namespace {

catalog::Device decide(Context& c, const DeviceDecision& p, catalog::DeviceState state) {
  auto& cat = c.cat();
  auto d = registered_device(cat, p.device_id);
  if (d.state == catalog::DeviceState::replaced)
    throw Error(ErrorKind::precondition, "device " + d.id + " was replaced by device " + d.replaced_by + "; it stays so");
  bool reference = state == catalog::DeviceState::accepted && p.reference;
  if (p.policy) {
    if (*p.policy != "default" && !cat.policy(*p.policy)) throw Error(ErrorKind::not_found, "policy " + *p.policy + ": not found");
    cat.set_device_policy(p.device_id, *p.policy);
  }
  cat.set_device_state(p.device_id, state, reference);
  // A new CVD goes to the writable volume with the most free space.
  if (state == catalog::DeviceState::accepted && d.volume == 0) cat.set_device_volume(p.device_id, c.repo.choose_volume());
  cat.add_event(std::string("device.") + std::string(catalog::state_name(state)), p.device_id,
                {{"by", c.by()}, {"reference", reference}});
  return *cat.device(p.device_id);
}

}  // namespace

catalog::Device device_accept(Context& c, const DeviceDecision& p) { return decide(c, p, catalog::DeviceState::accepted); }
catalog::Device device_reject(Context& c, const DeviceDecision& p) { return decide(c, p, catalog::DeviceState::rejected); }

void to_json(json& j, const DeviceStatus& r) {
  json pending = json::array();
  for (const auto& o : r.pending) pending.push_back(o);
  j = {{"device", r.device}, {"given", r.given}, {"pending", pending}, {"last", r.last ? json(*r.last) : json(nullptr)},
       {"cvd", r.cvd}};
}

DeviceStatus device_status(Context& c, const DeviceId& p) {
  auto& cat = c.cat();
  DeviceStatus r{registered_device(cat, p.device_id), cat.given(p.device_id), {}, std::nullopt, 1};
  for (const auto& o : cat.orders(p.device_id, "")) {
    OrderState state = parse<OrderState>(o.state);
    if (state == OrderState::pending) r.pending.push_back(o);
    if (state == OrderState::done || state == OrderState::failed) r.last = o;
  }
  auto cvds = cat.cvds(p.device_id);
  if (!cvds.empty()) r.cvd = cvds.back().first;
  return r;
}

catalog::Device device_tag(Context& c, const DeviceTag& p) {
  auto& cat = c.cat();
  auto tags = registered_device(cat, p.device_id).tags;
  for (const auto& t : p.add) {
    if (!valid_name(t)) throw Error(ErrorKind::usage, "tag '" + t + "': use letters, digits and - _ .");
    if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
  }
  for (const auto& t : p.remove) std::erase(tags, t);
  cat.set_device_tags(p.device_id, tags);
  cat.add_event("device.tagged", p.device_id, {{"tags", tags}, {"by", c.by()}});
  return *cat.device(p.device_id);
}

}  // namespace mirage::server
