// mirage-migrate: OS migration (Debian 12 -> 13). Today: the preflight check of devices
// and the migration rules (print the default, check a file, explain paths). Queuing a
// migration and rolling one back are not available yet (DESIGN.md section 3).
#include <iostream>

#include "cmd/common/tool.hpp"
#include "libmirage/migrate/rules.hpp"
#include "libmirage/util/json_input.hpp"

using namespace mirage;
using nlohmann::json;

namespace {

struct Options {
  std::vector<std::string> devices, collections, explain;
  std::string base, rules_file, check_file;
  bool show_default = false, dry_run = false, wait = false, rollback = false, stored = false;
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
    auto r = migrate::Rules::from_json(util::read_json_input(o.check_file, "--check"));
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
                                : migrate::Rules::from_json(util::read_json_input(o.rules_file, "--rules"));
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"OS migration (Debian 12 -> 13): preflight and rules", "mirage-migrate"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  Options o;
  tool::Common common;
  tool::add_common(app, common);
  // The migration itself (DESIGN.md section 3): its flags are parsed so that a call
  // gets a clear "not available yet" instead of "unknown flag".
  app.add_option("--device", o.devices, "Device id, name or hostname (repeatable)");
  app.add_option("--collection", o.collections, "Every device of a collection (repeatable)");
  app.add_option("--base", o.base, "New base layer NAME[@VER]");
  app.add_option("--rules", o.rules_file, "Migration rules JSON file (- for stdin)");
  app.add_flag("--dry-run", o.dry_run, "Not available yet");
  app.add_flag("--wait", o.wait, "Not available yet");
  app.add_flag("--rollback", o.rollback, "Not available yet");
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
                    {nullptr, [&]() -> int {
                       throw Error(ErrorKind::usage,
                                   "queuing a migration and --rollback are not available yet; this version has "
                                   "`mirage-migrate check` and `mirage-migrate rules` (see man mirage-migrate)");
                     }}});
}
