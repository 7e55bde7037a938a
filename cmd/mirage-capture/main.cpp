// mirage-capture: capture base layers, app layers and driver profiles; list them.
#include <iostream>

#include "libmirage/policy/inventory_match.hpp"
#include "libmirage/endpoint/layers.hpp"
#include "cmd/common/tool.hpp"
#include "libmirage/util/fd.hpp"
#include "libmirage/util/json_input.hpp"

using namespace mirage;
using nlohmann::json;

namespace {

struct Options {
  std::string name, root, from, before_root, after_root, on_base, rules_file;
  std::vector<std::string> match;
  unsigned threads = 2;
};

layer::LayerRules load_rules(const std::string& file) {
  if (file.empty()) return layer::LayerRules::defaults();
  return layer::LayerRules::from_json(util::read_json_input(file, "--rules"));
}

std::map<std::string, std::string> parse_match(const std::vector<std::string>& items) {
  std::map<std::string, std::string> out;
  for (const auto& item : items) {
    size_t start = 0;
    while (start <= item.size()) {
      size_t comma = item.find(',', start);
      std::string rule = item.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      auto eq = rule.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == rule.size())
        throw Error(ErrorKind::usage, "--match '" + rule + "': expected KEY=GLOB (e.g. sys_vendor=LENOVO)");
      policy::check_inventory_key(rule.substr(0, eq), "--match '" + rule + "'");
      out[rule.substr(0, eq)] = rule.substr(eq + 1);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
  }
  if (out.empty()) throw Error(ErrorKind::usage, "a driver profile needs --match KEY=GLOB");
  return out;
}

std::string absolute(const std::string& p) { return p.empty() ? p : std::filesystem::absolute(p).string(); }

int do_capture(const tool::Common& common, const Options& o, layer::LayerKind kind) {
  endpoint::CaptureOptions co;
  co.kind = kind;
  co.name = o.name;
  layer::parse_ref(o.name);
  if (o.name.find('@') != std::string::npos) throw Error(ErrorKind::usage, "--name takes a name; versions count up by themselves");
  co.root = absolute(o.root);
  co.from_device = o.from;
  co.before_root = absolute(o.before_root);
  co.after_root = absolute(o.after_root);
  co.on_base = o.on_base;
  co.rules = load_rules(o.rules_file);
  co.threads = o.threads;
  if (kind == layer::LayerKind::driver) co.match = parse_match(o.match);
  if (kind == layer::LayerKind::app) {
    if (o.from.empty() && (o.before_root.empty() || o.after_root.empty()))
      throw Error(ErrorKind::usage, "an app layer needs --before-root and --after-root (or 'app finish --from DEVICE')");
  } else if (o.root.empty() == o.from.empty()) {
    throw Error(ErrorKind::usage, "give exactly one of --root DIR and --from DEVICE");
  }
  tool::Progress bar(common, "capture");
  co.progress = [&](const scan::Progress& p) {
    auto state = tool::ProgressState::of_bytes(p.walking ? "scanning" : "reading", p.bytes_read,
                                               p.walking ? 0 : p.bytes_to_read);  // the total grows while walking
    state.files = p.files;
    state.bytes_sent = p.bytes_sent;
    bar.update(state);
  };
  co.more_connections = tool::connection_factory(common);
  auto client = tool::connect(common);
  bar.update(tool::ProgressState::of_bytes("scanning", 0, 0));  // at once: the first report comes after 250 ms
  json row = endpoint::capture(client, co);
  bar.finish();
  tool::print(common, row, [&](std::ostream& out) {
    const auto& s = row["stats"];
    out << row["kind"].get<std::string>() << " layer " << row["ref"].get<std::string>() << ": " << s["files"] << " files, "
        << tool::human_bytes(s["bytes"].get<uint64_t>()) << ", " << s["whiteouts"] << " deletions\n";
    if (!row["captured_on"].get<std::string>().empty()) out << "  captured on " << row["captured_on"].get<std::string>() << "\n";
  });
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Capture base layers, app layers and driver profiles", "mirage-capture"};
  app.set_version_flag("--version", MIRAGE_VERSION);
  Options o;
  tool::Common common;
  tool::add_common(app, common);
  tool::add_progress(app, common);
  app.require_subcommand(1);
  app.fallthrough();

  auto* base = app.add_subcommand("base", "Capture a base layer from a tree or a device");
  base->add_option("--root", o.root, "The reference tree");
  base->add_option("--from", o.from, "A reference device (its latest snapshot)");
  base->add_option("--name", o.name, "Layer name (versions count up)")->required();
  base->add_option("--rules", o.rules_file, "Layer rules JSON (FILE or -)");

  auto* appl = app.add_subcommand("app", "Capture an app layer (what an install changed)");
  appl->add_option("--before-root", o.before_root, "The tree before the install");
  appl->add_option("--after-root", o.after_root, "The tree after the install");
  appl->add_option("--name", o.name, "Layer name (versions count up)");
  appl->add_option("--on-base", o.on_base, "The base layer it was captured on (NAME@VER)");
  appl->add_option("--rules", o.rules_file, "Layer rules JSON (FILE or -)");
  auto* begin = appl->add_subcommand("begin", "Record a device's state before an install");
  begin->add_option("--from", o.from, "The reference device")->required();
  auto* finish = appl->add_subcommand("finish", "Capture what changed since 'begin'");
  finish->add_option("--from", o.from, "The reference device")->required();
  finish->add_option("--name", o.name, "Layer name")->required();
  finish->add_option("--on-base", o.on_base, "Base it was captured on (default: the device's)");
  finish->add_option("--rules", o.rules_file, "Layer rules JSON (FILE or -)");

  auto* driver = app.add_subcommand("driver", "Capture a driver profile for matching hardware");
  driver->add_option("--root", o.root, "A tree of the profile's files (lib/firmware/...)")->required();
  driver->add_option("--name", o.name, "Profile name")->required();
  driver->add_option("--match", o.match, "KEY=GLOB[,KEY=GLOB...] on the inventory")->required();

  auto* list = app.add_subcommand("list", "List layers and their versions");
  list->add_option("--name", o.name, "Only this layer");

  return tool::run(argc, argv, app, common,
                   {{begin,
                     [&] {
                       auto client = tool::connect(common);
                       json r = endpoint::capture_begin(client, o.from);
                       tool::print(common, r, [&](std::ostream& out) {
                         out << "capture begun on " << o.from << " (before: snapshot " << r["before"].get<std::string>()
                             << "); install, run mirage-centralize on it, then: mirage-capture app finish --from "
                             << o.from << " --name NAME\n";
                       });
                       return 0;
                     }},
                    {finish, [&] { return do_capture(common, o, layer::LayerKind::app); }, true},
                    {base, [&] { return do_capture(common, o, layer::LayerKind::base); }, true},
                    {appl,
                     [&] {
                       if (o.name.empty()) throw Error(ErrorKind::usage, "app: --name is required");
                       return do_capture(common, o, layer::LayerKind::app);
                     }, true},
                    {driver, [&] { return do_capture(common, o, layer::LayerKind::driver); }, true},
                    {list, [&] {
                       auto client = tool::connect(common);
                       json params = json::object();
                       if (!o.name.empty()) params["name"] = o.name;
                       json r = client.call("layer.list", params);
                       tool::print(common, r, [&](std::ostream& out) {
                         tool::Table t({"LAYER", "KIND", "CREATED", "CAPTURED ON"});
                         for (const auto& l : r["layers"])
                           t.row({tool::cell(l["ref"]), tool::cell(l["kind"]), tool::short_time(l["created"].get<std::string>()),
                                  l["captured_on"].get<std::string>().empty() ? "-" : tool::cell(l["captured_on"])});
                         t.print(out, o.name.empty() ? "no layers" : "no layer " + o.name);
                       });
                       return 0;
                     }}});
}
