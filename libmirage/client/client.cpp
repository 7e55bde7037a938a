#include "libmirage/client/client.hpp"

#include <algorithm>

#include "libmirage/util/clock.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::client {

using nlohmann::json;
using util::Digest;

nlohmann::json Client::call(const std::string& method, nlohmann::json params) {
  return call_binary(method, std::move(params), {}).result;
}

proto::Reply Client::call_binary(const std::string& method, nlohmann::json params, std::vector<uint8_t> binary) {
  proto::Request req;
  req.id = m_next_id++;
  req.method = method;
  req.params = std::move(params);
  req.binary = std::move(binary);
  proto::Reply reply = m_transport->call(std::move(req));
  if (reply.error) throw *reply.error;
  return reply;
}

ConnectionPool::ConnectionPool(Client& main, ConnectionFactory more, size_t max)
    : m_main(main),
      m_extra(more && max > 0 ? util::Pool<Client>::Make([more = std::move(more)]() -> std::unique_ptr<Client> {
        try {
          return more();
        } catch (const Error& e) {
          util::warn(std::string("extra connection failed, sharing one: ") + e.what());
          return nullptr;  // the pool stops opening connections
        }
      })
                 : nullptr,
              max) {}  // max 0: no extra connection (the pool would read it as no bound)

namespace {
constexpr size_t k_ids_per_request = 16384;
constexpr size_t k_pairs_per_request = 4096;
}  // namespace

std::vector<bool> chunks_missing(Client& client, std::span<const Digest> ids) {
  std::vector<bool> out;
  out.reserve(ids.size());
  for (size_t at = 0; at < ids.size(); at += k_ids_per_request) {
    auto part = ids.subspan(at, std::min(k_ids_per_request, ids.size() - at));
    auto reply = client.call_binary("chunks.missing", json::object(), proto::encode_ids(part));
    if (reply.binary.size() != part.size()) throw Error(ErrorKind::failed, "chunks.missing: reply of the wrong size");
    for (uint8_t b : reply.binary) out.push_back(b != 0);
  }
  return out;
}

void chunks_put(Client& client, const std::string& device, std::vector<uint8_t> records) {
  json params = json::object();
  if (!device.empty()) params["device_id"] = device;  // else an admin uploading a capture
  client.call_binary("chunks.put", params, std::move(records));
}

std::vector<uint8_t> chunks_get(Client& client, std::span<const Digest> ids) {
  std::vector<uint8_t> out;
  for (size_t at = 0; at < ids.size(); at += k_ids_per_request) {
    auto part = ids.subspan(at, std::min(k_ids_per_request, ids.size() - at));
    auto reply = client.call_binary("chunks.get", json::object(), proto::encode_ids(part));
    if (out.empty())
      out = std::move(reply.binary);
    else
      out.insert(out.end(), reply.binary.begin(), reply.binary.end());
  }
  return out;
}

std::vector<uint8_t> chunks_delta(Client& client, std::span<const Digest> pairs) {
  std::vector<uint8_t> out;
  for (size_t at = 0; at < pairs.size(); at += 2 * k_pairs_per_request) {
    auto part = pairs.subspan(at, std::min(2 * k_pairs_per_request, pairs.size() - at));
    auto reply = client.call_binary("chunks.delta", json::object(), proto::encode_ids(part));
    out.insert(out.end(), reply.binary.begin(), reply.binary.end());
  }
  return out;
}

