// mirage-migrate: OS migration (Debian 12 -> 13): queue migrations (or dry-run them),
// roll one back, the preflight check of devices and the migration rules (print the
// default, check a file, explain paths). DESIGN.md section 3.
#include <iostream>

#include "cmd/common/tool.hpp"
#include "libmirage/endpoint/migrate.hpp"
#include "libmirage/migrate/rules.hpp"
#include "libmirage/util/json_input.hpp"
#include "libmirage/util/log.hpp"

using namespace mirage;
using nlohmann::json;

namespace {

struct Options {
  std::vector<std::string> devices, collections, explain;
  std::string base, rules_file, check_file;
  bool show_default = false, dry_run = false, wait = false, rollback = false, stored = false, force = false;
  int keep_old_root = 10;
  double timeout = 3600;
};

/// What a finding concerns, in a table cell: its paths, else its packages.
std::string concerns(const json& f) {
  const json& list = !f["paths"].empty() ? f["paths"] : f["packages"];
  std::string out;
  for (size_t i = 0; i < list.size() && i < 3; ++i) out += (i ? "," : "") + list[i].get<std::string>();
  if (list.size() > 3) out += ",+" + std::to_string(list.size() - 3);
  return out.empty() ? "-" : out;
}

void print_check(std::ostream& os, const json& r) {
  for (const auto& d : r["devices"]) {
    std::string host = d.value("hostname", "");
    os << "device " << d["device_id"].get<std::string>() << (host.empty() ? "" : " (" + host + ")");
    if (d.contains("error")) {
      os << ": not checked: " << d["error"]["message"].get<std::string>() << "\n";
      continue;
    }
    const json& n = d["counts"];
    os << ", snapshot " << d["snapshot_id"].get<std::string>() << ", base " << tool::cell(d["base"]) << ": "
       << n["inhibitor"].get<int>() << " inhibitors, " << n["warning"].get<int>() << " warnings"
       << (d["inhibited"].get<bool>() ? " (blocked)" : "") << "\n";
    tool::Table t({"  SEVERITY", "CODE", "CONCERNS", "MESSAGE"});
    for (const auto& f : d["findings"])
      t.row({"  " + f["severity"].get<std::string>(), tool::cell(f["code"]), concerns(f), tool::cell(f["message"])});
    t.print(os, "  no findings");
  }
  const json& s = r["summary"];
  if (s["devices"].get<size_t>() > 1) {
    os << s["devices"].get<size_t>() << " devices: " << s["inhibited"].get<int>() << " blocked, " << s["clean"].get<int>()
       << " clean, " << s["errors"].get<int>() << " not checked\n";
    tool::Table t({"CODE", {"DEVICES", tool::Align::right}});
    for (const auto& [code, count] : s["codes"].items()) t.row({code, std::to_string(count.get<int>())});
    t.print(os);
  }
}

/// 0: no device is blocked; 5 (precondition) when one has an inhibitor or has no
/// snapshot to check; another error's kind otherwise.
int check_status(const json& r) {
  int status = 0;
  for (const auto& d : r["devices"]) {
    if (d.contains("error")) {
      int kind = static_cast<int>(kind_from_name(d["error"]["kind"].get<std::string>()));
      if (status == 0) status = kind;
    } else if (d["inhibited"].get<bool>()) {
      status = static_cast<int>(ErrorKind::precondition);
    }
  }
  return status;
}

int check(const tool::Common& common, const Options& o) {
  if (o.devices.empty() && o.collections.empty())
    throw Error(ErrorKind::usage, "give --device ID or --collection NAME (one or more)");
  if (o.stored && !o.base.empty()) throw Error(ErrorKind::usage, "--stored prints the reports kept; it takes no --base");
  auto client = tool::connect(common);
  json params = {{"device_ids", client::resolve_devices(client, o.devices)}, {"collections", o.collections}};
  if (!o.base.empty()) params["base"] = o.base;
  json r = client.call(o.stored ? "migrate.reports" : "migrate.check", params);
  tool::print(common, r, [&](std::ostream& os) { print_check(os, r); });
  return check_status(r);
}

int rules(const tool::Common& common, const Options& o) {
  int given = int(o.show_default) + int(!o.check_file.empty()) + int(!o.explain.empty());
  if (given != 1) throw Error(ErrorKind::usage, "give one of --default, --check FILE, --explain PATH...");
  if (!o.rules_file.empty() && o.explain.empty()) throw Error(ErrorKind::usage, "--rules goes with --explain");
  if (o.show_default) {
    // The shipped text as it is, comments of layout included: what an admin copies and edits.
    std::cout << migrate::default_rules_text();
    return 0;
  }
  if (!o.check_file.empty()) {
    auto r = migrate::Rules::from_json(util::read_json_input(o.check_file, "--check", migrate::k_max_rules_bytes));
    size_t patterns = r.unconditional_exclude().size();
    for (const auto& c : r.components()) patterns += c.include.size() + c.exclude.size();
    json out = {{"file", o.check_file}, {"valid", true}, {"name", r.name()}, {"components", r.components().size()},
                {"patterns", patterns}};
    tool::print(common, out, [&](std::ostream& os) {
      os << o.check_file << ": valid (" << r.components().size() << " components, " << patterns << " patterns)\n";
    });
    return 0;
  }
  auto r = o.rules_file.empty() ? migrate::Rules::defaults()
                                : migrate::Rules::from_json(util::read_json_input(o.rules_file, "--rules", migrate::k_max_rules_bytes));
  json out = {{"rules", r.name()}, {"paths", json::array()}};
  for (const auto& p : o.explain) out["paths"].push_back(r.explain(p));
  tool::print(common, out, [&](std::ostream& os) {
    tool::Table t({"PATH", "COMPONENT", "ACTION", "WHY"});
    for (const auto& e : out["paths"])
      t.row({tool::cell(e["path"]), tool::cell(e["component"]), tool::cell(e["action"]), tool::cell(e["reason"])});
    t.print(os);
  });
  return 0;
}

void print_dry_run(std::ostream& os, const json& plan) {
  os << "device " << plan["device_id"].get<std::string>() << " (against snapshot "
     << plan["against_snapshot"].get<std::string>() << ") to " << plan["base"].get<std::string>() << ": "
     << plan["fetch_bytes"].get<uint64_t>() << " bytes to fetch, " << plan["local_bytes"].get<uint64_t>()
     << " found on the device\n";
  tool::Table t({"  OP", "PATH", "COMPONENT", "ACTION", "WHY"});
  for (const auto& d : plan["paths"])
    t.row({"  " + d["op"].get<std::string>(), tool::cell(d["path"]), tool::cell(d["component"]), tool::cell(d["action"]),
           tool::cell(d["why"])});
  t.print(os, "  no path changes");
  tool::Table pk({"  PACKAGE", "CHANGE", "FROM", "TO"});
  for (const auto& p : plan["packages"])
    pk.row({"  " + p["package"].get<std::string>(), tool::cell(p["change"]), p.value("from", "-"), p.value("to", "-")});
  pk.print(os, "  no package changes");
  for (const auto& p : plan["removed_identity"]) os << "  not carried (identity): " << p.get<std::string>() << "\n";
  for (const auto& p : plan["dangling_enablement"])
    os << "  not carried (enables a unit the new system lacks): " << p.get<std::string>() << "\n";
  for (const auto& a : plan["recapture"]) os << "  app layer to recapture on the new base: " << a.get<std::string>() << "\n";
}

void print_orders(std::ostream& os, const json& out, const Options& o) {
  if (o.dry_run) {
    for (const auto& e : out["orders"]) print_dry_run(os, e["plan"]);
    return;
  }
  tool::Table t({"DEVICE", "ORDER", "MIGRATION", "STATE"});
  for (const auto& e : out["orders"])
    t.row({tool::cell(e["device_id"]), tool::cell(e["order_id"]), e["spec"].value("migration_id", "-"),
           e["state"].get<std::string>() + (o.wait ? "" : ", on its next sync")});
  t.print(os, "no devices to migrate");
  for (const auto& e : out["orders"]) {
    const json& r = e.value("result", json::object());
    if (r.contains("error")) os << e["device_id"].get<std::string>() << " failed: " << r["error"].get<std::string>() << "\n";
    if (r.contains("old_root"))
      os << e["device_id"].get<std::string>() << ": old system in " << r["old_root"].value("path", "") << " ("
         << r["old_root"].value("bytes", uint64_t(0)) << " bytes, kept " << r["old_root"].value("keep_days", 0)
         << " days), " << r.value("wire_bytes", uint64_t(0)) << " bytes received\n";
    for (const auto& p : r.value("removed_identity", json::array()))
      os << "  not carried (identity): " << p.get<std::string>() << "\n";
    for (const auto& p : r.value("dangling_enablement", json::array()))
      os << "  not carried (enables a unit the new system lacks): " << p.get<std::string>() << "\n";
    for (const auto& p : r.value("reinstalled", json::array()))
      os << "  package " << p["package"].get<std::string>() << ": "
         << (p.value("installed", false) ? "installed again from the new release" : "not reinstalled: " + p.value("reason", ""))
         << "\n";
    for (const auto& a : r.value("recapture", json::array()))
      os << "  app layer to recapture on the new base: " << a.get<std::string>() << "\n";
  }
}

/// Waits for each order when asked; 1 when one did not end done.
int finish_orders(client::Client& client, const tool::Common& common, const Options& o, json& out) {
  int status = 0;
  tool::Progress bar(common, "migrate");
  size_t waited = 0;
  for (auto& entry : out["orders"]) {
    if (!o.wait) continue;
    std::string id = entry["order_id"];
    entry = tool::wait_for_order(client, id, o.timeout, bar,
                                 "to carry out order " + id + " on its next sync (" + std::to_string(waited++) + " of " +
                                     std::to_string(out["orders"].size()) + " orders done)");
    if (entry["state"] != "done") status = 1;
  }
  bar.finish();
  tool::print(common, out, [&](std::ostream& os) { print_orders(os, out, o); });
  return status;
}

int migrate_devices(const tool::Common& common, const Options& o) {
  if (o.devices.empty() && o.collections.empty())
    throw Error(ErrorKind::usage, "give --device ID or --collection NAME (one or more)");
  if (o.base.empty()) throw Error(ErrorKind::usage, "give --base NAME[@VER]: the new release's base layer");
  auto client = tool::connect(common);
  json params = {{"device_ids", client::resolve_devices(client, o.devices)},
                 {"collections", o.collections},
                 {"base", o.base},
                 {"keep_old_root_days", o.keep_old_root},
                 {"force", o.force},
                 {"dry_run", o.dry_run}};
  if (!o.rules_file.empty()) {
    json doc = util::read_json_input(o.rules_file, "--rules", migrate::k_max_rules_bytes);
    migrate::Rules::from_json(doc);  // its errors name the field, before anything is sent
    params["rules"] = doc;
  }
  json created = client.call("migrate.start", params);
  for (const auto& w : created["warnings"]) util::warn(w.get<std::string>());
  json out = {{"orders", created["orders"]}, {"warnings", created["warnings"]}};
  if (o.dry_run)
    for (auto& e : out["orders"]) {
      json given = client.call("device.status", {{"device_id", e["device_id"]}})["given"];
      e["plan"] = endpoint::migrate_dry_run(client, e["device_id"], e["spec"], given);
    }
  return finish_orders(client, common, o, out);
}

int rollback(const tool::Common& common, const Options& o) {
  if (o.devices.size() != 1 || !o.collections.empty()) throw Error(ErrorKind::usage, "--rollback takes one --device ID");
  if (!o.base.empty() || !o.rules_file.empty() || o.dry_run || o.force)
    throw Error(ErrorKind::usage, "--rollback takes no --base, --rules, --dry-run or --force");
  auto client = tool::connect(common);
  json created = client.call("migrate.rollback", {{"device_id", client::resolve_devices(client, o.devices).at(0)}});
  json out = {{"orders", created["orders"]}};
  return finish_orders(client, common, o, out);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"OS migration (Debian 12 -> 13): migrate, roll back, preflight, rules", "mirage-migrate"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  Options o;
  tool::Common common;
  tool::add_common(app, common);
  // The migration itself (DESIGN.md section 3).
  app.add_option("--device", o.devices, "Device id, name or hostname (repeatable)");
  app.add_option("--collection", o.collections, "Every device of a collection (repeatable)");
  app.add_option("--base", o.base, "New base layer NAME[@VER]");
  app.add_option("--rules", o.rules_file, "Migration rules JSON file (- for stdin)");
  app.add_option("--keep-old-root", o.keep_old_root, "Days /old-root/ID is kept (2-60, default 10)")
      ->check(CLI::Range(2, 60));
  app.add_flag("--force", o.force, "Migrate despite preflight inhibitors");
  app.add_flag("--dry-run", o.dry_run, "Per path and package what would happen");
  app.add_flag("--wait", o.wait, "Wait until the devices report");
  app.add_option("--timeout", o.timeout, "Seconds --wait waits (default 3600)")->check(CLI::PositiveNumber);
  app.add_flag("--rollback", o.rollback, "Roll the device's last migration back");
  app.fallthrough();

  auto* check_cmd = app.add_subcommand("check", "Preflight: findings and inhibitors per device");
  check_cmd->add_option("--device", o.devices, "Device id, name or hostname (repeatable)");
  check_cmd->add_option("--collection", o.collections, "Every device of a collection (repeatable)");
  check_cmd->add_option("--base", o.base, "The new base layer NAME[@VER] (size, packages)");
  check_cmd->add_flag("--stored", o.stored, "Print the reports the last checks kept");
  auto* rules_cmd = app.add_subcommand("rules", "Print, check or explain migration rules");
  rules_cmd->add_flag("--default", o.show_default, "Print the shipped Debian 12 -> 13 rules");
  rules_cmd->add_option("--check", o.check_file, "Validate a rules file (- for stdin)");
  rules_cmd->add_option("--explain", o.explain, "Per path: component, action and why")->expected(1, -1);
  rules_cmd->add_option("--rules", o.rules_file, "With --explain: these rules, not the default");

  return tool::run(argc, argv, app, common,
                   {{check_cmd, [&] { return check(common, o); }},
                    {rules_cmd, [&] { return rules(common, o); }},
                    {nullptr, [&]() -> int { return o.rollback ? rollback(common, o) : migrate_devices(common, o); }}});
}
