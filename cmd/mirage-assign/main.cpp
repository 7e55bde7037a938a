// mirage-assign: assign base and app layers to devices (as orders the endpoints carry
// out on their next sync), enforce them, provision, render an image, show status.
#include <iostream>

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

/// What an action does, in a dry run's words.
std::string action_text(const std::string& action, bool first_assignment) {
  if (action == "metadata") return "metadata only";
  if (action == "keep_local") return first_assignment ? "keep (already here)" : "keep (changed here)";
  if (action == "keep_user") return "keep (the device's own)";
  return action;
}

/// A dry run's plan: every count, the bytes, every path and every package change that
/// its JSON holds.
void print_plan(std::ostream& os, const json& p, bool first_assignment) {
  os << "  against snapshot " << p["against_snapshot"].get<std::string>() << "\n";
  if (first_assignment)
    os << "  first assignment: what the device has and the layers do not is its own, and is kept\n";
  std::string counts;
  for (const char* a : {"create", "replace", "metadata", "merge", "remove", "keep_local", "keep_user"})
    if (p["counts"].contains(a))
      counts += (counts.empty() ? "" : ", ") + p["counts"][a].dump() + " " + action_text(a, first_assignment);
  os << "  " << (counts.empty() ? "nothing to change" : counts) << "\n";
  os << "  fetch " << tool::human_bytes(p["fetch_bytes"].get<uint64_t>()) << ", reuse "
     << tool::human_bytes(p["local_bytes"].get<uint64_t>()) << " found on the device\n";
  if (!p["ops"].empty()) {
    tool::Table t({"  ACTION", "PATH", {"FETCH", tool::Align::right}, "NOTE"});
    for (const auto& op : p["ops"])
      t.row({"  " + action_text(op["action"].get<std::string>(), first_assignment), tool::cell(op["path"]),
             op.contains("fetch_bytes") ? tool::human_bytes(op["fetch_bytes"].get<uint64_t>()) : "",
             op.contains("saved_as") ? "local version kept as " + op["saved_as"].get<std::string>() : ""});
    t.print(os);
  }
  if (!p["packages"].empty()) {
    tool::Table t({"  PACKAGE", "CHANGE", "FROM", "TO"});
    for (const auto& pk : p["packages"])
      t.row({"  " + pk["package"].get<std::string>(), tool::cell(pk["change"]), pk.value("from", "-"), pk.value("to", "-")});
    t.print(os);
  }
}

void print_orders(std::ostream& os, const json& out, const Options& o) {
  if (out["orders"].empty()) {
    os << "no devices to give layers to\n";
    return;
  }
  if (!o.dry_run) {
    tool::Table t({"DEVICE", "ORDER", "LAYERS", "STATE"});
    for (const auto& e : out["orders"])
      t.row({tool::cell(e["device_id"]), tool::cell(e["order_id"]), tool::cell(e["spec"]["layers"]),
             e["state"].get<std::string>() + (o.wait ? "" : ", on its next sync")});
    t.print(os);
  }
  for (const auto& e : out["orders"]) {
    if (o.dry_run) os << "would give " << e["device_id"].get<std::string>() << ": " << tool::cell(e["spec"]["layers"]) << "\n";
    for (const auto& c : e["conflicts"])
      os << "  conflict on " << e["device_id"].get<std::string>() << ": " << c["path"].get<std::string>() << " in "
         << c["layers"][0].get<std::string>() << " and " << c["layers"][1].get<std::string>() << " ("
         << c["wins"].get<std::string>() << " wins)\n";
    if (e.contains("plan")) print_plan(os, e["plan"], e.value("first_assignment", false));
    if (e.contains("result") && e["result"].contains("error"))
      os << "  " << e["device_id"].get<std::string>() << " failed: " << e["result"]["error"].get<std::string>() << "\n";
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
  tool::Progress bar(common, "assign");
  size_t waited = 0;
  for (const auto& order : created["orders"]) {
    json entry = order;
    std::vector<std::string> refs = order["spec"]["layers"].get<std::vector<std::string>>();
    entry["conflicts"] = cache.compose(refs, {}).conflicts;
    if (o.dry_run) {
      json given = client.call("device.status", {{"device_id", order["device_id"]}})["given"];
      entry["plan"] = endpoint::dry_run(client, order["device_id"], order["spec"], given);
      entry["first_assignment"] = given.value("layers", json::array()).empty();
    } else if (o.wait) {
      entry = tool::wait_for_order(client, order["order_id"], o.timeout, bar,
                                   "to carry out order " + order["order_id"].get<std::string>() +
                                       " on its next sync (" + std::to_string(waited++) + " of " +
                                       std::to_string(created["orders"].size()) + " orders done)");
      entry["conflicts"] = cache.compose(refs, {}).conflicts;
      if (entry["state"] != "done") status = 1;
    }
    out["orders"].push_back(entry);
  }
  bar.finish();
  tool::print(common, out, [&](std::ostream& os) { print_orders(os, out, o); });
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Assign layers to devices; enforce, provision, render", "mirage-assign"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  Options o;
  tool::Common common;
  tool::add_common(app, common);
  tool::add_progress(app, common);
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
                       tool::Progress bar(common, "render");
                       auto progress = [&](uint64_t done, uint64_t total) {
                         bar.update(tool::ProgressState::of_bytes("rendering", done, total));
                       };
                       if (o.to == "-") {  // a tar stream on stdout: nothing else goes there
                         endpoint::render_tar(client, refs, progress, tool::connection_factory(common));
                         bar.finish();
                         return 0;
                       }
                       json r = endpoint::render(client, refs, std::filesystem::absolute(o.to), progress,
                                               tool::connection_factory(common));
                       bar.finish();
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
                         tool::Table t({"DEVICE", "LAYERS", {"PENDING", tool::Align::right}, "LAST ORDER", "STATE", "FINISHED"});
                         const json& last = r["last"];
                         t.row({o.device, tool::cell(r["given"].value("layers", json::array())), std::to_string(r["pending"].size()),
                                last.is_null() ? "-" : tool::cell(last["order_id"]),
                                last.is_null() ? "-" : tool::cell(last["state"]),
                                last.is_null() ? "-" : tool::short_time(last.value("finished", ""))});
                         t.print(out);
                       });
                       return 0;
                     }},
                    {nullptr, [&] { return assign(common, o); }}});
}