namespace {

/// A user's spec in a message: control bytes as '?' (a newline or escape must not reach a
/// terminal), and cut when long (a 100 KB argument is not echoed back).
std::string shown(const std::string& spec) {
  constexpr size_t k_shown = 64;
  std::string out = spec.substr(0, k_shown);
  for (char& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  if (spec.size() > k_shown) out += "... (" + std::to_string(spec.size()) + " bytes)";
  return out;
}

}  // namespace

std::string resolve_device(Client& client, const std::string& spec, Unregistered unregistered) {
  if (spec.empty()) throw Error(ErrorKind::usage, "--device is required (a device id, name or hostname)");
  try {
    client.call("device.status", {{"device_id", spec}});
    return spec;
  } catch (const Error& e) {
    if (e.kind() == ErrorKind::permission) return spec;  // a device's credential: only its own id works anyway
    if (e.kind() != ErrorKind::not_found) throw;
  }
  json named = client.call("device.list", {{"name", spec}})["devices"];
  if (!named.empty()) return named[0]["device_id"].get<std::string>();  // device.rename keeps names unique
  json devices = client.call("device.list", {{"hostname", spec}})["devices"];
  if (devices.size() == 1) return devices[0]["device_id"].get<std::string>();
  if (devices.empty()) {
    if (unregistered == Unregistered::keep) return spec;
    throw Error(ErrorKind::not_found, "device " + shown(spec) + ": no device has this id, name or hostname");
  }
  std::string ids;
  for (const auto& d : devices)
    ids += "\n  " + d["device_id"].get<std::string>() + "  " + d.value("state", "") + ", last seen " + d.value("last_seen", "");
  throw Error(ErrorKind::usage, "device " + shown(spec) + ": " + std::to_string(devices.size()) +
                                    " devices have this hostname; give one of their ids:" + ids);
}

std::vector<std::string> resolve_devices(Client& client, const std::vector<std::string>& specs) {
  std::vector<std::string> ids;
  ids.reserve(specs.size());
  for (const auto& spec : specs) ids.push_back(resolve_device(client, spec));
  return ids;
}

namespace {

std::string describe(const json& snapshot) {
  return snapshot["snapshot_id"].get<std::string>() + " (" + snapshot.value("time", "") + ")";
}

/// The newest snapshot of `list` taken at or before `upper`.
json at_or_before(const json& list, const std::string& device, const std::string& spec, int64_t upper) {
  json best;
  for (const auto& s : list)
    if (s["time_ns"].get<int64_t>() <= upper) best = s;
  if (!best.is_null()) return best;
  std::string message = "device " + device + ": no snapshot at or before " + util::rfc3339(upper) + " (" + shown(spec) +
                        "); the first is " + describe(list.front());
  for (const auto& s : list)
    if (s["snapshot_id"].get<std::string>().starts_with(spec)) {
      message += "; for the snapshot whose id starts with " + shown(spec) + ", give more of its id";
      break;
    }
  throw Error(ErrorKind::not_found, message);
}

}  // namespace

json pick_snapshot(const json& list, const std::string& device, const std::string& spec) {
  if (list.empty()) throw Error(ErrorKind::not_found, "device " + device + ": no snapshots");
  if (spec.empty() || spec == "latest") return list.back();
  if (auto upper = util::parse_time_before(spec, util::now_ns())) return at_or_before(list, device, spec, *upper);
  std::vector<json> matches;
  for (const auto& s : list)
    if (s["snapshot_id"].get<std::string>().starts_with(spec)) matches.push_back(s);
  if (matches.size() == 1) return matches.front();
  if (matches.empty())
    throw Error(ErrorKind::not_found, "device " + device + ": no snapshot " + shown(spec) +
                                          " (an id or id prefix, latest, a date or time such as 2026-11-30 14:00, "
                                          "yesterday, or an age such as 2h, 3d, 1w)");
  constexpr size_t k_listed = 10;
  std::string candidates;
  for (size_t i = 0; i < matches.size() && i < k_listed; ++i) candidates += "\n  " + describe(matches[i]);
  if (matches.size() > k_listed) candidates += "\n  (" + std::to_string(matches.size() - k_listed) + " more)";
  throw Error(ErrorKind::usage, "device " + device + ": snapshot prefix " + shown(spec) + " is ambiguous; it starts " +
                                    std::to_string(matches.size()) + " ids:" + candidates);
}

json resolve_snapshot(Client& client, const std::string& device, const std::string& spec) {
  std::string id = resolve_device(client, device);
  json list = client.call("snapshot.list", {{"device_id", id}})["snapshots"];
  std::string shown = id == device ? id : device + " (" + id + ")";
  json snapshot = pick_snapshot(list, shown, spec);
  snapshot["device_id"] = id;
  return snapshot;
}

}  // namespace mirage::client
