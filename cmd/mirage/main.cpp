// mirage: the dispatcher. `mirage TOOL ARGS` runs mirage-TOOL ARGS (git-style);
// a few commands that are not tools of their own live here (check, policy).
#include <unistd.h>

#include <filesystem>
#include <set>
#include <iostream>

#include "cmd/common/tool.hpp"
#include "cmd/mirage/lifecycle.hpp"
#include "libmirage/util/clock.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/json_input.hpp"

using namespace mirage;
using nlohmann::json;

namespace {

const char* const k_tools[] = {"serverd", "centralize", "capture", "assign", "restore", "migrate", "reflect"};

/// Replaces this process with mirage-TOOL from beside this executable, else PATH.
int exec_tool(const std::string& tool, int argc, char** argv) {
  std::string name = "mirage-" + tool;
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  std::string path = name;
  if (!ec && std::filesystem::exists(self.parent_path() / name)) path = (self.parent_path() / name).string();
  std::vector<char*> args{name.data()};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  args.push_back(nullptr);
  ::execvp(path.c_str(), args.data());
  std::cerr << "mirage: '" << tool << "' is not a mirage command (no " << name << " found)\n";
  return 2;
}

int check(const tool::Common& common, bool read_data, bool repair) {
  auto client = tool::connect(common);
  json report = client.call("check", {{"read_data", read_data}, {"repair", repair}});
  tool::print(common, report, [&](std::ostream& out) {
    if (report.contains("repair")) {
      const auto& r = report["repair"];
      out << "repair: read " << r["packs_scanned"] << " packs (" << r["packs_added"] << " not in the catalog), indexed "
          << r["chunks_indexed"] << " chunks, dropped " << r["entries_dropped"] << " index entries\n";
      for (const auto& n : r["notes"])
        out << "  " << n["what"].get<std::string>() << " " << n["name"].get<std::string>() << ": "
            << n["message"].get<std::string>() << "\n";
    }
    out << "checked " << report["packs"] << " packs, " << report["chunks"] << " chunks, " << report["snapshots"]
        << " snapshots, " << report["trees"] << " trees";
    if (read_data) out << ", read " << tool::human_bytes(report["bytes_read"].get<uint64_t>());
    out << "\n";
    for (const auto& p : report["problems"])
      out << "  " << p["what"].get<std::string>() << " " << p["name"].get<std::string>() << ": "
          << p["message"].get<std::string>() << "\n";
    for (const auto& p : report.value("notes", json::array()))
      out << "  note: " << p["what"].get<std::string>() << " " << p["name"].get<std::string>() << ": "
          << p["message"].get<std::string>() << "\n";
    out << (report["ok"].get<bool>() ? "no errors\n" : "ERRORS FOUND\n");
  });
  return report["ok"].get<bool>() ? 0 : 6;
}

/// An event's detail in a table cell: top-level scalars as key=value, the rest as JSON.
std::string event_detail(const json& detail) {
  std::string out;
  for (const auto& [k, v] : detail.items())
    out += (out.empty() ? "" : " ") + k + "=" + (v.is_string() ? v.get<std::string>() : v.dump());
  return out.empty() ? "-" : out;
}

/// Events as JSON lines (they stream), or with --output text as a table (with --follow,
/// each batch's rows under the first one's header).
int events(const tool::Common& common, const std::string& device, const std::string& since, const std::string& type,
           bool follow, double poll) {
  auto client = tool::connect(common);
  json params = json::object();
  // A device deleted since keeps its events: its id is taken as it is.
  if (!device.empty()) params["device_id"] = client::resolve_device(client, device, client::Unregistered::keep);
  // Relative times (yesterday, 2h) are this machine's now, sent as the time they name.
  if (auto t = tool::time_flag("--since", since, false)) params["since"] = util::rfc3339(*t);
  if (!type.empty()) params["type"] = type;
  int64_t last = 0;
  bool printed_header = false;
  for (;;) {
    params["after_id"] = last;
    json r = client.call("events.list", params);
    tool::Table table({{"ID", tool::Align::right}, "TIME", "TYPE", "DEVICE", "DETAIL"});
    for (const auto& e : r["events"]) {
      if (common.output == "text")
        table.row({tool::cell(e["event_id"]), tool::short_time(e["time"].get<std::string>()), tool::cell(e["type"]),
                   tool::cell(e["device_id"]), event_detail(e["detail"])});
      else
        std::cout << e.dump() << "\n";
      last = e["event_id"].get<int64_t>();
    }
    if (common.output == "text" && (!table.empty() || !printed_header)) {
      if (printed_header)
        table.print_rows(std::cout);
      else
        table.print(std::cout, follow ? "" : "no events");
      printed_header = true;
    }
    std::cout.flush();
    if (!follow) return 0;
    if (r["events"].empty()) ::usleep(static_cast<useconds_t>(poll * 1e6));
  }
}

/// KEY=GLOB pairs into an object; Error(usage) naming a malformed one.
/// Space per device and for the store: a table with a row per device and one for the store.
int stats(const tool::Common& common, const std::string& device) {
  auto client = tool::connect(common);
  json params = json::object();
  if (!device.empty()) params["device_id"] = client::resolve_device(client, device);
  json r = client.call("store.stats", params);
  tool::print(common, r, [&](std::ostream& out) {
    auto ratio = [](double v) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2fx", v);
      return std::string(buf);
    };
    std::vector<std::vector<std::string>> rows{
        {"DEVICE", "SNAPSHOTS", "LOGICAL", "UNIQUE", "STORED", "DEDUP", "COMPRESSION"}};
    auto add = [&](const std::string& name, const json& u) {
      rows.push_back({name, std::to_string(u["snapshots"].get<uint64_t>()),
                      tool::human_bytes(u["logical_bytes"].get<uint64_t>()),
                      tool::human_bytes(u["unique_bytes"].get<uint64_t>()),
                      tool::human_bytes(u["stored_bytes"].get<uint64_t>()), ratio(u["dedup_ratio"].get<double>()),
                      ratio(u["compression_ratio"].get<double>())});
    };
    for (const auto& d : r["devices"]) add(d["device_id"].get<std::string>(), d);
    if (r.contains("store")) add("(store)", r["store"]);
    if (rows.size() == 1) {
      out << "no devices\n";
      return;
    }
    std::vector<size_t> width(rows[0].size(), 0);
    for (const auto& row : rows)
      for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    for (const auto& row : rows) {
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        std::string pad(width[i] - row[i].size(), ' ');
        line += i == 0 ? row[i] + pad : "  " + pad + row[i];  // numbers right-aligned
      }
      out << line << "\n";
    }
    if (r.contains("index"))
      out << "\nall stored data (layers and unreferenced chunks too): " << r["index"]["chunks"].get<int64_t>()
          << " chunks in " << tool::human_bytes(r["index"]["pack_bytes"].get<uint64_t>()) << " of packs\n";
  });
  return 0;
}

