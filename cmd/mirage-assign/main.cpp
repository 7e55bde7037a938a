// mirage-assign: assign base and app layers to devices (as orders the endpoints carry
// out on their next sync), enforce them, provision, render an image, show status.
#include <chrono>
#include <iostream>
#include <thread>

#include "libmirage/endpoint/layers.hpp"
#include "cmd/common/tool.hpp"
#include "libmirage/util/log.hpp"

using namespace mirage;
using nlohmann::json;

namespace {

struct Options {
  std::vector<std::string> devices, collections, apps, remove_apps;
  std::string base, to, device;
  bool enforce = false, remove_user_apps = false, provision = false, dry_run = false, wait = false;
  double timeout = 3600;
};

json wait_for(client::Client& client, const std::string& order_id, double timeout) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout);
  for (;;) {
    json o = client.call("order.get", {{"order_id", order_id}});
    if (o["state"] != "pending") return o;
    if (std::chrono::steady_clock::now() > deadline)
      throw Error(ErrorKind::unavailable, "order " + order_id + " still pending after " + std::to_string(int(timeout)) + " s");
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
  }
}

int assign(const tool::Common& common, const Options& o) {
  if (o.devices.empty() && o.collections.empty())
    throw Error(ErrorKind::usage, "give --device ID or --collection NAME (one or more)");
  if (int(o.enforce) + int(o.provision) > 1) throw Error(ErrorKind::usage, "--enforce and --provision exclude each other");
  if (o.enforce && (!o.base.empty() || !o.apps.empty())) throw Error(ErrorKind::usage, "--enforce takes no --base or --app");
  if (o.remove_user_apps && !o.enforce && !o.provision)
    throw Error(ErrorKind::usage, "--remove-user-apps goes with --enforce (--provision implies it)");
  json params = {{"device_ids", o.devices},
                 {"collections", o.collections},
                 {"type", o.enforce ? "enforce" : o.provision ? "provision" : "assign"},
                 {"apps", o.apps},
                 {"remove_user_apps", o.remove_user_apps},
                 {"dry_run", o.dry_run}};
  if (!o.base.empty()) params["base"] = o.base;
  if (!o.remove_apps.empty()) params["remove_apps"] = o.remove_apps;
  auto client = tool::connect(common);
  json created = client.call("order.create", params);
  for (const auto& w : created["warnings"]) util::warn(w.get<std::string>());
  // Conflicts between app layers, reported at assignment (a later layer wins).
  auto source = endpoint::object_source(client, nullptr);
  endpoint::LayerCache cache(client, *source);
  json out = {{"orders", json::array()}, {"warnings", created["warnings"]}};
  int status = 0;
  for (const auto& order : created["orders"]) {
    json entry = order;
    std::vector<std::string> refs = order["spec"]["layers"].get<std::vector<std::string>>();
    entry["conflicts"] = cache.compose(refs, {}).conflicts;
    if (o.dry_run) {
      json given = client.call("device.status", {{"device_id", order["device_id"]}})["given"];
      entry["plan"] = endpoint::dry_run(client, order["device_id"], order["spec"], given);
    } else if (o.wait) {
      entry = wait_for(client, order["order_id"], o.timeout);
      entry["conflicts"] = cache.compose(refs, {}).conflicts;
      if (entry["state"] != "done") status = 1;
    }
    out["orders"].push_back(entry);
  }
  tool::print(common, out, [&](std::ostream& os) {
    for (const auto& e : out["orders"]) {
      std::string layers;
      for (const auto& l : e["spec"]["layers"]) layers += (layers.empty() ? "" : ", ") + l.get<std::string>();
      os << (o.dry_run ? "would give " : "device ") << e["device_id"].get<std::string>() << ": " << layers;
      if (!o.dry_run) os << "  [" << e["state"].get<std::string>() << (o.wait ? "" : ", on its next sync") << "]";
      os << "\n";
      for (const auto& c : e["conflicts"])
        os << "  conflict: " << c["path"].get<std::string>() << " in " << c["layers"][0].get<std::string>() << " and "
           << c["layers"][1].get<std::string>() << " (" << c["wins"].get<std::string>() << " wins)\n";
      if (e.contains("plan")) {
        const auto& p = e["plan"];
        os << "  against snapshot " << p["against_snapshot"].get<std::string>() << ":";
        for (const auto& [k, v] : p["counts"].items()) os << " " << k << " " << v;
        os << "\n  fetch " << tool::human_bytes(p["fetch_bytes"].get<uint64_t>()) << ", reuse "
           << tool::human_bytes(p["local_bytes"].get<uint64_t>()) << " found on the device\n";
        for (const auto& op : p["ops"])
          if (op["action"] != "keep_user")
            os << "  " << op["action"].get<std::string>() << " " << op["path"].get<std::string>() << "\n";
        for (const auto& pk : p["packages"])
          if (pk["change"] == "downgrade" || pk["change"] == "remove")
            os << "  package " << pk["package"].get<std::string>() << ": " << pk["change"].get<std::string>() << " "
               << pk.value("from", "") << " -> " << pk.value("to", "") << "\n";
      }
      if (e.contains("result") && e["result"].contains("error"))
        os << "  failed: " << e["result"]["error"].get<std::string>() << "\n";
    }
  });
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Assign layers to devices; enforce, provision, render", "mirage-assign"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  Options o;
  tool::Common common;
  tool::add_common(app, common);
  app.add_option("--device", o.devices, "Device id (repeat for several)");
  app.add_option("--collection", o.collections, "Every device of a collection (repeatable)");
  app.add_option("--base", o.base, "Base layer NAME[@VER]");
  app.add_option("--app", o.apps, "App layer NAME[@VER] (repeat; later wins)");
  app.add_option("--remove-app", o.remove_apps, "Drop an app layer from the devices (NAME)");
  app.add_flag("--enforce", o.enforce, "Put every layer-owned path back");
  app.add_flag("--remove-user-apps", o.remove_user_apps, "With --enforce: remove what no layer owns");
  app.add_flag("--provision", o.provision, "Clean the machine area, apply the layers");
  app.add_flag("--dry-run", o.dry_run, "Print the plan; change nothing");
  app.add_flag("--wait", o.wait, "Wait until the devices report");
  app.add_option("--timeout", o.timeout, "Seconds --wait waits (default 3600)")->check(CLI::PositiveNumber);
  app.fallthrough();

  auto* render = app.add_subcommand("render", "Compose layers into a directory (CI images)");
  render->add_option("--base", o.base, "Base layer NAME[@VER]")->required();
  render->add_option("--app", o.apps, "App layer NAME[@VER] (repeat)");
  render->add_option("--to", o.to, "Target directory (missing or empty), - for tar")->required();
  auto* status = app.add_subcommand("status", "Layers, pending orders, last result");
  status->add_option("--device", o.device, "Device id")->required();

  return tool::run(argc, argv, app, common,
                   {{render,
                     [&] {
                       auto client = tool::connect(common);
                       std::vector<std::string> refs{o.base};
                       refs.insert(refs.end(), o.apps.begin(), o.apps.end());
                       tool::Progress bar;
                       auto progress = [&](uint64_t done, uint64_t total) {
                         bar.show("rendering: " + tool::human_bytes(done) + " of " + tool::human_bytes(total));
                       };
                       if (o.to == "-") {  // a tar stream on stdout: nothing else goes there
                         endpoint::render_tar(client, refs, progress, tool::connection_factory(common));
                         return 0;
                       }
                       json r = endpoint::render(client, refs, std::filesystem::absolute(o.to), progress,
                                               tool::connection_factory(common));
                       tool::print(common, r, [&](std::ostream& out) {
                         out << "rendered " << r["layers"].size() << " layers into " << r["to"].get<std::string>() << ": "
                             << r["written"] << " entries, " << tool::human_bytes(r["bytes_fetched"].get<uint64_t>())
                             << " fetched\n";
                       });
                       return 0;
                     }},
                    {status,
                     [&] {
                       auto client = tool::connect(common);
                       json r = client.call("device.status", {{"device_id", o.device}});
                       tool::print(common, r, [&](std::ostream& out) {
                         out << "device " << o.device << "\n  layers:";
                         for (const auto& l : r["given"].value("layers", json::array())) out << " " << l.get<std::string>();
                         out << "\n  pending orders: " << r["pending"].size() << "\n";
                         if (!r["last"].is_null())
                           out << "  last order " << r["last"]["order_id"].get<std::string>() << ": "
                               << r["last"]["state"].get<std::string>() << " at " << r["last"].value("finished", "") << "\n";
                       });
                       return 0;
                     }},
                    {nullptr, [&] { return assign(common, o); }}});
}
