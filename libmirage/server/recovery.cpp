// After a disk loss and onto a replacement device: an accepted device's id registered
// by a machine without its credential waits for an admin's re-enrolment, and a new
// device takes over an old one's CVD.
//
// Re-enrolment: the first machine that registers the id without the credential is
// recorded with the SHA-256 of its own new secret; nothing is given to it, and the
// device's credential stays valid (a stranger cannot lock the real endpoint out). A
// later machine with another secret is not recorded but counted (contested), and its
// secret's hash kept as the contender, so the admin may pick either by the fingerprint
// each endpoint prints. Only device.reenroll (an admin) makes the waiting secret the
// device's credential, which revokes the earlier one.
#include <algorithm>

#include "libmirage/proto/frame.hpp"
#include "libmirage/server/methods.hpp"
#include "libmirage/util/clock.hpp"

namespace mirage::server {

using nlohmann::json;

std::string credential_fingerprint(const std::string& hash) { return hash.substr(0, 16); }

Error replaced_error(const catalog::Device& d) {
  return Error(ErrorKind::permission, "device " + d.id + " was replaced by device " + d.replaced_by +
                                          " (mirage-restore --from-device); it can no longer sync");
}

Error request_reenrolment(catalog::Catalog& cat, const DeviceRegister& p) {
  const std::string& id = p.device_id;
  int64_t now = util::now_ns();
  std::string fp = credential_fingerprint(p.credential_hash);
  auto waiting = cat.reenrolment(id);
  if (!waiting) {
    waiting = catalog::Reenrolment{id, p.credential_hash, p.hostname, p.inventory, now, now, 0, ""};
    cat.add_event("device.reenroll_requested", id, {{"fingerprint", fp}, {"hostname", p.hostname}});
  }
  if (waiting->hash == p.credential_hash) {
    waiting->hostname = p.hostname;
    waiting->inventory = p.inventory;
    waiting->last_seen = now;
    cat.set_reenrolment(*waiting);
    return Error(ErrorKind::precondition,
                 "device " + id + " is enrolled and this machine does not hold its credential: it awaits re-enrolment "
                 "(fingerprint " + fp + "); an admin must run: mirage-centralize accept " + id + " --reenroll --fingerprint " + fp,
                 std::string(proto::k_reason_reenroll));
  }
  std::string first = credential_fingerprint(waiting->hash);
  if (waiting->contender_hash != p.credential_hash)
    cat.add_event("device.reenroll_contested", id, {{"fingerprint", fp}, {"hostname", p.hostname}, {"waiting", first}});
  waiting->contested++;
  waiting->contender_hash = p.credential_hash;
  cat.set_reenrolment(*waiting);
  return Error(ErrorKind::precondition,
               "device " + id + ": another machine's registration (fingerprint " + first + ") already awaits re-enrolment; "
               "this machine's (fingerprint " + fp + ") is not recorded. An admin compares the fingerprints and runs: "
               "mirage-centralize accept " + id + " --reenroll --fingerprint FINGERPRINT",
               std::string(proto::k_reason_reenroll));
}

DeviceReenroll DeviceReenroll::parse(const Params& p) {
  DeviceReenroll r{p.text("device_id"), p.optional_text("fingerprint"), p.flag("reject")};
  if (r.fingerprint) {
    auto& f = *r.fingerprint;
    for (char& ch : f) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (f.size() < 16 || f.size() > 64 || f.find_first_not_of("0123456789abcdef") != std::string::npos)
      throw Error(ErrorKind::usage, "fingerprint '" + printable(f, 70) + "': expected 16 hex digits, as the endpoint printed them");
  }
  return r;
}

void to_json(json& j, const DeviceReenrolled& r) {
  j = r.device;
  j["fingerprint"] = r.fingerprint;
  j["reenrolled"] = !r.rejected;
  j["revoked"] = r.revoked;
}

namespace {

/// The waiting (or contending) machine's credential hash the admin's fingerprint picks.
std::string chosen_hash(const catalog::Reenrolment& w, const DeviceReenroll& p) {
  std::string first = credential_fingerprint(w.hash), other = credential_fingerprint(w.contender_hash);
  if (!p.fingerprint) {
    if (w.contested > 0)
      throw Error(ErrorKind::precondition, "device " + p.device_id + ": another machine also registered this id (fingerprints " +
                                               first + ", " + other + "); compare the fingerprint the endpoint printed "
                                               "and give --fingerprint");
    return w.hash;
  }
  if (w.hash.rfind(*p.fingerprint, 0) == 0) return w.hash;
  if (!p.reject && !w.contender_hash.empty() && w.contender_hash.rfind(*p.fingerprint, 0) == 0) return w.contender_hash;
  throw Error(ErrorKind::precondition, "device " + p.device_id + ": fingerprint " + *p.fingerprint +
                                           " is not the waiting machine's (" + first + ")");
}

}  // namespace

DeviceReenrolled device_reenroll(Context& c, const DeviceReenroll& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  auto d = registered_device(cat, p.device_id);
  auto waiting = cat.reenrolment(p.device_id);
  if (!waiting || d.state != catalog::DeviceState::accepted)
    throw Error(ErrorKind::precondition, "device " + p.device_id + " is not awaiting re-enrolment (no machine without its "
                                         "credential has registered it since)");
  std::string hash = chosen_hash(*waiting, p), fp = credential_fingerprint(hash);
  cat.delete_reenrolment(p.device_id);
  if (p.reject) {
    // The machine that contended for the id, if any, waits in its place (the admin
    // dropped the first one, say a stranger's).
    if (!waiting->contender_hash.empty())
      cat.set_reenrolment({p.device_id, waiting->contender_hash, "", json::object(), util::now_ns(), util::now_ns(), 0, ""});
    cat.add_event("device.reenroll_rejected", p.device_id,
                  {{"fingerprint", fp}, {"by", c.by()},
                   {"now_waiting", waiting->contender_hash.empty() ? json(nullptr) : json(credential_fingerprint(waiting->contender_hash))}});
    tx.commit();
    return {d, fp, true, false};
  }
  bool revoked = cat.device_credential(p.device_id).has_value();
  cat.set_device_credential(p.device_id, hash);
  if (hash == waiting->hash) cat.touch_device(p.device_id, waiting->hostname, waiting->inventory);
  cat.add_event("device.reenrolled", p.device_id,
                {{"fingerprint", fp}, {"hostname", hash == waiting->hash ? waiting->hostname : ""}, {"revoked", revoked},
                 {"by", c.by()}});
  tx.commit();
  return {*cat.device(p.device_id), fp, false, revoked};
}

DeviceReplace DeviceReplace::parse(const Params& p) {
  DeviceReplace r{p.text("device_id"), p.text("from_device"), p.optional_text("mode")};
  if (r.mode && *r.mode != "full" && *r.mode != "user-data")
    throw Error(ErrorKind::usage, "mode '" + printable(*r.mode, 100) + "': expected full or user-data");
  if (r.device_id == r.from_device)
    throw Error(ErrorKind::usage, "device " + printable(r.device_id, 140) + " cannot take over its own CVD: give another --from-device");
  return r;
}

void to_json(json& j, const DeviceReplaced& r) {
  j = {{"device", r.device},   {"device_id", r.device.id},        {"from_device", r.from_device},
       {"snapshots", r.snapshots}, {"latest", r.latest},          {"orders_cancelled", r.orders_cancelled},
       {"already", r.already}, {"orders", r.orders}};
}

namespace {

/// Why `nw` may not take over `old`'s CVD, if it may not (Error precondition).
void check_takeover(catalog::Catalog& cat, const catalog::Device& nw, const catalog::Device& old) {
  if (old.state == catalog::DeviceState::replaced)
    throw Error(ErrorKind::precondition, "device " + old.id + " was already replaced by device " + old.replaced_by);
  if (old.state != catalog::DeviceState::accepted)
    throw Error(ErrorKind::precondition, "device " + old.id + " is " + std::string(catalog::state_name(old.state)) +
                                             ": only an accepted device's CVD is taken over");
  if (nw.state == catalog::DeviceState::rejected || nw.state == catalog::DeviceState::replaced)
    throw Error(ErrorKind::precondition, "device " + nw.id + " is " + std::string(catalog::state_name(nw.state)) +
                                             ": it cannot take over a CVD");
  if (auto own = cat.snapshots(nw.id); !own.empty())
    throw Error(ErrorKind::precondition, "device " + nw.id + " has " + std::to_string(own.size()) +
                                             " snapshots of its own: only a device without history takes over a CVD "
                                             "(mirage device delete " + nw.id + ", then it registers again)");
}

/// The content NEW gets once it holds the CVD, queued in the takeover's transaction:
/// a revert to the CVD's newest snapshot (compose_revert, as order.revert queues it),
/// then, when the CVD has a base layer, an assign order of the same layers that matches
/// the driver profiles again against NEW's inventory (compose_orders; it runs after the
/// revert, orders being carried out oldest first): full gives NEW OLD's machine with
/// NEW's own drivers; user-data keeps NEW's system (and its own record of layers) and
/// assigns it OLD's layers.
std::vector<catalog::Order> queue_content(Context& c, const catalog::Device& nw, const std::string& mode,
                                          const json& cvd_given) {
  auto& cat = c.cat();
  std::vector<catalog::Order> out;
  OrderRevert revert;
  revert.device = nw.id;
  revert.snapshot = "latest";
  revert.mode = mode == "full" ? RevertMode::full : RevertMode::user_data;
  out.push_back(compose_revert(cat, revert, c.by()));
  json layers = out.back().spec.contains("layers") ? out.back().spec["layers"] : cvd_given.value("layers", json::array());
  std::string base;
  for (const auto& ref : layers)
    if (resolve_layer(cat, ref.get<std::string>()).kind == "base") base = ref.get<std::string>();
  if (base.empty()) return out;
  OrderCreate assign{{{nw.id}, {}, false}, OrderKind::assign, base, {}, {}, false, false, false};
  if (mode == "user-data") {  // OLD's apps too: compose_orders starts from NEW's own (none)
    for (const auto& ref : layers)
      if (auto row = resolve_layer(cat, ref.get<std::string>()); row.kind == "app") assign.apps.push_back(ref.get<std::string>());
  }
  for (auto& o : compose_orders(cat, assign, c.by()).orders) out.push_back(std::move(o));
  return out;
}

}  // namespace

DeviceReplaced device_replace(Context& c, const DeviceReplace& p) {
  auto& cat = c.cat();
  catalog::Transaction tx(cat);
  auto nw = registered_device(cat, p.device_id), old = registered_device(cat, p.from_device);
  auto latest_of = [&](const std::string& id) {
    auto snaps = cat.snapshots(id);
    return snaps.empty() ? std::string() : snaps.back().id;
  };
  // A rerun (the order after the takeover failed, say) finds the takeover done.
  if (old.state == catalog::DeviceState::replaced && old.replaced_by == nw.id) {
    std::vector<catalog::Order> orders;
    if (p.mode) orders = queue_content(c, nw, *p.mode, cat.given(nw.id));
    tx.commit();
    return {nw, old.id, 0, latest_of(nw.id), 0, true, orders};
  }
  check_takeover(cat, nw, old);
  auto snaps = cat.snapshots(old.id);
  if (snaps.empty()) throw Error(ErrorKind::precondition, "device " + old.id + " has no snapshots to take over");
  json own_given = cat.given(nw.id), cvd_given = cat.given(old.id);
  cat.move_cvd(old.id, nw.id);
  // user-data keeps NEW's system: the layers it actually has stay its record.
  if (p.mode == "user-data") cat.set_given(nw.id, own_given);
  // What was queued for the old machine is not for the new one (its orders carried out
  // moved with the CVD).
  auto pending = cat.orders(old.id, name(OrderState::pending));
  for (const auto& o : pending) cat.finish_order(o.id, name(OrderState::superseded), {{"replaced_by", nw.id}});
  if (nw.state == catalog::DeviceState::pending) cat.set_device_state(nw.id, catalog::DeviceState::accepted, false);
  cat.set_device_policy(nw.id, old.policy);
  cat.set_device_volume(nw.id, old.volume != 0 ? old.volume : c.repo.choose_volume());
  auto tags = nw.tags;
  for (const auto& t : old.tags)
    if (std::find(tags.begin(), tags.end(), t) == tags.end()) tags.push_back(t);
  cat.set_device_tags(nw.id, tags);
  if (!old.name.empty() && nw.name.empty()) {  // the name people know it by follows (names are unique)
    cat.set_device_name(old.id, "");
    cat.set_device_name(nw.id, old.name);
  }
  cat.set_device_replaced(old.id, nw.id);
  cat.delete_reenrolment(old.id);
  cat.add_event("device.replaced", old.id, {{"replaced_by", nw.id}, {"snapshots", snaps.size()}, {"by", c.by()}});
  cat.add_event("device.took_over", nw.id, {{"from_device", old.id}, {"snapshots", snaps.size()},
                                            {"latest", snaps.back().id}, {"by", c.by()}});
  std::vector<catalog::Order> orders;
  if (p.mode) orders = queue_content(c, *cat.device(nw.id), *p.mode, cvd_given);
  tx.commit();
  return {*cat.device(nw.id), old.id, snaps.size(), snaps.back().id, pending.size(), false, orders};
}

}  // namespace mirage::server