json key_globs(const std::vector<std::string>& pairs) {
  json out = json::object();
  for (const auto& p : pairs) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) throw Error(ErrorKind::usage, "--field '" + p + "': expected KEY=GLOB");
    out[p.substr(0, eq)] = p.substr(eq + 1);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1) {
    std::string first = argv[1];
    for (const char* t : k_tools)
      if (first == t) return exec_tool(first, argc, argv);
  }
  CLI::App app{"Mirage: layered image management and endpoint protection.\n"
               "Tools: centralize capture assign restore migrate serverd\n"
               "(mirage TOOL ... runs mirage-TOOL ...)",
               "mirage"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  tool::Common common;
  tool::add_common(app, common);
  app.fallthrough();
  // The tools, hidden: main execs them before parsing; listed so that a mistyped one
  // ("mirage restor") is named with the nearest.
  for (const char* t : k_tools) app.add_subcommand(t, "")->group("")->allow_extras();
  bool read_data = false;
  auto* check_cmd = app.add_subcommand("check", "Verify the catalog, packs and snapshots");
  check_cmd->add_flag("--read-data", read_data, "Also read and verify every chunk");
  bool repair = false;
  check_cmd->add_flag("--repair", repair, "First rebuild the chunk index from the packs");

  // Policies.
  std::string policy_name = "default", policy_file;
  std::vector<std::string> devices, collections;
  auto* policy = app.add_subcommand("policy", "Policies: upload rules and snapshot retention");
  policy->require_subcommand(1);
  auto* policy_list = policy->add_subcommand("list", "List policies and how many devices use each");
  auto* policy_show = policy->add_subcommand("show", "Print a policy document");
  policy_show->add_option("name", policy_name, "Policy name (default: default)");
  auto* policy_set = policy->add_subcommand("set", "Create or replace a policy from a JSON file");
  policy_set->add_option("name", policy_name, "Policy name")->required();
  policy_set->add_option("--file", policy_file, "JSON policy document (- for stdin)")->required();
  auto* policy_assign = policy->add_subcommand("assign", "Give devices a policy");
  policy_assign->add_option("name", policy_name, "Policy name")->required();
  policy_assign->add_option("--device", devices, "Device id, name or hostname (repeatable)");
  policy_assign->add_option("--collection", collections, "Every device of a collection (repeatable)");

  // Collections and device tags.
  std::string coll_name, match_hostname, match_os, match_os_version, match_tag;
  std::vector<std::string> match_fields;
  auto* coll = app.add_subcommand("collection", "Static and dynamic sets of devices");
  coll->require_subcommand(1);
  auto* coll_create = coll->add_subcommand("create", "Create a static (--device) or dynamic collection");
  coll_create->add_option("name", coll_name, "Collection name")->required();
  coll_create->add_option("--device", devices, "A member device: id, name or hostname\n(repeatable): a static collection");
  coll_create->add_option("--hostname", match_hostname, "Dynamic: hostname glob");
  coll_create->add_option("--os", match_os, "Dynamic: OS id glob (debian, ubuntu, ...)");
  coll_create->add_option("--os-version", match_os_version, "Dynamic: OS version glob");
  coll_create->add_option("--tag", match_tag, "Dynamic: devices with this tag");
  coll_create->add_option("--field", match_fields, "Dynamic: inventory KEY=GLOB (repeatable)");
  bool coll_replace = false;
  coll_create->add_flag("--replace", coll_replace, "Replace a collection of that name");
  auto* coll_list = coll->add_subcommand("list", "List collections");
  auto* coll_show = coll->add_subcommand("show", "Show a collection and its members now");
  coll_show->add_option("name", coll_name, "Collection name")->required();
  auto* coll_delete = coll->add_subcommand("delete", "Delete a collection");
  coll_delete->add_option("name", coll_name, "Collection name")->required();
  std::string device_id, device_state;
  std::vector<std::string> tags_add, tags_remove;
  auto* device = app.add_subcommand("device", "List, tag, rename or delete devices");
  device->require_subcommand(1);
  auto* device_list = device->add_subcommand("list", "List devices");
  device_list->add_option("--state", device_state, "pending, accepted, rejected, replaced or\nreenroll")
      ->check(CLI::IsMember({"pending", "accepted", "rejected"}));
  device_list->add_option("--collection", collections, "Only members of this collection");
  double device_stale = 0;
  device_list->add_option("--stale", device_stale, "Only devices not synced for this long, or never")
      ->transform(CLI::AsNumberWithUnit(std::map<std::string, double>{{"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}},
                                        CLI::AsNumberWithUnit::CASE_SENSITIVE, "DURATION"))
      ->check(CLI::PositiveNumber);
  auto* device_tag = device->add_subcommand("tag", "Add or remove a device's tags");
  device_tag->add_option("device", device_id, "Device id, name or hostname")->required();
  device_tag->add_option("--add", tags_add, "Tag to add (repeatable)");
  device_tag->add_option("--remove", tags_remove, "Tag to remove (repeatable)");
  bool device_force = false;
  auto* device_delete = device->add_subcommand("delete", "Forget a device (to re-enroll it, or for good)");
  device_delete->add_option("device", device_id, "Device id, name or hostname")->required();
  device_delete->add_flag("--force", device_force, "Also when it has pinned snapshots");

  // Storage volumes and GC.
  std::string vol_path;
  int64_t vol_id = 0;
  bool vol_ro = false, vol_rw = false;
  auto* volume = app.add_subcommand("volume", "Storage volumes of the server");
  volume->require_subcommand(1);
  auto* volume_list = volume->add_subcommand("list", "List volumes with free space and use");
  auto* volume_add = volume->add_subcommand("add", "Add a storage volume (a directory, absolute path)");
  volume_add->add_option("path", vol_path, "Directory")->required();
  bool vol_create = false;
  volume_add->add_flag("--create", vol_create, "Make the directory if it is missing");
  auto* volume_set = volume->add_subcommand("set", "Set a volume read-only or writable");
  volume_set->add_option("id", vol_id, "Volume id")->required();
  auto* ro_flag = volume_set->add_flag("--read-only", vol_ro, "No new data goes there");
  volume_set->add_flag("--writable", vol_rw, "New data may go there again")->excludes(ro_flag);
  auto duration = CLI::AsNumberWithUnit(std::map<std::string, double>{{"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}},
                                        CLI::AsNumberWithUnit::CASE_SENSITIVE, "DURATION");
  bool gc_dry = false;
  double gc_grace = 600, gc_repack_below = 0.5;
  uint64_t gc_max_repack = 1ULL << 30;
  auto* gc = app.add_subcommand("gc", "Expire snapshots, delete unreferenced data, repack");
  gc->add_flag("--dry-run", gc_dry, "Report what would go; change nothing");
  gc->add_option("--grace", gc_grace, "Keep chunks younger than this (default 10m)")
      ->transform(duration)
      ->check(CLI::NonNegativeNumber);
  gc->add_option("--repack-below", gc_repack_below, "Rewrite packs less live than this (0.5)")
      ->check(CLI::Range(0.0, 1.0));
  gc->add_option("--max-repack", gc_max_repack, "Bytes copied per run at most (1G)")
      ->transform(CLI::AsSizeValue(false));

  std::string stats_device;
  auto* stats_cmd = app.add_subcommand("stats", "Space per device and for the store");
  stats_cmd->add_option("--device", stats_device, "Only this device: id, name or hostname\n(the store total needs all)");

  // Events and tokens.
  std::string ev_device, ev_since, ev_type;
  bool ev_follow = false;
  double ev_poll = 1.0;
  auto* events_cmd = app.add_subcommand("events", "Print events as JSON lines");
  events_cmd->add_option("--device", ev_device, "Only this device's events: id, name or\nhostname");
  events_cmd->add_option("--since", ev_since, "From this UTC date or time on (2026-11-25T10:00,\nyesterday, 2h, 3d)");
  events_cmd->add_option("--type", ev_type, "Only this type or family (audit, order, snapshot)");
  events_cmd->add_flag("--follow", ev_follow, "Keep printing new events as they come");
  events_cmd->add_option("--poll", ev_poll, "Seconds between polls with --follow (default 1)")->check(CLI::PositiveNumber);
  std::string tok_name, tok_role;
  auto* token = app.add_subcommand("token", "Create, list, rotate or revoke access tokens");
  token->require_subcommand(1);
  auto* token_create = token->add_subcommand("create", "Create a token; it is printed once");
  token_create->add_option("--name", tok_name, "Token name (who or what uses it)")->required();
  token_create->add_option("--role", tok_role, "admin, image-manager, protection-manager, helpdesk")->required();
  double tok_expires = 0;
  // (CLI::PositiveNumber's message names the largest double, 309 digits of it.)
  const auto more_than_zero = CLI::Validator(
      [](const std::string& v) {
        char* end = nullptr;
        double d = std::strtod(v.c_str(), &end);
        return end != v.c_str() && d > 0 ? std::string() : "a duration must be more than 0 (90d, 12h, 30m)";
      },
      "DURATION");
  token_create->add_option("--expires", tok_expires, "Valid for this long (90d; default: until revoked)")
      ->transform(duration)
      ->check(more_than_zero);
  auto* token_list = token->add_subcommand("list", "List tokens (never their secrets)");
  auto* token_revoke = token->add_subcommand("revoke", "Revoke the live token with this name");
  token_revoke->add_option("name", tok_name, "Token name")->required();
  auto* token_rotate = token->add_subcommand("rotate", "Give a token a new secret (the old one stops)");
  token_rotate->add_option("name", tok_name, "Token name")->required();
  token_rotate->add_option("--expires", tok_expires, "The new secret is valid this long (90d)")
      ->transform(duration)
      ->check(more_than_zero);

  auto call_print = [&](const char* method, json params, const std::function<void(std::ostream&, const json&)>& text) {
    auto client = tool::connect(common);
    json r = client.call(method, std::move(params));
    tool::print(common, r, text ? std::function<void(std::ostream&)>([&](std::ostream& out) { text(out, r); }) : nullptr);
    return 0;
  };
  // As call_print, with the params made on its connection (to resolve --device names).
  auto call_resolved = [&](const char* method, const std::function<json(client::Client&)>& params,
                           const std::function<void(std::ostream&, const json&)>& text) {
    auto client = tool::connect(common);
    json r = client.call(method, params(client));
    tool::print(common, r, [&](std::ostream& out) { text(out, r); });
    return 0;
  };
  auto targets = [&](client::Client& client) {
    json p = json::object();
    if (!devices.empty()) p["device_ids"] = client::resolve_devices(client, devices);
    if (!collections.empty()) p["collections"] = collections;
    return p;
  };
  // policy show and policy set: the document as it now stands.
  auto print_policy = [](std::ostream& out, const json& r) {
    out << "policy " << r["name"].get<std::string>() << "\n";
    tool::print_fields(out, r["policy"], 2);
  };
  std::vector<tool::Command> commands = {
      {check_cmd, [&] { return check(common, read_data, repair); }},
      {stats_cmd, [&] { return stats(common, stats_device); }},
       {token_create,
        [&] {
          return call_print("token.create", {{"name", tok_name}, {"role", tok_role}, {"expires_seconds", tok_expires}},
                            [](std::ostream& out, const json& r) { out << r["token"].get<std::string>() << "\n"; });
        }, true},
       {token_rotate,
        [&] {
          return call_print("token.rotate", {{"name", tok_name}, {"expires_seconds", tok_expires}},
                            [](std::ostream& out, const json& r) { out << r["token"].get<std::string>() << "\n"; });
        }},
       {token_list,
        [&] {
          return call_print("token.list", json::object(), [](std::ostream& out, const json& r) {
            tool::Table table({"NAME", "ROLE", "CREATED", "EXPIRES", "STATE"});
            for (const auto& t : r["tokens"])
              table.row({tool::cell(t["name"]), tool::cell(t["role"]), tool::short_time(t["created"].get<std::string>()),
                         t["expires"].is_string() ? tool::short_time(t["expires"].get<std::string>()) : "never",
                         t["revoked"].get<bool>() ? "revoked" : t["expired"].get<bool>() ? "expired" : "valid"});
            table.print(out, "no tokens");
          });
        }},
       {token_revoke,
        [&] {
          return call_print("token.revoke", {{"name", tok_name}}, [](std::ostream& out, const json& r) {
            out << "token " << r["name"].get<std::string>() << " revoked\n";
          });
        }},
       {events_cmd, [&] { return events(common, ev_device, ev_since, ev_type, ev_follow, ev_poll); }},
       {policy_list,
        [&] {
          return call_print("policy.list", json::object(), [](std::ostream& out, const json& r) {
            tool::Table t({"POLICY", {"DEVICES", tool::Align::right}});
            for (const auto& p : r["policies"]) t.row({tool::cell(p["name"]), tool::cell(p["devices"])});
            t.print(out, "no policies");
          });
        }},
       {policy_show,
        [&] {
          return call_print("policy.get", {{"name", policy_name}}, print_policy);
        }},
       {policy_set,
        [&] {
          return call_print("policy.set", {{"name", policy_name}, {"policy", util::read_json_input(policy_file, "--file")}},
                            print_policy);
        }, true},
       {policy_assign,
        [&] {
          auto params = [&](client::Client& client) {
            json p = targets(client);
            p["name"] = policy_name;
            return p;
          };
          return call_resolved("policy.assign", params, [](std::ostream& out, const json& r) {
            out << "policy " << r["name"].get<std::string>() << " given to " << r["devices"].size() << " devices\n";
          });
        }},
       {coll_create,
        [&] {
          json match = json::object();
          if (!match_hostname.empty()) match["hostname"] = match_hostname;
          if (!match_os.empty()) match["os"] = match_os;
          if (!match_os_version.empty()) match["os_version"] = match_os_version;
          if (!match_tag.empty()) match["tag"] = match_tag;
          if (!match_fields.empty()) match["inventory"] = key_globs(match_fields);
          auto params = [&](client::Client& client) {
            json p = {{"name", coll_name}, {"replace", coll_replace}};
            if (!devices.empty()) p["device_ids"] = client::resolve_devices(client, devices);
            if (!match.empty()) p["match"] = match;
            return p;
          };
          return call_resolved("collection.set", params, [](std::ostream& out, const json& r) {
            out << r["kind"].get<std::string>() << " collection " << r["name"].get<std::string>() << ": "
                << r["members"].size() << " devices now\n";
          });
        }, true},
       {coll_list,
        [&] {
          return call_print("collection.list", json::object(), [](std::ostream& out, const json& r) {
            tool::Table t({"COLLECTION", "KIND", {"DEVICES", tool::Align::right}});
            for (const auto& c : r["collections"]) t.row({tool::cell(c["name"]), tool::cell(c["kind"]), tool::cell(c["members"])});
            t.print(out, "no collections");
          });
        }},
       {coll_show,
        [&] {
          return call_print("collection.get", {{"name", coll_name}}, [](std::ostream& out, const json& r) {
            out << r["kind"].get<std::string>() << " collection " << r["name"].get<std::string>() << "\n";
            tool::print_fields(out, r["spec"], 2);
            tool::Table t({"MEMBER"});
            for (const auto& m : r["members"]) t.row({tool::cell(m)});
            t.print(out, "no members now");
          });
        }},
       {coll_delete,
        [&] {
          return call_print("collection.delete", {{"name", coll_name}}, [](std::ostream& out, const json& r) {
            out << "collection " << r["name"].get<std::string>() << " deleted\n";
          });
        }},
       {device_list,
        [&] {
          auto client = tool::connect(common);
          json params = json::object();
          if (!device_state.empty()) params["state"] = device_state;
          if (device_stale > 0) params["stale_seconds"] = device_stale;
          json r = client.call("device.list", params);
          if (!collections.empty()) {
            std::set<std::string> keep;
            for (const auto& c : collections) {
              json members = client.call("collection.get", {{"name", c}})["members"];
              for (const auto& m : members) keep.insert(m.get<std::string>());
            }
            json filtered = json::array();
            for (const auto& d : r["devices"])
              if (keep.count(d["device_id"].get<std::string>())) filtered.push_back(d);
            r["devices"] = filtered;
          }
          tool::print(common, r, [&](std::ostream& out) { lifecycle::print_device_table(out, r["devices"]); });
          return 0;
        }},
       {device_tag,
        [&] {
          auto params = [&](client::Client& client) {
            return json{{"device_id", client::resolve_device(client, device_id)}, {"add", tags_add}, {"remove", tags_remove}};
          };
          return call_resolved("device.tag", params, [](std::ostream& out, const json& r) {
            out << r["device_id"].get<std::string>() << " tags:";
            for (const auto& t : r["tags"]) out << " " << t.get<std::string>();
            out << "\n";
          });
        }},
       {device_delete,
        [&] {
          auto params = [&](client::Client& client) {
            return json{{"device_id", client::resolve_device(client, device_id)}, {"force", device_force}};
          };
          return call_resolved("device.delete", params, [](std::ostream& out, const json& r) {
            out << "device " << r["device_id"].get<std::string>() << " deleted with " << r["snapshots"]
                << " snapshots (mirage gc frees their data)\n";
          });
        }},
       {volume_list,
        [&] {
          return call_print("volume.list", json::object(), [](std::ostream& out, const json& r) {
            const auto right = tool::Align::right;
            tool::Table t({{"VOLUME", right}, "PATH", {"FREE", right}, {"PACKS", right}, {"PACK BYTES", right},
                           {"DEVICES", right}, "MODE"});
            for (const auto& v : r["volumes"])
              t.row({tool::cell(v["volume_id"]), tool::cell(v["path"]), tool::human_bytes(v["free_bytes"].get<uint64_t>()),
                     tool::cell(v["packs"]), tool::human_bytes(v["pack_bytes"].get<uint64_t>()), tool::cell(v["devices"]),
                     v["read_only"].get<bool>() ? "read-only" : "writable"});
            t.print(out, "no volumes");
          });
        }},
       {volume_add,
        [&] {
          std::string abs = std::filesystem::absolute(vol_path).lexically_normal().string();
          return call_print("volume.add", {{"path", abs}, {"create", vol_create}}, [](std::ostream& out, const json& r) {
            out << "volume " << r["volume_id"] << " at " << r["path"].get<std::string>() << "\n";
          });
        }, true},
       {volume_set,
        [&] {
          if (!vol_ro && !vol_rw) throw Error(ErrorKind::usage, "give --read-only or --writable");
          return call_print("volume.set", {{"volume_id", vol_id}, {"read_only", vol_ro}},
                            [](std::ostream& out, const json& r) {
                              out << "volume " << r["volume_id"] << (r["read_only"].get<bool>() ? " is read-only\n" : " is writable\n");
                            });
        }},
       {gc,
        [&] {
          return call_print("gc.run",
                            {{"dry_run", gc_dry},
                             {"grace_seconds", gc_grace},
                             {"repack_below", gc_repack_below},
                             {"max_repack_bytes", gc_max_repack}},
                            [&](std::ostream& out, const json& r) {
                              const char* del = gc_dry ? "would_delete" : "deleted";
                              out << (gc_dry ? "would delete " : "deleted ") << r[del] << " of " << r["chunks"]
                                  << " chunks (" << tool::human_bytes(r[std::string(del) + "_bytes"].get<uint64_t>())
                                  << "), " << r["pinned"] << " pinned by uploads in flight; "
                                  << r[gc_dry ? "would_repack" : "repacked"] << " packs rewritten, "
                                  << r[gc_dry ? "would_retire" : "retired"] << " retired, "
                                  << tool::human_bytes(r[gc_dry ? "would_free_bytes" : "freed_bytes"].get<uint64_t>())
                                  << (gc_dry ? " would be freed" : " freed") << "; " << r["snapshots_expired"]
                                  << (gc_dry ? " snapshots would expire\n" : " snapshots expired\n");
                            });
        }}};
  for (auto& c : lifecycle::add_commands(app, *device, common)) commands.push_back(std::move(c));
  return tool::run(argc, argv, app, common, commands);
}
