#include "libmirage/endpoint/revert.hpp"

#include <chrono>

#include "libmirage/layer/revert.hpp"
#include "libmirage/materialize/metadata.hpp"
#include "libmirage/util/error.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/log.hpp"

namespace mirage::endpoint {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

tree::Entry root_of(const json& snapshot) {
  return tree::decode_entry_hex(snapshot.at("root").get<std::string>(), "snapshot root");
}

/// The device's snapshot `id` as snapshot.list gives it; Error(not_found) when it is gone.
json find_snapshot(Client& client, const std::string& device, const std::string& id) {
  json list = client.call("snapshot.list", {{"device_id", device}});
  for (const auto& s : list.at("snapshots"))
    if (s.value("snapshot_id", "") == id) return s;
  throw Error(ErrorKind::not_found, "snapshot " + id + " of device " + device + ": not found (forgotten since the order?)");
}

/// The root directory's metadata, which the apply leaves alone (its journal names paths
/// below the root): S's again when the scope has the machine area and it differs, or
/// when something changed directly in the root. Idempotent, so a crash before it is
/// mended by the rerun of the order.
void revert_root(const fs::path& root, const layer::Flat& s, const layer::Flat& e, const layer::Plan& plan,
                 layer::RevertScope scope) {
  if (scope == layer::RevertScope::user_data) return;
  const auto& want = s.at("/");
  bool in_root = false;
  for (const auto& op : plan.ops) in_root = in_root || (tree::parent_path(op.path) == "/" && op.path != "/");
  if (!in_root && layer::same_metadata(e.at("/"), want)) return;
  util::Fd fd = util::open_dir(root.string());
  materialize::set_metadata_fd(fd.get(), fd.get(), ".", want, root.string(), [](const std::string& m) { util::warn(m); });
}

json carry_out(Client& client, const json& order, const ApplyOrderOptions& opts, const policy::UploadPolicy& policy) {
  auto start = std::chrono::steady_clock::now();
  const json& spec = order.at("spec");
  std::string snapshot_id = spec.at("snapshot_id");
  auto scope = layer::scope_from_name(spec.value("mode", "system"));
  json target = find_snapshot(client, opts.device_id, snapshot_id);
  auto source = object_source(client, opts.more_connections);
  TreeCache trees(opts.state_dir / "trees.db");
  CachingSource cached(*source, trees);
  auto s = layer::flatten(cached, root_of(target));
  auto e = layer::flatten(cached, root_of(opts.snapshot));
  auto plan = layer::make_revert_plan(s, e, scope, policy);
  auto result = apply_plan(plan, e, *source, opts);
  revert_root(opts.root, s, e, plan, scope);
  return {{"snapshot_id", snapshot_id},
          {"mode", layer::scope_name(scope)},
          {"plan", layer::plan_json(plan, false)},
          {"apply", result},
          {"wire_bytes", source->bytes_received()},
          {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()},
          {"protected_by", opts.snapshot["snapshot_id"]}};
}

}  // namespace

void report_failed(Client& client, const std::string& order_id, const std::string& device, const Error& e) {
  try {
    client.call("order.report", {{"order_id", order_id},
                                 {"device_id", device},
                                 {"state", "failed"},
                                 {"result", {{"error", e.what()}, {"exit", static_cast<int>(e.kind())}}}});
  } catch (const Error&) {
  }
}

json revert_order(Client& client, const json& next, const ApplyOrderOptions& opts, const policy::UploadPolicy& policy) {
  const json& order = next.at("order");
  std::string order_id = order.at("order_id");
  try {
    json report = carry_out(client, order, opts, policy);
    client.call("order.report", {{"order_id", order_id}, {"device_id", opts.device_id}, {"state", "done"}, {"result", report}});
    report["order_id"] = order_id;
    return report;
  } catch (const Error& e) {
    report_failed(client, order_id, opts.device_id, e);
    throw;
  }
}

json revert_dry_run(Client& client, const json& snapshot, const std::string& mode) {
  auto scope = layer::scope_from_name(mode);
  std::string device = snapshot.at("device_id");
  auto policy = policy::UploadPolicy::from_json(client.call("policy.get", {{"device_id", device}})["policy"]);
  json latest = client::resolve_snapshot(client, device, "latest");
  auto source = object_source(client, nullptr);
  auto s = layer::flatten(*source, root_of(snapshot));
  auto e = layer::flatten(*source, root_of(latest));
  json j = layer::plan_json(layer::make_revert_plan(s, e, scope, policy), true);
  j["device_id"] = device;
  j["snapshot_id"] = snapshot["snapshot_id"];
  j["against_snapshot"] = latest["snapshot_id"];
  j["mode"] = layer::scope_name(scope);
  return j;
}

}  // namespace mirage::endpoint
