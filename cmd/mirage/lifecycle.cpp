// mirage's fleet-care commands: the device list with its sync state, renaming a device,
// forgetting a snapshot, deleting a layer version.
#include "cmd/mirage/lifecycle.hpp"

#include <algorithm>
#include <iostream>

using nlohmann::json;

namespace mirage::lifecycle {

std::string age_text(int64_t seconds) {
  if (seconds < 60) return std::to_string(seconds) + "s";
  if (seconds < 3600) return std::to_string(seconds / 60) + "m";
  if (seconds < 86400) return std::to_string(seconds / 3600) + "h";
  return std::to_string(seconds / 86400) + "d";
}

void print_device_table(std::ostream& out, const json& devices) {
  tool::Table t({"DEVICE", "NAME", "STATE", "HOSTNAME", "LAST SYNC", "AGE", "SNAPSHOT", "LAYERS",
                 {"PENDING", tool::Align::right}});
  for (const auto& d : devices) {
    const json& age = d.contains("last_sync_age_seconds") ? d["last_sync_age_seconds"] : json(nullptr);
    const json& last = d.contains("last_sync") ? d["last_sync"] : json(nullptr);
    // An accepted device a machine without its credential asks for, and a replaced one, say so.
    std::string state = tool::cell(d["state"]);
    if (d.value("reenroll", json()).is_object()) state += ", reenroll " + tool::cell(d["reenroll"]["fingerprint"]);
    if (d.value("replaced_by", json()).is_string()) state += " by " + d["replaced_by"].get<std::string>();
    t.row({tool::cell(d["device_id"]), tool::cell(d.value("name", "")), state, tool::cell(d.value("hostname", "")),
           last.is_string() ? tool::short_time(last.get<std::string>()) : "-",
           age.is_number() ? age_text(age.get<int64_t>()) : "-", tool::cell(d.value("last_snapshot", json(nullptr))),
           tool::cell(d.value("layers", json::array())), std::to_string(d.value("pending_orders", 0))});
  }
  t.print(out, "no devices");
}

std::vector<tool::Command> add_commands(CLI::App& app, CLI::App& device, tool::Common& common) {
  struct Args {
    std::string device_id, name, snapshot_id, layer, snapshot_device;
    bool force = false;
  };
  static Args a;
  auto* rename = device.add_subcommand("rename", "Give a device a name (\"\" clears it)");
  rename->add_option("device", a.device_id, "Device id, name or hostname")->required();
  rename->add_option("name", a.name, "The new name: letters, digits and - _ .")->required();
  auto* snapshot = app.add_subcommand("snapshot", "Forget a snapshot");
  snapshot->require_subcommand(1);
  auto* forget = snapshot->add_subcommand("forget", "Forget a snapshot; the next gc frees what only it held");
  forget->add_option("id", a.snapshot_id, "Snapshot id; with --device also a prefix,\nlatest or a time (yesterday, 2h, 2026-11-30)")
      ->required();
  forget->add_option("--device", a.snapshot_device, "The snapshot's device: id, name or hostname");
  forget->add_flag("--force", a.force, "Also a pinned snapshot");
  auto* layer = app.add_subcommand("layer", "Delete a layer version");
  layer->require_subcommand(1);
  auto* del = layer->add_subcommand("delete", "Delete a layer version no device has or is ordered to get");
  del->add_option("layer", a.layer, "NAME@VERSION")->required();
  // The params are made on the call's connection: --device names resolve there.
  auto call = [&common](const char* method, std::function<json(client::Client&)> params,
                        std::function<void(std::ostream&, const json&)> text) {
    auto client = tool::connect(common);
    json r = client.call(method, params(client));
    tool::print(common, r, [&](std::ostream& out) { text(out, r); });
    return 0;
  };
  return {{rename,
           [call] {
             auto params = [](client::Client& client) {
               return json{{"device_id", client::resolve_device(client, a.device_id)}, {"name", a.name}};
             };
             return call("device.rename", params, [](std::ostream& out, const json& r) {
               out << "device " << r["device_id"].get<std::string>() << " is named "
                   << (r["name"].get<std::string>().empty() ? "nothing" : r["name"].get<std::string>()) << "\n";
             });
           }},
          {forget,
           [call] {
             auto params = [](client::Client& client) {
               // With --device, the snapshot as restore names it (a prefix, latest, a time) on that device.
               std::string id = a.snapshot_id;
               if (!a.snapshot_device.empty())
                 id = client::resolve_snapshot(client, a.snapshot_device, id)["snapshot_id"].get<std::string>();
               return json{{"snapshot_id", id}, {"force", a.force}};
             };
             return call("snapshot.forget", params, [](std::ostream& out, const json& r) {
               out << "snapshot " << r["snapshot_id"].get<std::string>() << " of device "
                   << r["device_id"].get<std::string>() << " forgotten (mirage gc frees its data)\n";
             });
           }},
          {del, [call] {
             return call("layer.delete", [](client::Client&) { return json{{"ref", a.layer}}; }, [](std::ostream& out, const json& r) {
               out << "layer " << r["layer"].get<std::string>() << " deleted (mirage gc frees its data)\n";
             });
           }}};
}

}  // namespace mirage::lifecycle
